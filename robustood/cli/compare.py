"""``robustood compare``: several models on one dataset → the robustness × OOD comparison matrix."""

from __future__ import annotations

from pathlib import Path

import click

from ..report import write_rendered
from ..utils import is_writer
from .app import main
from .options import (
    ModelSource,
    Outputs,
    arch_option,
    attack_option,
    cache_dir_option,
    check_outputs,
    columns_option,
    data_options,
    detector_attack_specs,
    detector_option,
    emit,
    eps_option,
    list_option,
    model_source_options,
    ood_option,
    output_options,
    progress_flag,
    run_options,
    with_logging,
)

EPILOG = """\b
Models: a training recipe (plain, adv:fgsm:2/255, adv:pgd:8/255, adv:fgsm:2/255:epochs=15,
noise:8/255, oe:noise, distill:20), a zoo name (resnet20) or a checkpoint / TorchScript file.
Recipe models are trained once and cached.

\b
Examples:
  robustood compare
  robustood compare -m plain -m adv:fgsm:8/255 -m distill:20 --attack fgsm,pgd --eps 4/255,8/255
  robustood compare -m plain -m adv:fgsm:8/255 --detector maxlogit,msp --ood noise,natural --defense squeeze
  robustood compare --dataset cifar10 -m plain -m adv:fgsm:2/255:epochs=15 -m adv:fgsm:4/255 \\
      --attack fgsm --eps 2/255 --detector maxlogit --ood noise --store study.jsonl --plots plots/
  robustood compare -m plain -m adv:fgsm:8/255 --detector maxlogit,mahalanobis --ood noise \\
      --attack-detector pgd:2/255,pgd:8/255
"""


@main.command(epilog=EPILOG)
@list_option(
    "--model",
    "-m",
    "models",
    what="model",
    lower=False,
    default=("plain", "adv:fgsm:8/255"),
    metavar="MODEL",
    help="Model(s) to compare (see below).",
)
@arch_option
@attack_option(allow_none=True)
@eps_option("8/255", help="Budget(s) of each attack in [0, 1] pixel units.")
@click.option("--norm", type=click.Choice(["inf", "2"]), default="inf", show_default=True, help="Attack norm.")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Steps of iterative attacks [default: 10].")
@detector_option(("maxlogit", "msp"), allow_none=True)
@ood_option(("noise",), allow_none=True)
@list_option(
    "--defense",
    "defenses",
    what="defense",
    choices=("squeeze",),
    allow_none=True,
    help="Measure a detection defense under the attacks: squeeze (distillation is a model: -m distill:20).",
)
@click.option(
    "--attack-detector",
    "detector_attacks",
    multiple=True,
    callback=detector_attack_specs,
    help="Attack every detector's score (ID and OOD inputs both attacked): adds robust_auroc[DETECTOR|SET@ATTACK] "
    "columns (pgd:8/255, pgd:0.5:l2; repeatable or comma-separated).",
)
@click.option(
    "--epochs", type=click.IntRange(min=1), default=None, help="Maximum epochs of models to train [default: 50]."
)
@click.option(
    "--store",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="JSON-lines file of finished units: a rerun resumes from it instead of recomputing.",
)
@click.option(
    "--plots", type=click.Path(file_okay=False, path_type=Path), default=None, help="Write PNG plots to this directory."
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the full report (tidy rows and provenance) as JSON to this file.",
)
@click.option("--all-metrics", is_flag=True, help="Show every metric, not only the headline ones.")
@columns_option(
    "Metrics (robust_accuracy, auroc …) or full columns (auroc[msp|noise]) the table and markdown formats show "
    "[default: the headline metrics]."
)
@cache_dir_option
@model_source_options
@data_options
@run_options
@output_options
@with_logging
def compare(
    models: list[str],
    arch: str | None,
    attack_names: list[str],
    eps_list: list[float],
    norm: str,
    steps: int | None,
    detectors: list[str],
    ood_specs: list[str],
    defenses: list[str],
    detector_attacks: list[str],
    epochs: int | None,
    store: Path | None,
    plots: Path | None,
    report_path: Path | None,
    all_metrics: bool,
    columns: list[str],
    cache_dir: Path | None,
    dataset: str,
    data_dir: Path | None,
    no_download: bool,
    limit: int | None,
    device: str,
    seed: int,
    batch_size: int,
    quiet: bool,
    fmt: str,
    out: Path | None,
    source: ModelSource,
) -> None:
    """Compare models for clean accuracy, robust accuracy, OOD detection and squeezing detection.

    Prints one row per model; the columns are clean accuracy, robust accuracy per attack ×
    eps, AUROC and FPR@95%TPR per detector × OOD set, and the squeezing detection rate;
    --attack-detector adds the AUROC with the detectors' scores attacked on both sides.
    """
    from ..attacks import build_attack
    from ..evaluate import HEADLINE_METRICS, evaluate
    from ..train import TrainConfig
    from ..utils import select_device

    check_outputs(out, report_path, folders=[plots], appended=[store])
    # attack objects, not spec strings: every eps is used exactly as given
    specs = [
        build_attack(a, eps=e, norm=norm, steps=steps if a != "fgsm" else None, seed=seed)
        for a in attack_names
        for e in eps_list
    ]
    config = TrainConfig(seed=seed, epochs=epochs) if epochs is not None else None
    if detector_attacks and not (detectors and ood_specs):
        raise click.BadParameter("needs detectors and OOD sets (--detector, --ood)", param_hint="--attack-detector")
    report = evaluate(
        models,
        dataset,
        attacks=specs,
        detectors=detectors if ood_specs else [],
        ood=ood_specs if detectors else [],
        defenses=list(defenses),
        detector_attacks=detector_attacks,
        arch=arch,
        seed=seed,
        device=select_device(device),
        batch_size=batch_size,
        limit=limit,
        progress=progress_flag(quiet),
        store=store,
        cache=cache_dir,
        config=config,
        data_dir=data_dir,
        download=not no_download,
        image_size=source.image_size,
        **source.resolve_kwargs(),
    )
    if not is_writer():
        return  # under torchrun, rank 0 writes the job's table and files
    from ..attacks.masking import masking_warnings

    kept = f"; its units are kept in {store}, so a rerun only writes" if store is not None else ""
    outputs = Outputs(f"the evaluation finished{kept}; only writing the output failed")
    with outputs.write():
        emit(
            report.wide(None if all_metrics or columns else HEADLINE_METRICS),
            fmt,
            out,
            columns=columns,
            keys=("model",),
            transpose=True,
            notes=[str(w) for w in masking_warnings(report.rows)],
        )
    if report_path is not None:
        with outputs.write():
            write_rendered(report.to_json(), report_path)
            click.echo(f"wrote {report_path}", err=True)
    if plots is not None:
        with outputs.write():
            for path in report.plot(plots, dataset=dataset):
                click.echo(f"wrote {path}", err=True)
    outputs.finish()

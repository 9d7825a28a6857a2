"""``robustood compare``: several models on one dataset → the robustness × OOD comparison matrix."""

from __future__ import annotations

from pathlib import Path

import click

from ..names import ATTACK_ALIASES, ATTACKS
from ..report import write_rendered
from .app import main
from .options import (
    EpsList,
    cache_dir_option,
    data_options,
    emit,
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
"""


def _names(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> list[str]:
    names = [v.strip() for text in value for v in text.split(",")]
    if names == ["none"]:
        return []
    if any(not n for n in names):
        raise click.BadParameter("empty name in a comma-separated list (use none for no entry)", ctx, param)
    return list(dict.fromkeys(names))


def _attacks(ctx: click.Context, param: click.Parameter, value: str) -> list[str]:
    names = [v.strip().lower() for v in value.split(",")]
    if names == ["none"]:
        return []
    names = [ATTACK_ALIASES.get(n, n) for n in names]
    unknown = [n for n in names if n not in ATTACKS]
    if unknown:
        raise click.BadParameter(f"unknown attack {unknown[0]!r}; known attacks: {', '.join(ATTACKS)}", ctx, param)
    return list(dict.fromkeys(names))


@main.command(epilog=EPILOG)
@click.option(
    "--model",
    "-m",
    "models",
    multiple=True,
    default=("plain", "adv:fgsm:8/255"),
    show_default=True,
    help="A model to compare (repeatable; see below).",
)
@click.option("--arch", default=None, help="Zoo architecture of recipe models [default: the dataset's default].")
@click.option(
    "--attack",
    "attacks",
    default="fgsm,pgd",
    show_default=True,
    callback=_attacks,
    help="Attacks, comma-separated (none: no attack).",
)
@click.option("--eps", "eps_list", type=EpsList(), default="8/255", show_default=True, help="Budget(s) of each attack.")
@click.option("--norm", type=click.Choice(["inf", "2"]), default="inf", show_default=True, help="Attack norm.")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Steps of iterative attacks [default: 10].")
@click.option(
    "--detector",
    "detectors",
    multiple=True,
    default=("maxlogit", "msp"),
    show_default=True,
    callback=_names,
    help="OOD detector(s), repeatable or comma-separated (none: no OOD detection).",
)
@click.option(
    "--ood",
    "ood",
    multiple=True,
    default=("noise",),
    show_default=True,
    callback=_names,
    help="OOD set(s): noise, gaussian, natural, heldout:K, a dataset, adv:ATTACK:EPS.",
)
@click.option(
    "--defense",
    "defenses",
    type=click.Choice(["squeeze"]),
    multiple=True,
    help="Measure a detection defense under the attacks (distillation is a model: -m distill:20).",
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
@cache_dir_option
@data_options
@run_options
@output_options
@with_logging
def compare(
    models: tuple[str, ...],
    arch: str | None,
    attacks: list[str],
    eps_list: list[float],
    norm: str,
    steps: int | None,
    detectors: list[str],
    ood: list[str],
    defenses: tuple[str, ...],
    epochs: int | None,
    store: Path | None,
    plots: Path | None,
    report_path: Path | None,
    all_metrics: bool,
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
) -> None:
    """Compare models for clean accuracy, robust accuracy, OOD detection and squeezing detection.

    Prints one row per model; the columns are clean accuracy, robust accuracy per attack ×
    eps, AUROC and FPR@95%TPR per detector × OOD set, and the squeezing detection rate.
    """
    from ..attacks import build_attack
    from ..evaluate import HEADLINE_METRICS, evaluate
    from ..train import TrainConfig
    from ..utils import select_device

    # attack objects, not spec strings: every eps is used exactly as given
    specs = [
        build_attack(a, eps=e, norm=norm, steps=steps if a != "fgsm" else None, seed=seed)
        for a in attacks
        for e in eps_list
    ]
    config = TrainConfig(seed=seed, epochs=epochs) if epochs is not None else None
    report = evaluate(
        list(dict.fromkeys(models)),
        dataset,
        attacks=specs,
        detectors=detectors if ood else [],
        ood=ood if detectors else [],
        defenses=list(defenses),
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
    )
    from ..attacks.masking import masking_warnings

    emit(
        report.wide(None if all_metrics else HEADLINE_METRICS),
        fmt,
        out,
        notes=[str(w) for w in masking_warnings(report.rows)],
    )
    if report_path is not None:
        write_rendered(report.to_json(), report_path)
        click.echo(f"wrote {report_path}", err=True)
    if plots is not None:
        for path in report.plot(plots):
            click.echo(f"wrote {path}", err=True)

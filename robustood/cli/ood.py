"""``robustood ood``: score ID and OOD inputs with detectors and print AUROC, AUPR, FPR@95 %TPR.

One :func:`robustood.evaluate` call: detectors fitted once, one clean pass (ID scores), one
pass per OOD set (``adv:…`` sets made in their attack pass); ``--save-scores`` and
``--plots`` read the kept scores of that same run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..names import DEFAULT_DETECTORS, DEFAULT_OOD, DETECTORS
from ..utils import is_writer
from .app import main
from .attack import safe_name
from .options import (
    ModelSource,
    Outputs,
    check_outputs,
    columns_option,
    common_options,
    detector_attack_specs,
    detector_option,
    emit,
    load_models_option,
    ood_option,
    plots_option,
    progress_flag,
    with_logging,
)


def _scores_path(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    if value is not None and value.suffix.lower() not in (".npz", ".csv"):
        raise click.BadParameter(f"{value}: use a .npz or .csv file name")
    return value


#: Columns that name a row: repeated in every block when a wide table is wrapped.
KEYS = ("detector", "ood_set")

#: What ``table`` / ``markdown`` show (header → row key); ``csv`` / ``json`` keep every column.
HEADLINE = {
    k: k
    for k in (
        "detector",
        "ood_set",
        "attack",
        "eps",
        "side",
        "auroc",
        "aupr_in",
        "aupr_out",
        "fpr_at_95_tpr",
        "detection_accuracy",
        "id_accuracy",
    )
}

EPILOG = f"""\b
Detectors: {", ".join(DETECTORS)}
OOD sets: noise, gaussian, natural, heldout:K, a dataset name (svhn, cifar100 …), adv:ATTACK:EPS

\b
Examples:
  robustood ood
  robustood ood --detector msp --detector mahalanobis,knn --ood noise,natural,heldout:3
  robustood ood --ood adv:fgsm:2/255 --plots plots/ --save-scores scores.npz
  robustood ood --detector maxlogit --ood noise --attack-detector pgd:2/255,pgd:8/255
"""


@main.command(epilog=EPILOG)
@detector_option(DEFAULT_DETECTORS)
@ood_option(DEFAULT_OOD)
@click.option(
    "--ood-size",
    type=click.IntRange(min=1),
    default=None,
    help="Images per OOD set [default: as many as the ID test split].",
)
@plots_option("Write score histograms, ROC and PR curves (PNG) into this directory.")
@click.option("--log-scale", is_flag=True, help="Score histograms with a logarithmic count axis.")
@click.option(
    "--save-scores",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    callback=_scores_path,
    help="Write every sample's score per detector with its ID/OOD label and set (.npz or .csv).",
)
@columns_option()
@click.option(
    "--attack-detector",
    "detector_attacks",
    multiple=True,
    callback=detector_attack_specs,
    help="Attack every detector's score: ID inputs pushed to look OOD, OOD inputs to look ID "
    "(pgd:8/255, pgd:0.5:l2, pgd:8/255:steps=40; repeatable or comma-separated). Adds rows per "
    "side: out (only OOD attacked), in (only ID attacked), both.",
)
@common_options
@with_logging
def ood(
    detectors: list[str],
    ood_specs: list[str],
    ood_size: int | None,
    plots: Path | None,
    log_scale: bool,
    save_scores: Path | None,
    columns: list[str],
    detector_attacks: list[str],
    dataset: str,
    data_dir: Path | None,
    no_download: bool,
    limit: int | None,
    models: list[str],
    arch: str | None,
    cache_dir: Path | None,
    device: str,
    seed: int,
    batch_size: int,
    quiet: bool,
    fmt: str,
    out: Path | None,
    source: ModelSource,
) -> None:
    """Detect out-of-distribution inputs: one row per detector × OOD set (higher score = more OOD).

    Fitting detectors (mahalanobis, vim, knn, reconstruction) are fitted on the training
    split; thresholds for detection_accuracy keep 95 % of the validation split. The table
    shows the metrics; --format csv or json adds dataset, model and the sample counts.
    With --attack-detector each clean row (side clean) is followed by its rows under each
    attack: side out, in and both (adv:… sets are not attacked again).
    """
    from ..evaluate import detector_attack_rows, evaluate, ood_result
    from ..utils import select_device

    check_outputs(out, save_scores, folders=[plots])
    heldout = next((int(s.split(":", 1)[1]) for s in ood_specs if s.lower().startswith("heldout:")), 0)
    bundle = source.load_dataset(dataset, data_dir=data_dir, no_download=no_download, seed=seed, heldout=heldout)
    dev = select_device(device)
    nets = load_models_option(
        models,
        bundle,
        arch=arch,
        seed=seed,
        device=dev,
        cache=cache_dir,
        progress=progress_flag(quiet),
        source=source,
    )
    keep = plots is not None or save_scores is not None
    report = evaluate(
        nets,
        bundle,
        detectors=detectors,
        ood=ood_specs,
        seed=seed,
        device=dev,
        batch_size=batch_size,
        limit=limit,
        ood_size=ood_size,
        keep_scores=keep,
        keep_inputs=save_scores is not None and save_scores.suffix.lower() == ".npz",
        detector_attacks=detector_attacks,
        progress=progress_flag(quiet),
        data_dir=data_dir,
        download=not no_download,
    )
    if not is_writer():
        return  # under torchrun, rank 0 writes the job's table and files
    rows: list[dict[str, Any]] = []
    written: list[Path] = []
    outputs = Outputs("the detectors were scored; only writing the output failed")
    for label in nets:
        result = ood_result(report, label, keep_scores=keep)
        model_rows = [{"dataset": bundle.info.key, "model": label, **r} for r in result.rows]
        rows += _with_attacks(model_rows, detector_attack_rows(report, label)) if detector_attacks else model_rows
        if save_scores is not None:
            path = (
                save_scores
                if len(nets) == 1
                else save_scores.with_name(f"{save_scores.stem}-{safe_name(label)}{save_scores.suffix}")
            )
            with outputs.write():
                result.save_scores(path)
                click.echo(f"wrote {path}", err=True)
        if plots is not None:
            from ..plots.ood import plot_ood

            folder = plots if len(nets) == 1 else plots / safe_name(label)
            with outputs.write():
                written += plot_ood(result, folder, model=label, dataset=bundle.info.name, log=log_scale)
                if detector_attacks:
                    from ..plots.ood import plot_detector_attacks

                    written += plot_detector_attacks(result, folder)
    if plots is not None:
        click.echo(f"wrote {len(written)} plots to {plots}", err=True)
    several = len(nets) > 1
    headline = {"model": "model", **HEADLINE} if several else HEADLINE
    with outputs.write():
        emit(rows, fmt, out, headline=headline, columns=columns, keys=("model", *KEYS) if several else KEYS)
    outputs.finish()


def _with_attacks(rows: list[dict[str, Any]], attacked: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each clean row (side ``clean``) followed by its rows under each detector attack (sides
    out, in, both), carrying the clean row's dataset, model, accuracy and sample counts."""
    from ..utils import format_eps

    out: list[dict[str, Any]] = []
    for r in rows:
        out.append({**r, "attack": "", "eps": "", "side": "clean"})
        for a in attacked:
            if (a["detector"], a["ood_set"]) == (r["detector"], r["ood_set"]):
                extra = {k: r[k] for k in ("id_accuracy", "n_id", "n_ood") if k in r}
                out.append({"dataset": r["dataset"], "model": r["model"], **a, "eps": format_eps(a["eps"]), **extra})
    return out

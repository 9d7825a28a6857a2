"""``robustood attack``: attack a model at one or more budgets and print an accuracy-vs-eps table.

One :func:`robustood.evaluate` call: the clean pass, then one attack pass per attack × eps;
``--save-adv`` and ``--plots`` read the kept inputs of that same run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..names import ATTACKS
from ..utils import atomic_path, format_eps, is_writer
from .app import main
from .options import (
    ModelSource,
    Outputs,
    attack_option,
    attack_settings,
    check_outputs,
    columns_option,
    common_options,
    emit,
    eps_option,
    load_models_option,
    plots_option,
    progress_flag,
    with_logging,
)

if TYPE_CHECKING:
    from ..attacks import AttackResult


def _npz_path(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    if value is not None and value.suffix.lower() != ".npz":
        raise click.BadParameter(f"{value}: use a .npz file name")
    return value


def adv_key(result: AttackResult) -> str:
    """The key prefix of one attack × eps in a ``--save-adv`` file: ``pgd-linf_eps2_255``."""
    return f"{result.attack}_eps{format_eps(result.eps).replace('/', '_').replace('.', 'p')}"


def save_adversarial(results: Sequence[AttackResult], path: Path) -> Path:
    """Write ``<key>__x``, ``__y``, ``__x_adv``, ``__pred_adv``, ``__target`` and ``__eps`` per result,
    plus an index ``keys``, atomically to an ``.npz`` (no pickled objects)."""
    import numpy as np

    arrays: dict[str, np.ndarray] = {}
    keys = []
    for r in results:
        if r.samples is None:
            continue
        key = adv_key(r)
        keys.append(key)
        s = r.samples
        arrays.update(
            {
                f"{key}__x": s.x,
                f"{key}__y": s.y.astype(np.int64),
                f"{key}__x_adv": s.x_adv,
                f"{key}__pred_adv": s.pred_adv.astype(np.int64),
                f"{key}__target": s.target.astype(np.int64),
                f"{key}__eps": np.float64(r.eps),
            }
        )
    arrays["keys"] = np.array(keys, dtype=str)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return path


#: Inputs an example grid shows at most (the first ones the attack flipped, see :mod:`robustood.plots.attacks`).
PLOT_EXAMPLES = 64

#: Columns that name a row: repeated in every block when a wide table is wrapped.
KEYS = ("attack", "eps", "targeted", "backend", "precision")

#: What ``table`` / ``markdown`` show (header → row key); ``csv`` / ``json`` keep every column.
HEADLINE = {
    "attack": "attack",
    "eps": "eps_text",
    "targeted": "targeted",
    "backend": "backend",
    "precision": "precision",
    "clean_accuracy": "clean_accuracy",
    "robust_accuracy": "robust_accuracy",
    "success_rate": "success_rate",
    "confidence_drop": "confidence_drop",
    "mean_iterations": "mean_iterations",
    "linf_mean": "linf_mean",
    "l2_mean": "l2_mean",
    "images_per_second": "images_per_second",
}

EPILOG = f"""\b
Attacks: {", ".join(ATTACKS)} (ddn is L2 only: --norm 2)

\b
Examples:
  robustood attack --eps 2/255
  robustood attack --attack fgsm,pgd,bim --eps 0,1/255,2/255,4/255,8/255
  robustood attack --attack pgd --targeted least-likely --eps 8/255 --steps 20
  robustood attack --attack ddn,pgd --norm 2 --eps 0.5 --plots plots/ --save-adv adv.npz
"""


@main.command(epilog=EPILOG)
@attack_option()
@eps_option()
@attack_settings
@plots_option("Write example grids (original / adversarial / amplified perturbation) and the accuracy-vs-eps curve.")
@click.option(
    "--save-adv",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    callback=_npz_path,
    help="Write x, y, x_adv, pred_adv per attack and eps to this .npz file.",
)
@columns_option()
@common_options
@with_logging
def attack(
    attack_names: list[str],
    eps_list: list[float],
    norm: str,
    steps: int | None,
    step_size: float | None,
    targeted: str | None,
    no_random_start: bool,
    backend: str,
    precision: str,
    plots: Path | None,
    save_adv: Path | None,
    columns: list[str],
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
    """Attack the model on the test split: one row per attack × eps.

    The table shows clean and robust accuracy, success rate, mean drop of the true-class
    probability, mean iterations to success, mean L∞ / L2 perturbation norms and images
    per second; --format csv or json adds dataset, model, eps as a number, n, the maximum
    norms and the wall time.
    """
    from ..attacks.masking import masking_warnings
    from ..evaluate import evaluate
    from ..utils import select_device

    check_outputs(out, save_adv, folders=[plots])
    bundle = source.load_dataset(dataset, data_dir=data_dir, no_download=no_download, seed=seed)
    # validate every attack before any model is trained or loaded
    attacks = build_attacks(
        attack_names,
        eps_list,
        norm=norm,
        steps=steps,
        step_size=step_size,
        no_random_start=no_random_start,
        targeted=targeted,
        backend=backend,
        seed=seed,
        class_names=bundle.info.class_names,
    )
    dev = select_device(device)
    if precision == "bf16" and dev.type != "cuda":
        raise click.BadParameter(
            f"bf16 needs a CUDA device, got {dev.type}; use --precision fp32", param_hint="--precision"
        )
    if save_adv is not None and len(models) > 1:
        raise click.BadParameter("--save-adv writes one model's inputs; give one --model", param_hint="--save-adv")
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
    report = evaluate(
        nets,
        bundle,
        attacks=attacks,
        seed=seed,
        device=dev,
        batch_size=batch_size,
        limit=limit,
        keep=True if save_adv is not None else (PLOT_EXAMPLES if plots is not None else 0),
        precision=precision,
        progress=progress_flag(quiet),
    )
    if not is_writer():
        return  # under torchrun, rank 0 writes the job's table and files
    rows: list[dict[str, Any]] = []
    per_model = {label: list(report.attacks[label].values()) for label in nets}
    for label, results in per_model.items():
        for r in results:
            for row in r.rows():
                extra = {"backend": r.backend} if backend != "native" else {}
                extra.update({"precision": r.precision} if precision != "fp32" else {})
                rows.append({"dataset": bundle.info.key, "model": label, **row, **extra})
    outputs = Outputs("the attacks finished; only writing the output failed")
    if save_adv is not None:
        with outputs.write():
            save_adversarial([r for results in per_model.values() for r in results], save_adv)
            click.echo(f"wrote {save_adv}", err=True)
    if plots is not None:
        from ..plots.attacks import plot_attacks

        with outputs.write():
            written = []
            for label, results in per_model.items():
                folder = plots if len(per_model) == 1 else plots / safe_name(label)
                written += plot_attacks(
                    results, folder, class_names=bundle.info.class_names, model=label, dataset=bundle.info.name
                )
            click.echo(f"wrote {len(written)} plots to {plots}", err=True)
    several = len(nets) > 1
    headline = {"model": "model", **HEADLINE} if several else HEADLINE
    with outputs.write():
        emit(
            rows,
            fmt,
            out,
            headline=headline,
            columns=columns,
            keys=("model", *KEYS) if several else KEYS,
            notes=[str(w) for w in masking_warnings(report.rows)],
        )
    outputs.finish()


def build_attacks(
    names: Sequence[str],
    eps_list: Sequence[float],
    *,
    norm: str = "inf",
    steps: int | None = None,
    step_size: float | None = None,
    no_random_start: bool = False,
    targeted: str | None = None,
    backend: str = "native",
    seed: int = 0,
    class_names: Sequence[str] | None = None,
) -> list[Any]:
    """One attack object per name × eps from the shared attack options (validated before any model
    is loaded); every eps is used exactly as given."""
    from ..attacks import build_attack

    base = [
        build_attack(
            name,
            eps=eps_list[0],
            norm=norm,
            steps=1 if name == "fgsm" else steps,
            step_size=step_size,
            random_start=not no_random_start,
            targeted=targeted,
            backend=backend,
            seed=seed,
            class_names=class_names,
        )
        for name in names
    ]
    return [atk.with_eps(eps) for atk in base for eps in eps_list]


def safe_name(label: str) -> str:
    """A model label as a folder name (``adv:fgsm:8/255`` → ``adv_fgsm_8_255``)."""
    return "".join(c if c.isalnum() or c in "-._" else "_" for c in label)

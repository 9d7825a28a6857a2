"""``robustood attack``: attack a model at one or more budgets and print an accuracy-vs-eps table.

One :func:`robustood.evaluate` call: the clean pass, then one attack pass per attack × eps;
``--save-adv`` and ``--plots`` read the kept inputs of that same run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import RobustoodError
from ..names import ATTACK_ALIASES, ATTACKS, BACKENDS, PRECISIONS
from ..utils import atomic_path, format_eps, parse_eps
from .app import main
from .options import EpsList, common_options, emit, load_model_option, progress_flag, with_logging

if TYPE_CHECKING:
    from ..attacks import AttackResult


def _attacks(ctx: click.Context, param: click.Parameter, value: str) -> list[str]:
    names = [p.strip().lower() for p in str(value).split(",")]
    if not names or any(not n for n in names):
        raise click.BadParameter(f"{value!r}: use comma-separated attacks such as fgsm,pgd")
    names = [ATTACK_ALIASES.get(n, n) for n in names]
    unknown = [n for n in names if n not in ATTACKS]
    if unknown:
        raise click.BadParameter(f"unknown attack {unknown[0]!r}; known attacks: {', '.join(ATTACKS)}")
    return list(dict.fromkeys(names))


def _step_size(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        step = parse_eps(value)
    except RobustoodError as exc:
        raise click.BadParameter(str(exc)) from None
    if step <= 0:
        raise click.BadParameter("the step size must be positive, e.g. 1/255")
    return step


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
@click.option(
    "--attack",
    "attack_names",
    default="fgsm,pgd",
    show_default=True,
    callback=_attacks,
    help=f"Comma-separated attacks: {', '.join(ATTACKS)} (aa = autoattack).",
)
@click.option(
    "--eps",
    "eps_list",
    type=EpsList(),
    default="2/255",
    show_default=True,
    help="Budget(s) in [0, 1] pixel units, comma-separated for an accuracy-vs-eps table (0,1/255,2/255).",
)
@click.option("--norm", type=click.Choice(["inf", "2"]), default="inf", show_default=True, help="Perturbation norm.")
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=None,
    help="Iterations [default: 10; ddn, apgd-*, fab-t, autoattack 100; square 5000 queries].",
)
@click.option(
    "--step-size",
    callback=_step_size,
    default=None,
    help="Step size in pixel units, e.g. 1/255 [default: 2.5·eps/steps].",
)
@click.option(
    "--targeted",
    default=None,
    metavar="CLASS|random|least-likely",
    help="Targeted attack: a class (name or index), a random other class, or the least-likely class.",
)
@click.option("--no-random-start", is_flag=True, help="PGD starts at the clean input instead of a random point.")
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="native",
    show_default=True,
    help="native: ART's update rule on device tensors (fast); art: ART's own attack objects.",
)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="fp32",
    show_default=True,
    help="bf16: autocast + channels_last, CUDA only.",
)
@click.option(
    "--plots",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write example grids (original / adversarial / amplified perturbation) and the accuracy-vs-eps curve.",
)
@click.option(
    "--save-adv",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    callback=_npz_path,
    help="Write x, y, x_adv, pred_adv per attack and eps to this .npz file.",
)
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
    dataset: str,
    data_dir: Path | None,
    no_download: bool,
    limit: int | None,
    model: str | None,
    cache_dir: Path | None,
    device: str,
    seed: int,
    batch_size: int,
    quiet: bool,
    fmt: str,
    out: Path | None,
) -> None:
    """Attack the model on the test split: one row per attack × eps.

    The table shows clean and robust accuracy, success rate, mean drop of the true-class
    probability, mean iterations to success, mean L∞ / L2 perturbation norms and images
    per second; --format csv or json adds dataset, model, eps as a number, n, the maximum
    norms and the wall time.
    """
    from ..attacks import build_attack
    from ..attacks.masking import masking_warnings
    from ..data import load_dataset
    from ..evaluate import evaluate
    from ..utils import select_device

    bundle = load_dataset(dataset, root=data_dir, download=not no_download, seed=seed)
    # validate every attack before any model is trained or loaded
    attacks = [
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
            class_names=bundle.info.class_names,
        )
        for name in attack_names
    ]
    dev = select_device(device)
    if precision == "bf16" and dev.type != "cuda":
        raise click.BadParameter(
            f"bf16 needs a CUDA device, got {dev.type}; use --precision fp32", param_hint="--precision"
        )
    net, _, label = load_model_option(
        model, bundle, seed=seed, device=dev, cache=cache_dir, progress=progress_flag(quiet)
    )
    report = evaluate(
        {label: net},
        bundle,
        attacks=[atk.with_eps(eps) for atk in attacks for eps in eps_list],
        seed=seed,
        device=dev,
        batch_size=batch_size,
        limit=limit,
        keep=True if save_adv is not None else (8 if plots is not None else 0),
        precision=precision,
        progress=progress_flag(quiet),
    )
    results = list(report.attacks[label].values())
    rows: list[dict[str, Any]] = []
    for r in results:
        for row in r.rows():
            extra = {"backend": r.backend} if backend != "native" else {}
            extra.update({"precision": r.precision} if precision != "fp32" else {})
            rows.append({"dataset": bundle.info.key, "model": label, **row, **extra})
    if save_adv is not None:
        save_adversarial(results, save_adv)
        click.echo(f"wrote {save_adv}", err=True)
    if plots is not None:
        from ..plots.attacks import plot_attacks

        written = plot_attacks(results, plots, class_names=bundle.info.class_names)
        click.echo(f"wrote {len(written)} plots to {plots}", err=True)
    emit(rows, fmt, out, headline=HEADLINE, notes=[str(w) for w in masking_warnings(report.rows)])

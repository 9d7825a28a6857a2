"""Options shared by the commands, defined once and stacked as decorators, and the output helper."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import RobustoodError
from ..report import FORMATS, render, write_rendered
from ..utils import parse_eps_list

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..data import DatasetBundle

F = Callable[..., Any]


class EpsList(click.ParamType):
    """One or more budgets in [0, 1] pixel units: ``2/255``, ``0.03``, ``0,1/255,2/255``."""

    name = "EPS"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> list[float]:
        if isinstance(value, list):
            return value
        try:
            return parse_eps_list(str(value))
        except RobustoodError as exc:
            self.fail(str(exc), param, ctx)


def _stack(*decorators: F) -> F:
    def apply(fn: F) -> F:
        for deco in reversed(decorators):
            fn = deco(fn)
        return fn

    return apply


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where torchvision datasets live [default: $ROBUSTOOD_DATA_DIR or <cache-dir>/data].",
)

dataset_options = _stack(
    click.option(
        "--dataset",
        "-d",
        default="digits",
        show_default=True,
        help="Dataset name (see `robustood datasets`) or imagefolder:PATH.",
    ),
    data_dir_option,
    click.option("--no-download", is_flag=True, help="Never download datasets; fail if files are missing."),
)

data_options = _stack(
    dataset_options,
    click.option("--limit", type=click.IntRange(min=1), default=None, help="Evaluate at most this many test images."),
)

cache_dir_option = click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    envvar="ROBUSTOOD_CACHE_DIR",
    show_envvar=True,
    help="Where trained models are cached [default: ~/.cache/robustood].",
)

model_options = _stack(
    click.option(
        "--model",
        "-m",
        default=None,
        help="Training recipe (plain, adv:fgsm:2/255, adv:pgd:8/255:epochs=15, distill:20 …) or zoo name, "
        "trained once and then cached; or a checkpoint (.safetensors/.pt) or TorchScript file. "
        "[default: plain: small_cnn for grey images, cifar_cnn for colour]",
    ),
    cache_dir_option,
)

device_option = click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:1, mps or auto.")
seed_option = click.option(
    "--seed", type=int, default=0, show_default=True, help="Random seed (data split, init, attacks)."
)
quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bars.")

run_options = _stack(
    device_option,
    seed_option,
    click.option(
        "--batch-size",
        type=click.IntRange(min=1),
        default=256,
        show_default=True,
        help="Images per batch for evaluation.",
    ),
    quiet_option,
)

output_options = _stack(
    click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="Output format; json is an array of row objects with the same numbers.",
    ),
    click.option(
        "--out",
        "-o",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Write the result to this file instead of standard output.",
    ),
)


def common_options(fn: F) -> F:
    """Every option a model-evaluating command shares."""
    return _stack(data_options, model_options, run_options, output_options)(fn)


def load_model_option(
    model: str | None,
    bundle: DatasetBundle,
    *,
    seed: int,
    device: torch.device,
    cache: Path | None,
    progress: bool | None,
) -> tuple[nn.Module, dict[str, Any], str]:
    """Resolve ``--model`` with the one resolver (:func:`robustood.resolve.resolve_model`; ``None`` is
    ``plain``); return the model, its metadata and the label its rows carry
    (:func:`robustood.resolve.model_label`)."""
    from ..resolve import model_label, resolve_model

    spec = (model or "plain").strip()
    net, meta = resolve_model(spec, bundle, seed=seed, device=device, cache=cache, progress=progress)
    return net, meta, model_label(spec, meta)


def headline_rows(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str]) -> list[dict[str, Any]]:
    """The columns a terminal table shows: ``columns`` maps a header to the row key it shows
    (``{"eps": "eps_text"}``); keys absent from every row, or empty in every row (``""``,
    ``None``, e.g. ``targeted`` of untargeted attacks), are left out."""
    shown = {header: key for header, key in columns.items() if any(r.get(key) not in (None, "") for r in rows)}
    return [{header: r.get(key) for header, key in shown.items()} for r in rows]


def emit(
    rows: Sequence[Mapping[str, Any]],
    fmt: str,
    out: Path | None,
    headline: Mapping[str, str] | None = None,
    notes: Sequence[str] = (),
) -> None:
    """Render rows and print them, or write them atomically to ``out``.

    With ``headline`` (header → row key, see :func:`headline_rows`) the ``table`` and
    ``markdown`` formats show only those columns; ``csv`` and ``json`` keep every column.
    ``notes`` (e.g. gradient-masking warnings) follow a ``table`` or ``markdown`` table; with
    ``csv`` and ``json`` they go to stderr, so the output stays machine-readable.
    """
    text = render(headline_rows(rows, headline) if headline is not None and fmt in ("table", "markdown") else rows, fmt)
    if notes and fmt in ("table", "markdown"):
        text += "\nNotes:\n" + "".join(f"- {n}\n" for n in notes)
    elif notes:
        for n in notes:
            click.echo(f"note: {n}", err=True)
    if out is None:
        click.echo(text, nl=False)
    else:
        write_rendered(text, out)
        click.echo(f"wrote {out}", err=True)


def progress_flag(quiet: bool) -> bool | None:
    """``False`` when quiet, else ``None`` (progress bars only on a terminal)."""
    return False if quiet else None


def with_logging(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        return fn(*args, **kwargs)

    return wrapper

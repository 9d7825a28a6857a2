"""Options shared by the commands, defined once and stacked as decorators, and the output helper."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from ..errors import RobustoodError
from ..report import FORMATS, render, write_rendered
from ..utils import parse_eps_list

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


data_options = _stack(
    click.option(
        "--dataset",
        "-d",
        default="digits",
        show_default=True,
        help="Dataset name (see `robustood datasets`) or imagefolder:PATH.",
    ),
    click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Where torchvision datasets live [default: $ROBUSTOOD_DATA_DIR or <cache-dir>/data].",
    ),
    click.option("--no-download", is_flag=True, help="Never download datasets; fail if files are missing."),
    click.option("--limit", type=click.IntRange(min=1), default=None, help="Evaluate at most this many test images."),
)

model_options = _stack(
    click.option(
        "--model",
        "-m",
        default=None,
        help="Zoo name (trained once, then cached), checkpoint (.safetensors/.pt) or TorchScript file. "
        "[default: small_cnn for grey images, cifar_cnn for colour]",
    ),
    click.option(
        "--cache-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        envvar="ROBUSTOOD_CACHE_DIR",
        show_envvar=True,
        help="Where trained models are cached [default: ~/.cache/robustood].",
    ),
)

run_options = _stack(
    click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:1, mps or auto."),
    click.option("--seed", type=int, default=0, show_default=True, help="Random seed (data split, init, attacks)."),
    click.option(
        "--batch-size",
        type=click.IntRange(min=1),
        default=256,
        show_default=True,
        help="Images per batch for evaluation.",
    ),
    click.option("--quiet", "-q", is_flag=True, help="No progress bars."),
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


def emit(rows: Sequence[Mapping[str, Any]], fmt: str, out: Path | None) -> None:
    """Render rows and print them, or write them atomically to ``out``."""
    text = render(rows, fmt)
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

"""Options shared by the commands, defined once and stacked as decorators, and the output helper."""

from __future__ import annotations

import contextlib
import functools
import logging
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import RobustoodError, WriteError
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


@dataclass(frozen=True)
class ModelSource:
    """What ``--weights``, ``--num-classes``, ``--normalize``, ``--feature-layer`` and ``--image-size`` say
    about a model from outside the zoo and the images it takes."""

    weights: str | None = None
    num_classes: int | None = None
    normalize: str | None = None
    feature_layer: str | None = None
    image_size: int | None = None

    def resolve_kwargs(self) -> dict[str, Any]:
        """The keywords of :func:`robustood.resolve.resolve_model` and :func:`robustood.evaluate`."""
        return {
            "weights": self.weights,
            "num_classes": self.num_classes,
            "normalize": self.normalize,
            "features": self.feature_layer,
        }


def _normalize(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    from ..models.adapt import parse_normalize

    try:
        parse_normalize(value)
    except RobustoodError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None
    return value


def model_source_options(fn: F) -> F:
    """``--weights``, ``--num-classes``, ``--normalize``, ``--feature-layer``, ``--image-size``, handed to the
    command as one ``source: ModelSource``."""

    @functools.wraps(fn)
    def wrapper(*args: Any, weights, num_classes, normalize, feature_layer, image_size, **kwargs: Any) -> Any:
        source = ModelSource(weights, num_classes, normalize, feature_layer, image_size)
        return fn(*args, source=source, **kwargs)

    return _stack(
        click.option(
            "--weights",
            default=None,
            metavar="FILE",
            help="State_dict of a torchvision:NAME / hub:… / timm:NAME model (or a zoo name): .safetensors or a "
            "weights-only torch file; for torchvision also a weights name such as DEFAULT (downloaded).",
        ),
        click.option(
            "--num-classes",
            type=click.IntRange(min=1),
            default=None,
            help="Classes the weights were trained for, when more than the dataset's [default: the dataset's].",
        ),
        click.option(
            "--normalize",
            default=None,
            callback=_normalize,
            metavar="none|MEAN,STD",
            help="Normalisation put in front of a model from outside the zoo: none (it normalises itself), "
            "MEAN,STD or M1,M2,M3,S1,S2,S3 [default: the dataset's constants for torchvision/hub models, "
            "timm's own, none for RobustBench and files].",
        ),
        click.option(
            "--feature-layer",
            default=None,
            metavar="LAYER",
            help="Layer whose output feature detectors (knn, mahalanobis, vim …) read, a torchvision "
            "get_graph_node_names name such as layer4 or avgpool [default: the input of the last linear layer].",
        ),
        click.option(
            "--image-size",
            type=click.IntRange(min=1),
            default=None,
            help="imagefolder:PATH: resize images to N×N [default: keep their size when they share one, else 32].",
        ),
    )(wrapper)


model_options = _stack(
    click.option(
        "--model",
        "-m",
        default=None,
        help="Training recipe (plain, adv:fgsm:2/255, adv:pgd:8/255:epochs=15, distill:20 …) or zoo name, "
        "trained once and then cached; a checkpoint (.safetensors/.pt), torch.export (.pt2) or TorchScript "
        "file; or torchvision:NAME, hub:OWNER/REPO:ENTRY, timm:NAME, robustbench:DATASET:THREAT:NAME "
        "(with --weights). [default: plain: small_cnn for grey images, cifar_cnn for colour]",
    ),
    cache_dir_option,
    model_source_options,
)

device_option = click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:1, mps or auto.")
seed_option = click.option(
    "--seed",
    type=click.IntRange(0, 2**32 - 1),
    default=0,
    show_default=True,
    help="Random seed (data split, init, attacks), 0 to 2**32 - 1.",
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
    source: ModelSource | None = None,
) -> tuple[nn.Module, dict[str, Any], str]:
    """Resolve ``--model`` with the one resolver (:func:`robustood.resolve.resolve_model`; ``None`` is
    ``plain``) and the ``--weights`` … options in ``source``; return the model, its metadata and
    the label its rows carry (:func:`robustood.resolve.model_label`)."""
    from ..resolve import model_label, resolve_model

    spec = "plain" if model is None else model.strip()
    extra = source.resolve_kwargs() if source is not None else {}
    net, meta = resolve_model(spec, bundle, seed=seed, device=device, cache=cache, progress=progress, **extra)
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
) -> None:
    """Render rows and print them, or write them atomically to ``out``.

    With ``headline`` (header → row key, see :func:`headline_rows`) the ``table`` and
    ``markdown`` formats show only those columns; ``csv`` and ``json`` keep every column.
    """
    text = render(headline_rows(rows, headline) if headline is not None and fmt in ("table", "markdown") else rows, fmt)
    if out is None:
        click.echo(text, nl=False)
    else:
        write_rendered(text, out)
        click.echo(f"wrote {out}", err=True)


def check_outputs(
    *files: Path | None, folders: Sequence[Path | None] = (), appended: Sequence[Path | None] = ()
) -> None:
    """Refuse output paths that cannot be written before any work starts (see
    :func:`robustood.utils.check_writable`)."""
    from ..utils import check_writable

    for path in files:
        if path is not None:
            check_writable(path)
    for path in folders:
        if path is not None:
            check_writable(path, directory=True)
    for path in appended:
        if path is not None:
            check_writable(path, append=True)


class Outputs:
    """The files a command writes after its work is done.

    Each write runs in :meth:`write`; a failed one (full disk, read-only, no permission) does
    not stop the others, and :meth:`finish` raises the first failure as one
    :class:`~robustood.errors.WriteError` that says the work itself finished (``done``).
    """

    def __init__(self, done: str) -> None:
        self.done = done
        self.failed: list[WriteError] = []

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        try:
            yield
        except WriteError as exc:
            self.failed.append(exc)

    def finish(self) -> None:
        if self.failed:
            others = f"; {len(self.failed) - 1} other output(s) failed too" if len(self.failed) > 1 else ""
            raise self.failed[0].after(self.done + others)


def progress_flag(quiet: bool) -> bool | None:
    """``False`` when quiet, else ``None`` (progress bars only on a terminal)."""
    return False if quiet else None


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"Warning: {message}\n"


def with_logging(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        previous, warnings.formatwarning = warnings.formatwarning, _one_line_warning  # one line, no source
        try:
            return fn(*args, **kwargs)
        finally:
            warnings.formatwarning = previous

    return wrapper

"""Options shared by the commands, defined once and stacked as decorators, and the output helper."""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import RobustoodError, WriteError
from ..names import ATTACK_ALIASES, ATTACKS, BACKENDS, DETECTORS, PRECISIONS, ZOO
from ..report import FORMATS, render, write_rendered
from ..utils import parse_eps, parse_eps_list

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


def split_values(values: Iterable[Any]) -> list[str]:
    """Every item of a repeated option, each split at commas and stripped, in order.

    ``("fgsm,pgd", "bim")`` → ``["fgsm", "pgd", "bim"]``; empty items (``"fgsm,"``) are kept
    as ``""`` so callers can refuse them.
    """
    return [part.strip() for value in values for part in str(value).split(",")]


def list_option(
    *param_decls: str,
    what: str,
    choices: Sequence[str] | None = None,
    item: Callable[[str], Any] | None = None,
    default: Sequence[str] = (),
    lower: bool = True,
    aliases: Mapping[str, str] | None = None,
    allow_none: bool = False,
    metavar: str | None = None,
    help: str = "",
    **kwargs: Any,
) -> F:
    """A list option: repeatable (``--attack fgsm --attack pgd``) and comma-separated
    (``--attack fgsm,pgd``) alike, in any mix; order kept, duplicates dropped.

    ``what`` names one item in messages (``attack``); ``choices`` are the known names
    (unknown ones are refused with the list); ``item`` converts and checks one item
    (raise ``click.BadParameter`` or :class:`~robustood.errors.RobustoodError`); ``lower``
    lower-cases names first; ``aliases`` maps other spellings to a name (``aa`` →
    ``autoattack``); ``allow_none`` makes ``none`` mean the empty list. The command
    receives a ``list``. One line adds a new list option::

        @list_option("--attack-detector", "attack_detectors", what="detector", choices=DETECTORS)
    """

    def callback(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> list[Any]:
        if not value:
            return []
        parts = split_values(value)
        if allow_none and [p.lower() for p in parts] == ["none"]:
            return []
        out: list[Any] = []
        for part in parts:
            if not part:
                hint = f" (use none for no {what})" if allow_none else ""
                given = ", ".join(map(repr, value))
                raise click.BadParameter(f"empty {what} in {given}: give comma-separated {what}s{hint}", ctx, param)
            key = part.lower() if lower else part
            key = (aliases or {}).get(key, key)
            if choices is not None and key not in choices:
                raise click.BadParameter(f"unknown {what} {part!r}; known {what}s: {', '.join(choices)}", ctx, param)
            if item is not None:
                try:
                    key = item(key)
                except RobustoodError as exc:
                    raise click.BadParameter(str(exc), ctx, param) from None
            if key not in out:
                out.append(key)
        if not out:
            raise click.BadParameter(f"give at least one {what}", ctx, param)
        return out

    shown = "  [default: " + ",".join(default) + "]" if default else ""
    return click.option(
        *param_decls,
        multiple=True,
        default=tuple(default),
        callback=callback,
        metavar=metavar or f"{what.upper().replace(' ', '_')}[,…]",
        help=f"{help} Repeatable or comma-separated.{shown}".strip(),
        **kwargs,
    )


def deprecated_alias(old: str, new: str, dest: str, **kwargs: Any) -> F:
    """Keep an old option spelling working for one release: ``old`` (hidden) sets ``dest`` as
    ``new`` would, with a deprecation note on standard error; giving both is a usage error.

    Stack it *above* the command's options (just below ``@main.command``)."""
    key = f"deprecated_{dest}_{old.lstrip('-').replace('-', '_')}"

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kw: Any) -> Any:
            value = kw.pop(key, None)
            if value is not None and value != ():
                ctx = click.get_current_context()
                source = ctx.get_parameter_source(dest)
                if source not in (None, click.core.ParameterSource.DEFAULT, click.core.ParameterSource.DEFAULT_MAP):
                    raise click.UsageError(f"give {new} or {old} (its old name), not both")
                click.echo(
                    f"Warning: {old} is deprecated and will be removed in the next release; use {new}.", err=True
                )
                kw[dest] = value
            return fn(*args, **kw)

        return click.option(old, key, hidden=True, default=None, **kwargs)(wrapper)

    return decorate


def detector_attack_specs(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> list[str]:
    """``--attack-detector`` values (repeatable, comma lists) checked now: ``pgd:8/255``, ``pgd:0.5:l2``."""
    specs = [p.strip() for item in value for p in str(item).split(",")]
    if any(not p for p in specs):
        raise click.BadParameter("empty entry in a comma-separated list; use e.g. pgd:2/255,pgd:8/255", ctx, param)
    if not specs:
        return []
    from ..detectors.attack import parse_detector_attacks  # imports torch: only when the option is given

    try:
        parse_detector_attacks(specs)
    except RobustoodError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None
    return specs


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

    def load_dataset(self, name: str, *, data_dir: Path | None, no_download: bool, seed: int, heldout: int = 0):
        """``--dataset`` loaded at ``--image-size``, with ``--num-classes`` where given."""
        from ..data import load_dataset

        bundle = load_dataset(
            name, root=data_dir, download=not no_download, heldout=heldout, seed=seed, image_size=self.image_size
        )
        return bundle.with_num_classes(self.num_classes)

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


arch_option = click.option(
    "--arch",
    type=click.Choice(list(ZOO), case_sensitive=False),
    default=None,
    help="Zoo architecture of the models robustood trains [default: small_cnn for grey images, cifar_cnn for colour].",
)

model_options = _stack(
    list_option(
        "--model",
        "-m",
        "models",
        what="model",
        lower=False,
        metavar="MODEL",
        help="Training recipe (plain, adv:fgsm:2/255, adv:pgd:8/255:epochs=15, distill:20 …) or zoo name, "
        "trained once and then cached; a checkpoint (.safetensors/.pt), torch.export (.pt2) or TorchScript "
        "file; or torchvision:NAME, hub:OWNER/REPO:ENTRY, timm:NAME, robustbench:DATASET:THREAT:NAME "
        "(with --weights) [default: plain].",
    ),
    arch_option,
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
quiet_option = click.option(
    "--quiet", "-q", is_flag=True, help="No progress bars and no progress lines on standard error."
)

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
    arch: str | None = None,
) -> tuple[nn.Module, dict[str, Any], str]:
    """Resolve ``--model`` with the one resolver (:func:`robustood.resolve.resolve_model`; ``None`` is
    ``plain``) and the ``--weights`` … options in ``source``; return the model, its metadata and
    the label its rows carry (:func:`robustood.resolve.model_label`)."""
    from ..resolve import model_label, resolve_model

    spec = "plain" if model is None else model.strip()
    extra = source.resolve_kwargs() if source is not None else {}
    net, meta = resolve_model(
        spec, bundle, arch=arch, seed=seed, device=device, cache=cache, progress=progress, **extra
    )
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
    *,
    columns: Sequence[str] = (),
    keys: Sequence[str] = (),
    transpose: bool = False,
    notes: Sequence[str] = (),
) -> None:
    """Render rows and print them, or write them atomically to ``out``.

    With ``headline`` (header → row key, see :func:`headline_rows`) the ``table`` and
    ``markdown`` formats show only those columns; ``columns`` (``--columns``) chooses others
    (the ``keys`` columns that name a row are always kept); ``csv`` and ``json`` keep every
    column. A table wider than the terminal is wrapped into blocks that repeat ``keys``, or
    with ``transpose`` (a comparison matrix) shown one metric per line, one column per model.
    ``notes`` (e.g. gradient-masking warnings) follow a ``table`` or ``markdown`` table; with
    ``csv`` and ``json`` they go to stderr, so the output stays machine-readable.
    """
    from ..report import match_columns

    shown: Sequence[Mapping[str, Any]] = rows
    if fmt in ("table", "markdown"):
        if columns:
            named = dict(headline or {})
            key_map = {h: named.get(h, h) for h in keys}
            available = list(dict.fromkeys(k for r in rows for k in r))
            try:
                chosen = match_columns(available, columns)
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="--columns") from None
            shown = headline_rows(rows, {**key_map, **{c: c for c in chosen if c not in key_map.values()}})
        elif headline is not None:
            shown = headline_rows(rows, headline)
    text = render(shown, fmt, keys=keys, transpose=transpose)
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
    """Warnings as ``WARNING name: message`` lines; progress without a terminal.

    On a terminal the commands show progress bars. Without one (a pipe, a log file, a CI
    job) the ``robustood`` logger prints one line per finished unit and per trained model
    on standard error instead, so a long run is never silent; ``--quiet`` silences both.
    Standard output carries the result alone.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        logger = logging.getLogger("robustood")
        handler: logging.Handler | None = None
        level, propagate = logger.level, logger.propagate
        if not kwargs.get("quiet") and not _is_terminal(sys.stderr):
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(_ProgressFormatter())
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
            logger.propagate = False
        previous, warnings.formatwarning = warnings.formatwarning, _one_line_warning  # one line, no source
        try:
            return fn(*args, **kwargs)
        finally:
            warnings.formatwarning = previous
            if handler is not None:
                logger.removeHandler(handler)
                logger.setLevel(level)
                logger.propagate = propagate

    return wrapper


class _ProgressFormatter(logging.Formatter):
    """``robustood: message`` for progress lines, ``WARNING name: message`` for the rest."""

    def format(self, record: logging.LogRecord) -> str:
        if record.levelno == logging.INFO:
            return f"robustood: {record.getMessage()}"
        return f"{record.levelname} {record.name}: {record.getMessage()}"


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


# --------------------------------------------------------------------------- list options every command shares


def eps_option(default: str = "2/255", help: str = "Budget(s) in [0, 1] pixel units, e.g. 0,1/255,2/255.") -> F:
    """``--eps``: one or more budgets (repeatable or comma-separated), parsed to floats."""
    return list_option(
        "--eps", "eps_list", what="eps", item=parse_eps, default=(default,), metavar="EPS[,…]", help=help
    )


def attack_option(default: Sequence[str] = ("fgsm", "pgd"), *, allow_none: bool = False, help: str = "") -> F:
    """``--attack``: attack names (repeatable or comma-separated)."""
    aliases = ", ".join(f"{a} = {n}" for a, n in ATTACK_ALIASES.items())
    text = help or f"Attack(s): {', '.join(ATTACKS)} ({aliases}){'; none: no attack' if allow_none else ''}."
    return list_option(
        "--attack",
        "attack_names",
        what="attack",
        choices=ATTACKS,
        aliases=ATTACK_ALIASES,
        default=default,
        allow_none=allow_none,
        help=text,
    )


def detector_option(default: Sequence[str], *, allow_none: bool = False) -> F:
    """``--detector``: OOD detector names (repeatable or comma-separated)."""
    return list_option(
        "--detector",
        "detectors",
        what="detector",
        choices=DETECTORS,
        default=default,
        allow_none=allow_none,
        help=f"OOD detector(s): {', '.join(DETECTORS)}{' (none: no OOD detection)' if allow_none else ''}.",
    )


def check_ood_spec(spec: str) -> str:
    """One OOD set name as given (``noise``, ``heldout:3``, ``adv:fgsm:2/255``), checked for shape."""
    low = spec.lower()
    if low.startswith("heldout:") and not (low[8:].isdigit() and int(low[8:]) >= 1):
        raise click.BadParameter(f"{spec!r}: use heldout:K with K ≥ 1 held-out classes")
    if low.startswith("adv:") and len(low) <= 4:
        raise click.BadParameter(f"{spec!r}: name an attack, e.g. adv:fgsm:2/255")
    return spec


def ood_option(default: Sequence[str], *, allow_none: bool = False) -> F:
    """``--ood``: OOD sets (repeatable or comma-separated); at most one ``heldout:K``."""
    option = list_option(
        "--ood",
        "ood_specs",
        what="OOD set",
        item=check_ood_spec,
        lower=False,
        default=default,
        allow_none=allow_none,
        metavar="SET[,…]",
        help="OOD set(s): noise, gaussian, natural, heldout:K, a dataset name, adv:ATTACK:EPS.",
    )

    def one_heldout(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kw: Any) -> Any:
            heldout = {s.lower() for s in kw.get("ood_specs", []) if s.lower().startswith("heldout:")}
            if len(heldout) > 1:
                raise click.BadParameter(
                    f"one heldout:K per run (the model is trained without those K classes), got {sorted(heldout)}",
                    param_hint="--ood",
                )
            return fn(*args, **kw)

        return wrapper

    return lambda fn: option(one_heldout(fn))


def _step_size(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        step = parse_eps(value, what="step size")
    except RobustoodError as exc:
        raise click.BadParameter(str(exc)) from None
    if step <= 0:
        raise click.BadParameter("the step size must be positive, e.g. 1/255")
    return step


def plots_option(help: str) -> F:
    return click.option("--plots", type=click.Path(file_okay=False, path_type=Path), default=None, help=help)


#: The attack settings ``attack`` and ``defend`` share (``compare`` takes ``--norm`` and ``--steps``).
attack_settings = _stack(
    click.option(
        "--norm", type=click.Choice(["inf", "2"]), default="inf", show_default=True, help="Perturbation norm."
    ),
    click.option("--steps", type=click.IntRange(min=1), default=None, help="Iterations [default: 10; ddn 100]."),
    click.option(
        "--step-size",
        callback=_step_size,
        default=None,
        help="Step size in pixel units, e.g. 1/255 [default: 2.5·eps/steps].",
    ),
    click.option(
        "--targeted",
        default=None,
        metavar="CLASS|random|least-likely",
        help="Targeted attack: a class (name or index), a random other class, or the least-likely class.",
    ),
    click.option("--no-random-start", is_flag=True, help="PGD starts at the clean input instead of a random point."),
    click.option(
        "--backend",
        type=click.Choice(BACKENDS),
        default="native",
        show_default=True,
        help="native: ART's update rule on device tensors (fast); art: ART's own attack objects.",
    ),
    click.option(
        "--precision",
        type=click.Choice(PRECISIONS),
        default="fp32",
        show_default=True,
        help="bf16: autocast + channels_last, CUDA only.",
    ),
)


def columns_option(help: str = "") -> F:
    """``--columns``: the value columns ``table`` and ``markdown`` show (``csv`` / ``json`` keep all)."""
    return list_option(
        "--columns",
        "columns",
        what="column",
        lower=False,
        metavar="COLUMN[,…]",
        help=help
        or "Columns the table and markdown formats show, e.g. robust_accuracy,success_rate "
        "[default: the headline columns, wrapped to the terminal width].",
    )


def load_models_option(
    models: Sequence[str],
    bundle: DatasetBundle,
    *,
    arch: str | None,
    seed: int,
    device: torch.device,
    cache: Path | None,
    progress: bool | None,
    source: ModelSource | None = None,
) -> dict[str, nn.Module]:
    """Resolve every ``--model`` (none given: ``plain``) → ``{row label: model}``."""
    out: dict[str, nn.Module] = {}
    for spec in models or ["plain"]:
        net, _, label = load_model_option(
            spec, bundle, arch=arch, seed=seed, device=device, cache=cache, progress=progress, source=source
        )
        out[label if label not in out else spec] = net
    return out

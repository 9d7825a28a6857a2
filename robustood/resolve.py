"""What a user calls "a model", decided in one place, with one cache of trained models.

A model spec is one of

- a **training recipe** (``plain``, ``adv:fgsm:2/255``, ``adv:pgd:8/255:epochs=15``,
  ``noise:8/255``, ``oe:noise``; see :mod:`robustood.recipes`): a zoo architecture trained
  with it once, then reused from the cache;
- ``distill:T[:epochs=N]``: defensive distillation at temperature T (the student is the model);
- a **zoo name** (``resnet20``): that architecture trained plainly;
- a **file**: a robustood checkpoint (safetensors or a ``weights_only`` torch file), a
  ``torch.export`` program (``.pt2``) or TorchScript;
- an **external architecture** (:mod:`robustood.models.external`): ``torchvision:NAME``,
  ``hub:OWNER/REPO:ENTRY`` (or ``hub:DIRECTORY:ENTRY``), ``timm:NAME``,
  ``robustbench:DATASET:THREAT:NAME``, with ``weights=`` a state_dict file;
- an ``nn.Module``.

Models from outside the zoo go behind :class:`~robustood.models.adapt.AdaptedModel`:
logits from any output type, ``normalize=`` and the ``features=`` hook.

:func:`parse_model_spec` classifies a spec without loading or training anything (so bad
specs fail before any work); :func:`resolve_model` returns the ready model;
:func:`pretrained` and :func:`distilled_pretrained` are the cache. Every setting that
changes the trained weights is in a cache entry's name, so models trained differently
never share one.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from . import distributed as dist_
from .data import DatasetBundle
from .errors import RobustoodError, WriteError
from .inference import accuracy
from .models import ZOO, Classifier, build_model, default_arch, load_checkpoint, load_model, save_checkpoint
from .models.adapt import adapt_model, parse_normalize
from .models.core import check_compatible
from .models.external import EXTERNAL_SOURCES, load_external, parse_external
from .recipes import RECIPES, objective_for, parse_recipe, split_recipe
from .spec import as_float
from .train import TrainConfig, fit
from .utils import cache_dir, seeded, select_device

log = logging.getLogger(__name__)

__all__ = [
    "MODEL_FILE_SUFFIXES",
    "ModelSpec",
    "cached_model_path",
    "config_slug",
    "distilled_pretrained",
    "model_label",
    "parse_model_spec",
    "pretrained",
    "recipe_slug",
    "resolve_model",
]

ModelLike = str | os.PathLike | nn.Module
Kind = Literal["module", "recipe", "distill", "zoo", "file", "external"]
MODEL_FILE_SUFFIXES = (".pt", ".pth", ".safetensors", ".ts", ".pt2")
DEFAULT_TEMPERATURE = 20.0


@dataclass(frozen=True)
class ModelSpec:
    """A classified model spec: its ``kind``, the text as given (or the module), and for
    ``distill`` the temperature."""

    kind: Kind
    source: Any
    temperature: float | None = None

    @property
    def text(self) -> str:
        return self.source if isinstance(self.source, str) else str(self.source)


def parse_model_spec(spec: ModelLike) -> ModelSpec:
    """Classify ``spec`` (see the module docstring); nothing is loaded or trained.

    Raises :class:`RobustoodError` for an empty spec, a missing model file, a malformed
    ``distill:T`` and a name that is none of the above (listing what is).
    """
    if isinstance(spec, nn.Module):
        return ModelSpec("module", spec)
    text = str(spec).strip()
    if not text:
        raise RobustoodError("empty model name; use a recipe (plain, adv:fgsm:2/255 …), a zoo name or a file")
    if text.lower() in ZOO:
        return ModelSpec("zoo", text.lower())
    path = Path(text).expanduser()
    name = text.split(":", 1)[0].strip().lower()
    if name == "distill" and not path.exists():
        return ModelSpec("distill", text, _temperature(text))
    if name in EXTERNAL_SOURCES and not path.exists():
        parse_external(text)
        return ModelSpec("external", text)
    if name in RECIPES and not path.exists():
        parse_recipe(text)  # the grammar and epochs=; the recipe's own arguments are checked by check_model_spec
        return ModelSpec("recipe", text)
    if path.exists():
        return ModelSpec("file", text)
    if path.suffix.lower() in MODEL_FILE_SUFFIXES:
        raise RobustoodError(f"model file {text} does not exist")
    raise RobustoodError(
        f"unknown model {text!r}: use a training recipe ({', '.join([*RECIPES, 'distill'])}; e.g. plain, "
        f"adv:fgsm:2/255, distill:20), a zoo name ({', '.join(ZOO)}), an architecture "
        f"({', '.join(s + ':NAME' for s in EXTERNAL_SOURCES)}) or a checkpoint / .pt2 / TorchScript file"
    )


def _temperature(text: str) -> float:
    spec, _ = parse_recipe(text)
    shown = f"model {text.strip()!r}"
    if spec.options or len(spec.args) > 1:
        raise RobustoodError(f"use distill:T with a number T > 0 (e.g. distill:20), got {text.strip()!r}")
    if not spec.args:
        return DEFAULT_TEMPERATURE
    try:
        return as_float(spec.args[0], "T", shown, minimum=0, open_min=True)
    except RobustoodError:
        raise RobustoodError(
            f"use distill:T with a finite number T > 0 (e.g. distill:20), got {text.strip()!r}"
        ) from None


def check_model_spec(spec: ModelLike, bundle: DatasetBundle) -> ModelSpec:
    """:func:`parse_model_spec`, and for recipes the recipe's own arguments, against ``bundle``."""
    parsed = parse_model_spec(spec)
    if parsed.kind == "recipe":
        objective_for(parsed.text, bundle)
    return parsed


def model_label(spec: ModelLike, meta: dict[str, Any]) -> str:
    """How a single model is named in the rows of ``attack``, ``ood`` and ``defend``: a recipe
    other than ``plain`` as given (also the recipe a cached checkpoint given by path was trained
    with), else the architecture (``small_cnn``; ``torchscript:FILE``; ``torchvision:resnet18``)."""
    parsed = parse_model_spec(spec)
    if parsed.kind in ("recipe", "distill") and parsed.text.lower() != "plain":
        return parsed.text
    recipe = meta.get("recipe")
    if parsed.kind == "file" and isinstance(recipe, str) and recipe.strip().lower() not in ("", "plain"):
        return recipe
    return str(meta.get("arch", parsed.text))


def resolve_model(
    spec: ModelLike | None,
    bundle: DatasetBundle,
    *,
    arch: str | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    cache: str | os.PathLike | None = None,
    config: TrainConfig | None = None,
    progress: bool | None = None,
    weights: str | os.PathLike | None = None,
    num_classes: int | None = None,
    normalize: Any = None,
    features: str | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """The model a spec names (``None``: ``plain``), in evaluation mode on ``device``, and its metadata.

    ``arch`` is the zoo architecture of recipe and ``distill`` models (default: the
    dataset's); files and modules are checked against the dataset (input shape, classes).

    Args:
        weights: a state_dict file (safetensors or ``weights_only`` torch file) for an
            external architecture (``torchvision:NAME`` …) or a zoo name; for
            ``torchvision:NAME`` also a torchvision weights name (``DEFAULT``).
        num_classes: the classes the weights were trained for (default: the dataset's);
            the dataset's labels must be indices below it.
        normalize: ``"none"`` (the model normalises itself), ``"MEAN,STD"`` or ``(mean, std)``;
            default: the source's constants (timm, torchvision weights names; RobustBench: none),
            else the dataset's for external architectures, none for files and modules.
        features: the layer whose output feature detectors use (a node name of
            ``torchvision.models.feature_extraction.get_graph_node_names``); default: the input
            of the last ``nn.Linear``.
    """
    parsed = check_model_spec("plain" if spec is None else spec, bundle)
    dev = torch.device(device)
    info = bundle.with_num_classes(num_classes).info
    k = info.num_classes
    kw: dict[str, Any] = dict(seed=seed, device=dev, cache=cache, config=config, progress=progress)
    if parsed.kind in ("recipe", "distill", "zoo") and normalize is not None:
        raise RobustoodError(
            f"{parsed.text} is a robustood model that normalises with the dataset's constants inside itself; "
            "normalize is for external models and files"
        )
    if weights is not None and parsed.kind not in ("external", "zoo"):
        raise RobustoodError(
            f"weights are for an architecture (torchvision:NAME, hub:…, timm:NAME, a zoo name); {parsed.text} "
            "carries its own"
        )
    channels = info.input_shape[0]
    if parsed.kind == "external":
        net, meta = load_external(parsed.text, num_classes=k, weights=weights, cache=cache)
        stats = (
            parse_normalize(normalize, channels) if normalize is not None else meta.pop("normalize", info_stats(info))
        )
        net = adapt_model(net.eval(), stats, features, channels).to(dev).eval()
        check_compatible(net, info, dev)
        return net, {**meta, "normalize": "none" if stats is None else f"{stats[0]},{stats[1]}"}
    if parsed.kind == "zoo" and weights is not None:
        net, _ = load_checkpoint(weights, parsed.source, info)
        net = _adapted(net.to(dev).eval(), None, features, channels, dev)
        check_compatible(net, info, dev)
        return net, {"arch": parsed.source, "weights": str(weights)}
    if parsed.kind in ("module", "file"):
        return load_model(parsed.source, info, dev, arch=arch, normalize=normalize, features=features)
    if parsed.kind == "zoo":
        net, meta = pretrained(bundle, parsed.source, recipe="plain", **kw)
        return _adapted(net, None, features, channels, dev), meta
    if parsed.kind == "recipe":
        net, meta = pretrained(bundle, arch, recipe=parsed.text, **kw)
        return _adapted(net, None, features, channels, dev), meta
    _, epochs = parse_recipe(parsed.text)
    cfg = config or TrainConfig(seed=seed)
    if epochs is not None:
        cfg = replace(cfg, epochs=epochs)
    kw["config"] = cfg
    assert parsed.temperature is not None
    _, student, meta = distilled_pretrained(bundle, arch, temperature=parsed.temperature, **kw)
    return _adapted(student, None, features, channels, dev), {**meta, "recipe": parsed.text}


def info_stats(info: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The dataset's normalisation constants ``(mean, std)``."""
    return tuple(info.mean), tuple(info.std)


def _adapted(net: nn.Module, stats: Any, features: str | None, channels: int, dev: torch.device) -> nn.Module:
    """``net`` as is when nothing needs adapting, else behind :class:`~robustood.models.adapt.AdaptedModel`."""
    if stats is None and features is None and (isinstance(net, Classifier) or not isinstance(net, nn.Module)):
        return net
    return adapt_model(net, stats, features, channels).to(dev).eval()


# --------------------------------------------------------------------------- the cache


def recipe_slug(recipe: str) -> str:
    """A file-name-safe form of a recipe string."""
    return re.sub(r"[^A-Za-z0-9.]+", "_", recipe.strip()).strip("_")


def config_slug(config: TrainConfig | None, recipe: str = "plain") -> str:
    """The training settings of ``config`` that differ from :class:`TrainConfig`'s defaults,
    file-name-safe (``""`` when there are none): ``epochs3_lr0.05_optimizersgd``.

    The seed is named on its own in the cache key, and epochs given in the recipe
    (``plain:epochs=15``) replace ``config.epochs``, so neither is repeated here.
    """
    if config is None:
        return ""
    defaults = TrainConfig()
    recipe_epochs = split_recipe(recipe)[1]
    parts = []
    for f in fields(TrainConfig):
        value = getattr(config, f.name)
        if f.name == "seed" or (f.name == "epochs" and recipe_epochs is not None) or value == getattr(defaults, f.name):
            continue
        key = f.name.replace("_", "")
        parts.append(f"{key}{value:g}" if isinstance(value, float) else f"{key}{value}")
    return recipe_slug("_".join(parts))


def cached_model_path(
    bundle: DatasetBundle,
    arch: str,
    recipe: str = "plain",
    seed: int = 0,
    cache: str | os.PathLike | None = None,
    config: TrainConfig | None = None,
) -> Path:
    """Where the cache keeps ``arch`` trained on ``bundle`` with ``recipe``, ``seed`` and ``config``:
    ``digits-small_cnn-adv_fgsm_2_255-s0.safetensors``, ``digits-small_cnn-plain-epochs3-s0.safetensors``."""
    settings = config_slug(config, recipe)
    name = f"{bundle.info.key}-{arch}-{recipe_slug(recipe)}{'-' + settings if settings else ''}-s{seed}"
    return cache_dir(cache) / "models" / f"{name}.safetensors"


def pretrained(
    bundle: DatasetBundle,
    arch: str | None = None,
    *,
    recipe: str = "plain",
    seed: int = 0,
    device: torch.device | str = "cpu",
    cache: str | os.PathLike | None = None,
    config: TrainConfig | None = None,
    retrain: bool = False,
    progress: bool | None = None,
) -> tuple[Classifier, dict[str, Any]]:
    """A zoo model trained on ``bundle`` with ``recipe``: loaded from the cache, or trained and cached.

    ``recipe`` may end in ``:epochs=N``. Returns ``(model, metadata)``; metadata holds the
    architecture, recipe, epochs and test accuracy.
    """
    arch = (arch or default_arch(bundle.info)).lower()
    _, epochs = split_recipe(recipe)
    objective = objective_for(recipe, bundle)  # validates the recipe before any work
    path = cached_model_path(bundle, arch, recipe, seed, cache, config)
    w = dist_.init_from_env(device)
    dev = select_device(device)
    cached = None if retrain else _load_cached(path, bundle)
    if _any_missing([cached], w):
        cached = None
    if cached is not None:
        model, meta = cached
        return model.to(dev).eval(), meta
    cfg = config or TrainConfig(seed=seed)
    if epochs is not None:
        cfg = replace(cfg, epochs=epochs)
    with seeded(seed):
        model = build_model(arch, bundle.info)
    if w.is_main:
        log.info("training %s on %s (recipe %s), cached as %s", arch, bundle.info.key, recipe, path.name)
    result = fit(
        model,
        bundle,
        cfg,
        objective=objective,
        device=dev,
        progress=progress,
        state_path=path.with_suffix(".state.pt"),
        desc=f"train {arch} ({recipe})",
    )
    meta = {
        "recipe": recipe,
        "seed": seed,
        "epochs": len(result.history),
        "best_epoch": result.best_epoch,
        "val_accuracy": result.best_val_accuracy,
        "test_accuracy": None,
        "train_seconds": result.seconds,
        "config": asdict(cfg),
    }
    try:
        if w.is_main:  # the weights are identical on every rank; rank 0 alone scores and writes them
            try:
                meta["test_accuracy"] = accuracy(model, bundle.test, dev)
            except Exception:
                _save_trained(model, path, bundle, arch, meta)  # never lose a trained model to an evaluation error
                raise
            _save_trained(model, path, bundle, arch, meta)
            log.info(
                "trained %s on %s (recipe %s): %d epochs in %.1f s, validation accuracy %.3f, test accuracy %.3f",
                arch,
                bundle.info.key,
                recipe,
                meta["epochs"],
                result.seconds,
                result.best_val_accuracy,
                meta["test_accuracy"],
            )
    finally:
        meta = dist_.broadcast_object(meta, w)  # rank 0's test accuracy, once its cache entry is written
    return model.eval(), {"arch": arch, **meta, "path": str(path)}


def _any_missing(entries: list[Any], w: dist_.World) -> bool:
    """Whether any rank lacks one of ``entries`` (a cache entry not found or unusable): then
    every rank trains together, so all ranks take the same path through the collectives."""
    return dist_.any_rank(any(entry is None for entry in entries), w)


def _load_cached(path: Path, bundle: DatasetBundle) -> tuple[Classifier, dict[str, Any]] | None:
    """The cached model at ``path``, or ``None`` when there is none; a damaged or foreign cache
    entry is ignored with a warning naming it (the model is trained again and the entry replaced)."""
    if not path.exists():
        return None
    try:
        model, meta = load_checkpoint(path)
        saved = meta.get("dataset") or {}
        if tuple(saved.get("input_shape", ())) != tuple(bundle.info.input_shape) or tuple(
            saved.get("class_names", ())
        ) != tuple(bundle.info.class_names):
            raise RobustoodError("it was trained on other data")
    except RobustoodError as exc:
        warnings.warn(f"ignoring the cached model {path} ({exc}); training it again", stacklevel=3)
        return None
    return model, meta


def _save_trained(model: Classifier, path: Path, bundle: DatasetBundle, arch: str, meta: dict[str, Any]) -> None:
    try:
        save_checkpoint(model, path, bundle.info, arch, **meta)
    except WriteError as exc:
        raise exc.after(f"the model was trained ({meta['epochs']} epochs) but could not be cached") from None


def distilled_pretrained(
    bundle: DatasetBundle,
    arch: str | None = None,
    *,
    temperature: float = DEFAULT_TEMPERATURE,
    seed: int = 0,
    device: torch.device | str = "cpu",
    cache: str | os.PathLike | None = None,
    config: TrainConfig | None = None,
    retrain: bool = False,
    progress: bool | None = None,
) -> tuple[nn.Module, nn.Module, dict[str, Any]]:
    """Defensive distillation (:func:`robustood.defenses.distil`), cached like :func:`pretrained`:
    the teacher and the student are kept as recipes ``distill-teacher:T`` and ``distill:T``.

    Returns ``(teacher, student, metadata)``; metadata holds the architecture, the temperature
    and both networks' epochs.
    """
    from .defenses.distillation import check_temperature, distil

    t = check_temperature(temperature)
    arch = (arch or default_arch(bundle.info)).lower()
    w = dist_.init_from_env(device)
    dev = select_device(device)
    paths = [
        cached_model_path(bundle, arch, f"{kind}:{t:g}", seed, cache, config) for kind in ("distill-teacher", "distill")
    ]
    loaded = [None if retrain else _load_cached(p, bundle) for p in paths]
    if not _any_missing(loaded, w):
        (teacher, meta_t), (student, meta_s) = loaded  # type: ignore[misc]
        meta = {"arch": arch, "temperature": t, "teacher_epochs": int(meta_t["epochs"])}
        return teacher.to(dev).eval(), student.to(dev).eval(), {**meta, "epochs": int(meta_s["epochs"])}
    cfg = config or TrainConfig(seed=seed)
    if w.is_main:
        log.info("training a distilled %s on %s (teacher and student, T=%g)", arch, bundle.info.key, t)
    result = distil(bundle, temperature=t, arch=arch, config=cfg, device=dev, progress=progress)
    with dist_.main_first(w) as main:  # rank 0 writes both entries; the others use the networks in memory
        if main:
            for path, model, kind, epochs in zip(
                paths,
                (result.teacher, result.student),
                ("distill-teacher", "distill"),
                (result.teacher_epochs, result.student_epochs),
                strict=True,
            ):
                save_checkpoint(
                    model,  # type: ignore[arg-type]
                    path,
                    bundle.info,
                    arch,
                    recipe=f"{kind}:{t:g}",
                    seed=seed,
                    epochs=epochs,
                    test_accuracy=accuracy(model, bundle.test, dev),
                    config=asdict(cfg),
                )
            log.info(
                "trained a distilled %s on %s (T=%g): teacher %d epochs, student %d epochs",
                arch,
                bundle.info.key,
                t,
                result.teacher_epochs,
                result.student_epochs,
            )
    meta = {"arch": arch, "temperature": t, "teacher_epochs": result.teacher_epochs, "epochs": result.student_epochs}
    return result.teacher, result.student, meta

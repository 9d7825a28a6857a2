"""Models from outside the zoo: torchvision, torch.hub, timm and RobustBench architectures, torch.export programs.

Each loader returns the bare network (it takes normalised images unless it normalises
itself) and its metadata; :func:`robustood.resolve.resolve_model` puts it behind the
:class:`~robustood.models.adapt.AdaptedModel` wrapper. Weights files are read without
unpickling: safetensors, or ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import EnvironmentFault, IncompatibleModelError, RobustoodError
from ..utils import cache_dir

__all__ = [
    "EXTERNAL_SOURCES",
    "load_exported",
    "load_external",
    "load_state_dict_file",
    "parse_external",
]

EXTERNAL_SOURCES = ("torchvision", "hub", "timm", "robustbench")


def parse_external(text: str) -> tuple[str, list[str]] | None:
    """``torchvision:resnet18`` → ``("torchvision", ["resnet18"])``; ``hub:OWNER/REPO:ENTRY`` →
    ``("hub", ["OWNER/REPO", "ENTRY"])`` (a local hub directory may hold colons only before its
    last one); ``robustbench:cifar10:Linf:Standard`` → ``("robustbench", ["cifar10", "Linf", "Standard"])``;
    ``None`` for anything else. Raises :class:`RobustoodError` for a malformed spec."""
    source, _, rest = text.partition(":")
    source = source.strip().lower()
    if source not in EXTERNAL_SOURCES:
        return None
    rest = rest.strip()
    if source in ("torchvision", "timm"):
        if not rest or ":" in rest:
            raise RobustoodError(f"use {source}:NAME (e.g. {source}:resnet18), got {text!r}")
        return source, [rest]
    if source == "hub":
        repo, _, entry = rest.rpartition(":")
        if not repo or not entry:
            raise RobustoodError(
                f"use hub:OWNER/REPO:ENTRY (e.g. hub:pytorch/vision:resnet18) or hub:DIRECTORY:ENTRY, got {text!r}"
            )
        return source, [repo, entry]
    parts = [p.strip() for p in rest.split(":")]
    if len(parts) != 3 or not all(parts):
        raise RobustoodError(
            f"use robustbench:DATASET:THREAT:NAME (e.g. robustbench:cifar10:Linf:Standard), got {text!r}"
        )
    return source, parts


# --------------------------------------------------------------------------- weights files


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A ``state_dict`` from a safetensors file or a ``weights_only`` torch file.

    A ``{"state_dict": …}`` / ``{"model": …}`` checkpoint is unwrapped, and the ``module.``
    prefix ``DataParallel`` adds is dropped. Pickled Python objects are refused.
    """
    from .checkpoint import _read

    path = Path(path).expanduser()
    if not path.is_file():
        raise RobustoodError(f"weights file {path} does not exist")
    state, _ = _read_any(path, _read)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _read_any(path: Path, read) -> tuple[dict[str, torch.Tensor], Any]:
    if path.suffix != ".safetensors":
        import pickle

        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            return read(path)  # the same refusal message as checkpoints
        except (RuntimeError, EOFError, OSError) as exc:
            raise RobustoodError(f"{path} is not a readable weights file: {str(exc).splitlines()[0]}") from None
        if isinstance(obj, dict):
            for key in ("state_dict", "model", "model_state_dict", "net"):
                inner = obj.get(key)
                if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                    return inner, None
            if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
                return obj, None
        raise RobustoodError(f"{path} holds no state_dict (a mapping of parameter names to tensors)")
    return read(path)


def load_weights(model: nn.Module, path: str | os.PathLike, what: str) -> None:
    """Load a state_dict file into ``model`` strictly; a mismatch names the first differing keys and shapes."""
    state = load_state_dict_file(path)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: file {tuple(state[k].shape)}, model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]  # fmt: skip
    if missing or unexpected or shapes:
        hint = ""
        if shapes:
            hint = " (if only the classifier layer differs, give --num-classes: how many classes the weights have)"
        detail = "; ".join(
            part
            for part in (
                f"missing {missing[:3]}" if missing else "",
                f"unexpected {unexpected[:3]}" if unexpected else "",
                f"shapes differ: {shapes[:2]}" if shapes else "",
            )
            if part
        )
        raise IncompatibleModelError(f"{path} does not fit {what}{hint}: {detail}")
    model.load_state_dict(state, strict=True)


# --------------------------------------------------------------------------- sources


def load_external(
    text: str,
    *,
    num_classes: int,
    weights: str | os.PathLike | None = None,
    cache: str | os.PathLike | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """The network an external spec names (``torchvision:NAME``, ``hub:REPO:ENTRY``,
    ``timm:NAME``, ``robustbench:DATASET:THREAT:NAME``) and its metadata.

    Metadata ``normalize`` holds the constants the source says the network expects
    (``None``: it normalises itself, as RobustBench models do; absent: the caller decides).
    """
    parsed = parse_external(text)
    if parsed is None:
        raise RobustoodError(f"{text!r} is not an external model spec ({', '.join(EXTERNAL_SOURCES)})")
    source, args = parsed
    loader = {"torchvision": _torchvision, "hub": _hub, "timm": _timm, "robustbench": _robustbench}[source]
    return loader(*args, num_classes=num_classes, weights=weights, cache=cache)


def _weights_file(weights: str | os.PathLike | None) -> Path | None:
    if weights is None:
        return None
    path = Path(weights).expanduser()
    return path if path.suffix.lower() in (".safetensors", ".pt", ".pth", ".bin", ".ckpt") or path.exists() else None


def _torchvision(name: str, *, num_classes: int, weights, cache) -> tuple[nn.Module, dict[str, Any]]:
    import torchvision

    key = name.strip().lower()
    available = torchvision.models.list_models()
    if key not in available:
        near = [m for m in available if m.startswith(key[:4])][:8]
        raise RobustoodError(f"torchvision has no model {name!r}" + (f"; similar: {', '.join(near)}" if near else ""))
    path = _weights_file(weights)
    meta: dict[str, Any] = {"arch": f"torchvision:{key}"}
    if weights is None:
        raise RobustoodError(
            f"torchvision:{key} needs weights: a state_dict file (--weights model.safetensors / .pt) or the name "
            f"of torchvision's pretrained weights (--weights DEFAULT, downloaded when online)"
        )
    if path is None:  # a torchvision weights name, e.g. DEFAULT or IMAGENET1K_V1
        try:
            enum = torchvision.models.get_model_weights(key)
            w = enum[str(weights).upper()] if str(weights).upper() != "DEFAULT" else enum.DEFAULT
        except (KeyError, ValueError):
            raise RobustoodError(
                f"--weights {weights!r} is neither a file nor a torchvision weights name of {key}"
            ) from None
        try:
            model = torchvision.models.get_model(key, weights=w)
        except Exception as exc:  # network errors come in many types
            raise EnvironmentFault(f"cannot download torchvision weights {w}: {type(exc).__name__}: {exc}") from None
        tf = w.transforms()
        meta.update(weights=str(w), normalize=(tuple(tf.mean), tuple(tf.std)))
        return model, meta
    model = torchvision.models.get_model(key, weights=None, num_classes=num_classes)
    load_weights(model, path, f"torchvision:{key} with {num_classes} classes")
    meta["weights"] = str(path)
    return model, meta


def _offline(exc: BaseException) -> bool:
    """Whether a loading error is the network's (exit code 1), not a wrong name (exit code 2)."""
    import urllib.error

    return isinstance(exc, (OSError, urllib.error.URLError)) or "internet" in str(exc).lower()


def _hub(repo: str, entry: str, *, num_classes: int, weights, cache) -> tuple[nn.Module, dict[str, Any]]:
    local = Path(repo).expanduser()
    source = "local" if local.is_dir() else "github"
    kw: dict[str, Any] = {}
    path = _weights_file(weights)
    if path is not None:
        kw["num_classes"] = num_classes
    try:
        if source == "local":
            model = torch.hub.load(str(local), entry, source="local", **kw)
        else:
            model = torch.hub.load(repo, entry, source="github", trust_repo=True, **kw)
    except Exception as exc:  # hub entry points raise anything; the message says what went wrong
        where = f"local hub directory {local}" if source == "local" else f"GitHub repository {repo}"
        raise (EnvironmentFault if _offline(exc) else RobustoodError)(
            f"cannot load {entry!r} from the {where}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            + ("" if source == "local" else " (offline? give a local directory holding hubconf.py instead)")
        ) from None
    if not isinstance(model, nn.Module):
        raise RobustoodError(f"hub entry {entry!r} returned {type(model).__name__}, not an nn.Module")
    if path is not None:
        load_weights(model, path, f"hub:{repo}:{entry}")
    return model, {"arch": f"hub:{repo}:{entry}", **({"weights": str(path)} if path else {})}


def _timm(name: str, *, num_classes: int, weights, cache) -> tuple[nn.Module, dict[str, Any]]:
    try:
        import timm
    except ImportError:
        raise RobustoodError("timm:NAME needs timm: pip install timm") from None
    path = _weights_file(weights)
    try:
        model = timm.create_model(name, pretrained=path is None, num_classes=num_classes)
    except Exception as exc:  # unknown names (RuntimeError), download errors
        raise RobustoodError(
            f"timm cannot create {name!r}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        ) from None
    if path is not None:
        load_weights(model, path, f"timm:{name} with {num_classes} classes")
    cfg = getattr(model, "pretrained_cfg", None) or {}
    meta: dict[str, Any] = {"arch": f"timm:{name}"}
    if "mean" in cfg and "std" in cfg:
        meta["normalize"] = (tuple(cfg["mean"]), tuple(cfg["std"]))
    return model, meta


def _robustbench(dataset: str, threat: str, name: str, *, num_classes: int, weights, cache) -> tuple[nn.Module, dict]:
    try:
        from robustbench.utils import load_model as rb_load
    except ImportError as exc:
        raise RobustoodError(
            f"robustbench:… needs RobustBench (pip install git+https://github.com/RobustBench/robustbench); "
            f"importing it failed: {exc}"
        ) from None
    model_dir = Path(cache_dir(cache)) / "robustbench"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = rb_load(model_name=name, dataset=dataset, threat_model=threat, model_dir=str(model_dir))
    except Exception as exc:  # unknown names raise ValueError/KeyError, downloads anything
        raise (EnvironmentFault if _offline(exc) else RobustoodError)(
            f"RobustBench cannot load {name!r} ({dataset}, {threat}): {type(exc).__name__}: {str(exc)[:200]}; "
            f"offline, put the checkpoint at {model_dir / dataset / threat / (name + '.pt')}"
        ) from None
    return model, {"arch": f"robustbench:{dataset}:{threat}:{name}", "normalize": None}


# --------------------------------------------------------------------------- torch.export


class _Exported(nn.Module):
    """A ``torch.export`` program's module; train/eval switches stay on this wrapper (the program's
    graph is fixed at export time and refuses ``eval()``)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.program = module

    def train(self, mode: bool = True) -> _Exported:
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> Any:
        return self.program(x)


def is_exported(path: Path) -> bool:
    """Whether ``path`` is a ``torch.export.save`` archive (``.pt2``)."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.split("/", 1)[-1] in ("archive_format", "models/model.json") for n in z.namelist())


def load_exported(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """A ``torch.export`` program (``.pt2``) as a module; export it with a dynamic batch dimension."""
    path = Path(path)
    try:
        program = torch.export.load(str(path))
    except Exception as exc:  # corrupt archives raise many types
        raise RobustoodError(f"{path} is not a loadable torch.export program: {type(exc).__name__}: {exc}") from None
    return _Exported(program.module()), {"arch": f"export:{path.name}"}

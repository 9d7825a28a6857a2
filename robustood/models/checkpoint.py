"""Safe checkpoints that carry their metadata, and loading a model from any source.

Checkpoints are safetensors files (default) or ``torch.save`` files read with
``torch.load(weights_only=True)``: neither can run code when loaded. A file holding
pickled objects is refused with :class:`~robustood.errors.UnsafeCheckpointError`.
"""

from __future__ import annotations

import json
import os
import pickle
import warnings
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data import DatasetInfo
from ..errors import EnvironmentFault, IncompatibleModelError, RobustoodError, UnsafeCheckpointError
from ..utils import write_bytes
from .core import ZOO, Classifier, build_model, check_compatible, check_weights

__all__ = ["load_checkpoint", "load_model", "save_checkpoint"]

_META_KEY = "robustood"


def save_checkpoint(model: Classifier, path: str | os.PathLike, info: DatasetInfo, arch: str, **extra: Any) -> Path:
    """Write ``model``'s weights and metadata (architecture, dataset, classes, input shape) atomically.

    ``.safetensors`` paths are written with safetensors, anything else with ``torch.save``
    of tensors and plain values only. ``extra`` must be JSON-serialisable (e.g. recipe, accuracy).
    """
    import io

    from safetensors.torch import save

    from .. import __version__

    path = Path(path)
    meta = {"arch": arch, "dataset": asdict(info), "robustood_version": __version__, **extra}
    json.dumps(meta)  # fail early on values that would not round-trip
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    # serialised in memory, then written with plain file I/O: a full disk is an OSError naming
    # the reason, not a serialiser's internal error
    if path.suffix == ".safetensors":
        data = save(state, metadata={_META_KEY: json.dumps(meta)})
    else:
        buf = io.BytesIO()
        torch.save({"state_dict": state, _META_KEY: json.dumps(meta)}, buf)
        data = buf.getvalue()
    write_bytes(path, data)
    return path


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0][:200] if lines else type(exc).__name__


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise EnvironmentFault(f"cannot read checkpoint {path}: {exc.strerror or _first_line(exc)}") from None
    if size == 0:
        raise RobustoodError(f"{path} is empty (0 bytes), not a checkpoint; delete it or save the model again")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file, safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                raw = (f.metadata() or {}).get(_META_KEY)
            return load_file(str(path)), json.loads(raw) if raw else None
        except (SafetensorError, OSError, json.JSONDecodeError, ValueError, RuntimeError) as exc:
            raise RobustoodError(f"{path} is not a readable safetensors checkpoint: {_first_line(exc)}") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only load failed" not in str(exc).lower():
            raise RobustoodError(f"{path} is not a checkpoint (not a torch.save file: {_first_line(exc)})") from None
        detail = [line for line in str(exc).splitlines() if "GLOBAL" in line or "Unsupported" in line]
        first = detail[0].strip() if detail else _first_line(exc)
        raise UnsafeCheckpointError(
            f"refusing to load {path}: it holds pickled Python objects that could run code "
            f"({first[:160]}); save weights only (a state_dict) or use .safetensors"
        ) from None
    except Exception as exc:  # truncated, text or random bytes: torch raises many types
        what = "a truncated or damaged torch.save file" if head.startswith(b"PK") else "not a torch.save file"
        raise RobustoodError(f"{path} is not a readable checkpoint ({what}: {_first_line(exc)})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        meta = obj.get(_META_KEY)
        try:
            meta = json.loads(meta) if isinstance(meta, str) else meta
        except json.JSONDecodeError:
            raise RobustoodError(f"{path} carries unreadable robustood metadata (not JSON)") from None
        return obj["state_dict"], meta
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, None  # a bare state_dict
    raise RobustoodError(f"{path} holds neither a state_dict nor a robustood checkpoint")


def _dataset_info(path: Path, meta: Any) -> tuple[str, DatasetInfo]:
    """The architecture and :class:`DatasetInfo` a checkpoint's metadata names; malformed metadata is refused."""
    try:
        arch = meta["arch"]
        d = meta["dataset"]
        info = DatasetInfo(
            str(d["name"]),
            tuple(int(v) for v in d["input_shape"]),  # type: ignore[arg-type]
            tuple(str(c) for c in d["class_names"]),
            tuple(float(v) for v in d["mean"]),
            tuple(float(v) for v in d["std"]),
            int(d.get("heldout", 0)),
        )
        if not isinstance(arch, str) or len(info.input_shape) != 3 or min(info.input_shape) < 1:
            raise ValueError("bad architecture or input shape")
        channels = (1, info.input_shape[0])
        if len(info.class_names) < 2 or len(info.mean) not in channels or len(info.std) not in channels:
            raise ValueError("bad classes or normalisation")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RobustoodError(
            f"{path} has malformed robustood metadata (its architecture or dataset: missing or bad "
            f"{_first_line(exc)}); "
            "save it again with robustood.models.save_checkpoint"
        ) from None
    return arch, info


def load_checkpoint(
    path: str | os.PathLike, arch: str | None = None, info: DatasetInfo | None = None
) -> tuple[Classifier, dict[str, Any]]:
    """Rebuild a zoo classifier from a checkpoint; return ``(model, metadata)``.

    A bare ``state_dict`` without metadata needs ``arch`` and ``info``. Empty, damaged or
    foreign files, malformed metadata and weights that do not fit the architecture are
    refused with a :class:`RobustoodError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise RobustoodError(f"checkpoint {path} does not exist")
    state, meta = _read(path)
    if meta is None:
        if arch is None or info is None:
            raise RobustoodError(
                f"{path} carries no robustood metadata; name its architecture: a zoo name ({', '.join(ZOO)}) "
                f"with --arch, or torchvision:NAME (or hub:…, timm:NAME) as the model with --weights {path}"
            )
        meta = {"arch": arch, "dataset": None}
    else:
        if not isinstance(meta, dict):
            raise RobustoodError(f"{path} has malformed robustood metadata (not a mapping)")
        arch_name, info = _dataset_info(path, meta)
        meta["arch"] = arch_name
    model = build_model(meta["arch"], info)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise IncompatibleModelError(
            f"{path} does not fit a {meta['arch']} for {info.name}: {_first_line(exc).rstrip(':.')}"
        ) from None
    if missing or unexpected:
        raise IncompatibleModelError(
            f"{path} does not fit a {meta['arch']} for {info.name}: missing {list(missing)[:3]}, "
            f"unexpected {list(unexpected)[:3]}"
        )
    if not all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point()):
        raise RobustoodError(f"{path} holds NaN or Inf weights (a diverged training?); train the model again")
    model.eval()
    return model, meta


def _is_torchscript(path: Path) -> bool:
    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as z:
            return any(n.split("/", 1)[-1].startswith("code/") for n in z.namelist())
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def load_model(
    source: str | os.PathLike | nn.Module,
    info: DatasetInfo,
    device: torch.device | str = "cpu",
    *,
    arch: str | None = None,
    normalize: Any = None,
    features: str | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """A ready model for ``info`` from an ``nn.Module``, a checkpoint file, a ``torch.export``
    program (``.pt2``) or a TorchScript file.

    The model takes images in [0, 1]; it is checked against ``info`` (input shape and
    class count) with a dummy batch. Zoo names are resolved by the caller
    (:func:`robustood.train.pretrained` trains or reuses a cached model). A bare state_dict
    needs ``arch`` (a zoo name). Anything but a robustood :class:`Classifier` goes behind
    :class:`~robustood.models.adapt.AdaptedModel` (logits from any output type,
    ``normalize``: ``"none"``, ``"MEAN,STD"`` or ``(mean, std)``; ``features``: the feature layer).
    """
    from .adapt import adapt_model, parse_normalize
    from .external import is_exported, load_exported

    stats = parse_normalize(normalize, info.input_shape[0])
    if isinstance(source, nn.Module):
        model, meta = source, {"arch": type(source).__name__}
    else:
        path = Path(source)
        if not path.is_file():
            raise RobustoodError(f"model {str(source)!r} is neither a zoo name ({', '.join(ZOO)}) nor an existing file")
        if is_exported(path):
            model, meta = load_exported(path)
        elif _is_torchscript(path):
            try:
                with warnings.catch_warnings():  # TorchScript is deprecated upstream but still what users have
                    warnings.simplefilter("ignore", FutureWarning)
                    model = torch.jit.load(str(path), map_location="cpu")
            except Exception as exc:  # torch raises several types for damaged archives
                raise RobustoodError(f"{path} is not a loadable TorchScript file: {_first_line(exc)}") from None
            meta = {"arch": f"torchscript:{path.name}"}
        else:
            model, meta = load_checkpoint(path, arch, info)
            saved = meta["dataset"] or {
                "name": info.name,
                "input_shape": info.input_shape,
                "class_names": info.class_names,
            }
            if tuple(saved["input_shape"]) != tuple(info.input_shape) or len(saved["class_names"]) != info.num_classes:
                raise IncompatibleModelError(
                    f"{path} was trained on {saved['name']} (shape {tuple(saved['input_shape'])}, "
                    f"{len(saved['class_names'])} classes), not {info.name} (shape {info.input_shape}, "
                    f"{info.num_classes} classes)"
                )
    check_weights(model)  # before any move: a meta model cannot be moved
    if isinstance(model, Classifier) and stats is not None:
        raise RobustoodError(
            f"{source} is a robustood model that normalises inside itself; normalize is for other models"
        )
    if not isinstance(model, Classifier) or features is not None:
        model = adapt_model(model, stats, features)
    model = model.to(device).eval()
    check_compatible(model, info, device)
    return model, meta

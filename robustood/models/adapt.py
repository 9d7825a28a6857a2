"""Any classifier as robustood sees one: images in [0, 1] in, logits ``B×K`` out, features on demand.

Models from outside the zoo differ in three ways this module absorbs in one wrapper,
:class:`AdaptedModel`:

- **outputs**: a tensor, an object with ``.logits`` (HuggingFace), a dict (key ``"logits"``
  or its single value) or a tuple (its first element) — :func:`logits_of`;
- **normalisation**: a ``(mean, std)`` layer in front (``normalize=``), or none for models
  that normalise their own inputs — :func:`parse_normalize`;
- **features** for feature-based OOD detectors: by default the input of the model's last
  ``nn.Linear`` layer (a forward hook), or a named layer resolved with torchvision's
  feature extraction (``create_feature_extractor``; names from ``get_graph_node_names``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..errors import RobustoodError
from .core import Normalize

__all__ = ["AdaptedModel", "adapt_model", "last_linear", "logits_of", "parse_normalize"]

NormalizeLike = str | tuple[Sequence[float], Sequence[float]] | None


def logits_of(out: Any) -> torch.Tensor:
    """The logits in a model's output: a tensor as is, ``out.logits``, ``out["logits"]`` (or a
    dict's single value), or the first element of a tuple / list."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, Mapping):  # a dict, or HuggingFace's ModelOutput (an OrderedDict with attributes)
        keys = list(out.keys())
        if "logits" in keys:
            return logits_of(out["logits"])
        if len(keys) == 1:
            return logits_of(out[keys[0]])
        raise RobustoodError(f"the model returns a dict with keys {keys}; expected 'logits' or a single entry")
    logits = getattr(out, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(out, (tuple, list)) and out:
        return logits_of(out[0])
    raise RobustoodError(
        f"the model returns {type(out).__name__}; expected logits as a tensor, an object with .logits, "
        "a dict or a tuple whose first element is the logits"
    )


def parse_normalize(
    value: NormalizeLike, channels: int | None = None
) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """``none`` → ``None``; ``"MEAN,STD"`` (one value each, repeated per channel),
    ``"M1,M2,M3,S1,S2,S3"`` or a pair of sequences → ``(mean, std)`` per channel.

    >>> parse_normalize("0.5,0.5,0.5,0.25,0.25,0.25")
    ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    >>> parse_normalize("0.5,0.25", channels=3)
    ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("none", "off", "no"):
            return None
        try:
            numbers = [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
        except ValueError:
            raise RobustoodError(
                f"normalize must be 'none' or MEAN,STD numbers (e.g. 0.5,0.25 or 0.5,0.5,0.5,0.25,0.25,0.25), "
                f"got {value!r}"
            ) from None
        if not numbers or len(numbers) % 2:
            raise RobustoodError(
                f"normalize needs as many means as stds (MEAN,STD or M1,M2,M3,S1,S2,S3), got {value!r}"
            )
        half = len(numbers) // 2
        mean, std = numbers[:half], numbers[half:]
    else:
        try:
            mean, std = (list(map(float, v)) for v in value)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise RobustoodError(
                f"normalize must be 'none', 'MEAN,STD' or (mean, std) sequences, got {value!r}"
            ) from None
        if len(mean) != len(std):
            raise RobustoodError(f"normalize needs as many means as stds, got {len(mean)} and {len(std)}")
    if channels is not None and len(mean) == 1:
        mean, std = mean * channels, std * channels
    if channels is not None and len(mean) != channels:
        raise RobustoodError(f"normalize gives {len(mean)} channels' constants but the images have {channels}")
    if any(s <= 0 for s in std):
        raise RobustoodError(f"normalize std must be positive, got {tuple(std)}")
    return tuple(mean), tuple(std)


def last_linear(model: nn.Module) -> tuple[str, nn.Linear] | None:
    """The last ``nn.Linear`` module of ``model`` (in registration order) and its name."""
    found = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            found = (name, module)
    return found


class AdaptedModel(nn.Module):
    """``model`` behind an optional :class:`Normalize`, returning plain logits, with features.

    Args:
        model: any classifier taking (normalised) images.
        normalize: ``(mean, std)`` applied first, or ``None`` (the model normalises itself
            or takes [0, 1] inputs).
        feature_layer: ``None`` — the input of the last ``nn.Linear`` (forward hook; then
            :attr:`head` is that layer); or a node name of ``model`` (see
            ``torchvision.models.feature_extraction.get_graph_node_names``), whose output,
            flattened, is the feature vector.

    :meth:`features_logits` gives features ``B×D`` and logits ``B×K`` from one forward pass.
    """

    def __init__(self, model: nn.Module, normalize: tuple[Sequence[float], Sequence[float]] | None = None,
                 feature_layer: str | None = None) -> None:  # fmt: skip
        super().__init__()
        self.normalize = Normalize(*normalize) if normalize is not None else nn.Identity()
        self.model = model
        self.feature_layer = feature_layer
        self._extractor: nn.Module | None = None
        if feature_layer is not None:
            self._extractor = _extractor(model, feature_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return logits_of(self.model(self.normalize(x)))

    @property
    def head(self) -> nn.Module | None:
        """The final linear layer when features are its input (the default), else ``None``."""
        if self.feature_layer is not None:
            return None
        found = last_linear(self.model)
        return found[1] if found is not None else None

    def features_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``B×D`` (flattened) and logits ``B×K`` of one forward pass."""
        x = self.normalize(x)
        if self._extractor is not None:
            out = self._extractor(x)
            return out["features"].flatten(1), logits_of(out["logits"])
        found = last_linear(self.model)
        if found is None:
            raise RobustoodError(
                "feature detectors need the model's features: it has no nn.Linear layer whose input could serve; "
                "name a layer with features='LAYER' (--feature-layer)"
            )
        seen: list[torch.Tensor] = []
        handle = found[1].register_forward_hook(lambda mod, inp, out: seen.append(inp[0]))
        try:
            logits = logits_of(self.model(x))
        finally:
            handle.remove()
        if not seen:
            raise RobustoodError(f"the model's last linear layer {found[0]!r} was not called in its forward pass")
        return seen[-1].flatten(1), logits

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features_logits(x)[0]


def _extractor(model: nn.Module, layer: str) -> nn.Module:
    from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

    try:
        _, nodes = get_graph_node_names(model)
    except Exception as exc:  # fx tracing fails in many ways on dynamic models
        raise RobustoodError(
            f"cannot trace the model to find layer {layer!r} ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); "
            "leave the feature layer out to use the input of the last linear layer"
        ) from None
    if layer not in nodes:
        near = [n for n in nodes if layer.split(".")[0] in n][-8:] or nodes[-8:]
        raise RobustoodError(f"the model has no layer {layer!r}; its last layers: {', '.join(near)}")
    return create_feature_extractor(model, return_nodes={layer: "features", nodes[-1]: "logits"})


def adapt_model(model: nn.Module, normalize: NormalizeLike = None, feature_layer: str | None = None,
                channels: int | None = None) -> nn.Module:  # fmt: skip
    """``model`` wrapped in :class:`AdaptedModel` when it needs normalising or a feature layer, or
    when it lacks a robustood feature split (then the default feature hook is there when asked for);
    a robustood :class:`~robustood.models.Classifier` without such options is returned as is."""
    stats = parse_normalize(normalize, channels)
    if stats is None and feature_layer is None:
        if isinstance(model, AdaptedModel) or (callable(getattr(model, "features", None)) and isinstance(
            getattr(model, "head", None), nn.Module
        )):  # fmt: skip
            return model
        if isinstance(model, torch.jit.ScriptModule):
            return _ScriptLogits(model)
    return AdaptedModel(model, stats, feature_layer)


class _ScriptLogits(nn.Module):
    """A TorchScript module whose output is mapped to logits (hooks do not fire in scripted code)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return logits_of(self.model(x))

"""Detector scores as torch functions of the input, so an attacker can follow their gradient.

pytorch-ood computes its scores under ``torch.no_grad`` (and KNN searches with
scikit-learn on the CPU), which is right for scoring and useless to an adaptive attacker.
:func:`differentiable_score` recomputes the score of a *fitted* detector from the same
learned state with plain torch operations that keep the autograd graph; the values equal
the detector's own scores (``tests/test_detector_attack.py`` checks every detector):

=====================  ==============================================================================
detector               differentiable score of images ``x`` (``f`` the classifier, ``z`` its features)
=====================  ==============================================================================
``msp``                ``−max_k softmax(f(x)/t)_k``
``maxlogit``           ``−max_k f_k(x)``
``energy``             ``−t·logsumexp(f(x)/t)``
``odin``               ``−max_k softmax(f(x̂)/T)_k`` with ``x̂ = x − eps·sign(∇ₓ CE(f(x)/T, ŷ))``
``mahalanobis``        ``½ min_k (z − μ_k)ᵀ Σ⁻¹ (z − μ_k)``
``vim``                ``α‖(z − u) P⊥‖ − logsumexp(Wz + b)``
``knn``                distance of ``z/‖z‖`` to its ``k``-th nearest fitted feature (torch ``cdist``)
``reconstruction``     ``mean((g(x) − x)²)``, through the autoencoder (or decoder and encoder)
=====================  ==============================================================================

**ODIN.** Its preprocessing ``x̂ = x − eps·sign(g(x))`` depends on ``x`` through ``x`` itself
and through ``sign(g(x))``, whose derivative is zero wherever it is defined (almost
everywhere). The exact gradient of the ODIN score is therefore the gradient of the tempered
MSP at ``x̂`` carried back through ``x̂ = x − const``: :func:`differentiable_score` computes the
sign step exactly as pytorch-ood does (the same forward-backward pass, batch-mean
cross-entropy, predicted labels) and treats it as a constant. Differentiating through the
preprocessing with ``create_graph=True`` gives the same gradient (tested), at the cost of a
second-order graph.

**KNN** uses the fitted ID features that scikit-learn's ``NearestNeighbors`` keeps
(``_fit_X``, float64); distances are computed in float64 so the ``k``-th neighbour is the one
scikit-learn finds.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import RobustoodError
from .base import feature_split, needs_features

__all__ = ["DIFFERENTIABLE", "differentiable_score", "is_differentiable"]

DIFFERENTIABLE = (
    "msp",
    "maxlogit",
    "energy",
    "odin",
    "mahalanobis",
    "vim",
    "knn",
    "reconstruction",
    "feature_reconstruction",
)
"""Registry names of the detectors whose score :func:`differentiable_score` follows."""


def _scorer(detector: Any, model: nn.Module) -> Any:
    """The fitted pytorch-ood object of an :class:`~robustood.detectors.OODDetector`."""
    scorer = getattr(detector, "_scorer", None)
    if scorer is None:
        raise RobustoodError(
            f"detector {getattr(detector, 'name', type(detector).__name__)!r} has no differentiable score; "
            f"attackable detectors: {', '.join(DIFFERENTIABLE)}"
        )
    return scorer(model)


def is_differentiable(detector: Any) -> bool:
    """Whether :func:`differentiable_score` can follow ``detector``'s score."""
    if getattr(detector, "spec", None) is not None:
        return detector.name in DIFFERENTIABLE
    if not hasattr(detector, "_scorer"):
        return False
    from . import _pood
    from .reconstruction import ReconstructionDetector

    inner = getattr(detector, "detector", None)
    kinds = (
        _pood.MaxSoftmax,
        _pood.MaxLogit,
        _pood.EnergyBased,
        _pood.ODIN,
        _pood.Mahalanobis,
        _pood.ViM,
        _pood.PoodKNN,
        ReconstructionDetector,
    )
    return isinstance(inner, kinds)


def _features(model: nn.Module, x: torch.Tensor, name: str) -> torch.Tensor:
    split = feature_split(model)
    if split is None:
        raise RobustoodError(needs_features(name))
    return split[0](x)


def odin_step(model: nn.Module, x: torch.Tensor, eps: float, temperature: float, criterion: Any = None) -> torch.Tensor:
    """ODIN's preprocessed input ``x̂ = x − eps·sign(∇ₓ CE(f(x)/T, argmax f(x)))``, computed as
    pytorch-ood's ``odin_preprocessing`` does, returned as ``x − c`` with the step ``c`` a constant
    (``x̂`` carries ``x``'s graph; the derivative of ``sign`` is zero almost everywhere)."""
    criterion = criterion if criterion is not None else F.cross_entropy
    with torch.enable_grad():
        xd = x.detach().requires_grad_(True)
        logits = model(xd) / temperature
        y = logits.max(dim=1).indices
        (grad,) = torch.autograd.grad(criterion(logits, y), xd)
    return x - eps * grad.sign()


def differentiable_score(detector: Any, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Scores ``[B]`` (float32, higher = more OOD) of images ``x`` (``B×C×H×W`` in [0, 1]) that
    keep the autograd graph to ``x``, equal to the fitted ``detector``'s own scores.

    ``detector`` is a fitted :class:`~robustood.detectors.OODDetector` (a registry entry or a
    wrapped pytorch-ood ``MaxSoftmax``, ``MaxLogit``, ``EnergyBased``, ``ODIN``,
    ``Mahalanobis``, ``ViM``, ``KNN`` or a :class:`ReconstructionDetector`); ``model`` the
    classifier it scores with. Raises :class:`~robustood.errors.RobustoodError` for a detector
    whose score is not differentiable (feature squeezing rounds its input).
    """
    from . import _pood
    from .reconstruction import ReconstructionDetector

    name = getattr(detector, "name", type(detector).__name__)
    if not is_differentiable(detector):
        raise RobustoodError(
            f"detector {name!r} has no differentiable score; attackable detectors: {', '.join(DIFFERENTIABLE)}"
        )
    detector.check_fitted()
    d = _scorer(detector, model)
    if isinstance(d, _pood.MaxSoftmax):
        return -F.softmax(model(x).float() / d.t, dim=1).amax(1)
    if isinstance(d, _pood.MaxLogit):
        return -model(x).float().amax(1)
    if isinstance(d, _pood.EnergyBased):
        return -d.t * torch.logsumexp(model(x).float() / d.t, dim=1)
    if isinstance(d, _pood.ODIN):
        if d.norm_std:
            raise RobustoodError("ODIN with norm_std: robustood models normalise inside; build ODIN without norm_std")
        x_hat = odin_step(d.model if d.model is not None else model, x, d.eps, d.temperature, d.criterion)
        logits = (d.model if d.model is not None else model)(x_hat) / d.temperature
        return -logits.softmax(dim=1).amax(1)
    if isinstance(d, _pood.Mahalanobis):
        if d.mu is None:
            raise _not_fitted(name)
        z = _features(model, x, name)
        z = z.view(z.size(0), z.size(1), -1).mean(2).to(d.mu)
        centered = z[:, None, :] - d.mu[None]  # B×K×D
        md = 0.5 * torch.einsum("bkd,de,bke->bk", centered, d.precision, centered)
        return md.amin(1).float()
    if isinstance(d, _pood.ViM):
        if d.principal_subspace is None:
            raise _not_fitted(name)
        z = _features(model, x, name).to(d.w).float()
        logits = z @ d.w.T + d.b
        vlogit = ((z - d.u) @ d.principal_subspace).norm(dim=-1) * d.alpha
        return vlogit - torch.logsumexp(logits, dim=-1)
    if isinstance(d, _pood.PoodKNN):  # pytorch-ood's KNN (robustood's subclass included)
        if not d._is_fitted:
            raise _not_fitted(name)
        z = _features(model, x, name)
        bank = _knn_bank(d, z.device)
        zz = z.double()
        if d.normalize:
            zz = zz / zz.norm(dim=1, keepdim=True).clamp(min=1e-12)
        dist = _distances(zz, bank)
        return dist.topk(d.k, dim=1, largest=False).values[:, -1].float()
    if isinstance(d, ReconstructionDetector):
        if not d.fitted:
            raise _not_fitted(name)
        if d.input_shape is not None and tuple(x.shape[1:]) != d.input_shape:
            raise RobustoodError(
                f"reconstruction was fitted on images of shape {d.input_shape}, got {tuple(x.shape[1:])}"
            )
        d.network.eval()
        rec = d.network(x) if d.encoder is None else d.network(d.encoder(x))
        return (rec - x).pow(2).flatten(1).mean(1).float()
    raise RobustoodError(f"detector {name!r} has no differentiable score")  # pragma: no cover


def _not_fitted(name: str) -> Exception:
    from ..errors import NotFittedError

    return NotFittedError(f"detector {name!r} is not fitted; call .fit(model, train_data)")


def _knn_bank(d: Any, device: torch.device) -> torch.Tensor:
    """The fitted (normalised) ID features of a pytorch-ood KNN as a float64 tensor on ``device``, cached."""
    cached = getattr(d, "_robustood_bank", None)
    if cached is None or cached.device != device:
        cached = torch.as_tensor(d.knn._fit_X, dtype=torch.float64, device=device)
        d._robustood_bank = cached
    return cached


def _distances(z: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """Euclidean distances ``B×N`` with a gradient that stays finite at distance 0."""
    sq = (z.pow(2).sum(1, keepdim=True) - 2 * z @ bank.T + bank.pow(2).sum(1)[None]).clamp(min=0)
    return (sq + 1e-30).sqrt()

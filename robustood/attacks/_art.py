"""The boundary with the Adversarial Robustness Toolbox (ART 1.20): the only module importing it.

Three things live here, each converting tensors to NumPy and back once:

- :func:`art_generate` runs an :class:`~robustood.attacks.base.Attack` with ART's own
  ``FastGradientMethod``, ``ProjectedGradientDescent`` and ``BasicIterativeMethod``
  (``backend="art"``; the reference the native gradient attacks are tested against), and
  ``AutoProjectedGradientDescent`` (apgd-ce, apgd-dlr) and ``SquareAttack`` (square);
- :class:`DecoupledDirectionNorm`, DDN as an ART ``EvasionAttack`` (ART has none);
- :class:`ARTAttack`, which adapts any ready ART evasion attack object to robustood's
  ``attack(model, x, y) -> x_adv`` interface.

ART draws its random numbers from NumPy's global generator, a batch at a time, so they
cannot follow each input's own stream (:mod:`robustood.rng`): with keys, a batch's NumPy
seed is derived from the keys' seed and the batch's first dataset index and size. That is
deterministic, but an input's result depends on the batch it is in (its size, and with it
the batch's first index), unlike the native backend's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from art.attacks.attack import EvasionAttack
from art.attacks.evasion import (
    AutoProjectedGradientDescent,
    BasicIterativeMethod,
    FastGradientMethod,
    ProjectedGradientDescent,
    SquareAttack,
)
from art.estimators.classification import PyTorchClassifier
from art.estimators.classification.classifier import ClassifierMixin
from art.estimators.estimator import BaseEstimator, LossGradientsMixin
from torch import nn

from ..errors import RobustoodError
from ..rng import Keys, stream_seed
from .base import Attack, AttackOutput, attack_mode, draw_seed, norm_label
from .ddn import ddn

__all__ = ["ARTAttack", "DecoupledDirectionNorm", "art_estimator", "art_generate"]


def art_estimator(model: nn.Module, x: torch.Tensor, num_classes: int) -> PyTorchClassifier:
    """An ART ``PyTorchClassifier`` over ``model`` for images like ``x`` in [0, 1] (cross-entropy loss)."""
    return PyTorchClassifier(
        model=model,
        loss=nn.CrossEntropyLoss(),
        input_shape=tuple(x.shape[1:]),
        nb_classes=num_classes,
        clip_values=(0.0, 1.0),
        device_type="gpu" if x.device.type == "cuda" else "cpu",
    )


def _art_attack(attack: Attack, estimator: PyTorchClassifier, batch_size: int, seed: int) -> EvasionAttack:
    norm: Any = np.inf if math.isinf(attack.norm) else 2
    targeted = attack.targeted is not None
    if attack.name == "fgsm":
        return FastGradientMethod(
            estimator, norm=norm, eps=attack.eps, eps_step=attack.eps, targeted=targeted, batch_size=batch_size
        )
    if attack.name == "bim" and math.isinf(attack.norm):
        return BasicIterativeMethod(
            estimator,
            eps=attack.eps,
            eps_step=attack.alpha,
            max_iter=attack.steps,
            targeted=targeted,
            batch_size=batch_size,
            verbose=False,
        )
    if attack.name in ("pgd", "bim"):  # BIM in L2 = PGD-L2 without random start
        return ProjectedGradientDescent(
            estimator,
            norm=norm,
            eps=attack.eps,
            eps_step=attack.alpha,
            max_iter=attack.steps,
            targeted=targeted,
            num_random_init=1 if attack.random_start and attack.name == "pgd" else 0,
            batch_size=batch_size,
            verbose=False,
        )
    if attack.name == "ddn":
        return DecoupledDirectionNorm(
            estimator,
            steps=attack.steps,
            gamma=attack.gamma,
            init_norm=attack.init_norm,
            max_norm=attack.eps,
            targeted=targeted,
            batch_size=batch_size,
            seed=seed,
        )
    if attack.name in ("apgd-ce", "apgd-dlr"):  # ART's step starts at eps_step: given the reference's 2·eps
        return AutoProjectedGradientDescent(
            estimator,
            norm=norm,
            eps=attack.eps,
            eps_step=2 * attack.eps,
            max_iter=attack.steps,
            targeted=False,
            nb_random_init=getattr(attack, "restarts", 1),
            batch_size=batch_size,
            loss_type="cross_entropy" if attack.name == "apgd-ce" else "difference_logits_ratio",
            verbose=False,
        )
    if attack.name == "square":
        return SquareAttack(
            estimator,
            norm=norm,
            max_iter=attack.steps,
            eps=attack.eps,
            p_init=getattr(attack, "p_init", 0.8),
            nb_restarts=getattr(attack, "restarts", 1),
            batch_size=batch_size,
            verbose=False,
        )
    raise RobustoodError(f"attack {attack.name!r} has no ART backend")


def art_generate(
    attack: Attack,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    target: torch.Tensor | None,
    generator: torch.Generator | None = None,
    keys: Keys | None = None,
) -> AttackOutput:
    """Run ``attack`` through ART on one batch; the result is put back on ``x``'s device.

    ART draws random starts from NumPy's global generator: for the call it is seeded with a
    number drawn from ``generator`` (torch's default generator when ``None``), or with
    ``keys`` derived from their seed and the batch (:func:`_batch_seed`: deterministic but,
    unlike the native backend, dependent on how the inputs are batched), and DDN gets the
    same number as its seed, so runs repeat; the caller's NumPy stream is restored after.
    """
    with torch.no_grad():
        num_classes = int(model(x[:1]).shape[1])
    estimator = art_estimator(model, x, num_classes)
    seed = _batch_seed(keys, attack.name) if keys is not None else draw_seed(generator, x.device)
    art = _art_attack(attack, estimator, batch_size=max(1, x.shape[0]), seed=seed)
    return AttackOutput(_generate(art, x, target if target is not None else y, seed), target, None)


def _batch_seed(keys: Keys, name: str) -> int:
    """A NumPy seed for one batch under ``keys``: from their seed, the attack's name and the
    batch's first dataset index and size (ART draws per batch, not per input)."""
    first = int(keys.index[0]) if len(keys) else 0
    return stream_seed(keys.seed, "art", name, first, len(keys))


def _generate(art: EvasionAttack, x: torch.Tensor, labels: torch.Tensor, seed: int | None) -> torch.Tensor:
    """``art.generate`` on one batch, through NumPy once each way; the result on ``x``'s device.

    With ``seed``, ART's draws from NumPy's global generator come from it, and the caller's
    NumPy stream is restored afterwards (the library never reseeds a user's generators).
    """
    state = np.random.get_state() if seed is not None else None
    if seed is not None:
        np.random.seed(seed)
    try:
        x_adv = art.generate(
            x.detach().cpu().numpy().astype(np.float32), y=labels.detach().cpu().numpy().astype(np.int64)
        )
    finally:
        if state is not None:
            np.random.set_state(state)
    return torch.from_numpy(np.asarray(x_adv, dtype=np.float32)).to(x.device)


class DecoupledDirectionNorm(EvasionAttack):
    """DDN (Rony et al., CVPR 2019) as an ART evasion attack on a ``PyTorchClassifier``.

    Minimal-L2 attack: see :func:`robustood.attacks.ddn.ddn`. ``max_norm`` bounds the
    perturbation (``None``: unbounded); ``generate(x, y)`` takes NumPy images in the
    estimator's clip range and labels (indices or one-hot; the targets when
    ``targeted``) and returns NumPy adversarial images.
    """

    attack_params: ClassVar[list[str]] = [
        *EvasionAttack.attack_params,
        "steps",
        "gamma",
        "init_norm",
        "max_norm",
        "batch_size",
        "seed",
        "verbose",
    ]
    _estimator_requirements = (BaseEstimator, LossGradientsMixin, ClassifierMixin)

    def __init__(
        self,
        estimator: PyTorchClassifier,
        steps: int = 100,
        gamma: float = 0.05,
        init_norm: float = 1.0,
        max_norm: float | None = None,
        targeted: bool = False,
        batch_size: int = 128,
        seed: int = 0,
        verbose: bool = False,
    ) -> None:
        super().__init__(estimator=estimator)
        self.steps = steps
        self.gamma = gamma
        self.init_norm = init_norm
        self.max_norm = max_norm
        self._targeted = targeted
        self.batch_size = batch_size
        self.seed = seed
        self.verbose = verbose
        self._check_params()

    def _check_params(self) -> None:
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError("The number of steps has to be a positive integer.")
        if not 0 < self.gamma < 1:
            raise ValueError("gamma has to be in (0, 1).")
        if self.init_norm <= 0:
            raise ValueError("init_norm has to be positive.")
        if self.max_norm is not None and self.max_norm < 0:
            raise ValueError("max_norm has to be non-negative.")
        if self.batch_size <= 0:
            raise ValueError("The batch size has to be positive.")

    def generate(self, x: np.ndarray, y: np.ndarray | None = None, **kwargs: Any) -> np.ndarray:
        if y is None:
            if self.targeted:
                raise ValueError("Target labels `y` need to be provided for a targeted attack.")
            y = self.estimator.predict(x, batch_size=self.batch_size)
        y = np.asarray(y)
        labels = y.argmax(1) if y.ndim == 2 else y.astype(np.int64)
        model: nn.Module = self.estimator.model
        device = self.estimator.device
        gen = torch.Generator(device=device).manual_seed(self.seed)
        out = np.empty_like(x, dtype=np.float32)
        with attack_mode(model), torch.enable_grad():
            for i in range(0, len(x), self.batch_size):
                xb = torch.from_numpy(np.asarray(x[i : i + self.batch_size], dtype=np.float32)).to(device)
                yb = torch.from_numpy(labels[i : i + self.batch_size]).to(device)
                res = ddn(
                    model,
                    xb,
                    yb,
                    steps=self.steps,
                    gamma=self.gamma,
                    init_norm=self.init_norm,
                    max_norm=self.max_norm,
                    target=yb if self.targeted else None,
                    generator=gen,
                )
                out[i : i + len(xb)] = res.x_adv.cpu().numpy()
        return out


@dataclass(frozen=True, eq=False)
class ARTAttack:
    """Any ready ART evasion attack behind robustood's interface: ``attack(model, x, y) -> x_adv``.

    The ART object keeps its own estimator (and so its own model): ``model`` is used
    only to restore its mode and parameter flags. ``targeted`` attacks need ``target``.
    """

    art: EvasionAttack

    @property
    def name(self) -> str:
        return type(self.art).__name__

    @property
    def eps(self) -> float:
        eps = getattr(self.art, "eps", math.nan)
        return float(eps) if np.ndim(eps) == 0 else math.nan

    @property
    def norm(self) -> float:
        norm = getattr(self.art, "norm", np.inf)
        return math.inf if str(norm).lower() in ("inf", "np.inf") or norm == np.inf else float(norm)

    @property
    def targeted(self) -> str | None:
        return "given" if getattr(self.art, "targeted", False) else None

    @property
    def backend(self) -> str:
        return "art"

    @property
    def iterative(self) -> bool:
        return getattr(self.art, "max_iter", 1) > 1

    @property
    def label(self) -> str:
        return f"{self.name}-{norm_label(self.norm)}"

    def with_eps(self, eps: float) -> ARTAttack:
        raise RobustoodError(f"{self.name} is a ready ART object; build one per eps and wrap each")

    def with_class_names(self, class_names: Any) -> ARTAttack:
        return self

    def generate(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> AttackOutput:
        """Run the ART object on a batch; with ``generator``, ART's draws from NumPy's global
        generator are seeded from it (and NumPy's stream restored afterwards)."""
        if self.targeted and target is None:
            raise RobustoodError(f"{self.name} is targeted: pass target=<class per input>")
        seed = draw_seed(generator, x.device) if generator is not None else None
        with attack_mode(model):
            x_adv = _generate(self.art, x, target if target is not None else y, seed)
        return AttackOutput(x_adv, target, None)

    def __call__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        return self.generate(model, x, y, target, generator=generator).x_adv

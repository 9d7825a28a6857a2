"""The attack base class, target selection, and the model-state guard every attack family shares.

The bottom layer of ``robustood.attacks``: it imports no other attack module. An
:class:`Attack` is a frozen configuration (printable, hashable, reusable as a table
label); calling it runs the attack: ``attack(model, x, y) -> x_adv``. Images are float
``B×C×H×W`` in [0, 1]; ``eps`` is in those pixel units and bounds the perturbation in
the attack's norm (``inf`` or ``2``). Each family (``gradient.py``, ``ddn.py``)
subclasses :class:`Attack` and implements :meth:`Attack._run`.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
from torch import nn

from ..errors import RobustoodError
from ..rng import Keys

__all__ = [
    "TARGET_MODES",
    "Attack",
    "AttackOutput",
    "attack_mode",
    "call_seed",
    "check_keys",
    "draw_seed",
    "norm_label",
    "parse_norm",
    "resolve_target_class",
    "select_targets",
]

TARGET_MODES = ("random", "least-likely")


class AttackOutput(NamedTuple):
    """What one attack call produces: adversarial images ``B×C×H×W`` in [0, 1], the target
    classes ``[B]`` of a targeted attack (else ``None``), and per sample the first iteration
    (0 = the start point) whose iterate was adversarial, ``-1`` if none was (``None`` where
    the backend cannot tell); for an ensemble such as AutoAttack, ``broken_by`` gives per
    sample the position of the member attack that broke it (``-1``: none), else ``None``."""

    x_adv: torch.Tensor
    target: torch.Tensor | None
    first_success: torch.Tensor | None
    broken_by: torch.Tensor | None = None


def parse_norm(norm: str | float) -> float:
    """``"inf"``, ``"linf"``, ``math.inf`` → ``inf``; ``"2"``, ``"l2"``, ``2`` → ``2.0``."""
    text = str(norm).strip().lower().removeprefix("l")
    if text in ("inf", "infinity", "np.inf"):
        return math.inf
    if text in ("2", "2.0"):
        return 2.0
    raise RobustoodError(f"unsupported norm {norm!r}; use inf (L∞) or 2 (L2)")


def norm_label(norm: float) -> str:
    """``linf`` or ``l2``."""
    return "linf" if math.isinf(norm) else "l2"


def resolve_target_class(targeted: str | int, class_names: Sequence[str]) -> int:
    """The class index a fixed target names: an index (``3``, ``"3"``) or a class name (``"cat"``).

    Raises :class:`RobustoodError` listing the classes when it names none of them.
    """
    names = [str(c) for c in class_names]
    k = len(names)
    if isinstance(targeted, str):
        text = targeted.strip()
        if text in names:
            return names.index(text)
        lowered = [n.lower() for n in names]
        if text.lower() in lowered:
            return lowered.index(text.lower())
        if text.lstrip("-").isdigit():
            targeted = int(text)
        else:
            raise RobustoodError(
                f"target class {text!r} is not in the dataset; classes: {', '.join(names)} "
                f"(or an index 0..{k - 1}, random, least-likely)"
            )
    if not 0 <= int(targeted) < k:
        raise RobustoodError(
            f"target class {targeted} is not in the dataset; "
            f"use an index 0..{k - 1} or a class name: {', '.join(names)}"
        )
    return int(targeted)


def _check_targeted(targeted: str | int | None) -> str | int | None:
    if targeted is None or isinstance(targeted, bool):
        if targeted is True:
            raise RobustoodError("targeted=True is ambiguous; use a class (index or name), 'random' or 'least-likely'")
        return None
    if isinstance(targeted, int):
        if targeted < 0:
            raise RobustoodError(f"target class must be a non-negative index, got {targeted}")
        return targeted
    text = str(targeted).strip()
    low = text.lower().replace("_", "-")
    if low in ("least-likely", "leastlikely", "ll"):
        return "least-likely"
    if low == "random":
        return "random"
    if not text:
        raise RobustoodError("empty target; use a class (index or name), 'random' or 'least-likely'")
    return int(text) if text.isdigit() else text


def select_targets(
    targeted: str | int,
    y: torch.Tensor,
    logits: torch.Tensor | None,
    num_classes: int,
    generator: torch.Generator | None = None,
    keys: Keys | None = None,
) -> torch.Tensor:
    """Target classes ``[B]`` for a batch: a fixed class, a uniformly random class other than
    the label, or the least-likely class under the clean ``logits`` (``B×K``). Random targets
    come from ``keys`` (stream ``"target"``) when given, else from ``generator``."""
    if targeted == "random":
        if keys is not None:
            offset = keys.integers(1, num_classes, "target").to(y.device)
        else:
            offset = torch.randint(1, num_classes, y.shape, device=y.device, generator=generator)
        return (y + offset) % num_classes
    if targeted == "least-likely":
        if logits is None:
            raise RobustoodError("least-likely targets need the clean logits")
        return logits.argmin(1)
    if isinstance(targeted, str):
        raise RobustoodError(
            f"target class {targeted!r} is a name: build the attack with class_names=... or pass an index"
        )
    if not 0 <= targeted < num_classes:
        raise RobustoodError(f"target class {targeted} is out of range for a model with {num_classes} classes")
    return torch.full_like(y, int(targeted))


def check_keys(keys: Keys | None, generator: torch.Generator | None, x: torch.Tensor) -> Keys | None:
    """``keys`` on ``x``'s device after checking they hold one key per input and come without a
    ``generator`` (the two are alternative sources of the same draws)."""
    if keys is None:
        return None
    if generator is not None:
        raise RobustoodError("pass generator= or keys=, not both: keys replace the generator's draws")
    if len(keys) != x.shape[0]:
        raise RobustoodError(f"keys hold {len(keys)} inputs but x holds {x.shape[0]}; pass one key per input")
    return keys.to(x.device)


def draw_seed(generator: torch.Generator | None, device: torch.device) -> int:
    """A seed in [0, 2³¹ − 1) drawn from ``generator`` on ``device`` (once per call, not per
    iteration): for the reference-order draws of APGD and Square, and for ART's NumPy draws."""
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=device))


def call_seed(generator: torch.Generator | None, keys: Keys | None, device: torch.device) -> int:
    """The ``seed`` a call hands to a function that also takes ``keys``: drawn from ``generator``
    without keys; with keys every draw comes from them and the seed is unused (0)."""
    return draw_seed(generator, device) if keys is None else 0


@contextlib.contextmanager
def attack_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Evaluation mode and frozen parameters while an attack runs; both restored afterwards.

    Gradients are then taken with respect to the input only: no parameter gradient is
    computed or left behind, and batch-norm statistics are not updated (as in ART, whose
    ``loss_gradient`` runs the model in evaluation mode).
    """
    was_training = model.training
    params = [p for p in model.parameters() if p.requires_grad]
    model.eval()
    for p in params:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p in params:
            p.requires_grad_(True)
        model.train(was_training)


@dataclass(frozen=True)
class Attack(ABC):
    """One attack configuration; call it to attack a batch.

    Build it with :func:`robustood.attacks.build_attack` (which validates, fills defaults
    and picks the family's subclass). ``name`` is a registry key (``fgsm``, ``pgd``,
    ``bim``, ``ddn``), ``eps`` the budget in [0, 1] pixel units in ``norm`` (``inf`` or
    ``2``), ``steps`` / ``step_size`` the iterations and their size, ``random_start`` a
    uniform start in the eps ball (PGD), ``targeted`` ``None`` (untargeted), a class index
    or name, ``"random"`` or ``"least-likely"``. ``backend`` is ``"native"`` (device
    tensors, ART's update rule) or ``"art"`` (ART's own attack objects). ``seed`` is the
    seed of the keys a runner such as :func:`~robustood.evaluate.run_attack` passes (with
    the inputs' dataset indices); ``gamma`` / ``init_norm`` are DDN's norm update and initial norm.

    The object holds no state: random starts, random targets and the seed handed to ART
    are drawn from the ``keys`` of each call (per-input streams keyed by the seed and each
    input's dataset index, see :mod:`robustood.rng`: a result does not depend on the batch
    size or order) or else from its ``generator`` (torch's default generator when ``None``),
    so the same keys or generator state give the same result.

    >>> atk = build_attack("pgd", eps=8 / 255)                                  # doctest: +SKIP
    >>> x_adv = atk(model, x, y, keys=Keys(0, torch.arange(len(x))))             # doctest: +SKIP
    """

    name: str
    eps: float
    norm: float = math.inf
    steps: int = 1
    step_size: float | None = None
    random_start: bool = False
    targeted: str | int | None = None
    backend: str = "native"
    seed: int = 0
    gamma: float = 0.05
    init_norm: float = 1.0

    @property
    def label(self) -> str:
        """Short name for tables: ``pgd-linf``, ``fgsm-l2``, ``pgd-linf-random`` (targeted)."""
        text = f"{self.name}-{norm_label(self.norm)}"
        if self.targeted is not None:
            text += f"-{self.targeted}"
        return text

    @property
    def iterative(self) -> bool:
        return self.name != "fgsm"

    @property
    def alpha(self) -> float:
        """The step size actually used: ``step_size``, else ``eps`` for FGSM and ``2.5·eps/steps``
        for PGD/BIM (Madry et al.'s rule, 2/255 for PGD-10 at 8/255)."""
        if self.step_size is not None:
            return float(self.step_size)
        if self.name == "fgsm":
            return float(self.eps)
        return 2.5 * float(self.eps) / max(int(self.steps), 1)

    def with_eps(self, eps: float) -> Attack:
        """The same attack at another budget (a default step size scales with it)."""
        return replace(self, eps=float(eps))

    def with_class_names(self, class_names: Sequence[str]) -> Attack:
        """Resolve a target class given by name (or as text) to its index; other attacks unchanged."""
        if self.targeted is None or self.targeted in TARGET_MODES:
            return self
        return replace(self, targeted=resolve_target_class(self.targeted, class_names))

    def reset(self) -> None:
        """Deprecated no-op: an attack holds no random state; pass ``generator=`` to each call instead."""
        warnings.warn(
            "Attack.reset() does nothing (an attack holds no random state) and will be removed; "
            "pass generator=torch.Generator(device).manual_seed(seed) to each call instead",
            DeprecationWarning,
            stacklevel=2,
        )

    def targets(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        generator: torch.Generator | None = None,
        keys: Keys | None = None,
    ) -> torch.Tensor | None:
        """The target class of every input (``None`` for an untargeted attack); random targets
        are drawn from ``keys`` if given, else from ``generator`` (torch's default when ``None``)."""
        if self.targeted is None:
            return None
        with torch.no_grad():
            logits = model(x).float() if self.targeted == "least-likely" else None
            num_classes = int((logits if logits is not None else model(x[:1])).shape[1])
        return select_targets(self.targeted, y, logits, num_classes, generator, keys)

    def generate(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        keys: Keys | None = None,
    ) -> AttackOutput:
        """Attack a batch and report the targets used and the per-sample first success.

        ``x`` is ``B×C×H×W`` in [0, 1], ``y`` the labels ``[B]``, ``target`` optional target
        classes ``[B]`` of a targeted attack. With ``keys`` (one per input: the seed and the
        inputs' dataset indices) every per-input draw comes from the input's own streams and
        draws the batch shares from ``keys.generator(...)``, so an input's result does not
        depend on the batch it is in (ART's backend excepted, see :mod:`robustood.attacks._art`).
        Without keys every random draw comes from ``generator`` (on ``x``'s device; ``None``:
        torch's default generator).
        """
        if x.dim() < 2 or x.shape[0] != y.shape[0]:
            raise RobustoodError(f"x ({tuple(x.shape)}) and y ({tuple(y.shape)}) must hold the same number of inputs")
        keys = check_keys(keys, generator, x)
        if generator is not None and generator.device.type != x.device.type:
            raise RobustoodError(
                f"the generator is on {generator.device.type} but x is on {x.device.type}; "
                "use torch.Generator(device=x.device)"
            )
        y = y.to(x.device)
        x = x.detach()
        with attack_mode(model):
            if target is None:
                target = self.targets(model, x, y, generator, keys)
            elif self.targeted is None:
                raise RobustoodError("a target was given to an untargeted attack; build it with targeted=...")
            else:
                target = target.to(x.device)
            if self.eps == 0 or x.shape[0] == 0:
                return AttackOutput(x.clone(), target, None)
            with torch.enable_grad():
                if self.backend == "art":
                    from ._art import art_generate  # ART is imported only when an art backend runs

                    out = art_generate(self, model, x, y, target, generator, keys)
                else:
                    out = self._run(model, x, y, target, generator, keys)
        return AttackOutput(out.x_adv.detach(), target, out.first_success, out.broken_by)

    def __call__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        keys: Keys | None = None,
    ) -> torch.Tensor:
        """Adversarial images for ``x`` (``B×C×H×W`` in [0, 1]) with labels ``y`` ``[B]``; same device,
        within ``eps`` of ``x`` in the attack's norm, in [0, 1], carrying no autograd graph."""
        return self.generate(model, x, y, target, generator=generator, keys=keys).x_adv

    @abstractmethod
    def _run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        generator: torch.Generator | None,
        keys: Keys | None,
    ) -> AttackOutput:
        """The family's native algorithm on one non-empty batch, ``eps > 0`` (``backend="art"``
        runs ART's own attack object instead, in :meth:`generate`).

        Called by :meth:`generate` with the model in attack mode, gradients enabled, ``x``
        detached, ``y``, ``target`` and ``keys`` on ``x``'s device; random draws come from
        ``keys`` when given (then ``generator`` is ``None``), else from ``generator``.
        """

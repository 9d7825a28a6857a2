"""Attack metrics: measure what one attack did to a stream of batches.

Per attack × eps: clean accuracy, robust (adversarial) accuracy, success rate, mean drop
of the true-class probability, mean iterations to success, mean / max L∞ and L2
perturbation norms, wall time and images per second. :class:`AttackMetrics` accumulates
them batch by batch (sums stay on the device, no per-batch synchronisation; only plain
floats leave); :func:`robustood.evaluate.run_attack` (the engine) feeds it batch by batch.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import IncompatibleModelError, RobustoodError
from ..utils import format_eps
from .base import AttackOutput, norm_label

__all__ = ["PRECISIONS", "AttackMetrics", "AttackResult", "AttackSamples", "precision_context"]

PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class AttackSamples:
    """Kept inputs of one run (CPU NumPy): ``x`` and ``x_adv`` ``N×C×H×W`` float32 in [0, 1],
    labels ``y``, predictions and top-1 probabilities on clean and adversarial inputs, and the
    targets (``-1`` for an untargeted attack)."""

    x: np.ndarray
    y: np.ndarray
    x_adv: np.ndarray
    pred: np.ndarray
    conf: np.ndarray
    pred_adv: np.ndarray
    conf_adv: np.ndarray
    target: np.ndarray


@dataclass(frozen=True)
class AttackResult:
    """The measurements of one attack at one eps (plain floats; NaN where not applicable).

    - ``clean_accuracy`` / ``robust_accuracy``: top-1 accuracy on clean / adversarial inputs;
    - ``success_rate``: untargeted, the share of originally correct inputs now misclassified;
      targeted, the share of originally correct inputs (whose label is not the target) now
      classified as the target;
    - ``confidence_drop``: mean of p(true class | x) − p(true class | x_adv) over all inputs;
    - ``mean_iterations``: over successful inputs, the mean number of gradient steps until the
      iterate was first adversarial (0 = already at the start point; NaN for backends that
      cannot tell, e.g. ``art``);
    - ``linf_mean`` / ``linf_max`` / ``l2_mean`` / ``l2_max``: perturbation norms over all inputs,
      in [0, 1] pixel units;
    - ``seconds`` / ``images_per_second``: wall time of the whole run (clean pass, attack,
      adversarial pass).
    """

    attack: str
    name: str
    norm: str
    eps: float
    targeted: str
    backend: str
    precision: str
    n: int
    clean_accuracy: float
    robust_accuracy: float
    success_rate: float
    confidence_drop: float
    mean_iterations: float
    linf_mean: float
    linf_max: float
    l2_mean: float
    l2_max: float
    seconds: float
    images_per_second: float
    samples: AttackSamples | None = field(default=None, repr=False, compare=False)

    def rows(self) -> list[dict[str, Any]]:
        """One tidy row (snake_case keys, plain floats and strings); ``name``, ``norm``, ``backend``
        and ``precision`` stay on the result (the label carries name and norm)."""
        row = {k: v for k, v in asdict(self).items() if k not in ("samples", "name", "norm", "backend", "precision")}
        row["eps_text"] = format_eps(self.eps)
        order = ["attack", "eps_text", "eps"] + [k for k in row if k not in ("attack", "eps_text", "eps")]
        return [{k: row[k] for k in order}]


@contextlib.contextmanager
def precision_context(precision: str, device: torch.device, model: nn.Module | None = None) -> Iterator[None]:
    """``fp32``: nothing. ``bf16``: CUDA autocast to bfloat16 and a channels-last model, whose
    memory format is restored on exit.

    bf16 is refused off CUDA (CPU autocast is slow on most CPUs and MPS support varies).
    """
    if precision not in PRECISIONS:
        raise RobustoodError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        yield
        return
    if device.type != "cuda":
        raise RobustoodError(f"precision bf16 needs a CUDA device (got {device.type}); use fp32 here")
    restore = model is not None and not _channels_last(model)
    if model is not None:
        model.to(memory_format=torch.channels_last)
    try:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            yield
    finally:
        if restore:
            model.to(memory_format=torch.contiguous_format)  # type: ignore[union-attr]


def _channels_last(model: nn.Module) -> bool:
    """Whether the model's first 4-D parameter whose layouts differ is channels-last (``False`` if none)."""
    for p in model.parameters():
        if p.dim() == 4 and p.is_contiguous() != p.is_contiguous(memory_format=torch.channels_last):
            return p.is_contiguous(memory_format=torch.channels_last)
    return False


class AttackMetrics:
    """Running measurements of one attack, updated batch by batch.

    The caller owns batching, device moves, progress and timing; this class only does the
    arithmetic. Per-sample values stay on the batches' device (no host synchronisation per
    batch) and every metric is computed from them at the end in one reduction, in dataset
    order, so the numbers do not depend on how the inputs were batched or sharded across
    processes (:meth:`gather` pools the shards of a ``torchrun`` job). ``keep`` inputs (with
    their adversarial versions and predictions) are copied to the host for
    :attr:`AttackResult.samples`. ``class_names`` resolve a target class given by name, as
    :meth:`Attack.with_class_names` does, for the result's label.

    >>> metrics = AttackMetrics(attack)                                            # doctest: +SKIP
    >>> for x, y in batches:                                                       # doctest: +SKIP
    ...     logits = model(x).float()
    ...     out = attack.generate(model, x, y)
    ...     metrics.update(x, y, logits, out, model(out.x_adv).float())
    >>> metrics.result(seconds).robust_accuracy                                    # doctest: +SKIP
    """

    _COLUMNS = ("clean", "adv", "eligible", "success", "drop", "iters", "tracked", "linf", "l2")

    def __init__(self, attack: Any, *, keep: int = 0, class_names: Sequence[str] | None = None) -> None:
        if class_names is not None and hasattr(attack, "with_class_names"):
            attack = attack.with_class_names(list(class_names))
        self.attack = attack
        self.keep = int(keep)
        self._steps = int(getattr(attack, "steps", 1))
        self._cols: dict[str, list[torch.Tensor]] = {k: [] for k in self._COLUMNS}
        self._tracked_any = False
        self._kept: dict[str, list[np.ndarray]] = {}
        self._have_kept = 0
        self._broken_by: list[torch.Tensor] = []

    def update(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        logits: torch.Tensor,
        out: AttackOutput,
        logits_adv: torch.Tensor,
    ) -> None:
        """Add one batch: inputs ``x`` (``B×C×H×W``), labels ``y`` ``[B]``, the clean logits of ``x``
        (``B×K`` float), the attack's output and the logits of ``out.x_adv`` (``B×K`` float)."""
        with torch.no_grad():
            p = logits.softmax(1).gather(1, y[:, None])[:, 0]
            p_adv = logits_adv.softmax(1).gather(1, y[:, None])[:, 0]
            pred, pred_adv = logits.argmax(1), logits_adv.argmax(1)
            correct = pred == y
            eligible = correct if out.target is None else correct & (y != out.target)
            hit = pred_adv != y if out.target is None else pred_adv == out.target
            success = eligible & hit
            delta = (out.x_adv - x).flatten(1).double()
            cols = self._cols
            cols["clean"].append(correct)
            cols["adv"].append(pred_adv == y)
            cols["eligible"].append(eligible)
            cols["success"].append(success)
            cols["drop"].append((p - p_adv).double())
            cols["linf"].append(delta.abs().amax(1))
            cols["l2"].append(delta.norm(p=2, dim=1))
            if out.broken_by is not None:
                self._broken_by.append(out.broken_by)
            if out.first_success is not None:
                self._tracked_any = True
                first = out.first_success
                iters = torch.where(first >= 0, first, torch.full_like(first, self._steps))
                cols["iters"].append(torch.where(success, iters, 0).double())
                cols["tracked"].append(success)
            else:
                cols["iters"].append(torch.zeros_like(p, dtype=torch.float64))
                cols["tracked"].append(torch.zeros_like(success))
            if self._have_kept < self.keep:
                m = min(self.keep - self._have_kept, x.shape[0])
                target = out.target if out.target is not None else torch.full_like(y, -1)
                for key, arr in (
                    ("x", x),
                    ("y", y),
                    ("x_adv", out.x_adv),
                    ("pred", pred),
                    ("conf", logits.softmax(1).amax(1)),
                    ("pred_adv", pred_adv),
                    ("conf_adv", logits_adv.softmax(1).amax(1)),
                    ("target", target),
                ):
                    self._kept.setdefault(key, []).append(arr[:m].detach().cpu().numpy())
                self._have_kept += m

    def _column(self, key: str) -> torch.Tensor:
        parts = self._cols[key]
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)

    def gather(self) -> None:
        """Pool the per-sample values of every rank of a ``torchrun`` job, in dataset order (each
        rank measured one contiguous block of inputs); a no-op in a single process."""
        from ..distributed import all_gather_cat, all_reduce_sum, world

        w = world()
        if not w.distributed:
            return
        self._cols = {k: [all_gather_cat(self._column(k).cpu(), w)] for k in self._COLUMNS}
        ensembles, tracked = all_reduce_sum([len(self._broken_by), self._tracked_any], w)  # every rank calls it
        if ensembles:
            mine = torch.cat(self._broken_by).cpu() if self._broken_by else torch.zeros(0, dtype=torch.int64)
            self._broken_by = [all_gather_cat(mine, w)]
        self._tracked_any = bool(tracked)
        if self.keep > 0:
            kept: dict[str, list[np.ndarray]] = {}
            for key in ("x", "y", "x_adv", "pred", "conf", "pred_adv", "conf_adv", "target"):
                mine = self._kept.get(key)
                t = torch.from_numpy(np.concatenate(mine)) if mine else torch.zeros(0)
                kept[key] = [all_gather_cat(t, w)[: self.keep].numpy()]
            self._kept = kept if len(kept["y"][0]) else {}
            self._have_kept = len(kept["y"][0])

    def robust_flags(self) -> torch.Tensor:
        """Per input, in order: whether the adversarial input is still classified correctly (CPU bool)."""
        return self._column("adv").bool().cpu() if self._cols["adv"] else torch.zeros(0, dtype=torch.bool)

    def broken_by(self) -> torch.Tensor | None:
        """Per input, the position of the ensemble member that broke it (``-1``: none; ``None`` for a
        single attack), e.g. AutoAttack's APGD-CE 0, APGD-T 1, FAB-T 2, Square 3."""
        return torch.cat(self._broken_by).cpu() if self._broken_by else None

    def result(self, seconds: float, *, precision: str = "fp32") -> AttackResult:
        """The measurements so far (one host synchronisation); ``seconds`` is the caller's wall time."""
        col = {k: self._column(k) for k in self._COLUMNS}
        n = int(col["clean"].numel())

        def total(key: str) -> float:
            return float(col[key].double().sum()) if n else 0.0

        samples = None
        if self._kept:
            arrays = {k: np.concatenate(v) for k, v in self._kept.items()}
            arrays["x"], arrays["x_adv"] = arrays["x"].astype(np.float32), arrays["x_adv"].astype(np.float32)
            samples = AttackSamples(**arrays)
        attack = self.attack
        targeted = getattr(attack, "targeted", None)
        return AttackResult(
            attack=attack.label,
            name=attack.name,
            norm=norm_label(attack.norm),
            eps=float(attack.eps),
            targeted="" if targeted is None else str(targeted),
            backend=getattr(attack, "backend", "native"),
            precision=precision,
            n=n,
            clean_accuracy=_ratio(total("clean"), n),
            robust_accuracy=_ratio(total("adv"), n),
            success_rate=_ratio(total("success"), total("eligible")),
            confidence_drop=_ratio(total("drop"), n),
            mean_iterations=_ratio(total("iters"), total("tracked")) if self._tracked_any else math.nan,
            linf_mean=_ratio(total("linf"), n),
            linf_max=float(col["linf"].max()) if n else math.nan,
            l2_mean=_ratio(total("l2"), n),
            l2_max=float(col["l2"].max()) if n else math.nan,
            seconds=seconds,
            images_per_second=_ratio(n, seconds),
            samples=samples,
        )


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


def _check_classes(k: int, y_max: int, names: Sequence[str] | None) -> None:
    """Refuse a model whose ``k`` outputs do not match the dataset's classes or the labels."""
    if names is not None and k != len(names):
        raise IncompatibleModelError(
            f"the model outputs {k} classes but the dataset has {len(names)} ({', '.join(names)})"
        )
    if y_max >= k:
        raise IncompatibleModelError(
            f"the model outputs {k} classes but the labels go up to {y_max}; "
            "use a model trained on this dataset's classes"
        )

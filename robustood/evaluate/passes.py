"""The passes: one clean pass per input set and one attack pass per attack × eps, each a single
walk of :func:`~robustood.evaluate.loop.batches` feeding the accumulators that need it.

A pass never trains, never reseeds a global generator and never guesses a device: the
model and every batch are on ``device``; random draws come from the generator handed in.

Under ``torchrun`` every pass walks only this rank's block of whole batches and pools the
per-sample values of all ranks at its end (:mod:`robustood.distributed`), so what a pass
returns, and every metric computed from it, is the same on every rank and the same as in
one process.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ..distributed import all_gather_cat, all_reduce_sum
from ..errors import IncompatibleModelError, RobustoodError
from ..rng import Keys, accepts_keys
from .loop import batches, synchronize
from .plan import AttackPass

__all__ = [
    "AttackOutputs",
    "CleanOutputs",
    "DetectorAttackOutputs",
    "SqueezeTally",
    "attack_pass",
    "clean_pass",
    "detector_attack_pass",
    "score_pass",
]


class SqueezeTally:
    """Streaming counts of the feature-squeezing detector on one input set (clean or adversarial).

    Per batch it needs the labels, the clean predictions and the logits of the inputs the
    detector sees (clean or adversarial): one extra forward pass per squeezer.
    """

    def __init__(self, detector: Any) -> None:
        self.detector = detector
        self.n = self.flagged = self.squeezed_correct = self.successful = self.flagged_successful = 0
        self.evaded = 0

    def update(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor, pred_clean) -> None:
        scores, squeezed_pred = self.detector.squeeze_outputs(model, x, logits)
        flags = scores > self.detector.threshold_
        success = (pred_clean == y) & (logits.argmax(1) != y)
        self.n += int(y.numel())
        self.flagged += int(flags.sum())
        self.squeezed_correct += int((squeezed_pred == y).sum())
        self.successful += int(success.sum())
        self.flagged_successful += int((flags & success).sum())
        self.evaded += int(((logits.argmax(1) != y) & ~flags).sum())

    _COUNTS = ("n", "flagged", "squeezed_correct", "successful", "flagged_successful", "evaded")

    def reduce(self) -> SqueezeTally:
        """Sum the counts of every rank of a ``torchrun`` job (a no-op in one process)."""
        totals = all_reduce_sum([getattr(self, k) for k in self._COUNTS])
        for k, v in zip(self._COUNTS, totals, strict=True):
            setattr(self, k, int(v))
        return self

    def clean_metrics(self) -> dict[str, float]:
        """``false_positive_rate`` (clean inputs flagged), ``squeezed_clean_accuracy``, ``threshold``."""
        return {
            "false_positive_rate": _ratio(self.flagged, self.n),
            "squeezed_clean_accuracy": _ratio(self.squeezed_correct, self.n),
            "threshold": float(self.detector.threshold_),
        }

    def attack_metrics(self) -> dict[str, float]:
        """``detection_rate`` (adversarial inputs flagged), ``detection_rate_successful`` (flagged among
        those that turned a correct prediction wrong), ``squeezed_robust_accuracy`` and
        ``misclassified_undetected`` (inputs both misclassified and not flagged: the attacker's wins)."""
        return {
            "detection_rate": _ratio(self.flagged, self.n),
            "detection_rate_successful": _ratio(self.flagged_successful, self.successful),
            "squeezed_robust_accuracy": _ratio(self.squeezed_correct, self.n),
            "misclassified_undetected": _ratio(self.evaded, self.n),
        }


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


class ScoreSink:
    """Per-detector scores of one input set, collected batch by batch on the CPU (float32)."""

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = list(labels)
        self._parts: list[list[torch.Tensor]] = [[] for _ in self.labels]

    def update(self, scores: Sequence[torch.Tensor]) -> None:
        for part, s in zip(self._parts, scores, strict=True):
            part.append(s.detach().float().cpu())

    def result(self) -> dict[str, torch.Tensor]:
        """Every detector's scores of the whole set, in order (pooled over the ranks of a ``torchrun`` job)."""
        return {
            lab: all_gather_cat(torch.cat(p) if p else torch.empty(0))
            for lab, p in zip(self.labels, self._parts, strict=True)
        }


def check_logits(logits: torch.Tensor, what: str = "the model's outputs") -> torch.Tensor:
    """Float logits ``B×K`` that are all finite, as float32; else a clear :class:`RobustoodError`."""
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise IncompatibleModelError(f"{what} must be logits of shape B×classes, got {shape}")
    if not logits.is_floating_point():
        raise IncompatibleModelError(
            f"{what} are {str(logits.dtype).replace('torch.', '')}, not float logits; return the scores before argmax"
        )
    if not bool(torch.isfinite(logits).all()):
        raise RobustoodError(f"{what} hold NaN or Inf values; check the model's weights (a diverged training?)")
    return logits.float()


def _check_scores(scores: Sequence[torch.Tensor], labels: Sequence[str]) -> None:
    for lab, s in zip(labels, scores, strict=False):
        if isinstance(s, torch.Tensor) and s.is_floating_point() and not bool(torch.isfinite(s).all()):
            raise RobustoodError(f"detector {lab} gave NaN or Inf scores; check the model's outputs and the inputs")


def _check_outputs(logits: torch.Tensor, y: torch.Tensor, class_names: Sequence[str] | None) -> None:
    k = int(logits.shape[1])
    if class_names is not None and k != len(class_names):
        raise IncompatibleModelError(
            f"the model outputs {k} classes but the dataset has {len(class_names)} ({', '.join(class_names)})"
        )
    if len(y) and int(y.min()) < 0:
        raise RobustoodError(f"labels must be class indices 0..{k - 1}, got {int(y.min())}")
    if len(y) and int(y.max()) >= k:
        raise IncompatibleModelError(
            f"the model outputs {k} classes but the labels go up to {int(y.max())}; "
            "use a model trained on this dataset's classes"
        )


@dataclass
class CleanOutputs:
    """What the clean pass over the ID test split leaves: logits ``N×K`` (CPU float32) for the
    attack passes, the number of inputs and of correct predictions, every detector's scores,
    and the squeezing counts."""

    logits: torch.Tensor
    n: int
    correct: int
    scores: dict[str, torch.Tensor] = field(default_factory=dict)
    squeeze: SqueezeTally | None = None

    @property
    def accuracy(self) -> float:
        return _ratio(self.correct, self.n)


def _score(model, x, detectors, logits=None):
    from ..detectors import score_batch

    return score_batch(model, x, detectors, logits=logits)


def clean_pass(
    model: nn.Module,
    data: Dataset,
    *,
    device: torch.device,
    batch_size: int,
    progress: bool | None,
    desc: str,
    detectors: Sequence[Any] = (),
    labels: Sequence[str] = (),
    squeezer: Any | None = None,
    class_names: Sequence[str] | None = None,
) -> CleanOutputs:
    """One forward pass over labelled ID data: logits, accuracy, detector scores, squeezing counts."""
    sink = ScoreSink(labels)
    tally = SqueezeTally(squeezer) if squeezer is not None else None
    kept: list[torch.Tensor] = []
    n = correct = 0
    with torch.no_grad():
        for b in batches(data, batch_size=batch_size, device=device, desc=desc, progress=progress, shard=True):
            try:
                if detectors:
                    scores, logits = _score(model, b.x, detectors)
                else:
                    logits = model(b.x)
            except RuntimeError as exc:  # the first pass over the data: shapes that do not fit show here
                if "out of memory" in str(exc).lower():
                    raise
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise IncompatibleModelError(
                    f"the model fails on input images of shape {tuple(b.x.shape[1:])} (C×H×W): {first[:200]}"
                ) from None
            logits = check_logits(logits)
            _check_outputs(logits, b.y, class_names)
            if detectors:
                _check_scores(scores, labels)
                sink.update(scores)
            pred = logits.argmax(1)
            if tally is not None:
                tally.update(model, b.x, b.y, logits, pred)
            kept.append(logits.cpu())
            n += len(b)
            correct += int((pred == b.y).sum())
    logits_all = all_gather_cat(torch.cat(kept) if kept else torch.empty(0))
    n, correct = (int(v) for v in all_reduce_sum([n, correct]))
    if tally is not None:
        tally.reduce()
    return CleanOutputs(logits_all, n, correct, sink.result() if detectors else {}, tally)


def score_pass(
    model: nn.Module,
    data: Dataset,
    *,
    device: torch.device,
    batch_size: int,
    progress: bool | None,
    desc: str,
    detectors: Sequence[Any],
    labels: Sequence[str],
    shape: tuple[int, ...] | None = None,
) -> dict[str, torch.Tensor]:
    """Every detector's scores (CPU float32) over an input set whose labels are not needed."""
    sink = ScoreSink(labels)
    for b in batches(data, batch_size=batch_size, device=device, shape=shape, desc=desc, progress=progress, shard=True):
        scores, logits = _score(model, b.x, detectors)
        if logits is not None:
            check_logits(logits)
        _check_scores(scores, labels)
        sink.update(scores)
    return sink.result()


@dataclass
class AttackOutputs:
    """What one attack pass leaves: the attack's measurements, the detectors' scores of the
    adversarial inputs (when ``adv:`` OOD sets need them) and the squeezing counts."""

    result: Any
    scores: dict[str, torch.Tensor] = field(default_factory=dict)
    squeeze: SqueezeTally | None = None
    robust: torch.Tensor | None = None
    broken_by: torch.Tensor | None = None


def attack_pass(
    model: nn.Module,
    data: Dataset,
    plan: AttackPass,
    *,
    clean_logits: torch.Tensor,
    device: torch.device,
    batch_size: int,
    progress: bool | None,
    desc: str,
    detectors: Sequence[Any] = (),
    labels: Sequence[str] = (),
    squeezer: Any | None = None,
    keep: int = 0,
    class_names: Sequence[str] | None = None,
    precision: str = "fp32",
) -> AttackOutputs:
    """Attack every batch once; feed the attack metrics, the detectors and the squeezing tally.

    Random draws (random starts, random targets) come from each input's own streams, keyed by
    the attack's ``seed`` and the input's index in ``data``, so a pass repeats exactly whatever
    the batch size (an attack object whose ``generate`` takes no ``keys`` gets one generator
    seeded with its ``seed`` for the whole pass).
    """
    from ..attacks import AttackMetrics

    attack = plan.attack
    metrics = AttackMetrics(attack, keep=keep, class_names=class_names)
    sink = ScoreSink(labels)
    tally = SqueezeTally(squeezer) if squeezer is not None else None
    seed = getattr(attack, "seed", None)
    # per-input keys; attack objects without a seed draw as they like, those without keys= from one generator
    keyed = seed is not None and accepts_keys(attack.generate)
    seeded = {"generator": torch.Generator(device=device).manual_seed(int(seed))} if seed is not None else {}
    if len(clean_logits) != len(data):  # type: ignore[arg-type]
        raise RobustoodError(f"clean_logits has {len(clean_logits)} rows for {len(data)} inputs")  # type: ignore[arg-type]
    synchronize(device)
    t0 = time.perf_counter()
    for b in batches(data, batch_size=batch_size, device=device, desc=desc, progress=progress, shard=True):
        logits = clean_logits[b.start : b.start + len(b)].to(device, non_blocking=True)
        try:
            if keyed:
                seeded = {"keys": Keys(int(seed), torch.arange(b.start, b.start + len(b), device=device))}
            out = attack.generate(model, b.x, b.y, **seeded)
        except RuntimeError as exc:
            if "does not require grad" not in str(exc) and "does not have a grad_fn" not in str(exc):
                raise
            raise IncompatibleModelError(
                "the model's outputs carry no gradient with respect to its input (a torch.no_grad() or "
                ".detach() in forward?); gradient attacks need one"
            ) from None
        with torch.no_grad():
            if detectors:
                scores, logits_adv = _score(model, out.x_adv, detectors)
                _check_scores(scores, labels)
                sink.update(scores)
            else:
                logits_adv = model(out.x_adv)
            logits_adv = check_logits(logits_adv, "the model's outputs on adversarial inputs")
            metrics.update(b.x, b.y, logits, out, logits_adv)
            if tally is not None:
                tally.update(model, out.x_adv, b.y, logits_adv, logits.argmax(1))
    synchronize(device)
    metrics.gather()
    scores = sink.result() if detectors else {}
    if tally is not None:
        tally.reduce()
    result = metrics.result(time.perf_counter() - t0, precision=precision)
    return AttackOutputs(result, scores, tally, metrics.robust_flags(), metrics.broken_by())


@dataclass
class DetectorAttackOutputs:
    """What one detector-attack pass leaves: the detector's scores ``[N]`` of the attacked
    inputs (CPU float32), and the clean and attacked inputs when kept."""

    scores: torch.Tensor
    x: torch.Tensor | None = None
    x_adv: torch.Tensor | None = None
    seconds: float = 0.0


def detector_attack_pass(
    model: nn.Module,
    data: Dataset,
    detector: Any,
    attack: Any,
    *,
    raise_score: bool,
    device: torch.device,
    batch_size: int,
    progress: bool | None,
    desc: str,
    shape: tuple[int, ...] | None = None,
    keep_inputs: bool = False,
    clean_scores: torch.Tensor | None = None,
) -> DetectorAttackOutputs:
    """Attack one detector's score on every batch of ``data`` (a
    :class:`~robustood.detectors.attack.DetectorAttack`): ``raise_score`` for ID inputs, not
    for OOD inputs.

    The scores of the attacked inputs are those the attack computes for its best iterate
    (:func:`~robustood.detectors.differentiable.differentiable_score`, equal to the
    detector's own scores), or the clean ones where the clean input is kept; ``clean_scores``
    (``[N]``, the detector's scores of ``data``) save the attack's forward pass at the clean
    inputs. Random starts come from each input's own stream, keyed by the attack's ``seed`` and
    the input's index in ``data``.
    """
    parts: list[torch.Tensor] = []
    xs: list[torch.Tensor] = []
    advs: list[torch.Tensor] = []
    synchronize(device)
    t0 = time.perf_counter()
    for b in batches(data, batch_size=batch_size, device=device, shape=shape, desc=desc, progress=progress, shard=True):
        clean = clean_scores[b.start : b.start + len(b)] if clean_scores is not None else None
        keys = Keys(int(attack.seed), torch.arange(b.start, b.start + len(b), device=device))
        x_adv, scores = attack.run(model, detector, b.x, raise_score=raise_score, keys=keys, clean_scores=clean)
        parts.append(scores.detach().float().cpu())
        if keep_inputs:
            xs.append(b.x.cpu())
            advs.append(x_adv.cpu())
    synchronize(device)
    out = DetectorAttackOutputs(all_gather_cat(torch.cat(parts) if parts else torch.empty(0)))
    if keep_inputs:
        x = all_gather_cat(torch.cat(xs) if xs else torch.empty(0))
        if len(x):
            out.x, out.x_adv = x, all_gather_cat(torch.cat(advs) if advs else torch.empty(0))
    out.seconds = time.perf_counter() - t0
    return out

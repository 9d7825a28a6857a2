"""Per-model evaluation: the units (clean, one per OOD set, one per attack pass), each computed
once, stored as tidy rows, and resumed from a :class:`~robustood.store.ResultStore`."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import DatasetBundle
from ..report import Row
from ..store import ResultStore
from .passes import CleanOutputs, attack_pass, clean_pass, detector_attack_pass, score_pass
from .plan import AttackPass, Plan

__all__ = [
    "ATTACK_METRICS",
    "CLEAN",
    "DETECTOR_ATTACK_SIDES",
    "OOD_METRICS",
    "Context",
    "ModelRun",
    "fingerprint",
    "robust_metric",
    "weights_fingerprint",
]

CLEAN = "test"
"""The input set name of the clean ID test split in report rows."""

ATTACK_METRICS = (
    "robust_accuracy",
    "success_rate",
    "confidence_drop",
    "mean_iterations",
    "linf_mean",
    "linf_max",
    "l2_mean",
    "l2_max",
    "seconds",
    "images_per_second",
)
OOD_METRICS = ("auroc", "aupr_in", "aupr_out", "fpr_at_95_tpr", "detection_accuracy")
SQUEEZE = "squeeze"

log = logging.getLogger("robustood")

#: ``on_unit(model label, unit name, its rows, seconds)``: called once per finished unit.
UnitCallback = Callable[[str, str, list[Row], float], None]

DETECTOR_ATTACK_SIDES = ("out", "in", "both")
"""Which inputs a detector attack perturbs: only the OOD set, only the ID test inputs, or both."""


def robust_metric(metric: str, side: str) -> str:
    """The row metric of an OOD metric under a detector attack: ``robust_auroc`` (side ``both``),
    ``robust_in_auroc`` (only ID inputs attacked), ``robust_out_auroc`` (only OOD inputs attacked)."""
    return f"robust_{metric}" if side == "both" else f"robust_{side}_{metric}"


def fingerprint(*parts: Any) -> str:
    """A short stable hash of ``parts`` (their ``str``), naming a configuration in store keys."""
    text = json.dumps([str(p) for p in parts], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def weights_fingerprint(model: nn.Module) -> str:
    """A short hash of a model's weights and buffers (names, dtypes, shapes, values).

    Stored units are keyed by it, so a model file changed in place (same path, other
    weights) is evaluated again instead of being given the old model's rows.
    """
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        if not isinstance(t, torch.Tensor):
            continue
        t = t.detach()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        if t.device.type != "meta":
            h.update(t.cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Context:
    """How every pass of one evaluation runs (decided once, in :func:`~robustood.evaluate`)."""

    device: torch.device
    batch_size: int
    progress: bool | None
    store: ResultStore
    prefix: str
    keep: int = 0
    keep_scores: bool = False
    ood_size: int | None = None
    precision: str = "fp32"
    on_unit: UnitCallback | None = None
    keep_inputs: bool = False

    @property
    def artifacts(self) -> bool:
        """Whether per-sample outputs are asked for (then stored units are recomputed to produce them)."""
        return self.keep > 0 or self.keep_scores


class ModelRun:
    """Every unit of one model; a unit's passes run only when the store does not hold it."""

    def __init__(self, label: str, model: nn.Module, bundle: DatasetBundle, plan: Plan, ctx: Context) -> None:
        self.label, self.model, self.bundle, self.plan, self.ctx = label, model, bundle, plan, ctx
        self.weights = weights_fingerprint(model)
        self._clean: CleanOutputs | None = None
        self._detectors: list[Any] | None = None
        self._labels: list[str] = []
        self.thresholds: dict[str, float] = {}
        self._squeezer: Any = None
        #: kept outputs of this run: attack results by pass key, per-sample scores by set
        self.attack_results: dict[str, Any] = {}
        self.scores: dict[str, dict[str, np.ndarray]] = {}
        #: kept outputs of detector attacks: set → {"scores": {"det@attack": …}, "x": …, "x_adv": {…}}
        self.attacked: dict[str, dict[str, Any]] = {}
        self._ood_scores: dict[str, dict[str, torch.Tensor]] = {}

    # ------------------------------------------------------------------ shared state, built on first use
    def _kw(self, desc: str) -> dict[str, Any]:
        return {
            "device": self.ctx.device,
            "batch_size": self.ctx.batch_size,
            "progress": self.ctx.progress,
            "desc": f"{self.label}: {desc}",
        }

    def detectors(self) -> list[Any]:
        """The plan's detectors, fitted on this model (a user's fitted detector is used as it is)."""
        if self._detectors is None:
            from ..detectors import detector_labels, fit_detectors

            dets = [d if getattr(d, "is_fitted", False) else copy.deepcopy(d) for d in self.plan.detectors]
            fit_detectors(
                dets,
                self.model,
                self.bundle.train,
                device=self.ctx.device,
                batch_size=self.ctx.batch_size,
                progress=self.ctx.progress,
            )
            self._detectors, self._labels = dets, detector_labels(dets)
        return self._detectors

    def squeezer(self) -> Any:
        """The plan's squeezing detector, calibrated on this model and the validation split."""
        if self._squeezer is None and self.plan.squeeze is not None:
            self._squeezer = copy.deepcopy(self.plan.squeeze).fit(
                self.model, self.bundle.val, self.ctx.device, batch_size=self.ctx.batch_size, progress=self.ctx.progress
            )
        return self._squeezer

    def clean(self) -> CleanOutputs:
        """The clean pass over the test split (and, with detectors, the validation pass for thresholds)."""
        if self._clean is None:
            from ..detectors import calibrate_threshold

            dets = self.detectors() if self.plan.detectors else []
            self._clean = clean_pass(
                self.model,
                self.bundle.test,
                detectors=dets,
                labels=self._labels,
                squeezer=self.squeezer(),
                class_names=self.bundle.info.class_names,
                **self._kw("clean"),
            )
            if dets and len(self.bundle.val) > 0:  # type: ignore[arg-type]
                val = score_pass(self.model, self.bundle.val, detectors=dets, labels=self._labels, **self._kw("val"))
                self.thresholds = {lab: calibrate_threshold(s) for lab, s in val.items()}
            if self.ctx.keep_scores and dets:
                self.scores["id"] = {lab: s.double().numpy() for lab, s in self._clean.scores.items()}
        return self._clean

    # ------------------------------------------------------------------ rows and the store
    def _unit(self, name: str) -> str:
        return f"{self.ctx.prefix}|{self.label}|{self.weights}|{name}"

    def _stored(self, unit: str) -> list[Row] | None:
        return None if self.ctx.artifacts else self.ctx.store.get(self._unit(unit))

    def _row(self, input_set: str, metric: str, value: float, attack: str = "", eps=None, detector: str = "") -> Row:
        return Row(self.label, input_set, attack, eps, metric, float(value), detector)

    def _ood_rows(self, set_name: str, scores: dict[str, torch.Tensor]) -> list[Row]:
        from ..detectors import ood_metrics

        c = self.clean()
        rows = []
        for lab, s_ood in scores.items():
            m = ood_metrics(c.scores[lab], s_ood, threshold=self.thresholds.get(lab))
            rows += [self._row(set_name, k, m[k], detector=lab) for k in OOD_METRICS if k in m]
        n = len(next(iter(scores.values()))) if scores else 0
        rows.append(self._row(set_name, "n", n))
        if self.ctx.keep_scores:
            self.scores[set_name] = {lab: s.double().numpy() for lab, s in scores.items()}
        return rows

    def _finished(self, name: str, rows: list[Row], start: float) -> list[Row]:
        if self.ctx.on_unit is not None:
            self.ctx.on_unit(self.label, name, rows, time.perf_counter() - start)
        return rows

    # ------------------------------------------------------------------ the units
    def clean_unit(self) -> list[Row]:
        unit, start = "clean", time.perf_counter()
        if (rows := self._stored(unit)) is not None:
            return self._finished("clean (stored)", rows, start)
        c = self.clean()
        rows = [self._row(CLEAN, "accuracy", c.accuracy), self._row(CLEAN, "n", c.n)]
        if c.squeeze is not None:
            rows += [self._row(CLEAN, k, v, detector=SQUEEZE) for k, v in c.squeeze.clean_metrics().items()]
        return self._finished("clean", self.ctx.store.put(self._unit(unit), rows), start)

    def ood_units(self) -> list[Row]:
        rows: list[Row] = []
        for set_name, ds in self.plan.ood.items():
            unit, start = f"ood:{set_name}:{fingerprint(*self.plan.detectors)}", time.perf_counter()
            if (done := self._stored(unit)) is not None:
                rows += self._finished(f"ood {set_name} (stored)", done, start)
                continue
            self.clean()
            scores = score_pass(
                self.model,
                ds,
                detectors=self.detectors(),
                labels=self._labels,
                shape=self.bundle.info.input_shape,
                **self._kw(set_name),
            )
            self._ood_scores[set_name] = scores
            new = self.ctx.store.put(self._unit(unit), self._ood_rows(set_name, scores))
            rows += self._finished(f"ood {set_name}", new, start)
        return rows

    def _clean_ood_scores(self, set_name: str) -> dict[str, torch.Tensor]:
        """Every detector's clean scores of an OOD set (from its OOD unit, else scored again)."""
        if set_name not in self._ood_scores:
            self.clean()
            self._ood_scores[set_name] = score_pass(
                self.model,
                self.plan.ood[set_name],
                detectors=self.detectors(),
                labels=self._labels,
                shape=self.bundle.info.input_shape,
                **self._kw(set_name),
            )
        return self._ood_scores[set_name]

    def detector_attack_units(self) -> list[Row]:
        """One unit per detector attack: every detector's score attacked on the ID test inputs
        (raised) and on each plain OOD set (lowered); AUROC … with side out, in and both."""
        rows: list[Row] = []
        for atk in self.plan.detector_attacks:
            unit = f"detattack:{atk.attack!r}:{fingerprint(*self.plan.detectors, *self.plan.ood)}"
            start = time.perf_counter()
            if (done := self._stored(unit)) is not None:
                rows += self._finished(f"detector attack {atk.key} (stored)", done, start)
                continue
            new = self.ctx.store.put(self._unit(unit), self._detector_attack(atk))
            rows += self._finished(f"detector attack {atk.key}", new, start)
        return rows

    def _detector_attack(self, atk: Any) -> list[Row]:
        from ..detectors import ood_metrics

        c = self.clean()
        dets = self.detectors()
        keep = self.ctx.keep_scores
        kw = {"keep_inputs": keep and self.ctx.keep_inputs}
        rows: list[Row] = []
        for d, lab in zip(dets, self._labels, strict=True):
            name = f"{lab}@{atk.key}"
            adv_id = detector_attack_pass(
                self.model,
                self.bundle.test,
                d,
                atk,
                raise_score=True,
                clean_scores=c.scores[lab],
                **kw,
                **self._kw(f"{name} id"),
            )
            if keep:
                self._keep_attacked("id", name, adv_id)
            for set_name, ds in self.plan.ood.items():
                clean_ood = self._clean_ood_scores(set_name)[lab]
                adv_ood = detector_attack_pass(
                    self.model,
                    ds,
                    d,
                    atk,
                    raise_score=False,
                    shape=self.bundle.info.input_shape,
                    clean_scores=clean_ood,
                    **kw,
                    **self._kw(f"{name} {set_name}"),
                )
                if keep:
                    self._keep_attacked(set_name, name, adv_ood)
                pairs = {
                    "out": (c.scores[lab], adv_ood.scores),
                    "in": (adv_id.scores, clean_ood),
                    "both": (adv_id.scores, adv_ood.scores),
                }
                for side, (s_id, s_ood) in pairs.items():
                    m = ood_metrics(s_id, s_ood, threshold=self.thresholds.get(lab))
                    rows += [
                        self._row(set_name, robust_metric(k, side), m[k], atk.label, atk.eps, lab)
                        for k in OOD_METRICS
                        if k in m
                    ]
        return rows

    def _keep_attacked(self, set_name: str, name: str, out: Any) -> None:
        kept = self.attacked.setdefault(set_name, {"scores": {}, "x_adv": {}})
        kept["scores"][name] = out.scores.double().numpy()
        if out.x is not None:
            kept.setdefault("x", out.x.numpy())
            kept["x_adv"][name] = out.x_adv.numpy()

    def check_unit(self) -> list[Row]:
        """The gradient-masking checks on the model (one batch of clean test inputs), when attacks are measured."""
        if not self.plan.measured:
            return []
        unit = "checks"
        if (rows := self._stored(unit)) is not None:
            return rows
        from ..attacks.masking import model_checks
        from .loop import batches

        b = next(iter(batches(self.bundle.test, batch_size=min(self.ctx.batch_size, 256), device=self.ctx.device)))
        checks = model_checks(self.model, b.x, b.y)
        return self.ctx.store.put(self._unit(unit), [self._row(CLEAN, k, v) for k, v in checks.items()])

    def _attack_unit(self, p: AttackPass) -> str:
        dets = tuple(self.plan.detectors) if p.adv_sets else ()
        return f"attack:{p.attack!r}:{fingerprint(p.measured, list(p.adv_sets), *dets, self.plan.squeeze or '')}"

    def attack_units(self) -> list[Row]:
        rows: list[Row] = []
        flags: dict[str, torch.Tensor] = {}
        for p in self.plan.passes:
            squeeze = self.plan.squeeze is not None and p.measured
            unit = self._attack_unit(p)
            start = time.perf_counter()
            if (done := self._stored(unit)) is not None:
                rows += self._finished(f"{p.key} (stored)", done, start)
                extra = self.ctx.store.extra(self._unit(unit))
                if p.measured and extra is not None and "robust" in extra:
                    flags[p.key] = unpack_flags(extra["robust"], int(extra["n"]))
                continue
            new, robust = self._attack(p, squeeze)
            extra = None
            if p.measured and robust is not None:
                flags[p.key] = robust
                extra = {"robust": pack_flags(robust), "n": int(robust.numel())}
            rows += self._finished(p.key, self.ctx.store.put(self._unit(unit), new, extra), start)
        return rows + self.worst_units(flags)

    def worst_units(self, flags: dict[str, torch.Tensor]) -> list[Row]:
        """Per eps (and norm) with two or more measured attacks: the worst case over them, sample by
        sample (``robust_accuracy`` of attack ``worst``: an input counts as robust only if it
        survives every attack run at that eps), and ``black_box_only``, the share of inputs only
        the black-box Square attack broke."""
        from ..attacks.base import norm_label

        groups: dict[tuple[float, float], list[AttackPass]] = {}
        for p in self.plan.measured:
            groups.setdefault((float(getattr(p.attack, "norm", math.inf)), float(p.attack.eps)), []).append(p)
        norms_at = {}
        for norm, eps in groups:
            norms_at.setdefault(eps, set()).add(norm)
        rows: list[Row] = []
        for (norm, eps), passes in groups.items():
            if len({p.key for p in passes}) < 2:
                continue
            label = "worst" if len(norms_at[eps]) == 1 else f"worst-{norm_label(norm)}"
            unit = f"worst:{fingerprint(*(self._attack_unit(p) for p in passes))}"
            if (done := self._stored(unit)) is not None:
                rows += done
                continue
            masks = []
            for p in passes:
                if p.key not in flags:  # stored by an older version, without its verdicts: measure again
                    new, robust = self._attack(p, self.plan.squeeze is not None)
                    flags[p.key] = robust
                    extra = {"robust": pack_flags(robust), "n": int(robust.numel())}
                    self.ctx.store.put(self._unit(self._attack_unit(p)), new, extra)
                masks.append(flags[p.key])
            robust = torch.stack(masks).all(0)
            new = [self._row(CLEAN, "robust_accuracy", float(robust.double().mean()), label, eps)]
            black = [m for p, m in zip(passes, masks, strict=True) if getattr(p.attack, "name", "") == "square"]
            white = [m for p, m in zip(passes, masks, strict=True) if getattr(p.attack, "name", "") != "square"]
            if black and white:
                only = torch.stack(white).all(0) & ~torch.stack(black).all(0)
                new.append(self._row(CLEAN, "black_box_only", float(only.double().mean()), label, eps))
            rows += self.ctx.store.put(self._unit(unit), new)
        return rows

    def _attack(self, p: AttackPass, squeeze: bool) -> tuple[list[Row], torch.Tensor | None]:
        c = self.clean()
        dets = self.detectors() if p.adv_sets else []
        out = attack_pass(
            self.model,
            self.bundle.test,
            p,
            clean_logits=c.logits,
            detectors=dets,
            labels=self._labels if dets else (),
            squeezer=self.squeezer() if squeeze else None,
            keep=self.ctx.keep if p.measured else 0,
            class_names=self.bundle.info.class_names,
            precision=self.ctx.precision,
            **self._kw(p.key),
        )
        result, attack, eps = out.result, out.result.attack, float(p.attack.eps)
        rows: list[Row] = []
        if p.measured:
            self.attack_results[p.key] = result
            rows += [self._row(CLEAN, m, getattr(result, m), attack, eps) for m in ATTACK_METRICS]
            if out.broken_by is not None and getattr(p.attack, "name", "") == "autoattack":
                from ..attacks.autoattack import STANDARD

                share = float((out.broken_by == STANDARD.index("square")).double().mean())
                rows.append(self._row(CLEAN, "black_box_only", share, attack, eps))
        if out.squeeze is not None:
            rows += [self._row(CLEAN, k, v, attack, eps, SQUEEZE) for k, v in out.squeeze.attack_metrics().items()]
        for set_name in p.adv_sets:
            scores = out.scores
            if self.ctx.ood_size is not None:
                scores = {lab: s[: self.ctx.ood_size] for lab, s in scores.items()}
            rows += self._ood_rows(set_name, scores)
        return rows, out.robust

    def run(self) -> list[Row]:
        """Every unit, in report order: clean, OOD sets, attack passes, worst cases, detector attacks,
        the masking checks."""
        return [
            *self.clean_unit(),
            *self.ood_units(),
            *self.attack_units(),
            *self.detector_attack_units(),
            *self.check_unit(),
        ]


def pack_flags(flags: torch.Tensor) -> str:
    """Per-sample booleans as hexadecimal text (for the store)."""
    return np.packbits(flags.cpu().numpy().astype(np.uint8)).tobytes().hex()


def unpack_flags(text: str, n: int) -> torch.Tensor:
    """The inverse of :func:`pack_flags`."""
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(text), dtype=np.uint8))[:n]
    return torch.from_numpy(bits.astype(bool))

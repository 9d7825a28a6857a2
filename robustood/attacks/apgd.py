"""Auto-PGD (APGD): APGD-CE, APGD-DLR and APGD-T (targeted DLR), natively on device tensors.

Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML 2020 (https://arxiv.org/abs/2003.01690). The algorithm and
its defaults are those of the reference implementation (``fra31/auto-attack``, on the
package index as ``pyautoattack``), step for step:

- start: a random point on the eps sphere (L∞: ``x + eps·t/‖t‖∞``, ``t`` uniform in
  [−1, 1]; L2: ``x + eps·t/‖t‖₂``, ``t`` Gaussian), clipped to [0, 1];
- step size ``2·eps`` per input, momentum 0.75 (none on the first step):
  ``z = P(x_k + η·sign(g))`` (L∞; ``η·g/‖g‖₂`` for L2) and
  ``x_{k+1} = P(x_k + 0.75·(z − x_k) + 0.25·(x_k − x_{k−1}))``;
- checkpoints after ``0.22·N`` iterations, then every ``max(k − 0.03·N, 0.06·N)``; at
  each, an input whose loss increased in at most 75 % of the steps since the last
  checkpoint, or whose step size was not reduced last time and whose best loss did not
  improve, halves its step size and restarts from its best point;
- losses: cross-entropy (APGD-CE), the DLR loss (APGD-DLR) and the targeted DLR loss
  against each of the ``n_target_classes`` most likely wrong classes (APGD-T); every
  variant counts an input as broken when its prediction leaves the true class.

Speed without changing a verdict: each input's trajectory depends on nothing but its own
start point, so an input leaves the batch as soon as an iterate is misclassified (its
verdict is then final), and a target class or restart runs only on the inputs every
earlier one failed on. The random starts are drawn, as the reference draws them, from one
CPU generator seeded per call, for the inputs still robust, so equal verdicts give equal
starts; or, with keys, input ``i``'s start of restart ``r`` from its own stream
``("apgd-start", loss, target rank, r)``, whatever batch it is in. On CUDA the batch is
compacted every few iterations (one synchronisation); on the CPU, where nothing needs
synchronising, after every iteration that broke an input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import RobustoodError
from ..rng import Keys
from .base import Attack, AttackOutput, call_seed, draw_seed

__all__ = ["APGD", "apgd", "apgd_run", "dlr_loss", "dlr_loss_targeted", "draw_seed", "num_classes"]

LOSSES = ("ce", "dlr", "dlr-targeted")


def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The difference-of-logits-ratio loss per input: ``−(z_y − max_{i≠y} z_i) / (z_π1 − z_π3)``."""
    top = logits.topk(3, dim=1).values
    z_y = logits.gather(1, y[:, None])[:, 0]
    first_is_y = logits.argmax(1) == y
    other = torch.where(first_is_y, top[:, 1], top[:, 0])
    return -(z_y - other) / (top[:, 0] - top[:, 2] + 1e-12)


def dlr_loss_targeted(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The targeted DLR loss: ``−(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2)``."""
    top = logits.topk(4, dim=1).values
    z_y = logits.gather(1, y[:, None])[:, 0]
    z_t = logits.gather(1, target[:, None])[:, 0]
    return -(z_y - z_t) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


def num_classes(model: nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad():
        return int(model(x[:1]).shape[1])


def compact_every(device: torch.device) -> int:
    """How often (in iterations) finished inputs leave the batch: every iteration on the CPU
    (no synchronisation to pay), every 8 elsewhere (one synchronisation each time)."""
    return 1 if device.type == "cpu" else 8


def _view(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


def _normalize(v: torch.Tensor, norm: float) -> torch.Tensor:
    flat = v.flatten(1)
    t = flat.abs().amax(1) if math.isinf(norm) else flat.pow(2).sum(1).sqrt()
    return v / (_view(t, v) + 1e-12)


def _l2(v: torch.Tensor) -> torch.Tensor:
    return _view(v.flatten(1).pow(2).sum(1).sqrt(), v)


def _loss_grad(
    model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, loss: str, target: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits, per-input loss and the gradient of the summed loss at ``x_adv`` (one forward, one backward)."""
    x_adv = x_adv.detach().requires_grad_(True)
    logits = model(x_adv)
    if loss == "ce":
        per = F.cross_entropy(logits, y, reduction="none")
    elif loss == "dlr":
        per = dlr_loss(logits, y)
    else:
        per = dlr_loss_targeted(logits, y, target)  # type: ignore[arg-type]
    (grad,) = torch.autograd.grad(per.sum(), x_adv)
    return logits.detach(), per.detach(), grad.detach()


def apgd_run(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    norm: float,
    n_iter: int = 100,
    loss: str = "ce",
    target: torch.Tensor | None = None,
    rho: float = 0.75,
    cpu_generator: torch.Generator | None = None,
    start: torch.Tensor | None = None,
    keys: Keys | None = None,
    stream: tuple[object, ...] = ("apgd-start",),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One APGD run (the reference's ``attack_single_run``) on inputs ``x`` ``B×C×H×W`` in [0, 1].

    Returns ``(fooled [B] bool, x_adv, first)``: which inputs had a misclassified iterate, that
    iterate (the input itself where none was) and the iteration it came at (0 = the start
    point, ``-1`` if none). ``start`` replaces the random start point (a point, not a
    perturbation); else it is drawn from ``keys``' ``stream`` (one key per input) if given,
    or from ``cpu_generator``. Stops early for an input once it is fooled.
    """
    dev = x.device
    b = x.shape[0]
    if start is None and keys is not None:
        shape = tuple(x.shape[1:])
        t = 2 * keys.uniform(shape, *stream) - 1 if math.isinf(norm) else keys.normal(shape, *stream)
        x_adv = x + eps * torch.ones_like(x) * _normalize(t.to(x), norm)
    elif start is None:
        if math.isinf(norm):
            t = 2 * torch.rand(x.shape, generator=cpu_generator).to(dev) - 1
        else:
            t = torch.randn(x.shape, generator=cpu_generator).to(dev)
        x_adv = x + eps * torch.ones_like(x) * _normalize(t, norm)
    else:
        x_adv = start.to(x)
    x_adv = x_adv.clamp(0.0, 1.0)

    out = x.clone()
    fooled_all = torch.zeros(b, dtype=torch.bool, device=dev)
    first_all = torch.full((b,), -1, dtype=torch.long, device=dev)
    idx = torch.arange(b, device=dev)

    n_iter_2 = max(int(0.22 * n_iter), 1)
    n_iter_min = max(int(0.06 * n_iter), 1)
    size_decr = max(int(0.03 * n_iter), 1)

    logits, loss_now, grad = _loss_grad(model, x_adv, y, loss, target)
    done = logits.argmax(1) != y
    best_adv = x_adv.clone()
    first = torch.where(done, 0, -1)
    x_best, grad_best, loss_best = x_adv.clone(), grad.clone(), loss_now.clone()
    step = torch.full((b, *([1] * (x.dim() - 1))), 2.0 * eps, device=dev, dtype=x.dtype)
    x_adv_old = x_adv.clone()
    loss_steps = torch.zeros((b, n_iter), device=dev, dtype=loss_now.dtype)
    loss_best_last = loss_best.clone()
    reduced_last = torch.ones(b, dtype=torch.bool, device=dev)
    state = [x, y, x_adv, x_adv_old, grad, x_best, grad_best, loss_best, step, loss_steps, loss_best_last]
    state += [reduced_last, best_adv, first, done]
    if target is not None:
        state.append(target)

    def compact(keep: torch.Tensor) -> None:
        nonlocal idx, state
        leave = ~keep
        gone = idx[leave]
        out[gone] = state[12][leave]
        fooled_all[gone] = True
        first_all[gone] = state[13][leave]
        idx = idx[keep]
        state = [s[keep] for s in state]

    every = compact_every(dev)
    counter3, k = 0, n_iter_2
    lo_hi = math.isinf(norm)
    for i in range(n_iter):
        if (i % every == 0) and bool(state[14].any()):
            compact(~state[14])
            if idx.numel() == 0:
                break
        x, y, x_adv, x_adv_old, grad, x_best, grad_best, loss_best, step, loss_steps, loss_best_last = state[:11]
        reduced_last, best_adv, first, done = state[11:15]
        tgt = state[15] if target is not None else None
        with torch.no_grad():
            grad2 = x_adv - x_adv_old
            x_adv_old = x_adv
            a = 0.75 if i > 0 else 1.0
            if lo_hi:
                lo, hi = x - eps, x + eps
                z = torch.clamp(torch.min(torch.max(x_adv + step * torch.sign(grad), lo), hi), 0.0, 1.0)
                z = torch.clamp(torch.min(torch.max(x_adv + (z - x_adv) * a + grad2 * (1 - a), lo), hi), 0.0, 1.0)
            else:
                z = x_adv + step * _normalize(grad, norm)
                z = torch.clamp(x + _normalize(z - x, norm) * torch.clamp(_l2(z - x), max=eps), 0.0, 1.0)
                z = x_adv + (z - x_adv) * a + grad2 * (1 - a)
                z = torch.clamp(x + _normalize(z - x, norm) * torch.clamp(_l2(z - x), max=eps), 0.0, 1.0)
            x_adv = z
        logits, loss_now, grad = _loss_grad(model, x_adv, y, loss, tgt)
        with torch.no_grad():
            wrong = logits.argmax(1) != y
            best_adv = torch.where(_view(wrong, x_adv), x_adv, best_adv)
            first = torch.where(wrong & (first < 0), i + 1, first)
            done = done | wrong
            loss_steps[:, i] = loss_now
            better = loss_now > loss_best
            bv = _view(better, x_adv)
            x_best = torch.where(bv, x_adv, x_best)
            grad_best = torch.where(bv, grad, grad_best)
            loss_best = torch.where(better, loss_now, loss_best)
            counter3 += 1
            if counter3 == k:
                cols = torch.arange(i - k + 1, i + 1, device=x.device)
                prev = (cols - 1) % n_iter  # the reference indexes row -1 (zeros) at the first checkpoint
                ups = (loss_steps[:, cols] > loss_steps[:, prev]).float().sum(1)
                osc = ups <= k * rho
                no_impr = (~reduced_last) & (loss_best_last >= loss_best)
                fl = osc | no_impr
                reduced_last = fl
                loss_best_last = loss_best.clone()
                fv = _view(fl, x_adv)
                step = torch.where(fv, step / 2.0, step)
                x_adv = torch.where(fv, x_best, x_adv)
                grad = torch.where(fv, grad_best, grad)
                k = max(k - size_decr, n_iter_min)
                counter3 = 0
        state = [x, y, x_adv, x_adv_old, grad, x_best, grad_best, loss_best, step, loss_steps, loss_best_last]
        state += [reduced_last, best_adv, first, done]
        if target is not None:
            state.append(tgt)
    if idx.numel():
        compact(~state[14])
    return fooled_all, out, first_all


def apgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    norm: float = math.inf,
    n_iter: int = 100,
    restarts: int = 1,
    loss: str = "ce",
    n_target_classes: int = 9,
    rho: float = 0.75,
    seed: int = 0,
    keys: Keys | None = None,
    stream: tuple[object, ...] = (),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """APGD with restarts (``loss`` ``ce`` or ``dlr``) or APGD-T (``dlr-targeted``: the targeted
    DLR loss against the 2nd, 3rd, … most likely classes of each input, ``n_target_classes``
    of them, ``restarts`` runs each), as the reference's ``perturb``.

    Each run attacks only the inputs still classified correctly. Returns ``(x_adv, robust,
    first)``: the adversarial images (the inputs where none was found), which inputs are
    still classified correctly, and per input the first fooled iteration of the run that
    broke it (``-1`` if none). ``seed`` seeds the CPU generator of the random starts, drawn
    in the reference's order; with ``keys`` (one per input) each input's start of each run
    comes from its own stream ``(*stream, "apgd-start", loss, target rank, restart)``
    instead, so it does not depend on the batch.
    """
    if loss not in LOSSES:
        raise RobustoodError(f"unknown APGD loss {loss!r}; use one of {', '.join(LOSSES)}")
    gen = torch.Generator().manual_seed(int(seed)) if keys is None else None
    keys = keys.to(x.device) if keys is not None else None
    x = x.detach()
    with torch.no_grad():
        logits = model(x)
    k = int(logits.shape[1])
    need = 4 if loss == "dlr-targeted" else 3 if loss == "dlr" else 2
    if k < need:
        raise RobustoodError(f"the {loss} loss needs at least {need} classes; the model has {k} (use apgd-ce)")
    robust = logits.argmax(1) == y
    x_adv = x.clone()
    first = torch.full_like(y, -1)
    targets = range(2, min(n_target_classes, k - 1) + 2) if loss == "dlr-targeted" else [None]
    for target_class in targets:
        for restart in range(restarts):
            ind = robust.nonzero()[:, 0]
            if ind.numel() == 0:
                return x_adv, robust, first
            xs, ys = x[ind], y[ind]
            run_keys = keys[ind] if keys is not None else None
            tgt = None
            if target_class is not None:
                with torch.no_grad():
                    tgt = model(xs).sort(dim=1)[1][:, -target_class]
            fooled, adv, it = apgd_run(
                model,
                xs,
                ys,
                eps=eps,
                norm=norm,
                n_iter=n_iter,
                loss=loss,
                target=tgt,
                rho=rho,
                cpu_generator=gen,
                keys=run_keys,
                stream=(*stream, "apgd-start", loss, target_class or 0, restart),
            )
            hit = ind[fooled]
            robust[hit] = False
            x_adv[hit] = adv[fooled]
            first[hit] = it[fooled]
    return x_adv, robust, first


@dataclass(frozen=True)
class APGD(Attack):
    """APGD-CE (``name="apgd-ce"``), APGD-DLR (``apgd-dlr``) or APGD-T (``apgd-t``), L∞ or L2.

    ``steps`` is the number of iterations (100), ``restarts`` the runs per input (1) and, for
    APGD-T, ``n_target_classes`` the most likely wrong classes tried (9, capped at the number
    of classes − 1). The random starts come from the call's keys (per input, per restart and
    target) or else from one seed drawn from its ``generator``.
    Build it with :func:`robustood.attacks.build_attack`; ``backend="art"`` runs ART's
    ``AutoProjectedGradientDescent`` (APGD-CE and APGD-DLR only).
    """

    restarts: int = 1
    n_target_classes: int = 9

    @property
    def loss(self) -> str:
        return {"apgd-ce": "ce", "apgd-dlr": "dlr", "apgd-t": "dlr-targeted"}[self.name]

    def _run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        generator: torch.Generator | None,
        keys: Keys | None,
    ) -> AttackOutput:
        x_adv, _, first = apgd(
            model,
            x,
            y,
            eps=self.eps,
            norm=self.norm,
            n_iter=self.steps,
            restarts=self.restarts,
            loss=self.loss,
            n_target_classes=self.n_target_classes,
            seed=call_seed(generator, keys, x.device),
            keys=keys,
        )
        simple = self.loss != "dlr-targeted" and self.restarts == 1
        return AttackOutput(x_adv, None, first if simple else None)

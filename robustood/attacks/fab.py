"""FAB-T: the targeted Fast Adaptive Boundary attack, natively on device tensors.

Croce & Hein, "Minimally distorted adversarial examples with a fast adaptive boundary
attack", ICML 2020 (https://arxiv.org/abs/1907.02044), as AutoAttack's reference
(``pyautoattack``) runs it in the standard version: targeted, one run per target class
(the 2nd, 3rd, … most likely classes of each input, 9 of them), 100 iterations,
``alpha_max = 0.1``, ``eta = 1.05``, ``beta = 0.9``, no random start.

Each iteration linearises the logit difference ``z_t − z_y`` at the current point, projects
both the current point and the clean input onto that hyperplane (exact L∞ / L2 projections
onto the hyperplane within the [0, 1] box), moves to a convex combination of the two
projections (overshoot ``eta``, weight at most ``alpha_max`` on the clean input's), and,
when that point is adversarial, records it if it is the smallest so far and steps back
towards the clean input by ``beta``. An input counts as broken when a recorded point lies
within eps.

Speed without changing a verdict: an input leaves once a recorded point lies within eps
(the recorded norm only decreases, so its verdict is final), a target class runs only on
the inputs every earlier one failed on, and on the CPU, when fewer than a third of the
inputs were stepped back, the forward pass that checks an iterate also gives the gradient
for the next step (a new pass runs only for the stepped-back ones); otherwise, as in the
reference, a check pass and a new gradient pass at every input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..rng import Keys
from .apgd import compact_every
from .base import Attack, AttackOutput

__all__ = ["FAB", "fab_targeted", "projection_l2", "projection_linf"]


def projection_linf(t: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The smallest L∞ step ``d`` (rows) with ``w·(t + d) = b`` and ``t + d`` in [0, 1] (FAB's projection)."""
    w, b = w.clone(), b.clone()
    sign = 2 * ((w * t).sum(1) - b >= 0) - 1
    w.mul_(sign.unsqueeze(1))
    b.mul_(sign)
    a = (w < 0).float()
    d = (a - t) * (w != 0).float()
    p = a - t * (2 * a - 1)
    indp = torch.argsort(p, dim=1)
    b = b - (w * t).sum(1)
    b0 = (w * d).sum(1)
    indp2 = indp.flip((1,))
    ws = w.gather(1, indp2)
    bs2 = -ws * d.gather(1, indp2)
    s = torch.cumsum(ws.abs(), dim=1)
    sb = torch.cumsum(bs2, dim=1) + b0.unsqueeze(1)
    b2 = sb[:, -1] - s[:, -1] * p.gather(1, indp[:, 0:1]).squeeze(1)
    c_l = b - b2 > 0
    c2 = (b - b0 > 0) & (~c_l)
    lb = torch.zeros(int(c2.sum()), device=t.device)
    ub = torch.full_like(lb, w.shape[1] - 1)
    nitermax = math.ceil(math.log2(w.shape[1]))
    indp_, sb_, s_, p_, b_ = indp[c2], sb[c2], s[c2], p[c2], b[c2]
    for _ in range(nitermax):
        counter4 = torch.floor((lb + ub) / 2)
        counter2 = counter4.long().unsqueeze(1)
        indcurr = indp_.gather(1, indp_.size(1) - 1 - counter2)
        b2 = (sb_.gather(1, counter2) - s_.gather(1, counter2) * p_.gather(1, indcurr)).squeeze(1)
        c = b_ - b2 > 0
        lb = torch.where(c, counter4, lb)
        ub = torch.where(c, ub, counter4)
    lb = lb.long()
    if c_l.any():
        lmbd_opt = torch.clamp_min((b[c_l] - sb[c_l, -1]) / (-s[c_l, -1]), min=0).unsqueeze(-1)
        d[c_l] = (2 * a[c_l] - 1) * lmbd_opt
    lmbd_opt = torch.clamp_min((b[c2] - sb[c2, lb]) / (-s[c2, lb]), min=0).unsqueeze(-1)
    d[c2] = torch.min(lmbd_opt, d[c2]) * a[c2] + torch.max(-lmbd_opt, d[c2]) * (1 - a[c2])
    return d * (w != 0).float()


def projection_l2(t: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The smallest L2 step ``d`` (rows) with ``w·(t + d) = b`` and ``t + d`` in [0, 1] (FAB's projection)."""
    w = w.clone()
    c = (w * t).sum(1) - b
    ind2 = 2 * (c >= 0) - 1
    w.mul_(ind2.unsqueeze(1))
    c.mul_(ind2)
    r = torch.max(t / w, (t - 1) / w).clamp(min=-1e12, max=1e12)
    r.masked_fill_(w.abs() < 1e-8, 1e12)
    r[r == -1e12] *= -1
    rs, indr = torch.sort(r, dim=1)
    rs2 = F.pad(rs[:, 1:], (0, 1))
    rs.masked_fill_(rs == 1e12, 0)
    rs2.masked_fill_(rs2 == 1e12, 0)
    w3s = (w**2).gather(1, indr)
    w5 = w3s.sum(dim=1, keepdim=True)
    ws = w5 - torch.cumsum(w3s, dim=1)
    d = -(r * w)
    d.mul_((w.abs() > 1e-8).float())
    s = torch.cat((-w5 * rs[:, 0:1], torch.cumsum((-rs2 + rs) * ws, dim=1) - w5 * rs[:, 0:1]), 1)
    c4 = s[:, 0] + c < 0
    c3 = (d * w).sum(dim=1) + c > 0
    c2 = ~(c4 | c3)
    lb = torch.zeros(int(c2.sum()), device=t.device)
    ub = torch.full_like(lb, w.shape[1] - 1)
    nitermax = math.ceil(math.log2(w.shape[1]))
    s_, c_ = s[c2], c[c2]
    for _ in range(nitermax):
        counter4 = torch.floor((lb + ub) / 2)
        counter2 = counter4.long().unsqueeze(1)
        c3 = s_.gather(1, counter2).squeeze(1) + c_ > 0
        lb = torch.where(c3, counter4, lb)
        ub = torch.where(c3, ub, counter4)
    lb = lb.long()
    if c4.any():
        alpha = c[c4] / w5[c4].squeeze(-1)
        d[c4] = -alpha.unsqueeze(-1) * w[c4]
    if c2.any():
        alpha = (s[c2, lb] + c[c2]) / ws[c2, lb] + rs[c2, lb]
        alpha[ws[c2, lb] == 0] = 0
        c5 = (alpha.unsqueeze(-1) > r[c2]).float()
        d[c2] = d[c2] * c5 - alpha.unsqueeze(-1) * w[c2] * (1 - c5)
    return d * (w.abs() > 1e-8).float()


def _diff_grad(
    model: nn.Module, x1: torch.Tensor, y: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits, ``z_t − z_y`` and its input gradient at ``x1`` (one forward, one backward)."""
    im = x1.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(im)
        u = torch.arange(im.shape[0], device=im.device)
        diff = -(logits[u, y] - logits[u, target])
        (g,) = torch.autograd.grad(diff.sum(), im)
    return logits.detach(), diff.detach(), g.detach()


def _norm(v: torch.Tensor, norm: float) -> torch.Tensor:
    flat = v.flatten(1)
    return flat.abs().amax(1) if math.isinf(norm) else flat.pow(2).sum(-1).sqrt()


def fuse_passes(device: torch.device) -> bool:
    """Whether the check pass keeps its graph so that it may also give the next gradient: on the CPU
    (the choice needs the number of stepped-back inputs, a synchronisation elsewhere)."""
    return device.type == "cpu"


def fab_run(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    target: torch.Tensor,
    *,
    eps: float,
    norm: float,
    n_iter: int = 100,
    alpha_max: float = 0.1,
    eta: float = 1.05,
    beta: float = 0.9,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One targeted FAB run (no random start) on inputs all classified correctly.

    Returns ``(fooled [B], x_adv)``: inputs with a recorded adversarial point within eps, and
    that point (the input itself elsewhere).
    """
    dev = x.device
    bsz = x.shape[0]
    nd = x.dim() - 1
    project = projection_linf if math.isinf(norm) else projection_l2
    out = x.clone()
    fooled_all = torch.zeros(bsz, dtype=torch.bool, device=dev)
    idx = torch.arange(bsz, device=dev)
    im2, la2, tgt = x, y, target
    x1 = x.clone()
    adv = x.clone()
    res2 = 1e10 * torch.ones(bsz, device=dev)
    _, df, dg = _diff_grad(model, x1, la2, tgt)
    every = compact_every(dev)
    for it in range(n_iter):
        if it % every == 0 and it > 0:
            done = res2 <= eps
            if bool(done.any()):
                out[idx[done]] = adv[done]
                fooled_all[idx[done]] = True
                keep = ~done
                idx, im2, la2, tgt, x1, adv, res2, df, dg = (
                    v[keep] for v in (idx, im2, la2, tgt, x1, adv, res2, df, dg)
                )
                if idx.numel() == 0:
                    break
        bs = x1.shape[0]
        with torch.no_grad():
            w = dg.reshape(bs, -1)
            b = -df + (dg * x1).reshape(bs, -1).sum(dim=-1)
            x0 = im2.reshape(bs, -1)
            d3 = project(torch.cat((x1.reshape(bs, -1), x0), 0), torch.cat((w, w), 0), torch.cat((b, b), 0))
            d1 = d3[:bs].reshape(x1.shape)
            d2 = d3[-bs:].reshape(x1.shape)
            a0 = d3.abs().max(dim=1, keepdim=True)[0] if math.isinf(norm) else (d3**2).sum(dim=1, keepdim=True).sqrt()
            a0 = torch.clamp(a0.view(-1, *([1] * nd)), min=1e-8)
            a1, a2 = a0[:bs], a0[-bs:]
            alpha = torch.clamp(torch.clamp(a1 / (a1 + a2), min=0.0), max=alpha_max)
            x1 = ((x1 + eta * d1) * (1 - alpha) + (im2 + d2 * eta) * alpha).clamp(0.0, 1.0)
        fused = fuse_passes(dev)
        im = x1.detach().requires_grad_(fused)
        with torch.set_grad_enabled(fused):
            logits = model(im)
            u = torch.arange(bs, device=dev)
            diff = -(logits[u, la2] - logits[u, tgt])
        with torch.no_grad():
            is_adv = logits.detach().argmax(1) != la2
            t = _norm(x1 - im2, norm)
            smaller = is_adv & (t < res2)
            adv = torch.where(smaller.view(-1, *([1] * nd)), x1, adv)
            res2 = torch.where(smaller, t, res2)
            x1 = torch.where(is_adv.view(-1, *([1] * nd)), im2 + (x1 - im2) * beta, x1)
        if it + 1 == n_iter:
            break
        redo = is_adv & (res2 > eps)  # stepped back and still running: they need a gradient at the new point
        n_redo = int(redo.sum()) if fused else bs
        if 3 * n_redo < bs:  # cheaper: the backward of this pass, and a new pass for the stepped-back rows only
            (g,) = torch.autograd.grad(diff.sum(), im)
            df, dg = diff.detach(), g.detach()
            if n_redo:
                _, df_r, dg_r = _diff_grad(model, x1[redo], la2[redo], tgt[redo])
                df[redo], dg[redo] = df_r, dg_r
        else:  # the reference's order: a new forward and backward pass at every row's new point
            del diff, logits
            _, df, dg = _diff_grad(model, x1, la2, tgt)
    done = res2 <= eps
    out[idx[done]] = adv[done]
    fooled_all[idx[done]] = True
    return fooled_all, out


def fab_targeted(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    norm: float = math.inf,
    n_iter: int = 100,
    n_target_classes: int = 9,
) -> tuple[torch.Tensor, torch.Tensor]:
    """FAB-T as the reference's ``perturb`` with ``targeted=True`` and one restart: per target
    class (2nd, 3rd, … most likely), a run on the inputs still robust. Returns ``(x_adv, robust)``."""
    x = x.detach()
    with torch.no_grad():
        logits = model(x)
    k = int(logits.shape[1])
    robust = logits.argmax(1) == y
    x_adv = x.clone()
    for target_class in range(2, min(n_target_classes, k - 1) + 2):
        ind = robust.nonzero()[:, 0]
        if ind.numel() == 0:
            break
        xs, ys = x[ind], y[ind]
        with torch.no_grad():
            tgt = model(xs).sort(dim=-1)[1][:, -target_class]
        fooled, adv = fab_run(model, xs, ys, tgt, eps=eps, norm=norm, n_iter=n_iter)
        with torch.no_grad():  # the reference's final check: misclassified and within eps
            fooled = fooled & (model(adv).argmax(1) != ys) & (_norm(adv - xs, norm) <= eps)
        robust[ind[fooled]] = False
        x_adv[ind[fooled]] = adv[fooled]
    return x_adv, robust


@dataclass(frozen=True)
class FAB(Attack):
    """FAB-T (``name="fab-t"``), L∞ or L2: ``steps`` iterations (100) per target class,
    ``n_target_classes`` (9, capped at the number of classes − 1). Deterministic. Build it
    with :func:`robustood.attacks.build_attack`."""

    n_target_classes: int = 9

    def _run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        generator: torch.Generator | None,
        keys: Keys | None,
    ) -> AttackOutput:
        x_adv, _ = fab_targeted(
            model, x, y, eps=self.eps, norm=self.norm, n_iter=self.steps, n_target_classes=self.n_target_classes
        )
        return AttackOutput(x_adv, None, None)

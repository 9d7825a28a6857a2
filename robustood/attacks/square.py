"""Square Attack: a score-based black-box attack (random square updates), natively on device tensors.

Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a query-efficient black-box
adversarial attack via random search", ECCV 2020 (https://arxiv.org/abs/1912.00049), as
run by AutoAttack's reference implementation (``pyautoattack``): margin loss, 5,000
queries, ``p_init = 0.8`` with the fixed schedule (p halves at queries 10, 50, 200, 500,
1000, 2000, 4000, 6000, 8000), one square position per query shared by the batch.

- L∞: start from vertical stripes ``x ± eps``; each query adds ``±2·eps`` (one sign per
  channel) on a random square of side ``round(√(p·h·w))`` and projects back.
- L2: start from the reference's grid of centred bumps; each query moves the mass of one
  random window to another and rescales to the eps sphere.

A query is kept when it lowers the margin or misclassifies; an input stops as soon as it is
misclassified (so does the reference). Only the model's outputs are used, never a
gradient: Square succeeding where gradient attacks fail is a sign of gradient masking.

The random draws come from one CPU generator seeded per call, in the reference's order; or,
with keys, the draws the reference shares across the batch (window positions, the L∞
channel signs, the L2 bump orientations: functions of the query only) from a CPU generator
seeded by the keys' seed and the restart, and the per-input ones (the L∞ stripes, the L2
signs) from each input's own stream, so an input's result does not depend on its batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..rng import Keys
from .apgd import compact_every
from .base import Attack, AttackOutput, call_seed

__all__ = ["Square", "p_selection", "square"]


def p_selection(p_init: float, it: int, n_queries: int, rescale: bool = False) -> float:
    """The share of pixels a square covers at query ``it`` (the reference's schedule)."""
    if rescale:
        it = int(it / n_queries * 10000)
    for bound, div in ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128)):
        if it <= bound:
            return p_init / div
    return p_init / 256 if it <= 8000 else p_init / 512


def _margin(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = model(x)
    u = torch.arange(x.shape[0], device=x.device)
    y_corr = logits[u, y].clone()
    logits[u, y] = -float("inf")
    return y_corr - logits.max(dim=-1)[0]


class _Draws:
    """The random draws of a run: batch-shared ones from one CPU generator ``g``; per-input
    signs from it too (the reference's order), or from ``keys``' streams under ``stream``."""

    def __init__(
        self, g: torch.Generator, device: torch.device, keys: Keys | None = None, stream: tuple[object, ...] = ()
    ) -> None:
        self.g = g
        self.device = device
        self.keys = keys
        self.stream = stream

    def keep(self, active: torch.Tensor) -> None:
        """Finished inputs leave the batch: their keys leave with them."""
        if self.keys is not None:
            self.keys = self.keys[active]

    def signs(self, b: int, shape: list[int], *stream: object) -> torch.Tensor:
        """Random ±1 ``[b, *shape]``, one draw per running input."""
        if self.keys is None:
            return self.choice([b, *shape])
        return self.keys.signs(shape, *self.stream, *stream).to(self.device)

    def choice(self, shape: list[int]) -> torch.Tensor:
        return torch.sign(2 * torch.rand(shape, generator=self.g) - 1).to(self.device)

    def integer(self, low: int, high: int) -> int:
        return int((low + (high - low) * torch.rand([1], generator=self.g)).long())

    def eta(self, s: int) -> torch.Tensor:
        delta = torch.zeros([s, s])
        delta[: s // 2] = _eta_rectangles(s // 2, s)
        delta[s // 2 :] = -1.0 * _eta_rectangles(s - s // 2, s)
        delta /= (delta**2).sum(dim=(0, 1), keepdim=True).sqrt()
        if torch.rand([1], generator=self.g) > 0.5:
            delta = delta.permute([1, 0])
        return delta.to(self.device)


def _eta_rectangles(x: int, y: int) -> torch.Tensor:
    delta = torch.zeros([x, y])
    x_c, y_c = x // 2 + 1, y // 2 + 1
    c0, c1 = x_c - 1, y_c - 1
    for counter in range(max(x_c, y_c)):
        delta[max(c0, 0) : min(c0 + (2 * counter + 1), x), max(0, c1) : min(c1 + (2 * counter + 1), y)] += 1.0 / (
            torch.tensor([counter + 1.0]).view(1, 1) ** 2
        )
        c0 -= 1
        c1 -= 1
    delta /= (delta**2).sum(dim=(0, 1), keepdim=True).sqrt()
    return delta


def _lp(v: torch.Tensor) -> torch.Tensor:
    return (v**2).flatten(1).sum(-1).sqrt().view(-1, *([1] * (v.dim() - 1)))


def _normalize(v: torch.Tensor) -> torch.Tensor:
    return v / (_lp(v) + 1e-12)


def square(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    norm: float = math.inf,
    n_queries: int = 5000,
    p_init: float = 0.8,
    restarts: int = 1,
    seed: int = 0,
    keys: Keys | None = None,
    stream: tuple[object, ...] = (),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Square Attack on ``x`` (``B×C×H×W`` in [0, 1]) with labels ``y``; returns ``(x_adv, robust)``.

    Runs only on the inputs classified correctly; ``x_adv`` holds the input itself where no
    adversarial example was found. ``seed`` seeds the CPU generator of every random draw (the
    reference's order); with ``keys`` (one per input) the batch-shared draws of restart ``r``
    come from ``keys.generator(*stream, "square", r)`` and the per-input ones from each
    input's streams under ``stream`` instead.
    """
    x = x.detach()
    with torch.no_grad():
        robust = model(x).argmax(1) == y
        x_adv = x.clone()
        draws = _Draws(torch.Generator().manual_seed(int(seed)), x.device)
        for restart in range(restarts):
            ind = robust.nonzero()[:, 0]
            if ind.numel() == 0:
                break
            if keys is not None:
                g = keys.generator(*stream, "square", restart)
                draws = _Draws(g, x.device, keys.to(x.device)[ind], (*stream, "square", restart))
            adv = _single_run(model, x[ind], y[ind], eps, norm, n_queries, p_init, draws)
            fooled = model(adv).argmax(1) != y[ind]
            robust[ind[fooled]] = False
            x_adv[ind[fooled]] = adv[fooled]
    return x_adv, robust


def _single_run(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    norm: float,
    n_queries: int,
    p_init: float,
    draws: _Draws,
) -> torch.Tensor:
    c, h, w = x.shape[1:]
    n_features = c * h * w
    linf = math.isinf(norm)
    if linf:
        x_best = torch.clamp(x + eps * draws.signs(x.shape[0], [c, 1, w], "init"), 0.0, 1.0)
    else:
        delta_init = torch.zeros_like(x)
        s = h // 5
        sp_init = (h - s * 5) // 2
        vh = sp_init
        for _ in range(h // s):
            vw = sp_init
            for _ in range(w // s):
                bump = draws.eta(s).view(1, 1, s, s)
                delta_init[:, :, vh : vh + s, vw : vw + s] += bump * draws.signs(x.shape[0], [c, 1, 1], "init", vh, vw)
                vw += s
            vh += s
        x_best = torch.clamp(x + _normalize(delta_init) * eps, 0.0, 1.0)
    margin_min = _margin(model, x_best, y)
    loss_min = margin_min.clone()
    if bool((margin_min < 0.0).all()):
        return x_best
    out = x_best.clone()
    idx = torch.arange(x.shape[0], device=x.device)
    eps2 = (eps * torch.ones((), device=x.device)) ** 2
    # L∞ draws do not depend on the batch, so finished inputs may leave every few queries (one
    # synchronisation each, on CUDA); L2 draws one sign per running input, so they leave at once.
    every = compact_every(x.device) if linf else 1
    for i_iter in range(n_queries):
        if i_iter % every == 0:
            active = margin_min > 0.0
            if not bool(active.all()):  # finished inputs leave (the reference drops them at every query)
                out[idx[~active]] = x_best[~active]
                idx, x, y, x_best, margin_min, loss_min = (t[active] for t in (idx, x, y, x_best, margin_min, loss_min))
                draws.keep(active)
                if idx.numel() == 0:
                    break
        running = margin_min > 0.0 if every > 1 else None
        p = p_selection(p_init, i_iter, n_queries)
        if linf:
            s = min(max(round(math.sqrt(p * n_features / c)), 1), min(h, w))
            vh = draws.integer(0, h - s)
            vw = draws.integer(0, w - s)
            sign = 2.0 * eps * draws.choice([c, 1, 1])
            x_new = x_best.clone()
            win = (slice(None), slice(None), slice(vh, vh + s), slice(vw, vw + s))
            xc = x[win]
            x_new[win] = torch.clamp(torch.min(torch.max(x_best[win] + sign, xc - eps), xc + eps), 0.0, 1.0)
        else:
            delta = x_best - x
            s = max(round(math.sqrt(p * n_features / c)), 3)
            if s % 2 == 0:
                s += 1
            s = min(s, min(h, w))
            vh = draws.integer(0, h - s)
            vw = draws.integer(0, w - s)
            mask = torch.zeros_like(x)
            mask[:, :, vh : vh + s, vw : vw + s] = 1.0
            norms_window_1 = (delta[:, :, vh : vh + s, vw : vw + s] ** 2).sum(dim=(-2, -1), keepdim=True).sqrt()
            vh2 = draws.integer(0, h - s)
            vw2 = draws.integer(0, w - s)
            mask2 = torch.zeros_like(x)
            mask2[:, :, vh2 : vh2 + s, vw2 : vw2 + s] = 1.0
            norms_image = _lp(x_best - x)
            mask_image = torch.max(mask, mask2)
            norms_windows = ((delta * mask_image) ** 2).sum(dim=(-2, -1), keepdim=True).sqrt()
            new = torch.ones([x.shape[0], c, s, s], device=x.device)
            new *= draws.eta(s).view(1, 1, s, s) * draws.signs(x.shape[0], [c, 1, 1], "l2-sign", i_iter)
            new += delta[:, :, vh : vh + s, vw : vw + s] / (1e-12 + norms_window_1)
            room = torch.max(eps2 * torch.ones_like(new) - norms_image**2, torch.zeros_like(new))
            new = new / (1e-12 + (new**2).sum(dim=(-2, -1), keepdim=True).sqrt()) * (room / c + norms_windows**2).sqrt()
            delta[:, :, vh2 : vh2 + s, vw2 : vw2 + s] = 0.0
            delta[:, :, vh : vh + s, vw : vw + s] = new + 0
            x_new = torch.clamp(x + _normalize(delta) * eps, 0.0, 1.0)
        margin = _margin(model, x_new, y)
        improved = margin < loss_min  # the margin loss is the margin itself
        if running is not None:  # finished inputs not yet out of the batch stay as they are
            improved &= running
        loss_min = torch.where(improved, margin, loss_min)
        improved = improved | (margin <= 0.0)
        if running is not None:
            improved &= running
        margin_min = torch.where(improved, margin, margin_min)
        x_best = torch.where(improved.view(-1, 1, 1, 1), x_new, x_best)
    out[idx] = x_best
    return out


@dataclass(frozen=True)
class Square(Attack):
    """Square Attack (``name="square"``), L∞ or L2: ``steps`` queries (5,000), ``p_init`` (0.8),
    ``restarts`` (1). Build it with :func:`robustood.attacks.build_attack`; ``backend="art"``
    runs ART's ``SquareAttack``."""

    restarts: int = 1
    p_init: float = 0.8

    def _run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        generator: torch.Generator | None,
        keys: Keys | None,
    ) -> AttackOutput:
        x_adv, _ = square(
            model,
            x,
            y,
            eps=self.eps,
            norm=self.norm,
            n_queries=self.steps,
            p_init=self.p_init,
            restarts=self.restarts,
            seed=call_seed(generator, keys, x.device),
            keys=keys,
        )
        return AttackOutput(x_adv, None, None)

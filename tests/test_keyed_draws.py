"""Per-input random streams: with keys, an attack's result for an input depends on the seed
and the input's dataset index only, never on the batch it is attacked in.

A model's own numerics may depend on the batch size in the last bits (BLAS kernels), which
an L2 step or DDN amplifies; the models here run each input on its own, so a difference
can only come from the attack's draws.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from robustood.attacks import build_attack
from robustood.attacks.gradient import random_start
from robustood.detectors import make_detector
from robustood.detectors.attack import parse_detector_attack
from robustood.errors import RobustoodError
from robustood.evaluate import run_attack
from robustood.rng import Keys

N = 40
#: Batchings of the N inputs: all at once, batches of 7, and a shuffled order split unevenly.
SPLITS = {
    "whole": [torch.arange(N)],
    "sevens": list(torch.arange(N).split(7)),
    "shuffled": list(torch.randperm(N, generator=torch.Generator().manual_seed(5)).split([3, 22, 15])),
}

ATTACKS = {
    "pgd-linf": dict(name="pgd", eps=16 / 255, steps=5, random_start=True),
    "pgd-l2": dict(name="pgd", eps=0.5, norm=2, steps=5, random_start=True),
    "pgd-random-target": dict(name="pgd", eps=16 / 255, steps=5, random_start=True, targeted="random"),
    "apgd-ce": dict(name="apgd-ce", eps=8 / 255, steps=10, restarts=2),
    "apgd-t": dict(name="apgd-t", eps=8 / 255, steps=10, n_target_classes=3),
    "square-linf": dict(name="square", eps=8 / 255, steps=200),
    "square-l2": dict(name="square", eps=0.5, norm=2, steps=200),
    "autoattack": dict(name="autoattack", eps=8 / 255, steps=10, n_queries=200, n_target_classes=2),
    "ddn": dict(name="ddn", eps=1.0, norm=2, steps=10),
}
#: Attacks that draw nothing on this model: DDN draws only where a gradient is exactly 0 (tested below).
NO_DRAWS = {"ddn"}


class _PerInput(nn.Module):
    """``model`` run on one input at a time: outputs independent of the batch, bit for bit."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.model(xi[None]) for xi in x])


@pytest.fixture(scope="module")
def model(digits_model):
    return _PerInput(digits_model).eval()


@pytest.fixture(scope="module")
def inputs(digits_tensors):
    x, y = digits_tensors
    return x[:N], y[:N]


def _attack_in_batches(run, x: torch.Tensor, seed: int, split: list[torch.Tensor]) -> torch.Tensor:
    """``run(x_part, keys)`` on each part of ``split``, the results put back in dataset order."""
    out = torch.empty_like(x)
    for ind in split:
        out[ind] = run(x[ind], Keys(seed, ind), ind)
    return out


@pytest.mark.parametrize("name", list(ATTACKS))
def test_adversarial_examples_do_not_depend_on_the_batching(name, model, inputs):
    x, y = inputs
    kw = dict(ATTACKS[name])
    atk = build_attack(kw.pop("name"), **kw)

    def run(xb, keys, ind):
        return atk(model, xb, y[ind], keys=keys)

    whole = _attack_in_batches(run, x, 0, SPLITS["whole"])
    for split in ("sevens", "shuffled"):
        assert torch.equal(_attack_in_batches(run, x, 0, SPLITS[split]), whole), split
    if name not in NO_DRAWS:
        assert not torch.equal(_attack_in_batches(run, x, 1, SPLITS["whole"]), whole)


def test_random_targets_follow_the_keys(digits_model, inputs):
    x, y = inputs
    atk = build_attack("pgd", eps=8 / 255, targeted="random")
    whole = atk.generate(digits_model, x, y, keys=Keys(0, torch.arange(N))).target
    ind = SPLITS["shuffled"][1]
    part = atk.generate(digits_model, x[ind], y[ind], keys=Keys(0, ind)).target
    assert torch.equal(part, whole[ind])
    assert (whole != y).all() and len(set(whole.tolist())) > 3
    other = atk.generate(digits_model, x, y, keys=Keys(1, torch.arange(N))).target
    assert not torch.equal(other, whole)


class _Dead(nn.Module):
    """Logits ``relu(W·x − 100)``: all zero with a zero gradient on [0, 1] inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(64, 10)
        with torch.no_grad():
            self.lin.bias.fill_(-100.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.lin(x.flatten(1)))


def test_ddn_zero_gradient_noise_follows_the_keys(inputs):
    x, y = inputs
    model = _PerInput(_Dead()).eval()
    atk = build_attack("ddn", eps=1.0, norm=2, steps=5)

    def run(xb, keys, ind):
        return atk(model, xb, y[ind], keys=keys)

    whole = _attack_in_batches(run, x, 0, SPLITS["whole"])
    assert not torch.equal(whole, x)  # the noise moved every input
    assert torch.equal(_attack_in_batches(run, x, 0, SPLITS["shuffled"]), whole)
    assert not torch.equal(_attack_in_batches(run, x, 1, SPLITS["whole"]), whole)


@pytest.mark.parametrize("spec", ["pgd:16/255", "pgd:0.5:l2"])
def test_detector_attack_start_does_not_depend_on_the_batching(spec, model, inputs):
    x, _ = inputs
    atk, det = parse_detector_attack(spec), make_detector("maxlogit")

    def run(xb, keys, ind):
        return atk(model, det, xb, raise_score=False, keys=keys)

    whole = _attack_in_batches(run, x, 0, SPLITS["whole"])
    assert torch.equal(_attack_in_batches(run, x, 0, SPLITS["sevens"]), whole)
    assert torch.equal(_attack_in_batches(run, x, 0, SPLITS["shuffled"]), whole)
    assert not torch.equal(_attack_in_batches(run, x, 1, SPLITS["whole"]), whole)


def test_run_attack_results_do_not_depend_on_the_batch_size(model, inputs):
    atk = build_attack("pgd", eps=0.5, norm=2, steps=3, random_start=True)
    results = [run_attack(model, inputs, atk, batch_size=bs, keep=True) for bs in (N, 6)]
    assert np.array_equal(results[0].samples.x_adv, results[1].samples.x_adv)


def test_linf_start_is_uniform_in_the_cube():
    eps, n = 0.1, 4000
    x = torch.full((n, 1, 8, 8), 0.5)
    delta = random_start(x, eps, math.inf, keys=Keys(0, torch.arange(n))) - x
    assert delta.abs().max() <= eps
    u = (delta.flatten() + eps) / (2 * eps)  # uniform in [0, 1] if the start is
    counts = torch.histc(u, bins=10, min=0.0, max=1.0) / u.numel()
    assert (counts - 0.1).abs().max() < 0.005
    assert abs(float(delta.mean())) < 0.002 * eps


def test_l2_start_is_uniform_in_the_ball():
    eps, n, d = 0.5, 4000, 64
    x = torch.full((n, 1, 8, 8), 0.5)
    delta = (random_start(x, eps, 2.0, keys=Keys(0, torch.arange(n))) - x).flatten(1)
    radius = delta.norm(dim=1) / eps
    assert radius.max() <= 1 + 1e-6
    # uniform in the ball: P(r ≤ t) = t^d, so r^d is uniform in [0, 1]
    u = radius.double() ** d
    counts = torch.histc(u, bins=4, min=0.0, max=1.0) / n
    assert (counts - 0.25).abs().max() < 0.03
    direction = delta / delta.norm(dim=1, keepdim=True)
    assert direction.mean(0).abs().max() < 0.05


def test_keys_and_generator_together_are_refused(digits_model, inputs):
    x, y = inputs
    atk = build_attack("pgd", eps=8 / 255, random_start=True)
    keys = Keys(0, torch.arange(N))
    with pytest.raises(RobustoodError, match="not both"):
        atk(digits_model, x, y, keys=keys, generator=torch.Generator().manual_seed(0))
    with pytest.raises(RobustoodError, match="one key per input"):
        atk(digits_model, x, y, keys=keys[:5])
    det_atk = parse_detector_attack("pgd:8/255")
    with pytest.raises(RobustoodError, match="not both"):
        det_atk(digits_model, make_detector("maxlogit"), x, raise_score=True, keys=keys, generator=torch.Generator())

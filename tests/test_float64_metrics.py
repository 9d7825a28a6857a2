"""Metrics computed from counts are exact float64 ratios (350/360 = 0.9722222222222222), not float32 noise."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset

from robustood.attacks import build_attack
from robustood.attacks.metrics import AttackMetrics
from robustood.inference import accuracy


class _Fixed(nn.Module):
    """Predicts class 0 for inputs whose first pixel is 0, else class 1."""

    def forward(self, x):
        first = x.flatten(1)[:, :1]
        return torch.cat([1 - first, first], 1)


def _data(n=360, wrong=10):
    x = torch.zeros(n, 1, 2, 2)
    y = torch.zeros(n, dtype=torch.long)
    y[:wrong] = 1  # the model says 0 for every input: `wrong` mistakes
    return x, y


def test_accuracy_is_the_exact_ratio_of_counts():
    x, y = _data()
    value = accuracy(_Fixed(), TensorDataset(x, y))
    assert value == 350 / 360 and repr(value) == "0.9722222222222222"


def test_attack_metrics_are_exact_ratios_of_counts():
    x, y = _data()
    attack = build_attack("fgsm", eps=0.0)
    metrics = AttackMetrics(attack)
    model = _Fixed()
    out = attack.generate(model, x, y)
    metrics.update(x, y, model(x), out, model(out.x_adv))
    result = metrics.result(1.0)
    assert result.clean_accuracy == 350 / 360 and result.robust_accuracy == 350 / 360

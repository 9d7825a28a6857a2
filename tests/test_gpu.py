"""CUDA paths: the GPU gives the CPU's numbers, and bf16 stays within budget and near fp32.

Skipped without a CUDA device (the CI machine has none); run them on a GPU with ``pytest -m gpu``.
"""

from __future__ import annotations

import copy

import pytest
import torch

from robustood import evaluate
from robustood.attacks import build_attack
from robustood.evaluate import run_attack

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

EPS = 8 / 255


@pytest.fixture(scope="module")
def gpu_model(digits_model):
    return copy.deepcopy(digits_model).cuda().eval()


def _pgd():
    return build_attack("pgd", eps=EPS, steps=10)


def test_fp32_attack_on_gpu_matches_cpu(digits, digits_model, gpu_model):
    cpu = run_attack(digits_model, digits, build_attack("fgsm", eps=EPS), device="cpu", progress=False)
    gpu = run_attack(gpu_model, digits, build_attack("fgsm", eps=EPS), device="cuda", progress=False)
    assert abs(gpu.clean_accuracy - cpu.clean_accuracy) <= 2 / gpu.n
    # GPU kernels sum in another order: at most a couple of borderline images may flip
    assert abs(gpu.robust_accuracy - cpu.robust_accuracy) <= 2 / gpu.n
    assert gpu.linf_max <= EPS + 1e-6


def test_bf16_attack_stays_in_budget_and_near_fp32(digits, gpu_model):
    fp32 = run_attack(gpu_model, digits, _pgd(), device="cuda", progress=False)
    bf16 = run_attack(copy.deepcopy(gpu_model), digits, _pgd(), device="cuda", progress=False, precision="bf16")
    assert bf16.precision == "bf16" and fp32.precision == "fp32"
    assert bf16.linf_max <= EPS + 1e-6  # the perturbation is kept in fp32: the budget holds exactly
    assert abs(bf16.clean_accuracy - fp32.clean_accuracy) <= 0.02
    assert abs(bf16.robust_accuracy - fp32.robust_accuracy) <= 0.05


def test_evaluate_on_gpu_gives_the_cpu_table(digits, digits_model):
    args = dict(attacks=["fgsm:8/255"], detectors=["maxlogit"], ood=["noise"], progress=False, seed=0)
    cpu = evaluate({"m": digits_model}, digits, device="cpu", **args)
    gpu = evaluate({"m": copy.deepcopy(digits_model)}, digits, device="cuda", **args)
    assert gpu.meta["device"].startswith("cuda")
    assert abs(gpu.value("m", "accuracy") - cpu.value("m", "accuracy")) <= 2 / len(digits.test)
    assert gpu.value("m", "auroc", detector="maxlogit", input_set="noise") == pytest.approx(
        cpu.value("m", "auroc", detector="maxlogit", input_set="noise"), abs=1e-3
    )

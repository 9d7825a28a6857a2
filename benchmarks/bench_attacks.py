"""Speed of robustood's FGSM and PGD-10 against a plain PyTorch loop, ART used directly and torchattacks.

All four run the same model on the same data in one process; each is repeated and the
median wall time is reported with its ratio to the plain loop (the limit: the same
forward/backward passes and nothing else). On CUDA the peak memory ratio is printed too.
robustood is timed on its default path: ``build_attack(...)(model, x, y)`` per batch.

Examples::

    python benchmarks/bench_attacks.py                                  # CPU, small CNN, digits-shaped data
    python benchmarks/bench_attacks.py --shape cifar --model cifar_cnn --n 500 --batch-size 100
    python benchmarks/bench_attacks.py --device cuda --shape cifar --model resnet18 --n 10000 --batch-size 500
    python benchmarks/bench_attacks.py --device cuda --shape cifar --model resnet18 --precision bf16
"""

from __future__ import annotations

import argparse
import functools
import statistics
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robustood.attacks import build_attack
from robustood.attacks.metrics import precision_context
from robustood.data import DatasetInfo
from robustood.models import build_model
from robustood.report import render

from _timing import interleaved_times, sync

SHAPES = {"digits": (1, 8, 8), "cifar": (3, 32, 32)}


def plain_loop(model: nn.Module, batches, eps: float, alpha: float, steps: int, random_start: bool) -> None:
    """The limit: the textbook loop (Madry et al.), gradients with respect to the input only."""
    for x, y in batches:
        x_adv = x + torch.empty_like(x).uniform_(-eps, eps) if random_start else x
        x_adv = x_adv.clamp(0, 1)
        for _ in range(steps):
            x_adv = x_adv.detach().requires_grad_(True)
            loss = F.cross_entropy(model(x_adv), y)
            (grad,) = torch.autograd.grad(loss, x_adv)
            with torch.no_grad():
                x_adv = (x_adv + alpha * grad.sign()).clamp(0, 1)
                x_adv = x + (x_adv - x).clamp(-eps, eps)


def robustood_path(model: nn.Module, batches, eps: float, alpha: float, steps: int, random_start: bool) -> None:
    name = "fgsm" if steps == 1 else "pgd"
    attack = build_attack(name, eps=eps, steps=steps, step_size=alpha if steps > 1 else None, random_start=random_start)
    for x, y in batches:
        attack(model, x, y)


def art_direct(model: nn.Module, batches, eps: float, alpha: float, steps: int, random_start: bool) -> None:
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    x0 = batches[0][0]
    est = PyTorchClassifier(
        model,
        loss=nn.CrossEntropyLoss(),
        input_shape=tuple(x0.shape[1:]),
        nb_classes=10,
        clip_values=(0.0, 1.0),
        device_type="gpu" if x0.is_cuda else "cpu",
    )
    bs = len(x0)
    if steps == 1:
        atk = FastGradientMethod(est, eps=eps, eps_step=eps, batch_size=bs)
    else:
        atk = ProjectedGradientDescent(
            est,
            eps=eps,
            eps_step=alpha,
            max_iter=steps,
            num_random_init=int(random_start),
            batch_size=bs,
            verbose=False,
        )
    x = torch.cat([b[0] for b in batches]).cpu().numpy()
    y = torch.cat([b[1] for b in batches]).cpu().numpy()
    atk.generate(x, y=y)  # users hand ART the whole array; its batching, copies and logging are part of its cost


def torchattacks_path(model: nn.Module, batches, eps: float, alpha: float, steps: int, random_start: bool) -> None:
    import torchattacks

    if steps == 1:
        atk = torchattacks.FGSM(model, eps=eps)
    else:
        atk = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=random_start)
    for x, y in batches:
        atk(x, y)


METHODS: dict[str, Callable] = {
    "plain loop": plain_loop,
    "robustood": robustood_path,
    "ART direct": art_direct,
    "torchattacks": torchattacks_path,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--shape", choices=list(SHAPES), default="digits", help="digits (1×8×8) or cifar (3×32×32)")
    ap.add_argument("--model", default="small_cnn", help="zoo architecture: small_cnn, cifar_cnn, resnet20, resnet18")
    ap.add_argument("--n", type=int, default=2000, help="number of random images")
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--eps", type=float, default=8 / 255)
    ap.add_argument("--step-size", type=float, default=2 / 255)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of: " + ", ".join(METHODS))
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="bf16: CUDA autocast for all")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    shape = SHAPES[args.shape]
    info = DatasetInfo(args.shape, shape, tuple(str(i) for i in range(10)), (0.5,) * shape[0], (0.25,) * shape[0])
    model = build_model(args.model, info).to(device).eval()
    x = torch.rand(args.n, *shape)
    y = torch.randint(0, 10, (args.n,))
    batches = [
        (x[i : i + args.batch_size].to(device), y[i : i + args.batch_size].to(device))
        for i in range(0, args.n, args.batch_size)
    ]
    methods = [m.strip() for m in args.methods.split(",")]
    rows = []
    for attack, steps, rs in (("FGSM", 1, False), (f"PGD-{args.steps}", args.steps, True)):
        peaks: dict[str, float] = {}
        for m in methods:  # warm-up (and peak memory)
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            with precision_context(args.precision, device, model):
                METHODS[m](model, batches, args.eps, args.step_size, steps, rs)
            sync(device)
            if device.type == "cuda":
                peaks[m] = torch.cuda.max_memory_allocated(device) / 2**20

        def run(m: str, steps: int = steps, rs: bool = rs) -> None:
            with precision_context(args.precision, device, model):
                METHODS[m](model, batches, args.eps, args.step_size, steps, rs)

        runs = [functools.partial(run, m) for m in methods]
        times = dict(zip(methods, interleaved_times(runs, args.repeats, device, warmup=False), strict=True))
        base = statistics.median(times[methods[0]])
        for m in methods:
            med = statistics.median(times[m])
            row = {
                "attack": attack,
                "method": m,
                "median_s": med,
                "min_s": min(times[m]),
                "ratio_vs_plain": med / base,
                "images_per_s": args.n / med,
            }
            if peaks:
                row["peak_mib"] = peaks[m]
                row["peak_ratio"] = peaks[m] / peaks[methods[0]]
            rows.append(row)
    print(
        f"device={device} model={args.model} shape={shape} n={args.n} batch={args.batch_size} "
        f"repeats={args.repeats} eps={args.eps:.4f} step={args.step_size:.4f} precision={args.precision} "
        f"threads={torch.get_num_threads()} torch={torch.__version__} numpy={np.__version__}"
    )
    print(render(rows, "table", floatfmt=".3f"), end="")
    if device.type != "cuda":
        print(
            "on a GPU: python benchmarks/bench_attacks.py --device cuda --shape cifar --model resnet18 "
            "--n 10000 --batch-size 500 [--precision bf16]"
        )


if __name__ == "__main__":
    main()

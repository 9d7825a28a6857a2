"""Benchmark: one FGSM adversarial-training epoch vs one clean epoch vs a hand-written PyTorch loop.

Times one epoch over the same images (random tensors, a fresh copy of the same initial
weights every run — speed does not depend on the data):

* ``clean epoch``: ``robustood.train.fit`` with plain cross-entropy (the baseline);
* ``robustood FGSM AT``: ``fit`` with the recipe ``adv:fgsm:EPS`` (w = 0.5, every image
  attacked) — goal ≤ 2.3× the clean epoch; the floor is about 2× (one more forward and
  backward per batch);
* ``plain PyTorch FGSM AT``: a hand-written loop doing the same steps (input gradient,
  sign step, one training pass over clean + adversarial images).

``fit`` also runs its (tiny) validation pass; the hand-written loop does not. Prints
medians over ``--repeats`` runs (after one warm-up) and ratios::

    python benchmarks/bench_adv_training.py                                # cifar_cnn on CPU
    python benchmarks/bench_adv_training.py --device cuda --model resnet18 --n 10000 --batch-size 500
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from robustood.data import DatasetBundle, DatasetInfo
from robustood.inference import iter_batches
from robustood.models import ZOO, build_model
from robustood.recipes import objective_for
from robustood.report import render
from robustood.train import TrainConfig, cross_entropy, fit
from robustood.utils import parse_eps, select_device

from _timing import median_seconds


def plain_fgsm_epoch(model: nn.Module, ds: TensorDataset, eps: float, batch_size: int, lr: float, device) -> None:
    """The hand-written reference: FGSM examples (eval mode, input gradient only), then
    loss = 0.5·CE(clean) + 0.5·CE(adversarial) in one training pass."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(0)
    for x, y in iter_batches(ds, batch_size, shuffle=True, generator=gen):
        x, y = x.to(device), y.to(device)
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        xg = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(xg), y), xg)
        x_adv = (x + eps * grad.sign()).clamp(0, 1).detach()
        for p in model.parameters():
            p.requires_grad_(True)
        model.train()
        logits = model(torch.cat([x, x_adv]))
        loss = 0.5 * F.cross_entropy(logits[: len(x)], y) + 0.5 * F.cross_entropy(logits[len(x) :], y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, auto …")
    parser.add_argument("--model", default="cifar_cnn", choices=list(ZOO))
    parser.add_argument("--n", type=int, default=2048, help="training images")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--eps", default="2/255")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    device = select_device(args.device)
    eps = parse_eps(args.eps)
    info = DatasetInfo("random", (3, 32, 32), tuple(str(i) for i in range(10)), (0.5,) * 3, (0.25,) * 3)
    gen = torch.Generator().manual_seed(0)
    train = TensorDataset(
        torch.rand((args.n, 3, 32, 32), generator=gen), torch.randint(0, 10, (args.n,), generator=gen)
    )
    val = TensorDataset(train.tensors[0][: args.batch_size], train.tensors[1][: args.batch_size])
    bundle = DatasetBundle(info, train, val, val)
    torch.manual_seed(0)
    init = build_model(args.model, info).to(device)
    cfg = TrainConfig(epochs=1, batch_size=args.batch_size, patience=None)
    recipe = f"adv:fgsm:{args.eps}"
    adv = objective_for(recipe, bundle)

    def run_fit(objective) -> Callable[[], object]:
        return lambda: fit(copy.deepcopy(init), bundle, cfg, objective=objective, device=device, progress=False)

    def run_plain() -> None:
        plain_fgsm_epoch(copy.deepcopy(init), train, eps, args.batch_size, cfg.lr, device)

    names = ["clean epoch (fit, cross-entropy)", f"robustood FGSM AT (fit, {recipe})", "plain PyTorch FGSM AT loop"]
    clean_s, adv_s, plain_s = median_seconds([run_fit(cross_entropy), run_fit(adv), run_plain], args.repeats, device)
    rows = [
        {"method": names[0], "seconds": clean_s, "vs_clean_epoch": 1.0, "vs_plain_loop": clean_s / plain_s},
        {"method": names[1], "seconds": adv_s, "vs_clean_epoch": adv_s / clean_s, "vs_plain_loop": adv_s / plain_s},
        {"method": names[2], "seconds": plain_s, "vs_clean_epoch": plain_s / clean_s, "vs_plain_loop": 1.0},
    ]
    print(
        f"device={device} model={args.model} n={args.n} batch={args.batch_size} eps={args.eps} "
        f"repeats={args.repeats} (medians)"
    )
    print(render(rows, "table", floatfmt=".3f"), end="")
    if device.type != "cuda":
        print(
            "on a GPU: python benchmarks/bench_adv_training.py --device cuda --model resnet18 "
            "--n 10000 --batch-size 500"
        )


if __name__ == "__main__":
    main()

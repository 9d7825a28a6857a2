"""Cost of the engine's input and output checks (finite, float, in [0, 1]) next to the work they guard.

Per batch the engine checks the images once as they come from the dataset
(:func:`robustood.inference.check_images`) and the logits once
(:func:`robustood.evaluate.passes.check_logits`). This times, side by side in one run with
interleaved medians, a forward pass of a CIFAR-shaped CNN over one batch with and without
both checks, and an FGSM batch (forward + backward + forward) with them.

    python benchmarks/bench_checks.py [--batch 256] [--repeats 20] [--device cpu]
"""

from __future__ import annotations

import argparse

import torch

from robustood.attacks import build_attack
from robustood.data import IMAGENET_MEAN, IMAGENET_STD, DatasetInfo
from robustood.evaluate.passes import check_logits
from robustood.inference import check_images
from robustood.models import build_model
from robustood.utils import select_device

from _timing import median_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    dev = select_device(args.device)
    info = DatasetInfo("cifar-shaped", (3, 32, 32), tuple("0123456789"), IMAGENET_MEAN, IMAGENET_STD)
    model = build_model("cifar_cnn", info).to(dev).eval()
    x_cpu = torch.rand(args.batch, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 10, (args.batch,), generator=torch.Generator().manual_seed(1)).to(dev)
    fgsm = build_attack("fgsm", eps=8 / 255)

    def forward() -> None:
        with torch.no_grad():
            model(x_cpu.to(dev))

    def forward_checked() -> None:
        check_images(x_cpu)
        with torch.no_grad():
            check_logits(model(x_cpu.to(dev)))

    def checks_only() -> None:
        check_images(x_cpu)

    def fgsm_checked() -> None:
        check_images(x_cpu)
        x = x_cpu.to(dev)
        out = fgsm.generate(model, x, y)
        with torch.no_grad():
            check_logits(model(out.x_adv))

    names = ["forward", "forward + checks", "image check alone", "FGSM batch + checks"]
    times = median_seconds([forward, forward_checked, checks_only, fgsm_checked], args.repeats, dev)
    base = times[0]
    print(f"device {dev}, batch {args.batch}, cifar_cnn, medians of {args.repeats} interleaved runs")
    for name, t in zip(names, times, strict=True):
        print(f"  {name:22s} {t * 1000:9.2f} ms   {t / base:6.3f}x forward")


if __name__ == "__main__":
    main()

"""Benchmark: robustood's OOD evaluation with three logit detectors vs one plain forward pass.

Times, over the same ID test + OOD + ID validation images (random CIFAR-shaped tensors,
untrained weights — speed does not depend on them):

* ``forward``: one plain ``model(x)`` pass over every batch (the floor);
* ``robustood``: ``run_ood(model, bundle, ["msp", "maxlogit", "energy"], …)`` with its
  defaults, as ``robustood ood`` runs it — scoring, ID accuracy, thresholds calibrated on
  the validation split (a tenth of the images) and metrics, the three detectors sharing one
  forward pass (goal ≤ 1.1×);
* ``pytorch-ood separately``: each of ``MaxSoftmax``, ``MaxLogit``, ``EnergyBased`` running
  ``detector.predict(x)`` on every batch on its own (three forward passes).

Prints medians over ``--repeats`` runs (after one warm-up) and ratios to ``forward``::

    python benchmarks/bench_ood.py                                   # small CNN on CPU
    python benchmarks/bench_ood.py --device cuda --model resnet18 --n 10000 --batch-size 500
"""

from __future__ import annotations

import torch
from pytorch_ood.detector import EnergyBased, MaxLogit, MaxSoftmax
from torch.utils.data import TensorDataset

from robustood.data import DatasetBundle
from robustood.evaluate import run_ood
from robustood.inference import iter_batches
from robustood.report import render

from _timing import CIFAR_INFO, cifar_args, cifar_model, median_seconds


def main() -> None:
    args = cifar_args(__doc__.splitlines()[0], n=2000, n_help="ID test + OOD images (half each), plus n/10 validation")
    model, arch, device = cifar_model(args.model, args.device)
    half = args.n // 2
    gen = torch.Generator().manual_seed(0)
    id_set = TensorDataset(torch.rand((half, 3, 32, 32), generator=gen), torch.randint(0, 10, (half,), generator=gen))
    ood_set = TensorDataset(torch.rand((args.n - half, 3, 32, 32), generator=gen), torch.full((args.n - half,), -1))
    n_val = max(args.n // 10, 1)
    val_set = TensorDataset(
        torch.rand((n_val, 3, 32, 32), generator=gen), torch.randint(0, 10, (n_val,), generator=gen)
    )
    empty = TensorDataset(torch.empty(0, 3, 32, 32), torch.empty(0, dtype=torch.long))
    bundle = DatasetBundle(CIFAR_INFO, train=empty, val=val_set, test=id_set)
    sets = (id_set, ood_set, val_set)

    @torch.no_grad()
    def forward() -> None:
        for ds in sets:
            for x, _ in iter_batches(ds, args.batch_size):
                model(x.to(device, non_blocking=True)).cpu()

    def robustood() -> None:
        run_ood(
            model,
            bundle,
            ["msp", "maxlogit", "energy"],
            {"ood": ood_set},
            device=device,
            batch_size=args.batch_size,
            progress=False,
        )

    detectors = [MaxSoftmax(model), MaxLogit(model), EnergyBased(model)]

    @torch.no_grad()
    def separately() -> None:
        for det in detectors:
            for ds in sets:
                for x, _ in iter_batches(ds, args.batch_size):
                    det.predict(x.to(device, non_blocking=True)).cpu()

    t_fwd, t_rob, t_sep = median_seconds([forward, robustood, separately], args.repeats, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    rows = [
        {"method": "one forward pass", "median_s": t_fwd, "ratio_to_forward": 1.0},
        {"method": "robustood run_ood (msp, maxlogit, energy)", "median_s": t_rob, "ratio_to_forward": t_rob / t_fwd},
        {"method": "pytorch-ood, 3 detectors separately", "median_s": t_sep, "ratio_to_forward": t_sep / t_fwd},
    ]
    print(
        f"device {name}, model {arch}, {args.n} + {n_val} validation images (3x32x32), "
        f"batch {args.batch_size}, {args.repeats} repeats (medians)"
    )
    print(render(rows), end="")
    print(f"separately / robustood: {t_sep / t_rob:.2f}x")
    if device.type != "cuda":
        print("on a GPU: python benchmarks/bench_ood.py --device cuda --model resnet18 --n 10000 --batch-size 500")


if __name__ == "__main__":
    main()

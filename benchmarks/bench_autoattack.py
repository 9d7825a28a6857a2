"""robustood's AutoAttack against the reference implementation (pyautoattack), side by side.

Both run the standard version (APGD-CE, APGD-T, FAB-T, Square; 100 iterations, 9 target
classes, 5,000 queries) on the same model, data and eps, in one process, with the same seed
(robustood draws one seed from its generator; the reference is given that seed). Printed:
median wall times and their ratio, forward and backward passes (images through the model,
input gradients computed), robust accuracy of each, and per-sample verdict agreement. The
model is given to the reference as a user has it (evaluation mode,
parameters requiring gradients); robustood freezes parameters while it attacks.

The gain comes from inputs that are not robust: each leaves its batch once broken. An input
that survives every attack costs both implementations the same four full runs, so the ratio
depends on the share of robust inputs; ``--eps`` sets it.

Examples::

    python benchmarks/bench_autoattack.py                         # digits CNN, L∞ eps 0.1
    python benchmarks/bench_autoattack.py --eps 0.05 --n 200
    python benchmarks/bench_autoattack.py --recipe adv:fgsm:0.1 --eps 0.1
    python benchmarks/bench_autoattack.py --norm 2 --eps 0.5
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics

import torch
from torch import nn

from robustood.attacks import build_attack
from robustood.attacks.apgd import draw_seed
from robustood.data import load_dataset, stack_dataset
from robustood.report import render
from robustood.resolve import pretrained
from robustood.train import TrainConfig

from _timing import interleaved_times


class Counting(nn.Module):
    """Counts images through the model (forward) and input gradients computed for them (backward)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.reset()

    def reset(self) -> None:
        self.forward_rows = 0
        self.backward_rows = 0

    def _backward(self, grad: torch.Tensor) -> None:
        self.backward_rows += grad.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forward_rows += x.shape[0]
        if torch.is_grad_enabled() and x.requires_grad:
            x.register_hook(self._backward)  # runs only if a backward pass reaches the input
        return self.model(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="test inputs attacked")
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--norm", choices=("inf", "2"), default="inf")
    parser.add_argument("--recipe", default="plain", help="training recipe of the digits CNN (e.g. adv:fgsm:0.1)")
    parser.add_argument("--repeats", type=int, default=1, help="timed rounds after one untimed warm-up of each")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from pyautoattack import AutoAttack as ReferenceAutoAttack

    logging.getLogger("auto-attack").setLevel(logging.ERROR)
    torch.manual_seed(args.seed)
    device = torch.device("cpu")
    bundle = load_dataset("digits")
    model, _ = pretrained(
        bundle, "small_cnn", recipe=args.recipe, seed=0, config=TrainConfig(seed=0), progress=False, device=device
    )
    model = Counting(model.eval()).eval()
    x, y = stack_dataset(bundle.test)
    x, y = x[: args.n].to(device), y[: args.n].to(device)
    norm = math.inf if args.norm == "inf" else 2.0
    attack = build_attack("autoattack", eps=args.eps, norm=args.norm, seed=args.seed)
    seed = draw_seed(torch.Generator(device).manual_seed(args.seed), device)
    ref = ReferenceAutoAttack(model, eps=args.eps, norm="Linf" if math.isinf(norm) else "L2", seed=seed, device=device)
    out: dict[str, torch.Tensor] = {}
    counts: dict[str, tuple[int, int]] = {}

    def ours() -> None:
        model.reset()
        out["robustood"] = attack(model, x, y, generator=torch.Generator(device).manual_seed(args.seed))
        counts["robustood"] = (model.forward_rows, model.backward_rows)

    def reference() -> None:
        model.reset()
        out["pyautoattack"] = ref.run_standard_evaluation(x, y, batch_size=250)[0]
        counts["pyautoattack"] = (model.forward_rows, model.backward_rows)

    times = interleaved_times([ours, reference], args.repeats, device, warmup=args.repeats > 1)
    with torch.no_grad():
        clean = model(x).argmax(1) == y
        robust = {k: model(v).argmax(1) == y for k, v in out.items()}
    agree = float((robust["robustood"] == robust["pyautoattack"]).double().mean())
    base = statistics.median(times[1])
    rows = []
    for name, t in zip(("robustood", "pyautoattack"), times, strict=True):
        fwd, bwd = counts[name]
        rows.append(
            {
                "implementation": name,
                "median_s": statistics.median(t),
                "ratio": statistics.median(t) / base,
                "forward_images": fwd,
                "backward_images": bwd,
                "robust_accuracy": float(robust[name].double().mean()),
            }
        )
    print(
        f"AutoAttack (standard) on digits small_cnn [{args.recipe}], n={args.n}, {attack.label} eps={args.eps:g}, "
        f"clean accuracy {float(clean.double().mean()):.4f}, torch threads {torch.get_num_threads()}"
    )
    print(render(rows, "table"), end="")
    differ = int((robust["robustood"] != robust["pyautoattack"]).sum())
    print(f"per-sample verdict agreement: {agree:.4f} ({differ} differ)")


if __name__ == "__main__":
    main()

"""Benchmark: robustood's detector attack (PGD on a detector's score) vs a plain PyTorch PGD loop.

Times, over the same images (random CIFAR-shaped tensors, untrained weights — speed does not
depend on them), PGD-10 L∞ at 8/255 with a random start that lowers each detector's score
(as on OOD inputs), then one scoring pass of the attacked images:

* ``plain loop``: a hand-written loop on the same score in plain torch (``-max f(x)`` for
  maxlogit; half the squared Mahalanobis distance to the closest class mean for mahalanobis):
  random start, 10 × (forward, input gradient, sign step, clip, project), one scoring pass;
* ``robustood``: the engine's detector-attack pass (``detector_attack_pass``, what
  ``evaluate(..., detector_attacks=["pgd:8/255"])`` runs per detector and input set): the
  same steps on ``differentiable_score``, the best iterate kept per sample (the clean input
  among them, its score handed over from the clean pass as the engine does), the last
  iterate's forward pass giving the attacked scores (goal ≤ 1.15× the plain loop).

Prints medians over ``--repeats`` interleaved runs (after one warm-up) and ratios::

    python benchmarks/bench_detector_attack.py                      # small CNN on CPU
    python benchmarks/bench_detector_attack.py --device cuda --model resnet18 --n 10000 --batch-size 500
"""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from robustood.detectors import fit_detectors, make_detector
from robustood.detectors.attack import parse_detector_attack
from robustood.evaluate.passes import detector_attack_pass
from robustood.inference import iter_batches
from robustood.report import render

from _timing import cifar_args, cifar_model, median_seconds

EPS, STEPS = 8 / 255, 10


def plain_pgd(score, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """PGD-10 L∞ lowering ``score`` (a plain loop: random start, sign steps, clip, project)."""
    alpha = 2.5 * EPS / STEPS
    x_adv = (x + torch.empty_like(x).uniform_(-EPS, EPS, generator=generator)).clamp(0, 1)
    for _ in range(STEPS):
        x_adv = x_adv.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(score(x_adv).sum(), x_adv)
        with torch.no_grad():
            x_adv = (x_adv - alpha * grad.sign()).clamp(0, 1)
            x_adv = x + (x_adv - x).clamp(-EPS, EPS)
    return x_adv.detach()


def main() -> None:
    args = cifar_args(__doc__.splitlines()[0], n=1000, n_help="images attacked")
    model, arch, device = cifar_model(args.model, args.device)
    for p in model.parameters():
        p.requires_grad_(False)  # both sides take input gradients only
    gen = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand((args.n, 3, 32, 32), generator=gen), torch.full((args.n,), -1))
    train = TensorDataset(torch.rand((500, 3, 32, 32), generator=gen), torch.arange(500) % 10)
    maxlogit, mahalanobis = make_detector("maxlogit"), make_detector("mahalanobis")
    fit_detectors([maxlogit, mahalanobis], model, train, device=device, batch_size=args.batch_size)
    maha = mahalanobis.detector_
    mu, precision = maha.mu.to(device), maha.precision.to(device)

    def maxlogit_score(x: torch.Tensor) -> torch.Tensor:
        return -model(x).amax(1)

    def mahalanobis_score(x: torch.Tensor) -> torch.Tensor:
        c = model.features(x)[:, None, :] - mu[None]
        return 0.5 * torch.einsum("bkd,de,bke->bk", c, precision, c).amin(1)

    attack = parse_detector_attack("pgd:8/255")
    cases = [("maxlogit", maxlogit, maxlogit_score), ("mahalanobis", mahalanobis, mahalanobis_score)]
    rows = []
    for name, det, score in cases:
        # the engine's clean pass has every detector's clean scores already (for the clean figures)
        clean = torch.cat(
            [det.score(model, x.to(device)).float().cpu() for x, _ in iter_batches(data, args.batch_size)]
        )

        def plain(score=score) -> None:
            g = torch.Generator(device=device).manual_seed(0)
            for x, _ in iter_batches(data, args.batch_size):
                x = x.to(device, non_blocking=True)
                x_adv = plain_pgd(score, x, g)
                with torch.no_grad():
                    score(x_adv).cpu()

        def robustood(det=det, clean=clean) -> None:
            detector_attack_pass(
                model,
                data,
                det,
                attack,
                raise_score=False,
                device=device,
                batch_size=args.batch_size,
                progress=False,
                desc="",
                clean_scores=clean,
            )

        t_plain, t_rob = median_seconds([plain, robustood], args.repeats, device)
        rows.append({"detector": name, "method": "plain PyTorch PGD loop", "median_s": t_plain, "ratio": 1.0})
        rows.append(
            {"detector": name, "method": "robustood detector attack", "median_s": t_rob, "ratio": t_rob / t_plain}
        )
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device {dev_name}, model {arch}, {args.n} images (3x32x32), batch {args.batch_size}, "
        f"PGD-{STEPS} L∞ 8/255 random start, {args.repeats} repeats (medians)"
    )
    print(render(rows), end="")
    if device.type != "cuda":
        print(
            "on a GPU: python benchmarks/bench_detector_attack.py --device cuda --model resnet18 --n 10000 "
            "--batch-size 500"
        )


if __name__ == "__main__":
    main()

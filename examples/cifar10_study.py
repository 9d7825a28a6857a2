"""The robustness × OOD study: the same architecture trained plainly and adversarially, one table.

The labs' central experiment (see ``docs/study.md``). Four models of one architecture:

* ``plain``                     cross-entropy;
* ``adv:fgsm:2/255:epochs=15``  FGSM adversarial training at eps = 2/255 for 15 epochs;
* ``adv:fgsm:2/255:epochs=25``  the same for 25 epochs;
* ``adv:fgsm:4/255``            FGSM adversarial training at eps = 4/255;

each evaluated for clean accuracy, robust accuracy under FGSM (eps in pixel units of images
in [0, 1]) and max-logit OOD detection against uniform noise (AUROC, FPR at 95 % TPR). On
CIFAR-10 one lab measured the max-logit AUROC falling 0.84 → 0.80 → 0.74 → 0.32 down these
rows: adversarial training makes logits smaller and flatter on every input.

Run it::

    python examples/cifar10_study.py --device cuda                # CIFAR-10 (downloaded on first use)
    python examples/cifar10_study.py --dataset digits             # offline, a few minutes on a CPU
    python examples/cifar10_study.py --dataset digits --eps 2/255,8/255,32/255 --epochs 10

``--epochs E`` trains every model for at most E epochs (the 15-epoch model for 0.6·E), so
shorter runs keep the study's proportions; without it the recipes above are used as written
(models without ``epochs=`` train up to 50 epochs with early stopping). Models are trained
once and cached (``~/.cache/robustood`` or ``$ROBUSTOOD_CACHE_DIR``); ``--store FILE.jsonl``
keeps finished results, so an interrupted run resumes. Offline and without CIFAR-10 on disk
the script says where to put the files, or to use ``--dataset digits``.
"""

from __future__ import annotations

import argparse
import sys

import robustood as ro
from robustood.utils import format_eps

HEADLINE = ["accuracy", "robust_accuracy", "auroc", "fpr_at_95_tpr"]


def study_models(epochs: int | None) -> list[str]:
    """The study's four training recipes; with ``epochs``, every model trains for at most that long."""
    if epochs is None:
        return ["plain", "adv:fgsm:2/255:epochs=15", "adv:fgsm:2/255:epochs=25", "adv:fgsm:4/255"]
    short = max(1, round(0.6 * epochs))
    return [
        f"plain:epochs={epochs}",
        f"adv:fgsm:2/255:epochs={short}",
        f"adv:fgsm:2/255:epochs={epochs}",
        f"adv:fgsm:4/255:epochs={epochs}",
    ]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", default="cifar10", help="cifar10 (default), digits (embedded, offline), or another")
    p.add_argument("--epochs", type=int, default=None, help="most epochs per model (default: the study's recipes)")
    p.add_argument("--device", default="auto", help="cpu, cuda, mps or auto (default)")
    p.add_argument("--limit", type=int, default=None, help="evaluate at most this many test images")
    p.add_argument("--eps", default="2/255", help="FGSM budget(s), comma-separated (default: 2/255)")
    p.add_argument("--arch", default=None, help="zoo architecture (default: cifar_cnn for colour, small_cnn for grey)")
    p.add_argument("--store", default=None, help="JSON-lines file of finished results; a rerun resumes from it")
    p.add_argument("--no-download", action="store_true", help="never download the dataset; fail if it is not on disk")
    args = p.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        p.error("--epochs must be at least 1")
    if args.limit is not None and args.limit < 1:
        p.error("--limit must be at least 1")
    try:
        args.eps = ro.parse_eps_list(args.eps)
    except ro.RobustoodError as exc:
        p.error(str(exc))
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        bundle = ro.load_dataset(args.dataset, download=not args.no_download)
    except ro.DatasetUnavailableError as exc:
        print(f"{args.dataset} is not available here: {exc}", file=sys.stderr)
        print("Run the same study offline on the embedded digits with: --dataset digits", file=sys.stderr)
        return 1

    models = study_models(args.epochs)
    try:
        report = ro.evaluate(
            models,
            bundle,
            attacks=[f"fgsm:{format_eps(e)}" for e in args.eps],
            detectors=["maxlogit"],
            ood=["noise"],
            arch=args.arch,
            device=None if args.device == "auto" else args.device,
            limit=args.limit,
            store=args.store,
            seed=0,
        )
    except ro.RobustoodError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2

    print(f"# {bundle.info.name}: plain vs FGSM adversarial training ({report.meta['device']})\n")
    print(report.to_markdown(HEADLINE))
    print("max-logit AUROC vs noise, down the rows (0.5 = chance; below 0.5 = noise looks more ID than real images):")
    for model in models:
        print(f"  {model:<28} {report.value(model, 'auroc', detector='maxlogit', input_set='noise'):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

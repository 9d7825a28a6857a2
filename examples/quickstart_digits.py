"""Quick start: a plain and an adversarially trained model on the embedded digits, one table.

What it shows:

* ``robustood.evaluate`` with two models given as training recipes: ``plain`` (cross-entropy)
  and ``adv:fgsm:8/255`` (FGSM adversarial training at eps = 8/255); each is trained once
  on the first run (seconds to a minute on a CPU) and reused from the model cache after;
* FGSM and PGD at several budgets (eps in pixel units of images in [0, 1]) and the
  max-logit OOD detector against uniform noise images, all in one call;
* the comparison matrix as markdown (one row per model), one cell read as a float, and
  the report's plots written as PNG files.

Run it offline, in about a minute on a 2-core CPU::

    python examples/quickstart_digits.py              # plots into a temporary directory
    python examples/quickstart_digits.py plots/       # plots into plots/

Trained models are cached in ``~/.cache/robustood`` (or ``$ROBUSTOOD_CACHE_DIR``).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import robustood as ro

MODELS = ["plain", "adv:fgsm:8/255"]
ATTACKS = ["fgsm:2/255", "fgsm:8/255", "fgsm:32/255", "pgd:8/255"]
HEADLINE = ["accuracy", "robust_accuracy", "auroc", "fpr_at_95_tpr"]


def main(argv: list[str]) -> int:
    plot_dir = Path(argv[0]) if argv else Path(tempfile.mkdtemp(prefix="robustood-plots-"))

    report = ro.evaluate(
        MODELS,
        "digits",  # the embedded default: 8×8 grey digits, 10 classes, no download
        attacks=ATTACKS,
        detectors=["maxlogit"],
        ood=["noise"],
        seed=0,
        device="cpu",
    )

    # The comparison matrix: one row per model, one column per metric × attack × OOD set.
    print(report.to_markdown(HEADLINE))

    # Any cell as a plain float; every metric (success rate, norms …) is in report.rows.
    plain = report.value("plain", "robust_accuracy", attack="fgsm-linf", eps=8 / 255)
    adv = report.value("adv:fgsm:8/255", "robust_accuracy", attack="fgsm-linf", eps=8 / 255)
    print(f"\nFGSM at 8/255: robust accuracy {plain:.3f} (plain) vs {adv:.3f} (adversarially trained)")

    for path in report.plot(plot_dir):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

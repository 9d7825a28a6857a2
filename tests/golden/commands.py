"""The commands whose JSON output is pinned in ``tests/golden/*.json`` (seed 0, digits).

``python tests/golden/commands.py`` regenerates the files; ``tests/test_golden.py`` reruns
every command and compares its rows with the pinned ones (exact where exact by construction,
within ``tests/tolerance.py`` elsewhere). Regenerate only for a change that is meant to change
numbers, and say why in the commit message.

Every command runs with one torch thread and on models trained afresh into a cache of its own:
the number of threads changes the order of training's sums, and so the trained model, and on
the adversarially trained one that is worth more than a dependency release (on 2 threads,
FPR@95 %TPR 0.285 against 0.13 on one).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
COMMON = ["--seed", "0", "--limit", "200", "--quiet", "--format", "json", "--device", "cpu"]

COMMANDS: dict[str, list[str]] = {
    "attack_linf": ["attack", "--attack", "fgsm,pgd,bim", "--eps", "0,2/255,8/255,32/255"],
    "attack_l2_targeted": ["attack", "--attack", "pgd", "--norm", "2", "--eps", "1", "--targeted", "least-likely"],
    "attack_ddn": ["attack", "--attack", "ddn", "--norm", "2", "--eps", "1", "--steps", "20"],
    "ood": [
        "ood",
        "--detector",
        "msp,maxlogit,energy,odin,mahalanobis,vim,knn",
        "--ood",
        "noise,natural,adv:fgsm:8/255",
    ],
    "defend_squeeze": ["defend", "--defense", "squeeze", "--attack", "fgsm,pgd", "--eps", "8/255,32/255"],
    "compare": [
        "compare",
        "-m",
        "plain",
        "-m",
        "adv:fgsm:8/255",
        "--attack",
        "fgsm,pgd",
        "--eps",
        "8/255,32/255",
        "--detector",
        "maxlogit,msp",
        "--ood",
        "noise,natural,adv:pgd:8/255",
        "--defense",
        "squeeze",
    ],
}

#: Columns that measure time, not the model: never compared.
VOLATILE = ("seconds", "images_per_second")


#: Inputs each command evaluates (``--limit`` in :data:`COMMON`): the count the tolerances of
#: fractions are stated in.
N = int(COMMON[COMMON.index("--limit") + 1])


def run(name: str) -> list[dict]:
    """Run one pinned command in this process with one torch thread; return its JSON rows."""
    import torch
    from click.testing import CliRunner

    from robustood.cli import main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = CliRunner().invoke(main, [*COMMANDS[name], *COMMON], catch_exceptions=False)
    finally:
        torch.set_num_threads(threads)
    if result.exit_code != 0:
        raise RuntimeError(f"{name} exited {result.exit_code}: {result.output}")
    return json.loads(result.stdout)


def strip(rows: list[dict]) -> list[dict]:
    """Rows without the time columns (any key naming one of :data:`VOLATILE`)."""
    return [{k: v for k, v in r.items() if not any(t in k for t in VOLATILE)} for r in rows]


if __name__ == "__main__":
    os.environ.setdefault("ROBUSTOOD_CACHE_DIR", tempfile.mkdtemp(prefix="robustood-golden-"))
    for name in sys.argv[1:] or COMMANDS:
        rows = strip(run(name))
        (HERE / f"{name}.json").write_text(json.dumps(rows, indent=1, sort_keys=True) + "\n")
        print(f"wrote {name}.json ({len(rows)} rows)")

"""The commands whose JSON output is pinned in ``tests/golden/*.json`` (seed 0, digits).

``python tests/golden/commands.py`` regenerates the files; ``tests/test_golden.py`` reruns
every command and compares its rows with the pinned ones. Regenerate only for a change
that is meant to change numbers, and say why in the commit message.
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


def run(name: str) -> list[dict]:
    """Run one pinned command in this process; return its JSON rows."""
    from click.testing import CliRunner

    from robustood.cli import main

    result = CliRunner().invoke(main, [*COMMANDS[name], *COMMON], catch_exceptions=False)
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

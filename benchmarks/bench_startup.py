"""Start-up time of the command line: ``robustood --help`` and ``robustood COMMAND --help`` against
``python -c "import torch"``, each in a fresh interpreter, interleaved, medians.

The goal: every ``--help`` under 0.5× the time of importing torch (the help path imports no
torch, ART, pytorch-ood, scikit-learn or matplotlib).

    python benchmarks/bench_startup.py --repeats 7
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from robustood.report import render

CLI = [sys.executable, "-c", "from robustood.cli import main; main()"]  # what the console script runs
COMMANDS = {
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    "robustood --help": [*CLI, "--help"],
    **{f"robustood {cmd} --help": [*CLI, cmd, "--help"] for cmd in ("attack", "ood", "defend", "compare", "train")},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):  # interleaved: machine load hits every command alike
        for name, argv in COMMANDS.items():
            t0 = time.perf_counter()
            subprocess.run(argv, check=True, capture_output=True)
            times[name].append(time.perf_counter() - t0)
    torch_s = statistics.median(times["python -c 'import torch'"])
    rows = [
        {"command": name, "median_s": statistics.median(t), "ratio_to_import_torch": statistics.median(t) / torch_s}
        for name, t in times.items()
    ]
    print(render(rows, "table"), end="")


if __name__ == "__main__":
    main()

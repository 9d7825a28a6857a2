"""Each command's JSON output for a fixed seed is pinned (``tests/golden/``): refactors keep the numbers.

The pinned files were written by ``python tests/golden/commands.py``; a change meant to
change numbers regenerates them and says why. Timing columns are not compared.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parent / "golden"
sys.path.insert(0, str(GOLDEN))

from commands import COMMANDS, run, strip  # noqa: E402


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


@pytest.mark.parametrize("name", list(COMMANDS))
def test_command_output_is_pinned(name):
    expected = json.loads((GOLDEN / f"{name}.json").read_text())
    got = strip(run(name))
    assert len(got) == len(expected), f"{name}: {len(got)} rows, pinned {len(expected)}"
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        assert sorted(g) == sorted(e), f"{name} row {i}: columns {sorted(set(g) ^ set(e))} differ"
        diff = {k: (g[k], e[k]) for k in e if not _same(g[k], e[k])}
        assert not diff, f"{name} row {i}: (got, pinned) {diff}"

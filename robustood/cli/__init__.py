"""The ``robustood`` command line: thin commands over the library that print tables.

Each command parses its options, makes one :func:`robustood.evaluate` call (``train``,
``datasets`` and ``models`` aside) and renders the report. Nothing heavy is imported until
a command runs, so ``robustood --help`` starts without torch.
"""

from __future__ import annotations

from . import attack, compare, defend, info, ood, train
from .app import RobustoodGroup, UserError, main

__all__ = ["RobustoodGroup", "UserError", "attack", "compare", "defend", "info", "main", "ood", "train"]

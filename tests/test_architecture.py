"""The package's shape: module-level imports run one way (no cycles), heavy dependencies load late."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "robustood"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def module_graph() -> dict[str, set[str]]:
    """Module → the robustood modules it imports at module level (imports inside functions and
    ``if TYPE_CHECKING:`` blocks do not count: they run later or never)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        deps: set[str] = set()
        for node in tree.body:
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, node, path.name == "__init__.py")
                # ``from . import sub`` needs the submodule; ``from .pkg import name`` needs pkg
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
                targets = subs if len(subs) == len(node.names) else [base, *subs]
            else:
                continue
            deps |= {t for t in targets if t in modules and t != name}
        graph[name] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                found.append([*stack[stack.index(dep) :], dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_no_import_cycles():
    graph = module_graph()
    # a package importing its own submodules is how packages work; a submodule importing its
    # package's __init__ (or a sibling package) that imports it back is a cycle
    assert len(graph) > 20
    assert _cycles(graph) == []


def test_the_cycle_check_can_fail():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


@pytest.mark.parametrize(
    ("low", "high"),
    [
        ("robustood.attacks.base", "robustood.attacks.registry"),
        ("robustood.train", "robustood.recipes"),
        ("robustood.recipes", "robustood.resolve"),
        ("robustood.report", "robustood.plots.report"),
        ("robustood.attacks", "robustood.evaluate"),
        ("robustood.detectors", "robustood.evaluate"),
    ],
)
def test_layers_import_downwards(low, high):
    """Lower layers never import higher ones at module level (directly or through others)."""
    graph = module_graph()
    seen, todo = set(), [low]
    while todo:
        node = todo.pop()
        for dep in graph.get(node, ()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    assert high not in seen


def _imported(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(out.stdout.split())


def test_help_imports_no_heavy_dependency():
    loaded = _imported(
        "from click.testing import CliRunner\n"
        "from robustood.cli import main\n"
        "for args in (['--help'], ['attack', '--help'], ['ood', '--help'], ['defend', '--help'],"
        " ['compare', '--help'], ['train', '--help']):\n"
        "    assert CliRunner().invoke(main, args).exit_code == 0"
    )
    heavy = {"torch", "torchvision", "art", "pytorch_ood", "sklearn", "scipy", "matplotlib", "numpy"}
    assert not heavy & loaded


def test_attacks_do_not_load_art_pytorch_ood_or_matplotlib():
    loaded = _imported("import robustood.attacks, robustood.evaluate")
    assert not {"art", "pytorch_ood", "matplotlib"} & loaded

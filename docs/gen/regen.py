"""Regenerate the parts of the docs that a command prints, so they cannot drift.

``python docs/gen/regen.py`` rewrites

* ``docs/cli.md``, the CLI reference, from the click commands themselves (every option, its
  type, default and help; ``<`` and ``>`` escaped so ``<cache-dir>`` is text, not a tag);
* every block between ``<!-- gen:NAME -->`` and ``<!-- /gen:NAME -->`` in ``docs/*.md``: the
  command of :data:`SAMPLES` ``NAME`` and what it prints (seed 0, digits, a 100-column
  terminal, one torch thread);
* the pictures of ``docs/img/`` (:data:`PICTURES`), the plots the commands write.

``python docs/gen/regen.py attack pictures`` regenerates only those parts (and the CLI
reference, always; ``python docs/gen/regen.py cli`` writes the reference alone).

``python docs/gen/regen.py --check`` changes nothing and exits 1 when a file is out of date
(the CLI reference) — ``tests/test_docs.py`` runs the same checks and compares the printed
numbers with the documented ones within the tolerances of ``tests/tolerance.py`` (the ones the
pinned command outputs are held to), widened by the precision each number is printed at.
"""

from __future__ import annotations

import inspect
import os
import re
import shlex
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

DOCS = Path(__file__).resolve().parents[1]
ROOT = DOCS.parent
WIDTH = 100

#: Columns that measure time, not the model: never compared.
VOLATILE = ("images_per_second", "seconds")


class Sample(NamedTuple):
    """A documented command and what it prints."""

    command: str
    #: the page of ``docs/`` that shows it
    page: str
    #: trains several models: not rerun by the default test tier
    slow: bool
    #: inputs it evaluates per set (``--limit``, or the test split): what the tolerance of a
    #: fraction is stated in
    n: int


SAMPLES: dict[str, Sample] = {
    "attack": Sample("robustood attack --eps 2/255,8/255 --limit 64 -q", "attacks.md", False, 64),
    "ood": Sample("robustood ood --detector msp,energy --ood noise,natural --limit 100 -q", "ood.md", False, 100),
    "study-digits": Sample(
        "robustood compare --model plain --model adv:fgsm:2/255:epochs=15 --model adv:fgsm:2/255:epochs=25 "
        "--model adv:fgsm:4/255 --attack fgsm --eps 2/255,8/255,32/255 --detector maxlogit --ood noise "
        "--format markdown -q",
        "study.md",
        True,
        360,
    ),
}


def run_sample(name: str) -> str:
    """What the sample's command prints (standard output), run in this process."""
    import torch
    from click.testing import CliRunner

    from robustood.cli import main

    argv = shlex.split(SAMPLES[name].command)[1:]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the documented numbers are computed with one thread
    try:
        result = CliRunner(env={"COLUMNS": str(WIDTH)}).invoke(main, [*argv, "--device", "cpu"])
    finally:
        torch.set_num_threads(threads)
    if result.exit_code != 0:
        raise RuntimeError(f"{name}: exit {result.exit_code}: {result.output}")
    return result.stdout


def block(name: str, output: str) -> str:
    """The documented block: the command and its output in one console fence, or, for
    ``--format markdown``, the command's fence followed by the table itself."""
    command = SAMPLES[name].command
    if "--format markdown" in command:
        body = f"```console\n$ {command}\n```\n\n{output.rstrip()}"
    else:
        body = f"```console\n$ {command}\n{output.rstrip()}\n```"
    return f"<!-- gen:{name} -->\n{body}\n<!-- /gen:{name} -->"


def documented(name: str) -> str:
    """The output of sample ``name`` as the docs show it."""
    text = (DOCS / SAMPLES[name].page).read_text(encoding="utf-8")
    match = re.search(rf"<!-- gen:{re.escape(name)} -->\n(.*?)\n<!-- /gen:{re.escape(name)} -->", text, re.S)
    if match is None:
        raise KeyError(f"{SAMPLES[name].page} has no <!-- gen:{name} --> block")
    body = match.group(1)
    if "--format markdown" in SAMPLES[name].command:
        return body.split("```\n\n", 1)[1] + "\n"
    return body.split("\n", 2)[2].rsplit("\n```", 1)[0] + "\n"


def write_sample(name: str) -> None:
    path = DOCS / SAMPLES[name].page
    pattern = re.compile(rf"<!-- gen:{re.escape(name)} -->.*?<!-- /gen:{re.escape(name)} -->", re.S)
    if not pattern.search(path.read_text(encoding="utf-8")):
        raise KeyError(f"{path.name} has no <!-- gen:{name} --> block")
    new = block(name, run_sample(name))  # run first, then read: edits made meanwhile are kept
    text = path.read_text(encoding="utf-8")
    path.write_text(pattern.sub(lambda _: new, text), encoding="utf-8")


def numbers(output: str) -> dict[tuple[str, str], float]:
    """The numeric cells of a printed table (``table`` blocks or markdown) by (row key, column),
    the row key being the row's text cells joined; :data:`VOLATILE` columns left out."""
    return {key: float(text) for key, text in cells(output).items()}


def cells(output: str) -> dict[tuple[str, str], str]:
    """The numeric cells of a printed table as printed (see :func:`numbers`)."""
    found: dict[tuple[str, str], str] = {}
    for chunk in re.split(r"\n\s*\n", output.strip()):
        lines = [ln for ln in chunk.splitlines() if ln.strip() and not set(ln) <= set("-|: ")]
        if not lines:
            continue
        split = (lambda ln: [c.strip() for c in ln.strip().strip("|").split("|")]) if "|" in lines[0] else str.split
        header = split(lines[0])
        for line in lines[1:]:
            row = split(line)
            key = " ".join(c for c in row if not _is_number(c))
            for col, cell in zip(header, row, strict=False):
                if _is_number(cell) and not any(v in col for v in VOLATILE):
                    found[(key, col)] = cell
    return found


def half_unit(cell: str) -> float:
    """Half a unit of a printed number's last digit: how far rounding may have moved it."""
    decimals = len(cell.partition(".")[2]) if "e" not in cell.lower() else 0
    return 0.5 * 10.0**-decimals


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- pictures

#: docs/img/NAME.png ← (command with --plots DIR, the file it writes in DIR).
PICTURES: dict[str, tuple[str, str]] = {
    "attack_curve": ("attack --attack fgsm,pgd --eps 0,2/255,8/255,32/255", "accuracy_vs_eps.png"),
    "attack_examples": ("attack --attack pgd --eps 8/255", "pgd_linf_eps8_255.png"),
    "ood_hist": ("ood --detector msp --ood noise,natural", "msp_hist.png"),
    "ood_pr": ("ood --detector msp --ood noise,natural", "msp_pr.png"),
    "squeezing": ("defend --defense squeeze --attack fgsm,pgd --eps 8/255,32/255", "squeezing.png"),
    "compare_accuracy": ("compare --eps 8/255", "robust_accuracy_vs_eps.png"),
    "compare_auroc": ("compare --eps 8/255 --ood noise,natural", "ood_auroc.png"),
}


def write_pictures() -> None:
    """Write the plots the docs show into ``docs/img/`` (seed 0, digits, one torch thread)."""
    import shutil

    import torch
    from click.testing import CliRunner

    from robustood.cli import main

    torch.set_num_threads(1)
    (DOCS / "img").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, (command, produced) in PICTURES.items():
            folder = Path(tmp) / name
            args = [*shlex.split(command), "--plots", str(folder), "--device", "cpu", "-q"]
            result = CliRunner().invoke(main, args)
            if result.exit_code != 0:
                raise RuntimeError(f"{name}: exit {result.exit_code}: {result.output}")
            shutil.copyfile(folder / produced, DOCS / "img" / f"{name}.png")
            print(f"wrote docs/img/{name}.png")


# --------------------------------------------------------------------------- the CLI reference


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def _default(param) -> str:
    import click

    if param.is_flag if isinstance(param, click.Option) else False:
        return ""
    value = param.default
    if value is None or type(value).__name__ == "Sentinel" or value == () or callable(value):
        return ""
    if isinstance(value, (tuple, list)):
        value = ",".join(map(str, value))
    return f"`{value}`"


def cli_reference() -> str:
    """``docs/cli.md``: every command's usage, help and options as markdown tables."""
    import click

    from robustood.cli import main
    from robustood.errors import EXIT_CODES

    out = [
        "# CLI reference",
        "",
        "Generated from the click commands by `python docs/gen/regen.py` (a test checks it is current),",
        "so it never drifts from `robustood COMMAND --help`. Every list option is repeatable and",
        "comma-separated alike (`--attack fgsm --attack pgd` is `--attack fgsm,pgd`).",
        "",
    ]
    out += [
        "## Exit codes",
        "",
        "Every failure is one `Error:` line on standard error (no traceback; `ROBUSTOOD_DEBUG=1` shows",
        "one for an unexpected error) and one exit code, defined once in `robustood.errors.EXIT_CODES`:",
        "",
        "| code | meaning |",
        "|---|---|",
        *(f"| `{code}` | {_escape(meaning)} |" for code, meaning in EXIT_CODES.items()),
        "",
        "Output paths (`--out`, `--save-adv`, `--save-scores`, `--report`, `--store`, `--plots`, `train",
        "--save`) are checked before any work starts. A write that still fails at the end (a full disk)",
        "says that the work finished and what was kept: the store's finished units, the cached model.",
        "Special files are written directly (`--out /dev/stdout`, `/dev/null`, a FIFO or `>(cmd)`), a",
        "symbolic link's target is written, new files follow the umask and an existing file keeps its",
        "mode.",
        "",
        "## Commands",
        "",
    ]
    ctx = click.Context(main, info_name="robustood")
    out += ["```text", main.get_usage(ctx), "```", "", _escape(inspect.cleandoc(main.help or "")), ""]
    for name in sorted(main.commands):
        cmd = main.commands[name]
        sub = click.Context(cmd, info_name=name, parent=ctx)
        out += [f"## robustood {name}", "", "```text", cmd.get_usage(sub), "```", ""]
        out += [_escape(line) for line in inspect.cleandoc(cmd.help or "").replace("\b\n", "").splitlines()]
        out += ["", "| option | type | default | description |", "|---|---|---|---|"]
        for param in cmd.params:
            if not isinstance(param, click.Option) or param.hidden:
                continue
            names = ", ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
            kind = "flag" if param.is_flag else _escape(param.make_metavar(sub))
            help_text = _escape(" ".join((param.help or "").split()))
            if param.envvar:
                help_text += f" (environment: `{param.envvar}`)"
            out.append(f"| {names} | {kind} | {_default(param)} | {help_text} |")
        out.append("| `-h`, `--help` | flag | | Show the help and exit. |")
        if cmd.epilog:
            out += ["", "```text", cmd.epilog.replace("\b\n", "").strip(), "```"]
        out.append("")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    os.environ.setdefault("ROBUSTOOD_CACHE_DIR", tempfile.mkdtemp(prefix="robustood-docs-"))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.path.insert(0, str(ROOT))
    check = "--check" in argv
    reference = cli_reference()
    cli_md = DOCS / "cli.md"
    if check:
        stale = cli_md.read_text(encoding="utf-8") != reference
        print(f"{cli_md}: {'out of date' if stale else 'current'}")
        return int(stale)
    cli_md.write_text(reference, encoding="utf-8")
    print(f"wrote {cli_md}")
    names = [a for a in argv if not a.startswith("-")] or [*SAMPLES, "pictures"]
    for name in names:
        if name == "cli":  # the reference alone: python docs/gen/regen.py cli
            continue
        if name == "pictures":
            write_pictures()
            continue
        write_sample(name)
        print(f"wrote the {name} sample in {SAMPLES[name].page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

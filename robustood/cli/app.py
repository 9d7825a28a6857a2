"""The ``robustood`` command group every command module attaches to.

Every error becomes one ``Error:`` line and an exit code from
:data:`robustood.errors.EXIT_CODES`: 2 for bad usage or input, 1 when the environment
stopped the work (missing data, an unsafe or unreadable file, a failed write, any other
``OSError``). No traceback, unless ``ROBUSTOOD_DEBUG=1`` asks for one on an unexpected error.
"""

from __future__ import annotations

import errno
import os

import click

from .. import __version__
from ..errors import EXIT_CODES, EXIT_FAILURE, EXIT_USAGE, EnvironmentFault, RobustoodError

DEBUG_ENV = "ROBUSTOOD_DEBUG"


def _rank() -> str:
    """``[rank N] `` under a ``torchrun`` job (so a failing rank's error says which it was), else ``""``."""
    size, rank = os.environ.get("WORLD_SIZE", "1").strip(), os.environ.get("RANK", "").strip()
    return f"[rank {rank}] " if size.isdigit() and int(size) > 1 and rank.isdigit() else ""


class UserError(click.ClickException):
    """A library error caused by the user's input: one line, exit code 2."""

    exit_code = EXIT_USAGE

    def format_message(self) -> str:
        return _rank() + super().format_message()


class Failure(click.ClickException):
    """The environment stopped the work (missing data, a failed write …): one line, exit code 1."""

    exit_code = EXIT_FAILURE

    def format_message(self) -> str:
        return _rank() + super().format_message()


def quiet_other_ranks() -> None:
    """On a ``torchrun`` rank other than 0: no tables, notes, warnings or progress (rank 0 prints
    them once for the job); errors still show, with the rank."""
    import logging
    import sys
    import warnings

    from ..utils import is_writer

    if is_writer():
        return
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (the process's stdout from here on)
    warnings.simplefilter("ignore")
    logging.getLogger("robustood").setLevel(logging.ERROR)


def _one_line(text: str) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[0][:300] if lines else ""


def describe_os_error(exc: OSError) -> str:
    """``OSError`` as one line: the file (when known) and the reason."""
    reason = exc.strerror or _one_line(str(exc)) or errno.errorcode.get(exc.errno or 0, type(exc).__name__)
    name = exc.filename if exc.filename is not None else None
    return f"{name}: {reason}" if name is not None else reason


class RobustoodGroup(click.Group):
    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except EnvironmentFault as exc:
            raise Failure(_one_line(str(exc))) from None
        except RobustoodError as exc:
            raise UserError(_one_line(str(exc))) from None
        except OSError as exc:
            raise Failure(describe_os_error(exc)) from None
        except MemoryError:
            raise Failure("out of memory; use a smaller --batch-size or --limit") from None
        except Exception as exc:
            if os.environ.get(DEBUG_ENV):
                raise
            raise Failure(
                f"unexpected {type(exc).__name__}: {_one_line(str(exc))} (set {DEBUG_ENV}=1 to see where it happened)"
            ) from None


EPILOG = """\b
Examples:
  robustood train                         train (and cache) the default digits model
  robustood datasets                      list datasets and OOD sources
  robustood models                        list zoo architectures and cached models
  robustood attack --eps 0,4/255,8/255    accuracy vs eps under FGSM (add --attack pgd, --plots DIR)
  robustood ood --detector msp            MSP against noise and natural images
  robustood defend --defense squeeze      feature squeezing vs the undefended model
  robustood compare                       plain vs adversarially trained: robust accuracy and OOD AUROC

\b
Exit codes:
""" + "\n".join(f"  {code}  {text}" for code, text in EXIT_CODES.items())


@click.group(cls=RobustoodGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="robustood")
def main() -> None:
    """Adversarial robustness and OOD detection for PyTorch image classifiers.

    Every epsilon is in pixel units of images in [0, 1] (e.g. 2/255).
    """
    quiet_other_ranks()

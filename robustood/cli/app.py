"""The ``robustood`` command group every command module attaches to.

Library errors become one ``Error:`` line and a non-zero exit code (2 for bad
input, 1 for missing files or data); no traceback for user mistakes.
"""

from __future__ import annotations

import click

from .. import __version__
from ..errors import DatasetUnavailableError, RobustoodError, UnsafeCheckpointError


class UserError(click.ClickException):
    """A library error caused by the user's input: one line, exit code 2."""

    exit_code = 2


class RobustoodGroup(click.Group):
    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except (DatasetUnavailableError, UnsafeCheckpointError) as exc:
            raise click.ClickException(str(exc)) from None
        except RobustoodError as exc:
            raise UserError(str(exc)) from None


EPILOG = """\b
Examples:
  robustood train                         train (and cache) the default digits model
  robustood datasets                      list datasets and OOD sources
  robustood models                        list zoo architectures and cached models
  robustood attack --eps 0,4/255,8/255    accuracy vs eps under FGSM (add --attack pgd, --plots DIR)
  robustood ood --detector msp            MSP against noise and natural images
  robustood defend --defense squeeze      feature squeezing vs the undefended model
  robustood compare                       plain vs adversarially trained: robust accuracy and OOD AUROC
"""


@click.group(cls=RobustoodGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="robustood")
def main() -> None:
    """Adversarial robustness and OOD detection for PyTorch image classifiers.

    Every epsilon is in pixel units of images in [0, 1] (e.g. 2/255).
    """

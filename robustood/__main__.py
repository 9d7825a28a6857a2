"""``python -m robustood``: the command line, as the ``robustood`` script runs it."""

from robustood.cli import main

if __name__ == "__main__":
    main(prog_name="robustood")

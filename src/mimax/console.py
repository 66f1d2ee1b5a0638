"""The ``mimax`` console script, ``python -m mimax`` and the reference-compatible ``main.py``: the CLI, with
its own imports (torch and torchvision: seconds at start-up) inside the Ctrl-C handling too, so that an
interrupt at any moment is one line and exit code 130, never an import traceback."""

from __future__ import annotations

import sys


def run(argv: list[str] | None = None) -> None:
    """Import the CLI and run it with ``argv`` (default: the command line); exits with its code."""
    try:
        from mimax.cli import main
    except KeyboardInterrupt:
        print("mimax: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    raise SystemExit(main(argv))

"""The `vault` entry point: even an interrupt while the CLI loads ends in one line, exit 130."""

from __future__ import annotations

import sys


def main() -> None:
    """Load the CLI and run it."""
    try:
        from vault.cli import main as cli_main
    except KeyboardInterrupt:
        sys.stderr.write("Error: interrupted\n")
        sys.exit(130)
    cli_main()

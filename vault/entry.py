"""The `vault` entry point: even an interrupt while the CLI loads ends in one line, exit 130."""

from __future__ import annotations

import sys


def main() -> None:
    """Load the CLI and run it."""
    try:
        try:
            if sys.argv[1:2] == ["sync"]:
                # Most syncs find nothing to do: prove it before loading the CLI and git.
                from vault.quick import quick_sync

                code = quick_sync(sys.argv[1:])
                if code is not None:
                    sys.exit(code)
            from vault.cli import main as cli_main
        except KeyboardInterrupt:
            sys.stderr.write("Error: interrupted\n")
            sys.exit(130)
        cli_main()  # (always ends in SystemExit, its outcome said)
    finally:
        _ignore_interrupts()


def _ignore_interrupts() -> None:
    """Once the outcome is decided (and said), a Ctrl-C changes nothing: without this, one
    that came while the interpreter shut down killed it with SIGINT, after a sync that had
    finished, and without a word."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)

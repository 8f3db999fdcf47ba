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
            _note_interrupts()
            from vault.cli import main as cli_main
        except (KeyboardInterrupt, Exception) as exc:
            if not (isinstance(exc, KeyboardInterrupt) or interrupted()):
                raise
            # (interrupted(): a Ctrl-C that a library turned into another error)
            sys.stderr.write("Error: interrupted\n")
            sys.exit(130)
        cli_main()  # (always ends in SystemExit, its outcome said)
    finally:
        _ignore_interrupts()


_interrupted = False


def interrupted() -> bool:
    """Whether a Ctrl-C (SIGINT) has reached this process since the CLI began to load."""
    return _interrupted


def _note_interrupts() -> None:
    """Raise KeyboardInterrupt on SIGINT as Python does, and also remember that one came.

    An interrupt can reach us as another exception: a C extension that is interrupted while
    it imports a module replaces the KeyboardInterrupt with its own error (`_ssl` importing
    `_socket` says "ImportError: PyCapsule_Import could not import module"), and the CLI would
    report it as unexpected (exit 3). With this, the CLI can tell and say "interrupted".
    A SIGINT that is ignored (a background job) or handled by an embedding program stays so.
    """
    import signal

    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return

    def on_sigint(signum: int, frame: object) -> None:
        global _interrupted
        _interrupted = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)


def _ignore_interrupts() -> None:
    """Once the outcome is decided (and said), a Ctrl-C changes nothing: without this, one
    that came while the interpreter shut down killed it with SIGINT, after a sync that had
    finished, and without a word."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)

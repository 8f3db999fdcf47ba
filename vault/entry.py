"""The `vault` entry point: even an interrupt while the CLI loads ends in one line, exit 130."""

from __future__ import annotations

import sys


def main() -> None:
    """Load the CLI and run it."""
    _fill_closed_std_fds()
    try:
        try:
            # (first: a SIGTERM or SIGHUP during the quick check ended it silently, 143)
            _note_interrupts()
            if sys.argv[1:2] == ["sync"]:
                # Most syncs find nothing to do: prove it before loading the CLI and git.
                from vault.quick import quick_sync

                code = quick_sync(sys.argv[1:])
                if code is not None:
                    _end_now(code)
            from vault.cli import main as cli_main
        except (KeyboardInterrupt, Exception) as exc:
            if not (isinstance(exc, KeyboardInterrupt) or interrupted()):
                raise
            # (interrupted(): a Ctrl-C that a library turned into another error)
            sys.stderr.write("Error: interrupted\n")
            sys.exit(130)
        try:
            cli_main()  # (always ends in SystemExit, its outcome said)
        except SystemExit as outcome:
            if sys.argv[1:2] in (["sync"], ["restore"]) and isinstance(outcome.code, int):
                # Their files are closed and their lock let go by now: tearing down what a
                # sync or restore of 10,000 files built costs ~35 ms of a ~0.8 s restore.
                _ignore_interrupts()
                _end_now(outcome.code, exit_hooks=True)
            raise
    finally:
        _ignore_interrupts()


def _fill_closed_std_fds() -> None:
    """Put /dev/null in place of a standard stream the process was started without (`vault
    sync >&-`, a supervisor that closes them). Python leaves sys.stdout None then, and every
    write, flush or isatty() failed: a sync stopped before its work, a restore wrote nothing,
    a usage error (exit 2) became exit 1. Worse, the first file the command opened would
    take the free descriptor 1 and receive its output. With /dev/null there, each command
    does its work, its words go nowhere, and it exits with its real code; a restore that
    must ask finds no terminal and is refused as without one (it needs --yes)."""
    import os

    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
            closed = False
        except OSError:  # (EBADF)
            closed = True
        if closed:
            null = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
            if null != fd:  # (the lowest free descriptor: fd, unless a lower one is free)
                os.dup2(null, fd)
                os.close(null)
        if getattr(sys, name) is None:
            # A descriptor Python found closed at start-up but that is open now was taken by
            # a file of its own: that file is not the stream, so the stream gets a new null.
            target: int | str = fd if closed else os.devnull
            stream = open(target, "r" if fd == 0 else "w", encoding="utf-8",
                          errors="surrogateescape" if fd == 0 else "backslashreplace",
                          closefd=not closed)
            setattr(sys, name, stream)


def _end_now(code: int, exit_hooks: bool = False) -> None:
    """End a command whose outcome is said and that holds nothing to close (its lock is let
    go, no file is open) without tearing the interpreter down: freeing the objects and modules
    of a quick sync costs ~4 ms of its ~60 ms. The output is flushed first, and with
    exit_hooks what the libraries registered with atexit is run (filelock, logging); should
    the flush fail (a closed pipe), Python's own exit reports it as it always does."""
    import os

    try:
        if exit_hooks:
            import atexit

            atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(code)
    os._exit(code)


_interrupted = False
_handler: object = None  # the handler _note_interrupts installed, once it has


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

    SIGTERM (`kill`, systemd stopping a unit, a shutdown) and SIGHUP (a closed terminal) are
    taken the same way when they are at their default: without this they ended a restore part
    way without a word, and the undo command it prints on an interrupt was never said.
    """
    try:
        # The C module under `signal`: the wrapper imports enum, ~7 ms of a quick sync's ~60
        import _signal as signal  # type: ignore[import-not-found]
    except ImportError:  # pragma: no cover - an interpreter without it
        import signal

    global _handler

    def on_signal(signum: int, frame: object) -> None:
        global _interrupted
        _interrupted = True
        raise KeyboardInterrupt

    _handler = on_signal
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, on_signal)
    for other in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(other) == signal.SIG_DFL:  # (nohup ignores SIGHUP: it stays so)
            signal.signal(other, on_signal)


def work_done() -> None:
    """The command's work is done (a commit made, files restored): what is left is to say so,
    and an interrupt now would only cut that short (a JSON document half printed, a restore's
    undo never said, exit 130 for work that was done). From here on interrupts are ignored."""
    if _handler is not None:
        _ignore_interrupts()


def _ignore_interrupts() -> None:
    """Once the outcome is decided (and said), a Ctrl-C changes nothing: without this, one
    that came while the interpreter shut down killed it with SIGINT, after a sync that had
    finished, and without a word. (SIGTERM and SIGHUP get their default back: a process
    that has said its outcome may be stopped.)"""
    try:
        # The C module under `signal`: the wrapper imports enum, ~7 ms of a quick sync's ~60
        import _signal as signal
    except ImportError:  # pragma: no cover - an interpreter without it
        import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if _handler is not None:
        for other in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(other) is _handler:
                signal.signal(other, signal.SIG_DFL)

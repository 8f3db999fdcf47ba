"""Pieces every command module shares: --json, --config, JSON output, errors, config loading."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, TypeVar

import click

from vault.errors import EXIT_CODES

F = TypeVar("F", bound=Callable[..., Any])

EXIT_CODE_HELP = "\b\nExit codes:\n" + "\n".join(
    f"  {code:<4} {meaning}" for code, meaning in EXIT_CODES.items())


class Abort(Exception):
    """Exit with a code after the command has already said why."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


_emitted = False  # whether this process printed its --json document
_json_asked: bool | None = None  # --json as the command parsed it (None: not parsed yet)


def emit_json(data: Any) -> None:
    """Print a JSON document (the --json output of every command): always JSON, never the
    Infinity or NaN that Python's json writes by default (finite_floats)."""
    global _emitted
    _emitted = True
    try:
        text = json.dumps(data, indent=2, sort_keys=False, allow_nan=False)
    except ValueError:  # (rare: walked only then)
        text = json.dumps(finite_floats(data), indent=2, sort_keys=False, allow_nan=False)
    click.echo(text)


def finite_floats(data: Any) -> Any:
    """data with each float that JSON has no number for written as SQLite writes it: ±inf as
    the SQL literals "1e999" and "-1e999" (as the vault's dumps and `vault diff` show them; a
    BLOB is given as "x'..'" alike), NaN as null (SQLite stores a NaN as NULL). They come from
    a database's REAL values (`show --sql`); the other outputs' floats (scores, seconds) are
    finite, and would be kept JSON all the same."""
    if isinstance(data, float):
        if math.isnan(data):
            return None
        if math.isinf(data):
            return "1e999" if data > 0 else "-1e999"
        return data
    if isinstance(data, dict):
        return {key: finite_floats(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_floats(value) for value in data]
    return data


def emit_json_error(argv: list[str], message: str, hint: str | None, code: int) -> None:
    """With --json among the arguments, a command stopped by an error still prints a JSON
    document (unless it printed its own already): {"ok": false, "error", "hint", "exit_code"}.
    The Error: line on stderr is printed as well."""
    if _json_asked is None:  # (stopped while its arguments were parsed: as they were given)
        args = argv[:argv.index("--")] if "--" in argv else argv
        asked = "--json" in args
    else:  # (as parsed: `--at --json` gives --at the value "--json", and asks for no JSON)
        asked = _json_asked
    if not asked or _emitted:
        return
    try:
        emit_json({"ok": False, "error": message, "hint": hint, "exit_code": code})
    except OSError:
        pass  # (stdout gone: the stderr line says it)


def shown(path: str) -> str:
    """A path for a line of human output: as it is, or, when it holds a control character (a
    newline in a name would make it look like two lines), quoted as the commit message quotes
    it (sync.quote_path, git's way)."""
    if path.isprintable():
        return path
    from vault.sync import quote_path  # (imported only for such a name)

    return quote_path(path)


def one_line(text: str) -> str:
    """Text for one line of human output: its control characters (a newline in a file name
    that a message quotes) escaped as Python writes them (\\n, \\x1b), so that no message looks
    like two, or like an Error: line of its own."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def print_error(message: str, hint: str | None = None) -> None:
    """The one-line Error: message (and Hint: line) on stderr."""
    click.echo(f"Error: {one_line(message)}", err=True)
    if hint:
        click.echo(f"Hint: {one_line(hint)}", err=True)


def json_option(func: F) -> F:
    """Every command takes --json."""
    return click.option("--json", "as_json", is_flag=True, callback=_note_json,
                        help="Print a stable JSON document instead of text.")(func)


def _note_json(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    global _json_asked
    _json_asked = bool(value)
    return value


def config_option(func: F) -> F:
    """Every command that reads vault.toml takes --config."""
    return click.option("--config", "config_path", metavar="FILE", envvar="VAULT_CONFIG",
                        callback=_given_config, help="Config file (default: $VAULT_CONFIG, ./vault.toml, "
                             "$XDG_CONFIG_HOME/vault/vault.toml or "
                             "~/.config/vault/vault.toml).")(func)


def _given_config(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """--config '' is refused: an empty value would quietly mean the default search (an empty
    VAULT_CONFIG is taken as unset, as the shell's habit is)."""
    if value == "" and ctx.get_parameter_source(param.name or "") \
            == click.core.ParameterSource.COMMANDLINE:
        raise click.BadParameter("needs a file (an empty one would mean the default search)")
    return value


def load_config_at(config_path: str | None) -> Any:
    """Load the config from --config or the usual search path."""
    from vault.config import load_config

    return load_config(config_path)


class Progress:
    """A rich progress display on a terminal only; does nothing for pipes, cron, --json."""

    def __init__(self, label: str, enabled: bool) -> None:
        import sys

        self.enabled = enabled and sys.stdout.isatty() and sys.stderr.isatty()
        self.label = label
        self._bar: Any = None
        self._task: Any = None
        self.count = 0

    def __enter__(self) -> Progress:
        return self

    def _start(self) -> None:
        # Started on the first update, so a prompt before any work (restore's confirmation)
        # never fights with a live display.
        if self.enabled and self._bar is None:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bar,
                                       SpinnerColumn, TextColumn, TimeElapsedColumn)

            self._bar = Bar(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                            MofNCompleteColumn(), TimeElapsedColumn(), transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=None)

    def file(self, _name: str) -> None:
        """One more file read (total unknown)."""
        self.count += 1
        if self.enabled and self.count % 25 == 0:
            self._start()
            self._bar.update(self._task, completed=self.count)

    def step(self, done: int, total: int) -> None:
        """done of total."""
        if self.enabled and (done % 25 == 0 or done == total):
            self._start()
            self._bar.update(self._task, completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)

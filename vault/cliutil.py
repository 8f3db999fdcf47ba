"""Pieces every command module shares: --json, --config, JSON output, errors, config loading."""

from __future__ import annotations

import json
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


def emit_json(data: Any) -> None:
    """Print a JSON document (the --json output of every command)."""
    click.echo(json.dumps(data, indent=2, sort_keys=False))


def print_error(message: str, hint: str | None = None) -> None:
    """The one-line Error: message (and Hint: line) on stderr."""
    click.echo(f"Error: {message}", err=True)
    if hint:
        click.echo(f"Hint: {hint}", err=True)


def json_option(func: F) -> F:
    """Every command takes --json."""
    return click.option("--json", "as_json", is_flag=True,
                        help="Print a stable JSON document instead of text.")(func)


def config_option(func: F) -> F:
    """Every command that reads vault.toml takes --config."""
    return click.option("--config", "config_path", metavar="FILE", envvar="VAULT_CONFIG",
                        help="Config file (default: $VAULT_CONFIG, ./vault.toml, "
                             "~/.config/vault/vault.toml).")(func)


def load_config_at(config_path: str | None) -> Any:
    """Load the config from --config or the usual search path."""
    from vault.config import load_config

    return load_config(config_path)

"""The one exception hierarchy: every failure the library reports is a VaultError."""

from __future__ import annotations

# Exit codes, documented in `vault --help` and the README.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNEXPECTED = 3
EXIT_NO_VAULT = 10
EXIT_BUSY = 11
EXIT_INTERRUPTED = 130

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "ok",
    EXIT_FAILED: "failed (a file not synced, a restore refused, a check failed; the vault "
                 "is intact)",
    EXIT_USAGE: "usage or configuration error (also a WHEN that names no commit)",
    EXIT_UNEXPECTED: "unexpected error (set VAULT_DEBUG=1 for a traceback)",
    EXIT_NO_VAULT: "no vault here (run `vault init`)",
    EXIT_BUSY: "busy: another sync holds the lock",
    EXIT_INTERRUPTED: "interrupted",
}


class VaultError(Exception):
    """Base of every error vault reports: a one-line message, an exit code, an optional hint."""

    exit_code: int = EXIT_FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(VaultError):
    """vault.toml is missing, unparseable, or has an unknown key or bad value."""

    exit_code = EXIT_USAGE


class UsageError(VaultError):
    """A command was called with arguments that do not make sense."""

    exit_code = EXIT_USAGE


class NoVaultError(VaultError):
    """There is no vault repository where the config says."""

    exit_code = EXIT_NO_VAULT


class BusyError(VaultError):
    """Another process holds the sync lock."""

    exit_code = EXIT_BUSY


class SourceError(VaultError):
    """A source root is missing or unreadable."""


class SnapshotError(VaultError):
    """A file could not be turned into the bytes that go into the vault."""


class SqliteSnapshotError(SnapshotError):
    """A SQLite database could not be snapshotted or rebuilt (corrupt, locked, not a database)."""


class RepoError(VaultError):
    """The vault repository is damaged or could not be written."""


class RestoreError(VaultError):
    """A restore could not be done safely; nothing was changed."""


def one_line_reason(exc: BaseException) -> str:
    """One line for an OSError (its strerror, without the path Python adds) or a library's
    error (its first line)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

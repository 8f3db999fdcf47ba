"""The audit trail: the vault's commits, newest first, narrowed by path and time."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from vault.config import parse_pattern, pattern_reason
from vault.errors import RepoError, UsageError
from vault.repo import CommitInfo, VaultRepo
from vault.sources import compile_patterns

# How many commits in a row must be older than --since before the walk stops: a clock that
# went backwards leaves an old timestamp between newer ones (git's revision.c SLOP).
SLOP = 5


@dataclass(frozen=True)
class LogEntry:
    """One commit and, when a path filter is given, what it did to the matching paths."""

    commit: CommitInfo
    changes: tuple[tuple[str, str], ...] = ()  # (status A/M/D, vault path)


def log(repo: VaultRepo, *, paths: tuple[str, ...] = (),
        since: datetime | CommitInfo | None = None, limit: int | None = None) -> list[LogEntry]:
    """Commits on the vault's branch, newest first; paths are exact paths, folders or globs.
    since: a time, or a commit (itself and the commits after it: not those of the same
    second before it)."""
    matcher = _matcher(paths) if paths else None
    exact = {p.strip("/") for p in paths}
    entries: list[LogEntry] = []
    older = 0
    since_id = since.id if isinstance(since, CommitInfo) else None
    since_at = since.time if isinstance(since, CommitInfo) else since
    for info in repo.walk():
        if since_at is not None and info.time < since_at:
            older += 1
            if older >= SLOP:
                break
            continue
        older = 0
        changes: tuple[tuple[str, str], ...] = ()
        if matcher is not None:
            changed = repo.changed_paths(info.id)
            changes = tuple(sorted((status, path) for path, status in changed.items()
                                   if path in exact or matcher(path)
                                   or any(path.startswith(e + "/") for e in exact)))
        if changes or matcher is None:
            entries.append(LogEntry(commit=info, changes=changes))
        if info.id == since_id or (limit is not None and len(entries) >= limit):
            break
    return entries


def since_time(repo: VaultRepo, text: str, now: datetime) -> datetime | CommitInfo:
    """--since WHEN: a time, a duration ago, or a commit (one that exists)."""
    from vault.when import Revision, parse_when

    when = parse_when(text, now=now, date_means="start")
    if not isinstance(when, Revision):
        return when.at
    try:
        return repo.resolve(when.spec)
    except RepoError as exc:  # a typo on the command line, not a damaged vault
        raise UsageError(f"--since: {exc.message}", hint=exc.hint) from None


def _matcher(paths: tuple[str, ...]) -> Callable[[str], bool]:
    """--path patterns compiled the way the scan compiles them; a bad one is a usage error."""
    try:
        return compile_patterns(paths)
    except (re.error, ValueError) as exc:
        reason = pattern_reason(exc)
    for path in paths:  # name the pattern, as the config check does
        try:
            parse_pattern(path)
        except ValueError as exc:
            raise UsageError(f"--path: {exc}") from None
    raise UsageError(f"--path: the patterns do not compile together: {reason}")

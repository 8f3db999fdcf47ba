"""What changed between two moments, file by file; for SQLite, which rows."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from vault.dumpdiff import TableDiff, diff_dumps
from vault.repo import CommitInfo, VaultRepo
from vault.restore import resolve_at
from vault.sources import compile_patterns
from vault.sqlite_dump import is_dump


@dataclass(frozen=True)
class FileDiff:
    """One file that differs between the two commits."""

    path: str
    status: str  # added | modified | deleted
    sqlite: bool
    lines_added: int = 0
    lines_removed: int = 0
    tables: tuple[TableDiff, ...] = ()


@dataclass(frozen=True)
class DiffResult:
    """The two commits compared and every file that differs."""

    old: CommitInfo
    new: CommitInfo
    files: tuple[FileDiff, ...]


def diff(repo: VaultRepo, old_when: str, new_when: str, now: datetime,
         paths: tuple[str, ...] = (), limit: int = 20) -> DiffResult:
    """Compare the vault as it was at two moments (WHEN expressions)."""
    old = resolve_at(repo, old_when, now)
    new = resolve_at(repo, new_when, now)
    before, after = repo.files(old.id), repo.files(new.id)
    match = compile_patterns(paths) if paths else None

    def wanted(path: str) -> bool:
        if match is None:
            return True
        rel = path.partition("/")[2]
        return match(path) or match(rel) or any(path.startswith(p.rstrip("/") + "/")
                                                for p in paths)

    files: list[FileDiff] = []
    for path in sorted(set(before) | set(after)):
        a, b = before.get(path), after.get(path)
        if a == b or not wanted(path):
            continue
        old_data = repo.read_blob(a[0]) if a else None
        new_data = repo.read_blob(b[0]) if b else None
        status = "added" if a is None else "deleted" if b is None else "modified"
        if any(d is not None and is_dump(d) for d in (old_data, new_data)):
            files.append(FileDiff(path, status, True, tables=tuple(
                diff_dumps(old_data, new_data, limit=limit))))
        else:
            added, removed = _line_counts(old_data or b"", new_data or b"")
            files.append(FileDiff(path, status, False, added, removed))
    return DiffResult(old=old, new=new, files=tuple(files))


def _line_counts(old: bytes, new: bytes) -> tuple[int, int]:
    """Lines added and removed (as multisets: fast on large transcripts, exact for appends)."""
    a, b = Counter(old.splitlines()), Counter(new.splitlines())
    return sum((b - a).values()), sum((a - b).values())

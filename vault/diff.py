"""What changed between two moments, file by file; for SQLite, which rows."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from vault.config import Config, VaultSettings
from vault.dumpdiff import ROW_LIMIT, TableDiff, diff_dumps
from vault.errors import VaultError
from vault.repo import CommitInfo, VaultRepo
from vault.restore import RestoreOptions, path_selector, resolve_at
from vault.sqlite_dump import is_dump


@dataclass(frozen=True)
class FileDiff:
    """One file that differs between the two commits."""

    path: str
    status: str  # added | modified | deleted
    sqlite: bool  # a SQLite database on either side: its tables are compared row by row
    lines_added: int = 0  # lines of the side(s) that are not a database
    lines_removed: int = 0
    tables: tuple[TableDiff, ...] = ()
    old_kind: str | None = None  # "sqlite" | "plain"; None where the file does not exist
    new_kind: str | None = None
    binary: bool = False  # a plain side holds a NUL byte (git's test): no line counts for it

    @property
    def kind_changed(self) -> bool:
        """True when the file is a database on one side and a plain file on the other."""
        return None not in (self.old_kind, self.new_kind) and self.old_kind != self.new_kind


@dataclass(frozen=True)
class DiffResult:
    """The two commits compared and every file that differs."""

    old: CommitInfo
    new: CommitInfo
    files: tuple[FileDiff, ...]


def diff(repo: VaultRepo, old_when: str, new_when: str, now: datetime,
         paths: tuple[str, ...] = (), limit: int = ROW_LIMIT, *,
         config: Config | None = None) -> DiffResult:
    """Compare the vault as it was at two moments (WHEN expressions).

    paths (--path) pick files exactly as `restore --path` does: a pattern that starts with a
    source's folder in the vault is a vault path, any other a path in its source (below the
    config's layout prefix, `host/source/` with a host layout). Without a config every path's
    first folder is its source (the default layout).
    """
    old = resolve_at(repo, old_when, now)
    new = resolve_at(repo, new_when, now)
    before, after = repo.files(old.id), repo.files(new.id)
    if config is None:
        config = Config(file=None, home=repo.path,
                        vault=VaultSettings(path=repo.path, branch=repo.branch))
    listing = set(before) | set(after)
    wanted = path_selector(config, RestoreOptions(paths=paths), listing)

    if paths and not any(wanted(p) for p in listing):
        # ("no differences" would say the file is the same at both moments)
        raise VaultError(f"--path: nothing matches in commit {old.id[:10]} or {new.id[:10]}",
                         hint="check --path (`vault log --path` lists when a file changed)")
    files: list[FileDiff] = []
    for path in sorted(listing):
        a, b = before.get(path), after.get(path)
        if a == b or not wanted(path):
            continue
        old_data = repo.read_blob(a[0]) if a else None
        new_data = repo.read_blob(b[0]) if b else None
        status = "added" if a is None else "deleted" if b is None else "modified"
        old_kind, new_kind = _kind(old_data), _kind(new_data)
        # A file can be a database on one side only (a 0-byte file before the first write, a
        # file replaced): that side's tables count as all added or removed, the other side's
        # text as lines.
        old_dump = old_data if old_kind == "sqlite" else None
        new_dump = new_data if new_kind == "sqlite" else None
        old_plain = old_data if old_kind == "plain" else None
        new_plain = new_data if new_kind == "plain" else None
        binary = any(d is not None and _binary(d) for d in (old_plain, new_plain))
        added, removed = (0, 0) if binary else _line_counts(old_plain, new_plain)
        tables = tuple(diff_dumps(old_dump, new_dump, limit=limit))  # () when neither is one
        files.append(FileDiff(path, status, "sqlite" in (old_kind, new_kind), added, removed,
                              tables, old_kind, new_kind, binary))
    return DiffResult(old=old, new=new, files=tuple(files))


def _kind(data: bytes | None) -> str | None:
    """Whether a side is a database dump ("sqlite") or any other file ("plain"); None: absent."""
    if data is None:
        return None
    return "sqlite" if is_dump(data) else "plain"


def _binary(data: bytes) -> bool:
    """git's test: a NUL byte in the first 8,000 bytes."""
    return b"\0" in data[:8000]


def _line_counts(old: bytes | None, new: bytes | None) -> tuple[int, int]:
    """Lines added and removed (as multisets: fast on large transcripts, exact for appends)."""
    a, b = Counter((old or b"").splitlines()), Counter((new or b"").splitlines())
    return sum((b - a).values()), sum((a - b).values())

"""Walk a source root with include/exclude patterns; list each file with its stat key."""

from __future__ import annotations

import os
import stat as stat_mod
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from vault.config import SourceConfig
from vault.errors import SourceError

# Never worth keeping, whatever the patterns say.
DEFAULT_EXCLUDES = (".git/", ".DS_Store", "*.vault-tmp")
# SQLite's companion files: they belong to the database beside them and are never synced as
# files (a copied -wal is replayed over a restored database); their stat joins the database's.
COMPANION_SUFFIXES = ("-wal", "-shm", "-journal")

MODE_FILE = 0o100644
MODE_EXEC = 0o100755

StatKey = tuple[int, ...]


@dataclass(frozen=True)
class Entry:
    """A file found in a source: its path relative to the root, its path on disk, its stat key."""

    rel: str
    path: str
    key: StatKey
    mode: int
    size: int


@dataclass
class Scan:
    """What a walk of one source found: files, files it could not take, folders it could not read."""

    source: SourceConfig
    entries: list[Entry] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    # Folders that could not be listed: the vault keeps what it has under them (never a deletion).
    unreadable_dirs: list[str] = field(default_factory=list)


def stat_key(st: os.stat_result) -> StatKey:
    """The fields that say a file may have changed: size, mtime_ns, ctime_ns, inode."""
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def compile_patterns(patterns: Iterable[str]) -> pathspec.PathSpec:
    """gitignore-style patterns (`*.md`, `memory/**`, `!keep.json`) as one matcher."""
    return pathspec.GitIgnoreSpec.from_lines(patterns)


def scan_source(source: SourceConfig, *, skip_dirs: Iterable[Path] = ()) -> Scan:
    """List the files of one source; raise SourceError when its root is missing or unreadable."""
    root = source.root
    try:
        root_st = os.stat(root)
    except FileNotFoundError:
        raise SourceError(f"source '{source.name}': folder not found: {root}",
                          hint="is the disk mounted? the vault keeps its last copy") from None
    except OSError as exc:
        raise SourceError(f"source '{source.name}': cannot read {root}: {exc.strerror}") from None
    if not stat_mod.S_ISDIR(root_st.st_mode):
        raise SourceError(f"source '{source.name}': not a folder: {root}")
    if not os.access(root, os.R_OK | os.X_OK):
        raise SourceError(f"source '{source.name}': cannot read {root}: permission denied")

    include = compile_patterns(source.include)
    exclude = compile_patterns((*DEFAULT_EXCLUDES, *source.exclude))
    skip = {os.path.realpath(p) for p in skip_dirs}
    scan = Scan(source=source)
    stack: list[tuple[str, str]] = [(str(root), "")]
    while stack:
        dir_path, rel_dir = stack.pop()
        try:
            with os.scandir(dir_path) as it:
                children = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            if not rel_dir:
                raise SourceError(f"source '{source.name}': cannot read {root}: "
                                  f"{exc.strerror}") from None
            scan.unreadable_dirs.append(rel_dir)
            scan.skipped.append((rel_dir + "/", f"folder unreadable: {exc.strerror}"))
            continue
        names = {c.name for c in children}
        for child in children:
            rel = f"{rel_dir}/{child.name}" if rel_dir else child.name
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError:
                scan.skipped.append((rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace"),
                                     "file name is not valid UTF-8"))
                continue
            try:
                if child.is_dir(follow_symlinks=False):
                    if exclude.match_file(rel + "/") or os.path.realpath(child.path) in skip:
                        continue
                    stack.append((child.path, rel))
                    continue
                if _is_companion(child.name, names):
                    continue
                if exclude.match_file(rel) or not include.match_file(rel):
                    continue
                if child.is_symlink():
                    scan.skipped.append((rel, "symbolic link (not followed)"))
                    continue
                st = child.stat(follow_symlinks=False)
            except OSError as exc:  # vanished or unreadable between listing and stat
                if isinstance(exc, FileNotFoundError):
                    continue
                scan.skipped.append((rel, f"cannot stat: {exc.strerror}"))
                continue
            if not stat_mod.S_ISREG(st.st_mode):
                scan.skipped.append((rel, "not a regular file"))
                continue
            key = stat_key(st)
            for suffix in ("-wal", "-journal"):
                if child.name + suffix in names:
                    key += _companion_key(child.path + suffix)
            mode = MODE_EXEC if st.st_mode & 0o100 else MODE_FILE
            scan.entries.append(Entry(rel=rel, path=child.path, key=key, mode=mode,
                                      size=st.st_size))
    scan.entries.sort(key=lambda e: e.rel)
    return scan


def _is_companion(name: str, names: set[str]) -> bool:
    for suffix in COMPANION_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in names:
            return True
    return False


def _companion_key(path: str) -> StatKey:
    try:
        return stat_key(os.stat(path))
    except OSError:
        return (-1, -1, -1, -1)

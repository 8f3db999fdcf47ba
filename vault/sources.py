"""Walk a source root with include/exclude patterns; list each file with its stat key."""

from __future__ import annotations

import os
import re
import stat as stat_mod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from vault.config import SourceConfig
from vault.errors import SourceError

# Never worth keeping, whatever the patterns say (checked by name: no pattern engine needed).
SKIP_DIR_NAMES = frozenset({".git"})
SKIP_FILE_NAMES = frozenset({".DS_Store"})
SKIP_FILE_SUFFIXES = (".vault-tmp",)
MATCH_ALL = frozenset({"*", "**", "**/*", "/**"})
# Names git refuses inside a tree, whatever their case (and git~1, their 8.3 short form).
GIT_RESERVED = frozenset({".git", "git~1"})
# SQLite's companion files: they belong to the database beside them and are never synced as
# files (a copied -wal is replayed over a restored database); their stat joins the database's.
COMPANION_SUFFIXES = ("-wal", "-shm", "-journal")

MODE_FILE = 0o100644
MODE_EXEC = 0o100755

StatKey = tuple[int, ...]


class Entry(NamedTuple):
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


Matcher = Callable[[str], bool]


def compile_patterns(patterns: Iterable[str]) -> Matcher:
    """gitignore-style patterns (`*.md`, `memory/`, `!keep.json`) as one match function."""
    import pathspec  # only sources with their own patterns pay for it

    spec = pathspec.GitIgnoreSpec.from_lines(list(patterns))
    regexes = [p.regex for p in spec.patterns if p.include is not None and p.regex is not None]
    if regexes and all(p.include for p in spec.patterns if p.include is not None):
        # No negation: "any pattern matches" is one regex, far faster than pathspec's loop.
        combined = re.compile("|".join(f"(?:{r.pattern.replace('?P<ps_d>', '')})"
                                       for r in regexes))
        return lambda path: combined.match(path) is not None
    return spec.match_file


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

    include = None if set(source.include) <= MATCH_ALL else compile_patterns(source.include)
    exclude = compile_patterns(source.exclude) if source.exclude else None
    skip: dict[int, str] = {}  # inode -> path of folders never walked (the vault itself)
    for folder in skip_dirs:
        try:
            skip[os.stat(folder).st_ino] = str(folder)
        except OSError:
            pass
    scan = Scan(source=source)
    stack: list[tuple[str, str]] = [(str(root), "")]
    while stack:
        dir_path, rel_dir = stack.pop()
        try:
            with os.scandir(dir_path) as it:
                children = list(it)
        except OSError as exc:
            if not rel_dir:
                raise SourceError(f"source '{source.name}': cannot read {root}: "
                                  f"{exc.strerror}") from None
            scan.unreadable_dirs.append(rel_dir)
            scan.skipped.append((rel_dir + "/", f"folder unreadable: {exc.strerror}"))
            continue
        # Only a folder holding SQLite companion files needs the name set (rare).
        names = {c.name for c in children} \
            if any(c.name.endswith(COMPANION_SUFFIXES) for c in children) else None
        prefix = rel_dir + "/" if rel_dir else ""
        for child in children:
            name = child.name
            rel = prefix + name
            if not name.isascii():
                try:
                    name.encode("utf-8")
                except UnicodeEncodeError:
                    shown = rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                    scan.skipped.append((shown, "file name is not valid UTF-8"))
                    continue
            if name.lower().rstrip(". ") in GIT_RESERVED and not (
                    name in SKIP_DIR_NAMES and child.is_dir(follow_symlinks=False)):
                # (a .git folder is a nested repository's metadata: left out silently)
                scan.skipped.append((rel, "git cannot store a file or folder with this name"))
                continue
            try:
                if child.is_dir(follow_symlinks=False):
                    if name in SKIP_DIR_NAMES or (exclude and exclude(rel + "/")) \
                            or (child.inode() in skip
                                and os.path.samefile(child.path, skip[child.inode()])):
                        continue
                    stack.append((child.path, rel))
                    continue
                if names and name.endswith(COMPANION_SUFFIXES) and _is_companion(name, names):
                    continue
                if name in SKIP_FILE_NAMES or name.endswith(SKIP_FILE_SUFFIXES):
                    continue
                if (exclude and exclude(rel)) or (include and not include(rel)):
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
            key: StatKey = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
            if names:
                if name + "-wal" in names:
                    key += _companion_key(child.path + "-wal")
                if name + "-journal" in names:
                    key += _companion_key(child.path + "-journal")
            mode = MODE_EXEC if st.st_mode & 0o100 else MODE_FILE
            scan.entries.append(Entry(rel, child.path, key, mode, st.st_size))
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

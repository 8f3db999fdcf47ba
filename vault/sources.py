"""Walk a source root with include/exclude patterns; list each file with its stat key."""

from __future__ import annotations

import os
import stat as stat_mod

from vault.errors import SourceError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from typing import Protocol

    class SourceLike(Protocol):
        """What a scan reads of a source: vault.config.SourceConfig, or the quick check's copy."""

        @property
        def name(self) -> str: ...
        @property
        def root(self) -> str | os.PathLike[str]: ...
        @property
        def include(self) -> tuple[str, ...]: ...
        @property
        def exclude(self) -> tuple[str, ...]: ...

# This module is on `vault sync`'s quick check, which runs before anything heavy is imported:
# plain classes rather than dataclasses or NamedTuple (typing and inspect cost ~20 ms), and the
# pattern engine only for sources that have patterns.

# Never worth keeping, whatever the patterns say (checked by name: no pattern engine needed).
SKIP_DIR_NAMES = frozenset({".git"})
# Temp folders of a restore that was killed (restore.py): never a memory of the agent's.
SKIP_DIR_PREFIX = ".vault-restore-"
SKIP_FILE_NAMES = frozenset({".DS_Store"})
SKIP_FILE_SUFFIXES = (".vault-tmp",)
MATCH_ALL = frozenset({"*", "**", "**/*", "/**"})
# Names libgit2 refuses in a tree (core.protectNTFS, on by default on every platform): ".git"
# or its 8.3 short name "git~1", in any case, alone, followed only by dots and spaces (".git ."),
# or followed by a backslash or a colon (".git\\x", ".git:stream", an NTFS data stream).
# (libgit2 path.c validate_dotgit_ntfs; tests/test_scan_edges.py holds git_refuses to pygit2.)
_RESERVED_FIRST = frozenset(".gG")  # their first letters: most names skip the test
# core.protectHFS (on by default on macOS; refused everywhere, so a vault synced from Linux and
# macOS takes the same files): HFS+ ignores these code points, so ".g\u200cit" is ".git" there.
_HFS_IGNORED = frozenset("\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                         "\u206a\u206b\u206c\u206d\u206e\u206f\ufeff")
_HFS_FIRST = _HFS_IGNORED | {"."}
# SQLite's companion files: they belong to the database beside them and are never synced as
# files (a copied -wal is replayed over a restored database); their stat joins the database's.
COMPANION_SUFFIXES = ("-wal", "-shm", "-journal")
# Those whose stat joins a database's key (a write may touch only them; the -shm is an index).
KEYED_COMPANIONS = ("-wal", "-journal")
SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database
# How SQLite's own companion files begin (sqlite.org/fileformat2.html), checked only beside a
# file X still empty or all zeros (a database's first transaction): a rollback journal starts
# with its magic, or with 8 zero bytes (SQLite writes the magic only when it syncs the journal,
# and journal_mode=PERSIST zeroes it after a commit); a WAL with its magic (last bit: the byte
# order of its checksums). tests/test_scan_edges.py checks them against a real SQLite.
JOURNAL_MAGICS = (b"\xd9\xd5\x05\xf9\x20\xa1\x63\xd7", bytes(8))
WAL_MAGICS = (b"\x37\x7f\x06\x82", b"\x37\x7f\x06\x83")
CREATING = "a database being created (its first transaction is open); the next sync takes it"
# The first line of the SQL text a database is stored as in the vault (sqlite_dump writes it).
# Here rather than there so that telling a stored database apart needs no apsw.
DUMP_HEADER = b"-- vault sqlite dump v1\n"
_ODD_SUFFIXES = COMPANION_SUFFIXES + SKIP_FILE_SUFFIXES

MODE_FILE = 0o100644
MODE_EXEC = 0o100755

StatKey = tuple[int, ...]


class Entry(tuple[str, str, StatKey, int, int]):
    """A file found in a source: its path relative to the root, its path on disk, its stat key,
    git mode and size. A tuple underneath: a walk makes one per file, and a tuple costs least."""

    __slots__ = ()

    @property
    def rel(self) -> str:
        return self[0]

    @property
    def path(self) -> str:
        return self[1]

    @property
    def key(self) -> StatKey:
        return self[2]

    @property
    def mode(self) -> int:
        return self[3]

    @property
    def size(self) -> int:
        return self[4]

    def with_key(self, key: StatKey) -> Entry:
        """The same file with another stat key (a database's with its -wal stat added)."""
        return Entry((self[0], self[1], key, self[3], self[4]))


class Scan:
    """What a walk of one source found: files, files it could not take, folders it could not read."""

    __slots__ = ("source", "entries", "skipped", "unreadable_dirs")

    def __init__(self, source: SourceLike) -> None:
        self.source = source
        self.entries: list[Entry] = []
        self.skipped: list[tuple[str, str]] = []
        # Folders that could not be listed: the vault keeps what it has under them (never a
        # deletion).
        self.unreadable_dirs: list[str] = []


def stat_key(st: os.stat_result) -> StatKey:
    """The fields that say a file may have changed: size, mtime_ns, ctime_ns, inode."""
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def pattern_for(path: str) -> str:
    """A pattern (as compile_patterns reads them) that matches exactly this path: each
    character with a special meaning escaped with a backslash."""
    import re

    return re.sub(r"([\\*?\[\]!# ])", r"\\\1", path)


def compile_patterns(patterns: Iterable[str]) -> Callable[[str], bool]:
    """gitignore-style patterns (`*.md`, `memory/`, `!keep.json`) as one match function."""
    import re

    import pathspec  # only sources with their own patterns pay for it

    spec = pathspec.GitIgnoreSpec.from_lines(list(patterns))
    regexes = [p.regex for p in spec.patterns if p.include is not None and p.regex is not None]
    if regexes and all(p.include for p in spec.patterns if p.include is not None):
        # No negation: "any pattern matches" is one regex, far faster than pathspec's loop.
        combined = re.compile("|".join(f"(?:{r.pattern.replace('?P<ps_d>', '')})"
                                       for r in regexes))
        return lambda path: combined.match(path) is not None
    return spec.match_file


def folder_filter(patterns: Iterable[str]) -> Callable[[str], bool] | None:
    """For include patterns: whether a folder (its path, no trailing slash) could hold a file
    they take, so that the walk never enters one that cannot, or None when any folder could.

    Only anchored patterns (a slash before the end: `memory/*.md`, `/notes/`) say where; one
    that matches at any depth (`*.db`, `MEMORY.md`) means every folder is walked. Conservative:
    a segment with `**` or a class may match any name, a pattern with an escape is not judged,
    and negations only take files out.
    """
    anchored: list[list[str]] = []
    for raw in patterns:
        pattern = raw.rstrip()  # gitignore drops trailing spaces (an escaped one: see below)
        if not pattern or pattern.startswith("#") or pattern.startswith("!"):
            continue
        body = pattern.rstrip("/")
        if "/" not in body or "\\" in pattern:
            return None
        anchored.append(body.lstrip("/").split("/"))
    if not anchored:
        return None

    def reach(folder: str) -> bool:
        names = folder.split("/")
        return any(_could_hold(names, segments) for segments in anchored)
    return reach


def _could_hold(names: list[str], segments: list[str]) -> bool:
    """Whether the folder whose path is `names` could hold a path that `segments` match."""
    from fnmatch import fnmatchcase

    for name, segment in zip(names, segments):
        if not segment or "**" in segment or "[" in segment:
            return True  # may match any name here, or any depth below
        if not fnmatchcase(name, segment):
            return False
    return True  # inside a folder the pattern takes whole, or on its way there


def path_filter(source: SourceLike) -> Callable[[str], bool]:
    """Whether a walk of source takes a file, by its path in the source: the include and
    exclude patterns as scan_source applies them (a folder excluded as such hides what is in
    it, whatever a negation says)."""
    include = None if set(source.include) <= MATCH_ALL else compile_patterns(source.include)
    exclude = compile_patterns(source.exclude) if source.exclude else None

    def takes(rel: str) -> bool:
        if exclude is not None:
            folder = rel
            while "/" in folder:
                folder = folder.rpartition("/")[0]
                if exclude(folder + "/"):
                    return False
            if exclude(rel):
                return False
        return include is None or include(rel)
    return takes


def scan_source(source: SourceLike, *, skip_dirs: Iterable[str | os.PathLike[str]] = ()) -> Scan:
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
    reach = folder_filter(source.include) if include else None
    skip: dict[int, str] = {}  # inode -> path of folders never walked (the vault itself)
    for folder in skip_dirs:
        try:
            skip[os.stat(folder).st_ino] = str(folder)
        except OSError:
            pass
    scan = Scan(source=source)
    stack: list[tuple[str, str]] = [(os.fspath(root), "")]
    while stack:
        dir_path, rel_dir = stack.pop()
        try:
            # Listed through a folder fd, so each stat below is an fstatat on a short name.
            fd = os.open(dir_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            _unreadable(scan, rel_dir, exc)
            continue
        try:
            _scan_dir(fd, dir_path, rel_dir, stack, scan, include, exclude, reach, skip)
        except OSError as exc:
            _unreadable(scan, rel_dir, exc)
        finally:
            os.close(fd)
    return scan


def _unreadable(scan: Scan, rel_dir: str, exc: OSError) -> None:
    """A folder that cannot be listed: the root fails the source, a subfolder is kept as it is.
    (Whether patterns would have left out all it holds cannot be told without its names: a
    folder excluded as such, `private/`, or one no include pattern reaches, is never opened.)"""
    if not rel_dir:
        raise SourceError(f"source '{scan.source.name}': cannot read {scan.source.root}: "
                          f"{exc.strerror}") from None
    import errno  # (only here: the walk's imports stay at os and stat)

    scan.unreadable_dirs.append(rel_dir)
    if exc.errno == errno.ENAMETOOLONG:  # (readable, but its path is past the system's limit)
        why = ("folder not walked: its path is longer than the system allows (PATH_MAX, 4,096 "
               "bytes on Linux)")
    else:
        why = f"folder unreadable: {exc.strerror}"
    scan.skipped.append((rel_dir + "/", why))


def _scan_dir(fd: int, dir_path: str, rel_dir: str, stack: list[tuple[str, str]], scan: Scan,
              include: Callable[[str], bool] | None, exclude: Callable[[str], bool] | None,
              reach: Callable[[str], bool] | None, skip: dict[int, str]) -> None:
    """One folder: its files into scan.entries, its subfolders onto the stack.

    This loop runs once per file per sync (and is most of the cost of a sync that finds nothing
    changed): the common file costs one d_type check, one fstatat and a few string tests.
    """
    with os.scandir(fd) as it:
        children = list(it)
    entries = scan.entries
    skipped = scan.skipped
    first = len(entries)
    by_name: dict[str, os.DirEntry[str]] | None = None  # once a companion's name shows up
    companions: set[str] = set()  # the names here that are SQLite's own -wal/-shm/-journal
    creating: set[str] = set()  # databases here whose first transaction is still open
    prefix = rel_dir + "/" if rel_dir else ""
    base = dir_path if dir_path.endswith("/") else dir_path + "/"
    for child in children:
        name = child.name
        rel = prefix + name
        if not name.isascii():
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:
                shown = rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                skipped.append((shown, "file name is not valid UTF-8"))
                continue
            if name[0] in _HFS_FIRST and _hfs_dotgit(name):
                _refused(child, rel, skipped, "git on macOS cannot store a {} with this name "
                         "(HFS+ reads it as .git), so the vault takes it nowhere")
                continue
        if name[0] in _RESERVED_FIRST and git_refuses(name):
            if not (name in SKIP_DIR_NAMES and child.is_dir(follow_symlinks=False)):
                # (a .git folder is a nested repository's metadata: left out silently)
                _refused(child, rel, skipped)
            continue
        try:
            if child.is_dir(follow_symlinks=False):
                if name in SKIP_DIR_NAMES or (exclude and exclude(rel + "/")) \
                        or (reach and not reach(rel)):
                    continue
                if name.startswith(SKIP_DIR_PREFIX):
                    skipped.append((rel + "/", "left by an interrupted restore: safe to delete"))
                    continue
                if skip and child.inode() in skip \
                        and os.path.samefile(base + name, skip[child.inode()]):
                    continue
                stack.append((base + name, rel))
                continue
            if name.endswith(_ODD_SUFFIXES):  # one test for both rare cases
                if name.endswith(SKIP_FILE_SUFFIXES):  # vault's own temp name: never taken
                    skipped.append((rel, "a temp file of vault's (a write that was killed "
                                         "leaves one): safe to delete"))
                    continue
                if by_name is None:
                    by_name = {c.name: c for c in children}
                if _is_companion(name, by_name, base, creating):
                    companions.add(name)
                    continue
            if name in SKIP_FILE_NAMES:
                continue
            if (exclude and exclude(rel)) or (include and not include(rel)):
                continue
            if name[0] in _GITMODULES_FIRST and _gitmodules(name):
                # git reads any blob by that name as submodule settings (git fsck, and hosts
                # that check what is pushed, refuse odd ones): not the vault's to hold
                skipped.append((rel, "git reads a .gitmodules file as submodule settings; "
                                     "not stored"))
                continue
            st = child.stat(follow_symlinks=False)
        except OSError as exc:  # vanished or unreadable between listing and stat
            if isinstance(exc, FileNotFoundError):
                continue
            skipped.append((rel, f"cannot stat: {exc.strerror}"))
            continue
        st_mode = st.st_mode
        if not stat_mod.S_ISREG(st_mode):
            skipped.append((rel, "symbolic link (not followed)" if stat_mod.S_ISLNK(st_mode)
                            else "not a regular file"))
            continue
        size = st.st_size
        entries.append(Entry((rel, base + name, (size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino),
                              MODE_EXEC if st_mode & 0o100 else MODE_FILE, size)))
    if creating:  # pages of a database before its first commit: the next sync takes it
        kept = [e for e in entries[first:] if e.rel.rpartition("/")[2] not in creating]
        skipped.extend((e.rel, CREATING) for e in entries[first:] if e not in kept)
        entries[first:] = kept
        skipped.extend((prefix + name, f"beside {name.rpartition('-')[0]}, which cannot be "
                        "read: taken as a file or as its database's once it can be")
                       for name in sorted(creating) if name in companions
                       and not ((exclude and exclude(prefix + name))
                                or (include and not include(prefix + name))))
    if companions:
        # A database's key includes its -wal and -journal stat: a write may touch only those.
        for i in range(first, len(entries)):
            entry = entries[i]
            name = entry.rel.rpartition("/")[2]
            for suffix in KEYED_COMPANIONS:
                if name + suffix in companions:
                    entry = entry.with_key(entry.key + companion_key(entry.path + suffix))
            entries[i] = entry


_GITMODULES_FIRST = frozenset(".gG") | _HFS_IGNORED


def _gitmodules(name: str) -> bool:
    """A name git (and NTFS, HFS+) takes for .gitmodules: any case, trailing dots and spaces,
    a data stream (":..."), its 8.3 short names (gitmod~1..4, gi7eba~N), HFS-ignored points."""
    plain = "".join(c for c in name if c not in _HFS_IGNORED).lower()
    base = plain.split(":", 1)[0].rstrip(". ")
    return base == ".gitmodules" or (base[:7] in ("gitmod~", "gi7eba~") and len(base) == 8
                                     and base[7] in ("1234" if base[2] == "t" else "123456789"))


def git_refuses(name: str) -> bool:
    """True when libgit2 refuses this file or folder name in a tree (its NTFS rule, above)."""
    # (No non-ASCII letter lowers to one of these, so .lower() compares as strncasecmp does.)
    if name[:4].lower() == ".git":
        rest = name[4:]
    elif name[3:5] == "~1" and name[:3].lower() == "git":
        rest = name[5:]
    else:
        return False
    return not rest.strip(" .") or rest[0] in "\\:"


def _hfs_dotgit(name: str) -> bool:
    """The core.protectHFS rule for a non-ASCII name: ".git" once the ignored code points are
    dropped. As libgit2 (path.c validate_dotgit_hfs_generic) compares only the low byte of
    each ASCII-lowered code point with "git", ".\u0167it" is refused too: mirrored exactly."""
    points = [ord(c) for c in name if c not in _HFS_IGNORED]
    return len(points) == 4 and points[0] == 0x2E and all(
        ((p + 32 if 0x41 <= p <= 0x5A else p) & 0xFF) == want
        for p, want in zip(points[1:], b"git"))


def _refused(child: os.DirEntry[str], rel: str, skipped: list[tuple[str, str]],
             reason: str = "git cannot store a {} with this name") -> None:
    folder = child.is_dir(follow_symlinks=False)
    skipped.append((rel + "/" if folder else rel, reason.format("folder" if folder else "file")))


def _is_companion(name: str, by_name: dict[str, os.DirEntry[str]], base: str,
                  creating: set[str]) -> bool:
    """name is SQLite's own X-wal, X-shm or X-journal: beside a SQLite database X, or beside a
    database being created (X empty, or all zeros so far: a first transaction that spilled
    pages before page 1) when its own content is SQLite's; such an X that is not empty goes
    into creating (its pages are not a database yet). Beside a folder, or a file X with other
    contents, it is a file of the user's like any other."""
    for suffix in COMPANION_SUFFIXES:
        if not name.endswith(suffix):
            continue
        stem = by_name.get(name[: -len(suffix)])
        if stem is None:
            return False
        try:
            if not stem.is_file():  # a folder, a FIFO (an open() would block): not a database
                return False
            with open(base + stem.name, "rb") as handle:
                head = handle.read(len(SQLITE_HEADER))
        except OSError:
            # X is there but cannot be read (its sync reports that): whose this file is cannot
            # be told; not synced, and not a deletion either: listed under skipped.
            creating.add(name)
            return True
        if head == SQLITE_HEADER:
            return True
        if head.strip(b"\0"):
            return False
        # Its own first bytes decide; a -shm says nothing of itself: it is SQLite's when the
        # -wal beside it is.
        own_name = name if suffix != "-shm" else stem.name + "-wal"
        if suffix == "-shm" and own_name not in by_name:
            return False
        try:
            with open(base + own_name, "rb") as handle:
                own = handle.read(8)
        except OSError:
            return False  # taken as a file: its sync reports why it cannot be read
        magics = JOURNAL_MAGICS if suffix == "-journal" else WAL_MAGICS
        if own and not own.startswith(magics):
            return False
        if head:
            creating.add(stem.name)
        return True
    return False


def companion_stem(name: str) -> str | None:
    """X for a name (or path) X-wal, X-shm or X-journal; None for any other."""
    for suffix in COMPANION_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def is_own_companion(path: str) -> bool:
    """Whether the file at path (named X-wal, X-shm or X-journal) is SQLite's own companion of
    the file X beside it, by the rule a sync's scan follows; if not, it is a file of the
    user's (synced as such)."""
    folder, _, name = path.rpartition("/")
    stem = companion_stem(name)
    if stem is None:
        return False
    needed = {name, stem, stem + "-wal"}
    try:
        with os.scandir(folder or "/") as it:
            by_name = {e.name: e for e in it if e.name in needed}
    except OSError:
        return False
    return _is_companion(name, by_name, (folder or "") + "/", set())


def companion_key(path: str) -> StatKey:
    """The part of a database's key that one companion file adds (all -1 when it cannot be
    looked at): the scan's rule, which restore's last checks follow."""
    try:
        st = os.stat(path)
    except OSError:
        return (-1, -1, -1, -1)
    if _ROOT:
        # SQLite run as root fchowns a database's -wal and -journal to the database's owner
        # each time it opens them, our own snapshot's open included: their ctime moves with
        # every sync, and every sync would dump the database again. Their mtime stands in (a
        # write moves it; a write within its clock tick is caught by the racy margin).
        return (st.st_size, st.st_mtime_ns, st.st_mtime_ns, st.st_ino)
    return stat_key(st)


_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

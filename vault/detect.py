"""Change detection: a pure "changed?" test on stat keys, and the stat cache it reads."""

from __future__ import annotations

import marshal

from vault.sources import StatKey

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from pathlib import Path

# On `vault sync`'s quick check: plain classes, no typing or dataclasses imports (~20 ms).

CACHE_VERSION = 2  # 2: the secret screening the cached blobs went through is recorded
# A file whose timestamps fall this close to the scan that recorded it may be rewritten within the
# same clock tick without its stat changing (git's "racy clean" case): it is re-read next time.
# Coarse kernel clocks tick in milliseconds and some filesystems store 2-second times.
RACY_MARGIN_NS = 2_000_000_000


class CachedFile(tuple[StatKey, str, int]):
    """What the last sync learned about a file: its stat key, the blob it became, its mode.

    An empty key means "in the vault, but not proven by a stat" (a skipped file): re-read it.
    A tuple underneath, as the cache file stores it: loading ten thousand costs next to nothing.
    """

    __slots__ = ()

    def __new__(cls, key: StatKey, oid: str, mode: int) -> CachedFile:
        return tuple.__new__(cls, (key, oid, mode))

    @property
    def key(self) -> StatKey:
        return self[0]

    @property
    def oid(self) -> str:
        return self[1]

    @property
    def mode(self) -> int:
        return self[2]


class StatCache:
    """Every file of the vault's tree at `commit`, with the stat key that proves it current.

    When `commit` is the branch tip, `files` *is* that commit's tree listing, so a sync that
    finds nothing changed never has to open a git object.
    """

    __slots__ = ("scanned_ns", "commit", "files", "screen")

    def __init__(self, scanned_ns: int = 0, commit: str | None = None,
                 files: dict[str, CachedFile] | None = None, screen: str = "") -> None:
        self.scanned_ns = scanned_ns
        self.commit = commit
        self.files: dict[str, CachedFile] = {} if files is None else files
        # The [secrets] screening the blobs went through (policy, allowed paths and
        # fingerprints): under another, a stat proves nothing about what would be stored.
        self.screen = screen

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StatCache) and (
            self.scanned_ns, self.commit, self.files, self.screen) == (
            other.scanned_ns, other.commit, other.files, other.screen)

    def __repr__(self) -> str:
        return f"StatCache({self.scanned_ns}, {self.commit!r}, {len(self.files)} files)"


RawEntries = dict[str, tuple[StatKey, str, int]]


def is_racy(key: StatKey, scanned_ns: int) -> bool:
    """True when any timestamp in the key is too close to the scan to prove the file unchanged."""
    for i in range(0, len(key) - 3, 4):
        if max(key[i + 1], key[i + 2]) >= scanned_ns - RACY_MARGIN_NS:
            return True
    return False


def file_changed(cached: CachedFile | None, key: StatKey, scanned_ns: int) -> bool:
    """Decide whether a file must be read again: new, different stat, or racily clean."""
    if cached is None:
        return True
    old = cached.key
    if not old or old != key:
        return True
    if len(old) == 4:  # the common case, inlined: this runs once per file per sync
        limit = scanned_ns - RACY_MARGIN_NS
        return old[1] >= limit or old[2] >= limit
    return is_racy(old, scanned_ns)


def read_raw(path: str | Path) -> tuple[int, str | None, RawEntries, str] | None:
    """The cache file as stored: (scanned_ns, commit, {vault path: (key, oid, mode)}, screen);
    None when missing, damaged or foreign. No per-entry objects."""
    # marshal: loads ten thousand entries in a few ms and runs no code; its format is tied to
    # the Python version, and a cache written by another version simply reads as empty.
    try:
        with open(path, "rb") as handle:
            raw = marshal.loads(handle.read())
    except (OSError, ValueError, EOFError, TypeError):
        return None
    if not isinstance(raw, tuple) or len(raw) != 5 or raw[0] != CACHE_VERSION:
        return None
    _, scanned_ns, commit, entries, screen = raw
    if not isinstance(scanned_ns, int) or not (commit is None or isinstance(commit, str)) \
            or not isinstance(entries, dict) or not isinstance(screen, str):
        return None
    return scanned_ns, commit, entries, screen


def load_cache(path: Path) -> StatCache:
    """Read the stat cache; a missing, damaged or foreign cache is empty (everything is re-read)."""
    raw = read_raw(path)
    if raw is None:
        return StatCache()
    scanned_ns, commit, entries, screen = raw
    make = tuple.__new__
    try:
        files = {rel: make(CachedFile, value) for rel, value in entries.items()
                 if len(value) == 3 or _bad_entry()}
    except (ValueError, TypeError):
        return StatCache()
    return StatCache(scanned_ns=scanned_ns, commit=commit, files=files, screen=screen)


def _bad_entry() -> bool:
    raise ValueError("damaged cache entry")


def save_cache(path: Path, cache: StatCache) -> None:
    """Write the stat cache atomically."""
    from vault.fsutil import atomic_write

    entries = {rel: tuple(c) for rel, c in cache.files.items()}  # marshal takes exact tuples
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not fsynced: a cache lost in a crash reads as damaged or names an older commit, and then
    # every file is read again or checked against the vault; it never vouches for a wrong blob.
    atomic_write(path, marshal.dumps((CACHE_VERSION, cache.scanned_ns, cache.commit, entries,
                                      cache.screen)), durable=False)

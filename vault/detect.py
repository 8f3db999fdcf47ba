"""Change detection: a pure "changed?" test on stat keys, and the stat cache it reads."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from vault.fsutil import atomic_write
from vault.sources import StatKey

CACHE_VERSION = 1
# A file whose timestamps fall this close to the scan that recorded it may be rewritten within the
# same clock tick without its stat changing (git's "racy clean" case): it is re-read next time.
# Coarse kernel clocks tick in milliseconds and some filesystems store 2-second times.
RACY_MARGIN_NS = 2_000_000_000


@dataclass(frozen=True)
class CachedFile:
    """What the last sync learned about a file: its stat key and the blob it became."""

    key: StatKey
    oid: str
    mode: int


@dataclass
class StatCache:
    """Stat key -> blob id for every file the last sync read, and when that scan began."""

    scanned_ns: int = 0
    commit: str | None = None
    files: dict[str, CachedFile] = field(default_factory=dict)


def is_racy(key: StatKey, scanned_ns: int) -> bool:
    """True when any timestamp in the key is too close to the scan to prove the file unchanged."""
    for i in range(0, len(key) - 3, 4):
        if max(key[i + 1], key[i + 2]) >= scanned_ns - RACY_MARGIN_NS:
            return True
    return False


def file_changed(cached: CachedFile | None, key: StatKey, scanned_ns: int) -> bool:
    """Decide whether a file must be read again: new, different stat, or racily clean."""
    if cached is None or cached.key != key:
        return True
    return is_racy(cached.key, scanned_ns)


def load_cache(path: Path) -> StatCache:
    """Read the stat cache; a missing or damaged cache is an empty one (everything is re-read)."""
    try:
        raw = json.loads(path.read_bytes())
        if raw.get("version") != CACHE_VERSION:
            return StatCache()
        files = {rel: CachedFile(key=tuple(v[2:]), oid=v[0], mode=v[1])
                 for rel, v in raw["files"].items()}
        return StatCache(scanned_ns=int(raw["scanned_ns"]), commit=raw.get("commit"), files=files)
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return StatCache()


def save_cache(path: Path, cache: StatCache) -> None:
    """Write the stat cache atomically."""
    raw = {"version": CACHE_VERSION, "scanned_ns": cache.scanned_ns, "commit": cache.commit,
           "files": {rel: [c.oid, c.mode, *c.key] for rel, c in sorted(cache.files.items())}}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(raw, separators=(",", ":")).encode())

"""Change detection: the pure file_changed() decision, table-driven, and the stat cache."""

from __future__ import annotations

from pathlib import Path

import pytest

import marshal

from vault.detect import CACHE_VERSION, RACY_MARGIN_NS, CachedFile, StatCache, file_changed, load_cache, save_cache

SCAN = 1_000_000_000_000_000_000  # the time the cached scan began, in ns
OLD = SCAN - 10 * RACY_MARGIN_NS  # a timestamp well before that scan
KEY = (100, OLD, OLD, 42)


@pytest.mark.parametrize("name, cached_key, current_key, changed", [
    ("new file", None, KEY, True),
    ("identical stat", KEY, KEY, False),
    ("size differs", KEY, (101, OLD, OLD, 42), True),
    ("mtime differs", KEY, (100, OLD + 1, OLD, 42), True),
    # new content, same size and mtime (mtime reset with utime): ctime still moves
    ("new content, same size and mtime", KEY, (100, OLD, OLD + 5, 42), True),
    ("replaced by rename (new inode)", KEY, (100, OLD, OLD, 43), True),
    # written within the same clock tick as the scan that cached it: cannot be trusted
    ("racy: mtime at the scan", (100, SCAN, SCAN, 42), (100, SCAN, SCAN, 42), True),
    ("racy: ctime just before the scan", (100, OLD, SCAN - 1, 42), (100, OLD, SCAN - 1, 42), True),
    ("not racy: older than the margin", (100, SCAN - RACY_MARGIN_NS - 1, SCAN - RACY_MARGIN_NS - 1, 42),
     (100, SCAN - RACY_MARGIN_NS - 1, SCAN - RACY_MARGIN_NS - 1, 42), False),
    # SQLite: the -wal file's stat is part of the key (writes may touch only the WAL)
    ("wal grew, database file did not", KEY + (10, OLD, OLD, 7), KEY + (20, OLD + 9, OLD + 9, 7), True),
    ("wal appeared", KEY, KEY + (10, OLD, OLD, 7), True),
    ("database and wal unchanged", KEY + (10, OLD, OLD, 7), KEY + (10, OLD, OLD, 7), False),
    ("racy wal", KEY + (10, SCAN, SCAN, 7), KEY + (10, SCAN, SCAN, 7), True),
])
def test_file_changed(name: str, cached_key: tuple[int, ...] | None,
                      current_key: tuple[int, ...], changed: bool) -> None:
    cached = None if cached_key is None else CachedFile(key=cached_key, oid="a" * 40, mode=0o100644)
    assert file_changed(cached, current_key, SCAN) is changed, name


def test_cache_round_trip(tmp_path: Path) -> None:
    cache = StatCache(scanned_ns=SCAN, commit="c" * 40,
                      files={"a/b.md": CachedFile(key=KEY, oid="b" * 40, mode=0o100755)})
    save_cache(tmp_path / "cache.json", cache)
    assert load_cache(tmp_path / "cache.json") == cache


@pytest.mark.parametrize("content", [
    b"", b"{", b"[]", marshal.dumps([]), marshal.dumps((99, 1, None, {})),
    marshal.dumps((CACHE_VERSION, 1, None, {"a": ()})), marshal.dumps((CACHE_VERSION, "x", None, {})),
    marshal.dumps((CACHE_VERSION, 1, None, {"a": ((1, 2, 3, 4), "b" * 40)})),
    marshal.dumps((CACHE_VERSION, 1, 5, {})), b"\x00" * 64])
def test_damaged_cache_means_reread_everything(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "cache.json").write_bytes(content)
    assert load_cache(tmp_path / "cache.json") == StatCache()

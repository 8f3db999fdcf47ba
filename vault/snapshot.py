"""Turn one source file into the bytes that go into the vault, or say why it cannot be taken."""

from __future__ import annotations

import codecs
import json
import os
from pathlib import Path
from dataclasses import dataclass

from vault.config import SnapshotSettings
from vault.errors import SqliteSnapshotError
from vault.sources import SQLITE_HEADER, Entry, StatKey, stat_key

JSON_SUFFIXES = (".json",)
JSONL_SUFFIXES = (".jsonl", ".ndjson")
MARKDOWN_SUFFIXES = (".md", ".markdown", ".mdx")


@dataclass(frozen=True)
class Snapshot:
    """The bytes to commit for a file (None when skipped, with the reason) and its stat key."""

    kind: str
    key: StatKey
    data: bytes | None = None
    reason: str | None = None
    vanished: bool = False
    held_back: int = 0  # bytes of an incomplete trailing JSONL line left for the next sync


def kind_by_name(name: str) -> str:
    """The kind a file's name suggests (SQLite is recognised by content, not name)."""
    lower = name.lower()
    if lower.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if lower.endswith(JSON_SUFFIXES):
        return "json"
    if lower.endswith(MARKDOWN_SUFFIXES):
        return "markdown"
    return "text"


# The reason a file over the size limit is skipped begins with this (sync tells it apart).
TOO_LARGE = "larger than snapshot.max_file_size"


def take_snapshot(entry: Entry, settings: SnapshotSettings, *, dry_run: bool = False) -> Snapshot:
    """Read a file consistently and shape it by kind: SQLite dump, valid JSON, complete JSONL
    lines. dry_run: change nothing in the user's folder (a database's hot journal is rolled
    back in a copy, not in place)."""
    kind = kind_by_name(entry.rel)
    if entry.size > settings.max_file_size:
        return Snapshot(kind, entry.key, reason=f"{TOO_LARGE} "
                        f"({_mib(entry.size)} > {_mib(settings.max_file_size)})")
    try:
        with open(entry.path, "rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return Snapshot(kind, entry.key, vanished=True, reason="vanished during the scan")
    except OSError as exc:
        return Snapshot(kind, entry.key, reason=f"cannot read: {exc.strerror}")
    if header == SQLITE_HEADER:
        return _sqlite(entry, settings, dry_run)
    return _plain(entry, kind, settings)


def _sqlite(entry: Entry, settings: SnapshotSettings, dry_run: bool) -> Snapshot:
    from vault.sqlite_dump import snapshot_sqlite

    try:
        data = snapshot_sqlite(Path(entry.path), busy_timeout_ms=settings.sqlite_busy_timeout_ms,
                               dry_run=dry_run)
    except SqliteSnapshotError as exc:
        return Snapshot("sqlite", entry.key, reason=f"SQLite: {exc.message}")
    # The key was taken before the snapshot: a write during the backup shows up next time.
    return Snapshot("sqlite", entry.key, data=data)


def _plain(entry: Entry, kind: str, settings: SnapshotSettings) -> Snapshot:
    data, key, reason = _read_stable(entry, settings)
    if data is None:
        return Snapshot(kind, key, reason=reason, vanished=reason == "vanished during the scan")
    if kind == "json":
        problem = _json_problem(data)
        if problem:
            return Snapshot(kind, key, reason=problem)
    if kind == "jsonl":
        complete = _complete_lines(data)
        return Snapshot(kind, key, data=complete, held_back=len(data) - len(complete))
    return Snapshot(kind, key, data=data)


def _read_stable(entry: Entry, settings: SnapshotSettings) -> tuple[bytes | None, StatKey, str]:
    """Read the whole file, again if it changed while being read; give up after the retries."""
    key = entry.key
    for _ in range(settings.read_retries):
        try:
            with open(entry.path, "rb") as handle:
                before = os.fstat(handle.fileno())
                if before.st_size > settings.max_file_size:
                    return None, key, (f"{TOO_LARGE} "
                                       f"({_mib(before.st_size)} > "
                                       f"{_mib(settings.max_file_size)})")
                data = handle.read()
            after = os.stat(entry.path)
        except FileNotFoundError:
            return None, key, "vanished during the scan"
        except OSError as exc:
            return None, key, f"cannot read: {exc.strerror}"
        key = stat_key(before) + entry.key[4:]
        if stat_key(before) == stat_key(after) and len(data) == before.st_size:
            return data, key, ""
    return None, key, f"kept changing while being read ({settings.read_retries} tries)"


def _json_problem(data: bytes) -> str | None:
    if not data.strip():
        return "empty JSON file (being written?)"
    # UTF-8, or UTF-16/32 as JSON's own rules tell them (a BOM, or the NULs of the first
    # characters): what Windows PowerShell writes is JSON too, not a damaged file
    encoding = json.detect_encoding(data)
    try:
        json.loads(data.decode(encoding))
    except UnicodeDecodeError as exc:
        name = "UTF-8" if encoding.startswith("utf-8") else encoding.upper()
        return f"JSON is not valid {name} (byte {exc.start})"
    except ValueError as exc:
        return f"invalid JSON (half-written?): {exc}"
    except RecursionError:
        # Nested deeper than Python's parser goes: valid JSON may be, and it cannot be checked.
        # Stored as it is ("cannot check" is not "broken"), as any other file of this kind.
        return None
    return None


def _complete_lines(data: bytes) -> bytes:
    """Keep whole lines; a trailing line without newline is kept only if it parses as JSON."""
    encoding = json.detect_encoding(data[:4])  # (as JSON: a BOM, or NULs in the first units)
    if not encoding.startswith("utf-8"):
        return _complete_wide_lines(data, encoding)
    cut = data.rfind(b"\n") + 1
    return _with_tail(data, cut, data[cut:])


def _with_tail(data: bytes, cut: int, tail: bytes | str) -> bytes:
    """data up to cut (the end of its last whole line), and its trailing line too when that
    is blank or a whole JSON record whose newline is not written yet."""
    if not tail.strip():
        return data
    try:
        value = json.loads(tail)
    except (ValueError, RecursionError):
        # (too deep to check: the trailing line counts as complete only once it ends with a
        # newline, so it waits for the next sync like any line being written)
        return data[:cut]
    return data if isinstance(value, (dict, list)) else data[:cut]


def _complete_wide_lines(data: bytes, encoding: str) -> bytes:
    """_complete_lines of UTF-16 or UTF-32 text (Windows PowerShell writes UTF-16): its
    newline is a whole code unit (0a 00 in UTF-16LE), found only where a unit starts, never
    a 0a byte inside another character or the NUL after it."""
    start = 0
    if encoding in ("utf-16", "utf-32"):  # (a BOM says which byte order)
        start = 2 if encoding == "utf-16" else 4
        little = data.startswith(codecs.BOM_UTF16_LE)
        encoding += "-le" if little else "-be"
    newline = "\n".encode(encoding)
    width = len(newline)
    end = len(data)
    at = data.rfind(newline, start, end)
    while at >= 0 and (at - start) % width:
        end = at + width - 1  # (a match across two units: look before it)
        at = data.rfind(newline, start, end)
    cut = at + width if at >= 0 else 0
    try:
        tail = data[max(cut, start):].decode(encoding)
    except UnicodeDecodeError:
        return data[:cut]  # (cut inside a character: being written)
    return _with_tail(data, cut, tail)


def _mib(size: int) -> str:
    """A size for a message: bytes, KiB or MiB, whichever reads best (never '0.0 MiB')."""
    if size < 1024:
        return f"{size} bytes"
    if size < 1024**2:
        return f"{size / 1024:.1f} KiB"
    return f"{size / 1024**2:.1f} MiB"

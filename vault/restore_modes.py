"""The permission bits of live files a restore deleted, so that a later restore that brings
the same content back to the same path (its undo) gives them back too: git records only the
executable bit, and a new file would otherwise be 0644 or 0755 less the umask."""

from __future__ import annotations

import json
import os
import re
import stat
import time
from pathlib import Path

from vault.fsutil import atomic_write, new_file_mode

STATE_NAME = "restore-modes.json"  # in the vault's state dir, beside the stat cache
MAX_ENTRIES = 20_000  # the newest kept: a few hundred KiB at most
_OID = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?\Z")  # (SHA-1 or SHA-256)


class ModeBook:
    """Modes keyed by (vault path, blob id the vault holds for that file). A missing or damaged
    file is an empty book: the default modes, nothing worse."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._entries: dict[tuple[str, str], tuple[int, int]] = _load(path)  # -> (perms, ns)
        self._dirty = False

    def mode_for(self, vault_path: str, oid: str, executable: bool) -> int | None:
        """The permission bits for a new file of this content at this path: those recorded
        when a restore deleted it, with the executable bits the vault records (as a file that
        replaces a live one gets), or None when none were recorded."""
        entry = self._entries.get((vault_path, oid))
        if entry is None:
            return None
        perms = entry[0]
        return perms | (perms & 0o444) >> 2 if executable else perms & ~0o111

    def note(self, vault_path: str, oid: str, target: str) -> None:
        """Record the permission bits of the live file about to be deleted (a regular file)."""
        try:
            st = os.lstat(target)
        except OSError:
            return
        if not stat.S_ISREG(st.st_mode):
            return
        perms = st.st_mode & 0o777
        key = (vault_path, oid)
        if perms == new_file_mode(bool(perms & 0o100)):
            # what a new file gets anyway: nothing to remember (and an older record is stale)
            if self._entries.pop(key, None) is not None:
                self._dirty = True
            return
        self._entries[key] = (perms, time.time_ns())
        self._dirty = True

    def save(self) -> None:
        """Write the book (atomically) when it changed, keeping the newest MAX_ENTRIES."""
        if not self._dirty:
            return
        newest = sorted(self._entries.items(), key=lambda item: item[1][1])[-MAX_ENTRIES:]
        data = {"version": 1, "entries": [[p, oid, perms, ns] for (p, oid), (perms, ns) in newest]}
        self._path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self._path, json.dumps(data, separators=(",", ":")).encode(), mode=0o600)
        self._dirty = False


def _load(path: Path) -> dict[tuple[str, str], tuple[int, int]]:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != 1 \
            or not isinstance(data.get("entries"), list):
        return {}
    entries: dict[tuple[str, str], tuple[int, int]] = {}
    for entry in data["entries"]:
        if isinstance(entry, list) and len(entry) == 4 and isinstance(entry[0], str) \
                and isinstance(entry[1], str) and _OID.match(entry[1]) \
                and type(entry[2]) is int and 0 <= entry[2] <= 0o777 \
                and type(entry[3]) is int:
            entries[(entry[0], entry[1])] = (entry[2], entry[3])
    return entries

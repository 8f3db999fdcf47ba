"""Auto-rollback: a corrupt memory file is moved aside and its last good version comes back."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from vault.config import Config
from vault.fsutil import atomic_write
from vault.repo import VaultRepo

BUSY_NS = 2_000_000_000  # a file touched this recently is never rolled back
CORRUPTION_MARKERS = ("SQLite: integrity check failed", "SQLite: database disk image is malformed",
                      "SQLite: file is not a database", "invalid JSON", "JSON is not valid UTF-8",
                      "empty JSON file")


@dataclass(frozen=True)
class Rollback:
    """One corrupt file put aside and replaced by its last good version from the vault."""

    path: str  # vault path
    target: str  # the file in its source
    aside: str  # where the corrupt file now is (nothing is ever deleted)
    commit: str  # the commit its good version came from
    reason: str


def is_corruption(reason: str) -> bool:
    """True for skip reasons that mean the file's content is damaged (not merely busy)."""
    return reason.startswith(CORRUPTION_MARKERS)


def roll_back(repo: VaultRepo, corrupt: list[tuple[str, str, str]],
              now: datetime | None = None) -> list[Rollback]:
    """For each (vault path, file, reason): move the file aside, restore the branch tip's copy."""
    from vault.restore_db import restore_sqlite_file
    from vault.sqlite_dump import is_dump

    head = repo.head_id()
    if head is None or not corrupt:
        return []
    files = repo.files(head)
    stamp = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime(
        "%Y%m%dT%H%M%SZ")
    done: list[Rollback] = []
    for vpath, target_text, reason in corrupt:
        if vpath not in files:
            continue  # never had a good version: nothing to go back to
        target = Path(target_text)
        try:
            if time.time_ns() - target.stat().st_mtime_ns < BUSY_NS:
                continue  # written a moment ago: maybe still being written; never replace it
        except FileNotFoundError:
            continue
        aside = Path(f"{target}.corrupt-{stamp}")
        data = repo.read_blob(files[vpath][0])
        os.replace(target, aside)
        for suffix in ("-wal", "-journal"):  # a damaged database's journal goes with it
            companion = Path(f"{target}{suffix}")
            if companion.exists():
                os.replace(companion, Path(f"{aside}{suffix}"))
        Path(f"{target}-shm").unlink(missing_ok=True)
        if is_dump(data):
            restore_sqlite_file(data, target)
        else:
            atomic_write(target, data, mode=0o755 if files[vpath][1] == 0o100755 else 0o644)
        done.append(Rollback(vpath, str(target), str(aside), head, reason))
    return done

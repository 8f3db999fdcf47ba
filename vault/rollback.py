"""Auto-rollback: a corrupt memory file is moved aside and its last good version comes back."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from vault.errors import VaultError
from vault.fsutil import atomic_write
from vault.repo import VaultRepo

BUSY_NS = 2_000_000_000  # a file touched this recently is never rolled back
CORRUPTION_MARKERS = ("SQLite: integrity check failed", "SQLite: database disk image is malformed",
                      "SQLite: file is not a database", "invalid JSON", "JSON is not valid UTF-8",
                      "empty JSON file", "JSONL cut short")


@dataclass(frozen=True)
class Rollback:
    """One corrupt file put aside and replaced by its last good version from the vault."""

    path: str  # vault path
    target: str  # the file in its source
    aside: str  # where the corrupt file now is (nothing is ever deleted)
    commit: str  # the commit its good version came from
    reason: str
    # Set when the version put back holds [secrets] redact markers (the live file now has
    # placeholders where its secrets were: they were never stored and cannot come back), or is
    # a database rebuilt with a stand-in for a collation only its application knows (the
    # application must REINDEX it); both, joined by "; ", when both hold.
    warning: str = ""


def is_corruption(reason: str) -> bool:
    """True for skip reasons that mean the file's content is damaged (not merely busy)."""
    return reason.startswith(CORRUPTION_MARKERS)


def too_fresh(path: str | Path, now_ns: int | None = None) -> bool:
    """True when the file was written in the last 2 seconds: it may still be being written, so
    it is neither called corrupt for good nor rolled back yet (the next look judges it)."""
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:
        return False
    return (now_ns if now_ns is not None else time.time_ns()) - mtime < BUSY_NS


def held_open(path: str | Path) -> bool:
    """True when another process holds the file (or its -wal or -journal) open: a writer that
    has paused; replacing the file would send its later writes to the copy put aside."""
    from vault.inuse import open_by

    return bool(open_by([Path(f"{path}{suffix}") for suffix in ("", "-wal", "-journal")]))


def roll_back(repo: VaultRepo, corrupt: list[tuple[str, str, str]],
              now: datetime | None = None) -> list[Rollback]:
    """For each (vault path, file, reason): move the file aside, restore the branch tip's copy.

    A file written in the last 2 seconds, or open in another process, is left as it is (it
    may still be being written): it is not in the list returned."""
    from vault.fsutil import restored_mode
    from vault.restore_db import build_sqlite, install_sqlite, refuse_if_open
    from vault.sqlite_dump import is_dump, reindex_warning

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
        if not target.exists() or too_fresh(target) or held_open(target):
            continue  # gone, or maybe still being written: never replace it under a writer
        oid, filemode = files[vpath]
        data = repo.read_blob(oid)  # (read before anything moves: a damaged vault stops here)
        mode = restored_mode(str(target), filemode == 0o100755)
        aside = _free_name(Path(f"{target}.corrupt-{stamp}"))
        stand_ins: list[str] = []  # the application's collations it was rebuilt without
        if is_dump(data):
            # built and checked beside it
            built = build_sqlite(data, target, durable=True, stand_ins=stand_ins)
            try:
                refuse_if_open(target)  # again: it may have been opened while it was built
            except VaultError:
                shutil.rmtree(built, ignore_errors=True)
                continue
            os.replace(target, aside)
            for suffix in ("-wal", "-journal"):  # a damaged database's journal goes with it
                companion = Path(f"{target}{suffix}")
                if companion.exists():
                    os.replace(companion, Path(f"{aside}{suffix}"))
            install_sqlite(built, target, durable=True, mode=mode)  # (drops a stale -shm)
        else:
            try:
                os.link(target, aside)  # the file never goes missing from its place
            except OSError:  # (a filesystem without hard links)
                os.replace(target, aside)
            atomic_write(target, data, mode=mode)
        warnings = [redaction_warning(str(target), data)]
        if stand_ins:  # (as restore warns: its indexes on them follow a stand-in's order)
            warnings.append(reindex_warning(str(target), stand_ins))
        done.append(Rollback(vpath, str(target), str(aside), head, reason,
                             warning="; ".join(w for w in warnings if w)))
    return done


def redaction_warning(target: str, data: bytes) -> str:
    """What to tell when a file put back holds [secrets] redact markers (as restore warns)."""
    from vault.dbbuild import might_hold_markers
    from vault.sources import DUMP_HEADER

    if not might_hold_markers(data.__contains__, data.startswith(DUMP_HEADER)):
        return ""
    from vault.secrets import is_redacted

    if not is_redacted(data):
        return ""
    return (f"{target} holds [REDACTED:...] markers: the secrets it held were never stored "
            "and cannot come back")


def _free_name(path: Path) -> Path:
    """path, or path-2, path-3...: a second rollback in the same second keeps the first's file."""
    candidate, n = path, 1
    while any(Path(f"{candidate}{suffix}").exists() for suffix in ("", "-wal", "-journal")):
        n += 1
        candidate = Path(f"{path}-{n}")
    return candidate

"""Auto-rollback: a corrupt memory file is kept aside and its last good version comes back."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from vault.config import SnapshotSettings
from vault.errors import VaultError
from vault.repo import VaultRepo
from vault.sources import StatKey, companion_key

BUSY_NS = 2_000_000_000  # a file touched this recently is never rolled back
CORRUPTION_MARKERS = ("SQLite: integrity check failed", "SQLite: database disk image is malformed",
                      "SQLite: file is not a database", "invalid JSON", "JSON is not valid UTF",
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
              now: datetime | None = None,
              failed: list[tuple[str, str]] | None = None,
              settings: SnapshotSettings | None = None) -> list[Rollback]:
    """For each (vault path, file, reason): keep the file aside, restore the branch tip's copy.

    A file written in the last 2 seconds, or open in another process, is left as it is (it
    may still be being written): it is not in the list returned. So is a file that no longer
    reads as corrupt, or that changes while it is rolled back: written again since it was
    judged (sync reads other files, seconds maybe, before it rolls back), it is newer than
    the vault's version. A file that cannot be rolled back (its folder is not writable, its
    aside name is too long...) is left as it is too. Those two go into failed as (vault
    path, one-line reason); the others are still rolled back. settings: how the file is read
    again (sync's [snapshot] settings)."""
    from vault.sync import still_corrupt

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
        # Judged again, now: the file judged corrupt may have been replaced by a good one
        # since; its stat then says whether it is still the file judged, up to the moment
        # it is replaced.
        key = rollback_key(target)
        if not still_corrupt(repo, vpath, target_text, files[vpath], reason,
                             settings or SnapshotSettings()) or rollback_key(target) != key:
            if failed is not None:
                failed.append((vpath, f"did not roll back {vpath}: {_WRITTEN_AGAIN}"))
            continue
        data = repo.read_blob(oid)  # (read before anything moves: a damaged vault stops here)
        try:
            put_back = _put_back(target, data, filemode == 0o100755, stamp, key)
        except _WrittenAgain:
            if failed is not None:
                failed.append((vpath, f"did not roll back {vpath}: {_WRITTEN_AGAIN}"))
            continue
        except _CannotRollBack as exc:
            if failed is not None:
                failed.append((vpath, f"cannot roll back {vpath}: {exc}"))
            continue
        if put_back is None:
            continue  # opened by another process while its good version was built
        aside, warning = put_back
        done.append(Rollback(vpath, str(target), str(aside), head, reason, warning=warning))
    return done


class _CannotRollBack(Exception):
    """One file's rollback failed at one step (the message says which, and why)."""


class _WrittenAgain(Exception):
    """The file changed after it was judged corrupt: it is left as it is."""


_WRITTEN_AGAIN = ("it was written again after it was judged corrupt (it is newer than the "
                  "vault's version); the next sync judges it again")


def rollback_key(target: Path) -> tuple[StatKey, ...]:
    """What says a file (and its -wal or -journal) was written: their stat keys."""
    return tuple(companion_key(f"{target}{suffix}") for suffix in ("", "-wal", "-journal"))


def _check_unchanged(target: Path, key: tuple[StatKey, ...]) -> None:
    """_WrittenAgain unless the file is still the one judged (key: rollback_key then)."""
    if rollback_key(target) != key:
        raise _WrittenAgain()


def _put_back(target: Path, data: bytes, executable: bool, stamp: str,
              key: tuple[StatKey, ...]) -> tuple[Path, str] | None:
    """Keep target aside and put data in its place; the aside's path and any warning. None when
    a database was opened by another process meanwhile (left as it is); _WrittenAgain when
    target is no longer the file judged corrupt (key, its rollback_key then), also when it is
    written while its good version is (see _swap_in)."""
    from vault.errors import SqliteSnapshotError
    from vault.fsutil import owner_for, restored_mode
    from vault.restore_db import build_sqlite
    from vault.sqlite_dump import is_dump, reindex_warning

    mode = restored_mode(str(target), executable)
    owner = owner_for(target)  # (as root: the agent's file stays the agent's)
    aside = _free_name(Path(f"{target}.corrupt-{stamp}"))
    stand_ins: list[str] = []  # the application's collations it was rebuilt without
    if is_dump(data):
        try:  # built and checked beside it
            built = build_sqlite(data, target, durable=True, stand_ins=stand_ins)
        except OSError as exc:
            raise _CannotRollBack(f"cannot build its last good version beside it: "
                                  f"{_why(exc)}") from exc
        except SqliteSnapshotError as exc:
            raise _CannotRollBack(f"cannot build its last good version: {exc.message}") from exc
        if not _install_database(built, target, aside, mode, owner, key):
            return None
    else:
        _swap_in(target, aside, key, lambda: _write_beside(target, data, mode, owner))
    warnings = [redaction_warning(str(target), data)]
    if stand_ins:  # (as restore warns: its indexes on them follow a stand-in's order)
        warnings.append(reindex_warning(str(target), stand_ins))
    return aside, "; ".join(w for w in warnings if w)


def _write_beside(target: Path, data: bytes, mode: int,
                  owner: tuple[int, int] | None) -> tuple[Path, int]:
    """data in a new temp file beside target, with mode and owner, flushed: its path and inode."""
    from vault.fsutil import give_owner

    import tempfile

    # (a short name: one built from target's could be too long where target's is not)
    fd, name = tempfile.mkstemp(prefix=".vault-rollback-", suffix=".vault-tmp",
                                dir=target.parent)
    tmp = Path(name)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        give_owner(fd, owner)
        os.fchmod(fd, mode)
        os.fsync(fd)
        ino = os.fstat(fd).st_ino
    except BaseException:
        os.close(fd)
        _unlink_quietly(tmp)
        raise
    os.close(fd)
    return tmp, ino


def _is_judged(path: Path, key: tuple[StatKey, ...]) -> bool:
    """Is the file at path still the one judged corrupt (key[0], its stat key then)? Its
    inode, size and mtime: keeping it aside (a hard link) and renaming it move its ctime."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    size, mtime, _ctime, ino = key[0]
    # (its mtime is 2 seconds old or more, too_fresh says: any write since has moved it)
    return (st.st_size, st.st_mtime_ns, st.st_ino) == (size, mtime, ino)


def _swap_in(target: Path, aside: Path, key: tuple[StatKey, ...],
             make: Callable[[], tuple[Path, int]],
             companions: Callable[[], list[tuple[Path, Path]]] | None = None) -> None:
    """Keep target aside, then put the good version (make(): its temp file beside target,
    written and flushed, and that file's inode) in its place; companions() moves the corrupt
    file's companions aside (what it moved: (name, kept name) each).

    At every moment target's place holds the corrupt file or the good one, never nothing (a
    sync killed in between would record it deleted; an agent opening it then would get an
    empty file). Where the system can, the two are swapped in one step (RENAME_EXCHANGE) and
    the file swapped out is checked to be the one judged: a file an agent saved while the good
    version was written is swapped back (_WrittenAgain: target as the agent left it, nothing
    kept aside). Elsewhere the last look is right before the rename. The temp file is gone
    afterwards, but in the one case where it holds the agent's file (swapping it back failed:
    the message says where it is)."""
    from vault.fsutil import exchange, fsync_dir

    moved: list[tuple[Path, Path]] = []
    made: tuple[Path, int] | None = None
    placed = kept = False  # the good version is in target's place; the aside made
    try:
        _check_unchanged(target, key)
        _keep_aside(target, aside)  # the file never goes missing from its place
        kept = True
        try:
            made = make()
            new = made[0]
            if companions is not None:
                moved = companions()
            fsync_dir(target.parent)  # the corrupt file is kept before its place is taken
            if exchange(new, target):
                placed = True
                if not _is_judged(new, key):  # saved by the agent in the meantime
                    try:
                        exchange(new, target)  # the agent's file back in its place
                    except OSError as exc:
                        raise _CannotRollBack(f"cannot put back the version written meanwhile "
                                              f"(it is at {new}): {_why(exc)}") from exc
                    placed = False
                    raise _WrittenAgain()
            elif not _is_judged(target, key):
                raise _WrittenAgain()
            else:
                os.replace(new, target)
                placed = True
            fsync_dir(target.parent)
        except OSError as exc:
            raise _CannotRollBack(f"cannot put its last good version in place: "
                                  f"{_why(exc)}") from exc
    except (_WrittenAgain, _CannotRollBack):
        if kept and not placed:
            _undo_aside(target, aside, key, moved)
        raise
    finally:
        if made is not None:
            _drop_ours(made[0], made[1], key)


def _undo_aside(target: Path, aside: Path, key: tuple[StatKey, ...],
                moved: list[tuple[Path, Path]]) -> None:
    """Nothing kept aside after all: target was not replaced. Best effort. Companions kept
    aside go back to the file they were moved from (the corrupt file still in its place, or
    one the agent put there before it was kept aside); beside a file the agent put there
    since, they are dropped with the corrupt file (which the agent replaced)."""
    back = _is_judged(target, key) or _same_file(aside, target)
    for companion, kept in reversed(moved):
        try:
            if back:
                os.replace(kept, companion)
            else:
                os.unlink(kept)
        except OSError:
            pass
    _unlink_quietly(aside)


def _drop_ours(new: Path, ours: int, key: tuple[StatKey, ...]) -> None:
    """Remove new when it holds our temp file or the corrupt one swapped out (kept aside)."""
    try:
        ino = os.stat(new, follow_symlinks=False).st_ino
    except OSError:
        return
    if ino == ours or _is_judged(new, key):
        _unlink_quietly(new)


def _install_database(built: Path, target: Path, aside: Path, mode: int,
                      owner: tuple[int, int] | None, key: tuple[StatKey, ...]) -> bool:
    """Keep the corrupt database and its journal aside, then swap the built one in (as
    _swap_in). False, with nothing moved, when another process opened it meanwhile."""
    from vault.fsutil import give_owner_of
    from vault.restore_db import refuse_if_open

    db = built / "db"
    ours = -1

    def made() -> tuple[Path, int]:
        give_owner_of(db, owner)
        os.chmod(db, mode)  # built private (0o600)
        return db, ours

    try:
        try:
            ours = os.stat(db).st_ino
        except OSError as exc:
            raise _CannotRollBack(f"cannot build its last good version beside it: "
                                  f"{_why(exc)}") from exc
        try:
            refuse_if_open(target)  # again: it may have been opened while it was built
            _check_unchanged(target, key)  # (or written, and closed, meanwhile)
        except VaultError:
            return False
        _swap_in(target, aside, key, made, lambda: _journal_aside(target, aside))
    finally:
        _drop_ours(db, ours, key)
        if not os.path.lexists(db):  # (else it holds the agent's file: the message says so)
            shutil.rmtree(built, ignore_errors=True)
    return True


def _journal_aside(target: Path, aside: Path) -> list[tuple[Path, Path]]:
    """Move the corrupt database's -wal and -journal aside with it (left beside the good copy,
    they would be replayed into it; for a moment the place holds the corrupt file without
    them), and drop a stale -shm; what was moved, as (name, kept name)."""
    moved: list[tuple[Path, Path]] = []
    for suffix in ("-wal", "-journal"):
        companion = Path(f"{target}{suffix}")
        if os.path.lexists(companion):
            try:
                os.replace(companion, Path(f"{aside}{suffix}"))
            except OSError as exc:
                _undo_journal(moved)
                raise _CannotRollBack(f"cannot keep {companion.name} aside: "
                                      f"{_why(exc)}") from exc
            moved.append((companion, Path(f"{aside}{suffix}")))
    try:
        Path(f"{target}-shm").unlink(missing_ok=True)
    except OSError as exc:
        _undo_journal(moved)
        raise _CannotRollBack(f"cannot remove {target.name}-shm: {_why(exc)}") from exc
    return moved


def _undo_journal(moved: list[tuple[Path, Path]]) -> None:
    for companion, kept in reversed(moved):
        try:
            os.replace(kept, companion)
        except OSError:
            pass


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _keep_aside(path: Path, aside: Path) -> None:
    """A second name for the corrupt file (a copy on a filesystem without hard links), made
    before anything replaces it, so it is never missing from its place."""
    try:
        os.link(path, aside)
        return
    except FileExistsError as exc:
        raise _CannotRollBack(f"cannot keep the corrupt file aside as {aside.name}: "
                              f"{_why(exc)}") from exc
    except OSError:
        pass  # no hard links here (or not for this file): a copy
    try:
        _copy_new(path, aside)
    except OSError as exc:
        raise _CannotRollBack(f"cannot keep the corrupt file aside as {aside.name}: "
                              f"{_why(exc)}") from exc


def _copy_new(path: Path, copy: Path) -> None:
    """Copy path to copy, a new file (never over one), with its permission bits (and, as
    root, its owner), fsynced."""
    from vault.fsutil import give_owner, running_as_root

    with open(path, "rb") as source:
        st = os.fstat(source.fileno())
        perms = st.st_mode & 0o777
        fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, perms)
        try:
            if running_as_root():
                give_owner(fd, (st.st_uid, st.st_gid))
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(source, out, 1024 * 1024)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            _unlink_quietly(copy)
            raise


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


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
    # (os.path.lexists: a name too long to exist is free, and linking it then says why)
    while any(os.path.lexists(f"{candidate}{suffix}") for suffix in ("", "-wal", "-journal")):
        n += 1
        candidate = Path(f"{path}-{n}")
    return candidate

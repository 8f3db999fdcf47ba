"""Auto-rollback is safe: a rolled-back database is never missing from its place (a sync killed
at any step leaves the corrupt file or the good one there, and keeps the corrupt one), and a
file that cannot be rolled back fails the sync with a one-line reason instead of crashing it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import apsw
import pytest

import vault
from conftest import Clock, age, rows, run_cli, write_config
from vault.config import Config, load_config
from vault.repo import VaultRepo
from vault.rollback import roll_back
from vault.sync import sync

GOOD = [(i, f"memory {i} " * 20) for i in range(1, 301)]

# Runs roll_back for one file and SIGKILLs itself just before its KILL_AT-th change to the
# files in the database's folder (a Python audit hook sees each rename, link, unlink, mkdir,
# chmod and open for writing before the system call is made); exit 0 when it finished first.
KILLER = r"""
import os, signal, sys
from pathlib import Path

import vault.dbbuild, vault.fsutil, vault.inuse, vault.restore_db, vault.rollback  # (no
import vault.secrets, vault.sources, vault.sqlite_dump                             # imports
from vault.repo import VaultRepo                                                   # later)

vault_dir, vpath, target, kill_at, log = sys.argv[1:6]
folder = os.path.realpath(os.path.dirname(target))
CHANGES = {"os.rename", "os.link", "os.remove", "os.rmdir", "os.mkdir", "os.chmod",
           "os.symlink", "os.truncate", "os.utime", "shutil.rmtree", "shutil.copyfile",
           "tempfile.mkdtemp"}
WRITING = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
seen = []
out = open(log, "w")


def inside(arg):
    if isinstance(arg, (str, bytes, os.PathLike)):
        path = os.fsdecode(os.fspath(arg))
        return os.path.realpath(os.path.dirname(os.path.abspath(path))).startswith(folder)
    return False


def hook(event, args):
    if event == "open":
        if not (isinstance(args[2], int) and args[2] & WRITING and inside(args[0])):
            return
    elif event not in CHANGES or not any(inside(a) for a in args):
        return
    seen.append(event)
    out.write(f"{event} {args[:2]!r}\n")
    out.flush()
    if len(seen) == int(kill_at):
        os.kill(os.getpid(), signal.SIGKILL)  # before the change is made


repo = VaultRepo.open(Path(vault_dir), "main")
sys.addaudithook(hook)
done = vault.rollback.roll_back(repo, [(vpath, target, "SQLite: database disk image is malformed")])
assert [r.path for r in done] == [vpath], done
"""


def rolling_back(root: Path, clock: Clock) -> tuple[Config, Path]:
    """A workspace with memory.db (a WAL database), synced once into a vault with [health]
    auto_rollback on."""
    ws = root / "agent"
    ws.mkdir(parents=True)
    db = apsw.Connection(str(ws / "memory.db"))
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE memories(id INTEGER PRIMARY KEY, content TEXT)")
    with db:
        db.executemany("INSERT INTO memories VALUES(?, ?)", GOOD)
    db.close()
    (ws / "notes.md").write_text("# notes\n")
    config = load_config(write_config(root / "vault.toml", {"agent": ws},
                                      extra="[health]\nauto_rollback = true",
                                      vault_path=root / "memory-vault"))
    VaultRepo.init(config.vault.path, "main")
    assert sync(config, now=clock).ok
    return config, ws


def crash_with_wal(db_path: Path) -> tuple[bytes, bytes]:
    """The database as a writer killed mid-run leaves it, then damaged: a -wal with a committed
    transaction in it (replayed into whatever file is at the database's place when next
    opened), and a main file whose header is cut off. Its (main, wal) bytes."""
    db = apsw.Connection(str(db_path))
    db.execute("PRAGMA wal_autocheckpoint=0")
    with db:
        db.execute("INSERT INTO memories VALUES(999, 'only in the stale wal')")
    wal = Path(f"{db_path}-wal").read_bytes()  # (what a kill -9 of this writer leaves)
    db.close()
    main = db_path.read_bytes()[:9]  # "SQLite fo": not a database any more
    db_path.write_bytes(main)
    Path(f"{db_path}-wal").write_bytes(wal)
    Path(f"{db_path}-shm").unlink(missing_ok=True)
    age(db_path)
    age(Path(f"{db_path}-wal"))
    return main, wal


def state(ws: Path) -> tuple[bytes | None, list[Path]]:
    """The bytes at memory.db's place (None when nothing is there), and the names kept aside."""
    place = ws / "memory.db"
    return (place.read_bytes() if place.exists() else None,
            sorted(p for p in ws.iterdir() if ".corrupt-" in p.name))


def opened_as_found(ws: Path, scratch: Path) -> list[tuple[object, ...]]:
    """The rows an agent gets that opens memory.db as it is now, companions and all (on a
    copy: nothing here may change the files under test)."""
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    for suffix in ("", "-wal", "-journal"):
        if Path(f"{ws / 'memory.db'}{suffix}").exists():
            shutil.copyfile(f"{ws / 'memory.db'}{suffix}", scratch / f"memory.db{suffix}")
    conn = sqlite3.connect(scratch / "memory.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return conn.execute("SELECT id, content FROM memories ORDER BY id").fetchall()
    finally:
        conn.close()


def test_a_database_killed_at_any_step_of_its_rollback_is_never_missing(
        tmp_path: Path, clock: Clock) -> None:
    """Before: the corrupt database was renamed aside and only then the good one renamed in;
    a sync killed between the two left no database at its place, and the next sync recorded
    it deleted. Now, killed before any step: the place holds the corrupt file or the good one
    (never beside the stale WAL: replayed, it would damage the good copy), the corrupt file and
    its WAL are kept, and the next sync never records a deletion. (Killed between the WAL's
    move aside and the rename, the place holds the corrupt file without its WAL; the pair is
    kept aside, and the next sync judges that file afresh.)"""
    package_root = str(Path(vault.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": package_root, "PYTHONDONTWRITEBYTECODE": "1"}
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    killed_at: list[int] = []
    for kill_at in range(1, 60):
        root = tmp_path / f"k{kill_at}"
        config, ws = rolling_back(root, clock)
        place = ws / "memory.db"
        main, wal = crash_with_wal(place)
        log = root / "events.log"
        proc = subprocess.run(
            [sys.executable, str(script), str(config.vault.path), "agent/memory.db",
             str(place), str(kill_at), str(log)],
            env=env, cwd=package_root, capture_output=True, text=True, timeout=300)
        events = log.read_text()
        assert proc.returncode in (0, -signal.SIGKILL), proc.stderr
        found, asides = state(ws)
        where = f"killed before change {kill_at}:\n{events}"
        assert found is not None, f"memory.db missing, {where}"
        if found != main:  # the good one, and no stale WAL beside it
            assert not Path(f"{place}-wal").exists(), where
            assert opened_as_found(ws, root / "scratch") == GOOD, where
        # the corrupt file and its WAL are kept (at the place or aside), never lost
        assert found == main or any(p.read_bytes() == main for p in asides), where
        assert (Path(f"{place}-wal").exists() and Path(f"{place}-wal").read_bytes() == wal
                or any(p.name.endswith("-wal") and p.read_bytes() == wal for p in asides)), where
        if proc.returncode == 0:
            assert found != main and len(killed_at) >= 4, events
            break
        killed_at.append(kill_at)
        # the next sync: never a deletion; the database is (or is put) back in good order
        clock.tick()
        result = sync(config, now=clock)
        assert result.deleted == (), where
        repo = VaultRepo.open(config.vault.path, "main")
        assert "agent/memory.db" in repo.files(repo.head_id() or ""), where
        assert opened_as_found(ws, root / "scratch") == GOOD, where
        assert any(p.read_bytes() == main for p in state(ws)[1]), where
    else:
        pytest.fail("the rollback never finished")


def corrupt_json(path: Path) -> None:
    path.write_text('{"k": ')
    age(path)


def sync_json(config: Config) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
    proc = run_cli("sync", "--json", "--config", str(config.file))
    return proc, json.loads(proc.stdout)


@pytest.mark.parametrize("kind", ["json", "sqlite"])
def test_a_name_too_long_for_its_aside_fails_the_sync_and_the_others_are_rolled_back(
        tmp_path: Path, clock: Clock, kind: str) -> None:
    """A legal 245-byte name has no room for `.corrupt-<time>`. Before: roll_back raised
    OSError, the sync died with "Error: unexpected" (exit 3), nothing in failures.log, and the
    corrupt files after it were not rolled back. Now: that file stays as it is and the sync
    fails with why; the other corrupt file is rolled back."""
    config, ws = rolling_back(tmp_path, clock)
    name = "m" * (245 - len(kind)) + "." + ("db" if kind == "sqlite" else "json")
    long = ws / name
    if kind == "sqlite":
        shutil.copyfile(ws / "memory.db", long)
    else:
        long.write_text('{"a": 1}')
    (ws / "other.json").write_text('{"b": 2}')
    clock.tick()
    assert sync(config, now=clock).ok
    damaged = long.read_bytes()[:9] if kind == "sqlite" else b'{"a": '
    long.write_bytes(damaged)
    age(long)
    corrupt_json(ws / "other.json")

    clock.tick()
    result = sync(config, now=clock)
    assert [r.path for r in result.rollbacks] == ["agent/other.json"]
    assert (ws / "other.json").read_text() == '{"b": 2}'
    assert long.read_bytes() == damaged  # left as it was
    aside = f"{name}.corrupt-{clock.now:%Y%m%dT%H%M%SZ}"
    expected = (f"cannot roll back agent/{name}: cannot keep the corrupt file aside as {aside}: "
                "File name too long")
    assert [(f.source, f.path) for f in result.failures if f.message == expected] == [
        ("agent", f"agent/{name}")]
    assert not result.ok
    assert sorted(p.name for p in ws.iterdir() if p.name.startswith(".vault-")) == []

    proc = run_cli("sync", "--config", str(config.file))  # the CLI: exit 1, an Error: line
    assert proc.returncode == 1, proc.stderr
    assert "unexpected" not in proc.stderr
    assert any(line.startswith(f"Error: cannot roll back agent/{name}: cannot keep the corrupt "
                               f"file aside as {name}.corrupt-") and
               line.endswith(": File name too long") for line in proc.stderr.splitlines())
    logged = json.loads((config.home / "failures.log").read_text().splitlines()[-1])
    assert logged["command"] == "sync"  # (the CLI logs a failed sync's first failure and count)
    assert long.read_bytes() == damaged

    # doctor --repair says why too (before: "it was written to or opened while being rolled
    # back", which was not so)
    age(long)
    repair = run_cli("doctor", "--repair", "--config", str(config.file))
    assert repair.returncode == 1, repair.stdout + repair.stderr
    said = [line for line in repair.stdout.splitlines() if line.startswith("repaired: ")]
    assert any(line.startswith(f"repaired: cannot roll back agent/{name}: cannot keep the "
                               "corrupt file aside as") for line in said), said
    assert long.read_bytes() == damaged


@contextmanager
def unwritable(folder: Path) -> Iterator[None]:
    """A folder in which no new name can be made (its files can still be written): read-only
    permissions, or for root (whom they do not stop) the immutable attribute."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("running as root, and chattr +i is not available here")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_a_folder_where_nothing_can_be_made_fails_the_sync_and_the_others_are_rolled_back(
        tmp_path: Path, clock: Clock) -> None:
    """A writable memory file in a folder the user cannot write: before, roll_back raised
    OSError and the sync crashed (exit 3); now each such file fails the sync with why, and a
    corrupt file elsewhere is still rolled back."""
    config, ws = rolling_back(tmp_path, clock)
    locked = ws / "locked"
    locked.mkdir()
    (locked / "m.json").write_text('{"k": 1}')
    shutil.copyfile(ws / "memory.db", locked / "mem.db")
    (ws / "other.json").write_text('{"b": 2}')
    clock.tick()
    assert sync(config, now=clock).ok
    (locked / "m.json").write_text('{"k": ')
    (locked / "mem.db").write_bytes((locked / "mem.db").read_bytes()[:9])
    for path in (locked / "m.json", locked / "mem.db"):
        age(path)
    corrupt_json(ws / "other.json")

    with unwritable(locked):
        clock.tick()
        result = sync(config, now=clock)
        proc = run_cli("sync", "--config", str(config.file))
    assert [r.path for r in result.rollbacks] == ["agent/other.json"]
    assert (ws / "other.json").read_text() == '{"b": 2}'
    reasons = {f.path: f.message for f in result.failures
               if f.message.startswith("cannot roll back")}
    assert sorted(reasons) == ["agent/locked/m.json", "agent/locked/mem.db"]
    assert reasons["agent/locked/m.json"].startswith(
        "cannot roll back agent/locked/m.json: cannot keep the corrupt file aside as "
        "m.json.corrupt-")
    assert reasons["agent/locked/mem.db"].startswith(
        "cannot roll back agent/locked/mem.db: cannot build its last good version beside it: ")
    assert all("\n" not in reason for reason in reasons.values())
    assert (locked / "m.json").read_text() == '{"k": '
    assert sorted(p.name for p in locked.iterdir()) == ["m.json", "mem.db"]
    assert proc.returncode == 1 and "unexpected" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: cannot roll")]
    assert len(errors) == 2, proc.stderr


def test_roll_back_reports_what_it_could_not_do_and_does_the_rest(tmp_path: Path,
                                                                  clock: Clock) -> None:
    """The library call: one file's OSError goes into failed, never out of roll_back."""
    config, ws = rolling_back(tmp_path, clock)
    name = "n" * 240 + ".json"
    (ws / name).write_text("[1]")
    clock.tick()
    assert sync(config, now=clock).ok
    corrupt_json(ws / name)
    db = ws / "memory.db"
    db.write_bytes(db.read_bytes()[:9])
    age(db)
    failed: list[tuple[str, str]] = []
    done = roll_back(VaultRepo.open(config.vault.path, "main"),
                     [(f"agent/{name}", str(ws / name), "invalid JSON"),
                      ("agent/memory.db", str(db), "SQLite: file is not a database")],
                     clock.now, failed=failed)
    assert [r.path for r in done] == ["agent/memory.db"]
    assert rows(db) == GOOD
    assert failed == [(f"agent/{name}", f"cannot roll back agent/{name}: cannot keep the corrupt "
                                        f"file aside as {name}.corrupt-"
                                        f"{clock.now:%Y%m%dT%H%M%SZ}: File name too long")]

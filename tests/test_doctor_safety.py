"""vault doctor --repair never rolls back a file that is being written, and never re-clones
under a running sync: the same rules as sync, with real writer processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

from conftest import Clock, write_config
from vault.config import Config, load_config
from vault.doctor import doctor
from vault.errors import BusyError
from vault.lock import SyncLock
from vault.repo import VaultRepo
from vault.sync import sync


def age(path: Path, seconds: int = 60) -> None:
    """Make a file look untouched for a while (the 2-second rule is not what is tested)."""
    old = time.time_ns() - seconds * 10**9
    os.utime(path, ns=(old, old))


def memory_check(report) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    check = next(c for c in report.checks if c.name == "memory files")
    return check.status, check.detail


class PausedWriter:
    """An agent in another process that has written half a file and paused, the file still
    open; it writes the rest and closes it when told."""

    def __init__(self, path: Path, first: str, rest: str) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "import sys\n"
             "f = open(sys.argv[1], 'w'); f.write(sys.argv[2]); f.flush()\n"
             "print('paused', flush=True); sys.stdin.readline()\n"
             "f.write(sys.argv[3]); f.close(); print('done', flush=True)\n",
             str(path), first, rest],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None and self._proc.stdout.readline() == "paused\n"

    def finish(self) -> None:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write("go\n")
        self._proc.stdin.flush()
        assert self._proc.stdout.readline() == "done\n"
        self._proc.wait(timeout=30)

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


@pytest.fixture
def writer_cleanup() -> Iterator[list[PausedWriter]]:
    writers: list[PausedWriter] = []
    yield writers
    for writer in writers:
        writer.kill()


def test_paused_half_written_json_is_busy_never_corrupt_never_rolled_back(
        config: Config, vault: VaultRepo, workspace: Path, clock: Clock,
        writer_cleanup: list[PausedWriter]) -> None:
    sync(config, now=clock)
    memory = workspace / "memory.json"
    whole = '[{"id": 1, "content": "likes tea"}, {"id": 2, "content": "likes coffee"}]'
    writer = PausedWriter(memory, whole[:50], whole[50:])
    writer_cleanup.append(writer)
    age(memory)  # paused long enough that the 2-second rule alone would not protect it
    report = doctor(config, repair=True, now=lambda: clock.now)
    assert not [r for r in report.repairs if "rolled back" in r]
    assert not list(workspace.glob("memory.json.corrupt-*"))
    status, detail = memory_check(report)
    assert status != "fail" and "being written" in detail and "agent/memory.json" in detail
    writer.finish()
    assert memory.read_text() == whole  # the agent's later writes landed in the live file


def test_damaged_database_open_in_the_agent_is_never_rolled_back(
        config: Config, vault: VaultRepo, workspace: Path, clock: Clock) -> None:
    db = workspace / "memory.db"
    conn = apsw.Connection(str(db))
    with conn:  # pages enough to damage one of them
        conn.execute("CREATE TABLE notes(id INTEGER PRIMARY KEY, t TEXT)")
        conn.executemany("INSERT INTO memories(content, embedding) VALUES(?, ?)",
                         [(f"memory {i} " * 20, os.urandom(1536)) for i in range(400)])
    conn.close()
    sync(config, now=clock)
    agent = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys\n"
         "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
         "c.execute(\"INSERT INTO notes(t) VALUES('before')\"); print('open', flush=True)\n"
         "sys.stdin.readline()\n"
         "c.execute(\"INSERT INTO notes(t) VALUES('after')\"); c.close()\n"
         "print('done', flush=True)\n", str(db)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert agent.stdout is not None and agent.stdout.readline() == "open\n"
        with open(db, "r+b") as handle:  # a stray write damages a page of 'memories'
            handle.seek(4096 * 4)
            handle.write(os.urandom(4096))
        age(db)
        report = doctor(config, repair=True, now=lambda: clock.now)
        assert not [r for r in report.repairs if "rolled back" in r]
        assert not list(workspace.glob("memory.db.corrupt-*"))
        status, detail = memory_check(report)
        assert status != "fail" and "being written" in detail
        assert agent.stdin is not None
        agent.stdin.write("go\n")
        agent.stdin.flush()
        assert agent.stdout.readline() == "done\n"
    finally:
        agent.kill()
        agent.wait()
    notes = apsw.Connection(str(db)).execute("SELECT t FROM notes ORDER BY id").fetchall()
    assert notes == [("before",), ("after",)]


def with_remote(tmp_path: Path, workspace: Path, clock: Clock) -> tuple[Config, Path, str]:
    """A vault pushed to a local bare remote, then a commit only local (the remote was
    away); returns the config, the remote and the commit the remote has."""
    remote = tmp_path / "remote.git"
    # (its HEAD names another branch, as a remote made by `git init --bare` often does)
    subprocess.run(["git", "init", "-q", "--bare", "-b", "trunk", str(remote)], check=True)
    config = load_config(write_config(tmp_path / "vault.toml", {"agent": workspace},
                                      extra=f'remote = "{remote}"'))
    VaultRepo.init(config.vault.path, "main")
    pushed = sync(config, now=clock)
    assert pushed.push is not None and pushed.push.pushed and pushed.commit
    away = tmp_path / "remote.away"
    remote.rename(away)
    (workspace / "MEMORY.md").write_text("# Memory\n\n- local only\n")
    clock.tick()
    local = sync(config, now=clock)
    assert local.push is not None and not local.push.pushed
    away.rename(remote)
    return config, remote, pushed.commit


def delete_blob(config: Config, commit: str = "main") -> None:
    vault = config.vault.path
    oid = subprocess.run(["git", "-C", str(vault), "rev-parse", f"{commit}:agent/MEMORY.md"],
                         capture_output=True, text=True, check=True).stdout.strip()
    (vault / "objects" / oid[:2] / oid[2:]).unlink()


def test_repair_never_reclones_under_a_running_sync(tmp_path: Path, workspace: Path,
                                                     clock: Clock) -> None:
    config, _remote, _pushed = with_remote(tmp_path, workspace, clock)
    delete_blob(config)
    head = VaultRepo.open(config.vault.path, "main").head_id()
    with SyncLock(config.state_dir, command="sync"):  # a sync is writing into the vault
        with pytest.raises(BusyError):  # exit 11, as for a second sync
            doctor(config, repair=True, now=lambda: clock.now)
        assert not list(tmp_path.glob("memory-vault.damaged-*"))
        assert VaultRepo.open(config.vault.path, "main").head_id() == head
    report = doctor(config, repair=True, now=lambda: clock.now)  # the sync is over
    assert report.repairs[0].startswith("re-cloned the vault from")
    assert list(tmp_path.glob("memory-vault.damaged-*"))


def test_after_a_reclone_the_vault_knows_what_the_remote_has(tmp_path: Path, workspace: Path,
                                                             clock: Clock) -> None:
    config, _remote, pushed = with_remote(tmp_path, workspace, clock)
    delete_blob(config, "main~1")
    report = doctor(config, repair=True, now=lambda: clock.now)
    assert report.repairs[0].startswith("re-cloned the vault from")
    assert "1 commit(s) were only local" in report.repairs[0]
    remote_check = next(c for c in report.checks if c.name == "remote")
    assert (remote_check.status, remote_check.detail.split(" reachable")[1]) == (
        "ok", ", up to date")
    vault = VaultRepo.open(config.vault.path, "main")
    assert vault.head_id() == pushed == vault.ref_id("refs/remotes/origin/main")
    assert subprocess.run(["git", "-C", str(vault.path), "symbolic-ref", "HEAD"],
                          capture_output=True, text=True).stdout == "refs/heads/main\n"
    # The next sync records the local-only change again, and pushes only that commit.
    clock.tick()
    again = sync(config, now=clock)
    assert again.modified == ("agent/MEMORY.md",)
    assert again.push is not None and again.push.pushed and again.push.unpushed == 0


def test_missing_head_is_damage_that_repair_writes_back(tmp_path: Path, workspace: Path,
                                                       clock: Clock) -> None:
    """Before: repair re-cloned the vault from its remote, so a commit not pushed yet was
    only in the copy kept aside. HEAD alone is written back now; nothing is lost."""
    config, _remote, pushed = with_remote(tmp_path, workspace, clock)
    local = VaultRepo.open(config.vault.path, "main").head_id()
    assert local != pushed  # (one commit only local)
    (config.vault.path / "HEAD").unlink()
    report = doctor(config, now=lambda: clock.now)
    repo_check = next(c for c in report.checks if c.name == "repository")
    assert repo_check.status == "fail" and "HEAD" in repo_check.detail
    repaired = doctor(config, repair=True, now=lambda: clock.now)
    assert repaired.repairs[0] == "wrote the missing HEAD as `ref: refs/heads/main`"
    assert not any("re-clone" in r for r in repaired.repairs)
    assert next(c for c in repaired.checks if c.name == "repository").status == "ok"
    assert (config.vault.path / "HEAD").read_text() == "ref: refs/heads/main\n"
    assert subprocess.run(["git", "-C", str(config.vault.path), "rev-parse", "main"],
                          capture_output=True, text=True).stdout.strip() == local
    assert not list(tmp_path.rglob("*.damaged-*"))
    fsck = subprocess.run(["git", "-C", str(config.vault.path), "fsck", "--strict"],
                          capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stderr


def test_missing_head_without_a_remote_is_written_back_too(
        config: Config, vault: VaultRepo, clock: Clock) -> None:
    result = sync(config, now=clock)
    (vault.path / "HEAD").unlink()
    report = doctor(config, repair=True, now=lambda: clock.now)
    assert report.repairs == ("wrote the missing HEAD as `ref: refs/heads/main`",)
    assert VaultRepo.open(vault.path, "main").head_id() == result.commit

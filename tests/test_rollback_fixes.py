"""Auto-rollback never puts an old version over a file written again since it was judged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import apsw
import pytest

from conftest import Clock, age, write_config
from vault.config import Config, load_config
from vault.repo import VaultRepo
from vault.rollback import BUSY_NS, roll_back
from vault.sync import SyncOptions, sync

GOOD = '{"facts": ["v1", "v2 - newest, good"]}'

# A writer (the agent) that waits for its cue, then writes a good memory.json and exits.
WRITER = """
import os, sys, time
go, target, text = sys.argv[1:4]
while not os.path.exists(go):
    time.sleep(0.01)
with open(target + ".tmp", "w") as f:
    f.write(text)
os.replace(target + ".tmp", target)
"""


def test_a_file_fixed_while_the_sync_reads_other_files_is_not_rolled_back(
        tmp_path: Path, clock: Clock) -> None:
    """memory.json is judged corrupt; while the sync reads another source, the agent (another
    process) writes a good, newer memory.json. The rollback used to put the vault's older
    version over it and set the good one aside."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    mem = a / "memory.json"
    mem.write_text('{"facts": ["v1"]}')
    (b / "notes.md").write_text("x\n")
    config = load_config(write_config(tmp_path / "vault.toml", {"a": a, "b": b},
                                      extra="[health]\nauto_rollback = true"))
    VaultRepo.init(config.vault.path, config.vault.branch)
    assert sync(config, now=clock).ok

    mem.write_text('{"facts": ["v1", ')  # its writer crashed half way
    age(mem)
    (b / "notes.md").write_text("y\n")
    go = tmp_path / "go"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(go), str(mem), GOOD])

    def reading(vpath: str) -> None:
        # a/memory.json has been judged corrupt by now (sources are read in order): the agent
        # writes the good version while b is read, and is long done before the rollback.
        if vpath == "b/notes.md":
            go.touch()
            assert writer.wait(timeout=30) == 0
            time.sleep(BUSY_NS / 1e9 + 0.2)  # (not too fresh to roll back)

    clock.tick()
    try:
        result = sync(config, SyncOptions(progress=reading), now=clock)
    finally:
        go.touch()
        writer.wait(timeout=30)
    assert [c.path for c in result.corrupt] == ["a/memory.json"]
    assert result.rollbacks == ()
    assert mem.read_text() == GOOD
    assert list(a.iterdir()) == [mem]  # nothing set aside
    assert any(f.message.startswith("did not roll back a/memory.json: it was written again")
               for f in result.failures)
    clock.tick()
    assert sync(config, now=clock).modified == ("a/memory.json",)  # and the next sync stores it


def test_repair_leaves_a_file_written_again_since_it_was_judged(
        tmp_path: Path, clock: Clock) -> None:
    """The doctor --repair path: roll_back gets the (path, file, reason) judged a while ago."""
    src = tmp_path / "src"
    src.mkdir()
    mem = src / "memory.json"
    mem.write_text('{"facts": ["v1"]}')
    config = load_config(write_config(tmp_path / "vault.toml", {"a": src}))
    repo, _ = VaultRepo.init(config.vault.path, config.vault.branch)
    sync(config, now=clock)
    mem.write_text('{"facts": ["v1", ')
    age(mem)
    judged = [("a/memory.json", str(mem), "invalid JSON (half-written?): ...")]
    mem.write_text(GOOD)  # fixed since
    age(mem)
    failed: list[tuple[str, str]] = []
    assert roll_back(repo, judged, failed=failed) == []
    assert mem.read_text() == GOOD and list(src.iterdir()) == [mem]
    assert [f[0] for f in failed] == ["a/memory.json"]

    mem.write_text('{"facts": ')  # still corrupt: rolled back as before
    age(mem)
    done = roll_back(repo, judged)
    assert [r.path for r in done] == ["a/memory.json"]
    assert json.loads(mem.read_text()) == {"facts": ["v1"]}


def test_a_database_with_page_one_zeroed_is_still_rolled_back(tmp_path: Path,
                                                              clock: Clock) -> None:
    """Judged by the walk, not by reading it as a snapshot: judged again the same way."""
    src = tmp_path / "src"
    src.mkdir()
    db = src / "notes.db"
    conn = apsw.Connection(str(db))
    conn.execute("PRAGMA journal_mode=TRUNCATE")  # leaves an empty notes.db-journal behind
    conn.execute("CREATE TABLE t(x); INSERT INTO t VALUES('orig')")
    conn.close()
    config = load_config(write_config(tmp_path / "vault.toml", {"a": src},
                                      extra="[health]\nauto_rollback = true"))
    VaultRepo.init(config.vault.path, config.vault.branch)
    sync(config, now=clock)
    with db.open("r+b") as f:
        f.write(bytes(4096))
    age(db)
    clock.tick()
    result = sync(config, now=clock)
    assert [r.path for r in result.rollbacks] == ["a/notes.db"]
    conn = apsw.Connection(str(db))
    assert conn.execute("SELECT x FROM t").fetchall() == [("orig",)]
    conn.close()


# --- a file the agent saves while the rollback runs ---------------------------------------------

# An agent that saves memory.json the usual way (a temp file, renamed over it) once the rollback
# has kept the corrupt file aside (a .corrupt- file appears beside it), then exits.
SAVER = """
import glob, os, sys, time
target, text = sys.argv[1:3]
while not glob.glob(glob.escape(target) + ".corrupt-*"):
    time.sleep(0.001)
with open(target + ".tmp", "w") as f:
    f.write(text)
os.replace(target + ".tmp", target)
"""


def _corrupt_and_synced(tmp_path: Path, clock: Clock, name: str, good: bytes,
                        extra: str = "") -> tuple[Config, Path]:
    """A source holding name (good), synced, then corrupt and aged (ready to roll back)."""
    ws = tmp_path / "ws"
    ws.mkdir()
    target = ws / name
    target.write_bytes(good)
    config = load_config(write_config(tmp_path / "vault.toml", {"a": ws},
                                      extra="[health]\nauto_rollback = true\n" + extra))
    VaultRepo.init(config.vault.path, config.vault.branch)
    assert sync(config, now=clock).ok
    target.write_text('{"v": "broken')
    age(target)
    clock.tick()
    return config, target


def test_a_big_file_saved_by_the_agent_while_it_is_rolled_back_is_kept(
        tmp_path: Path, clock: Clock) -> None:
    """The reported case: a 30 MB memory file is corrupt; the agent saves a good one as soon
    as the rollback has kept the corrupt one aside. The rollback then wrote the vault's old
    version over it (the whole file: a long moment) and the agent's save was lost."""
    old = json.dumps({"v": "old", "pad": "x" * 30_000_000}).encode()
    config, target = _corrupt_and_synced(
        tmp_path, clock, "big.json", old,
        '[secrets]\npolicy = "allow"\n[snapshot]\nmax_file_size = "512 MiB"\n')
    agent = subprocess.Popen([sys.executable, "-c", SAVER, str(target), GOOD])
    try:
        result = sync(config, now=clock)
    finally:
        agent.wait(timeout=60)
    assert agent.returncode == 0
    assert target.read_text() == GOOD  # the agent's save, whichever came first
    assert [p.name for p in target.parent.iterdir()] == ["big.json"]  # no .corrupt-, no temp
    assert result.rollbacks == ()
    assert any(f.message.startswith("did not roll back a/big.json: it was written again")
               for f in result.failures)


@pytest.fixture
def agent_saves_after_aside(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path, bytes], None]:
    """Arm a real agent process that saves (temp file and rename) over a target the moment
    the rollback has kept the corrupt file aside, and wait until it has: the patch makes the
    moment exact, before the good version is written and swapped in."""
    from vault import rollback

    armed: list[tuple[Path, bytes]] = []
    real = rollback._keep_aside

    def keep_aside_then_agent_saves(path: Path, aside: Path) -> None:
        real(path, aside)
        if armed:
            target, data = armed.pop()
            source = Path(f"{target}.agent")
            source.write_bytes(data)
            subprocess.run([sys.executable, "-c", "import os, sys; os.replace(*sys.argv[1:])",
                            str(source), str(target)], check=True, timeout=60)

    monkeypatch.setattr(rollback, "_keep_aside", keep_aside_then_agent_saves)
    return lambda target, data: armed.append((target, data))


@pytest.mark.parametrize("swap", [True, False], ids=["exchange", "no-exchange"])
def test_a_file_saved_by_the_agent_after_it_was_kept_aside_is_not_overwritten(
        tmp_path: Path, clock: Clock, agent_saves_after_aside: Callable[[Path, bytes], None],
        monkeypatch: pytest.MonkeyPatch, swap: bool) -> None:
    if not swap:  # as on a filesystem without RENAME_EXCHANGE: a last look, then a rename
        from vault import fsutil

        monkeypatch.setattr(fsutil, "exchange", lambda a, b: False)
    config, target = _corrupt_and_synced(tmp_path, clock, "memory.json", b'{"v": "old"}')
    agent_saves_after_aside(target, GOOD.encode())
    result = sync(config, now=clock)
    assert target.read_text() == GOOD
    assert [p.name for p in target.parent.iterdir()] == ["memory.json"]
    assert result.rollbacks == ()
    assert any(f.message.startswith("did not roll back a/memory.json: it was written again")
               for f in result.failures)
    clock.tick()
    assert sync(config, now=clock).modified == ("a/memory.json",)  # stored by the next sync


def test_a_database_replaced_by_the_agent_after_it_was_kept_aside_is_not_overwritten(
        tmp_path: Path, clock: Clock, agent_saves_after_aside: Callable[[Path, bytes], None]
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    db = ws / "notes.db"
    conn = apsw.Connection(str(db))
    conn.execute("CREATE TABLE t(x); INSERT INTO t VALUES('orig')")
    conn.close()
    config = load_config(write_config(tmp_path / "vault.toml", {"a": ws},
                                      extra="[health]\nauto_rollback = true"))
    VaultRepo.init(config.vault.path, config.vault.branch)
    assert sync(config, now=clock).ok
    newer = tmp_path / "newer.db"
    conn = apsw.Connection(str(newer))
    conn.execute("CREATE TABLE t(x); INSERT INTO t VALUES('saved by the agent')")
    conn.close()
    db.write_bytes(db.read_bytes()[:9])
    age(db)
    agent_saves_after_aside(db, newer.read_bytes())
    clock.tick()
    result = sync(config, now=clock)
    conn = apsw.Connection(str(db))
    assert conn.execute("SELECT x FROM t").fetchall() == [("saved by the agent",)]
    conn.close()
    assert [p.name for p in ws.iterdir()] == ["notes.db"]
    assert result.rollbacks == ()
    assert any(f.message.startswith("did not roll back a/notes.db: it was written again")
               for f in result.failures)


# --- run as root: the file put back stays the agent's -------------------------------------------


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="needs root (to own files of another user)")
def test_run_as_root_a_rollback_leaves_the_file_its_owners(tmp_path: Path,
                                                           clock: Clock) -> None:
    """vault from root's cron: the good version put back was root's, and with mode 0600 the
    agent (another user) could no longer read its own memory."""
    from test_restore_owner import NOBODY, give, owner

    ws = tmp_path / "ws"
    ws.mkdir()
    mem, db = ws / "memory.json", ws / "notes.db"
    mem.write_text('{"v": "old"}')
    conn = apsw.Connection(str(db))
    conn.execute("CREATE TABLE t(x); INSERT INTO t VALUES('orig')")
    conn.close()
    config = load_config(write_config(tmp_path / "vault.toml", {"a": ws},
                                      extra="[health]\nauto_rollback = true"))
    VaultRepo.init(config.vault.path, config.vault.branch)
    assert sync(config, now=clock).ok
    mem.write_text('{"v": "bro')
    db.write_bytes(db.read_bytes()[:9])
    for path in (mem, db):
        give(path)
        path.chmod(0o600)
        age(path)
    clock.tick()
    result = sync(config, now=clock)
    assert sorted(r.path for r in result.rollbacks) == ["a/memory.json", "a/notes.db"]
    assert mem.read_text() == '{"v": "old"}'
    for path in (mem, db):
        assert owner(path) == (NOBODY, NOBODY), path
        assert os.stat(path).st_mode & 0o777 == 0o600

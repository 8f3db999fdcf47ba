"""Run as root (vault from root's cron), a restore leaves the agent's files the agent's: a file
replaced in place keeps its owner, a new one takes its folder's (before: all became root's,
and a 0600 memory file was then closed to the agent it belongs to)."""

from __future__ import annotations

import os
from pathlib import Path

import apsw
import pytest

from conftest import Clock, write_config
from vault.config import Config, load_config
from vault.repo import VaultRepo
from vault.restore import RestoreOptions, restore
from vault.sync import sync

NOBODY = 65534  # another user than the one running vault (root)

pytestmark = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                                reason="needs root (to own files of another user)")


def owner(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_uid, st.st_gid


def give(path: Path) -> None:
    os.chown(path, NOBODY, NOBODY)


def _history(tmp_path: Path, clock: Clock) -> tuple[Config, Path, str]:
    """A source of another user's files, synced twice: (config, the source, the first commit)."""
    ws = tmp_path / "ws"
    (ws / "notes").mkdir(parents=True)
    (ws / "memory.json").write_text('{"v": 1}')
    (ws / "notes" / "a.md").write_text("one\n")
    db = apsw.Connection(str(ws / "mem.db"))
    db.execute("CREATE TABLE t(x); INSERT INTO t VALUES('first')")
    db.close()
    config = load_config(write_config(tmp_path / "vault.toml", {"a": ws}))
    VaultRepo.init(config.vault.path, config.vault.branch)
    first = sync(config, now=clock).commit
    assert first
    (ws / "memory.json").write_text('{"v": 2}')
    (ws / "notes" / "a.md").unlink()
    (ws / "notes").rmdir()
    db = apsw.Connection(str(ws / "mem.db"))
    db.execute("UPDATE t SET x = 'second'")
    db.close()
    clock.tick()
    assert sync(config, now=clock).commit
    for path in (ws, ws / "memory.json", ws / "mem.db"):
        give(path)
    (ws / "memory.json").chmod(0o600)
    (ws / "mem.db").chmod(0o600)
    return config, ws, first


def test_a_restore_into_the_sources_keeps_the_agents_files_the_agents(
        tmp_path: Path, clock: Clock) -> None:
    config, ws, first = _history(tmp_path, clock)
    clock.tick()
    restore(config, RestoreOptions(at=first), now=clock)
    assert (ws / "memory.json").read_text() == '{"v": 1}'
    assert owner(ws / "memory.json") == (NOBODY, NOBODY)  # replaced in place
    assert (os.stat(ws / "memory.json").st_mode & 0o777) == 0o600
    db = apsw.Connection(str(ws / "mem.db"))
    assert db.execute("SELECT x FROM t").fetchall() == [("first",)]
    db.close()
    assert owner(ws / "mem.db") == (NOBODY, NOBODY)
    # a folder and a file the restore made: their folder's owner, as the agent made them
    assert (ws / "notes" / "a.md").read_text() == "one\n"
    assert owner(ws / "notes") == (NOBODY, NOBODY)
    assert owner(ws / "notes" / "a.md") == (NOBODY, NOBODY)


def test_a_restore_to_a_folder_of_another_user_gives_it_what_it_makes(
        tmp_path: Path, clock: Clock) -> None:
    config, _ws, first = _history(tmp_path, clock)
    out = tmp_path / "out"
    out.mkdir()
    give(out)
    clock.tick()
    restore(config, RestoreOptions(at=first, to=out), now=clock)
    made = [out / "a", out / "a" / "memory.json", out / "a" / "notes",
            out / "a" / "notes" / "a.md", out / "a" / "mem.db"]
    assert [owner(p) for p in made] == [(NOBODY, NOBODY)] * len(made)
    assert not [p for p in out.iterdir() if p.name != "a"]  # (no staging folder left)


def test_a_restore_to_roots_folder_stays_roots(tmp_path: Path, clock: Clock) -> None:
    config, _ws, first = _history(tmp_path, clock)
    out = tmp_path / "mine"
    clock.tick()
    restore(config, RestoreOptions(at=first, to=out), now=clock)
    assert owner(out / "a" / "memory.json") == (0, os.getegid())

"""Restore: every commit comes back byte for byte (text) and table by table (SQLite), safely."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import apsw
import pytest

from conftest import Clock, git, make_sqlite, rows, run_cli, write_config
from vault.config import Config, load_config
from vault.errors import RepoError, SqliteSnapshotError, UsageError, VaultError
from vault.fsutil import BatchWriter
from vault.pathsafe import UnsafePathError
from vault.repo import VaultRepo
from vault.restore import (Action, PartialRestoreError, RestoreError, RestoreOptions,
                           _set_aside, restore)
from vault.restore_db import Databases
import vault.restore as restore_module
from vault.show import query_dump, show_file
from vault.sqlite_dump import load_dump
from vault.sync import sync


def tables(db_path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows, in rowid order (a read-write open: it leaves no -wal/-shm behind)."""
    db = apsw.Connection(str(db_path), flags=apsw.SQLITE_OPEN_READWRITE)
    try:
        names = [r[0] for r in db.execute(
            "SELECT name FROM sqlite_schema WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
        return {n: list(db.execute(f'SELECT rowid, * FROM "{n}" ORDER BY rowid')) for n in names}
    finally:
        db.close()


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under root (SQLite companions included)."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def history(config: Config, clock: Clock, workspace: Path) -> list[dict[str, Any]]:
    """Three syncs with text and SQLite changes; what each commit must restore to."""
    states = []
    for step in range(3):
        if step:
            (workspace / "MEMORY.md").write_text(f"# Memory\n\n- version {step}\n")
            (workspace / "memory" / f"2026-11-2{step}.md").write_text(f"day {step}\n")
            db = apsw.Connection(str(workspace / "memory.db"))
            db.execute("UPDATE memories SET content = ? WHERE id = 1", (f"memory v{step}",))
            db.execute("INSERT INTO memories(content, embedding) VALUES(?, ?)",
                       (f"new {step}", os.urandom(1536)))
            db.close()
        clock.tick()
        result = sync(config, now=clock)
        assert result.commit
        files = {p.relative_to(workspace).as_posix(): p.read_bytes()
                 for p in workspace.rglob("*") if p.is_file() and not p.name.endswith(
                     ("-wal", "-shm", ".db"))}
        states.append({"commit": result.commit, "time": clock.now, "files": files,
                       "db": tables(workspace / "memory.db")})
    return states


@pytest.fixture
def states(config: Config, vault: VaultRepo, clock: Clock, workspace: Path) -> list[dict[str, Any]]:
    return history(config, clock, workspace)


def test_restore_each_commit_to_a_folder(config: Config, states: list[dict[str, Any]],
                                         tmp_path: Path, clock: Clock) -> None:
    for i, state in enumerate(states):
        out = tmp_path / f"out{i}"
        result = restore(config, RestoreOptions(at=state["commit"][:8], to=out), now=clock)
        assert result.plan.commit.id == state["commit"]
        assert {a.action for a in result.plan.actions} == {"create"}
        for rel, data in state["files"].items():
            assert (out / "agent" / rel).read_bytes() == data, rel
        assert tables(out / "agent" / "memory.db") == state["db"]
        db = apsw.Connection(str(out / "agent" / "memory.db"))
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("PRAGMA journal_mode").fetchall() == [("wal",)]
        db.close()


def test_when_resolves_to_the_last_commit_at_or_before(config: Config, vault: VaultRepo,
                                                       states: list[dict[str, Any]],
                                                       tmp_path: Path, clock: Clock) -> None:
    def chosen(at: str) -> str:
        return restore(config, RestoreOptions(at=at, to=tmp_path / "x", dry_run=True),
                       now=clock).plan.commit.id

    between = (states[1]["time"] + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert chosen(between) == states[1]["commit"]
    assert chosen(states[2]["time"].strftime("%Y-%m-%dT%H:%M:%SZ")) == states[2]["commit"]
    assert chosen("HEAD~2") == states[0]["commit"]
    # the clock stands at the last sync; syncs were 15 minutes apart
    assert chosen("10 minutes ago") == states[1]["commit"]
    assert chosen("20 minutes ago") == states[0]["commit"]
    # A WHEN that names no commit is a usage error (exit 2), as for `log --since`.
    with pytest.raises(UsageError, match="no commit at or before 2026-11-20T00:00:00Z: the "
                                         "first commit is"):
        chosen("2026-11-20T00:00:00Z")
    with pytest.raises(UsageError, match="no commit at or before 0001-01-02T00:00:00Z: "):
        chosen("0001-01-02T00:00:00Z")  # (the year in four digits, as it was given)
    with pytest.raises(UsageError, match="no commit 'HEAD~9' in the vault"):
        chosen("HEAD~9")
    with pytest.raises(UsageError, match="cannot understand time"):
        chosen("last tuesday-ish")


def test_restore_live_sources_and_undo(config: Config, states: list[dict[str, Any]],
                                       workspace: Path, clock: Clock, tmp_path: Path) -> None:
    # Unsynced work in progress: the safety sync must capture it before it is replaced.
    (workspace / "MEMORY.md").write_text("# Memory\n\n- unsynced edit\n")
    before = tree_digest(workspace)
    dry = restore(config, RestoreOptions(at=states[0]["commit"], dry_run=True), now=clock)
    assert tree_digest(workspace) == before
    assert {(a.action, a.path) for a in dry.plan.actions if a.action != "unchanged"} == {
        ("overwrite", "agent/MEMORY.md"), ("overwrite", "agent/memory.db")}
    clock.tick()
    result = restore(config, RestoreOptions(at=states[0]["commit"]), now=clock)
    assert result.safety_sync is not None and result.safety_sync.commit
    assert b"unsynced edit" in git(config.vault.path, "show",
                                   f"{result.safety_sync.commit}:agent/MEMORY.md").encode()
    assert (workspace / "MEMORY.md").read_bytes() == states[0]["files"]["MEMORY.md"]
    assert tables(workspace / "memory.db") == states[0]["db"]
    assert not (workspace / "memory.db-wal").exists()
    # files that did not exist then are kept without --delete
    assert (workspace / "memory" / "2026-11-22.md").exists()
    # undo, exactly as printed by the CLI
    assert result.undo_commit == result.safety_sync.commit
    proc = run_cli("restore", "--at", result.undo_commit, "--delete", "--yes", "--config",
                   str(config.file))
    assert proc.returncode == 0, proc.stderr
    assert (workspace / "MEMORY.md").read_text() == "# Memory\n\n- unsynced edit\n"
    assert tables(workspace / "memory.db") == states[2]["db"]


def test_delete_removes_files_that_did_not_exist(config: Config, states: list[dict[str, Any]],
                                                 workspace: Path, clock: Clock) -> None:
    result = restore(config, RestoreOptions(at=states[0]["commit"], delete=True,
                                            paths=("memory/*.md",)), now=clock)
    deleted = sorted(a.path for a in result.plan.actions if a.action == "delete")
    assert deleted == ["agent/memory/2026-11-21.md", "agent/memory/2026-11-22.md"]
    assert sorted(p.name for p in (workspace / "memory").iterdir()) == ["2026-11-20.md"]
    assert (workspace / "MEMORY.md").read_text().endswith("version 2\n")  # outside --path


def test_uncaptured_file_is_kept_aside_not_lost(config: Config, states: list[dict[str, Any]],
                                                workspace: Path, clock: Clock) -> None:
    (workspace / "memory.json").write_text('[{"id": 1, "content": "half')  # cannot be synced
    result = restore(config, RestoreOptions(at=states[0]["commit"], paths=("memory.json",)),
                     now=clock)
    aside = [a.set_aside for a in result.plan.actions if a.set_aside]
    assert len(aside) == 1
    assert Path(str(aside[0])).read_text() == '[{"id": 1, "content": "half'
    assert json.loads((workspace / "memory.json").read_text())[0]["content"] == "likes tea"


def test_file_modes_are_kept(config: Config, vault: VaultRepo, clock: Clock, workspace: Path,
                             tmp_path: Path) -> None:
    script = workspace / "hook.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    sync(config, now=clock)
    restore(config, RestoreOptions(at="HEAD", to=tmp_path / "out"), now=clock)
    assert (tmp_path / "out" / "agent" / "hook.sh").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "out" / "agent" / "MEMORY.md").stat().st_mode & 0o777 == 0o644


def test_new_files_take_the_users_umask(config_file: Path, config: Config, vault: VaultRepo,
                                        workspace: Path, tmp_path: Path) -> None:
    """Before: a file brought back where there was none was 0o644 whatever the umask (a
    private 0o600 memory deleted, then brought back by the undo, came back world-readable for
    a user whose umask is 077). git records only the executable bit."""
    script = workspace / "hook.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o700)
    (workspace / "memory.json").chmod(0o600)
    sync(config)
    (workspace / "memory.json").unlink()
    for args in (("--to", str(tmp_path / "out")), ("--path", "memory.json", "--yes")):
        proc = subprocess.run([sys.executable, "-m", "vault", "restore", "--at", "HEAD", *args,
                               "--config", str(config_file)], capture_output=True, text=True,
                              preexec_fn=lambda: os.umask(0o077), check=False)
        assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out" / "agent"
    assert {p.name: p.stat().st_mode & 0o777 for p in (out / "hook.sh", out / "MEMORY.md",
                                                       out / "memory.db",
                                                       workspace / "memory.json")} == {
        "hook.sh": 0o700, "MEMORY.md": 0o600, "memory.db": 0o600, "memory.json": 0o600}


HOLD_OPEN = """
import sys, time, sqlite3
db = sqlite3.connect(sys.argv[1])
db.execute("SELECT count(*) FROM memories").fetchall()
print("open", flush=True)
time.sleep(60)
"""


def test_live_database_held_open_is_refused(config: Config, states: list[dict[str, Any]],
                                            workspace: Path, clock: Clock) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLD_OPEN, str(workspace / "memory.db")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with pytest.raises(RestoreError, match=rf"memory.db is open in another process \(pid "
                                               rf"{holder.pid}\); refusing"):
            restore(config, RestoreOptions(at=states[0]["commit"], paths=("memory.db",)),
                    now=clock)
    finally:
        holder.kill()
        holder.wait()
    assert tables(workspace / "memory.db") == states[2]["db"]  # untouched


def test_stale_wal_is_removed_and_database_sound(config: Config, states: list[dict[str, Any]],
                                                 workspace: Path, clock: Clock) -> None:
    wal = workspace / "memory.db-wal"
    wal.write_bytes(b"stale wal that must never be replayed" * 100)
    restore(config, RestoreOptions(at=states[0]["commit"], paths=("memory.db",)), now=clock)
    assert not wal.exists()
    assert tables(workspace / "memory.db") == states[0]["db"]


def craft_commit(vault: VaultRepo, tree_lines: list[str]) -> str:
    """Write a tree and commit with git plumbing (bypassing every vault check), move main."""
    def plumb(*args: str, data: bytes = b"") -> str:
        return subprocess.run(["git", "-C", str(vault.path), *args], input=data,
                              capture_output=True, check=True).stdout.decode().strip()

    raw = b""
    for line in tree_lines:
        mode, name, content = line.split(" ", 2)
        oid = plumb("hash-object", "-w", "--stdin", data=content.encode())
        raw += mode.encode() + b" " + name.encode() + b"\0" + bytes.fromhex(oid)
    sub = plumb("hash-object", "-t", "tree", "-w", "--stdin", "--literally", data=raw)
    root = b"40000 agent\0" + bytes.fromhex(sub)
    tree = plumb("hash-object", "-t", "tree", "-w", "--stdin", "--literally", data=root)
    parent = vault.head_id()
    commit = plumb("-c", "user.name=x", "-c", "user.email=x@x", "commit-tree", tree, "-p",
                   str(parent), "-m", "crafted")
    plumb("update-ref", "refs/heads/main", commit)
    return commit


@pytest.mark.parametrize("entry, message", [
    ("100644 .. escaped", "refusing unsafe path in the vault: 'agent/..'"),
    ("100644 .git sneaky", "refusing unsafe path in the vault: 'agent/.git'"),
    ("120000 link /etc/passwd", "refusing to restore 'agent/link': not a regular file"),
])
def test_crafted_commit_cannot_write_outside(config: Config, states: list[dict[str, Any]],
                                             vault: VaultRepo, tmp_path: Path, clock: Clock,
                                             entry: str, message: str) -> None:
    commit = craft_commit(vault, [entry, "100644 fine.md ok"])
    out = tmp_path / "out"
    with pytest.raises(UnsafePathError, match=message.replace("(", r"\(").replace(".", r"\.")):
        restore(config, RestoreOptions(at=commit, to=out), now=clock)
    assert not out.exists()
    proc = run_cli("restore", "--at", commit, "--to", str(out), "--config", str(config.file))
    assert proc.returncode == 1 and proc.stderr.startswith("Error: refusing")


def test_symlinked_folder_leaving_the_target_is_refused(config: Config,
                                                        states: list[dict[str, Any]],
                                                        tmp_path: Path, clock: Clock) -> None:
    out = tmp_path / "out"
    outside = tmp_path / "outside"
    (out / "agent").mkdir(parents=True)
    outside.mkdir()
    (out / "agent" / "memory").symlink_to(outside)
    with pytest.raises(UnsafePathError, match="refusing to write through a symlink"):
        restore(config, RestoreOptions(at="HEAD", to=out), now=clock)
    assert list(outside.iterdir()) == []


def test_show_and_sql_as_of(config: Config, vault: VaultRepo, states: list[dict[str, Any]],
                            workspace: Path, clock: Clock) -> None:
    now = clock.now
    old = show_file(config, vault, "agent/MEMORY.md", states[0]["commit"], now)
    assert old.data == states[0]["files"]["MEMORY.md"]
    by_disk_path = show_file(config, vault, str(workspace / "MEMORY.md"), "HEAD", now)
    assert by_disk_path.path == "agent/MEMORY.md"
    db = show_file(config, vault, "agent/memory.db", states[1]["commit"], now)
    result = query_dump(db.data, "SELECT content FROM memories WHERE id = 1")
    assert result.columns == ("content",) and result.rows == (("memory v1",),)
    with pytest.raises(UsageError, match="agent/nope.md is not in commit"):
        show_file(config, vault, "agent/nope.md", "HEAD", now)


def test_cli_restore_json_and_refusals(config: Config, states: list[dict[str, Any]],
                                       tmp_path: Path) -> None:
    refused = run_cli("restore", "--at", states[0]["commit"], "--config", str(config.file))
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[0] == (
        "Error: refusing to overwrite live files without --yes (no terminal to ask)")
    doc = json.loads(run_cli("restore", "--at", "HEAD~2", "--to", str(tmp_path / "o"), "--json",
                             "--config", str(config.file)).stdout)
    assert doc["commit"] == states[0]["commit"]
    assert doc["counts"]["create"] == len(doc["actions"]) == 5
    assert set(doc["actions"][0]) == {"action", "path", "target", "set_aside"}
    sql = json.loads(run_cli("show", "agent/memory.db", "--at", "HEAD~1", "--sql",
                             "SELECT id, embedding FROM memories WHERE id = 1", "--json",
                             "--config", str(config.file)).stdout)
    assert sql["rows"][0][0] == 1 and sql["rows"][0][1].startswith("x'")
    shown = run_cli("show", "agent/MEMORY.md", "--at", "HEAD~2", "--config", str(config.file))
    assert shown.stdout.encode() == states[0]["files"]["MEMORY.md"]


def test_restore_before_first_sync(config: Config, vault: VaultRepo, tmp_path: Path) -> None:
    with pytest.raises(RestoreError, match="the vault has no commits yet"):
        restore(config, RestoreOptions(at="now", to=tmp_path / "o"),
                now=lambda: datetime.now(timezone.utc))


def test_restored_dump_loads_like_the_original(config: Config, vault: VaultRepo,
                                               states: list[dict[str, Any]], tmp_path: Path) -> None:
    dump = subprocess.run(["git", "-C", str(vault.path), "show", "main:agent/memory.db"],
                          capture_output=True, check=True).stdout
    load_dump(dump, tmp_path / "direct.db")
    assert tables(tmp_path / "direct.db") == states[2]["db"]


def leftovers(root: Path) -> list[str]:
    """Temp files and folders of a restore anywhere under root (there should be none)."""
    return [str(p) for p in root.rglob(".*") if p.name.endswith(".vault-tmp")
            or p.name.startswith(".vault-restore-")]


def test_several_databases_and_nothing_left_behind(config: Config, vault: VaultRepo,
                                                   clock: Clock, workspace: Path,
                                                   tmp_path: Path) -> None:
    (workspace / "sub").mkdir()
    for name, rows in (("a.db", 50), ("b.db", 3), ("sub/c.db", 200)):
        make_sqlite(workspace / name, rows=rows, wal=name == "b.db")
    sync(config, now=clock)
    out = tmp_path / "out"
    result = restore(config, RestoreOptions(at="HEAD", to=out), now=clock)
    assert {a.action for a in result.plan.actions} == {"create"}
    for name in ("memory.db", "a.db", "b.db", "sub/c.db"):
        assert tables(out / "agent" / name) == tables(workspace / name), name
    assert (out / "agent" / "MEMORY.md").read_bytes() == (workspace / "MEMORY.md").read_bytes()
    assert leftovers(out) == []


def test_databases_are_built_here_when_the_helper_dies(vault: VaultRepo,
                                                       states: list[dict[str, Any]],
                                                       tmp_path: Path) -> None:
    oid, mode = vault.files(states[0]["commit"])["agent/memory.db"]
    target = tmp_path / "out" / "memory.db"
    target.parent.mkdir()
    action = Action("create", "agent/memory.db", str(target), oid=oid, mode=mode)
    with Databases(vault.path) as databases:
        databases.start()
        assert databases._proc is not None
        databases._proc.kill()  # gone before it got any work
        databases._proc.wait()
        databases.submit(action, target)
        [(got, built, redacted)] = list(databases.results())
        assert got is action and not redacted
        assert tables(built / "db") == states[0]["db"]
    assert leftovers(target.parent) == []


def test_a_bad_dump_fails_cleanly(config: Config, states: list[dict[str, Any]],
                                  vault: VaultRepo, tmp_path: Path, clock: Clock) -> None:
    commit = craft_commit(vault, ["100644 bad.db -- vault sqlite dump v1\nCREATE TABLE t(x);\n"
                                  "INSERT INTO t VALUES(;\n", "100644 fine.md ok"])
    out = tmp_path / "out"
    with pytest.raises(SqliteSnapshotError, match="bad dump"):
        restore(config, RestoreOptions(at=commit, to=out), now=clock)
    assert not (out / "agent" / "bad.db").exists()
    assert leftovers(out) == []


def test_a_damaged_blob_stops_the_restore_and_leaves_no_temp_files(
        config: Config, states: list[dict[str, Any]], vault: VaultRepo, tmp_path: Path,
        clock: Clock) -> None:
    oid = vault.files(states[2]["commit"])["agent/memory/2026-11-21.md"][0]
    path = vault.path / "objects" / oid[:2] / oid[2:]
    path.chmod(0o644)
    path.write_bytes(b"garbage")
    out = tmp_path / "out"
    with pytest.raises(RepoError, match=f"vault object {oid} is missing or damaged"):
        restore(config, RestoreOptions(at="HEAD", to=out), now=clock)
    assert leftovers(out) == []


def test_a_folder_name_with_a_newline_stays_in_its_own_folder(config: Config, vault: VaultRepo,
                                                              clock: Clock, workspace: Path,
                                                              tmp_path: Path) -> None:
    # The database helper gets its jobs as lines: a newline in a folder name once split a
    # request in two, and the helper wrote into the folder next door and the vault's folder.
    (workspace / "a\nb").mkdir()
    make_sqlite(workspace / "a\nb" / "x.db", rows=3)
    sync(config, now=clock)
    out = tmp_path / "out"
    (out / "agent" / "a").mkdir(parents=True)
    (out / "agent" / "a" / "result").write_text("the user's own file\n")
    restore(config, RestoreOptions(at="HEAD", to=out, paths=("agent/a\nb/x.db",)), now=clock)
    assert tables(out / "agent" / "a\nb" / "x.db") == tables(workspace / "a\nb" / "x.db")
    assert sorted(os.listdir(out / "agent" / "a")) == ["result"]
    assert (out / "agent" / "a" / "result").read_text() == "the user's own file\n"
    assert not {"claim", "result"} & set(os.listdir(vault.path))
    assert leftovers(out) == []


def file_where_a_folder_goes(config: Config, clock: Clock, workspace: Path,
                             tmp_path: Path) -> Path:
    """A vault with notes/x.md, and an output folder with a file named notes in its way."""
    (workspace / "notes").mkdir()
    (workspace / "notes" / "x.md").write_text("x\n")
    sync(config, now=clock)
    out = tmp_path / "out"
    (out / "agent").mkdir(parents=True)
    (out / "agent" / "notes").write_text("a file where the folder goes\n")
    return out


def test_delete_then_a_folder_where_a_file_was(config: Config, vault: VaultRepo, clock: Clock,
                                               workspace: Path, tmp_path: Path) -> None:
    # The folder can only be made once the file in its way is deleted, earlier in the plan.
    out = file_where_a_folder_goes(config, clock, workspace, tmp_path)
    result = restore(config, RestoreOptions(at="HEAD", to=out, delete=True), now=clock)
    assert ("delete", "agent/notes") in {(a.action, a.path) for a in result.plan.actions}
    assert (out / "agent" / "notes" / "x.md").read_text() == "x\n"


def test_a_file_in_the_way_of_a_folder_is_a_clear_error(config: Config, vault: VaultRepo,
                                                        clock: Clock, workspace: Path,
                                                        tmp_path: Path) -> None:
    out = file_where_a_folder_goes(config, clock, workspace, tmp_path)
    # Said while planning (before: only once writing, after a dry run had said "create").
    for dry_run in (True, False):
        with pytest.raises(RestoreError, match=f"cannot restore agent/notes/x.md: "
                           f"{out / 'agent' / 'notes'} is a file where the restore needs a "
                           "folder"):
            restore(config, RestoreOptions(at="HEAD", to=out, dry_run=dry_run), now=clock)
    assert (out / "agent" / "notes").read_text() == "a file where the folder goes\n"
    assert leftovers(out) == []


def test_a_folder_swapped_for_a_symlink_after_the_checks(config: Config, vault: VaultRepo,
                                                         clock: Clock, workspace: Path,
                                                         tmp_path: Path) -> None:
    sync(config, now=clock)
    out = tmp_path / "out"
    (out / "agent" / "memory").mkdir(parents=True)
    outside = tmp_path / "outside"
    (outside / "memory").mkdir(parents=True)

    def confirm(plan: Any) -> bool:  # anything may happen between the checks and the writes
        os.rename(out / "agent", out / "agent.real")
        os.symlink(outside, out / "agent")
        return True

    with pytest.raises(UnsafePathError, match="refusing to write through a symlink"):
        restore(config, RestoreOptions(at="HEAD", to=out, paths=("agent/memory/*",)),
                now=clock, confirm=confirm)
    assert os.listdir(outside / "memory") == []


def test_a_failed_restore_leaves_no_folders_it_made(config: Config, vault: VaultRepo,
                                                   clock: Clock, workspace: Path,
                                                   tmp_path: Path) -> None:
    for i in range(40):  # folders after the damaged file, which the stagers reach first
        (workspace / f"zz{i // 8}").mkdir(exist_ok=True)
        (workspace / f"zz{i // 8}" / f"f{i}.md").write_text(f"{i}\n")
    sync(config, now=clock)
    oid = vault.files(vault.head_id())["agent/MEMORY.md"][0]
    damaged = vault.path / "objects" / oid[:2] / oid[2:]
    damaged.chmod(0o644)
    damaged.write_bytes(b"garbage")
    out = tmp_path / "new" / "out"
    with pytest.raises(RepoError, match="missing or damaged"):
        restore(config, RestoreOptions(at="HEAD", to=out), now=clock)
    assert not (tmp_path / "new").exists()


def test_a_helper_that_never_exits_does_not_hold_up_the_restore(
        config: Config, vault: VaultRepo, clock: Clock, workspace: Path,
        tmp_path: Path) -> None:
    # sys.executable is not always a Python that runs `-m vault.dbbuild` (an embedding host):
    # the restore builds the databases itself and does not wait for it.
    sync(config, now=clock)
    fake = tmp_path / "host"
    fake.write_text("#!/bin/sh\nexec sleep 600\n")
    fake.chmod(0o755)
    out = tmp_path / "out"
    script = ("import sys; sys.executable = sys.argv[1]\n"
              "from vault.cli import main\n"
              "main(['restore', '--at', 'HEAD', '--to', sys.argv[2], '--config', sys.argv[3]])")
    proc = subprocess.run([sys.executable, "-c", script, str(fake), str(out), str(config.file)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert tables(out / "agent" / "memory.db") == tables(workspace / "memory.db")


def test_a_target_folder_that_is_not_utf8(config: Config, vault: VaultRepo, clock: Clock,
                                          workspace: Path, tmp_path: Path) -> None:
    """SQLite is given such a path as a percent-encoded file: URI: the database is rebuilt
    there like any other, into a new folder (made whole) and into one that is there."""
    sync(config, now=clock)
    out = Path(os.fsdecode(os.fsencode(tmp_path) + b"/out\xe9"))
    restore(config, RestoreOptions(at="HEAD", to=out), now=clock)
    assert _uri_rows(out / "agent" / "memory.db") == rows(workspace / "memory.db")
    assert (out / "agent" / "MEMORY.md").read_bytes() == (workspace / "MEMORY.md").read_bytes()
    assert leftovers(out) == []
    again = Path(os.fsdecode(os.fsencode(tmp_path) + b"/again\xe9"))
    (again / "agent").mkdir(parents=True)  # into a folder that is there: file by file
    restore(config, RestoreOptions(at="HEAD", to=again), now=clock)
    assert _uri_rows(again / "agent" / "memory.db") == rows(workspace / "memory.db")
    assert leftovers(again) == []


def _uri_rows(path: Path) -> list[tuple[object, ...]]:
    """The memories table of a database whose path is not UTF-8 (opened by its file: URI)."""
    import apsw

    from vault.sqlite_dump import file_uri

    db = apsw.Connection(file_uri(path), flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
    try:
        return list(db.execute("SELECT id, content FROM memories ORDER BY id"))
    finally:
        db.close()


def test_a_database_set_aside_takes_its_wal_along(tmp_path: Path) -> None:
    # A writer killed with its connection open leaves committed rows only in the -wal.
    db = tmp_path / "memory.db"
    writer = ("import apsw, os, sys\n"
              "db = apsw.Connection(sys.argv[1])\n"
              "db.execute('PRAGMA journal_mode=WAL')\n"
              "db.execute('CREATE TABLE m(x)')\n"
              "db.execute('PRAGMA wal_autocheckpoint=0')\n"
              "db.execute('INSERT INTO m VALUES (1), (2)')\n"
              "os._exit(0)\n")
    subprocess.run([sys.executable, "-c", writer, str(db)], check=True)
    assert Path(f"{db}-wal").stat().st_size > 0
    aside = tmp_path / "memory.db.pre-restore-x"
    with BatchWriter(roots=(str(tmp_path),)) as writer:
        _set_aside(Action("overwrite", "agent/memory.db", str(db), set_aside=str(aside)), writer)
    assert not db.exists() and not Path(f"{db}-wal").exists()
    assert tables(aside) == {"m": [(1, 1), (2, 2)]}


def test_a_folder_swapped_while_its_database_is_built(config: Config, vault: VaultRepo,
                                                      clock: Clock, workspace: Path,
                                                      tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    sync(config, now=clock)
    out = tmp_path / "out"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "memory.db-wal").write_bytes(b"not ours to delete")
    built = Databases.results

    def swap_then_hand_over(self: Databases) -> Any:
        for item in built(self):
            os.rename(out / "agent", out / "agent.real")
            os.symlink(outside, out / "agent")
            yield item

    monkeypatch.setattr(Databases, "results", swap_then_hand_over)
    (out / "agent").mkdir(parents=True)  # (there already: written into file by file)
    restore(config, RestoreOptions(at="HEAD", to=out, paths=("agent/memory.db",)), now=clock)
    assert sorted(os.listdir(outside)) == ["memory.db-wal"]
    assert (outside / "memory.db-wal").read_bytes() == b"not ours to delete"
    assert tables(out / "agent.real" / "memory.db") == tables(workspace / "memory.db")


def swap_for_symlink(folder: Path, outside: Path) -> None:
    os.rename(folder, folder.with_name(folder.name + ".real"))
    os.symlink(outside, folder)


def outside_with_a_file(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "deep" / "extra.md").write_text("not the restore's to delete\n")
    return outside


def test_deletes_refuse_a_folder_swapped_for_a_symlink_with_a_relative_to(
        config: Config, vault: VaultRepo, clock: Clock, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    sync(config, now=clock)
    out = tmp_path / "out"
    (out / "agent" / "sub" / "deep").mkdir(parents=True)
    (out / "agent" / "sub" / "deep" / "extra.md").write_text("in the target\n")
    outside = outside_with_a_file(tmp_path)
    monkeypatch.chdir(tmp_path)

    def confirm(plan: Any) -> bool:
        swap_for_symlink(out / "agent" / "sub", outside)
        return True

    with pytest.raises(UnsafePathError):
        restore(config, RestoreOptions(at="HEAD", to=Path("out"), delete=True), now=clock,
                confirm=confirm)
    assert (outside / "deep" / "extra.md").exists()


def test_deletes_refuse_a_folder_swapped_for_a_symlink_below_a_linked_source_root(
        vault: VaultRepo, clock: Clock, tmp_path: Path, workspace: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    link = tmp_path / "agent-link"
    link.symlink_to(workspace)  # e.g. ~/.agent -> /data/agent
    config = load_config(write_config(tmp_path / "linked.toml", {"agent": link},
                                      vault_path=tmp_path / "memory-vault"))
    sync(config, now=clock)
    (workspace / "sub" / "deep").mkdir(parents=True)
    (workspace / "sub" / "deep" / "extra.md").write_text("new since the sync\n")
    outside = outside_with_a_file(tmp_path)
    checked = restore_module._set_aside_uncaptured

    def swap_after_the_last_check(*args: Any) -> Any:  # after the plan, before any write
        plan = checked(*args)
        swap_for_symlink(workspace / "sub", outside)
        return plan

    monkeypatch.setattr(restore_module, "_set_aside_uncaptured", swap_after_the_last_check)
    clock.tick()
    with pytest.raises(UnsafePathError, match="refusing to write through a symlink"):
        restore(config, RestoreOptions(at=vault.head_id(), delete=True, paths=("sub/**",)),
                now=clock)
    assert (outside / "deep" / "extra.md").exists()



def test_a_journal_named_file_beside_a_plain_file_is_the_users(config: Config,
                                                               vault: VaultRepo, clock: Clock,
                                                               workspace: Path) -> None:
    # X-journal is SQLite's only beside a database X; beside a plain X it is a file like any
    # other: synced, and deleted or kept aside only as itself.
    first = sync(config, now=clock).commit
    (workspace / "trip").write_text("itinerary\n")
    (workspace / "trip-journal").write_text("day 1: the user's own notes\n")
    clock.tick()
    assert "agent/trip-journal" in sync(config, now=clock).added
    (workspace / "trip").write_text("itinerary, changed\n")
    clock.tick()
    result = restore(config, RestoreOptions(at=first, delete=True, paths=("trip",)), now=clock)
    assert [(a.action, a.path) for a in result.plan.actions] == [("delete", "agent/trip")]
    assert not (workspace / "trip").exists()
    assert (workspace / "trip-journal").read_text() == "day 1: the user's own notes\n"


def test_a_helper_that_never_reads_does_not_stall_the_restore(tmp_path: Path) -> None:
    # The jobs go down a pipe: one nobody reads fills up (64 KiB) and a blocking write would
    # wait forever. They are written without blocking; what does not fit is built here.
    fake = tmp_path / "host"
    fake.write_text("#!/bin/sh\nexec sleep 600\n")
    fake.chmod(0o755)
    deep = tmp_path / ("d" * 200) / ("e" * 200)
    deep.mkdir(parents=True)
    real = sys.executable
    sys.executable = str(fake)

    def stalled(*_args: object) -> None:
        raise AssertionError("submit() blocked on the helper's pipe")

    signal.signal(signal.SIGALRM, stalled)
    signal.alarm(60)  # a hang becomes a failure
    try:
        with Databases(tmp_path) as databases:
            databases.start()
            for n in range(400):  # ~500 bytes a job: 200 KB
                target = deep / f"{n}.db"
                databases.submit(Action("create", f"agent/{n}.db", str(target), oid="0" * 40),
                                 target)
            assert not databases._feeding
    finally:
        signal.alarm(0)
        sys.executable = real
    assert leftovers(tmp_path) == []


def test_a_live_file_is_replaced_only_once_its_new_contents_are_flushed(
        config: Config, states: list[dict[str, Any]], workspace: Path, clock: Clock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import vault.restore as restore_module

    live = (workspace / "MEMORY.md").read_bytes()
    seen: list[bytes] = []
    real_flush = restore_module.sync_filesystem

    def flush(path: Path) -> None:
        seen.append((workspace / "MEMORY.md").read_bytes())  # what is in place at each flush
        real_flush(path)

    monkeypatch.setattr(restore_module, "sync_filesystem", flush)
    clock.tick()
    restore(config, RestoreOptions(at=states[0]["commit"], paths=("MEMORY.md",)), now=clock)
    assert seen and seen[0] == live  # flushed while the old file was still in place
    assert (workspace / "MEMORY.md").read_bytes() == states[0]["files"]["MEMORY.md"] != live


def test_more_live_files_than_one_flush_batch(config: Config, vault: VaultRepo, clock: Clock,
                                              workspace: Path) -> None:
    notes = workspace / "many"
    notes.mkdir()
    for i in range(300):  # more than _REPLACE_BATCH: two batches of replacements
        (notes / f"{i}.md").write_text(f"note {i}\n")
    first = sync(config, now=clock).commit
    for i in range(300):
        (notes / f"{i}.md").write_text(f"note {i}, edited\n")
    clock.tick()
    result = restore(config, RestoreOptions(at=first, paths=("many/*",)), now=clock)
    assert [a.action for a in result.plan.actions] == ["overwrite"] * 300
    assert all((notes / f"{i}.md").read_text() == f"note {i}\n" for i in range(300))
    assert leftovers(workspace) == []


def test_without_a_python_program_the_databases_are_built_here(
        config: Config, vault: VaultRepo, clock: Clock, workspace: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    sync(config, now=clock)
    monkeypatch.setattr(sys, "executable", None)  # embedded interpreters may say so
    out = tmp_path / "out"
    restore(config, RestoreOptions(at="HEAD", to=out), now=clock)
    assert tables(out / "agent" / "memory.db") == tables(workspace / "memory.db")


def test_a_new_folder_made_by_another_program_meanwhile_is_not_replaced(
        config: Config, vault: VaultRepo, clock: Clock, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # restore --to writes a missing source folder aside and renames it into place whole; one
    # that another program made (and filled) meanwhile is left as it is: a clear error.
    sync(config, now=clock)
    out = tmp_path / "out"
    move_in = restore_module._FreshFolders.move_in

    def someone_else_first(self: Any, writer: Any) -> None:
        (out / "agent").mkdir()
        (out / "agent" / "theirs.md").write_text("not the restore's\n")
        move_in(self, writer)

    monkeypatch.setattr(restore_module._FreshFolders, "move_in", someone_else_first)
    with pytest.raises(RestoreError) as err:
        restore(config, RestoreOptions(at="HEAD", to=out), now=clock)
    assert err.value.message.startswith(f"cannot move agent into {out}: ")
    assert "part of the restore" not in err.value.message
    assert os.listdir(out) == ["agent"] and os.listdir(out / "agent") == ["theirs.md"]


def test_a_restore_into_a_new_folder_and_one_that_is_there(config: Config, vault: VaultRepo,
                                                            clock: Clock, workspace: Path,
                                                            tmp_path: Path) -> None:
    # Two sources: one folder is made whole (staged), the other is written into file by file;
    # both end up as the vault has them, with nothing left over.
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.md").write_text("other notes\n")
    (other / "run.sh").write_text("#!/bin/sh\n")
    (other / "run.sh").chmod(0o755)
    path = Path(str(config.file))
    path.write_text(path.read_text() + f'\n[[sources]]\nname = "other"\npath = "{other}"\n')
    two = load_config(path)
    sync(two, now=clock)
    out = tmp_path / "out"
    (out / "other").mkdir(parents=True)
    (out / "other" / "mine.md").write_text("kept\n")
    result = restore(two, RestoreOptions(at="HEAD", to=out), now=clock)
    assert {a.action for a in result.plan.actions} == {"create"}
    assert (out / "agent" / "MEMORY.md").read_bytes() == (workspace / "MEMORY.md").read_bytes()
    assert tables(out / "agent" / "memory.db") == tables(workspace / "memory.db")
    assert (out / "other" / "notes.md").read_text() == "other notes\n"
    assert (out / "other" / "mine.md").read_text() == "kept\n"
    assert os.stat(out / "other" / "run.sh").st_mode & 0o777 == 0o755
    assert leftovers(out) == []
    git_files = set(git(config.vault.path, "ls-tree", "-r", "--name-only", "HEAD").split())
    assert {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} == \
        git_files | {"other/mine.md"}
    fresh = tmp_path / "fresh"  # both made whole: the modes as the vault has them
    restore(two, RestoreOptions(at="HEAD", to=fresh), now=clock)
    assert os.stat(fresh / "other" / "run.sh").st_mode & 0o777 == 0o755
    assert os.stat(fresh / "other" / "notes.md").st_mode & 0o777 == 0o644
    assert sorted(os.listdir(fresh)) == ["agent", "other"]


def test_with_a_host_layout_the_source_folder_is_made_whole(tmp_path: Path, workspace: Path,
                                                            clock: Clock) -> None:
    # Under layout {host}/{source} the folder made whole is DIR/<host>/<source>, also when
    # DIR/<host> is there already: a restore that fails part way leaves none of it.
    path = write_config(tmp_path / "vault.toml", {"agent": workspace},
                        extra='layout = "{host}/{source}"')
    config = load_config(path)
    repo, _ = VaultRepo.init(config.vault.path, config.vault.branch)
    sync(config, now=clock)
    out = tmp_path / "out"
    (out / "testhost").mkdir(parents=True)
    restore(config, RestoreOptions(at="HEAD", to=out), now=clock)
    assert (out / "testhost" / "agent" / "MEMORY.md").read_bytes() == \
        (workspace / "MEMORY.md").read_bytes()
    assert leftovers(out) == [] and os.listdir(out) == ["testhost"]
    files = repo.files(repo.head_id())
    last = files[max(p for p in files if not p.endswith(".db"))][0]  # written after the others
    damaged = repo.path / "objects" / last[:2] / last[2:]
    damaged.chmod(0o644)
    damaged.write_bytes(b"garbage")
    again = tmp_path / "again"
    (again / "testhost").mkdir(parents=True)
    with pytest.raises(RepoError, match="missing or damaged") as err:
        restore(config, RestoreOptions(at="HEAD", to=again), now=clock)
    assert "part of the restore" not in err.value.message
    assert os.listdir(again) == ["testhost"] and os.listdir(again / "testhost") == []


def test_an_interrupted_restore_to_a_folder_says_what_it_did(
        config: Config, vault: VaultRepo, clock: Clock, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Ctrl-C after a folder was moved into place: not the plain "interrupted" of a restore that
    # changed nothing. And an error in a staged file names the file where it was meant to go.
    sync(config, now=clock)
    out = tmp_path / "out"
    (out / "agent").mkdir(parents=True)  # written file by file: the first file is a change
    calls = []
    stage = restore_module.BatchWriter.stage

    def interrupt_on_the_second(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return stage(self, *args, **kwargs)

    monkeypatch.setattr(restore_module.BatchWriter, "stage", interrupt_on_the_second)
    with pytest.raises(VaultError) as err:
        restore(config, RestoreOptions(at="HEAD", to=out), now=clock)
    assert err.value.message == "interrupted (part of the restore was carried out)"
    assert err.value.exit_code == 130


def test_a_path_that_matches_nothing_is_said_with_delete_too(config: Config, vault: VaultRepo,
                                                             clock: Clock,
                                                             tmp_path: Path) -> None:
    """Before: with --delete, a --path that matched nothing anywhere (a typo) was a restore
    of nothing, exit 0."""
    sync(config, now=clock)
    for to in (tmp_path / "out", None):
        with pytest.raises(RestoreError, match=r"nothing matches in commit \w{10}, nor among "
                                               "the files there now"):
            restore(config, RestoreOptions(at="HEAD", to=to, paths=("zzz",), delete=True,
                                           dry_run=True), now=clock)


def test_a_files_own_path_in_its_source_picks_it(config: Config, vault: VaultRepo, clock: Clock,
                                                 workspace: Path, tmp_path: Path) -> None:
    """`--path ~/agent/MEMORY.md` (the path a user has at hand) was read as a gitignore
    pattern inside each source and matched nothing; `/MEMORY.md` keeps gitignore's meaning."""
    sync(config, now=clock)
    for pattern, want in ((str(workspace / "MEMORY.md"), ["agent/MEMORY.md"]),
                          (str(workspace / "memory") + "/", ["agent/memory/2026-11-20.md"]),
                          ("/MEMORY.md", ["agent/MEMORY.md"])):
        result = restore(config, RestoreOptions(at="HEAD", to=tmp_path / "out",
                                                paths=(pattern,), dry_run=True), now=clock)
        assert [a.path for a in result.plan.actions] == want, pattern


@pytest.mark.parametrize("name", ["..", "../victim", "a/b", ""])
def test_source_must_be_a_source_name(config: Config, vault: VaultRepo, clock: Clock,
                                      tmp_path: Path, name: str) -> None:
    """Before: `--source .. --to DIR --delete` was refused as "unsafe path in the vault:
    '../victim/file'", which says nothing about the option given."""
    sync(config, now=clock)
    with pytest.raises(UsageError, match=f"^--source {re.escape(repr(name))}: not a source "
                                         "name"):
        restore(config, RestoreOptions(at="HEAD", to=tmp_path / "out", sources=(name,),
                                       delete=True, dry_run=True), now=clock)


def test_files_the_config_now_excludes_are_left_out_of_a_live_restore(
        config_file: Path, vault: VaultRepo, clock: Clock, workspace: Path,
        tmp_path: Path) -> None:
    """Before: a restore wrote back into the source a file the config had come to exclude;
    the vault no longer tracked it, and the printed undo (its --delete walks with the
    config's patterns) left it there."""
    (workspace / "x.tmp").write_text("scratch\n")
    config = load_config(config_file)
    sync(config, now=clock)
    config_file.write_text(config_file.read_text() + 'exclude = ["*.tmp"]\n')
    config = load_config(config_file)
    (workspace / "x.tmp").unlink()
    (workspace / "MEMORY.md").write_text("# changed\n")
    clock.tick()
    sync(config, now=clock)
    result = restore(config, RestoreOptions(at="HEAD~1"), now=clock)
    assert result.plan.left_out == ("agent/x.tmp",)
    assert not (workspace / "x.tmp").exists() and "prefers tea" in (
        workspace / "MEMORY.md").read_text()
    with pytest.raises(RestoreError, match=r"^agent/x.tmp: excluded by the config now$"):
        restore(config, RestoreOptions(at="HEAD~1", paths=("x.tmp",)), now=clock)
    restore(config, RestoreOptions(at="HEAD~1", paths=("x.tmp",), to=tmp_path / "out"),
            now=clock)
    assert (tmp_path / "out" / "agent" / "x.tmp").read_text() == "scratch\n"
    proc = run_cli("restore", "--at", "HEAD~1", "--dry-run", "--json", "--config",
                   str(config_file))
    assert json.loads(proc.stdout)["left_out"] == ["agent/x.tmp"], proc.stderr


def _renamed_source(tmp_path: Path, clock: Clock, extra: str = "") -> tuple[Path, Path, Path]:
    """Sources a and b synced, a changed and synced, then b renamed to bee and synced: the vault
    keeps b's files (sync takes configured sources only). Returns config file, a's and b's
    folders."""
    a, b = tmp_path / "src" / "a", tmp_path / "src" / "b"
    a.mkdir(parents=True)
    b.mkdir()
    config_file = write_config(tmp_path / "vault.toml", {"a": a, "b": b}, extra=extra)
    config = load_config(config_file)
    VaultRepo.init(config.vault.path, config.vault.branch)
    (a / "n.md").write_text("a1\n")
    (b / "m.md").write_text("b1\n")
    sync(config, now=clock)
    (a / "n.md").write_text("a2\n")
    clock.tick()
    sync(config, now=clock)
    config_file.write_text(config_file.read_text().replace('name = "b"', 'name = "bee"'))
    clock.tick()
    sync(load_config(config_file), now=clock)
    return config_file, a, b


def test_files_of_a_source_gone_from_the_config_are_left_out_not_a_refusal(
        tmp_path: Path, clock: Clock) -> None:
    """Before: once a source was renamed (or removed) in vault.toml, every restore into the
    live sources was refused ("b/m.md: its source is not in the config"), also for the
    sources still configured; only --source a got through."""
    config_file, a, b = _renamed_source(tmp_path, clock)
    config = load_config(config_file)
    prefix = "" if config.vault.layout == "{source}" else "testhost/"
    assert git(config.vault.path, "ls-tree", "-r", "--name-only", "HEAD").split() == [
        f"{prefix}a/n.md", f"{prefix}b/m.md", f"{prefix}bee/m.md"]
    (b / "m.md").write_text("b live\n")  # (bee's file now: the restore must not touch it)
    why = (f"{prefix}b/m.md", "its source 'b' is not in the config")
    dry = restore(config, RestoreOptions(at="HEAD~2", dry_run=True), now=clock)
    assert dry.plan.left_out_why == (why,)
    result = restore(config, RestoreOptions(at="HEAD~2"), now=clock)
    assert [(x.action, x.path) for x in result.plan.actions] == [
        ("overwrite", f"{prefix}a/n.md")] == [(x.action, x.path) for x in dry.plan.actions]
    assert result.plan.left_out_why == (why,)
    assert (a / "n.md").read_text() == "a1\n" and (b / "m.md").read_text() == "b live\n"
    # The undo it describes puts a back, and nothing else
    assert result.undo_commit and result.undo_sources == ("a",)
    restore(config, RestoreOptions(at=result.undo_commit, sources=result.undo_sources,
                                   delete=True), now=clock)
    assert (a / "n.md").read_text() == "a2\n" and (b / "m.md").read_text() == "b live\n"
    # Asked for by name, or by a pattern that takes only its files: a refusal that says --to
    with pytest.raises(UsageError, match="^no source named 'b' in the config$"):
        restore(config, RestoreOptions(at="HEAD~2", sources=("b",)), now=clock)
    for delete in (False, True):
        with pytest.raises(RestoreError, match=f"^{prefix}b/m.md: its source 'b' is not in "
                                               "the config$") as err:
            restore(config, RestoreOptions(at="HEAD~2", paths=(f"{prefix}b/*",),
                                           delete=delete), now=clock)
        assert err.value.hint == "restore elsewhere with --to DIR"
    # --to DIR restores every source of the commit, configured or not
    out = tmp_path / "out"
    restore(config, RestoreOptions(at=result.undo_commit, to=out), now=clock)
    assert {p: (out / p).read_text() for p in tree_digest(out)} == {
        f"{prefix}a/n.md": "a2\n", f"{prefix}b/m.md": "b1\n", f"{prefix}bee/m.md": "b1\n"}


def test_the_cli_restores_the_configured_sources_when_one_is_gone(tmp_path: Path,
                                                                  clock: Clock) -> None:
    """The QA case, through the CLI: with source b renamed, and then removed, a full restore
    exits 0, lists b's file as left out, and --dry-run --json says the same as the run."""
    config_file, a, b = _renamed_source(tmp_path, clock)
    for step in ("renamed", "removed"):
        if step == "removed":
            text = config_file.read_text()
            config_file.write_text(text[:text.index("[[sources]]\nname = \"bee\"")])
            assert [s.name for s in load_config(config_file).sources] == ["a"]
        args = ("restore", "--at", "HEAD~2", "--config", str(config_file))
        dry = run_cli(*args, "--dry-run", "--json")
        assert dry.returncode == 0, dry.stderr
        real = run_cli(*args, "--yes", "--json")
        assert real.returncode == 0, real.stderr
        for doc in (json.loads(dry.stdout), json.loads(real.stdout)):
            assert doc["left_out"] == ["b/m.md"], step
            assert doc["left_out_reasons"] == ["its source 'b' is not in the config"], step
            assert [(x["action"], x["path"]) for x in doc["actions"]] == [
                ("overwrite", "a/n.md")], step
        text = run_cli(*args, "--dry-run").stdout
        assert "Left out (its source 'b' is not in the config; --to DIR restores it): b/m.md" \
            in text, text
        assert (a / "n.md").read_text() == "a1\n" and (b / "m.md").read_text() == "b1\n"
        (a / "n.md").write_text("a2\n")
        refused = run_cli(*args, "--path", "b/m.md", "--yes")
        assert refused.returncode == 1
        assert refused.stderr.splitlines()[0] == "Error: b/m.md: its source 'b' is not in " \
                                                 "the config"


def test_with_a_host_layout_a_gone_source_is_left_out_by_its_name(tmp_path: Path,
                                                                 clock: Clock) -> None:
    config_file, a, _b = _renamed_source(tmp_path, clock, extra='layout = "{host}/{source}"')
    config = load_config(config_file)
    result = restore(config, RestoreOptions(at="HEAD~2"), now=clock)
    assert result.plan.left_out_why == (("testhost/b/m.md",
                                         "its source 'b' is not in the config"),)
    assert (a / "n.md").read_text() == "a1\n"


def test_a_folder_where_the_commit_has_a_file_is_kept_aside_and_said_so(
        tmp_path: Path, workspace: Path) -> None:
    """notes was a file, then became a folder: the restore keeps the folder aside whole and
    says it is a folder (before: "not in the vault", though the safety sync holds its files),
    and its undo brings the folder back."""
    config = write_config(tmp_path / "vault.toml", {"agent": workspace})
    assert run_cli("init", "--config", str(config)).returncode == 0
    (workspace / "notes").write_text("a file\n")
    assert run_cli("sync", "-q", "--config", str(config)).returncode == 0
    then = git(tmp_path / "memory-vault", "rev-parse", "HEAD").strip()
    (workspace / "notes").unlink()
    (workspace / "notes").mkdir()
    (workspace / "notes" / "a.md").write_text("a\n")
    proc = run_cli("restore", "--at", then, "--yes", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    [kept] = [line for line in proc.stdout.splitlines() if line.startswith("Kept aside")]
    aside = kept.split(": ", 1)[1]
    assert kept.startswith("Kept aside (a folder where the restore puts a file): "), kept
    assert (Path(aside) / "a.md").read_text() == "a\n"
    assert (workspace / "notes").read_text() == "a file\n"
    assert git(tmp_path / "memory-vault", "show", "HEAD:agent/notes/a.md") == "a\n"
    [undo] = [line for line in proc.stdout.splitlines() if line.startswith("Undo with: ")]
    args = undo.split(": ", 1)[1].split()[1:]
    assert run_cli(*args).returncode == 0
    assert (workspace / "notes" / "a.md").read_text() == "a\n"


def test_a_large_restore_says_all_of_it_through_a_pipe(config: Config, vault: VaultRepo,
                                                       clock: Clock, workspace: Path,
                                                       tmp_path: Path) -> None:
    # `vault restore` ends without tearing the interpreter down (entry._end_now): its whole
    # output still arrives, and its exit code is the one it chose.
    many = workspace / "many"
    many.mkdir()
    for i in range(2000):
        (many / f"{i:04}.md").write_text(f"note {i}\n")
    sync(config, now=clock)
    done = run_cli("restore", "--at", "HEAD", "--to", str(tmp_path / "out"), "--json",
                   "--config", str(config.file))
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["counts"]["create"] == len(doc["actions"]) == len(vault.files(vault.head_id()))
    assert sorted(os.listdir(tmp_path / "out" / "agent" / "many")) == \
        [f"{i:04}.md" for i in range(2000)]
    refused = run_cli("restore", "--at", "HEAD", "--to", str(tmp_path / "out"), "--path",
                      "nothing/*", "--config", str(config.file))
    assert refused.returncode == 1 and refused.stderr.startswith("Error: nothing matches")


def _bracketed_names(tmp_path: Path) -> tuple[Path, Path]:
    """Source a with `[ab].txt`, `a.txt` and `f [1].md`, `f 1.md` synced twice (changed)."""
    a = tmp_path / "a"
    a.mkdir()
    config = write_config(tmp_path / "vault.toml", {"a": a})
    assert run_cli("init", "--config", str(config)).returncode == 0
    for name in ("[ab].txt", "a.txt", "f [1].md", "f 1.md"):
        (a / name).write_text(f"old {name}\n")
    assert run_cli("sync", "-q", "--config", str(config)).returncode == 0
    for name in ("[ab].txt", "a.txt", "f [1].md", "f 1.md"):
        (a / name).write_text(f"new {name}\n")
    (a / "[ab].txt").unlink()  # gone now: restored from the commit
    assert run_cli("sync", "-q", "--config", str(config)).returncode == 0
    return config, a


def test_an_absolute_path_is_that_file_not_a_pattern(tmp_path: Path) -> None:
    """--path "$PWD/a/[ab].txt" is that file (before: the glob [ab].txt, which matched a.txt:
    --delete deleted a.txt and never brought [ab].txt back)."""
    config, a = _bracketed_names(tmp_path)
    proc = run_cli("restore", "--at", "HEAD~1", "--path", str(a / "[ab].txt"), "--delete",
                   "--yes", "--json", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    assert [(x["action"], x["path"]) for x in json.loads(proc.stdout)["actions"]] == \
        [("create", "a/[ab].txt")]
    assert (a / "[ab].txt").read_text() == "old [ab].txt\n"
    assert (a / "a.txt").read_text() == "new a.txt\n"
    spaced = run_cli("restore", "--at", "HEAD~1", "--path", str(a / "f [1].md"), "--yes",
                     "--json", "--config", str(config))
    assert spaced.returncode == 0, spaced.stderr
    assert [x["path"] for x in json.loads(spaced.stdout)["actions"]] == ["a/f [1].md"]
    assert (a / "f [1].md").read_text() == "old f [1].md\n"
    assert (a / "f 1.md").read_text() == "new f 1.md\n"
    # A folder's path keeps its trailing slash (all below it), and a vault path or a path in
    # the source stays a pattern.
    (a / "[x]").mkdir()
    (a / "[x]" / "n.md").write_text("n\n")
    (a / "x").mkdir()
    (a / "x" / "n.md").write_text("x\n")
    assert run_cli("sync", "-q", "--config", str(config)).returncode == 0
    folder = run_cli("restore", "--at", "HEAD", "--path", str(a / "[x]") + "/", "--to",
                     str(tmp_path / "out"), "--json", "--config", str(config))
    assert folder.returncode == 0, folder.stderr
    assert [x["path"] for x in json.loads(folder.stdout)["actions"]] == ["a/[x]/n.md"]
    glob = run_cli("restore", "--at", "HEAD", "--path", "a/[x]/*", "--to",
                   str(tmp_path / "out2"), "--json", "--config", str(config))
    assert [x["path"] for x in json.loads(glob.stdout)["actions"]] == ["a/x/n.md"]

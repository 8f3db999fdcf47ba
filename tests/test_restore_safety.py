"""Restores into the live sources: what they replace is kept, undo is exact, nothing else moves.

Each test here is a case a review found where a restore lost data, touched what it should not,
or refused the very disaster it exists for.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import apsw
import pytest

from conftest import Clock, git, make_sqlite, rows, run_cli, write_config
import vault.restore as restore_module
from vault.config import Config, load_config
from vault.detect import RACY_MARGIN_NS
from vault.errors import UsageError
from vault.pathsafe import UnsafePathError
from vault.repo import VaultRepo
from vault.restore import PartialRestoreError, RestoreError, RestoreOptions, restore
from vault.sources import DUMP_HEADER
from vault.sync import SyncOptions, sync


def asides(folder: Path, name: str) -> list[Path]:
    return sorted(folder.glob(f"{name}.pre-restore-*"))


def test_a_partial_jsonl_line_is_kept_aside(config: Config, vault: VaultRepo, clock: Clock,
                                            workspace: Path) -> None:
    transcript = workspace / "sessions" / "s1.jsonl"
    sync(config, now=clock)
    with transcript.open("a") as f:
        f.write('{"type": "message", "text": "PARTIAL-LINE-IMPORTANT"')  # not ended yet
    clock.tick()
    result = restore(config, RestoreOptions(at="HEAD~0", paths=("sessions/s1.jsonl",)), now=clock)
    # The safety sync stored the whole lines only: the live file is not in the vault as it is.
    [action] = [a for a in result.plan.actions if a.path == "agent/sessions/s1.jsonl"]
    assert action.action == "overwrite" and action.set_aside
    [aside] = asides(transcript.parent, "s1.jsonl")
    assert b"PARTIAL-LINE-IMPORTANT" in aside.read_bytes()
    assert b"PARTIAL-LINE" not in transcript.read_bytes()


def test_a_file_stored_redacted_is_kept_aside(tmp_path: Path, workspace: Path,
                                              clock: Clock) -> None:
    config = load_config(write_config(tmp_path / "redact.toml", {"agent": workspace},
                                      extra='[secrets]\npolicy = "redact"'))
    VaultRepo.init(config.vault.path, config.vault.branch)
    sync(config, now=clock)
    token = "ghp_" + "".join(secrets.choice("abcdefghijkLMNOPQRS0123456789") for _ in range(36))
    (workspace / "MEMORY.md").write_text(f"# Memory\n\n- deploy token {token}\n")
    clock.tick()
    result = restore(config, RestoreOptions(at="HEAD", paths=("MEMORY.md",)), now=clock)
    assert result.safety_sync is not None and result.safety_sync.redacted
    [aside] = asides(workspace, "MEMORY.md")
    assert token in aside.read_text()  # the only copy of it: the vault has [REDACTED:...]
    assert "prefers tea" in (workspace / "MEMORY.md").read_text()


def hold_open(db: Path) -> subprocess.Popen[str]:
    """Another process with the database open (a live agent), until killed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys, time\n"
         "c = sqlite3.connect(sys.argv[1]); c.execute('SELECT count(*) FROM memories')\n"
         "print('open', flush=True); time.sleep(60)\n", str(db)],
        stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "open\n"
    return proc


def test_delete_refuses_an_open_database_before_changing_anything(
        config: Config, vault: VaultRepo, clock: Clock, workspace: Path) -> None:
    db = workspace / "memory.db"
    moved = workspace.parent / "db-away"
    moved.mkdir()
    shutil.move(db, moved / "memory.db")
    before = sync(config, now=clock).commit  # a commit without the database
    shutil.move(moved / "memory.db", db)
    (workspace / "new-note.md").write_text("written since\n")
    clock.tick()
    sync(config, now=clock)
    proc = hold_open(db)
    try:
        clock.tick()
        assert before is not None
        with pytest.raises(RestoreError, match="is open in another process"):
            restore(config, RestoreOptions(at=before, delete=True), now=clock)
    finally:
        proc.kill()
        proc.wait()
    assert db.exists() and (workspace / "new-note.md").exists()  # nothing was deleted


def test_a_restore_that_fails_part_way_says_how_to_undo(config: Config, vault: VaultRepo,
                                                        clock: Clock, workspace: Path) -> None:
    sync(config, now=clock)
    # A vault commit whose database dump is damaged, and whose MEMORY.md is older.
    head = vault.head_id()
    bad = vault.commit(head, {
        "agent/memory.db": (vault.write_blob(DUMP_HEADER + b"this is not sql;\n"), 0o100644),
        "agent/MEMORY.md": (vault.write_blob(b"# Memory\n\n- old\n"), 0o100644)},
        "crafted", clock.tick(), "testhost")
    (workspace / "MEMORY.md").write_text("# Memory\n\n- unsynced edit\n")
    clock.tick()
    proc = run_cli("restore", "--at", bad, "--yes", "--config", str(config.file))
    assert proc.returncode == 1
    error, hint = proc.stderr.strip().splitlines()[-2:]
    assert "bad dump" in error and "(part of the restore was carried out)" in error
    assert (workspace / "MEMORY.md").read_text() == "# Memory\n\n- old\n"  # the part done
    undo = hint.split("undo what was done with: ", 1)[1]
    assert " --source agent " in f" {undo} " and "--delete --yes" in undo
    args = undo.split()[1:]  # without the leading "vault"
    assert run_cli(*args).returncode == 0
    assert (workspace / "MEMORY.md").read_text() == "# Memory\n\n- unsynced edit\n"


def test_restore_to_a_folder_deletes_only_in_the_sources_it_restores(
        config: Config, vault: VaultRepo, clock: Clock, tmp_path: Path) -> None:
    sync(config, now=clock)
    out = tmp_path / "out"
    (out / "docs").mkdir(parents=True)
    (out / "docs" / "thesis.txt").write_text("mine\n")
    (out / "unrelated.txt").write_text("mine too\n")
    (out / ".git").mkdir()
    (out / ".git" / "config").write_text("[core]\n")
    (out / "agent").mkdir()
    (out / "agent" / "extra.md").write_text("not at WHEN\n")
    result = restore(config, RestoreOptions(at="HEAD", to=out, delete=True), now=clock)
    assert [a.path for a in result.plan.actions if a.action == "delete"] == ["agent/extra.md"]
    assert not (out / "agent" / "extra.md").exists()
    assert (out / "docs" / "thesis.txt").exists() and (out / "unrelated.txt").exists()
    assert (out / ".git" / "config").exists()


def test_restore_repairs_a_mass_deletion(config: Config, vault: VaultRepo, clock: Clock,
                                         workspace: Path) -> None:
    sync(config, now=clock)
    kept = (workspace / "MEMORY.md").read_bytes()
    for name in ("memory", "sessions"):
        shutil.rmtree(workspace / name)
    for name in ("memory.json", "memory.db"):
        (workspace / name).unlink()
    (workspace / "MEMORY.md").write_text("junk\n")
    clock.tick()
    result = restore(config, RestoreOptions(at="HEAD"), now=clock)
    assert result.safety_sync is not None and result.safety_sync.deleted  # recorded, allowed
    assert (workspace / "MEMORY.md").read_bytes() == kept
    assert (workspace / "sessions" / "s1.jsonl").exists() and (workspace / "memory.db").exists()


def test_restore_brings_back_a_source_folder_that_is_gone(config: Config, vault: VaultRepo,
                                                          clock: Clock, workspace: Path) -> None:
    sync(config, now=clock)
    shutil.rmtree(workspace)
    clock.tick()
    restore(config, RestoreOptions(at="HEAD", delete=True), now=clock)
    assert (workspace / "MEMORY.md").exists() and (workspace / "memory.db").exists()


def with_another_source(tmp_path: Path, workspace: Path, clock: Clock, name: str,
                        text: str) -> tuple[Config, Path]:
    """A vault of two sources, agent (the workspace) and other (one file), synced once."""
    other = tmp_path / "other"
    other.mkdir()
    (other / name).write_text(text)
    config = load_config(write_config(tmp_path / "two.toml", {"agent": workspace,
                                                              "other": other}))
    VaultRepo.init(config.vault.path, config.vault.branch)
    sync(config, now=clock)
    return config, other


def test_undo_puts_back_exactly_the_state_before(tmp_path: Path, workspace: Path,
                                                 clock: Clock) -> None:
    config, other = with_another_source(tmp_path, workspace, clock, "notes.md", "synced\n")
    (workspace / "memory" / "2026-11-20.md").unlink()  # deleted, not synced
    (workspace / "fresh.json").write_text('{"a": 1}\n')  # new, not synced
    (other / "draft.md").write_text("new in another source, not synced\n")
    clock.tick()
    result = restore(config, RestoreOptions(at="HEAD"), now=clock)  # only creates
    assert [a.action for a in result.plan.actions if a.action != "unchanged"] == ["create"]
    assert result.undo_sources == ("agent",)
    assert (workspace / "memory" / "2026-11-20.md").exists()
    clock.tick()
    assert result.undo_commit is not None
    restore(config, RestoreOptions(at=result.undo_commit, sources=result.undo_sources,
                                   delete=True), now=clock)
    assert not (workspace / "memory" / "2026-11-20.md").exists()  # as before the restore
    assert (workspace / "fresh.json").read_text() == '{"a": 1}\n'
    assert (other / "draft.md").exists()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_modes_are_kept(config: Config, vault: VaultRepo, clock: Clock, workspace: Path,
                        tmp_path: Path) -> None:
    (workspace / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (workspace / "run.sh").chmod(0o755)
    first = sync(config, now=clock).commit
    assert first is not None
    (workspace / "MEMORY.md").write_text("# Memory\n\n- changed\n")
    (workspace / "MEMORY.md").chmod(0o600)  # private memory stays private
    db = apsw.Connection(str(workspace / "memory.db"))
    db.execute("DELETE FROM memories WHERE id = 1")
    db.close()
    (workspace / "memory.db").chmod(0o640)
    (workspace / "run.sh").chmod(0o644)  # lost its executable bit: same bytes
    clock.tick()
    sync(config, now=clock)
    clock.tick()
    result = restore(config, RestoreOptions(at=first), now=clock)
    verbs = {a.path: a.action for a in result.plan.actions}
    assert verbs["agent/run.sh"] == "overwrite"
    assert mode(workspace / "MEMORY.md") == 0o600
    assert mode(workspace / "memory.db") == 0o640
    assert mode(workspace / "run.sh") == 0o755
    out = tmp_path / "out"
    restore(config, RestoreOptions(at=first, to=out), now=clock)
    assert mode(out / "agent" / "memory.db") == 0o644  # as new files are, not the build's 0600
    assert mode(out / "agent" / "run.sh") == 0o755


def test_a_new_database_is_not_left_private(config: Config, vault: VaultRepo, clock: Clock,
                                            workspace: Path) -> None:
    make_sqlite(workspace / "second.db")
    sync(config, now=clock)
    (workspace / "second.db").unlink()
    clock.tick()
    restore(config, RestoreOptions(at="HEAD", paths=("second.db",)), now=clock)
    assert mode(workspace / "second.db") == 0o644
    assert os.access(workspace / "second.db", os.R_OK)


def test_a_database_stored_redacted_long_ago_is_kept_aside(tmp_path: Path, workspace: Path,
                                                           clock: Clock) -> None:
    # The safety sync does not read a database its stat proves unchanged: whether the vault
    # holds it exactly must come from the stored dump itself.
    config = load_config(write_config(tmp_path / "redact.toml", {"agent": workspace},
                                      extra='[secrets]\npolicy = "redact"'))
    VaultRepo.init(config.vault.path, config.vault.branch)
    first = sync(config, now=clock).commit
    token = "ghp_" + "".join(secrets.choice("abcdefghijkLMNOPQRS0123456789") for _ in range(36))
    db = apsw.Connection(str(workspace / "memory.db"))
    db.execute("INSERT INTO memories(content) VALUES(?)", (f"deploy token {token}",))
    db.close()
    time.sleep(RACY_MARGIN_NS / 1e9 + 0.1)  # so that its stat proves it from now on
    clock.tick()
    assert sync(config, now=clock).redacted
    clock.tick(60)
    assert first is not None
    result = restore(config, RestoreOptions(at=first, paths=("memory.db",)), now=clock)
    assert result.safety_sync is not None and not result.safety_sync.modified  # not read again
    [aside] = asides(workspace, "memory.db")
    rows = apsw.Connection(str(aside)).execute("SELECT content FROM memories").fetchall()
    assert (f"deploy token {token}",) in rows


def test_what_is_written_while_the_question_waits_is_kept(config: Config, vault: VaultRepo,
                                                          clock: Clock, workspace: Path) -> None:
    first = sync(config, now=clock).commit
    (workspace / "MEMORY.md").write_text("# Memory\n\n- v2\n")
    clock.tick()
    sync(config, now=clock)

    def confirm(plan: object) -> bool:  # the agent writes while the user reads the plan
        (workspace / "MEMORY.md").write_text("# Memory\n\n- v3, written during the question\n")
        (workspace / "memory" / "2026-11-20.md").write_text("changed meanwhile\n")
        return True

    clock.tick()
    assert first is not None
    result = restore(config, RestoreOptions(at=first), now=clock, confirm=confirm)
    assert result.undo_commit is not None
    stored = VaultRepo(config.vault.path, "main")
    assert b"v3, written during the question" in stored.read_blob(
        stored.files(result.undo_commit)["agent/MEMORY.md"][0])
    verbs = {a.path: a.action for a in result.plan.actions}
    assert verbs["agent/memory/2026-11-20.md"] == "overwrite"  # planned again after the question
    assert "prefers tea" in (workspace / "MEMORY.md").read_text()


def test_syncs_go_on_while_the_question_waits(config: Config, vault: VaultRepo, clock: Clock,
                                              workspace: Path, config_file: Path) -> None:
    """The question was asked under the sync lock: while nobody answered, every cron or hook
    sync exited 11 ("it ends by itself"), and memory went unrecorded."""
    first = sync(config, now=clock).commit
    (workspace / "MEMORY.md").write_text("# Memory\n\n- v2\n")
    clock.tick()
    sync(config, now=clock)
    seen: list[subprocess.CompletedProcess[str]] = []

    def confirm(plan: object) -> bool:  # cron's sync runs while the user reads the plan
        (workspace / "memory" / "2026-11-22.md").write_text("written during the question\n")
        seen.append(run_cli("sync", "--config", str(config_file)))
        return True

    assert first is not None
    clock.tick()
    result = restore(config, RestoreOptions(at=first), now=clock, confirm=confirm)
    assert seen[0].returncode == 0, seen[0].stderr
    assert result.undo_commit is not None
    assert "agent/memory/2026-11-22.md" in vault.files(result.undo_commit)
    assert "prefers tea" in (workspace / "MEMORY.md").read_text()


def test_an_open_damaged_database_is_refused_before_anything_changes(
        config: Config, vault: VaultRepo, clock: Clock, workspace: Path) -> None:
    sync(config, now=clock)
    (workspace / "MEMORY.md").write_text("# Memory\n\n- edited\n")
    (workspace / "new.md").write_text("not in the vault\n")
    (workspace / "memory.db").write_bytes(os.urandom(8192))  # the agent's database, damaged
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                               "f = open(sys.argv[1], 'rb'); print('open', flush=True)\n"
                               "time.sleep(60)\n", str(workspace / "memory.db")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        head = vault.head_id()
        clock.tick()
        with pytest.raises(RestoreError, match="is open in another process") as err:
            restore(config, RestoreOptions(at="HEAD", delete=True), now=clock)
        assert not isinstance(err.value, PartialRestoreError)
    finally:
        holder.kill()
        holder.wait()
    assert vault.head_id() == head  # not even the safety sync ran
    assert (workspace / "new.md").exists()
    assert (workspace / "MEMORY.md").read_text() == "# Memory\n\n- edited\n"


def test_restore_to_a_folder_with_host_folders_deletes_only_there(
        tmp_path: Path, workspace: Path, clock: Clock) -> None:
    config = load_config(write_config(tmp_path / "hosts.toml", {"notes": workspace},
                                      extra='layout = "{host}/{source}"'))
    VaultRepo.init(config.vault.path, config.vault.branch)
    sync(config, now=clock)
    out = tmp_path / "out"
    (out / "notes").mkdir(parents=True)
    (out / "notes" / "mine.txt").write_text("precious\n")
    (out / "testhost" / "notes").mkdir(parents=True)
    (out / "testhost" / "notes" / "stale.md").write_text("not at WHEN\n")
    for sources in ((), ("notes",)):
        result = restore(config, RestoreOptions(at="HEAD", to=out, sources=sources,
                                                delete=True), now=clock)
        assert (out / "notes" / "mine.txt").exists()
        assert not (out / "testhost" / "notes" / "stale.md").exists()
        assert (out / "testhost" / "notes" / "MEMORY.md").exists()
        (out / "testhost" / "notes" / "stale.md").write_text("not at WHEN\n")
        assert [a.path for a in result.plan.actions if a.action == "delete"] == [
            "testhost/notes/stale.md"]


def test_the_undo_keeps_what_was_kept_aside(config: Config, vault: VaultRepo, clock: Clock,
                                            workspace: Path) -> None:
    sync(config, now=clock)
    (workspace / "memory.json").write_text('{"v": 2, "x": "unsaved')  # half-written
    clock.tick()
    result = restore(config, RestoreOptions(at="HEAD"), now=clock)
    [aside] = asides(workspace, "memory.json")
    clock.tick()
    assert result.undo_commit is not None
    undo = restore(config, RestoreOptions(at=result.undo_commit, sources=result.undo_sources,
                                          delete=True), now=clock)
    assert aside.exists()  # never deleted by a restore, the undo's --delete included
    assert all(a.path != f"agent/{aside.name}" for a in undo.plan.actions)


def test_the_undo_leaves_out_a_source_whose_folder_was_gone(tmp_path: Path, workspace: Path,
                                                            clock: Clock) -> None:
    config, other = with_another_source(tmp_path, workspace, clock, "b.md", "b\n")
    shutil.rmtree(other)
    (workspace / "MEMORY.md").write_text("# Memory\n\n- edited\n")
    clock.tick()
    result = restore(config, RestoreOptions(at="HEAD"), now=clock)
    assert (other / "b.md").read_text() == "b\n"
    assert result.undo_sources == ("agent",) and result.new_sources == ("other",)
    shutil.rmtree(other)
    proc = run_cli("restore", "--at", "HEAD", "--source", "other", "--yes",
                   "--config", str(config.file))
    assert proc.returncode == 0, proc.stderr
    assert "(The undo leaves out other: its folder was not there before the restore; delete " \
        "it to go back.)" in proc.stdout
    assert "Undo with" not in proc.stdout  # nothing else was changed: nothing to undo


def test_a_folder_that_is_a_symlink_inside_the_source_is_not_written_through(
        config: Config, vault: VaultRepo, clock: Clock, workspace: Path) -> None:
    (workspace / "archive").mkdir()
    (workspace / "archive" / "a.md").write_text("archived\n")
    (workspace / "notes").mkdir()
    (workspace / "notes" / "a.md").write_text("a note\n")
    sync(config, now=clock)
    shutil.rmtree(workspace / "notes")
    (workspace / "notes").symlink_to("archive")  # sync skips it and keeps notes/a.md
    clock.tick()
    assert [s.path for s in sync(config, now=clock).skipped] == ["agent/notes"]
    clock.tick()
    with pytest.raises(UnsafePathError, match="symlink inside"):
        restore(config, RestoreOptions(at="HEAD"), now=clock)
    assert (workspace / "archive" / "a.md").read_text() == "archived\n"


def test_an_interrupted_restore_says_how_to_undo(config: Config, vault: VaultRepo,
                                                 clock: Clock, workspace: Path) -> None:
    first = sync(config, now=clock).commit
    (workspace / "MEMORY.md").write_text("# Memory\n\n- edited\n")
    (workspace / "memory.json").write_text('[{"id": 1, "content": "edited"}]')
    clock.tick()
    sync(config, now=clock)

    def interrupt(done: int, total: int) -> None:
        if done == total:
            raise KeyboardInterrupt  # Ctrl-C once files are in place

    clock.tick()
    assert first is not None
    with pytest.raises(PartialRestoreError, match="interrupted") as err:
        restore(config, RestoreOptions(at=first), now=clock, progress=interrupt)
    assert err.value.exit_code == 130 and err.value.undo_sources == ("agent",)


def test_a_corrupt_database_is_kept_aside_when_another_source_changes_during_the_question(
        tmp_path: Path, clock: Clock) -> None:
    s1, s2 = tmp_path / "s1", tmp_path / "s2"
    s1.mkdir()
    s2.mkdir()
    db = apsw.Connection(str(s1 / "m.db"))
    db.execute("CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)")
    with db:
        for i in range(400):
            db.execute("INSERT INTO notes(body) VALUES(?)", (f"note {i} " * 10,))
    db.close()
    (s2 / "x.md").write_text("x\n")
    config = load_config(write_config(tmp_path / "two.toml", {"s1": s1, "s2": s2}))
    VaultRepo.init(config.vault.path, config.vault.branch)
    sync(config, now=clock)
    damaged = bytearray((s1 / "m.db").read_bytes())
    damaged[4096 * 3 + 100:4096 * 3 + 300] = b"\xff" * 200
    (s1 / "m.db").write_bytes(bytes(damaged))

    def confirm(plan: object) -> bool:  # s2 changes while the question waits
        with (s2 / "x.md").open("a") as f:
            f.write("appended\n")
        return True

    clock.tick()
    result = restore(config, RestoreOptions(at="HEAD"), now=clock, confirm=confirm)
    assert result.undo_sources == ("s1", "s2")
    [aside] = asides(s1, "m.db")
    assert aside.read_bytes() == bytes(damaged)  # the only copy of what was there


def test_restore_to_a_folder_that_is_a_live_source_is_refused(config: Config, vault: VaultRepo,
                                                              clock: Clock,
                                                              workspace: Path) -> None:
    sync(config, now=clock)
    (workspace / "MEMORY.md").write_text("# Memory\n\n- precious, unsynced\n")
    for to in (workspace.parent, workspace, workspace / "memory"):
        with pytest.raises(UsageError, match="would write into the live source 'agent'"):
            restore(config, RestoreOptions(at="HEAD", to=to, delete=True), now=clock)
    assert "precious" in (workspace / "MEMORY.md").read_text()


def test_restore_to_the_vaults_own_repository_is_refused(config: Config, vault: VaultRepo,
                                                         clock: Clock) -> None:
    """It wrote <repository>/agent/... into the bare repository (a source named `refs` or
    `objects` would have written into git's own files)."""
    sync(config, now=clock)
    for to in (vault.path, vault.path / "refs", vault.path / "objects" / ".." / "x"):
        with pytest.raises(UsageError, match="would write into the vault's own repository"):
            restore(config, RestoreOptions(at="HEAD", to=to, paths=("MEMORY.md",)), now=clock)
    assert not (vault.path / "agent").exists() and not (vault.path / "x").exists()
    assert git(vault.path, "fsck", "--no-progress") == ""


def test_a_kept_aside_name_is_never_reused(config: Config, vault: VaultRepo, clock: Clock,
                                          workspace: Path) -> None:
    sync(config, now=clock)
    clock.tick()
    stamp = clock.now.strftime("%Y-%m-%dT%H%M%SZ")  # the safety sync's time, as names carry it
    older = workspace / f"memory.json.pre-restore-{stamp}"
    older.write_text("kept by an earlier restore\n")
    (workspace / "memory.json").write_text('{"half": ')
    result = restore(config, RestoreOptions(at="HEAD", paths=("memory.json",)), now=clock)
    [action] = [a for a in result.plan.actions if a.path == "agent/memory.json"]
    assert action.set_aside == f"{older}-2"
    assert older.read_text() == "kept by an earlier restore\n"
    assert Path(f"{older}-2").read_text() == '{"half": '


def changed_since(config: Config, clock: Clock, path: Path, text: str,
                  append: bool = False) -> str:
    """Sync, write (or append) text to path, sync again: the first commit."""
    first = sync(config, now=clock).commit
    assert first is not None
    with path.open("a" if append else "w") as f:
        f.write(text)
    clock.tick()
    sync(config, now=clock)
    return first


def test_a_file_written_after_the_check_is_kept_aside(config: Config, vault: VaultRepo,
                                                      clock: Clock, workspace: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    transcript = workspace / "sessions" / "s1.jsonl"
    first = changed_since(config, clock, transcript,
                          '{"type": "message", "text": "second"}\n', append=True)
    flushed = restore_module.sync_filesystem

    def agent_appends_meanwhile(path: Path) -> None:  # between the check and the rename
        with transcript.open("a") as f:
            f.write('{"type": "message", "text": "LATE LINE"}\n')
        flushed(path)

    monkeypatch.setattr(restore_module, "sync_filesystem", agent_appends_meanwhile)
    clock.tick()
    assert first is not None
    result = restore(config, RestoreOptions(at=first, paths=("sessions/s1.jsonl",)), now=clock)
    [action] = [a for a in result.plan.actions if a.path == "agent/sessions/s1.jsonl"]
    assert action.set_aside
    assert b"LATE LINE" in Path(action.set_aside).read_bytes()


LATE_WRITER = """import apsw, os, sys
db = apsw.Connection(sys.argv[1])
db.execute("INSERT INTO memories(content) VALUES('LATE WRITE')")
if sys.argv[2] == "crash":
    os._exit(0)  # no close, no checkpoint: the row is in the -wal only
db.close()
"""


def database_changed_since(config: Config, clock: Clock, db_path: Path) -> str:
    first = sync(config, now=clock).commit
    assert first is not None
    db = apsw.Connection(str(db_path))
    db.execute("DELETE FROM memories WHERE id = 1")
    db.close()
    clock.tick()
    sync(config, now=clock)
    return first


def late_rows(action: Any) -> list[str]:
    db = apsw.Connection(f"file:{action.set_aside}?mode=ro", flags=apsw.SQLITE_OPEN_URI
                         | apsw.SQLITE_OPEN_READONLY)
    return [r[0] for r in db.execute("SELECT content FROM memories WHERE content = 'LATE WRITE'")]


@pytest.mark.parametrize("how", ["close", "crash"])
def test_a_database_written_after_the_safety_sync_is_kept_aside(
        config: Config, vault: VaultRepo, clock: Clock, workspace: Path, how: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: a database counted as held by the vault whatever happened after the safety
    sync, so an agent's write between that sync and the check was replaced and lost."""
    first = database_changed_since(config, clock, workspace / "memory.db")
    check = restore_module._set_aside_uncaptured

    def agent_writes_after_the_sync(*args: Any) -> Any:
        subprocess.run([sys.executable, "-c", LATE_WRITER, str(workspace / "memory.db"), how],
                       check=True)
        return check(*args)

    monkeypatch.setattr(restore_module, "_set_aside_uncaptured", agent_writes_after_the_sync)
    clock.tick()
    result = restore(config, RestoreOptions(at=first, paths=("memory.db",)), now=clock)
    [action] = [a for a in result.plan.actions if a.path == "agent/memory.db"]
    assert action.set_aside and late_rows(action) == ["LATE WRITE"]


def test_a_database_write_that_reaches_only_its_wal_before_the_move_is_kept_aside(
        config: Config, vault: VaultRepo, clock: Clock, workspace: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: the last check before a database moves in compared the main file's stat only;
    a commit left in the -wal (the main file untouched) was deleted with the -wal."""
    first = database_changed_since(config, clock, workspace / "memory.db")
    flushed = restore_module.sync_filesystem
    wrote: list[bool] = []

    def agent_writes_before_the_move(path: Path) -> None:
        if not wrote:
            subprocess.run([sys.executable, "-c", LATE_WRITER, str(workspace / "memory.db"),
                            "crash"], check=True)
            wrote.append(True)
        flushed(path)

    monkeypatch.setattr(restore_module, "sync_filesystem", agent_writes_before_the_move)
    clock.tick()
    result = restore(config, RestoreOptions(at=first, paths=("memory.db",)), now=clock)
    assert wrote
    [action] = [a for a in result.plan.actions if a.path == "agent/memory.db"]
    assert action.set_aside and late_rows(action) == ["LATE WRITE"]


def test_a_file_another_process_has_open_is_moved_aside_not_replaced(
        config: Config, vault: VaultRepo, clock: Clock, workspace: Path) -> None:
    transcript = workspace / "sessions" / "s1.jsonl"
    first = changed_since(config, clock, transcript,
                          '{"type": "message", "text": "second"}\n', append=True)
    writer = subprocess.Popen(
        [sys.executable, "-c", "import sys\n"
         "f = open(sys.argv[1], 'a'); print('open', flush=True); sys.stdin.readline()\n"
         "f.write('{\"text\": \"written after the restore\"}\\n'); f.close()\n", str(transcript)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None and writer.stdin is not None
        assert writer.stdout.readline() == "open\n"
        clock.tick()
        assert first is not None
        result = restore(config, RestoreOptions(at=first, paths=("sessions/s1.jsonl",)),
                         now=clock)
        writer.stdin.write("\n")
        writer.stdin.flush()
        assert writer.wait(timeout=30) == 0
    finally:
        writer.kill()
    [action] = [a for a in result.plan.actions if a.path == "agent/sessions/s1.jsonl"]
    assert action.set_aside  # the writer's file, moved: what it writes next is not lost
    assert b"written after the restore" in Path(action.set_aside).read_bytes()


def test_path_patterns_name_vault_paths_or_paths_in_a_source(tmp_path: Path, clock: Clock,
                                                             workspace: Path) -> None:
    b = tmp_path / "b"
    (b / "agent").mkdir(parents=True)
    (b / "agent" / "MEMORY.md").write_text("b's folder named agent\n")
    config = load_config(write_config(tmp_path / "two.toml", {"agent": workspace, "b": b}))
    VaultRepo.init(config.vault.path, config.vault.branch)
    sync(config, now=clock)

    def chosen(*patterns: str) -> list[str]:
        plan = restore(config, RestoreOptions(at="HEAD", to=tmp_path / "out",
                                              paths=patterns, dry_run=True), now=clock).plan
        return [a.path for a in plan.actions]

    assert chosen("agent/MEMORY.md") == ["agent/MEMORY.md"]  # a vault path: source agent's
    assert chosen("b/agent/MEMORY.md") == ["b/agent/MEMORY.md"]
    assert chosen("MEMORY.md") == ["agent/MEMORY.md", "b/agent/MEMORY.md"]  # in any source


def test_a_failure_before_any_change_does_not_claim_a_partial_restore(
        config: Config, vault: VaultRepo, clock: Clock, tmp_path: Path) -> None:
    sync(config, now=clock)
    (tmp_path / "afile").write_text("a file where a folder goes\n")
    proc = run_cli("restore", "--at", "HEAD", "--to", str(tmp_path / "afile" / "x"),
                   "--config", str(config.file))
    assert proc.returncode == 1
    assert "part of" not in proc.stderr and "carried out" not in proc.stderr


def test_json_after_a_partial_restore(config: Config, vault: VaultRepo, clock: Clock,
                                      workspace: Path) -> None:
    sync(config, now=clock)
    bad = vault.commit(vault.head_id(), {
        "agent/memory.db": (vault.write_blob(DUMP_HEADER + b"this is not sql;\n"), 0o100644),
        "agent/MEMORY.md": (vault.write_blob(b"# Memory\n\n- old\n"), 0o100644)},
        "crafted", clock.tick(), "testhost")
    (workspace / "MEMORY.md").write_text("# Memory\n\n- unsynced edit\n")
    proc = run_cli("restore", "--at", bad, "--yes", "--json", "--config", str(config.file))
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert "bad dump" in doc["error"] and doc["undo"].startswith("vault restore --at ")
    assert {a["path"] for a in doc["actions"] if a["action"] == "overwrite"} >= {
        "agent/MEMORY.md", "agent/memory.db"}


def test_the_printed_undo_touches_only_what_the_restore_changed(tmp_path: Path,
                                                                workspace: Path,
                                                                clock: Clock) -> None:
    config = load_config(write_config(tmp_path / "block.toml", {"agent": workspace},
                                      extra='[secrets]\npolicy = "block"'))
    VaultRepo.init(config.vault.path, config.vault.branch)
    odd = workspace / "notes [v1] #1 !x.md"
    odd.write_text("v1\n")
    first = sync(config, now=clock).commit
    odd.write_text("v2\n")
    clock.tick()
    sync(config, now=clock)
    creds = workspace / "creds.md"  # never stored (blocked), and not the restore's business
    token = "ghp_" + "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dF3hJ5"
    creds.write_text(f"token {token}\n")
    assert first is not None
    proc = run_cli("restore", "--at", first, "--yes", "--config", str(config.file))
    assert proc.returncode == 0, proc.stderr
    assert odd.read_text() == "v1\n"
    [undo] = [line[len("Undo with: "):] for line in proc.stdout.splitlines()
              if line.startswith("Undo with: ")]
    assert run_cli(*shlex.split(undo)[1:]).returncode == 0
    assert odd.read_text() == "v2\n"
    assert creds.read_text() == f"token {token}\n" and not asides(workspace, "creds.md")


def test_restore_to_a_live_source_with_delete_is_refused(config: Config, vault: VaultRepo,
                                                         clock: Clock,
                                                         workspace: Path) -> None:
    sync(config, now=clock)
    (workspace / "precious.md").write_text("never synced\n")
    with pytest.raises(UsageError, match="would write into the live source 'agent'"):
        restore(config, RestoreOptions(at="HEAD", to=workspace.parent, sources=("agent",),
                                       paths=("nothing-matches-this",), delete=True), now=clock)
    assert (workspace / "precious.md").exists()


class LateWriter:
    """An agent in another process: opens a file to append when told (once), writes its line
    and closes it when told."""

    def __init__(self, path: Path, line: str) -> None:
        self.opened = False
        self._proc = subprocess.Popen(
            [sys.executable, "-c", "import sys\n"
             "sys.stdin.readline(); f = open(sys.argv[1], 'a'); print('open', flush=True)\n"
             "sys.stdin.readline(); f.write(sys.argv[2]); f.close()\n", str(path), line],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def open(self) -> None:
        if not self.opened:
            assert self._proc.stdin is not None and self._proc.stdout is not None
            self._proc.stdin.write("\n")
            self._proc.stdin.flush()
            self.opened = self._proc.stdout.readline() == "open\n"

    def finish(self) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write("\n")
        self._proc.stdin.close()
        self._proc.wait(timeout=30)


def test_a_file_opened_during_the_flush_and_written_after_the_replace_is_kept(
        config: Config, vault: VaultRepo, clock: Clock, workspace: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by a QA sweep (2 lines of 122 lost in a minute of back-to-back restores): an agent
    that opened its transcript after the restore's last look for open files (the flush
    before the replace takes a while) wrote its line after the replace, into the old file,
    which nothing named any more. The old file now stays reachable until that is settled."""
    transcript = workspace / "sessions" / "s1.jsonl"
    first = changed_since(config, clock, transcript,
                          '{"type": "message", "text": "second"}\n', append=True)
    writer = LateWriter(transcript, '{"text": "LATE LINE"}\n')
    flushed = restore_module.sync_filesystem

    def agent_opens_during_the_flush(path: Path) -> None:
        writer.open()
        flushed(path)

    monkeypatch.setattr(restore_module, "sync_filesystem", agent_opens_during_the_flush)
    clock.tick()
    try:
        result = restore(config, RestoreOptions(at=first, paths=("sessions/s1.jsonl",)),
                         now=clock)
    finally:
        writer.finish()
    assert writer.opened
    [action] = [a for a in result.plan.actions if a.path == "agent/sessions/s1.jsonl"]
    assert action.set_aside and b"LATE LINE" in Path(action.set_aside).read_bytes()
    assert b"LATE LINE" not in transcript.read_bytes()  # the restored file is as it was


def test_a_file_opened_before_its_delete_and_written_after_it_is_kept(
        config: Config, vault: VaultRepo, clock: Clock, workspace: Path) -> None:
    """The same for --delete: the file is moved to its kept-aside name, not unlinked, until
    no process can still be writing to it."""
    first = sync(config, now=clock).commit
    assert first is not None
    notes = workspace / "notes-later.md"
    notes.write_text("later\n")
    clock.tick()
    sync(config, now=clock)
    writer = LateWriter(notes, "LATE LINE\n")
    clock.tick()
    try:  # (it opens after the first action, before the delete: later in path order)
        result = restore(config, RestoreOptions(at=first, delete=True), now=clock,
                         progress=lambda done, total: writer.open())
    finally:
        writer.finish()
    assert writer.opened and not notes.exists()
    [action] = [a for a in result.plan.actions if a.path == "agent/notes-later.md"]
    assert action.action == "delete" and action.set_aside
    assert Path(action.set_aside).read_text() == "later\nLATE LINE\n"


def test_a_database_opened_during_the_flush_before_its_move_is_not_replaced(
        config: Config, vault: VaultRepo, clock: Clock, workspace: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: the last look for a database's holders came before the flush that precedes
    the move (which takes a while): an agent that opened it meanwhile had it replaced under
    its connection. The look now comes right before the move."""
    first = database_changed_since(config, clock, workspace / "memory.db")
    holder: list[subprocess.Popen[str]] = []
    flushed = restore_module.sync_filesystem

    def agent_opens_during_the_flush(path: Path) -> None:
        if not holder:
            holder.append(subprocess.Popen(
                [sys.executable, "-c", "import sys\nf = open(sys.argv[1], 'rb')\n"
                 "print('open', flush=True)\nsys.stdin.readline()\n",
                 str(workspace / "memory.db")],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
            assert holder[0].stdout is not None and holder[0].stdout.readline() == "open\n"
        flushed(path)

    monkeypatch.setattr(restore_module, "sync_filesystem", agent_opens_during_the_flush)
    before = (workspace / "memory.db").read_bytes()
    clock.tick()
    try:
        with pytest.raises(RestoreError, match="is open in another process"):
            restore(config, RestoreOptions(at=first, paths=("memory.db",)), now=clock)
    finally:
        for proc in holder:
            proc.kill()
            proc.wait()
    assert holder and (workspace / "memory.db").read_bytes() == before


def test_a_write_while_the_vault_copy_is_checked_is_kept(config: Config, vault: VaultRepo,
                                                         clock: Clock, workspace: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    first = changed_since(config, clock, workspace / "MEMORY.md", "# Memory\n\n- v2\n")
    import vault.inuse as inuse

    looked = inuse.open_paths

    def agent_writes_during_the_check(paths: list[Path]) -> set[Path]:
        with (workspace / "MEMORY.md").open("a") as f:
            f.write("- written while the restore checked\n")
        return looked(paths)

    monkeypatch.setattr(inuse, "open_paths", agent_writes_during_the_check)
    clock.tick()
    assert first is not None
    result = restore(config, RestoreOptions(at=first, paths=("MEMORY.md",)), now=clock)
    [action] = [a for a in result.plan.actions if a.path == "agent/MEMORY.md"]
    assert action.set_aside and "written while" in Path(action.set_aside).read_text()


def test_a_file_removed_before_it_is_replaced_is_simply_written(
        config: Config, vault: VaultRepo, clock: Clock, workspace: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    first = changed_since(config, clock, workspace / "MEMORY.md", "# Memory\n\n- v2\n")
    flushed = restore_module.sync_filesystem

    removed: list[bool] = []

    def agent_removes_it(path: Path) -> None:  # at the flush before the replace, once
        if not removed:
            (workspace / "MEMORY.md").unlink()
            removed.append(True)
        flushed(path)

    monkeypatch.setattr(restore_module, "sync_filesystem", agent_removes_it)
    clock.tick()
    assert first is not None
    restore(config, RestoreOptions(at=first, paths=("MEMORY.md",)), now=clock)
    assert "prefers tea" in (workspace / "MEMORY.md").read_text()


def test_the_undo_of_a_name_ending_in_a_tab_covers_the_source(tmp_path: Path, workspace: Path,
                                                               clock: Clock) -> None:
    from vault.cli import _undo_command
    from vault.restore import Action, RestorePlan, RestoreResult

    config = load_config(write_config(tmp_path / "t.toml", {"agent": workspace}))
    repo, _ = VaultRepo.init(config.vault.path, config.vault.branch)
    info = repo.commit_info(sync(config, now=clock).commit or "")

    def undo_for(*paths: str) -> str | None:
        plan = RestorePlan(commit=info, into=None, actions=tuple(
            Action("overwrite", p, str(workspace / p)) for p in paths))
        result = RestoreResult(plan=plan, dry_run=False, undo_commit=info.id,
                               undo_sources=("agent",))
        return _undo_command(config, RestoreOptions(), result)

    assert "--path 'agent/note.md\\ '" in (undo_for("agent/note.md ") or "")
    assert "--path" not in (undo_for("agent/note.md\t") or "")  # cannot be named: whole source
    assert "--source agent" in (undo_for("agent/note.md\t") or "")


def test_path_names_another_machines_files_with_to(tmp_path: Path, workspace: Path,
                                                   clock: Clock) -> None:
    h2_file = write_config(tmp_path / "h2.toml", {"agent": workspace},
                           extra='layout = "{host}/{source}"')
    h2_file.write_text(h2_file.read_text().replace('host = "testhost"', 'host = "h2"'))
    h2 = load_config(h2_file)
    VaultRepo.init(h2.vault.path, h2.vault.branch)
    sync(h2, now=clock)
    h1 = load_config(write_config(tmp_path / "h1.toml", {"agent": workspace},
                                  extra='layout = "{host}/{source}"'))
    plan = restore(h1, RestoreOptions(at="HEAD", to=tmp_path / "out",
                                      paths=("h2/agent/memory/*.md",), dry_run=True),
                   now=clock).plan
    assert [a.path for a in plan.actions] == ["h2/agent/memory/2026-11-20.md"]
    with pytest.raises(UsageError, match="--path: not a valid pattern"):
        restore(h1, RestoreOptions(at="HEAD", to=tmp_path / "out", paths=("\\",),
                                   dry_run=True), now=clock)


def test_one_look_through_proc_for_many_databases(tmp_path: Path, clock: Clock,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    ws = tmp_path / "dbs"
    ws.mkdir()
    for i in range(12):
        make_sqlite(ws / f"m{i}.db")
    config = load_config(write_config(tmp_path / "dbs.toml", {"dbs": ws}))
    VaultRepo.init(config.vault.path, config.vault.branch)
    first = sync(config, now=clock).commit
    for i in range(12):
        db = apsw.Connection(str(ws / f"m{i}.db"))
        db.execute("DELETE FROM memories WHERE id = 1")
        db.close()
    clock.tick()
    sync(config, now=clock)
    import vault.inuse as inuse

    looks: list[int] = []
    holders = inuse._holders

    def counted(wanted: set[tuple[int, int]]) -> Any:
        looks.append(len(wanted))
        return holders(wanted)

    monkeypatch.setattr(inuse, "_holders", counted)
    clock.tick()
    assert first is not None
    restore(config, RestoreOptions(at=first), now=clock)
    # Not one (or four) per database, each of which reads all of /proc: the restore looks 4
    # times for the lot (before asking, after the safety sync, before the set-asides, before
    # the databases move in); a sync that rechecks a busy file may add one. (It failed once at
    # <= 4 in a loaded run; one look per database would be 12 or more.)
    assert len(looks) <= 6


def test_files_in_a_kept_aside_folder_are_never_deleted(config: Config, vault: VaultRepo,
                                                        clock: Clock, workspace: Path) -> None:
    sync(config, now=clock)
    kept = workspace / "notes.pre-restore-2026-11-20T101500Z"
    kept.mkdir()
    (kept / "1.md").write_text("kept by an earlier restore\n")
    clock.tick()
    result = restore(config, RestoreOptions(at="HEAD", delete=True), now=clock)
    assert not [a for a in result.plan.actions if a.action == "delete"]
    assert (kept / "1.md").exists()


def test_an_empty_to_is_a_usage_error(config: Config, vault: VaultRepo, clock: Clock) -> None:
    sync(config, now=clock)
    proc = run_cli("restore", "--at", "HEAD", "--to", "", "--yes", "--config", str(config.file))
    assert proc.returncode == 2 and "--to needs a folder" in proc.stderr


def test_a_file_in_two_nested_sources_is_refused_before_anything_changes(
        tmp_path: Path, workspace: Path, clock: Clock) -> None:
    config = load_config(write_config(tmp_path / "nested.toml", {
        "outer": workspace, "inner": workspace / "memory"}))
    VaultRepo.init(config.vault.path, config.vault.branch)
    (workspace / "memory" / "notes.json").write_text('{"a": 1}\n')
    first = sync(config, now=clock).commit
    (workspace / "memory" / "notes.json").write_text('{"half": ')  # kept aside, once
    clock.tick()
    result = restore(config, RestoreOptions(at="HEAD"), now=clock)
    kept = workspace / "memory" / "notes.json"
    assert [a.path for a in result.plan.actions if a.target == str(kept)] == [
        "inner/notes.json"]
    assert kept.read_text() == '{"a": 1}\n'
    assert [p.read_text() for p in asides(kept.parent, kept.name)] == ['{"half": ']
    note = workspace / "memory" / "2026-11-20.md"
    # the two copies differ in the vault (one source was synced alone): refused up front
    note.write_text("only the inner source sees this\n")
    clock.tick()
    sync(config, SyncOptions(sources=("inner",)), now=clock)
    head = VaultRepo(config.vault.path, "main").head_id()
    note.write_text("edited, not synced\n")
    clock.tick()
    with pytest.raises(RestoreError, match="is both inner/2026-11-20.md and "
                                           "outer/memory/2026-11-20.md, which differ"):
        restore(config, RestoreOptions(at="HEAD"), now=clock)
    assert note.read_text() == "edited, not synced\n"
    assert VaultRepo(config.vault.path, "main").head_id() == head
    assert first


def test_an_undo_leaves_a_file_the_vault_never_could_take(config: Config, vault: VaultRepo,
                                                          clock: Clock,
                                                          workspace: Path) -> None:
    """Before: the undo of a restore that changed a whole source (its --delete covers the
    source) moved aside a half-written JSON file the restore never touched: the vault never
    held it, so it was "a file that did not exist" at the undo's commit."""
    first = changed_since(config, clock, workspace / "MEMORY.md", "# Memory\n\n- v2\n")
    (workspace / "broken.json").write_text('{"half": ')
    clock.tick()
    done = restore(config, RestoreOptions(at=first), now=clock)
    assert done.undo_commit is not None and "prefers tea" in (workspace / "MEMORY.md").read_text()
    clock.tick()
    undo = restore(config, RestoreOptions(at=done.undo_commit, sources=done.undo_sources,
                                          delete=True), now=clock)
    assert undo.plan.not_deleted == ("agent/broken.json",)
    assert (workspace / "broken.json").read_text() == '{"half": '
    assert (workspace / "MEMORY.md").read_text() == "# Memory\n\n- v2\n"
    assert asides(workspace, "broken.json") == []


def test_a_wal_named_file_of_the_users_is_kept_aside_not_deleted(
        config: Config, vault: VaultRepo, clock: Clock, workspace: Path) -> None:
    """A file named memory.db-wal beside a plain memory.db is the user's (synced as such). A
    restore that puts the database back must move it (SQLite would replay it), and said so:
    it deleted it unlisted, and its undo did not bring it back."""
    db = workspace / "memory.db"
    sync(config, now=clock)
    was = rows(db)
    database_commit = vault.head_id()
    db.unlink()
    db.write_text("plain text now\n")
    (workspace / "memory.db-wal").write_text("user notes\n")
    clock.tick()
    assert sync(config, now=clock).added == ("agent/memory.db-wal",)
    clock.tick()
    assert database_commit is not None
    dry = restore(config, RestoreOptions(at=database_commit, paths=("memory.db",),
                                         dry_run=True), now=clock)
    [companion] = [a for a in dry.plan.actions if a.path == "agent/memory.db-wal"]
    assert companion.action == "delete" and companion.set_aside and companion.why
    assert (workspace / "memory.db-wal").read_text() == "user notes\n"  # a dry run
    proc = run_cli("restore", "--at", database_commit, "--path", "memory.db", "--yes",
                   "--config", str(config.file))
    assert proc.returncode == 0, proc.stderr
    assert "Kept aside (SQLite would take it for the restored database's own)" in proc.stdout
    assert rows(db) == was
    assert not (workspace / "memory.db-wal").exists()
    [aside] = asides(workspace, "memory.db-wal")
    assert aside.read_text() == "user notes\n"
    [undo] = [line.removeprefix("Undo with: ") for line in proc.stdout.splitlines()
              if line.startswith("Undo with: ")]
    assert "memory.db-wal" in undo
    proc = run_cli(*shlex.split(undo)[1:])
    assert proc.returncode == 0, proc.stderr
    assert db.read_text() == "plain text now\n"
    assert (workspace / "memory.db-wal").read_text() == "user notes\n"
    assert not asides(workspace, "memory.db")  # (the database was in the vault: not kept)


def test_an_orphan_wal_named_file_is_kept_aside_when_its_database_comes_back(
        config: Config, vault: VaultRepo, clock: Clock, workspace: Path) -> None:
    db = workspace / "memory.db"
    sync(config, now=clock)
    was = rows(db)
    database_commit = vault.head_id()
    db.unlink()
    (workspace / "memory.db-wal").write_text("left behind\n")
    clock.tick()
    sync(config, now=clock)
    clock.tick()
    assert database_commit is not None
    result = restore(config, RestoreOptions(at=database_commit, paths=("memory.db",)),
                     now=clock)
    assert [(a.action, a.path) for a in result.plan.actions if a.action != "unchanged"] == [
        ("create", "agent/memory.db"), ("delete", "agent/memory.db-wal")]
    assert rows(db) == was
    [aside] = asides(workspace, "memory.db-wal")
    assert aside.read_text() == "left behind\n"


def test_a_commit_with_a_database_and_a_wal_named_file_is_refused(
        config: Config, vault: VaultRepo, clock: Clock, workspace: Path) -> None:
    """Both cannot be restored: SQLite would take the file for the database's own. (A sync
    never stores such a pair: this commit is made by hand.)"""
    sync(config, now=clock)
    head = vault.head_id()
    note = vault.write_blob(b"a note\n")
    vault.commit(head, {"agent/memory.db-wal": (note, 0o100644)}, "by hand\n", clock.tick(),
                 "testhost")
    (workspace / "memory.db").unlink()
    (workspace / "memory.db").write_text("plain\n")
    clock.tick()
    with pytest.raises(RestoreError, match="also holds agent/memory.db-wal"):
        restore(config, RestoreOptions(at="HEAD", paths=("memory.db*",)), now=clock)
    assert (workspace / "memory.db").read_text() == "plain\n"

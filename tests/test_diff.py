"""vault diff: file by file between two moments; SQLite rows added, changed, removed."""

from __future__ import annotations

import json
from pathlib import Path

import apsw
import pytest

from conftest import Clock, run_cli, write_config
from vault.config import Config, load_config
from vault.diff import diff
from vault.errors import VaultError
from vault.repo import VaultRepo
from vault.sync import sync


def test_diff_files_and_rows(config: Config, vault: VaultRepo, clock: Clock,
                             workspace: Path) -> None:
    sync(config, now=clock)
    (workspace / "MEMORY.md").write_text("# Memory\n\n- The user prefers coffee.\n- new line\n")
    (workspace / "memory" / "2026-11-20.md").unlink()
    (workspace / "notes.md").write_text("a\nb\n")
    db = apsw.Connection(str(workspace / "memory.db"))
    db.execute("UPDATE memories SET content = 'changed' WHERE id = 2")
    db.execute("DELETE FROM memories WHERE id = 4")
    db.execute("INSERT INTO memories(content) VALUES ('added one'), ('added two')")
    db.close()
    clock.tick()
    sync(config, now=clock)
    result = diff(vault, "HEAD~1", "HEAD", clock.now)
    got = {f.path: (f.status, f.lines_added, f.lines_removed) for f in result.files if not f.sqlite}
    assert got == {"agent/MEMORY.md": ("modified", 2, 1),
                   "agent/memory/2026-11-20.md": ("deleted", 0, 3),
                   "agent/notes.md": ("added", 2, 0)}
    (db_diff,) = [f for f in result.files if f.sqlite]
    (table,) = db_diff.tables
    assert (table.table, table.added, table.changed, table.removed) == ("memories", 2, 1, 1)
    assert sorted((r.kind, r.key) for r in table.rows) == [
        ("added", "6"), ("added", "7"), ("changed", "2"), ("removed", "4")]
    only = diff(vault, "HEAD~1", "HEAD", clock.now, paths=("*.db",))
    assert [f.path for f in only.files] == ["agent/memory.db"]
    proc = run_cli("diff", "HEAD~1", "--json", "--config", str(config.file))
    doc = json.loads(proc.stdout)
    assert doc["new"]["commit"] == vault.head_id()
    assert {f["path"] for f in doc["files"]} == set(got) | {"agent/memory.db"}
    human = run_cli("diff", "HEAD~1", "--path", "memory.db", "--config", str(config.file)).stdout
    assert "memories: 2 added, 1 changed, 1 removed" in human
    same = run_cli("diff", "HEAD", "HEAD", "--config", str(config.file)).stdout
    assert "no differences" in same
    # the file's own path in its source picks it, as `vault show` and `vault log` take it
    mine = run_cli("diff", "HEAD~1", "--path", str(workspace / "MEMORY.md"), "--json",
                   "--config", str(config.file))
    assert [f["path"] for f in json.loads(mine.stdout)["files"]] == ["agent/MEMORY.md"]
    # a --path that picks nothing at either moment is not "no differences"
    for pattern in ("nosuch.md", str(workspace.parent / "elsewhere.md")):
        proc = run_cli("diff", "HEAD~1", "--path", pattern, "--config", str(config.file))
        assert proc.returncode == 1 and proc.stdout == ""
        assert proc.stderr.splitlines()[0].startswith("Error: --path: nothing matches in commit ")


def test_diff_file_that_turns_into_a_database_and_back(config: Config, vault: VaultRepo,
                                                       clock: Clock, workspace: Path) -> None:
    # Connecting creates a 0-byte file before the first write: it is synced as a plain file.
    (workspace / "new.db").touch()
    sync(config, now=clock)
    db = apsw.Connection(str(workspace / "new.db"))
    db.execute("CREATE TABLE t(a); INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)")
    db.close()
    (workspace / "notes.md").write_text("a\n")
    clock.tick()
    sync(config, now=clock)
    result = diff(vault, "HEAD~1", "HEAD", clock.now)
    files = {f.path: f for f in result.files}
    assert set(files) == {"agent/new.db", "agent/notes.md"}
    became = files["agent/new.db"]
    assert (became.status, became.sqlite, became.old_kind, became.new_kind) == (
        "modified", True, "plain", "sqlite")
    (table,) = became.tables
    assert (table.table, table.status, table.added, table.changed, table.removed) == (
        "t", "added", 2, 0, 0)
    assert (files["agent/notes.md"].sqlite, files["agent/notes.md"].lines_added) == (False, 1)
    doc = json.loads(run_cli("diff", "HEAD~1", "--json", "--config", str(config.file)).stdout)
    assert {f["path"]: f["sqlite"] for f in doc["files"]} == {"agent/new.db": True,
                                                              "agent/notes.md": False}
    assert [(f["old_kind"], f["new_kind"]) for f in doc["files"]] == [("plain", "sqlite"),
                                                                      (None, "plain")]
    human = run_cli("diff", "HEAD~1", "--config", str(config.file))
    assert human.returncode == 0, human.stderr
    assert "M agent/new.db  (plain -> SQLite)  +0 -0" in human.stdout
    assert "t: 2 added; schema changed" in human.stdout

    (workspace / "new.db").write_text("not a database any more\n")
    clock.tick()
    sync(config, now=clock)
    (back,) = diff(vault, "HEAD~1", "HEAD", clock.now).files
    assert (back.path, back.status, back.old_kind, back.new_kind) == (
        "agent/new.db", "modified", "sqlite", "plain")
    assert (back.lines_added, back.lines_removed) == (1, 0)
    assert [(t.table, t.status, t.removed) for t in back.tables] == [("t", "removed", 2)]
    assert run_cli("diff", "HEAD~1", "--json", "--config", str(config.file)).returncode == 0


def test_diff_path_under_a_host_layout_selects_as_restore_does(tmp_path: Path, clock: Clock
                                                                ) -> None:
    oc = tmp_path / "oc-root"
    (oc / "memory").mkdir(parents=True)
    (oc / "notes" / "memory").mkdir(parents=True)
    for name in ("memory/a.md", "notes/memory/b.md", "MEMORY.md"):
        (oc / name).write_text("one\n")
    config_file = tmp_path / "host.toml"
    config_file.write_text(f'[vault]\npath = "{tmp_path / "host-vault"}"\nhost = "lap"\n'
                           f'layout = "{{host}}/{{source}}"\n\n'
                           f'[[sources]]\nname = "oc"\npath = "{oc}"\n')
    config = load_config(config_file)
    repo, _ = VaultRepo.init(config.vault.path, config.vault.branch)
    sync(config, now=clock)
    for name in ("memory/a.md", "notes/memory/b.md", "MEMORY.md"):
        (oc / name).write_text("one\ntwo\n")
    clock.tick()
    sync(config, now=clock)
    for paths, want in ((("memory/*.md",), ["lap/oc/memory/a.md"]),
                        (("/MEMORY.md",), ["lap/oc/MEMORY.md"]),
                        (("lap/oc/notes/",), ["lap/oc/notes/memory/b.md"]),
                        (("oc/memory/*.md",), [])):  # not a path in source oc, nor in the vault
        if not want:  # (said, as restore says it, not "no differences")
            with pytest.raises(VaultError, match="--path: nothing matches in commit"):
                diff(repo, "HEAD~1", "HEAD", clock.now, paths, config=config)
        else:
            result = diff(repo, "HEAD~1", "HEAD", clock.now, paths, config=config)
            assert [f.path for f in result.files] == want, paths
        dry = run_cli("restore", "--at", "HEAD~1", "--dry-run", "--json", "--config",
                      str(config_file), *(a for p in paths for a in ("--path", p)))
        if not want:
            assert dry.stderr.startswith("Error: nothing matches in commit "), dry.stderr
            continue
        assert dry.returncode == 0, dry.stderr
        assert [a["path"] for a in json.loads(dry.stdout)["actions"]] == want, paths


def test_cli_diff_path_under_a_host_layout(tmp_path: Path, clock: Clock) -> None:
    oc = tmp_path / "oc-root"
    (oc / "memory").mkdir(parents=True)
    (oc / "memory" / "a.md").write_text("one\n")
    config_file = tmp_path / "host.toml"
    config_file.write_text(f'[vault]\npath = "{tmp_path / "host-vault"}"\nhost = "lap"\n'
                           f'layout = "{{host}}/{{source}}"\n\n'
                           f'[[sources]]\nname = "oc"\npath = "{oc}"\n')
    config = load_config(config_file)
    VaultRepo.init(config.vault.path, config.vault.branch)
    sync(config, now=clock)
    (oc / "memory" / "a.md").write_text("one\ntwo\n")
    clock.tick()
    sync(config, now=clock)
    proc = run_cli("diff", "HEAD~1", "--path", "memory/*.md", "--json", "--config",
                   str(config_file))
    assert proc.returncode == 0, proc.stderr
    assert [f["path"] for f in json.loads(proc.stdout)["files"]] == ["lap/oc/memory/a.md"]


def test_diff_before_the_first_sync(config: Config, vault: VaultRepo) -> None:
    proc = run_cli("diff", "HEAD~1", "--config", str(config.file))
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr.splitlines() == ["Error: the vault has no commits yet",
                                        "Hint: run `vault sync` first"]


def test_diff_says_when_rows_are_not_all_listed_and_skips_lines_of_binary_files(
        config: Config, vault: VaultRepo, clock: Clock, workspace: Path) -> None:
    """QA: 30 rows changed and one added, the text listed 5 and the JSON 20 without a word;
    a binary file was given line counts."""
    db = apsw.Connection(str(workspace / "memory.db"))
    with db:
        for i in range(30):
            db.execute("INSERT INTO memories(content) VALUES (?)", (f"row {i}",))
    db.close()
    (workspace / "blob.bin").write_bytes(bytes(range(256)) * 12)
    sync(config, now=clock)
    db = apsw.Connection(str(workspace / "memory.db"))
    with db:
        db.execute("UPDATE memories SET content = content || ' changed'")
        db.execute("INSERT INTO memories(id, content) VALUES (99, 'the added one')")
    db.close()
    (workspace / "blob.bin").write_bytes(bytes(range(255, -1, -1)) * 12)
    clock.tick()
    sync(config, now=clock)
    doc = json.loads(run_cli("diff", "HEAD~1", "--json", "--config", str(config.file)).stdout)
    files = {f["path"]: f for f in doc["files"]}
    (table,) = files["agent/memory.db"]["tables"]
    assert (table["added"], table["changed"]) == (1, 35)
    assert len(table["rows"]) == 20 and table["rows_not_listed"] == 16
    assert files["agent/blob.bin"]["binary"] is True
    assert (files["agent/blob.bin"]["lines_added"], files["agent/blob.bin"]["lines_removed"]) \
        == (0, 0)
    human = run_cli("diff", "HEAD~1", "--config", str(config.file)).stdout
    assert "  M agent/blob.bin  binary" in human
    assert "        ... and 31 more (`--json` lists the first 20 in key order)" in human


def test_diff_path_given_as_a_files_absolute_path_is_that_file(tmp_path: Path) -> None:
    """--path "$PWD/a/[ab].txt" is that file (before: the glob [ab].txt, which matched a.txt)."""
    a = tmp_path / "a"
    a.mkdir()
    config = write_config(tmp_path / "vault.toml", {"a": a})
    assert run_cli("init", "--config", str(config)).returncode == 0
    for text in ("old\n", "new\n"):
        for name in ("[ab].txt", "a.txt"):
            (a / name).write_text(text)
        assert run_cli("sync", "-q", "--config", str(config)).returncode == 0
    proc = run_cli("diff", "HEAD~1", "HEAD", "--path", str(a / "[ab].txt"), "--json",
                   "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    assert [f["path"] for f in json.loads(proc.stdout)["files"]] == ["a/[ab].txt"]

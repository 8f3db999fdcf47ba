"""A restore's undo covers exactly what the restore changed and gives back files as they were
(modes included); a dry run says what the real run does; a commit of another layout is named.

Each test runs the real CLI against a real vault (QA rounds 3 and 4 found these).
"""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import git, make_sqlite, run_cli, write_config

SECRET = "ghp_" + "1234567890abcdefghijklmnopqrstuvwxyZ"  # a GitHub token's shape


def setup(tmp_path: Path, extra: str = "") -> tuple[Path, Path, Path, Path]:
    """Two sources a and b, an initialised vault: (config file, a's folder, b's folder, vault)."""
    a, b = tmp_path / "src" / "a", tmp_path / "src" / "b"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    cfg = write_config(tmp_path / "vault.toml", {"a": a, "b": b}, extra=extra)
    ok(cli(cfg, "init"))
    return cfg, a, b, tmp_path / "memory-vault"


def cli(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, "--config", str(cfg))


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


def sync(cfg: Path) -> str:
    ok(cli(cfg, "sync", "-q"))
    return git(cfg.parent / "memory-vault", "rev-parse", "HEAD").strip()


def restore_json(cfg: Path, *args: str) -> dict[str, Any]:
    proc = ok(cli(cfg, "restore", "--json", *args))
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def run_undo(command: str) -> subprocess.CompletedProcess[str]:
    argv = shlex.split(command)
    assert argv[:2] == ["vault", "restore"]
    return ok(subprocess.run([sys.executable, "-m", "vault", *argv[1:]], capture_output=True,
                             text=True, check=False, timeout=120))


def perms(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


# 1. An undo never covers more than the files the restore changed.

def test_a_restore_that_changes_nothing_prints_no_undo(tmp_path: Path) -> None:
    cfg, a, _b, _vault = setup(tmp_path)
    (a / "MEMORY.md").write_text("m1\n")
    c1 = sync(cfg)
    (a / "new.json").write_text('{"half":')  # the only difference: the vault cannot take it
    proc = ok(cli(cfg, "restore", "--at", c1, "--delete", "--yes"))
    assert "Not deleted (the vault cannot take it, so it is not the vault's to delete): " \
           "a/new.json" in proc.stdout
    assert "Undo with" not in proc.stdout + proc.stderr
    data = restore_json(cfg, "--at", c1, "--delete", "--yes")
    assert data["undo"] is None
    assert data["not_deleted"] == ["a/new.json"]
    assert data["counts"] == {"create": 0, "overwrite": 0, "delete": 0, "unchanged": 1}
    assert (a / "new.json").read_text() == '{"half":'


def test_an_undo_leaves_out_a_source_whose_only_delete_was_not_done(tmp_path: Path) -> None:
    cfg, a, b, _vault = setup(tmp_path)
    (a / "MEMORY.md").write_text("a1\n")
    (b / "notes.md").write_text("b1\n")
    c1 = sync(cfg)
    (a / "new.json").write_text('{"half":')  # source a: only this, which is not deleted
    (b / "notes.md").write_text("b2\n")  # source b: a real change
    data = restore_json(cfg, "--at", c1, "--delete", "--yes")
    assert data["not_deleted"] == ["a/new.json"]
    undo = data["undo"]
    argv = shlex.split(undo)
    assert argv[argv.index("--source") + 1] == "b" and argv.count("--source") == 1
    assert [argv[i + 1] for i, arg in enumerate(argv) if arg == "--path"] == ["b/notes.md"]
    # The agent keeps working in source a; the undo, run later, leaves that alone.
    (a / "MEMORY.md").write_text("a2\n")
    (a / "today.md").write_text("today\n")
    run_undo(undo)
    assert (b / "notes.md").read_text() == "b2\n"
    assert (a / "MEMORY.md").read_text() == "a2\n"
    assert (a / "today.md").read_text() == "today\n"
    assert (a / "new.json").read_text() == '{"half":'


# 2. A dry run lists what the real run does: the files the safety sync cannot take stay.

def test_dry_run_lists_the_deletes_the_real_run_leaves_as_not_deleted(tmp_path: Path) -> None:
    cfg, a, _b, _vault = setup(tmp_path, extra='[snapshot]\nmax_file_size = "1 KiB"\n\n'
                                                '[secrets]\npolicy = "block"')
    (a / "MEMORY.md").write_text("v1\n")
    c1 = sync(cfg)
    (a / "new.json").write_text('{"half":')  # half-written JSON, never synced
    (a / "creds.md").write_text(f"token: {SECRET}\n")  # a secret, blocked
    (a / "big.bin").write_bytes(b"x" * 3000)  # over the size limit, never held
    (a / "plain.md").write_text("plain\n")  # an ordinary new file
    dry = restore_json(cfg, "--at", c1, "--delete", "--dry-run")
    assert dry["not_deleted"] == ["a/big.bin", "a/creds.md", "a/new.json"]
    assert [(x["action"], x["path"]) for x in dry["actions"]] == [
        ("unchanged", "a/MEMORY.md"), ("delete", "a/plain.md")]
    assert dry["undo"] is None and dry["safety_sync"] is None
    # The dry run wrote nothing: no commit, every file still there.
    assert git(cfg.parent / "memory-vault", "rev-parse", "HEAD").strip() == c1
    assert sorted(p.name for p in a.iterdir()) == [
        "MEMORY.md", "big.bin", "creds.md", "new.json", "plain.md"]
    text = ok(cli(cfg, "restore", "--at", c1, "--delete",
                      "--dry-run")).stdout
    assert "0 create, 0 overwrite, 1 delete, 1 unchanged" in text
    assert "Not deleted (the vault cannot take it, so it is not the vault's to delete): " \
           "a/creds.md" in text
    real = restore_json(cfg, "--at", c1, "--delete", "--yes")
    assert real["counts"] == dry["counts"]
    assert real["not_deleted"] == dry["not_deleted"]
    assert [(x["action"], x["path"]) for x in real["actions"]] == [
        (x["action"], x["path"]) for x in dry["actions"]]
    assert sorted(p.name for p in a.iterdir()) == ["MEMORY.md", "big.bin", "creds.md",
                                                    "new.json"]


# 3. The undo of a --delete brings deleted files back with their modes.

def test_undo_of_a_delete_gives_files_back_their_modes(tmp_path: Path) -> None:
    cfg, a, _b, _vault = setup(tmp_path)
    (a / "MEMORY.md").write_text("v1\n")
    c1 = sync(cfg)
    files = {"private.md": 0o600, "tool.sh": 0o700, "shared.md": 0o664, "plain.md": 0o644,
             "odd.md": 0o640}
    for name, mode in files.items():
        (a / name).write_text(f"{name}\n" if name != "tool.sh" else "#!/bin/sh\n")
        os.chmod(a / name, mode)
    make_sqlite(a / "private.db")
    os.chmod(a / "private.db", 0o600)
    files["private.db"] = 0o600
    data = restore_json(cfg, "--at", c1, "--delete", "--yes")
    assert sorted(x["path"] for x in data["actions"] if x["action"] == "delete") == sorted(
        f"a/{n}" for n in files)
    assert sorted(p.name for p in a.iterdir()) == ["MEMORY.md"]
    run_undo(data["undo"])
    assert {n: perms(a / n) for n in files} == files
    assert (a / "private.md").read_text() == "private.md\n"


def test_undo_of_the_undo_keeps_modes_too(tmp_path: Path) -> None:
    cfg, a, _b, _vault = setup(tmp_path)
    (a / "MEMORY.md").write_text("v1\n")
    c1 = sync(cfg)
    (a / "private.md").write_text("secret\n")
    os.chmod(a / "private.md", 0o600)
    first = restore_json(cfg, "--at", c1, "--delete", "--yes")  # deletes it
    undo = json.loads(run_undo(first["undo"] + " --json").stdout)  # brings it back
    assert perms(a / "private.md") == 0o600
    redo = json.loads(run_undo(undo["undo"] + " --json").stdout)  # deletes it again
    assert not (a / "private.md").exists()
    run_undo(redo["undo"])  # and back once more
    assert perms(a / "private.md") == 0o600
    assert (a / "private.md").read_text() == "secret\n"


def test_a_new_file_of_other_content_gets_the_default_mode(tmp_path: Path) -> None:
    cfg, a, _b, _vault = setup(tmp_path)
    (a / "MEMORY.md").write_text("v1\n")
    (a / "private.md").write_text("old\n")
    c1 = sync(cfg)
    os.remove(a / "private.md")
    c2 = sync(cfg)
    (a / "private.md").write_text("new\n")
    os.chmod(a / "private.md", 0o600)
    restore_json(cfg, "--at", c2, "--delete", "--yes")  # deletes it (0600, content "new")
    assert not (a / "private.md").exists()
    # Another content at that path is not the file whose mode was recorded: the default.
    restore_json(cfg, "--at", c1, "--yes")
    assert (a / "private.md").read_text() == "old\n"
    umask = os.umask(0o022)
    os.umask(umask)
    assert perms(a / "private.md") == 0o644 & ~umask


def test_a_damaged_mode_record_means_the_default_modes(tmp_path: Path) -> None:
    cfg, a, _b, vault = setup(tmp_path)
    (a / "MEMORY.md").write_text("v1\n")
    c1 = sync(cfg)
    (a / "private.md").write_text("secret\n")
    os.chmod(a / "private.md", 0o600)
    data = restore_json(cfg, "--at", c1, "--delete", "--yes")
    record = vault / "vault" / "restore-modes.json"  # (the vault's state dir)
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    record.write_text('{"version": 1, "entries": [["a/private.md", 5, "x"')  # torn
    proc = run_undo(data["undo"])
    assert proc.returncode == 0 and not proc.stderr
    umask = os.umask(0o022)
    os.umask(umask)
    assert perms(a / "private.md") == 0o644 & ~umask


# 4. A commit made under another layout: said, with --to DIR.

def test_a_commit_of_another_layout_is_named_and_points_at_to(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    cfg = write_config(tmp_path / "vault.toml", {"notes": src})
    ok(cli(cfg, "init"))
    (src / "f.md").write_text("v1\n")
    (src / "g.md").write_text("g\n")
    old = sync(cfg)
    write_config(cfg, {"notes": src}, extra='layout = "{host}/{source}"')
    (src / "f.md").write_text("v2\n")
    sync(cfg)
    proc = cli(cfg, "restore", "--at", "HEAD~1", "--dry-run")
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"Error: none of the 2 files in commit {old[:10]} is under a configured source as the "
        "current layout places it (testhost/<source>/...): synced with another [vault] "
        "layout, host or source names, or another machine's",
        f"Hint: restore elsewhere with --to DIR (`vault restore --at {old[:12]} --to DIR`)"]
    # With --delete too (before: it planned to delete every live file as not there then).
    for args in (["--delete", "--dry-run"], ["--delete", "--yes"]):
        proc = cli(cfg, "restore", "--at", "HEAD~1", *args)
        assert proc.returncode == 1, proc.stdout
        assert proc.stderr.splitlines()[0].startswith("Error: none of the 2 files in commit")
    assert (src / "f.md").read_text() == "v2\n" and (src / "g.md").read_text() == "g\n"
    proc = cli(cfg, "restore", "--at", "HEAD~1", "--path", "f.md",
                   "--dry-run")
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == (
        f"Error: the one file that --source and --path pick in commit {old[:10]} is not under "
        "a configured source as the current layout places it (testhost/<source>/...): synced "
        "with another [vault] layout, host or source names, or another machine's")
    # As the hint says: --to DIR restores them.
    ok(cli(cfg, "restore", "--at", "HEAD~1", "--to",
               str(tmp_path / "then")))
    assert (tmp_path / "then" / "notes" / "f.md").read_text() == "v1\n"
    assert (src / "f.md").read_text() == "v2\n"

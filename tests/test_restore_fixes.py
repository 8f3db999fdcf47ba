"""Restore cases a review found broken: a folder where the commit has a file (into the live
sources with --delete, and into --to DIR), and --path given as a file's own path."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import git, run_cli, write_config


def _setup(tmp_path: Path) -> tuple[Path, Path, str]:
    """Source a with a/keep and a/d/f.txt synced, then a/d a file, synced: (config, a, the
    commit with the file)."""
    a = tmp_path / "a"
    a.mkdir()
    config = write_config(tmp_path / "vault.toml", {"a": a})
    assert run_cli("init", "--config", str(config)).returncode == 0
    (a / "keep").write_text("x\n")
    (a / "d").mkdir()
    (a / "d" / "f.txt").write_text("one\n")
    assert run_cli("sync", "-q", "--config", str(config)).returncode == 0
    (a / "d" / "f.txt").unlink()
    (a / "d").rmdir()
    (a / "d").write_text("file\n")
    assert run_cli("sync", "-q", "--config", str(config)).returncode == 0
    return config, a, git(tmp_path / "memory-vault", "rev-parse", "HEAD").strip()


def _asides(folder: Path) -> list[str]:
    """Every kept-aside name below folder, as paths relative to it."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if ".pre-restore-" in p.name)


def test_a_delete_restore_where_a_folder_becomes_a_file_keeps_the_folder_aside_whole(
        tmp_path: Path) -> None:
    """--delete, the folder a/d back to the file a/d: the folder is kept aside whole, its file
    in it under its own name (before: f.txt was moved to a kept-aside name first, the folder
    then moved away with it, and the restore ended in NotADirectoryError, exit 3, no undo)."""
    config, a, then = _setup(tmp_path)
    back = run_cli("restore", "--at", "HEAD~1", "--delete", "--yes", "--config", str(config))
    assert back.returncode == 0, back.stderr
    assert (a / "d" / "f.txt").read_text() == "one\n"
    dry = run_cli("restore", "--at", then, "--delete", "--dry-run", "--config", str(config))
    assert dry.returncode == 0, dry.stderr
    assert "delete    a/d/f.txt" not in dry.stdout  # it goes with its folder
    assert "Would keep aside (a folder where the restore puts a file): " in dry.stdout
    proc = run_cli("restore", "--at", then, "--delete", "--yes", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    assert (a / "d").read_text() == "file\n"
    [aside] = _asides(a)
    assert aside.startswith("d.pre-restore-")
    assert (a / aside / "f.txt").read_text() == "one\n"  # no second kept-aside name in it
    [kept] = [line for line in proc.stdout.splitlines() if line.startswith("Kept aside")]
    assert kept == f"Kept aside (a folder where the restore puts a file): {a / aside}"
    [undo] = [line for line in proc.stdout.splitlines() if line.startswith("Undo with: ")]
    again = run_cli(*undo.split(": ", 1)[1].split()[1:])
    assert again.returncode == 0, again.stderr
    assert (a / "d" / "f.txt").read_text() == "one\n"


def test_a_to_dir_restore_keeps_a_folder_in_the_way_aside(tmp_path: Path) -> None:
    """--to DIR where DIR holds a folder and the commit a file: kept aside whole, as into the
    live sources, and the dry run says so (before: the dry run said "overwrite", the real run
    failed with "Is a directory" after --delete had deleted the folder's files)."""
    config, _a, _then = _setup(tmp_path)
    out = tmp_path / "out"
    first = run_cli("restore", "--at", "HEAD~1", "--to", str(out), "--config", str(config))
    assert first.returncode == 0, first.stderr
    assert (out / "a" / "d" / "f.txt").read_text() == "one\n"
    dry = run_cli("restore", "--at", "HEAD", "--to", str(out), "--delete", "--dry-run",
                  "--config", str(config))
    assert dry.returncode == 0, dry.stderr
    assert "Would keep aside (a folder where the restore puts a file): " in dry.stdout
    assert "a/d/f.txt" not in dry.stdout
    assert (out / "a" / "d" / "f.txt").exists()
    proc = run_cli("restore", "--at", "HEAD", "--to", str(out), "--delete", "--json",
                   "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    [action] = [x for x in doc["actions"] if x["path"] == "a/d"]
    assert action["action"] == "overwrite" and action["set_aside"]
    assert (out / "a" / "d").read_text() == "file\n"
    assert (Path(action["set_aside"]) / "f.txt").read_text() == "one\n"
    assert _asides(out / "a") == [Path(action["set_aside"]).name]


def test_a_to_dir_database_over_a_folder_keeps_the_folder_aside(tmp_path: Path) -> None:
    """The same for a database (rebuilt by the helper and moved in at the end)."""
    import apsw

    a = tmp_path / "a"
    a.mkdir()
    config = write_config(tmp_path / "vault.toml", {"a": a})
    assert run_cli("init", "--config", str(config)).returncode == 0
    db = apsw.Connection(str(a / "m.db"))
    db.execute("CREATE TABLE t(x); INSERT INTO t VALUES(42)")
    db.close()
    assert run_cli("sync", "-q", "--config", str(config)).returncode == 0
    out = tmp_path / "out"
    (out / "a" / "m.db").mkdir(parents=True)
    (out / "a" / "m.db" / "inside.txt").write_text("mine\n")
    proc = run_cli("restore", "--at", "HEAD", "--to", str(out), "--delete", "--config",
                   str(config))
    assert proc.returncode == 0, proc.stderr
    db = apsw.Connection(str(out / "a" / "m.db"))
    assert list(db.execute("SELECT x FROM t")) == [(42,)]
    db.close()
    [aside] = _asides(out / "a")
    assert (out / "a" / aside / "inside.txt").read_text() == "mine\n"

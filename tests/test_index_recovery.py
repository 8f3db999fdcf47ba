"""The index after a crash or next to files it does not own: a hot journal left by a killed
run, leftovers of a killed rebuild, a path that holds another program's database or a folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import apsw
import pytest

from conftest import Clock, run_cli, write_config
from test_recall import add_notes
from vault.config import Config, load_config
from vault.embed import HashEmbedder
from vault.index import IndexOptions, IndexStoreError, build_index
from vault.recall import RecallOptions, recall
from vault.repo import VaultRepo
from vault.sync import sync


def _vault(tmp_path: Path, workspace: Path, clock: Clock, index: str = "") -> Config:
    path = write_config(tmp_path / "vault.toml", {"agent": workspace},
                        extra=f'\n[index]\nmodel = "hash:64"\n{index}')
    config = load_config(path)
    VaultRepo.init(config.vault.path, config.vault.branch)
    sync(config, now=clock)
    return config


# A writer that dies by SIGKILL in the middle of a write transaction, the way a `vault index`
# killed mid-run does: its changed pages are in the file, the originals in a hot journal.
_DYING_WRITER = """
import sys, time, apsw
db = apsw.Connection(sys.argv[1])
db.execute("BEGIN IMMEDIATE")
db.execute("DELETE FROM vectors")
db.execute("DELETE FROM texts")
db.cache_flush()
print("ready", flush=True)
time.sleep(60)
"""


def _kill_when_ready(script: str, arg: str) -> int:
    """Run a Python script that prints "ready" mid-write, SIGKILL it there; its pid."""
    proc = subprocess.Popen([sys.executable, "-c", script, arg], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    return proc.pid


def _kill_mid_write(path: Path) -> None:
    _kill_when_ready(_DYING_WRITER, str(path))
    journal = Path(f"{path}-journal")
    assert journal.exists() and journal.stat().st_size > 0  # a hot journal is left


def test_recall_rolls_back_the_hot_journal_of_a_killed_index_run(
        tmp_path: Path, workspace: Path, clock: Clock) -> None:
    add_notes(workspace)
    config = _vault(tmp_path, workspace, clock)
    build_index(config, IndexOptions(), HashEmbedder(64))
    _kill_mid_write(config.index_path)
    hits = recall(config, "kitchen renovation quote", RecallOptions(k=1)).hits
    assert hits and hits[0].path.endswith("notes.md")
    assert not Path(f"{config.index_path}-journal").exists()
    # and from the command line, a process of its own
    _kill_mid_write(config.index_path)
    out = run_cli("recall", "kitchen renovation quote", "-k", "1", "--json",
                  "--config", str(config.file))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["hits"][0]["path"].endswith("notes.md")


def _foreign_db(path: Path, *pragmas: str) -> None:
    db = apsw.Connection(str(path))
    for pragma in pragmas:
        db.execute(pragma)
    db.execute("CREATE TABLE meta(k TEXT, v TEXT); INSERT INTO meta VALUES('owner', 'precious')")
    db.close()


def _tables(path: Path) -> list[str]:
    db = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return [str(r[0]) for r in db.execute("SELECT name FROM sqlite_schema ORDER BY name")]
    finally:
        db.close()


def test_another_programs_database_at_the_index_path_is_never_written_or_replaced(
        tmp_path: Path, workspace: Path, clock: Clock) -> None:
    add_notes(workspace)
    config = _vault(tmp_path, workspace, clock, index='path = "app.db"')
    app = tmp_path / "app.db"
    # application_id 0 (SQLite's default); a user_version of its own, which vault's migrations
    # took for an old vault index (or a newer one)
    for pragmas in ((), ("PRAGMA user_version=1",), ("PRAGMA user_version=7",)):
        app.unlink(missing_ok=True)
        _foreign_db(app, *pragmas)
        before = app.read_bytes()
        for rebuild in (False, True):
            with pytest.raises(IndexStoreError) as caught:
                build_index(config, IndexOptions(rebuild=rebuild), HashEmbedder(64))
            assert str(caught.value) == (f"{app} is not a vault index "
                                         "(a SQLite database of another program)"), pragmas
        with pytest.raises(IndexStoreError, match="is not a vault index"):
            recall(config, "kitchen quote")
        assert app.read_bytes() == before and _tables(app) == ["meta"]
    proc = run_cli("index", "--rebuild", "--config", str(config.file))
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == (f"Error: {app} is not a vault index "
                                           "(a SQLite database of another program)")
    assert app.read_bytes() == before
    # a file that is no database at all, at a path the user chose, is not replaced either
    app.write_text("my notes\n")
    with pytest.raises(IndexStoreError, match=r"is not a vault index \(not a SQLite database\)"):
        build_index(config, IndexOptions(rebuild=True), HashEmbedder(64))
    assert app.read_text() == "my notes\n"


def test_a_new_empty_file_or_database_at_the_index_path_becomes_the_index(
        tmp_path: Path, workspace: Path, clock: Clock) -> None:
    add_notes(workspace)
    config = _vault(tmp_path, workspace, clock, index='path = "new.db"')
    new = tmp_path / "new.db"
    for rebuild in (False, True):
        for make in ("touch", "sqlite"):
            new.unlink(missing_ok=True)
            if make == "touch":
                new.touch()
            else:
                apsw.Connection(str(new)).execute("PRAGMA page_size=4096; VACUUM").close()
                assert new.stat().st_size > 0
            result = build_index(config, IndexOptions(rebuild=rebuild), HashEmbedder(64))
            assert result.chunks > 0 and "texts" in _tables(new), (rebuild, make)
    assert recall(config, "kitchen quote", RecallOptions(k=1)).hits
    # and an index vault made is rebuilt over, as ever
    assert build_index(config, IndexOptions(rebuild=True), HashEmbedder(64)).rebuilt


def test_a_folder_at_the_index_path_is_one_error_line_even_for_rebuild(
        tmp_path: Path, workspace: Path, clock: Clock) -> None:
    add_notes(workspace)
    config = _vault(tmp_path, workspace, clock)
    config.index_path.mkdir(parents=True)
    (config.index_path / "keep.txt").write_text("mine")
    expected = [f"Error: the index {config.index_path} is a folder, not a file",
                "Hint: move the folder away, or set [index] path to a file"]
    for args in (["index", "--rebuild"], ["index"], ["recall", "kitchen"]):
        proc = run_cli(*args, "--config", str(config.file))
        assert proc.returncode == 1, (args, proc.stderr)
        assert proc.stderr.splitlines() == expected, args
    assert (config.index_path / "keep.txt").read_text() == "mine"
    assert [p.name for p in config.index_path.parent.iterdir()
            if ".rebuild-" in p.name] == []  # (no half-built index left behind either)


# A `vault index --rebuild` that stops (to be killed) once its new file holds the first files.
_DYING_REBUILD = """
import sys, time
from vault.config import load_config
from vault.embed import HashEmbedder
from vault.index import IndexOptions, build_index

def stop(phase, done, total):
    print("ready", flush=True)
    time.sleep(60)

build_index(load_config(sys.argv[1]), IndexOptions(rebuild=True), HashEmbedder(64),
            progress=stop)
"""


def test_what_a_killed_rebuild_left_is_removed_by_the_next_run(
        tmp_path: Path, workspace: Path, clock: Clock) -> None:
    add_notes(workspace)
    config = _vault(tmp_path, workspace, clock)
    build_index(config, IndexOptions(), HashEmbedder(64))
    folder = config.index_path.parent
    pid = _kill_when_ready(_DYING_REBUILD, str(config.file))
    left = folder / f".index.db.rebuild-{pid}"
    assert left.stat().st_size > 0
    # a rebuild file of a process that still runs is not touched
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        running = folder / f".index.db.rebuild-{alive.pid}"
        running.write_bytes(b"x")
        Path(f"{left}-journal").write_bytes(b"y")
        build_index(config, IndexOptions(), HashEmbedder(64))  # a plain run sweeps them
        assert sorted(p.name for p in folder.iterdir() if ".rebuild-" in p.name) == [
            running.name]
        # and so does recall's catch-up, and a rebuild
        left.write_bytes(b"z")
        clock.tick()
        (workspace / "new.md").write_text("# New\n\nThe plumber comes on Friday.\n")
        sync(config, now=clock)
        assert recall(config, "plumber Friday", RecallOptions(k=1)).indexed is not None
        assert not left.exists() and running.exists()
        left.write_bytes(b"z")
        assert build_index(config, IndexOptions(rebuild=True), HashEmbedder(64)).rebuilt
        assert not left.exists() and running.exists()
    finally:
        alive.kill()
        alive.wait()

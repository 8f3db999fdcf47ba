"""The index after a crash or next to files it does not own: a hot journal left by a killed
run, leftovers of a killed rebuild, a path that holds another program's database or a folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from conftest import Clock, run_cli, write_config
from test_recall import add_notes
from vault.config import Config, load_config
from vault.embed import HashEmbedder
from vault.index import IndexOptions, build_index
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


def _kill_mid_write(path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _DYING_WRITER, str(path)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
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

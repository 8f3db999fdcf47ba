"""doctor with a small temp folder: the vault's databases are not called bad, nor alerted on,
when only the scratch space is short of room."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import apsw

from conftest import Clock, run_cli, write_config
from test_faults import tmpfs
from vault.alerts import log_path
from vault.config import Config, load_config
from vault.doctor import FAIL, OK, WARN, check_databases, run_drill
from vault.repo import VaultRepo
from vault.sync import sync


def _database(path: Path, rows: int, width: int = 10) -> None:
    conn = apsw.Connection(str(path))
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT)")
    with conn:
        for i in range(rows):
            conn.execute("INSERT INTO t(x) VALUES(?)", (f"{i:0{width}d}",))
    conn.close()


def _vault(tmp_path: Path, sizes: dict[str, tuple[int, int]]) -> Config:
    src = tmp_path / "ws"
    src.mkdir()
    for name, (rows, width) in sizes.items():
        _database(src / name, rows, width)
    config = load_config(write_config(tmp_path / "vault.toml", {"a": src}))
    VaultRepo.init(config.vault.path, config.vault.branch)
    assert sync(config).ok  # (now: an old last sync would fail doctor for that)
    return config


def _doctor(config: Config, scratch: Path, *args: str) -> tuple[subprocess.CompletedProcess[str],
                                                                 dict[str, str]]:
    proc = run_cli("doctor", "--config", str(config.file), "--json", *args,
                   env={"TMPDIR": str(scratch)})
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    return proc, {"status": checks["databases"]["status"],
                  "detail": checks["databases"]["detail"]}


def test_small_databases_are_rebuilt_one_at_a_time(tmp_path: Path) -> None:
    """Each fits the temp folder, all three together do not: they used to stay until the end,
    and the third was 'bad dump: database or disk is full' (FAIL, an alert)."""
    config = _vault(tmp_path, {f"{n}.db": (50, 10) for n in ("coll", "b", "c")})
    with tmpfs(tmp_path / "tiny", "16k") as tiny:
        proc, databases = _doctor(config, tiny)
        assert list(tiny.iterdir()) == []
    assert databases == {"status": OK,
                         "detail": "3 SQLite database(s) rebuild and pass integrity_check"}
    assert not log_path(config).exists()


def test_a_temp_folder_too_small_for_one_database_is_a_warning(tmp_path: Path) -> None:
    config = _vault(tmp_path, {"big.db": (2000, 60), "small.db": (5, 10)})
    with tmpfs(tmp_path / "tiny", "32k") as tiny:
        proc, databases = _doctor(config, tiny, "--drill")
        drill = json.loads(proc.stdout)["drill"]
        repo = VaultRepo(config.vault.path, "main")
        before, tempfile.tempdir = tempfile.tempdir, str(tiny)
        try:
            check = check_databases(repo)
            drilled = run_drill(config, repo)
        finally:
            tempfile.tempdir = before
    assert databases["status"] == WARN, databases
    assert databases["detail"].startswith(
        f"cannot check: 1 of 2 not checked: no space in {tiny} to rebuild a/big.db; 1 rebuild "
        "and pass integrity_check"), databases
    assert "bad dump" not in databases["detail"]
    assert check.status == WARN and check.detail == databases["detail"]
    # The drill cannot prove the vault either, and says why, without blaming it.
    assert drill["problems"] == [f"cannot drill: no space in {tiny} for the restored copy "
                                 "(not the vault's fault: set TMPDIR to a folder with more "
                                 "room)"]
    assert drilled.problems == tuple(drill["problems"])
    # No alert from the databases check (only the drill that could not run: one line)
    # (the line says the drill's own reason: before, only "the restore drill failed")
    why = f"the restore drill failed: {drill['problems'][0]}"
    logged = [json.loads(line)["error"] for line in log_path(config).read_text().splitlines()]
    assert logged == [why]
    assert proc.stderr == f"Error: {why}\n"
    proc, databases = _doctor(config, tmp_path)  # (room enough: checked, and fine)
    assert proc.returncode == 0 and databases["status"] == OK


def test_a_dump_that_fills_its_database_is_still_a_bad_dump(tmp_path: Path,
                                                           clock: Clock) -> None:
    """'database or disk is full' from the dump itself (it caps max_page_count), with room to
    spare in the temp folder: the vault's copy is bad, and doctor fails."""
    config = _vault(tmp_path, {"a.db": (50, 10)})
    repo = VaultRepo(config.vault.path, "main")
    head = repo.head_id()
    assert head is not None
    dump = repo.read_blob(repo.files(head)["a/a.db"][0])
    capped = dump.replace(b"BEGIN TRANSACTION;\n",
                          b"BEGIN TRANSACTION;\nPRAGMA max_page_count=1;\n")
    assert capped != dump
    repo.commit(head, {"a/a.db": (repo.write_blob(capped), 0o100644)}, "capped", clock.tick(),
                "testhost")
    check = check_databases(repo)
    assert check.status == FAIL
    assert check.detail == "1 of 1 do not rebuild: a/a.db: bad dump: database or disk is full"

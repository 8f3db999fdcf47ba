"""A database zeroed by a crash (the whole file, or its first page, no journal beside it) is
corrupt: never committed as a new version, rolled back, and named by doctor."""

from __future__ import annotations

import os
from pathlib import Path

import apsw

from conftest import Clock, age, git, write_config
from vault.config import Config, load_config
from vault.doctor import FAIL, check_memory_files
from vault.repo import VaultRepo
from vault.sqlite_dump import is_dump
from vault.sync import PAGE_ONE_ZEROED, sync


def _database(path: Path, rows: int = 300) -> None:
    conn = apsw.Connection(str(path))  # (journal_mode DELETE: no journal left beside it)
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT)")
    with conn:
        for i in range(rows):
            conn.execute("INSERT INTO t(x) VALUES(?)", (f"row {i}",))
    conn.close()


def _count(path: Path) -> int:
    conn = apsw.Connection(str(path))
    try:
        return int(conn.execute("SELECT count(*) FROM t").fetchall()[0][0])
    finally:
        conn.close()


def _setup(tmp_path: Path, clock: Clock, rollback: bool = True) -> tuple[Config, Path]:
    src = tmp_path / "ws"
    src.mkdir()
    _database(src / "z.db")
    extra = "[health]\nauto_rollback = true" if rollback else ""
    config = load_config(write_config(tmp_path / "vault.toml", {"a": src}, extra=extra))
    VaultRepo.init(config.vault.path, config.vault.branch)
    assert sync(config, now=clock).added == ("a/z.db",)
    return config, src / "z.db"


def _zero(path: Path, size: int | None = None) -> None:
    with path.open("r+b") as handle:
        handle.write(bytes(os.path.getsize(path) if size is None else size))
    age(path)


def _head_blob(config: Config, vpath: str) -> bytes:
    return VaultRepo(config.vault.path, "main").read_blob(
        git(config.vault.path, "rev-parse", f"HEAD:{vpath}").strip())


def test_a_wholly_zeroed_database_is_corrupt_and_rolled_back(tmp_path: Path,
                                                             clock: Clock) -> None:
    config, db = _setup(tmp_path, clock)
    head = git(config.vault.path, "rev-parse", "HEAD").strip()
    _zero(db)
    assert not list(db.parent.glob("z.db-*"))  # no journal, no WAL: the walk cannot tell
    memory = check_memory_files(config, VaultRepo(config.vault.path, "main"))
    assert memory.check.status == FAIL and "a/z.db" in memory.check.detail
    clock.tick()
    result = sync(config, now=clock)
    assert [c.path for c in result.corrupt] == ["a/z.db"]
    assert "it is all zeros" in result.corrupt[0].reason
    assert result.commit is None and not result.ok  # (was: committed as 'M a/z.db', exit 0)
    assert git(config.vault.path, "rev-parse", "HEAD").strip() == head
    assert is_dump(_head_blob(config, "a/z.db"))
    assert [r.path for r in result.rollbacks] == ["a/z.db"]
    assert _count(db) == 300
    kept = list(db.parent.glob("z.db.corrupt-*"))
    assert len(kept) == 1 and not kept[0].read_bytes().strip(b"\0")
    memory = check_memory_files(config, VaultRepo(config.vault.path, "main"))
    assert memory.check.status == "ok" and memory.corrupt == ()


def test_a_database_with_page_one_zeroed_and_no_journal_is_corrupt(tmp_path: Path,
                                                                   clock: Clock) -> None:
    config, db = _setup(tmp_path, clock, rollback=False)
    _zero(db, 4096)
    assert db.read_bytes().strip(b"\0")  # (the pages past the first are still there)
    memory = check_memory_files(config, VaultRepo(config.vault.path, "main"))
    assert memory.check.status == FAIL
    assert [(c[0], c[2]) for c in memory.corrupt] == [("a/z.db", PAGE_ONE_ZEROED)]
    clock.tick()
    result = sync(config, now=clock)
    assert [(c.path, c.reason) for c in result.corrupt] == [("a/z.db", PAGE_ONE_ZEROED)]
    assert result.commit is None and result.modified == ()
    assert is_dump(_head_blob(config, "a/z.db"))


def test_zeros_where_the_vault_held_no_database_are_a_new_version(tmp_path: Path,
                                                                  clock: Clock) -> None:
    src = tmp_path / "ws"
    src.mkdir()
    (src / "blob.bin").write_bytes(b"plain bytes\n" * 400)
    config = load_config(write_config(tmp_path / "vault.toml", {"a": src}))
    VaultRepo.init(config.vault.path, config.vault.branch)
    sync(config, now=clock)
    (src / "blob.bin").write_bytes(bytes(4096))  # a file of the user's, not a database
    (src / "new.bin").write_bytes(bytes(4096))  # nothing to compare with
    clock.tick()
    result = sync(config, now=clock)
    assert result.ok and result.corrupt == ()
    assert result.modified == ("a/blob.bin",) and result.added == ("a/new.bin",)

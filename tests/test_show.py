"""vault show --sql: one read-only statement against a database as it was, nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import Clock, run_cli
from vault.config import Config
from vault.errors import UsageError, VaultError
from vault.repo import VaultRepo
from vault.show import query_dump, show_file
from vault.sync import sync


@pytest.fixture
def dump(config: Config, vault: VaultRepo, clock: Clock) -> bytes:
    """The workspace's memory.db as the vault stores it."""
    sync(config, now=clock)
    return show_file(config, vault, "agent/memory.db", "HEAD", clock.now).data


def test_sql_reads_keep_working(dump: bytes) -> None:
    assert query_dump(dump, "SELECT count(*) FROM memories").rows == ((5,),)
    assert query_dump(dump, "  SELECT 1 ;  -- a trailing comment\n").rows == ((1,),)
    info = query_dump(dump, "PRAGMA table_info(memories)")
    assert info.columns[:3] == ("cid", "name", "type")
    assert [r[1] for r in info.rows] == ["id", "content", "embedding"]
    assert query_dump(dump, "SELECT name FROM pragma_table_info('memories')").rows[0] == ("id",)
    assert query_dump(dump, "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r "
                            "WHERE n < 3) SELECT n FROM r").rows == ((1,), (2,), (3,))
    # SQLite counts these as writes; they only read, and the copy is opened read-only
    assert query_dump(dump, "PRAGMA journal_mode").rows == (("wal",),)
    assert query_dump(dump, "pragma user_version").rows == ((0,),)
    with pytest.raises(VaultError, match="^SQL error: .*readonly"):
        query_dump(dump, "PRAGMA user_version = 5")  # a PRAGMA that writes still cannot


def test_sql_runs_one_statement(dump: bytes) -> None:
    for sql in ("select 1; select 2", "select 1; select 2;", "select 1;\nbogus",
                "select 1; ATTACH 'x.db' AS x"):
        with pytest.raises(UsageError, match=r"^--sql runs one statement; this query has more "
                                             r"than one$"):
            query_dump(dump, sql)


@pytest.mark.parametrize("sql, why", [
    ("VACUUM INTO '{out}'", "it writes"),
    ("VACUUM", "it writes"),
    ("INSERT INTO memories(content) VALUES ('x')", "it writes"),
    ("CREATE TEMP TABLE t(a)", "it writes"),
    ("ATTACH '{out}' AS other", "it reaches another database"),
    ("DETACH main", "it reaches another database"),
])
def test_sql_refuses_writes_and_other_databases(dump: bytes, tmp_path: Path, sql: str,
                                                why: str) -> None:
    out = tmp_path / "copy.db"  # the tests run in tmp_path: a relative name lands there
    statement = sql.format(out=out.name)
    with pytest.raises(UsageError) as err:
        query_dump(dump, statement)
    assert str(err.value) == f"--sql is read-only: refusing `{statement}` ({why})"
    assert not out.exists()


def test_cli_show_sql_refusals(config: Config, dump: bytes, tmp_path: Path) -> None:
    out = tmp_path / "x.db"
    vacuum = run_cli("show", "agent/memory.db", "--sql", f"VACUUM INTO '{out}'",
                     "--config", str(config.file))
    assert vacuum.returncode == 2
    assert vacuum.stderr.splitlines()[0] == (
        f"Error: --sql is read-only: refusing `VACUUM INTO '{out}'` (it writes)")
    assert not out.exists()
    two = run_cli("show", "agent/memory.db", "--sql", "select 1; select 2",
                  "--config", str(config.file))
    assert (two.returncode, two.stdout) == (2, "")
    assert two.stderr.splitlines()[0] == (
        "Error: --sql runs one statement; this query has more than one")
    pragma = run_cli("show", "agent/memory.db", "--sql", "PRAGMA table_info(memories)", "--json",
                     "--config", str(config.file))
    assert pragma.returncode == 0, pragma.stderr
    assert [r[1] for r in json.loads(pragma.stdout)["rows"]] == ["id", "content", "embedding"]

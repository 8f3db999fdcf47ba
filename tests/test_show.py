"""vault show --sql: one read-only statement against a database as it was, nothing else."""

from __future__ import annotations

import hashlib
import itertools
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import apsw
import pytest

from conftest import Clock, run_cli, write_config
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
    # a PRAGMA that writes still cannot: refused as any write is (see test_cli_show_sql_pragmas)
    with pytest.raises(UsageError, match=r"^--sql is read-only: refusing `PRAGMA user_version = 5`"):
        query_dump(dump, "PRAGMA user_version = 5")


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


def _craft(kind: bytes, prefix: str, body: Callable[[int], bytes]) -> bytes:
    """An object body (of kind, for git's hash) whose id starts with prefix."""
    for i in itertools.count():
        data = body(i)
        if hashlib.sha1(kind + b" %d\0" % len(data) + data).hexdigest().startswith(prefix):
            return data
    raise AssertionError  # unreachable


def test_commit_prefix_shared_with_a_blob_or_another_commit(config: Config, vault: VaultRepo,
                                                           clock: Clock, workspace: Path) -> None:
    import pygit2

    head = ""
    while not any(c in "abcdef" for c in head[:4]):  # WHEN takes 4 hex digits with a letter
        (workspace / "MEMORY.md").write_text(f"# Memory {clock.tick()}\n")
        sync(config, now=clock)
        head = vault.head_id() or ""
    prefix = head[:4]
    git = pygit2.Repository(str(config.vault.path))
    blob = git.create_blob(_craft(b"blob", prefix, lambda i: b"filler %d\n" % i))
    assert str(blob).startswith(prefix)
    want = (workspace / "MEMORY.md").read_text()
    args = ("show", "agent/MEMORY.md", "--at", prefix, "--config", str(config.file))
    shown = run_cli(*args)
    assert (shown.returncode, shown.stdout, shown.stderr) == (0, want, "")
    # packed objects (a vault never packs, a user-made one may) are found too
    git.references.create("refs/tags/filler", blob)  # (repack takes reachable objects)
    subprocess.run(["git", "-C", str(config.vault.path), "repack", "-a", "-d", "-q"], check=True)
    assert not (config.vault.path / "objects" / prefix[:2] / str(blob)[2:]).exists()
    assert run_cli(*args).stdout == want

    tree = git[head].peel(pygit2.Tree).id
    other = git.odb.write(pygit2.GIT_OBJECT_COMMIT, _craft(
        b"commit", prefix, lambda i: f"tree {tree}\nauthor a <a@x> 1 +0000\n"
                                     f"committer a <a@x> 1 +0000\n\nfiller {i}\n".encode()))
    assert str(other).startswith(prefix)
    both = run_cli(*args)
    assert both.returncode == 2
    assert both.stderr.splitlines() == [
        f"Error: ambiguous commit prefix '{prefix}': give more characters",
        f"Hint: it starts the commits {', '.join(sorted([head[:12], str(other)[:12]]))}"]
    assert run_cli("show", "agent/MEMORY.md", "--at", head[:12], "--config",
                   str(config.file)).stdout == want


def test_sql_text_that_is_not_utf8(config: Config, vault: VaultRepo, clock: Clock,
                                   workspace: Path) -> None:
    db = apsw.Connection(str(workspace / "bad.db"))
    db.execute("CREATE TABLE t(a, b); INSERT INTO t VALUES ('fine', x'ff'), "
               "(CAST(x'ff00fe' AS TEXT), 2), (CAST(x'41ff' AS TEXT), NULL)")
    db.close()
    sync(config, now=clock)
    args = ("show", "agent/bad.db", "--config", str(config.file), "--sql")
    # like the sqlite3 shell's bytes on a terminal: each invalid byte shows as U+FFFD
    text = run_cli(*args, "SELECT a, b, a AS a FROM t ORDER BY rowid DESC;  -- newest first")
    assert (text.returncode, text.stderr) == (0, "")
    assert text.stdout == "a\tb\ta\nA\ufffd\tNULL\tA\ufffd\n\ufffd\\x00\ufffd\t2\t\ufffd\\x00\ufffd\n" \
                          "fine\tx'ff'\tfine\n"  # (a NUL written as an escape)
    doc = json.loads(run_cli(*args, "SELECT a, b FROM t WHERE b = 2", "--json").stdout)
    assert (doc["columns"], doc["rows"]) == (["a", "b"], [["\ufffd\x00\ufffd", 2]])
    blob = json.loads(run_cli(*args, "SELECT CAST(a AS BLOB) FROM t WHERE b = 2", "--json").stdout)
    assert blob["rows"] == [["x'ff00fe'"]]
    explain = run_cli(*args, "EXPLAIN SELECT a FROM t WHERE a = CAST(x'ff' AS TEXT)")
    assert (explain.returncode, explain.stdout) == (1, "")
    assert explain.stderr.splitlines() == [
        "Error: SQL error: the result holds TEXT that is not valid UTF-8",
        "Hint: select CAST(column AS BLOB) or hex(column) to see its bytes"]


def test_show_a_file_path_with_dot_dot(config: Config, vault: VaultRepo, clock: Clock,
                                       workspace: Path) -> None:
    sync(config, now=clock)
    want = (workspace / "MEMORY.md").read_text()
    for path in (f"{workspace}/../{workspace.name}/memory/../MEMORY.md",
                 f"{workspace}/./MEMORY.md", f"{workspace.name}/memory/../MEMORY.md"):
        shown = run_cli("show", path, "--config", str(config.file), cwd=workspace.parent)
        assert (shown.returncode, shown.stdout, shown.stderr) == (0, want, ""), path


def test_show_before_the_first_sync(config: Config, vault: VaultRepo) -> None:
    for at in ("HEAD", "HEAD~1", "abc1"):
        proc = run_cli("show", "agent/MEMORY.md", "--at", at, "--config", str(config.file))
        assert (proc.returncode, proc.stdout) == (1, ""), at
        assert proc.stderr.splitlines() == ["Error: the vault has no commits yet",
                                            "Hint: run `vault sync` first"], at


def test_cli_show_sql_pragmas(config: Config, dump: bytes) -> None:
    args = ("show", "agent/memory.db", "--config", str(config.file), "--sql")
    for pragma in ("PRAGMA user_version=5", "pragma main.application_id = 7",
                   "PRAGMA journal_mode=DELETE", "PRAGMA incremental_vacuum(1)"):
        proc = run_cli(*args, pragma)
        assert (proc.returncode, proc.stdout) == (2, ""), pragma
        assert proc.stderr.splitlines() == [
            f"Error: --sql is read-only: refusing `{pragma}` (it writes)",
            "Hint: run one SELECT or PRAGMA query"], pragma
    # settings of the throwaway connection and its temp database change no file: they run
    for pragma in ("PRAGMA temp.user_version=3", "PRAGMA writable_schema=1",
                   "PRAGMA cache_size=10"):
        proc = run_cli(*args, pragma)
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", ""), pragma
    reads = run_cli(*args, "PRAGMA user_version", "--json")
    assert (reads.returncode, json.loads(reads.stdout)["rows"]) == (0, [[0]])


def test_cli_show_json_gives_any_bytes_back_exactly(config: Config, vault: VaultRepo,
                                                    clock: Clock) -> None:
    """Text that is not UTF-8, and binary files, come back in base64 (said in `encoding`),
    never with U+FFFD where the bytes were."""
    import base64

    root = config.sources[0].root
    files = {"latin.md": b"caf\xe9\n", "blob.bin": bytes(range(256)) * 3,
             "plain.md": "caf\u00e9 \u2615\n".encode()}
    for name, data in files.items():
        (root / name).write_bytes(data)
    sync(config, now=clock)
    for name, data in files.items():
        proc = run_cli("show", f"agent/{name}", "--json", "--config", str(config.file))
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)
        assert doc["size"] == len(data)
        if name == "plain.md":
            assert (doc["encoding"], doc["content"]) == ("utf-8", data.decode())
        else:
            assert doc["encoding"] == "base64"
            assert base64.b64decode(doc["content"]) == data


ENDLESS = "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT count(*) FROM r"


def _opened(pid: int, name: str) -> bool:
    fds = Path(f"/proc/{pid}/fd")
    try:
        return any(str(fd.readlink()).endswith(name) for fd in fds.iterdir())
    except OSError:
        return False


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_query_that_never_ends_stops_on_an_interrupt(config: Config, dump: bytes,
                                                      signum: int) -> None:
    """It ran inside SQLite, where Python's signal handlers never got to run: Ctrl-C and
    SIGTERM did nothing, and only SIGKILL stopped it."""
    proc = subprocess.Popen([sys.executable, "-m", "vault", "show", "agent/memory.db", "--sql",
                             ENDLESS, "--config", str(config.file)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not _opened(proc.pid, "/asof.db") and proc.poll() is None:
            assert time.monotonic() < deadline, "the query never started"
            time.sleep(0.02)
        time.sleep(0.5)  # (in the query by now: the database is open)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, err
    assert [line for line in err.splitlines() if line.strip()] == ["Error: interrupted"]


def test_sql_text_output_keeps_one_value_in_one_column_of_one_line(config: Config,
                                                                   dump: bytes) -> None:
    """A tab or a line break inside a value split it into two columns or two rows, and an
    escape sequence was dropped (or reached the terminal); --json stays exact."""
    query = ("SELECT 'a' || char(9) || 'b' AS \"t\tab\", 'x' || char(10) || 'y' AS n, "
             "'back\\slash' AS s, NULL AS z, char(27) || '[31mRED' AS e, char(1) AS one, "
             "'tea ☕' AS u, char(8232) AS ls")
    proc = run_cli("show", "agent/memory.db", "--sql", query, "--config", str(config.file))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "t\\tab\tn\ts\tz\te\tone\tu\tls",
        "a\\tb\tx\\ny\tback\\\\slash\tNULL\t\\x1b[31mRED\t\\x01\ttea ☕\t\\u2028"]
    doc = run_cli("show", "agent/memory.db", "--sql", query, "--json",
                  "--config", str(config.file))
    assert json.loads(doc.stdout)["rows"] == [
        ["a\tb", "x\ny", "back\\slash", None, "\x1b[31mRED", "\x01", "tea ☕", "\u2028"]]


def test_show_names_a_folder_and_a_missing_path_as_such(config: Config, vault: VaultRepo,
                                                        clock: Clock) -> None:
    """A folder of the commit was "not in commit" (with a hint to look it up in the log), and
    an empty path read "Error:  is not in commit"."""
    sync(config, now=clock)
    folder = run_cli("show", "agent/memory", "--config", str(config.file))
    assert folder.returncode == 2
    assert folder.stderr.splitlines() == [
        f"Error: agent/memory is a folder in commit {vault.head_id()[:10]} (1 file); vault "
        "show prints one file",
        "Hint: `vault restore --at HEAD --to DIR --path agent/memory` writes them all"]
    empty = run_cli("show", "", "--config", str(config.file))
    assert (empty.returncode, empty.stderr.splitlines()[0]) == (
        2, "Error: vault show needs a file's path")


@pytest.mark.parametrize("sql", ["", " ;", "-- only a comment"])
def test_sql_without_a_statement_is_an_error(dump: bytes, sql: str) -> None:
    with pytest.raises(UsageError, match="no statement to run"):
        query_dump(dump, sql)


def test_log_path_given_as_a_files_own_path_is_that_file(tmp_path: Path) -> None:
    """`log --path` with the path of a file on disk (absolute, or from here): that file, its
    `[1]`, spaces and a trailing tab its own (before: `f [1].md` was the glob, matching
    `f 1.md`)."""
    a = tmp_path / "a"
    a.mkdir()
    config = write_config(tmp_path / "vault.toml", {"a": a})
    assert run_cli("init", "--config", str(config)).returncode == 0
    names = ("f [1].md", "f 1.md", "t\t", "t")
    for text in ("old\n", "new\n"):
        for name in names:
            (a / name).write_text(text)
        assert run_cli("sync", "-q", "--config", str(config)).returncode == 0

    def logged(path: str, cwd: Path = tmp_path) -> list[str]:
        proc = run_cli("log", "--path", path, "--json", "--config", str(config), cwd=cwd)
        assert proc.returncode == 0, proc.stderr
        return [c["path"] for e in json.loads(proc.stdout)["commits"] for c in e["changes"]]

    assert logged(str(a / "f [1].md")) == ["a/f [1].md", "a/f [1].md"]
    assert logged("f [1].md", cwd=a) == ["a/f [1].md", "a/f [1].md"]  # as tab completion
    assert logged(str(a / "t\t")) == ["a/t\t", "a/t\t"]
    # a vault path as typed: that path, and a pattern
    assert set(logged("a/f [1].md")) == {"a/f 1.md", "a/f [1].md"}
    # show's hint for a folder names it as a pattern of that folder alone
    (a / "[x]").mkdir()
    (a / "[x]" / "n.md").write_text("n\n")
    assert run_cli("sync", "-q", "--config", str(config)).returncode == 0
    folder = run_cli("show", "a/[x]", "--config", str(config))
    assert folder.returncode == 2
    assert folder.stderr.splitlines()[1] == \
        "Hint: `vault restore --at HEAD --to DIR --path 'a/\\[x\\]'` writes them all"


def _strict(text: str) -> object:
    """Parse JSON as the standard has it: no Infinity, -Infinity or NaN."""
    def refuse(constant: str) -> object:
        raise ValueError(f"not JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def test_sql_json_gives_infinite_reals_as_valid_json(config: Config, dump: bytes) -> None:
    """REAL ±inf came out as Infinity and -Infinity, which is not JSON: now as the dump writes
    them, SQL literals (1e999, -1e999), as a BLOB is given as x'..'; a NaN (SQLite has none:
    it stores NULL) would be null."""
    query = "SELECT 1e999 AS up, -1e999 AS down, 1.5 AS x, x'00ff' AS b"
    proc = run_cli("show", "agent/memory.db", "--sql", query, "--json",
                   "--config", str(config.file))
    assert proc.returncode == 0, proc.stderr
    assert _strict(proc.stdout)["rows"] == [["1e999", "-1e999", 1.5, "x'00ff'"]]  # type: ignore[index]
    from vault.cliutil import finite_floats

    assert finite_floats({"a": [float("nan"), (float("inf"), 2.0)]}) == {"a": [None, ["1e999", 2.0]]}

"""CLI edges: closed standard streams, arguments that are not UTF-8, a huge -k, a reader that
stops before the help, empty option values, and status's pending document."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import apsw
import pytest

from conftest import run_cli, write_config
from vault.repo import VaultRepo


def _cli_vault(tmp_path: Path, workspace: Path) -> dict[str, str]:
    """An initialised, synced vault for the workspace (hash embedder); its environment."""
    config = write_config(tmp_path / "vault.toml", {"agent": workspace},
                          extra='[index]\nmodel = "hash:64"')
    env = {"VAULT_CONFIG": str(config)}
    for args in (["init"], ["sync"]):
        proc = run_cli(*args, env=env)
        assert proc.returncode == 0, proc.stderr
    return env


def _run_with(redirections: str, *args: str | bytes,
              env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m vault ARGS` with some of its standard streams closed (`>&-`, `<&-`), the
    way a shell, cron or a supervisor may start it."""
    return subprocess.run(["sh", "-c", f'exec "$0" -m vault "$@" {redirections}',
                           sys.executable, *args], capture_output=True, text=True,
                          env={**os.environ, **env}, check=False, timeout=120)


def _commits(tmp_path: Path) -> int:
    repo = VaultRepo.open(tmp_path / "memory-vault", "main")
    return len(list(repo.walk()))


# --- closed stdin, stdout, stderr ----------------------------------------------------------


def test_sync_with_stdout_and_stderr_closed_records_the_change(
        tmp_path: Path, workspace: Path) -> None:
    env = _cli_vault(tmp_path, workspace)
    before = _commits(tmp_path)
    (workspace / "MEMORY.md").write_text("# Memory\n\n- The user prefers coffee now.\n")
    proc = _run_with(">&- 2>&-", "sync", env=env)
    assert proc.returncode == 0
    assert _commits(tmp_path) == before + 1
    (workspace / "MEMORY.md").write_text("# Memory\n\n- And green tea.\n")
    quiet = _run_with(">&-", "sync", "-q", env=env)
    assert (quiet.returncode, quiet.stderr) == (0, "")
    assert _commits(tmp_path) == before + 2
    nothing = _run_with(">&-", "sync", env=env)  # (the quick path: nothing changed)
    assert (nothing.returncode, nothing.stderr) == (0, "")


def test_a_usage_error_with_stderr_closed_keeps_its_exit_code(
        tmp_path: Path, workspace: Path) -> None:
    env = _cli_vault(tmp_path, workspace)
    assert _run_with("2>&-", "sync", "--source", "nosuch", env=env).returncode == 2


def test_restore_with_stdout_closed_writes_the_files(tmp_path: Path, workspace: Path) -> None:
    env = _cli_vault(tmp_path, workspace)
    out = tmp_path / "restored"
    proc = _run_with(">&-", "restore", "--at", "HEAD", "--path", "agent/MEMORY.md",
                     "--to", str(out), env=env)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert (out / "agent" / "MEMORY.md").read_text() == (workspace / "MEMORY.md").read_text()


def test_restore_that_must_ask_with_stdin_closed_is_refused(
        tmp_path: Path, workspace: Path) -> None:
    env = _cli_vault(tmp_path, workspace)
    (workspace / "MEMORY.md").write_text("# Memory\n\n- changed\n")
    proc = _run_with("<&-", "restore", "--at", "HEAD", "--path", "agent/MEMORY.md", env=env)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == (
        "Error: refusing to overwrite live files without --yes (no terminal to ask)")
    assert (workspace / "MEMORY.md").read_text() == "# Memory\n\n- changed\n"


def test_recall_queries_from_a_closed_stdin_answers_nothing(
        tmp_path: Path, workspace: Path) -> None:
    env = _cli_vault(tmp_path, workspace)
    proc = _run_with("<&-", "recall", "--queries", "-", "--mode", "lexical", env=env)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


# --- arguments that are not UTF-8 ----------------------------------------------------------


def test_a_query_in_latin1_is_read_as_a_queries_file_is(tmp_path: Path, workspace: Path) -> None:
    (workspace / "MEMORY.md").write_text("# Memory\n\n- Lunch at the café on Fridays.\n")
    env = _cli_vault(tmp_path, workspace)
    proc = subprocess.run([sys.executable, "-m", "vault", "recall", b"caf\xe9", "--mode",
                           "lexical", "--json"], capture_output=True, check=False, timeout=120,
                          env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["query"] == "café"
    assert doc["hits"][0]["path"] == "agent/MEMORY.md"


def test_a_query_that_is_not_text_is_a_usage_error(tmp_path: Path, workspace: Path) -> None:
    env = _cli_vault(tmp_path, workspace)
    proc = subprocess.run([sys.executable, "-m", "vault", "recall", b"\xff\xfekitchen"],
                          capture_output=True, check=False, timeout=120,
                          env={**os.environ, **env})
    assert proc.returncode == 2
    assert proc.stderr.decode().splitlines() == [
        "Error: QUERY: not valid text (neither UTF-8 nor 8-bit text)"]


def test_sql_in_latin1_is_read_as_a_queries_file_is(tmp_path: Path, workspace: Path) -> None:
    env = _cli_vault(tmp_path, workspace)
    proc = subprocess.run([sys.executable, "-m", "vault", "show", "agent/memory.db", "--sql",
                           b"select '\xff' AS x", "--json"], capture_output=True, check=False,
                          timeout=120, env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["rows"] == [["ÿ"]]


# --- -k -------------------------------------------------------------------------------------


def test_a_huge_k_is_a_usage_error(tmp_path: Path, workspace: Path) -> None:
    env = _cli_vault(tmp_path, workspace)
    proc = run_cli("recall", "tea", "--mode", "lexical", "-k", str(2**63 - 1), env=env)
    assert proc.returncode == 2
    assert "Error: Invalid value for '-k': 9223372036854775807 is not in the range " \
        "1<=x<=1000000." in proc.stderr
    ok = run_cli("recall", "tea", "--mode", "lexical", "-k", "1000000", "--json", env=env)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["hits"]
    from vault import cli_recall, recall

    assert cli_recall.MAX_K == recall.MAX_K  # (one limit, written twice)


# --- a reader that stops early --------------------------------------------------------------


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["sync", "--help"]])
def test_help_to_a_reader_that_is_gone_is_a_success(args: list[str]) -> None:
    read, write = os.pipe()
    os.close(read)  # (`vault --help | head -0`: the reader is gone before the first write)
    try:
        proc = subprocess.run([sys.executable, "-m", "vault", *args], stdout=write,
                              stderr=subprocess.PIPE, text=True, check=False, timeout=120)
    finally:
        os.close(write)
    assert (proc.returncode, proc.stderr) == (0, "")


# --- status --json -------------------------------------------------------------------------


def test_status_pending_has_the_keys_of_a_dry_run(tmp_path: Path, workspace: Path) -> None:
    env = _cli_vault(tmp_path, workspace)
    status = json.loads(run_cli("status", "--json", env=env).stdout)
    dry = json.loads(run_cli("sync", "--dry-run", "--json", env=env).stdout)
    assert set(status["pending"]) == set(dry)
    assert status["pending"]["hooks"] == []


# --- a source whose root is not UTF-8 -------------------------------------------------------


def test_a_database_below_a_root_that_is_not_utf8(tmp_path: Path) -> None:
    root = os.fsencode(tmp_path) + b"/\xffsrc"
    os.mkdir(root)
    with open(root + b"/notes.md", "w") as handle:
        handle.write("# notes\n")
    db = apsw.Connection("file:" + quote(root + b"/m.db"),
                         flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
                         | apsw.SQLITE_OPEN_URI)
    db.execute("CREATE TABLE t(x); INSERT INTO t VALUES ('kept')")
    db.close()
    config = tmp_path / "vault.toml"
    config.write_text(f'[vault]\npath = "{tmp_path / "memory-vault"}"\n\n'
                      '[[sources]]\nname = "a"\npath = "$SRC"\n')
    env = {"VAULT_CONFIG": str(config), "SRC": os.fsdecode(root)}
    assert run_cli("init", env=env).returncode == 0
    for args in (["sync", "--json"], ["status"], ["secrets", "scan"]):
        proc = run_cli(*args, env=env)
        assert proc.returncode == 0, (args, proc.stderr)
    shown = run_cli("show", "a/m.db", "--sql", "SELECT x FROM t", env=env)
    assert shown.stdout == "x\nkept\n"
    out = os.fsdecode(os.fsencode(tmp_path) + b"/out\xe9")  # (aside, into such a folder too)
    aside = run_cli("restore", "--at", "HEAD", "--to", out, "--json", env=env)
    assert aside.returncode == 0, aside.stderr
    os.remove(root + b"/m.db")
    back = run_cli("restore", "--at", "HEAD", "--yes", "--json", env=env)  # (in place)
    assert back.returncode == 0, back.stderr
    for db_path in (root + b"/m.db", os.fsencode(out) + b"/a/m.db"):
        restored = apsw.Connection("file:" + quote(db_path), flags=apsw.SQLITE_OPEN_READONLY
                                   | apsw.SQLITE_OPEN_URI)
        assert list(restored.execute("SELECT x FROM t")) == [("kept",)]
        restored.close()


def test_config_empty_is_a_usage_error(tmp_path: Path, workspace: Path) -> None:
    """`--config ''` (an unset shell variable, say) quietly fell back to the default search."""
    env = _cli_vault(tmp_path, workspace)
    proc = run_cli("status", "--config", "", env=env)
    assert proc.returncode == 2
    assert "needs a file (an empty one would mean the default search)" in proc.stderr
    assert run_cli("status", env={**env, "VAULT_CONFIG": ""}, cwd=tmp_path).returncode == 0


def test_json_given_as_an_options_value_asks_for_no_json(tmp_path: Path,
                                                          workspace: Path) -> None:
    """`--at --json` gives --at the value "--json": the error is not a JSON document."""
    env = _cli_vault(tmp_path, workspace)
    proc = run_cli("show", "--at", "--json", "agent/MEMORY.md", env=env)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("Error: ")
    proc = run_cli("show", "--at", "nonsense", "--json", "agent/MEMORY.md", env=env)
    assert proc.returncode == 2 and json.loads(proc.stdout)["exit_code"] == 2


def test_a_hook_killed_by_a_signal_is_said_to_be(tmp_path: Path, workspace: Path) -> None:
    config = write_config(tmp_path / "vault.toml", {"agent": workspace},
                          extra='[hooks]\npost_sync = "kill -9 $$"')
    env = {"VAULT_CONFIG": str(config)}
    assert run_cli("init", env=env).returncode == 0
    proc = run_cli("sync", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Warning: post_sync hook failed (killed by SIGKILL): kill -9 $$" in proc.stderr


SIGNAL_PROBE = """
import os, signal, sys
target, signame = sys.argv[1], sys.argv[2]
sys.argv = ["vault", *sys.argv[3:]]
module_name, _, attr = target.rpartition(".")
import importlib
module = importlib.import_module(module_name)
real = getattr(module, attr)
def signalled(*args, **kwargs):  # the signal arrives at this real moment, then the work goes on
    os.kill(os.getpid(), getattr(signal, signame))
    return real(*args, **kwargs)
setattr(module, attr, signalled)
from vault import entry
entry.main()
"""


def _signalled(target: str, signame: str, *args: str,
               env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", SIGNAL_PROBE, target, signame, *args],
                          capture_output=True, text=True, env={**os.environ, **env},
                          check=False, timeout=120)


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_a_signal_during_the_quick_check_is_an_interrupt(tmp_path: Path, workspace: Path,
                                                         signame: str) -> None:
    """SIGTERM or SIGHUP while the quick check ran killed vault without a word (143, 129):
    its handlers were installed after it."""
    import signal

    if signame == "SIGINT" and signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        pytest.skip("SIGINT is ignored here (a background job): vault inherits that")
    env = _cli_vault(tmp_path, workspace)
    proc = _signalled("vault.quick.quick_sync", signame, "sync", env=env)
    assert (proc.returncode, proc.stderr) == (130, "Error: interrupted\n")


def test_an_interrupt_after_the_commit_is_made_changes_nothing(tmp_path: Path,
                                                               workspace: Path) -> None:
    """Ctrl-C (or a slow reader's SIGINT) while a sync that had committed printed its report
    cut the JSON document short and said 'interrupted', exit 130, for a commit that was made."""
    env = _cli_vault(tmp_path, workspace)
    (workspace / "MEMORY.md").write_text("# Memory\n\n- changed\n")
    proc = _signalled("vault.cli.emit_json", "SIGINT", "sync", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["commit"] and doc["modified"] == ["agent/MEMORY.md"]


def test_an_interrupt_after_a_restore_still_prints_its_undo(tmp_path: Path,
                                                           workspace: Path) -> None:
    env = _cli_vault(tmp_path, workspace)
    (workspace / "MEMORY.md").write_text("# Memory\n\n- changed\n")
    assert run_cli("sync", "-q", env=env).returncode == 0
    proc = _signalled("vault.cli._render_plan", "SIGINT", "restore", "--at", "HEAD~1", "--yes",
                      env=env)
    assert proc.returncode == 0, proc.stderr
    assert "vault restore --at" in proc.stdout and "prefers tea" in \
        (workspace / "MEMORY.md").read_text()


def test_index_recall_and_show_sql_in_folders_that_are_not_utf8(tmp_path: Path,
                                                                workspace: Path) -> None:
    """The index (in the vault's state folder) and show --sql's temp database (under TMPDIR)
    were opened by a str path, which SQLite cannot take when it is not UTF-8: both crashed."""
    folder = os.fsencode(tmp_path) + b"/vaults\xff"
    tmp = os.fsencode(tmp_path) + b"/tmp\xe9"
    os.mkdir(folder)
    os.mkdir(tmp)
    config = tmp_path / "vault.toml"
    config.write_text('[vault]\npath = "$VP"\n\n[index]\nmodel = "hash:64"\n\n'
                      f'[[sources]]\nname = "agent"\npath = "{workspace}"\n')
    env = {"VAULT_CONFIG": str(config), "VP": os.fsdecode(folder + b"/memory-vault"),
           "TMPDIR": os.fsdecode(tmp)}
    outputs = []
    for args in (["init"], ["sync"], ["index", "--json"], ["recall", "tea", "--json"],
                 ["show", "agent/memory.db", "--sql", "SELECT count(*) AS n FROM memories"]):
        proc = subprocess.run([sys.executable, "-m", "vault", *args], capture_output=True,
                              env={**os.environ, **env}, check=False, timeout=120)
        assert proc.returncode == 0, (args, proc.stderr)
        outputs.append(proc.stdout)
    assert json.loads(outputs[3])["hits"]
    assert outputs[4] == b"n\n5\n"
    assert os.path.exists(folder + b"/memory-vault/vault/index.db")


INDEX_FAILS = r"""
import runpy, sys
import vault.index
def broken(config, commit):
    raise AttributeError("'str' object has no attribute 'get'")
vault.index.index_after_sync = broken
sys.argv = ["vault", *sys.argv[1:]]
runpy.run_module("vault", run_name="__main__", alter_sys=True)
"""


def test_an_unexpected_error_of_after_sync_indexing_is_a_warning(tmp_path: Path,
                                                                 workspace: Path) -> None:
    """README: with [index] after_sync, indexing problems are a warning, not a failed sync.
    Before, an error vault did not foresee (a transcript block of an odd shape made chunking
    raise AttributeError) turned a sync whose commit was made into exit 3."""
    config = write_config(tmp_path / "vault.toml", {"agent": workspace},
                          extra='[index]\nmodel = "hash:64"\nafter_sync = true')
    env = {**os.environ, "VAULT_CONFIG": str(config), "VAULT_HOME": str(tmp_path / "home")}
    assert run_cli("init", env=env).returncode == 0
    proc = subprocess.run([sys.executable, "-c", INDEX_FAILS, "sync", "--json"],
                          capture_output=True, text=True, env=env, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["commit"]
    assert proc.stderr.splitlines() == [
        "Warning: index not updated: unexpected: AttributeError: 'str' object has no "
        "attribute 'get'"]
    logged = [json.loads(line) for line in
              (tmp_path / "home" / "failures.log").read_text().splitlines()]
    assert [entry["command"] for entry in logged] == ["index"]

"""CLI: exit codes and the exact one-line Error messages, --json schemas, help, README coverage."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest

from conftest import run_cli, write_config
from vault.cli import cli
from vault.config import Config
from vault.repo import VaultRepo

ROOT = Path(__file__).resolve().parent.parent


def test_help_lists_exit_codes() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0
    for code in ("0", "1", "2", "3", "10", "11", "130"):
        assert re.search(rf"^\s+{code}\s+\S", proc.stdout, re.M), code
    sync_help = run_cli("sync", "--help")
    assert "--dry-run" in sync_help.stdout and "11" in sync_help.stdout


def test_broken_config_is_exit_2_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "vault.toml").write_text("[vault]\npaht = 'x'\n")
    proc = run_cli("sync", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == f"Error: {tmp_path / 'vault.toml'}: vault.paht: unknown key\n"
    assert "Traceback" not in proc.stderr


def test_no_config_anywhere(tmp_path: Path) -> None:
    proc = run_cli("status", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("Error: no vault.toml found")
    assert proc.stderr.splitlines()[1].startswith("Hint: ")


def test_no_vault_is_exit_10(config_file: Path, tmp_path: Path) -> None:
    proc = run_cli("sync", "--config", str(config_file))
    assert proc.returncode == 10
    assert proc.stderr.splitlines() == [f"Error: no vault at {tmp_path / 'memory-vault'}",
                                        "Hint: run `vault init` first"]


def test_init_sync_status_log_json(config_file: Path, workspace: Path) -> None:
    init = run_cli("init", "--json", "--config", str(config_file))
    assert init.returncode == 0 and json.loads(init.stdout)["created"] is True
    again = run_cli("init", "--config", str(config_file))
    assert again.returncode == 0 and again.stdout.startswith("Already a vault:")
    first = json.loads(run_cli("sync", "--json", "--config", str(config_file)).stdout)
    assert set(first) >= {"commit", "timestamp", "added", "modified", "deleted", "skipped",
                          "unchanged"}
    assert re.fullmatch(r"[0-9a-f]{40}", first["commit"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", first["timestamp"])
    assert len(first["added"]) == 5
    (workspace / "memory.json").write_text("{")  # was valid: now it is corrupt
    second = run_cli("sync", "--json", "--config", str(config_file))
    assert second.returncode == 1
    assert second.stderr.splitlines()[0].startswith(
        "Error: agent/memory.json is corrupt (invalid JSON")
    doc = json.loads(second.stdout)
    assert doc["corrupt"] == [{"path": "agent/memory.json", "reason": doc["corrupt"][0]["reason"]}]
    assert doc["commit"] is None
    assert doc["skipped"] == [{"path": "agent/memory.json",
                               "reason": doc["skipped"][0]["reason"]}]
    status = json.loads(run_cli("status", "--json", "--config", str(config_file)).stdout)
    assert status["last_sync"]["commit"] == first["commit"]
    assert status["lock"]["held"] is False
    assert status["pending"]["skipped"][0]["path"] == "agent/memory.json"
    log = json.loads(run_cli("log", "--json", "--config", str(config_file)).stdout)
    assert [c["commit"] for c in log["commits"]] == [first["commit"]]
    by_path = json.loads(run_cli("log", "--json", "--path", "agent/memory/*.md", "--config",
                                 str(config_file)).stdout)
    assert by_path["commits"][0]["changes"] == [{"status": "A",
                                                 "path": "agent/memory/2026-11-20.md"}]
    since = json.loads(run_cli("log", "--json", "--since", "1h ago", "-n", "5", "--config",
                               str(config_file)).stdout)
    assert len(since["commits"]) == 1
    none = run_cli("log", "--since", "bogus", "--config", str(config_file))
    assert none.returncode == 2 and none.stderr.startswith("Error: cannot understand time 'bogus'")


def test_quiet_sync_prints_nothing_and_failures_exit_1(config_file: Path, tmp_path: Path,
                                                       workspace: Path) -> None:
    assert run_cli("init", "--config", str(config_file)).returncode == 0
    quiet = run_cli("sync", "--quiet", "--config", str(config_file))
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    workspace.rename(tmp_path / "gone")
    failed = run_cli("sync", "--quiet", "--config", str(config_file))
    assert failed.returncode == 1
    assert failed.stderr == (f"Error: source 'agent': folder not found: {workspace}\n"
                             "Hint: is the disk mounted? the vault keeps its last copy\n")
    status = run_cli("status", "--config", str(config_file))
    assert f"Problem:   source 'agent': folder not found: {workspace}\n" in status.stdout
    # The cause gone, status still says the last sync failed (found by a QA sweep: only
    # failures.log knew), until a sync completes.
    (tmp_path / "gone").rename(workspace)
    status = run_cli("status", "--json", "--config", str(config_file))
    failure = json.loads(status.stdout)["last_failure"]
    assert (failure["command"], failure["error"]) == (
        "sync", f"source 'agent': folder not found: {workspace}")
    assert "Problem:" not in run_cli("status", "--config", str(config_file)).stdout
    assert f"vault sync: source 'agent': folder not found: {workspace} (after the last sync" \
        in run_cli("status", "--config", str(config_file)).stdout
    time.sleep(1.1)  # (failures.log keeps whole seconds)
    assert run_cli("sync", "--quiet", "--config", str(config_file)).returncode == 0
    status = run_cli("status", "--json", "--config", str(config_file))
    assert json.loads(status.stdout)["last_failure"] is None


def test_dry_run_human_output(config_file: Path) -> None:
    run_cli("init", "--config", str(config_file))
    proc = run_cli("sync", "--dry-run", "--config", str(config_file))
    assert proc.returncode == 0
    assert proc.stdout.startswith("Dry run: would commit 0 modified, 5 added, 0 deleted")


def test_unexpected_error_is_one_line_exit_3(config_file: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    import vault.hooks
    from vault.cli import main

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    run_cli("init", "--config", str(config_file))
    monkeypatch.setattr(vault.hooks, "sync_with_hooks", boom)  # only the error mapping is tested
    with pytest.raises(SystemExit) as info:
        main(["sync", "--config", str(config_file)])
    assert info.value.code == 3
    err = capsys.readouterr().err
    assert err.splitlines()[0] == "Error: unexpected: RuntimeError: disk on fire"
    assert "Traceback" not in err
    # under cron nobody reads stderr: failures.log (and [alerts]) hear of it as of any failure
    from vault.alerts import log_path
    from vault.config import load_config

    log = log_path(load_config(config_file))
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["command"], e["error"]) for e in lines] == [
        ("sync", "unexpected: RuntimeError: disk on fire")]
    with pytest.raises(SystemExit):
        main(["sync", "--dry-run", "--config", str(config_file)])
    assert len(log.read_text().splitlines()) == 1  # (a dry run is no failed sync)
    capsys.readouterr()
    monkeypatch.setenv("VAULT_DEBUG", "1")
    with pytest.raises(SystemExit):
        main(["sync", "--config", str(config_file)])
    assert "Traceback" in capsys.readouterr().err


def test_an_unexpected_error_in_doctor_reaches_failures_log(
        config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`vault doctor --drill` runs from cron too: a crash there must not pass unheard."""
    import vault.doctor
    from vault.alerts import log_path
    from vault.cli import main
    from vault.config import load_config

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("drill fell over")

    run_cli("init", "--config", str(config_file))
    monkeypatch.setattr(vault.doctor, "doctor", boom)
    with pytest.raises(SystemExit) as info:
        main(["doctor", "--config", str(config_file)])
    assert info.value.code == 3
    entry = json.loads(log_path(load_config(config_file)).read_text())
    assert (entry["command"], entry["error"]) == ("doctor",
                                                  "unexpected: RuntimeError: drill fell over")


def test_stat_cache_that_cannot_be_written_is_a_clear_error(config_file: Path,
                                                             tmp_path: Path) -> None:
    run_cli("init", "--config", str(config_file))
    (tmp_path / "memory-vault" / "vault").mkdir(exist_ok=True)
    (tmp_path / "memory-vault" / "vault" / "stat-cache.json").mkdir()
    proc = run_cli("sync", "--config", str(config_file))
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error: cannot write the stat cache")
    assert "(the vault itself is intact)" in proc.stderr
    assert run_cli("log", "--config", str(config_file)).stdout.count("vault sync") == 1


def _options(command: click.Command) -> set[str]:
    names: set[str] = set()
    for param in command.params:
        if isinstance(param, click.Option):
            names.update(o for o in param.opts if o.startswith("--"))
    return names - {"--help"}


def test_every_cli_option_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    assert isinstance(cli, click.Group)
    for name, command in cli.commands.items():
        assert f"vault {name}" in readme, name
        for option in _options(command):
            assert option in readme, f"vault {name} {option}"


def test_a_reader_that_stops_early_is_not_a_failure(config_file: Path) -> None:
    """`vault log | head -1`: before, click turned the broken pipe into exit 1."""
    assert run_cli("init", "--config", str(config_file)).returncode == 0
    assert run_cli("sync", "--quiet", "--config", str(config_file)).returncode == 0
    for args in (("log",), ("log", "--json"), ("status",)):
        proc = subprocess.Popen([sys.executable, "-m", "vault", *args, "--config",
                                 str(config_file)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # gone before vault writes a line
        assert (proc.wait(timeout=60), proc.stderr.read()) == (0, b"")


def test_a_name_with_a_newline_is_quoted_in_human_output(config_file: Path,
                                                         workspace: Path) -> None:
    """Before: `  A agent/new` then `line.md` on a line of its own (the commit message and
    --json were right)."""
    (workspace / "new\nline.md").write_text("x\n")
    assert run_cli("init", "--config", str(config_file)).returncode == 0
    proc = run_cli("sync", "--config", str(config_file))
    assert proc.returncode == 0, proc.stderr
    assert '  A "agent/new\\nline.md"' in proc.stdout.splitlines()
    log = run_cli("log", "--path", "*line.md", "--config", str(config_file))
    assert '    A "agent/new\\nline.md"' in log.stdout.splitlines(), log.stdout


def test_status_names_the_files_a_sync_would_skip(config: Config, vault: VaultRepo,
                                                   workspace: Path) -> None:
    assert run_cli("sync", "--quiet", "--config", str(config.file)).returncode == 0
    (workspace / ".gitmodules").write_text("[submodule]\n")
    for n in range(6):
        (workspace / f"link{n}").symlink_to(workspace / "MEMORY.md")
    lines = run_cli("status", "--config", str(config.file)).stdout.splitlines()
    skipped = [line for line in lines if line.startswith("Skipped:")]
    assert skipped[0] == ("Skipped:   agent/.gitmodules: git reads a .gitmodules file as "
                          "submodule settings; not stored")
    assert skipped[1] == "Skipped:   agent/link0: symbolic link (not followed)"
    assert len(skipped) == 6 and skipped[-1] == (
        "Skipped:   ... and 2 more (`vault sync --dry-run` lists them all)")


def test_a_rollback_to_a_redacted_version_says_so(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    memory = ws / "memory.json"
    memory.write_text('{"notes": ["likes tea"], '
                      '"github_token": "ghp_Zx8Qw3Er5Ty7Ui9Op1As2Df4Gh6Jk8Lz0Xc3V"}')
    cfg = write_config(tmp_path / "vault.toml", {"agent": ws},
                       extra='\n[secrets]\npolicy = "redact"\n[health]\nauto_rollback = true\n')
    assert run_cli("init", "--config", str(cfg)).returncode == 0
    assert run_cli("sync", "--quiet", "--config", str(cfg)).returncode == 0
    memory.write_text('{"notes": ["likes tea"], "github_token": "ghp_Zx8Q')  # half-written
    past = time.time() - 10
    os.utime(memory, (past, past))
    proc = run_cli("sync", "--config", str(cfg))
    assert proc.returncode == 1
    assert f"Warning: {memory} holds [REDACTED:...] markers: the secrets it held were never " \
           "stored and cannot come back" in proc.stderr
    assert "[REDACTED:github-token:" in memory.read_text()
    memory.write_text('{"notes": [')
    os.utime(memory, (past, past))
    doc = json.loads(run_cli("sync", "--json", "--config", str(cfg)).stdout)
    assert doc["rollbacks"][0]["warning"].endswith("cannot come back")


def test_json_errors_are_json_too(config_file: Path, workspace: Path) -> None:
    """--json promises a document for scripts: a command stopped by an error prints one too
    (ok: false, the message, the hint, the exit code), besides the Error: line on stderr."""
    cases = [(["sync", "--json"], 10), (["status", "--json"], 10), (["log", "--json"], 10)]
    for args, code in cases:
        proc = run_cli(*args, "--config", str(config_file))
        assert proc.returncode == code, proc.stderr
        doc = json.loads(proc.stdout)
        assert doc["ok"] is False and doc["exit_code"] == code
        assert proc.stderr.splitlines()[0] == f"Error: {doc['error']}"
        assert doc["hint"] and f"Hint: {doc['hint']}" in proc.stderr
    assert run_cli("init", "--config", str(config_file)).returncode == 0
    for args in (["log", "--json", "--since", "garbage"], ["restore", "--json", "--at", "garbage"],
                 ["sync", "--json", "--source", "nope"], ["log", "--json", "--no-such-option"]):
        proc = run_cli(*args, "--config", str(config_file))
        assert proc.returncode == 2, (args, proc.stderr)
        doc = json.loads(proc.stdout)
        assert (doc["ok"], doc["exit_code"]) == (False, 2) and doc["error"], args
    # a command that printed its own document and then failed: that document only
    assert run_cli("sync", "--config", str(config_file)).returncode == 0
    (workspace / "memory.json").write_text('{"half": ')
    proc = run_cli("sync", "--json", "--config", str(config_file))
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)  # (one document: two would not parse)
    assert "error" not in doc and doc["corrupt"][0]["path"] == "agent/memory.json"
    # without --json nothing changes: no JSON on stdout
    proc = run_cli("log", "--since", "garbage", "--config", str(config_file))
    assert proc.returncode == 2 and proc.stdout == ""


def test_a_newline_in_a_file_name_never_makes_a_second_error_line(tmp_path: Path) -> None:
    """QA: a corrupt JSON file named "notes\\nError: everything is fine.json" made sync's
    error, status's Problem:/Failed: lines and doctor's lines two lines each, the second a
    fake `Error: everything is fine...`. Every such line escapes the newline now."""
    src = tmp_path / "src"
    src.mkdir()
    config = write_config(tmp_path / "vault.toml", {"a": src})
    bad = src / "notes\nError: everything is fine.json"
    bad.write_text('{"a": 1}')
    assert run_cli("init", "--config", str(config)).returncode == 0
    assert run_cli("sync", "-q", "--config", str(config)).returncode == 0
    bad.write_text('{"a":')
    old = bad.stat().st_mtime - 10
    os.utime(bad, (old, old))  # (not written a moment ago: judged corrupt at once)
    for command in ("sync", "status", "doctor"):
        proc = run_cli(command, "--config", str(config))
        lines = (proc.stdout + proc.stderr).splitlines()
        assert not [line for line in lines if line.startswith("Error: everything")], lines
        assert any("notes\\nError: everything is fine.json" in line for line in lines), lines


def test_status_says_when_the_last_sync_is_in_the_future(tmp_path: Path) -> None:
    """QA: a sync stamped by a clock two hours fast showed as "(just now)". It says how far
    ahead it is, and asks about the clock."""
    from datetime import datetime, timedelta, timezone

    from vault.config import load_config
    from vault.repo import VaultRepo
    from vault.sync import sync

    src = tmp_path / "src"
    src.mkdir()
    (src / "MEMORY.md").write_text("# Memory\n")
    config = load_config(write_config(tmp_path / "vault.toml", {"a": src}))
    VaultRepo.init(config.vault.path, config.vault.branch)
    ahead = datetime.now(timezone.utc) + timedelta(hours=2, minutes=5)
    assert sync(config, now=lambda: ahead).ok
    proc = run_cli("status", "--config", str(config.file))
    assert proc.returncode == 0, proc.stderr
    [line] = [line for line in proc.stdout.splitlines() if line.startswith("Last sync:")]
    assert line.endswith("(2 hours in the future: is a clock wrong?)"), line


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_output_that_cannot_be_written_is_one_line_not_unexpected(config: Config,
                                                                   vault: VaultRepo) -> None:
    """`vault sync > full-disk`: the commit was made, then 'Error: unexpected: OSError', exit 3."""
    for args in (("sync",), ("status",), ("log", "--json")):
        with open("/dev/full", "w") as full:
            proc = subprocess.run([sys.executable, "-m", "vault", *args, "--config",
                                   str(config.file)], stdout=full, stderr=subprocess.PIPE,
                                  text=True, timeout=120)
        assert proc.returncode == 1, (args, proc.stderr)
        assert proc.stderr.splitlines() == [
            "Error: cannot write the output: No space left on device",
            "Hint: what the command did is done; only its output is lost"]
    assert vault.head_id() is not None  # the sync's commit is made

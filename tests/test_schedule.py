"""Cron: one idempotent entry with absolute paths; status shows the next run; overdue warning."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import Clock, run_cli, write_config
from vault.config import Config, load_config
from vault.errors import UsageError
from vault.repo import VaultRepo
from vault.schedule import cron_spec, install, remove, status
from vault.status import status as vault_status
from vault.sync import sync


@pytest.mark.parametrize("every, spec", [("15m", "*/15 * * * *"), ("5m", "*/5 * * * *"),
                                         ("1m", "* * * * *"), ("1h", "0 * * * *"),
                                         ("6h", "0 */6 * * *"), ("1d", "0 3 * * *")])
def test_cron_spec(every: str, spec: str) -> None:
    assert cron_spec(every) == spec


@pytest.mark.parametrize("every", ["7m", "90s", "5h", "2d"])
def test_cron_spec_refuses_what_cron_cannot_say(every: str) -> None:
    with pytest.raises(UsageError):
        cron_spec(every)


def test_install_twice_changes_nothing_and_remove(config: Config, tmp_path: Path) -> None:
    tab = tmp_path / "crontab"
    tab.write_text("MAILTO=me\n0 1 * * * backup.sh # someone else's\n")
    install(config, "15m", tab)
    first = tab.read_text()
    install(config, "15m", tab)
    assert tab.read_text() == first
    lines = [line for line in first.splitlines() if "vault-sync" in line]
    assert len(lines) == 1
    line = lines[0]
    assert line.startswith("*/15 * * * * ")
    assert f"{sys.executable} -m vault sync --quiet --config {config.file}" in line
    assert f">> {config.home / 'vault.log'} 2>&1" in line
    assert "backup.sh # someone else's" in first and "MAILTO=me" in first
    st = status(config, tab, now=datetime(2026, 11, 21, 10, 7))
    assert st.next_run == datetime(2026, 11, 21, 10, 15)
    install(config, "1h", tab)
    hourly = [line for line in tab.read_text().splitlines() if "vault-sync" in line]
    assert len(hourly) == 1 and hourly[0].startswith(("0 * * * * ", "@hourly "))
    assert remove(config, tab) is True
    assert "vault-sync" not in tab.read_text() and "backup.sh" in tab.read_text()
    assert remove(config, tab) is False


def test_the_installed_line_really_runs_a_sync(config: Config, vault: VaultRepo,
                                               tmp_path: Path) -> None:
    tab = tmp_path / "crontab"
    install(config, "15m", tab)
    line = next(x for x in tab.read_text().splitlines() if "vault-sync" in x)
    command = line.split(" ", 5)[5].rsplit(" # vault-sync", 1)[0]
    subprocess.run(command, shell=True, check=True, cwd="/")  # as cron would: from /
    assert vault.head_id() is not None
    assert (config.home / "vault.log").exists()


def test_cli_cron(config_file: Path, tmp_path: Path) -> None:
    tab = tmp_path / "ct"
    installed = json.loads(run_cli("cron", "install", "--every", "30m", "--crontab-file",
                                   str(tab), "--json", "--config", str(config_file)).stdout)
    assert installed["installed"] and installed["schedule"] == "*/30 * * * *"
    st = json.loads(run_cli("cron", "status", "--crontab-file", str(tab), "--json",
                            "--config", str(config_file)).stdout)
    assert st["line"] == installed["line"] and st["next_run"]
    bad = run_cli("cron", "install", "--every", "7m", "--crontab-file", str(tab), "--config",
                  str(config_file))
    assert bad.returncode == 2 and bad.stderr.startswith("Error: --every 7m: use a divisor")
    gone = json.loads(run_cli("cron", "remove", "--crontab-file", str(tab), "--json",
                              "--config", str(config_file)).stdout)
    assert gone == {"removed": True}


def test_status_warns_when_overdue(tmp_path: Path, workspace: Path, clock: Clock) -> None:
    config = load_config(write_config(tmp_path / "vault.toml", {"agent": workspace},
                                      extra="[schedule]\ninterval = '15m'"))
    VaultRepo.init(config.vault.path, "main")
    sync(config, now=clock)
    assert not vault_status(config, now=lambda: clock.now + timedelta(minutes=29)).overdue
    assert vault_status(config, now=lambda: clock.now + timedelta(minutes=31)).overdue
    old = datetime.now(timezone.utc) - timedelta(hours=2)
    workspace.joinpath("MEMORY.md").write_text("changed\n")
    sync(config, now=lambda: old)
    proc = run_cli("status", "--config", str(config.file))
    assert "Warning:   the last sync is older than two intervals (15 min each)" in proc.stdout


def test_a_sync_that_finds_nothing_keeps_the_vault_from_looking_overdue(
        tmp_path: Path, workspace: Path, clock: Clock) -> None:
    config = load_config(write_config(tmp_path / "vault.toml", {"agent": workspace},
                                      extra="[schedule]\ninterval = '15m'"))
    VaultRepo.init(config.vault.path, "main")
    first = sync(config, now=clock)
    assert first.commit is not None
    quiet = sync(config, now=lambda: clock.now + timedelta(minutes=20))  # the agent was idle
    assert quiet.commit is None and quiet.ok
    later = vault_status(config, now=lambda: clock.now + timedelta(minutes=45))
    assert not later.overdue and later.last_run == clock.now + timedelta(minutes=20)
    assert later.last_sync is not None and later.last_sync.id == first.commit
    assert vault_status(config, now=lambda: clock.now + timedelta(minutes=51)).overdue

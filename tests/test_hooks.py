"""[hooks]: pre_sync can stop a sync; post_sync and on_failure get the outcome; timeouts kill."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import Clock, run_cli, write_config
from vault.config import load_config
from vault.hooks import HookError, sync_with_hooks
from vault.repo import VaultRepo


def config_with(tmp_path: Path, workspace: Path, hooks: str):  # type: ignore[no-untyped-def]
    config = load_config(write_config(tmp_path / "vault.toml", {"agent": workspace},
                                      extra="[hooks]\n" + hooks))
    VaultRepo.init(config.vault.path, config.vault.branch)
    return config


def test_post_sync_gets_the_outcome(tmp_path: Path, workspace: Path, clock: Clock) -> None:
    out = tmp_path / "post.env"
    config = config_with(tmp_path, workspace, f'post_sync = "env | grep ^VAULT_ > {out}"\n')
    result, runs = sync_with_hooks(config, now=clock)
    env = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert env["VAULT_EVENT"] == "post_sync"
    assert env["VAULT_COMMIT"] == result.commit
    assert (env["VAULT_ADDED"], env["VAULT_MODIFIED"], env["VAULT_OK"]) == ("5", "0", "1")
    assert [r.returncode for r in runs] == [0]


def test_failing_pre_sync_stops_the_sync(tmp_path: Path, workspace: Path, clock: Clock) -> None:
    marker = tmp_path / "failure.env"
    config = config_with(tmp_path, workspace, (
        'pre_sync = "echo disk not mounted; exit 3"\n'
        f'on_failure = "env | grep ^VAULT_ERROR > {marker}"\n'))
    with pytest.raises(HookError, match=r"pre_sync hook failed \(exit 3\): disk not mounted; "
                                        "no sync ran"):
        sync_with_hooks(config, now=clock)
    assert VaultRepo.open(config.vault.path, "main").head_id() is None
    assert "pre_sync hook failed" in marker.read_text()
    proc = run_cli("sync", "--config", str(config.file))
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == (
        "Error: pre_sync hook failed (exit 3): disk not mounted; no sync ran")


def test_hook_timeout_kills_it(tmp_path: Path, workspace: Path, clock: Clock) -> None:
    config = config_with(tmp_path, workspace, 'pre_sync = "sleep 30"\ntimeout = 1\n')
    with pytest.raises(HookError, match=r"pre_sync hook failed \(timed out\)"):
        sync_with_hooks(config, now=clock)


def test_on_failure_runs_when_a_source_fails(tmp_path: Path, workspace: Path,
                                             clock: Clock) -> None:
    marker = tmp_path / "failed.env"
    config = config_with(tmp_path, workspace,
                         f'on_failure = "env | grep -E \'^VAULT_(OK|ERROR)=\' > {marker}"\n')
    workspace.rename(tmp_path / "gone")
    result, runs = sync_with_hooks(config, now=clock)
    assert not result.ok and [r.event for r in runs] == ["on_failure"]
    env = dict(line.split("=", 1) for line in marker.read_text().splitlines())
    assert env["VAULT_OK"] == "0" and env["VAULT_ERROR"].startswith("agent: source 'agent'")


def test_hooks_in_json_output(tmp_path: Path, workspace: Path) -> None:
    config = config_with(tmp_path, workspace, 'post_sync = "true"\n')
    doc = json.loads(run_cli("sync", "--json", "--config", str(config.file)).stdout)
    assert doc["hooks"] == [{"event": "post_sync", "returncode": 0}]


HOOK = Path(__file__).resolve().parent.parent / "hooks" / "vault-sync-hook.sh"


def run_hook(tmp_path: Path, config_file: Path) -> str:
    """hooks/vault-sync-hook.sh as an agent runs it; what it left in vault.log."""
    import os
    import subprocess
    import sys

    launcher = tmp_path / "vault-bin"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m vault "$@"\n')
    launcher.chmod(0o755)
    home = tmp_path / "hook-home"
    env = {**os.environ, "VAULT_BIN": str(launcher), "VAULT_HOME": str(home),
           "VAULT_CONFIG": str(config_file)}
    proc = subprocess.run(["sh", str(HOOK)], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")  # never in the way
    log = home / "vault.log"
    return log.read_text() if log.exists() else ""


def test_the_generic_hook_script(tmp_path: Path, workspace: Path) -> None:
    """hooks/vault-sync-hook.sh, run for real: a sync, a busy lock (not logged: before, each
    busy run wrote an Error line), a failure (logged, with where to look), always exit 0."""
    from vault.lock import SyncLock

    config_file = write_config(tmp_path / "vault.toml", {"agent": workspace})
    config = load_config(config_file)
    VaultRepo.init(config.vault.path, config.vault.branch)
    assert run_hook(tmp_path, config_file) == ""
    assert VaultRepo.open(config.vault.path, "main").head_id() is not None
    with SyncLock(config.state_dir, command="test"):
        assert run_hook(tmp_path, config_file) == ""
    workspace.rename(tmp_path / "gone")
    log = run_hook(tmp_path, config_file).splitlines()
    assert log[0] == f"Error: source 'agent': folder not found: {workspace}"
    assert log[-1].endswith("vault sync exited 1 (see vault status)")

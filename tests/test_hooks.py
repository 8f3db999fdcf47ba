"""[hooks]: pre_sync can stop a sync; post_sync and on_failure get the outcome; timeouts kill.

And hooks/: the agent hooks, run for real (sh, node), against a real lock and a real vault.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import Clock, git, run_cli, write_config
from vault.config import load_config, vault_home
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


HOOKS_DIR = Path(__file__).resolve().parent.parent / "hooks"
HOOK = HOOKS_DIR / "vault-sync-hook.sh"
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
# Takes the sync lock the way a sync does (vault.lock.SyncLock) and holds it until stdin closes.
HOLDER = """import sys
from pathlib import Path
from vault.lock import SyncLock
with SyncLock(Path(sys.argv[1]), command="test holder"):
    print("locked", flush=True)
    sys.stdin.read()
"""


class LockHolder:
    """Another process holding the vault's sync lock (a cron sync pushing over a slow link)."""

    def __init__(self, state_dir: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(state_dir)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline() == "locked\n"

    def release(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0


def hook_env(tmp_path: Path, config_file: Path, **env: str) -> dict[str, str]:
    """The environment an agent runs a hook in: vault through a launcher that records each exit
    code in tmp_path/attempts, and the data dir in hook-home (unless env says otherwise)."""
    launcher = tmp_path / "vault-bin"
    launcher.write_text(f'#!/bin/sh\n"{sys.executable}" -m vault "$@"\n'
                        f'code=$?\necho $code >> "{tmp_path / "attempts"}"\nexit $code\n')
    launcher.chmod(0o755)
    return {**os.environ, "VAULT_BIN": str(launcher), "VAULT_HOME": str(tmp_path / "hook-home"),
            "VAULT_CONFIG": str(config_file), **env}


def attempts(tmp_path: Path) -> list[str]:
    """The exit codes of the vault runs the hook made, in order."""
    path = tmp_path / "attempts"
    return path.read_text().split() if path.exists() else []


def start_hook(kind: str, tmp_path: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """Start a hook as its agent would: the shell script, or the OpenClaw handler under node."""
    if kind == "sh":
        cmd = ["sh", str(HOOK)]
    else:
        if shutil.which("node") is None:
            pytest.skip("node is not installed")
        # handler.ts is plain JavaScript that is also valid TypeScript: node runs it as it is.
        module = tmp_path / "handler.mjs"
        shutil.copy(HOOKS_DIR / "openclaw" / "handler.ts", module)
        cmd = ["node", "--input-type=module", "-e",
               f"import handler from {json.dumps(module.as_uri())};\n"
               "await handler({ type: 'session', action: 'compact:before' });"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finish(hook: subprocess.Popen[str]) -> None:
    """Wait for a hook: it always ends with exit 0 and says nothing (never in the agent's way)."""
    out, err = hook.communicate(timeout=120)
    assert (hook.returncode, out, err) == (0, "", "")


def run_hook(tmp_path: Path, config_file: Path, kind: str = "sh", **env: str) -> str:
    """Run a hook to its end; what it left in vault.log (in hook-home unless env moves it)."""
    finish(start_hook(kind, tmp_path, hook_env(tmp_path, config_file, **env)))
    log = tmp_path / "hook-home" / "vault.log"
    return log.read_text() if log.exists() else ""


def test_the_generic_hook_script(tmp_path: Path, workspace: Path) -> None:
    """hooks/vault-sync-hook.sh, run for real: a sync (nothing logged), a failure (logged, with
    where to look), always exit 0."""
    config_file = write_config(tmp_path / "vault.toml", {"agent": workspace})
    config = load_config(config_file)
    VaultRepo.init(config.vault.path, config.vault.branch)
    assert run_hook(tmp_path, config_file) == ""
    assert VaultRepo.open(config.vault.path, "main").head_id() is not None
    workspace.rename(tmp_path / "gone")
    log = run_hook(tmp_path, config_file).splitlines()
    assert log[0] == f"Error: source 'agent': folder not found: {workspace}"
    assert re.fullmatch(STAMP + r" vault sync exited 1 \(see vault status\)", log[-1])


@pytest.mark.parametrize("kind", ["sh", "node"])
def test_a_hook_waits_for_a_running_sync(kind: str, tmp_path: Path, workspace: Path) -> None:
    """The memory written while another sync holds the lock reaches the vault: the hook retries
    until that sync ends, then records it (before, exit 11 was swallowed and the note lost)."""
    config_file = write_config(tmp_path / "vault.toml", {"agent": workspace})
    config = load_config(config_file)
    VaultRepo.init(config.vault.path, config.vault.branch)
    holder = LockHolder(config.state_dir)
    with (workspace / "MEMORY.md").open("a") as memory:
        memory.write("- DECISION: use postgres\n")
    hook = start_hook(kind, tmp_path, hook_env(tmp_path, config_file))
    for _ in range(600):  # until the hook has met the busy lock once (a guard, not a timing)
        if attempts(tmp_path) or hook.poll() is not None:
            break
        time.sleep(0.05)
    assert attempts(tmp_path)[:1] == ["11"]
    holder.release()
    finish(hook)
    runs = attempts(tmp_path)
    assert runs[-1] == "0" and set(runs[:-1]) == {"11"}
    assert "DECISION: use postgres" in git(config.vault.path, "show", "main:agent/MEMORY.md")
    log = tmp_path / "hook-home" / "vault.log"
    assert not log.exists() or log.read_text() == ""


@pytest.mark.parametrize("kind", ["sh", "node"])
def test_a_hook_gives_up_after_its_bound(kind: str, tmp_path: Path, workspace: Path) -> None:
    """A lock held past VAULT_HOOK_WAIT: exit 0 (the agent goes on) and one timestamped line."""
    config_file = write_config(tmp_path / "vault.toml", {"agent": workspace})
    config = load_config(config_file)
    VaultRepo.init(config.vault.path, config.vault.branch)
    holder = LockHolder(config.state_dir)
    try:
        log = run_hook(tmp_path, config_file, kind, VAULT_HOOK_WAIT="1")
    finally:
        holder.release()
    assert re.fullmatch(STAMP + r" vault sync skipped: another sync still held the lock "
                                r"after 1 s\n", log)
    assert set(attempts(tmp_path)) == {"11"}
    assert VaultRepo.open(config.vault.path, "main").head_id() is None


@pytest.mark.parametrize("kind", ["sh", "node"])
@pytest.mark.parametrize("data_dir", ["VAULT_HOME", "XDG_DATA_HOME", "HOME"])
def test_a_failure_is_logged_in_the_data_dir(kind: str, data_dir: str, tmp_path: Path,
                                             workspace: Path) -> None:
    """Both hooks log a failed sync to vault.log in the data dir vault itself uses: VAULT_HOME,
    else $XDG_DATA_HOME/vault, else ~/.local/share/vault (the OpenClaw handler logged nothing)."""
    config_file = write_config(tmp_path / "vault.toml", {"agent": workspace})
    config = load_config(config_file)
    VaultRepo.init(config.vault.path, config.vault.branch)
    workspace.rename(tmp_path / "gone")
    env = hook_env(tmp_path, config_file)
    env.pop("VAULT_HOME")
    home = Path(env["HOME"]) / ".local" / "share" / "vault"
    if data_dir == "VAULT_HOME":
        home = tmp_path / "hook-home"
        env["VAULT_HOME"] = str(home)
    elif data_dir == "XDG_DATA_HOME":
        env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
        home = tmp_path / "xdg" / "vault"
    assert vault_home(env) == home  # the rule vault itself follows
    finish(start_hook(kind, tmp_path, env))
    log = (home / "vault.log").read_text().splitlines()
    assert log[0] == f"Error: source 'agent': folder not found: {workspace}"
    assert re.fullmatch(STAMP + r" vault sync exited 1 \(see vault status\)", log[-1])
    assert attempts(tmp_path) == ["1"]


def test_the_claude_code_hook_as_installed(tmp_path: Path, workspace: Path) -> None:
    """The README's install steps: the script in ~/.claude/hooks/, settings.json's commands."""
    config_file = write_config(tmp_path / "vault.toml", {"agent": workspace})
    config = load_config(config_file)
    VaultRepo.init(config.vault.path, config.vault.branch)
    env = hook_env(tmp_path, config_file)
    (Path(env["HOME"]) / ".claude" / "hooks").mkdir(parents=True)
    shutil.copy(HOOK, Path(env["HOME"]) / ".claude" / "hooks")
    settings = json.loads((HOOKS_DIR / "claude-code" / "settings.json").read_text())
    for event in ("PreCompact", "SessionEnd"):
        (command,) = [h["command"] for group in settings["hooks"][event] for h in group["hooks"]]
        proc = subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True,
                              timeout=120, check=False)
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert attempts(tmp_path) == ["0", "0"]
    assert "The user prefers tea." in git(config.vault.path, "show", "main:agent/MEMORY.md")

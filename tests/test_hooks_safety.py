"""[hooks] safety: a hook never holds a sync past its timeout, and a busy sync runs no hook.

Everything runs for real: shells, setsid, `python -m vault` processes, a real lock holder.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import write_config
from test_hooks import LockHolder, attempts, finish, hook_env, start_hook
from vault.config import Config, load_config
from vault.repo import VaultRepo

needs_setsid = pytest.mark.skipif(shutil.which("setsid") is None, reason="no setsid(1)")


def cli(config: Config, *args: str) -> subprocess.CompletedProcess[str]:
    """`vault sync` in a real process; the bound only keeps a hang from stalling the run."""
    return subprocess.run([sys.executable, "-m", "vault", "sync", "--config", str(config.file),
                           *args], capture_output=True, text=True, check=False, timeout=90)


def make_config(tmp_path: Path, workspace: Path, hooks: str) -> Config:
    config = load_config(write_config(tmp_path / "vault.toml", {"agent": workspace},
                                      extra="[hooks]\n" + hooks))
    VaultRepo.init(config.vault.path, config.vault.branch)
    return config


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Path]:
    """A folder where the processes hooks start in their own session write their pids (as
    <pid>.pid); each is killed after the test."""
    folder = tmp_path / "daemons"
    folder.mkdir()
    yield folder
    for pidfile in folder.glob("*.pid"):
        try:
            os.killpg(int(pidfile.stem), signal.SIGKILL)  # (after setsid: its pid is its group)
        except ProcessLookupError:
            pass


def daemon(folder: Path) -> str:
    """A shell command starting a process in its own session that outlives the hook and keeps
    the hook's stdout open."""
    return f"setsid sh -c 'touch {folder}/$$.pid; exec sleep 600'"


def wait_for_daemons(folder: Path, count: int) -> list[int]:
    """The pids of the daemons once count of them have started (a guard, not a timing)."""
    for _ in range(600):
        if len(list(folder.glob("*.pid"))) >= count:
            break
        time.sleep(0.05)
    return sorted(int(p.stem) for p in folder.glob("*.pid"))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@needs_setsid
@pytest.mark.parametrize("event", ["pre_sync", "post_sync"])
def test_a_hook_that_leaves_a_daemon_running_has_succeeded(
        event: str, tmp_path: Path, workspace: Path, daemons: Path) -> None:
    """`setsid daemon &`: the hook's shell exits 0 at once, so the sync goes on at once and
    reports no failure (it waited for the daemon to close stdout: forever for a real one, and
    then said 'timed out'). The daemons keep running, and none keeps the sync lock."""
    config = make_config(tmp_path, workspace, f'{event} = "{daemon(daemons)} &"\ntimeout = 5\n')
    # Three syncs: the first has no lock folder yet, the second starts its daemon under the
    # lock, the third would be busy if that daemon had kept the lock.
    for n in (1, 2, 3):
        (workspace / "MEMORY.md").write_text(f"# Memory\n\n- Note {n}.\n")
        proc = cli(config, "--json")
        assert (proc.returncode, proc.stderr) == (0, "")
        doc = json.loads(proc.stdout)
        assert doc["hooks"] == [{"event": event, "returncode": 0}] and doc["commit"]
        pids = wait_for_daemons(daemons, n)
        assert len(pids) == n and all(alive(pid) for pid in pids)  # (they are their own business)


@needs_setsid
def test_an_overrunning_hook_is_killed_and_not_waited_for(tmp_path: Path, workspace: Path,
                                                          daemons: Path) -> None:
    """A pre_sync past its timeout stops the sync with 'timed out', even when what it runs
    sits in another session that killing its process group does not reach."""
    command = f"{daemon(daemons)}; echo unreachable"
    config = make_config(tmp_path, workspace, f'pre_sync = "{command}"\ntimeout = 3\n')
    proc = cli(config)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == (
        f"Error: pre_sync hook failed (timed out): {command}; no sync ran")
    assert VaultRepo.open(config.vault.path, "main").head_id() is None
    wait_for_daemons(daemons, 1)  # (so that it is killed after the test)


def test_the_last_line_of_a_long_output_is_reported(tmp_path: Path, workspace: Path) -> None:
    """Megabytes of output (more than a pipe holds) neither block the hook nor hide its last
    line, which is what the error names."""
    config = make_config(tmp_path, workspace, (
        "pre_sync = \"head -c 3000000 /dev/zero | tr '\\\\0' x; echo; "
        'echo mount missing; exit 4"\n'))
    proc = cli(config)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == (
        "Error: pre_sync hook failed (exit 4): mount missing; no sync ran")


EVERY_HOOK = ('pre_sync = "echo $VAULT_EVENT >> {log}"\n'
              'post_sync = "echo $VAULT_EVENT >> {log}"\n'
              'on_failure = "echo $VAULT_EVENT: $VAULT_ERROR >> {log}"\n')


def hook_log(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.parametrize("with_pre_sync", [True, False])
def test_a_busy_sync_runs_no_hook(with_pre_sync: bool, tmp_path: Path,
                                  workspace: Path) -> None:
    """Another sync holds the lock: exit 11, no on_failure (busy is not a failure, as the CLI
    already treats it) and no pre_sync for a sync that does not happen."""
    log = tmp_path / "hooklog"
    hooks = EVERY_HOOK.format(log=log)
    if not with_pre_sync:
        hooks = "\n".join(line for line in hooks.splitlines() if "pre_sync" not in line)
    config = make_config(tmp_path, workspace, hooks + "\n")
    assert cli(config).returncode == 0  # (the lock's folder exists, as in a running vault)
    log.unlink()
    holder = LockHolder(config.state_dir)
    try:
        busy = cli(config)
    finally:
        holder.release()
    assert busy.returncode == 11
    assert busy.stderr.startswith("Error: another vault process holds the lock (pid ")
    assert hook_log(log) == []
    assert cli(config).returncode == 0
    assert hook_log(log) == (["pre_sync"] if with_pre_sync else []) + ["post_sync"]


def test_pre_sync_runs_under_the_sync_lock(tmp_path: Path, workspace: Path) -> None:
    """No other sync starts between pre_sync and the sync it guards: one started from inside
    pre_sync is busy (and it runs no pre_sync of its own)."""
    inner = tmp_path / "inner"
    command = (f'[ -n "$INNER" ] && exit 0; INNER=1 "{sys.executable}" -m vault sync --quiet; '
               f"echo $? >> {inner}")
    config = make_config(tmp_path, workspace, f"pre_sync = '{command}'\n")
    assert cli(config).returncode == 0
    # The first sync too (its lock folder did not exist: pre_sync ran without the lock, and a
    # sync it started ran, with its own pre_sync, and so on)
    assert inner.read_text() == "11\n"
    inner.unlink()
    (workspace / "MEMORY.md").write_text("# Memory\n\n- The user prefers coffee now.\n")
    proc = cli(config, "--json")
    assert (proc.returncode, proc.stderr) == (0, "")
    assert json.loads(proc.stdout)["modified"] == ["agent/MEMORY.md"]
    assert inner.read_text() == "11\n"


@pytest.mark.parametrize("kind", ["sh", "node"])
def test_an_agent_hook_waiting_out_a_sync_runs_the_hooks_once(kind: str, tmp_path: Path,
                                                              workspace: Path) -> None:
    """The agent hooks retry `vault sync` while another sync holds the lock: the busy attempts
    run no [hooks] command, so one hook call gives one pre_sync and one post_sync, and no
    on_failure (before: one pre_sync and one on_failure alert per retry)."""
    log = tmp_path / "hooklog"
    config = make_config(tmp_path, workspace, EVERY_HOOK.format(log=log))
    assert config.file is not None
    assert cli(config).returncode == 0
    log.unlink()
    holder = LockHolder(config.state_dir)
    try:
        hook = start_hook(kind, tmp_path, hook_env(tmp_path, config.file, VAULT_HOOK_WAIT="300"))
        for _ in range(2400):  # until two attempts met the lock (a guard, not a timing)
            if len(attempts(tmp_path)) >= 2 or hook.poll() is not None:
                break
            time.sleep(0.05)
    finally:
        holder.release()
    finish(hook)
    runs = attempts(tmp_path)
    assert runs[:2] == ["11", "11"] and runs[-1] == "0" and set(runs[:-1]) == {"11"}
    assert hook_log(log) == ["pre_sync", "post_sync"]


GITHUB = "ghp_" + "abcdefghijklmnopqrstuvwxyz0123456789"
AWS = "AKIA" + "IOSFODNN7EXAMPLQ"
URL_PASSWORD = "hunter2" + "SuperSecret99"


def test_what_a_hook_prints_or_runs_reaches_no_output_or_log_with_its_secrets(
        tmp_path: Path, workspace: Path) -> None:
    """A failing hook's last line (or, when it printed nothing, its command) went as it was
    to stderr, --json, VAULT_ERROR, failures.log (AWS keys) and cron's log."""
    seen = tmp_path / "on_failure.txt"
    config = make_config(tmp_path, workspace, (
        f'pre_sync = "echo token={GITHUB} key {AWS}; exit 3"\n'
        f'on_failure = "printf %s \\"$VAULT_ERROR\\" > {seen}"\n'))
    text, doc = cli(config), cli(config, "--json")
    assert text.returncode == doc.returncode == 1
    failures = (config.home / "failures.log").read_text()
    everything = text.stdout + text.stderr + doc.stdout + doc.stderr + failures + seen.read_text()
    assert GITHUB not in everything and AWS not in everything
    assert "pre_sync hook failed (exit 3): token=[REDACTED:" in text.stderr
    (tmp_path / "2").mkdir()
    (tmp_path / "3").mkdir()
    silent = make_config(tmp_path / "2", workspace, (
        f'pre_sync = "test -n https://user:{URL_PASSWORD}@backup.example.com/ping && exit 7"\n'))
    proc = cli(silent)
    assert proc.returncode == 1 and "pre_sync hook failed (exit 7)" in proc.stderr
    assert URL_PASSWORD not in proc.stderr + (silent.home / "failures.log").read_text()
    after = make_config(tmp_path / "3", workspace, f'post_sync = "echo red {GITHUB}; exit 4"\n')
    proc = cli(after)
    assert "Warning: post_sync hook failed (exit 4): red [REDACTED:" in proc.stderr
    assert GITHUB not in proc.stderr


def test_a_failing_post_sync_hook_that_printed_nothing_is_named_by_its_command(
        tmp_path: Path, workspace: Path) -> None:
    """'Warning: post_sync hook failed (exit 4): ' said nothing of which hook it was."""
    config = make_config(tmp_path, workspace, 'post_sync = "test -d /nonexistent-mount"\n')
    proc = cli(config)
    assert proc.returncode == 0, proc.stderr
    assert "Warning: post_sync hook failed (exit 1): test -d /nonexistent-mount\n" in proc.stderr


def gone(pgid: int) -> bool:
    """Whether no process of the group is left, zombies included (a guard, not a timing)."""
    for _ in range(600):
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_sync_stopped_during_a_hook_stops_the_hook_too(
        signum: int, tmp_path: Path, workspace: Path) -> None:
    """Ctrl-C or a SIGTERM during pre_sync: vault exited 130 and the hook, in a session of its
    own, kept running and did its work later (after the sync it guards was gone)."""
    started, late = tmp_path / "hook.pid", tmp_path / "late.log"
    config = make_config(tmp_path, workspace, (
        f'pre_sync = "echo $$ > {started}; sleep 60; echo late >> {late}"\ntimeout = 600\n'))
    proc = subprocess.Popen([sys.executable, "-m", "vault", "sync", "--config",
                             str(config.file)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    pgid = 0
    try:
        for _ in range(1200):  # until the hook has started (a guard, not a timing)
            if started.exists() and started.read_text().strip():
                pgid = int(started.read_text())
                break
            time.sleep(0.05)
        assert pgid, "the hook never started"
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=90)
        assert proc.returncode == 130, err
        assert gone(pgid), "the hook still runs after vault exited"
        assert not late.exists()
        assert VaultRepo.open(config.vault.path, "main").head_id() is None
    finally:
        proc.kill()
        if pgid:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_a_hook_killed_by_a_signal_is_said_to_be_killed(tmp_path: Path,
                                                        workspace: Path) -> None:
    """'pre_sync hook failed (exit -9)': no shell ever exits -9."""
    config = make_config(tmp_path, workspace, 'pre_sync = "kill -KILL $$"\n')
    proc = cli(config)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == (
        "Error: pre_sync hook failed (killed by SIGKILL): kill -KILL $$; no sync ran")
    from vault.hooks import run_hook

    run = run_hook(config, "post_sync", "kill -TERM $$", {})
    assert (run.returncode, run.why()) == (-signal.SIGTERM, "killed by SIGTERM")
    assert run_hook(config, "post_sync", "exit 4", {}).why() == "exit 4"

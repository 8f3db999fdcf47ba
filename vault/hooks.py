"""[hooks]: commands run before a sync, after it, and when it fails, with the outcome in env vars."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from vault.config import Config
from vault.errors import BusyError, VaultError
from vault.sync import SyncOptions, SyncResult, check_before_state, sync

if TYPE_CHECKING:
    import subprocess

# How much of a hook's output is read back (its last line is what is reported), and how long a
# killed hook may take to die: never wait on a process the kernel cannot kill (an NFS hang).
OUTPUT_TAIL = 64 * 1024
KILL_GRACE = 1.0


class HookError(VaultError):
    """A pre_sync hook failed or timed out: the sync did not run."""


@dataclass(frozen=True)
class HookRun:
    """One hook that ran: its command, exit code (None on timeout) and last line of output."""

    event: str
    command: str
    returncode: int | None
    output: str

    def why(self) -> str:
        """How it ended: 'exit 1', 'timed out' or 'killed by SIGKILL' (a signal, not vault's)."""
        if self.returncode is None:
            return "timed out"
        if self.returncode < 0:  # (subprocess's way of saying a signal ended it)
            import signal

            try:
                return f"killed by {signal.Signals(-self.returncode).name}"
            except ValueError:
                return f"killed by signal {-self.returncode}"
        return f"exit {self.returncode}"

    def said(self) -> str:
        """What vault says of it: its last line of output, else its command (no secrets)."""
        return self.output or _scrub(self.command)


def run_hook(config: Config, event: str, command: str, extra: dict[str, str]) -> HookRun:
    """Run one hook command through the shell; on timeout kill its process group and go on
    (and when vault itself is interrupted meanwhile, kill it and let the interrupt through)."""
    import subprocess  # (only syncs with hooks pay for it)
    import tempfile

    env = {**os.environ, "VAULT_EVENT": event, "VAULT_REPO": str(config.vault.path),
           "VAULT_CONFIG": str(config.file or ""), "VAULT_HOST": config.vault.host, **extra}
    # Output goes to a file, not a pipe: a process the hook leaves running (`daemon &`, setsid)
    # keeps its copy of stdout, and reading a pipe to EOF would wait for it, maybe forever.
    # The hook is done when its shell exits; what it started is its own business.
    with tempfile.TemporaryFile(prefix="vault-hook-") as out:
        proc = subprocess.Popen(command, shell=True, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            code: int | None = proc.wait(timeout=config.hooks.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            code = None
        except BaseException:
            # Ctrl-C or SIGTERM while waiting: the hook, in a session of its own, would get
            # neither and go on after vault exits (a pre_sync doing its work with no sync).
            _kill_group(proc)
            raise
        size = out.seek(0, os.SEEK_END)
        out.seek(max(0, size - OUTPUT_TAIL))
        tail = out.read(OUTPUT_TAIL)
    lines = tail.decode("utf-8", "replace").strip().splitlines()
    # What vault says of a hook goes to the terminal, --json, failures.log, an alert and
    # cron's log: never a secret it printed
    return HookRun(event, command, code, _scrub(lines[-1]) if lines else "")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill a hook's process group and reap its shell (waiting at most KILL_GRACE)."""
    import signal
    import subprocess

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=KILL_GRACE)
    except subprocess.TimeoutExpired:
        pass  # (subprocess reaps it later)
    except BaseException:
        pass  # a second Ctrl-C while reaping: the first one is what is being raised


def _scrub(text: str) -> str:
    from vault.secrets import scrub

    return scrub(text)


def outcome_env(result: SyncResult | None, error: str = "") -> dict[str, str]:
    """What a post_sync or on_failure hook is told about the sync."""
    if result is None:
        return {"VAULT_ERROR": error, "VAULT_OK": "0"}
    return {"VAULT_COMMIT": result.commit or "", "VAULT_ADDED": str(len(result.added)),
            "VAULT_MODIFIED": str(len(result.modified)),
            "VAULT_DELETED": str(len(result.deleted)),
            "VAULT_SKIPPED": str(len(result.skipped)),
            "VAULT_OK": "1" if result.ok and not error else "0",
            "VAULT_ERROR": error or "; ".join(f"{f.source}: {f.message}"
                                              for f in result.failures)}


def _run_pre_sync(config: Config, command: str) -> HookRun:
    """Run pre_sync only when no other sync holds the lock (BusyError, hook not run otherwise),
    holding the lock meanwhile so that no other sync starts between it and this sync."""
    from contextlib import ExitStack

    from vault.lock import SyncLock

    with ExitStack() as held:
        try:
            held.enter_context(SyncLock(config.state_dir))
        except BusyError:
            raise
        except VaultError:
            pass  # a lock that cannot be taken at all (read-only disk): the sync says so
        return run_hook(config, "pre_sync", command, {})


def _check_before_pre_sync(config: Config) -> None:
    """What the sync checks before it takes its lock (no vault, a damaged one, a repository
    vault did not make), so that its error comes before pre_sync: the hook runs only for a
    sync that happens, and the lock's folder is made only where the sync would make it."""
    from vault.repo import VaultRepo

    check_before_state(config, VaultRepo.open(config.vault.path, config.vault.branch))


def sync_with_hooks(config: Config, options: SyncOptions = SyncOptions(),
                    now: Callable[[], datetime] | None = None,
                    syncer: Callable[..., SyncResult] = sync) -> tuple[SyncResult, list[HookRun]]:
    """pre_sync, then the sync, then post_sync (success) or on_failure (anything else).

    A sync that is only busy (another one holds the lock) is not a failure: it raises BusyError
    with no hook run, so a caller that retries does not multiply hook runs."""
    hooks = config.hooks
    runs: list[HookRun] = []
    if options.dry_run:
        return syncer(config, options, now=now), runs

    def failed(message: str, result: SyncResult | None = None) -> None:
        if hooks.on_failure:
            runs.append(run_hook(config, "on_failure", hooks.on_failure,
                                 outcome_env(result, message)))

    if hooks.pre_sync:
        try:
            _check_before_pre_sync(config)
        except VaultError as exc:  # (the sync would raise it: its error, before any hook)
            failed(exc.message)
            raise
        pre = _run_pre_sync(config, hooks.pre_sync)
        runs.append(pre)
        if pre.returncode != 0:
            message = f"pre_sync hook failed ({pre.why()}): {pre.said()}; no sync ran"
            failed(message)
            raise HookError(message, hint="fix or remove [hooks] pre_sync in vault.toml")
    try:
        result = syncer(config, options, now=now)
    except BusyError:
        # Busy is not a failure (the CLI logs none either): this sync did not happen, and the
        # one holding the lock runs its own hooks. (With a pre_sync, only a sync that took the
        # lock in the instant after pre_sync released it gets here.)
        raise
    except VaultError as exc:
        failed(exc.message)
        raise
    push = result.push
    if result.ok and not (push is not None and push.refused):
        if hooks.post_sync:
            runs.append(run_hook(config, "post_sync", hooks.post_sync, outcome_env(result)))
    elif result.ok and push is not None:  # committed, but the remote refused it: act
        failed(f"not pushed: {push.message}", result)
    else:
        failed("", result)
    return result, runs

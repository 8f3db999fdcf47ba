"""[hooks]: commands run before a sync, after it, and when it fails, with the outcome in env vars."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from vault.config import Config
from vault.errors import VaultError
from vault.sync import SyncOptions, SyncResult, sync


class HookError(VaultError):
    """A pre_sync hook failed or timed out: the sync did not run."""


@dataclass(frozen=True)
class HookRun:
    """One hook that ran: its command, exit code (None on timeout) and last line of output."""

    event: str
    command: str
    returncode: int | None
    output: str


def run_hook(config: Config, event: str, command: str, extra: dict[str, str]) -> HookRun:
    """Run one hook command through the shell, killing its process group on timeout."""
    import signal
    import subprocess  # (only syncs with hooks pay for it)

    env = {**os.environ, "VAULT_EVENT": event, "VAULT_REPO": str(config.vault.path),
           "VAULT_CONFIG": str(config.file or ""), "VAULT_HOST": config.vault.host, **extra}
    proc = subprocess.Popen(command, shell=True, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=config.hooks.timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        code = None
    lines = out.decode("utf-8", "replace").strip().splitlines()
    return HookRun(event, command, code, lines[-1] if lines else "")


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


def sync_with_hooks(config: Config, options: SyncOptions = SyncOptions(),
                    now: Callable[[], datetime] | None = None,
                    syncer: Callable[..., SyncResult] = sync) -> tuple[SyncResult, list[HookRun]]:
    """pre_sync, then the sync, then post_sync (success) or on_failure (anything else)."""
    hooks = config.hooks
    runs: list[HookRun] = []
    if options.dry_run:
        return syncer(config, options, now=now), runs

    def failed(message: str, result: SyncResult | None = None) -> None:
        if hooks.on_failure:
            runs.append(run_hook(config, "on_failure", hooks.on_failure,
                                 outcome_env(result, message)))

    if hooks.pre_sync:
        pre = run_hook(config, "pre_sync", hooks.pre_sync, {})
        runs.append(pre)
        if pre.returncode != 0:
            why = "timed out" if pre.returncode is None else f"exit {pre.returncode}"
            message = f"pre_sync hook failed ({why}): {pre.output or hooks.pre_sync}; no sync ran"
            failed(message)
            raise HookError(message, hint="fix or remove [hooks] pre_sync in vault.toml")
    try:
        result = syncer(config, options, now=now)
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

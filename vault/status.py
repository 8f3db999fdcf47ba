"""Status: the last sync, what a sync would record now, and the lock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from typing import TYPE_CHECKING

from vault.config import Config
from vault.lock import LockState, lock_state
from vault.repo import CommitInfo, VaultRepo
from vault.sync import SyncOptions, SyncResult, last_run, sync

if TYPE_CHECKING:
    from vault.alerts import Failure


@dataclass(frozen=True)
class Status:
    """A vault at a glance."""

    vault_path: str
    branch: str
    last_sync: CommitInfo | None  # the last commit
    commits: int
    pending: SyncResult
    lock: LockState
    interval: int = 900
    overdue: bool = False  # the last sync is older than two [schedule] intervals
    remote: str | None = None  # URL without credentials
    unpushed: int = 0
    last_run: datetime | None = None  # the last sync that completed, whether or not it committed
    # The last failure failures.log holds, when it came after the last completed sync (a
    # failure whose cause is gone by now would leave no other trace here)
    last_failure: Failure | None = None


def status(config: Config, now: Callable[[], datetime] | None = None) -> Status:
    """Read the vault's state; pending changes come from a dry-run sync (nothing is written).

    A repository whose branch vault did not make raises what sync raises: no sync of it has
    completed, and none would.
    """
    repo = VaultRepo.open(config.vault.path, config.vault.branch)
    repo.check_refs()  # (a damaged HEAD or packed-refs: every sync fails, so status says so)
    head = repo.head_id()
    synced = repo.check_made_by_vault(head)  # (the last sync's commit, not a hand-made one)
    last = repo.commit_info(head) if head else None
    commits = sum(1 for _ in repo.walk()) if head else 0
    pending = sync(config, SyncOptions(dry_run=True), now=now)
    moment = (now or (lambda: datetime.now(timezone.utc)))()
    ran = last_run(config, synced.time if synced else None)
    from vault.alerts import read_failures  # (it loads the GitHub client's helpers)

    failed = read_failures(config, limit=1)
    # (failures.log keeps whole seconds: one in the second of the last run counts as after it)
    last_failure = failed[0] if failed and (
        ran is None or failed[0].time >= ran.replace(microsecond=0)) else None
    from vault.schedule import sync_interval  # (vault's cron entry, when it has one)

    interval, _why = sync_interval(config, None, moment)
    overdue = ran is not None and (moment - ran).total_seconds() > 2 * interval
    from vault.remote import clean_url, remote_url, unpushed as count_unpushed

    url = remote_url(config)
    unpushed = count_unpushed(config, repo) if url else 0
    return Status(vault_path=str(repo.path), branch=repo.branch, last_sync=last,
                  commits=commits, pending=pending, lock=lock_state(config.state_dir),
                  interval=interval, overdue=overdue,
                  remote=clean_url(url) if url else None, unpushed=unpushed, last_run=ran,
                  last_failure=last_failure)

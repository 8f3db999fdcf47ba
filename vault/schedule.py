"""Cron: one crontab entry that runs `vault sync --quiet` (python-crontab edits, croniter counts)."""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from vault.config import Config
from vault.errors import UsageError, VaultError
from vault.when import parse_duration

MARKER = "vault-sync"  # the comment that identifies vault's entry, so install is idempotent
LOG_NAME = "vault.log"


@dataclass(frozen=True)
class CronEntry:
    """vault's crontab entry as it stands (or would stand)."""

    schedule: str
    command: str
    line: str


@dataclass(frozen=True)
class CronStatus:
    """The entry, if any, and when it runs next."""

    entry: CronEntry | None
    next_run: datetime | None
    crontab: str  # "user crontab" or the file edited


def cron_spec(every: str) -> str:
    """'15m' -> '*/15 * * * *', '1h' -> '0 * * * *', '2h' -> '0 */2 * * *', '1d' -> '0 3 * * *'."""
    seconds = int(parse_duration(every).total_seconds())
    minutes = seconds // 60
    if seconds % 60 or minutes < 1:
        raise UsageError(f"--every {every}: cron counts in whole minutes")
    if minutes < 60 and 60 % minutes == 0:
        return f"*/{minutes} * * * *" if minutes > 1 else "* * * * *"
    if minutes % 60 == 0 and minutes < 24 * 60 and 24 % (minutes // 60) == 0:
        hours = minutes // 60
        return "0 * * * *" if hours == 1 else f"0 */{hours} * * *"
    if minutes == 24 * 60:
        return "0 3 * * *"
    raise UsageError(f"--every {every}: use a divisor of an hour (5m, 10m, 15m, 30m) or of a "
                     "day (1h, 2h, 6h, 12h, 1d)")


def sync_command(config: Config) -> str:
    """The absolute command cron runs: this interpreter, this config, appending to vault's log."""
    log = config.home / LOG_NAME
    parts = [sys.executable, "-m", "vault", "sync", "--quiet"]
    if config.file:
        parts += ["--config", str(config.file)]
    return (f"VAULT_HOME={shlex.quote(str(config.home))} {shlex.join(parts)} "
            f">> {shlex.quote(str(log))} 2>&1")


def _open(crontab_file: Path | None):  # type: ignore[no-untyped-def]
    from crontab import CronTab  # type: ignore[import-untyped]

    try:
        if crontab_file is not None:
            if not crontab_file.exists():
                crontab_file.parent.mkdir(parents=True, exist_ok=True)
                crontab_file.write_text("")
            return CronTab(tabfile=str(crontab_file))
        return CronTab(user=True)
    except (OSError, IOError) as exc:
        raise VaultError(f"cannot read the crontab: {exc}",
                         hint="is cron installed? use --crontab-file PATH for a file") from None


def _write(tab, crontab_file: Path | None) -> None:  # type: ignore[no-untyped-def]
    try:
        if crontab_file is not None:
            tab.write(str(crontab_file))
        else:
            tab.write()
    except (OSError, IOError) as exc:
        raise VaultError(f"cannot write the crontab: {exc}") from None


def install(config: Config, every: str = "15m", crontab_file: Path | None = None) -> CronStatus:
    """Add (or update in place) vault's one entry; installing twice changes nothing."""
    spec = cron_spec(every)
    command = sync_command(config)
    tab = _open(crontab_file)
    jobs = list(tab.find_comment(MARKER))
    job = jobs[0] if jobs else tab.new(command=command, comment=MARKER)
    for extra in jobs[1:]:
        tab.remove(extra)
    job.set_command(command)
    job.setall(spec)
    config.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write(tab, crontab_file)
    return status(config, crontab_file)


def remove(config: Config, crontab_file: Path | None = None) -> bool:
    """Remove vault's entry; False when there was none."""
    tab = _open(crontab_file)
    jobs = list(tab.find_comment(MARKER))
    for job in jobs:
        tab.remove(job)
    if jobs:
        _write(tab, crontab_file)
    return bool(jobs)


def status(config: Config, crontab_file: Path | None = None,
           now: datetime | None = None) -> CronStatus:
    """vault's entry and its next run (local time)."""
    tab = _open(crontab_file)
    where = str(crontab_file) if crontab_file else "user crontab"
    jobs = list(tab.find_comment(MARKER))
    if not jobs:
        return CronStatus(entry=None, next_run=None, crontab=where)
    job = jobs[0]
    spec = " ".join(str(part) for part in job.slices)
    from croniter import croniter  # type: ignore[import-untyped]

    base = (now or datetime.now().astimezone()).replace(tzinfo=None)
    next_run: datetime = croniter(spec, base).get_next(datetime)
    return CronStatus(entry=CronEntry(schedule=spec, command=str(job.command),
                                      line=job.render()), next_run=next_run, crontab=where)

"""Cron: one crontab entry per vault that runs `vault sync --quiet` (python-crontab edits,
croniter counts)."""

from __future__ import annotations

import hashlib
import os
import shlex
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from vault.config import CRON_ENV, Config, user_config_path
from vault.errors import UsageError, VaultError
from vault.when import parse_duration

# The comment that marks vault's entries. Earlier versions wrote it bare, so that every vault
# on the machine took over the same entry; now each entry carries its vault's id after it.
MARKER = "vault-sync"
LOG_NAME = "vault.log"
# Each line a cron run writes to vault.log starts with the run's start time (UTC), so that a
# failure can be dated; the sync's own output is unchanged, and `date` and sed run beside it,
# not before it (a quiet run writes nothing, stamp included). python-crontab writes '%' as
# '\%', which cron turns back. The line's exit status is sed's (0): a failed sync shows in its
# Error: line, in `vault status` and in failures.log.
STAMP = 'sed "s/^/$(date -u +%Y-%m-%dT%H:%M:%SZ) /"'


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


def vault_id(config: Config) -> str:
    """What tells one vault's entry from another's: its config file and its data dir."""
    key = f"{os.path.realpath(config.file) if config.file else ''}\0" \
          f"{os.path.realpath(config.home)}"
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:12]


def marker(config: Config) -> str:
    """The comment on this vault's entry: 'vault-sync:<id>'."""
    return f"{MARKER}:{vault_id(config)}"


def sync_command(config: Config) -> str:
    """The absolute command cron runs: this interpreter, this config, appending to vault's log.

    The variables the config's paths name are set on the line with the values they have now
    (cron passes only HOME, LOGNAME, PATH and SHELL); without them the sync would fail.
    """
    log = config.home / LOG_NAME
    parts = [sys.executable, "-m", "vault", "sync", "--quiet"]
    if config.file:
        parts += ["--config", str(config.file)]
    env = [f"{name}={shlex.quote(value)}" for name, value in config.path_vars
           if name not in CRON_ENV and name != "VAULT_HOME"]
    env.append(f"VAULT_HOME={shlex.quote(str(config.home))}")
    return (f"{' '.join(env)} {shlex.join(parts)} 2>&1 | {STAMP} "
            f">> {shlex.quote(str(log))}")


def _legacy_owner(command: str) -> tuple[str | None, str | None] | None:
    """(config, VAULT_HOME) an old bare-marker entry's command names (None: not named)."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    config: str | None = None
    home: str | None = None
    for i, word in enumerate(words):
        if word.startswith("VAULT_HOME=") and home is None:
            home = word[len("VAULT_HOME="):]
        elif word == "--config" and i + 1 < len(words):
            config = words[i + 1]
        elif word.startswith("--config="):
            config = word[len("--config="):]
    return config, home


def _same(written: str, path: Path) -> bool:
    real = os.path.realpath(os.path.expanduser(os.path.expandvars(written)))
    return real == os.path.realpath(path)


def _is_mine(job: Any, config: Config) -> bool:
    """Whether a crontab entry is this vault's: its id, or an old bare marker naming its config."""
    comment = str(job.comment)
    if comment == marker(config):
        return True
    if comment != MARKER:
        return False
    owner = _legacy_owner(str(job.command))
    if owner is None:
        return False
    named_config, named_home = owner
    if named_home is not None and not _same(named_home, config.home):
        return False
    if config.file is None:
        return named_config is None
    # (no --config: under cron, the user's config file is the one found)
    return _same(named_config or str(user_config_path()), config.file)


def _mine(tab: Any, config: Config) -> list[Any]:
    return [job for job in tab if _is_mine(job, config)]


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
    """Add (or update in place) this vault's entry; installing twice changes nothing."""
    spec = cron_spec(every)
    command = sync_command(config)
    tab = _open(crontab_file)
    jobs = _mine(tab, config)
    job = jobs[0] if jobs else tab.new(command=command, comment=marker(config))
    for extra in jobs[1:]:
        tab.remove(extra)
    job.set_command(command)
    job.set_comment(marker(config))
    job.setall(spec)
    config.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write(tab, crontab_file)
    return status(config, crontab_file)


def remove(config: Config, crontab_file: Path | None = None) -> bool:
    """Remove this vault's entry (other vaults' stay); False when there was none."""
    tab = _open(crontab_file)
    jobs = _mine(tab, config)
    for job in jobs:
        tab.remove(job)
    if jobs:
        _write(tab, crontab_file)
    return bool(jobs)


def status(config: Config, crontab_file: Path | None = None,
           now: datetime | None = None) -> CronStatus:
    """This vault's entry and its next run (local time)."""
    tab = _open(crontab_file)
    where = str(crontab_file) if crontab_file else "user crontab"
    jobs = _mine(tab, config)
    if not jobs:
        return CronStatus(entry=None, next_run=None, crontab=where)
    job = jobs[0]
    spec = " ".join(str(part) for part in job.slices)
    from croniter import croniter  # type: ignore[import-untyped]

    base = (now or datetime.now().astimezone()).replace(tzinfo=None)
    next_run: datetime = croniter(spec, base).get_next(datetime)
    line = job.render()
    env = str(job.env)  # NAME=value lines above the entry (MAILTO=...): not part of it
    line = line[len(env):] if env and line.startswith(env) else line
    return CronStatus(entry=CronEntry(schedule=spec, command=str(job.command), line=line),
                      next_run=next_run, crontab=where)


def sync_interval(config: Config, crontab_file: Path | None,
                  now: datetime) -> tuple[int, str]:
    """Seconds between two scheduled syncs and what says so: vault's cron entry when it has
    one (the longest gap between its runs), else [schedule] interval."""
    try:
        entry = status(config, crontab_file).entry
    except VaultError:
        entry = None  # no crontab here: a systemd timer or hooks run syncs, at the interval
    if entry is not None:
        gap = _cron_gap(entry.schedule, now)
        if gap:
            return gap, f"vault's cron entry '{entry.schedule}'"
    return config.schedule.interval, "[schedule] interval"


def _cron_gap(spec: str, now: datetime) -> int | None:
    """The longest time between two runs of a cron schedule (over its next week or 500 runs:
    '0 3 * * 1-5' has a gap of three days at the weekend); None if croniter cannot read it."""
    from croniter import croniter

    try:
        runs = croniter(spec, now.astimezone().replace(tzinfo=None))  # cron counts local time
        last: datetime = runs.get_next(datetime)
        end = last + timedelta(days=8)
        gap = 0
        for _ in range(500):
            run: datetime = runs.get_next(datetime)
            gap = max(gap, int((run - last).total_seconds()))
            if run > end:
                break
            last = run
    except (ValueError, KeyError, TypeError):
        return None
    return gap or None

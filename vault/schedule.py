"""Cron: one crontab entry per vault that runs `vault sync --quiet` (python-crontab reads and
renders that line, the others stay as they are; croniter counts)."""

from __future__ import annotations

import hashlib
import logging
import os
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterator

from vault.config import CRON_ENV, Config, user_config_path
from vault.errors import UsageError, VaultError
from vault.fsutil import atomic_write, new_file_mode
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


# python-crontab re-renders a whole crontab when it writes one (its own spacing, @daily for
# '0 0 * * *', '# DISABLED LINE' above a line it cannot read, comments moved), and 3.4.0 has
# no option to keep a line as it was nor a way to read or write a user crontab's raw text.
# So vault keeps the crontab as text, split at '\n' (what cron reads), and lets python-crontab
# read and render only its own entry's line: every other line stays byte for byte.

@contextmanager
def _quiet() -> Iterator[None]:
    """python-crontab logs a line it cannot read (logging's last resort prints it): not here."""
    log = logging.getLogger("crontab")
    was = log.disabled
    log.disabled = True
    try:
        yield
    finally:
        log.disabled = was


def _job(line: str) -> Any | None:
    """python-crontab's reading of one crontab line, if cron would run it as a job."""
    if MARKER not in line:
        return None  # not vault's: never parsed, never rendered
    from crontab import CronTab  # type: ignore[import-untyped]

    with _quiet():
        jobs = list(CronTab(tab=line))
    # (a commented-out entry is a comment of the user's: cron does not run it)
    return jobs[0] if len(jobs) == 1 and jobs[0].is_enabled() else None


def _mine(lines: list[str], config: Config) -> list[tuple[int, Any]]:
    """This vault's entries: (index in lines, python-crontab's job)."""
    found = [(i, _job(line)) for i, line in enumerate(lines)]
    return [(i, job) for i, job in found if job is not None and _is_mine(job, config)]


def _entry_line(config: Config, spec: str) -> str:
    """This vault's entry as python-crontab renders it ('%' escaped, the marker after '#')."""
    from crontab import CronItem

    job = CronItem(command=sync_command(config), comment=marker(config))
    job.setall(spec)
    line = str(job.render())
    found = _job(line) if "\n" not in line else None
    if found is None or (str(found.comment), str(found.command)) != (marker(config),
                                                                      sync_command(config)):
        # a ' #' in a path ends the command where python-crontab reads the line
        raise VaultError(f"cannot write a crontab entry vault would read back as its own: {line}",
                         hint="move the config or VAULT_HOME to a path without ' #'")
    return line


def _read(crontab_file: Path | None) -> str:
    """The crontab's text as it is (bytes that are not UTF-8 kept as they are)."""
    if crontab_file is not None:
        try:
            data = crontab_file.read_bytes()
        except FileNotFoundError:
            return ""
        except OSError as exc:
            raise VaultError(f"cannot read the crontab: {exc}") from None
        return data.decode("utf-8", "surrogateescape")
    proc = _crontab_program(["-l"], "read")
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()
        if "no crontab for" in err:
            return ""
        raise VaultError(f"cannot read the crontab: crontab -l: {err or proc.returncode}",
                         hint="is cron installed? use --crontab-file PATH for a file")
    return proc.stdout.decode("utf-8", "surrogateescape")


def _write(text: str, crontab_file: Path | None) -> None:
    """Put text in place of the crontab: a file atomically (its mode kept), else `crontab`."""
    data = text.encode("utf-8", "surrogateescape")
    if crontab_file is not None:
        target = Path(os.path.realpath(crontab_file))  # a symlink stays one
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                mode = stat.S_IMODE(target.stat().st_mode)
            except FileNotFoundError:
                mode = new_file_mode(executable=False)
            atomic_write(target, data, mode=mode)
        except OSError as exc:
            raise VaultError(f"cannot write the crontab: {exc}") from None
        return
    with tempfile.TemporaryDirectory(prefix="vault-cron-") as tmp:
        path = Path(tmp) / "crontab"
        path.write_bytes(data)
        proc = _crontab_program([str(path)], "write")
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()
        raise VaultError(f"cannot write the crontab: crontab: {err or proc.returncode}")


def _crontab_program(args: list[str], what: str) -> subprocess.CompletedProcess[bytes]:
    """Run the crontab program (found on PATH now) with args."""
    program = shutil.which("crontab")
    if program is None:
        raise VaultError(f"cannot {what} the crontab: no crontab program on PATH",
                         hint="is cron installed? use --crontab-file PATH for a file")
    env = {**os.environ, "LC_ALL": "C"}  # 'no crontab for USER' in English
    try:
        return subprocess.run([program, *args], capture_output=True, env=env, check=False,
                              timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise VaultError(f"cannot {what} the crontab: {exc}") from None


def install(config: Config, every: str = "15m", crontab_file: Path | None = None) -> CronStatus:
    """Add (or update in place) this vault's entry; installing twice changes nothing.

    Only vault's own line changes: every other line of the crontab stays as it was.
    """
    spec = cron_spec(every)
    new = _entry_line(config, spec)
    text = _read(crontab_file)
    # lines[-1] is what follows the last newline: '' in a file that ends with one
    lines = text.split("\n")
    mine = _mine(lines, config)
    if mine:
        first = mine[0][0]
        extra = {i for i, _ in mine[1:]}
        if first == len(lines) - 1:
            lines.append("")  # it was the last line, without a newline: cron needs one
        lines[first] = new
        lines = _without(lines, extra)
    else:
        # before a last line without a newline, which stays last and as it was
        lines.insert(len(lines) - 1, new)
    config.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    updated = "\n".join(lines)
    if updated != text:  # (installing twice: the crontab is not even rewritten)
        _write(updated, crontab_file)
    return status(config, crontab_file)


def _without(lines: list[str], drop: set[int]) -> list[str]:
    """lines less those at drop, each with its newline (a last line without one becomes '')."""
    last = len(lines) - 1
    return ["" if i in drop else line for i, line in enumerate(lines)
            if i not in drop or i == last]


def remove(config: Config, crontab_file: Path | None = None) -> bool:
    """Remove this vault's entry (other vaults' stay); False when there was none."""
    text = _read(crontab_file)
    lines = text.split("\n")
    mine = _mine(lines, config)
    if mine:
        _write("\n".join(_without(lines, {i for i, _ in mine})), crontab_file)
    return bool(mine)


def status(config: Config, crontab_file: Path | None = None,
           now: datetime | None = None) -> CronStatus:
    """This vault's entry and its next run (local time, with its UTC offset)."""
    where = str(crontab_file) if crontab_file else "user crontab"
    lines = _read(crontab_file).split("\n")
    mine = _mine(lines, config)
    if not mine:
        return CronStatus(entry=None, next_run=None, crontab=where)
    index, job = mine[0]
    spec = " ".join(str(part) for part in job.slices)
    from croniter import croniter  # type: ignore[import-untyped]

    # cron counts local wall-clock time; the run's own offset (DST) comes from astimezone()
    base = (now or datetime.now()).astimezone().replace(tzinfo=None)
    next_run: datetime = croniter(spec, base).get_next(datetime).astimezone()
    return CronStatus(entry=CronEntry(schedule=spec, command=str(job.command),
                                      line=lines[index]),
                      next_run=next_run, crontab=where)


def entry_problem(entry: CronEntry) -> str | None:
    """Why cron could not run this entry's sync (its interpreter gone, vault no longer
    importable by it: a deleted or rebuilt virtualenv), or None when it can."""
    try:
        words = shlex.split(entry.command)
    except ValueError:
        return "its command cannot be read"
    program = next((w for w in words if not _is_assignment(w)), None)
    if program is None:
        return "it runs no program"
    if not os.path.isabs(program):
        return None  # (found on cron's PATH: nothing to check from here)
    if not os.access(program, os.X_OK) or os.path.isdir(program):
        return f"it runs {program}, which is gone"
    try:
        proc = subprocess.run([program, "-c", "import vault"], capture_output=True,
                              timeout=60, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"it runs {program}, which does not start ({exc})"
    if proc.returncode != 0:
        return f"it runs {program}, which cannot import vault any more"
    return None


def _is_assignment(word: str) -> bool:
    name, eq, _ = word.partition("=")
    return bool(eq) and name.isidentifier()


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

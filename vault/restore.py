"""Point-in-time restore: bring files back as they were at a commit, safely and undoably."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from vault.config import Config
from vault.errors import UsageError, VaultError
from vault.fsutil import atomic_write, fsync_dir, sync_filesystem
from vault.lock import SyncLock
from vault.pathsafe import UnsafePathError, check_vault_path, safe_target
from vault.repo import CommitInfo, VaultRepo
from vault.sources import compile_patterns, scan_source
from vault.sync import SyncOptions, SyncResult, format_time, sync_locked
from vault.when import Revision, parse_when

MODE_EXEC = 0o100755


class RestoreError(VaultError):
    """A restore could not be done safely; nothing was changed."""


@dataclass(frozen=True)
class RestoreOptions:
    """What to restore, from when, and where."""

    at: str = "HEAD"
    to: Path | None = None
    sources: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    dry_run: bool = False
    delete: bool = False


@dataclass(frozen=True)
class Action:
    """One thing a restore does to one file."""

    action: str  # create | overwrite | delete | unchanged
    path: str  # vault path: <source>/<path in source>
    target: str  # the file on disk
    set_aside: str | None = None  # where the replaced file was kept, when the vault lacks it
    oid: str = ""  # the blob restored (create / overwrite / unchanged)
    mode: int = 0


@dataclass(frozen=True)
class RestorePlan:
    """The commit chosen and every action a restore would take."""

    commit: CommitInfo
    into: str | None  # the --to folder, or None for the live sources
    actions: tuple[Action, ...]

    @property
    def touches_live_files(self) -> bool:
        """True when live files would be overwritten or deleted."""
        return self.into is None and any(a.action in ("overwrite", "delete")
                                         for a in self.actions)


@dataclass(frozen=True)
class RestoreResult:
    """What a restore did (or would do, on a dry run), and how to undo it."""

    plan: RestorePlan
    dry_run: bool
    safety_sync: SyncResult | None = None
    undo_commit: str | None = None
    redacted: tuple[str, ...] = ()  # restored files whose secrets were redacted: cannot come back


def resolve_at(repo: VaultRepo, text: str, now: datetime) -> CommitInfo:
    """The last commit at or before WHEN on the vault's branch (or the named revision)."""
    when = parse_when(text, now=now)
    if isinstance(when, Revision):
        return repo.resolve(when.spec)
    head = repo.head_id()
    if head is None:
        raise RestoreError("the vault has no commits yet", hint="run `vault sync` first")
    first: CommitInfo | None = None
    for info in repo.walk_first_parent(head):
        if info.time <= when.at:
            return info
        first = info
    assert first is not None
    raise RestoreError(f"no commit at or before {format_time(when.at)}: the first commit is "
                       f"{first.id[:10]} at {format_time(first.time)}")


def plan_restore(config: Config, repo: VaultRepo, options: RestoreOptions,
                 now: datetime) -> RestorePlan:
    """Decide, without writing anything, what a restore does to each file."""
    commit = resolve_at(repo, options.at, now)
    known = {s.name: s for s in config.sources}
    for name in options.sources:
        if name not in known and options.to is None:
            raise UsageError(f"no source named {name!r} in the config",
                             hint="use --to DIR to restore a source that is not configured")
    wanted = _selector(config, options)
    files = {p: v for p, v in repo.files(commit.id).items() if wanted(p)}
    if options.to is None and config.vault.layout != "{source}":
        # Other machines' files (under their own host prefix) are not this machine's to place.
        mine = config.vault.host + "/"
        files = {p: v for p, v in files.items() if p.startswith(mine)}
    if not files and not options.delete:
        raise RestoreError(f"nothing matches in commit {commit.id[:10]}",
                           hint="check --source and --path (`vault log --path` helps)")
    actions: list[Action] = []
    checked: dict[str, Path] = {}
    for path, (oid, mode) in sorted(files.items()):
        check_vault_path(path)
        if mode not in (0o100644, MODE_EXEC):
            # vault never stores links or submodules: such an entry was made by hand
            raise UnsafePathError(f"refusing to restore {path!r}: not a regular file in the "
                                  f"vault (mode {mode:o})")
        target = _target(config, options, path, checked)
        actions.append(_action_for(repo, path, target, oid, mode))
    if options.delete:
        for path, target in _present_files(config, options, wanted):
            if path not in files:
                actions.append(Action("delete", path, str(target)))
    return RestorePlan(commit=commit, into=str(options.to) if options.to else None,
                       actions=tuple(sorted(actions, key=lambda a: a.path)))


def restore(config: Config, options: RestoreOptions, *,
            confirm: Callable[[RestorePlan], bool] = lambda plan: True,
            now: Callable[[], datetime] | None = None,
            progress: Callable[[int, int], None] | None = None) -> RestoreResult:
    """Restore under the sync lock: plan, sync what is about to be replaced, confirm, write."""
    clock = now or (lambda: datetime.now(timezone.utc))
    repo = VaultRepo.open(config.vault.path, config.vault.branch)
    if options.dry_run:
        return RestoreResult(plan=plan_restore(config, repo, options, clock()), dry_run=True)
    with SyncLock(config.state_dir, command="restore"):
        plan = plan_restore(config, repo, options, clock())
        safety: SyncResult | None = None
        if plan.touches_live_files:
            # First put the state about to be replaced into the vault, so the restore can be
            # undone; a source that cannot be synced stops the restore.
            involved = tuple(sorted({owner[0].name for a in plan.actions
                                     if a.action in ("overwrite", "delete")
                                     and (owner := config.source_for(a.path)) is not None}))
            safety = sync_locked(config, repo, SyncOptions(sources=involved), clock)
            unreadable = [f for f in safety.failures if f.path is None]
            if unreadable:  # a corrupt file is fine: it is kept aside below, like any skip
                raise RestoreError(f"cannot restore: the safety sync failed: "
                                   f"{unreadable[0].message}",
                                   hint="fix the source, or restore elsewhere with --to DIR")
            plan = _set_aside_uncaptured(plan, safety)
        if not confirm(plan):
            raise RestoreError("restore cancelled; nothing was changed")
        undo = repo.head_id() if plan.into is None else None
        made: set[Path] = set()
        redacted: list[str] = []
        for done, action in enumerate(plan.actions, 1):
            if _apply(repo, action, made):
                redacted.append(action.path)
            if progress is not None:
                progress(done, len(plan.actions))
        # One flush for the whole batch instead of an fsync per file: every file was written
        # to a temp name and renamed, so a crash leaves old or new files, never torn ones.
        if made:
            sync_filesystem(next(iter(made)))
    return RestoreResult(plan=plan, dry_run=False, safety_sync=safety, undo_commit=undo,
                         redacted=tuple(redacted))


def _selector(config: Config, options: RestoreOptions) -> Callable[[str], bool]:
    match = compile_patterns(options.paths) if options.paths else None
    sources = set(options.sources)

    def wanted(path: str) -> bool:
        owner = config.source_for(path)
        source, rel = (owner[0].name, owner[1]) if owner else path.partition("/")[::2]
        if sources and source not in sources:
            return False
        if match is None:
            return True
        return match(path) or match(rel) or any(path.startswith(p.rstrip("/") + "/")
                                                for p in options.paths)
    return wanted


def _target(config: Config, options: RestoreOptions, path: str,
            checked: dict[str, Path]) -> Path:
    if options.to is not None:
        return safe_target(options.to, path, checked)
    owner = config.source_for(path)
    if owner is None:
        raise RestoreError(f"{path}: its source is not in the config",
                           hint="restore it elsewhere with --to DIR")
    return safe_target(owner[0].root, owner[1], checked)


def _action_for(repo: VaultRepo, path: str, target: Path, oid: str, mode: int) -> Action:
    if not target.exists() and not target.is_symlink():
        verb = "create"
    elif target.is_symlink() or not target.is_file():
        verb = "overwrite"
    elif _same_content(target, repo, oid):
        verb = "unchanged"
    else:
        verb = "overwrite"
    return Action(verb, path, str(target), oid=oid, mode=mode)


def _same_content(target: Path, repo: VaultRepo, oid: str) -> bool:
    from vault.sqlite_dump import is_dump, is_sqlite_file, snapshot_sqlite

    try:
        if is_dump(repo.read_blob(oid)):
            return is_sqlite_file(target) and VaultRepo.hash_blob(snapshot_sqlite(target)) == oid
        return VaultRepo.hash_blob(target.read_bytes()) == oid
    except (OSError, VaultError):
        return False  # unreadable or corrupt: it gets replaced


def _present_files(config: Config, options: RestoreOptions,
                   wanted: Callable[[str], bool]) -> list[tuple[str, Path]]:
    """Files that exist now where the restore writes, as vault paths (for --delete)."""
    found: list[tuple[str, Path]] = []
    if options.to is not None:
        root = options.to
        if root.is_dir():
            for dirpath, _dirs, names in os.walk(root):
                for name in names:
                    full = Path(dirpath) / name
                    rel = full.relative_to(root).as_posix()
                    if not name.endswith(("-wal", "-shm", "-journal")) and wanted(rel):
                        found.append((rel, full))
        return found
    chosen = set(options.sources or [s.name for s in config.sources])
    for source in config.sources:
        if source.name not in chosen:
            continue
        scan = scan_source(source, skip_dirs=(config.vault.path, config.home))
        for entry in scan.entries:
            path = config.prefix(source.name) + entry.rel
            if wanted(path):
                found.append((path, Path(entry.path)))
    return found


def _set_aside_uncaptured(plan: RestorePlan, safety: SyncResult) -> RestorePlan:
    """Files the safety sync could not take (half-written, unreadable) are kept aside, not lost."""
    skipped = {s.path for s in safety.skipped}
    stamp = format_time(safety.timestamp).replace(":", "")
    actions = tuple(
        Action(a.action, a.path, a.target, f"{a.target}.pre-restore-{stamp}", a.oid, a.mode)
        if a.action in ("overwrite", "delete") and a.path in skipped else a
        for a in plan.actions)
    return RestorePlan(commit=plan.commit, into=plan.into, actions=actions)


def _apply(repo: VaultRepo, action: Action, made: set[Path]) -> bool:
    """Carry out one action; True when the restored content carries redaction markers."""
    from vault.secrets import is_redacted
    from vault.sqlite_dump import is_dump

    target = Path(action.target)
    if action.action == "unchanged":
        return False
    if action.set_aside:
        os.replace(target, action.set_aside)
    if action.action == "delete":
        if not action.set_aside:
            target.unlink(missing_ok=True)
        _remove_companions(target)
        return False
    data = repo.read_blob(action.oid)
    if target.parent not in made:
        target.parent.mkdir(parents=True, exist_ok=True)
        made.add(target.parent)
    if is_dump(data):
        restore_sqlite_file(data, target)
    else:
        atomic_write(target, data, mode=0o755 if action.mode == MODE_EXEC else 0o644,
                     durable=False)
    return is_redacted(data)


def restore_sqlite_file(data: bytes, target: Path) -> None:
    """Rebuild the database beside the target, check it, drop stale WAL/SHM, move it in."""
    from vault.inuse import open_by
    from vault.sqlite_dump import load_dump

    companions = [Path(f"{target}{suffix}") for suffix in ("-wal", "-shm", "-journal")]
    holders = open_by([target, *companions])
    if holders:
        raise RestoreError(f"{target} is open in another process (pid "
                           f"{', '.join(map(str, holders))}); refusing to replace a live database",
                           hint="stop the agent first, or restore elsewhere with --to DIR")
    tmp = Path(tempfile.mkdtemp(prefix=".vault-restore-", dir=target.parent))
    try:
        built = tmp / "db"
        load_dump(data, built)  # builds, checks PRAGMA integrity_check, fsyncs
        # A leftover WAL would be replayed over the restored database: it goes first. (The
        # state it held is in the vault: the safety sync took it through the backup API.)
        _remove_companions(target)
        os.replace(built, target)
        fsync_dir(target.parent)
    finally:
        for leftover in tmp.iterdir() if tmp.exists() else ():
            leftover.unlink()
        tmp.rmdir()


def _remove_companions(target: Path) -> None:
    for suffix in ("-wal", "-shm", "-journal"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)

"""Sync: find what changed in every source and record it all in one timestamped commit."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from vault import __version__
from vault.config import Config, SourceConfig
from vault.detect import CachedFile, StatCache, file_changed, is_racy, load_cache, save_cache
from vault.errors import RepoError, SourceError, UsageError
from vault.lock import SyncLock
from vault.repo import FileMap, VaultRepo
from vault.snapshot import take_snapshot
from vault.sources import scan_source

CACHE_NAME = "stat-cache.json"
MAX_BODY_PATHS = 1000  # more than this and the commit body says how many it left out


@dataclass(frozen=True)
class SyncOptions:
    """What a sync may do: write or only look, delete most of a source, which sources."""

    dry_run: bool = False
    allow_mass_delete: bool = False
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class Skipped:
    """A file that was not taken this time, and why; the vault keeps its last good version."""

    path: str
    reason: str


@dataclass(frozen=True)
class SourceFailure:
    """A source that could not be synced at all; the vault keeps everything it had of it."""

    source: str
    message: str


@dataclass(frozen=True)
class SyncResult:
    """What a sync recorded (or would record, on a dry run)."""

    commit: str | None
    timestamp: datetime
    dry_run: bool
    added: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    unchanged: int = 0
    failures: tuple[SourceFailure, ...] = ()
    parent: str | None = None

    @property
    def changed(self) -> bool:
        """True when there is anything to commit."""
        return bool(self.added or self.modified or self.deleted)

    @property
    def ok(self) -> bool:
        """True when every source was synced."""
        return not self.failures


@dataclass
class _Plan:
    changes: dict[str, tuple[str, int] | None] = field(default_factory=dict)
    added: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    failures: list[SourceFailure] = field(default_factory=list)
    unchanged: int = 0


def format_time(moment: datetime) -> str:
    """UTC, seconds, Z: the form every commit message and --json output uses."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def sync(config: Config, options: SyncOptions = SyncOptions(),
         now: Callable[[], datetime] | None = None) -> SyncResult:
    """Sync every source into the vault under the sync lock (no lock and no writes on a dry run)."""
    repo = VaultRepo.open(config.vault.path, config.vault.branch)
    clock = now or (lambda: datetime.now(timezone.utc))
    if options.dry_run:
        return _sync(config, repo, options, clock)
    with SyncLock(config.state_dir):
        return _sync(config, repo, options, clock)


def _select(config: Config, names: tuple[str, ...]) -> list[SourceConfig]:
    known = {s.name: s for s in config.sources}
    for name in names:
        if name not in known:
            raise UsageError(f"no source named {name!r} (known: {', '.join(known) or 'none'})")
    if not config.sources:
        raise UsageError("no sources configured", hint="add a [[sources]] table to vault.toml")
    return [known[n] for n in names] if names else list(config.sources)


def _sync(config: Config, repo: VaultRepo, options: SyncOptions,
          clock: Callable[[], datetime]) -> SyncResult:
    sources = _select(config, options.sources)
    stamp = clock().astimezone(timezone.utc).replace(microsecond=0)
    scan_ns = time.time_ns()
    cache_path = config.state_dir / CACHE_NAME
    cache = load_cache(cache_path)
    head = repo.head_id()
    head_files = repo.files(head)
    new_cache: dict[str, CachedFile] = {}
    plan = _Plan()
    scanned: set[str] = set()
    for source in sources:
        if _sync_source(config, repo, source, cache, head_files, new_cache, plan,
                        write=not options.dry_run, allow_mass_delete=options.allow_mass_delete):
            scanned.add(source.name)

    commit_id: str | None = None
    if plan.changes and not options.dry_run:
        message = commit_message(stamp, plan, config.vault.host)
        commit_id = repo.commit(head, plan.changes, message, stamp, config.vault.host)
    if not options.dry_run:
        _save_cache(cache_path, cache, new_cache, scanned, scan_ns, commit_id or head)
    return SyncResult(commit=commit_id, timestamp=stamp, dry_run=options.dry_run,
                      added=tuple(plan.added), modified=tuple(plan.modified),
                      deleted=tuple(plan.deleted), skipped=tuple(plan.skipped),
                      unchanged=plan.unchanged, failures=tuple(plan.failures), parent=head)


def _sync_source(config: Config, repo: VaultRepo, source: SourceConfig, cache: StatCache,
                 head_files: FileMap, new_cache: dict[str, CachedFile], plan: _Plan, *,
                 write: bool, allow_mass_delete: bool) -> bool:
    """Plan one source's changes into plan; False when the source could not be read at all."""
    prefix = source.name + "/"
    try:
        scan = scan_source(source, skip_dirs=(config.vault.path, config.home))
    except SourceError as exc:
        plan.failures.append(SourceFailure(source.name, exc.message))
        return False
    in_head = {p: v for p, v in head_files.items() if p.startswith(prefix)}
    changes: dict[str, tuple[str, int] | None] = {}
    added: list[str] = []
    modified: list[str] = []
    keep: set[str] = set()  # paths the vault must keep as they are (skipped, unreadable)
    unchanged = 0
    for entry in scan.entries:
        vpath = prefix + entry.rel
        cached = cache.files.get(vpath)
        current = in_head.get(vpath)
        oid: str | None = None
        key = entry.key
        if cached is not None and not file_changed(cached, entry.key, cache.scanned_ns):
            if current is not None and current[0] == cached.oid or repo.has_object(cached.oid):
                oid = cached.oid
        if oid is None:
            snap = take_snapshot(entry, config.snapshot)
            if snap.vanished:
                continue
            if snap.data is None:
                plan.skipped.append(Skipped(vpath, snap.reason or "unreadable"))
                keep.add(vpath)
                continue
            oid = repo.hash_blob(snap.data)
            if write and (current is None or current[0] != oid):
                repo.write_blob(snap.data)
            key = snap.key
        new_cache[vpath] = CachedFile(key=key, oid=oid, mode=entry.mode)
        if current is None:
            added.append(vpath)
            changes[vpath] = (oid, entry.mode)
        elif current != (oid, entry.mode):
            modified.append(vpath)
            changes[vpath] = (oid, entry.mode)
        else:
            unchanged += 1
    seen = set(new_cache)
    dirs = tuple(prefix + d + "/" for d in scan.unreadable_dirs)
    for rel, reason in scan.skipped:
        keep.add(prefix + rel)
        plan.skipped.append(Skipped(prefix + rel, reason))
    deleted = [p for p in in_head
               if p not in seen and p not in keep and not p.startswith(dirs)]
    if deleted and len(deleted) * 2 > len(in_head) and not allow_mass_delete:
        plan.failures.append(SourceFailure(
            source.name, f"{len(deleted)} of {len(in_head)} files would be deleted; refusing "
            f"(is {source.root} complete? use --allow-mass-delete if this is intended)"))
        plan.unchanged += unchanged
        return True
    for path in deleted:
        changes[path] = None
    plan.changes.update(changes)
    plan.added.extend(added)
    plan.modified.extend(modified)
    plan.deleted.extend(deleted)
    plan.unchanged += unchanged
    return True


def _save_cache(path: Path, old: StatCache, new: dict[str, CachedFile], scanned: set[str],
                scan_ns: int, commit: str | None) -> None:
    """Keep entries of sources not scanned this time (if still trustworthy); write if different."""
    files = dict(new)
    for vpath, entry in old.files.items():
        if vpath.split("/", 1)[0] not in scanned and not is_racy(entry.key, old.scanned_ns):
            files[vpath] = entry
    racy_before = any(is_racy(e.key, old.scanned_ns) for e in old.files.values())
    if files == old.files and commit == old.commit and not racy_before:
        return  # nothing learned: skip the write (the common cron case)
    try:
        save_cache(path, StatCache(scanned_ns=scan_ns, commit=commit, files=files))
    except OSError as exc:
        # The commit (if any) is safe; without the cache the next sync just reads every file.
        raise RepoError(f"cannot write the stat cache {path}: {exc.strerror} "
                        "(the vault itself is intact)",
                        hint="check the permissions and free space of the vault folder") from None


def commit_message(stamp: datetime, plan: _Plan, host: str) -> str:
    """The message `git log` shows: a summary line, the paths, and Vault-* trailers."""
    lines = [f"vault sync {format_time(stamp)}: {len(plan.modified)} modified, "
             f"{len(plan.added)} added, {len(plan.deleted)} deleted", ""]
    body = ([f"M {p}" for p in plan.modified] + [f"A {p}" for p in plan.added]
            + [f"D {p}" for p in plan.deleted])
    lines.extend(body[:MAX_BODY_PATHS])
    if len(body) > MAX_BODY_PATHS:
        lines.append(f"... and {len(body) - MAX_BODY_PATHS} more (git show --stat lists all)")
    lines.append("")
    if plan.skipped:
        lines.append(f"Vault-Skipped: {len(plan.skipped)}")
    lines.append(f"Vault-Host: {host}")
    lines.append(f"Vault-Version: {__version__}")
    return "\n".join(lines) + "\n"

"""Sync: find what changed in every source and record it all in one timestamped commit."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from vault import __version__
from vault.config import Config, SnapshotSettings, SourceConfig
from vault.detect import (RACY_MARGIN_NS, CachedFile, StatCache, file_changed, is_racy,
                          load_cache, save_cache)
from vault.errors import RepoError, SourceError, UsageError
from vault.lock import SyncLock
from vault.repo import FileMap, VaultRepo
from vault.snapshot import TOO_LARGE, Snapshot, take_snapshot
from vault.sources import (CREATING, DUMP_HEADER, SQLITE_HEADER, Entry, Scan, pattern_for,
                           scan_source, stat_key)

if TYPE_CHECKING:
    from vault.remote import PushResult
    from vault.rollback import Rollback

SECRETS_WIRED = True  # every file read by a sync goes through the [secrets] policy
CACHE_NAME = "stat-cache.json"
# Skips that will not fix themselves, unlike a busy file: they fail the sync, so cron hears.
_WONT_FIX_ITSELF = ("cannot read:", "cannot stat:", "SQLite: cannot read:",
                    "SQLite: cannot open database:",
                    "SQLite: needs the application's own SQL code:")
# Touched by every sync that completes without failures, changed or not (its mtime is the time):
# "last sync" is this, not the last commit, or an agent idle for an hour would look overdue.
LAST_RUN_NAME = "last-sync"
CORRUPT_RECHECK_S = 0.5


def _open_elsewhere(path: str) -> bool:
    """True when another process holds the file open (a writer that has paused)."""
    from vault.inuse import open_by

    return bool(open_by([Path(path)]))


def _looks_corrupt(reason: str) -> bool:
    from vault.rollback import is_corruption

    return is_corruption(reason)


# Why a file that looked damaged was left alone: it changed between two looks, or another process
# has it open (doctor tells such files from corrupt ones by this reason).
BEING_WRITTEN = ("being written (changed while checked, or open in another process); the next "
                 "sync looks again")
MAX_BODY_PATHS = 1000  # more than this and the commit body says how many it left out
PAGE_ONE_ZEROED = ("SQLite: file is not a database (its first page is zeroed; the vault's last "
                   "version is a database)")


@dataclass(frozen=True)
class SyncOptions:
    """What a sync may do: write or only look, delete most of a source, which sources."""

    dry_run: bool = False
    allow_mass_delete: bool = False
    sources: tuple[str, ...] = ()
    progress: Callable[[str], None] | None = None  # called with each file about to be read


@dataclass(frozen=True)
class Skipped:
    """A file that was not taken this time, and why; the vault keeps its last good version."""

    path: str
    reason: str


@dataclass(frozen=True)
class CorruptFile:
    """A file the vault has a good version of, that cannot be read as its kind any more."""

    path: str  # vault path
    file: str  # on disk
    reason: str


@dataclass(frozen=True)
class SourceFailure:
    """A source that could not be synced at all; the vault keeps everything it had of it."""

    source: str
    message: str
    path: str | None = None  # set when one file failed (corrupt), not the whole source
    hint: str | None = None


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
    push: PushResult | None = None  # None when there is no remote (or nothing to push)
    corrupt: tuple[CorruptFile, ...] = ()  # files that were good and are now damaged
    redacted: tuple[Skipped, ...] = ()  # committed with secrets replaced ([secrets] redact)
    rollbacks: tuple[Rollback, ...] = ()  # what [health] auto_rollback put back
    # JSONL files stored up to their last whole line: the rest waits for its newline (listed
    # by the sync that read the file; a writer that died mid-line leaves it there)
    waiting: tuple[Skipped, ...] = ()
    # Vault paths in scan order and a hash of their stat keys, when every source was scanned
    # and every file proved by its stat: what vault.quick compares on the next sync.
    proof: tuple[str, int] | None = field(default=None, repr=False, compare=False)
    # The [secrets] screening this sync applied (screening_key): the quick check's plan is only
    # written when it is still the one in force.
    screen: str = field(default="", repr=False, compare=False)

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
    reads: int = 0
    corrupt: list[tuple[str, str, str]] = field(default_factory=list)  # (vault path, file, why)
    redacted: list[Skipped] = field(default_factory=list)  # committed with secrets replaced
    waiting: list[Skipped] = field(default_factory=list)  # JSONL with an unfinished last line
    allowed: frozenset[str] | None = None  # fingerprints known not to be secrets (read lazily)


def format_time(moment: datetime) -> str:
    """UTC, seconds, Z: the form every commit message and --json output uses (the year in
    four digits: strftime's %Y gives year 1 as '1')."""
    utc = moment.astimezone(timezone.utc)
    return f"{utc.year:04d}-{utc:%m-%dT%H:%M:%SZ}"


def sync(config: Config, options: SyncOptions = SyncOptions(),
         now: Callable[[], datetime] | None = None) -> SyncResult:
    """Sync every source into the vault under the sync lock (no lock and no writes on a dry run)."""
    repo = VaultRepo.open(config.vault.path, config.vault.branch)
    clock = now or (lambda: datetime.now(timezone.utc))
    if options.dry_run:
        return _sync(config, repo, options, clock)
    check_before_state(config, repo)
    with SyncLock(config.state_dir):
        _sweep_temp_files(config)
        result = _sync(config, repo, options, clock)
        if result.corrupt and config.health.auto_rollback:
            from vault.rollback import roll_back

            damaged = [(c.path, c.file, c.reason) for c in result.corrupt]
            failed: list[tuple[str, str]] = []
            rollbacks = tuple(roll_back(repo, damaged, clock(), failed=failed,
                                        settings=config.snapshot))
            result = replace(result, rollbacks=rollbacks,
                             failures=result.failures + _rollback_failures(config, result, failed))
        try:
            result = _push(config, repo, result)
        except KeyboardInterrupt:  # (Ctrl-C, SIGTERM, SIGHUP: a push can take minutes)
            if result.commit is None:
                raise  # (nothing done this time: an interrupted sync)
            result = replace(result, push=_interrupted_push(config, repo))
        if result.ok:
            mark_run(config.state_dir / LAST_RUN_NAME, result.timestamp)
        from vault.quick import write_plan

        write_plan(config, result, all_sources=not options.sources)
        return result


def check_before_state(config: Config, repo: VaultRepo) -> None:
    """Before the sync lock makes the state folder (a vault's first sync): RepoError for a
    repository vault did not make, refused before the lock writes its files into it."""
    if not config.state_dir.exists():
        # (an empty branch too: a project's bare clone on another branch is refused)
        repo.check_made_by_vault(repo.head_id())


def _rollback_failures(config: Config, result: SyncResult,
                       failed: list[tuple[str, str]]) -> tuple[SourceFailure, ...]:
    """A failure for each corrupt file [health] auto_rollback could not put back (the sync
    fails for that file already: this says why it is still corrupt)."""
    failures = []
    for vpath, reason in failed:
        found = config.source_for(vpath)
        failures.append(SourceFailure(found[0].name if found else "", reason, path=vpath))
    return tuple(failures)


def _push(config: Config, repo: VaultRepo, result: SyncResult) -> SyncResult:
    """Push when a remote is set and the branch is ahead of it (also when nothing changed now)."""
    from vault.remote import nothing_to_push, push, remote_url

    if remote_url(config) is None or nothing_to_push(config, repo):
        return result
    return replace(result, push=push(config, repo, result.timestamp))


def _interrupted_push(config: Config, repo: VaultRepo) -> PushResult:
    """A push stopped by an interrupt once the commit is made: the sync is done and says so
    (its report whole, its hooks run); the commit stays local until the next sync pushes it."""
    from vault.remote import PushResult, unpushed

    return PushResult(pushed=False, unpushed=unpushed(config, repo),
                      message="interrupted before the push finished")


def mark_run(stamp: Path, when: datetime) -> None:
    """Record that a sync completed at when (best effort: a read-only state dir loses only this)."""
    seconds = when.timestamp()
    try:
        with open(stamp, "ab"):
            pass
        os.utime(stamp, (seconds, seconds))
    except OSError:
        pass


def last_run(config: Config, head_time: datetime | None = None) -> datetime | None:
    """When a sync last completed: its stamp, or the last commit's time if that is later."""
    try:
        stamp: datetime | None = datetime.fromtimestamp(
            (config.state_dir / LAST_RUN_NAME).stat().st_mtime, timezone.utc)
    except OSError:
        stamp = None
    if stamp is None or (head_time is not None and head_time > stamp):
        return head_time
    return stamp


def _sweep_temp_files(config: Config) -> None:
    """Remove what killed syncs left (under the lock, no other vault process writes these)."""
    from vault.fsutil import pid_alive

    for tmp in config.state_dir.glob(".*.vault-tmp"):  # .<name>.<pid>.vault-tmp
        pid = tmp.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)
    cutoff = time.time() - 3600  # libgit2's temp objects name no pid: only old ones go
    for tmp in (config.vault.path / "objects").glob("tmp_object_git2_*"):
        try:
            if tmp.stat().st_mtime < cutoff:
                tmp.unlink()
        except OSError:
            pass


def sync_locked(config: Config, repo: VaultRepo, options: SyncOptions,
                clock: Callable[[], datetime]) -> SyncResult:
    """Sync when the caller already holds the sync lock (restore syncs before it overwrites)."""
    return _sync(config, repo, options, clock)


def _select(config: Config, names: tuple[str, ...]) -> list[SourceConfig]:
    known = {s.name: s for s in config.sources}
    for name in names:
        if name not in known:
            raise UsageError(f"no source named {name!r} (known: {', '.join(known) or 'none'})")
    if not config.sources:
        where = f"{config.file}: " if config.file else ""
        raise UsageError(f"{where}no sources configured",
                         hint="add a [[sources]] table (name, path) to the config")
    return [known[n] for n in dict.fromkeys(names)] if names else list(config.sources)


def _sync(config: Config, repo: VaultRepo, options: SyncOptions,
          clock: Callable[[], datetime]) -> SyncResult:
    sources = _select(config, options.sources)
    stamp = clock().astimezone(timezone.utc).replace(microsecond=0)
    scan_ns = time.time_ns()
    scans: dict[str, Scan] = {}
    if not options.sources:
        from vault.quick import take_prescan

        prescan = take_prescan(config)  # `vault sync`'s quick check walked them moments ago
        if prescan is not None:
            scans, scan_ns = prescan.scans, min(scan_ns, prescan.scanned_ns)
    cache_path = config.state_dir / CACHE_NAME
    cache = load_cache(cache_path)
    screen = screening_key(config)
    if cache.screen != screen:
        # Made under another [secrets] screening (policy, allowed paths or fingerprints): what
        # was redacted or blocked then may be stored as it is now, or the reverse: read again.
        cache = StatCache()
    repo.check_refs()  # (a damaged HEAD or packed-refs: no sync can commit, nor say all is well)
    head = repo.head_id()
    # The cache lists the whole tree of the commit it was written for: when that is still the
    # branch tip, no git object needs to be opened to know what the vault holds.
    trusted = head is not None and cache.commit == head
    if head is not None and trusted:
        repo.check_tip(head)  # (one stat: a vault whose tip commit is gone is damaged)
    if not trusted:
        # (the cache names the tip after every sync: a tip it does not name may be another's;
        # a dry run refuses it too, as the real sync would; with no tip, a repository holding
        # another project's refs)
        repo.check_made_by_vault(head)  # before any object is written into a project's repo
    head_files: FileMap = ({p: (c[1], c[2]) for p, c in cache.files.items()} if trusted
                           else repo.files(head))
    depth = config.prefix_depth
    by_prefix: dict[str, FileMap] = {}
    for path, value in head_files.items():
        by_prefix.setdefault(source_prefix(path, depth), {})[path] = value
    new_cache: dict[str, CachedFile] = {}
    plan = _Plan()
    scanned: set[str] = set()  # prefixes of the sources read this time
    for source in sources:
        prefix = config.prefix(source.name)
        if _sync_source(config, repo, source, cache, by_prefix.get(prefix, {}), new_cache,
                        plan, scans.get(source.name), write=not options.dry_run, trusted=trusted,
                        allow_mass_delete=options.allow_mass_delete,
                        progress=options.progress):
            scanned.add(prefix)

    for names in (plan.added, plan.modified, plan.deleted):
        names.sort()
    plan.skipped.sort(key=lambda s: s.path)
    commit_id: str | None = None
    if plan.changes and not options.dry_run:
        message = commit_message(stamp, plan, config.vault.host)
        commit_id = repo.commit(head, plan.changes, message, stamp, config.vault.host)
        for path, change in plan.changes.items():
            if change is None:
                head_files.pop(path, None)
            else:
                head_files[path] = change
    proof_ns = cache.scanned_ns  # the scan time the stat cache on disk is proved against
    if not options.dry_run and (plan.reads or commit_id or cache.commit != head
                                or plan.failures):
        proof_ns = _save_cache(cache_path, cache, new_cache, head_files, scanned, depth, scan_ns,
                               commit_id or head, plan.reads, screen)
    proof = None
    if not (options.dry_run or options.sources or plan.skipped or plan.failures):
        proof = _proof(new_cache, proof_ns)
    return SyncResult(commit=commit_id, timestamp=stamp, dry_run=options.dry_run, proof=proof,
                      screen=screen,
                      added=tuple(plan.added), modified=tuple(plan.modified),
                      deleted=tuple(plan.deleted), skipped=tuple(plan.skipped),
                      unchanged=plan.unchanged, failures=tuple(plan.failures), parent=head,
                      corrupt=tuple(CorruptFile(*c) for c in plan.corrupt),
                      redacted=tuple(plan.redacted), waiting=tuple(plan.waiting))


def _sync_source(config: Config, repo: VaultRepo, source: SourceConfig, cache: StatCache,
                 in_head: FileMap, new_cache: dict[str, CachedFile], plan: _Plan,
                 scan: Scan | None, *, write: bool, trusted: bool, allow_mass_delete: bool,
                 progress: Callable[[str], None] | None = None) -> bool:
    """Plan one source's changes into plan (walking it unless scan is given); False when the
    source could not be read at all."""
    prefix = config.prefix(source.name)
    if scan is None:
        try:
            scan = scan_source(source, skip_dirs=(config.vault.path, config.home))
        except SourceError as exc:
            plan.failures.append(SourceFailure(source.name, exc.message, hint=exc.hint))
            return False
    changes: dict[str, tuple[str, int] | None] = {}
    added: list[str] = []
    modified: list[str] = []
    keep: set[str] = set()  # paths the vault must keep as they are (skipped, unreadable)
    unchanged = 0
    cached_files = cache.files
    limit = cache.scanned_ns - RACY_MARGIN_NS  # a stat this recent proves nothing (racy)
    for entry in scan.entries:  # once per file per sync: plain tuple reads, no attribute calls
        vpath = prefix + entry[0]
        key = entry[2]
        mode = entry[3]
        cached = cached_files.get(vpath)
        current = in_head.get(vpath)
        if cached is not None and current is not None and cached[0] == key and trusted \
                and current[0] == cached[1] and current[1] == mode \
                and (key[1] < limit and key[2] < limit if len(key) == 4
                     else not file_changed(cached, key, cache.scanned_ns)):
            new_cache[vpath] = cached  # the common case: proved unchanged by its stat
            unchanged += 1
            continue
        oid: str | None = None
        if cached is not None and not file_changed(cached, key, cache.scanned_ns):
            # The stat proves the content is the blob the cache names; make sure that blob is
            # really in the vault when the cache is not known to match the branch tip.
            if trusted or (current is not None and current[0] == cached.oid) \
                    or repo.has_object(cached.oid):
                oid = cached.oid
        if oid is None:
            plan.reads += 1
            if progress is not None:
                progress(vpath)
            snap = _judged(repo, current, take_snapshot(entry, config.snapshot, dry_run=not write))
            if snap.vanished:
                continue
            if snap.data is None and current is not None and snap.reason \
                    and _looks_corrupt(snap.reason):
                # It was good (the vault has it) and now it is damaged; a writer caught halfway
                # gets one more look before it is called corrupt, and a file that changed
                # between the two looks is being written: busy, not corrupt.
                first = snap.key
                time.sleep(CORRUPT_RECHECK_S)
                snap = _judged(repo, current, take_snapshot(entry, config.snapshot, dry_run=not write))
                if snap.data is None and (snap.key != first or _open_elsewhere(entry.path)):
                    snap = replace(snap, reason=BEING_WRITTEN)
                elif snap.data is None and snap.reason and _looks_corrupt(snap.reason):
                    _report_corrupt(plan, source.name, vpath, entry.path, snap.reason)
            if snap.data is None:
                plan.skipped.append(Skipped(vpath, snap.reason or "unreadable"))
                if snap.reason and snap.reason.startswith(_WONT_FIX_ITSELF):
                    # Unlike a busy file, this will not fix itself: cron must hear of it.
                    plan.failures.append(SourceFailure(source.name, f"{vpath}: {snap.reason}",
                                                       path=vpath))
                elif current is not None and snap.reason \
                        and snap.reason.startswith(TOO_LARGE):
                    # Memory the vault kept that is no longer backed up: nor will it be, until
                    # the limit or the patterns change (a new file this large is only listed).
                    plan.failures.append(SourceFailure(
                        source.name, f"{vpath}: {snap.reason}: no longer backed up, the vault "
                        "keeps an older version (raise [snapshot] max_file_size, or exclude it)",
                        path=vpath))
                keep.add(vpath)
                continue
            if snap.held_back:
                plan.waiting.append(Skipped(vpath, f"{snap.held_back} bytes of an unfinished "
                                                   "last line wait for its newline"))
            data = _screen(config, plan, source.name, vpath, snap.data)
            if data is None:  # a secret under policy "block": the last clean version stays
                keep.add(vpath)
                continue
            oid = repo.hash_blob(data)
            if write and (current is None or current[0] != oid):
                repo.write_blob(data)
            key = snap.key
        new_cache[vpath] = CachedFile(key, oid, mode)
        if current is None:
            added.append(vpath)
            changes[vpath] = (oid, mode)
        elif current[0] != oid or current[1] != mode:
            modified.append(vpath)
            changes[vpath] = (oid, mode)
        else:
            unchanged += 1
    # A skip is never a deletion: whatever was skipped (a file, or a folder that cannot be
    # read or has become a symbolic link) keeps what the vault has of it, files below included.
    dirs = tuple(prefix + rel.rstrip("/") + "/" for rel, _reason in scan.skipped)
    for rel, reason in scan.skipped:
        keep.add(prefix + rel)
        if reason.startswith(CREATING) and prefix + rel in in_head and \
                _stored_as_database(repo, in_head[prefix + rel][0]):
            # A database the vault has had, with page 1 zeroed and a journal beside it: not a
            # database being created but a damaged one (a journal of an earlier transaction
            # stays beside it in some journal modes).
            reason = PAGE_ONE_ZEROED
            _report_corrupt(plan, source.name, prefix + rel, os.path.join(source.root, rel),
                            reason)
        plan.skipped.append(Skipped(prefix + rel, reason))
        if reason.startswith("cannot stat:"):
            # (in a folder that can be listed but not entered): as an unreadable file
            plan.failures.append(SourceFailure(source.name, f"{prefix}{rel}: {reason}",
                                               path=prefix + rel))
    for rel in scan.unreadable_dirs:  # new memory in it goes unrecorded: cron must hear of it
        try:
            os.listdir(os.path.join(source.root, rel))
            continue  # readable now: it was removed (or replaced) while the walk went by
        except (FileNotFoundError, NotADirectoryError):
            continue  # gone (or a file now), not unreadable
        except OSError as exc:
            import errno

            too_long = exc.errno == errno.ENAMETOOLONG
        what = ("its path is longer than the system allows (PATH_MAX, 4,096 bytes on Linux), "
                "so nothing below it can be read" if too_long else "folder cannot be read")
        plan.failures.append(SourceFailure(
            source.name, f"{prefix}{rel}/: {what}; the vault keeps what it had "
            f"of it (to leave it out, exclude the folder itself: '{pattern_for(rel)}/')",
            path=f"{prefix}{rel}/"))
    deleted = [p for p in in_head
               if p not in new_cache and p not in keep and not (dirs and p.startswith(dirs))]
    if deleted and len(deleted) * 2 > len(in_head) and not allow_mass_delete:
        # Only the deletions wait: what was added or changed is recorded all the same (a source
        # that lost files may still be written to), and the vault keeps the files it had.
        plan.failures.append(SourceFailure(
            source.name, f"source '{source.name}': {len(deleted)} of {len(in_head)} files would "
            "be deleted; refusing, the vault keeps them "
            f"(is {source.root} complete? use --allow-mass-delete if this is intended)"))
        deleted = []
    if added:
        _hold_back_clashes(plan, source.name, changes, added, new_cache, in_head, deleted)
    for path in deleted:
        changes[path] = None
    plan.changes.update(changes)
    plan.added.extend(added)
    plan.modified.extend(modified)
    plan.deleted.extend(deleted)
    plan.unchanged += unchanged
    return True


def _hold_back_clashes(plan: _Plan, source: str, changes: dict[str, tuple[str, int] | None],
                       added: list[str], new_cache: dict[str, CachedFile], in_head: FileMap,
                       deleted: list[str]) -> None:
    """New files git cannot store beside files the vault keeps: a file where the vault keeps
    a folder's files (a folder became a file, and its files' deletion was refused or they were
    skipped), or a file below a path the vault keeps as a file (the reverse). Stored as it is,
    one would silently replace the other in the tree. They wait (a failure: cron hears of it)
    until the clash is gone; the vault keeps what it has."""
    gone = set(deleted)
    kept_dirs: set[str] = set()
    for path in in_head:
        if path not in gone:
            for folder in _folders(path):
                if folder in kept_dirs:
                    break  # (and so are the folders above it)
                kept_dirs.add(folder)
    for path in list(added):
        if path in kept_dirs:
            what = f"the vault keeps the files of the folder {path}/ this file replaced"
        elif any(f in in_head and f not in gone for f in _folders(path)):
            what = "the vault keeps a file where this file's folder now is"
        else:
            continue
        added.remove(path)
        del changes[path]
        new_cache.pop(path, None)  # (not stored: the next sync reads it again)
        reason = f"not stored yet: {what} (their deletion was refused or they were skipped)"
        plan.skipped.append(Skipped(path, reason))
        plan.failures.append(SourceFailure(source, f"{path}: {reason}", path=path))


def _folders(path: str) -> Iterator[str]:
    """The folders a path lies in, innermost first: 'a/b/c.md' gives 'a/b', then 'a'."""
    while "/" in path:
        path = path.rpartition("/")[0]
        yield path


def _report_corrupt(plan: _Plan, source: str, vpath: str, path: str, reason: str) -> None:
    """A file that was good (the vault has it) and is now damaged: a failure, and one for
    [health] auto_rollback to put back."""
    plan.corrupt.append((vpath, path, reason))
    plan.failures.append(SourceFailure(source, f"{vpath} is corrupt ({reason}); the vault "
                                               "keeps its last good version", path=vpath))


def still_corrupt(repo: VaultRepo, vpath: str, path: str, current: tuple[str, int],
                  reason: str, settings: SnapshotSettings) -> bool:
    """Read a file judged corrupt again, as sync judged it (against the vault's version
    current): False when it reads as good now (written again since), or is gone."""
    if reason == PAGE_ONE_ZEROED:  # (judged by the walk: zeros where SQLite's header was)
        try:
            with open(path, "rb") as handle:
                head = handle.read(100)
        except OSError:
            return False
        return len(head) == 100 and not head.strip(b"\0")
    try:
        st = os.stat(path)
    except OSError:
        return False
    entry = Entry((vpath, path, stat_key(st), current[1], st.st_size))
    # (its size was judged under the limit the sync had: no other limit applies now)
    snap = _judged(repo, current, take_snapshot(entry, replace(settings, max_file_size=1 << 62)))
    return snap.data is None and bool(snap.reason) and _looks_corrupt(snap.reason or "")


def _judged(repo: VaultRepo, current: tuple[str, int] | None, snap: Snapshot) -> Snapshot:
    """A snapshot, unless it is of a file the vault holds in a better state: a database that
    lost its header, a transcript cut short."""
    return _unless_transcript_cut(repo, current, _unless_database_lost(repo, current, snap))


def _unless_transcript_cut(repo: VaultRepo, current: tuple[str, int] | None,
                           snap: Snapshot) -> Snapshot:
    """A JSONL transcript that is now the start of the vault's last version, cut inside a
    line, with whole lines of it gone: truncated (a disk or a crash), not a new version to
    store and wait on. Corrupt: kept at its last good version ([health] auto_rollback
    applies); a writer rewriting it is caught by the second look, as for JSON. (Cut at a line
    end, it is a shorter transcript: an agent may rewrite one so.)"""
    data = snap.data
    if data is None or current is None or snap.kind != "jsonl" or not snap.held_back:
        return snap
    from vault.objects import BlobReader

    with BlobReader(repo) as reader:
        stored = reader.read(current[0])
    left, had = data.count(b"\n"), stored.count(b"\n")
    if had - left < 2 or not _lines_begin(stored, data):
        return snap  # (appended to, or rewritten: a version like any other)
    return replace(snap, data=None, reason=(
        f"JSONL cut short: {left} of the vault's {had} lines left, the last one cut off "
        "(truncated?)"))


def _lines_begin(stored: bytes, data: bytes) -> bool:
    """Whether data's whole lines are the first lines of the stored version, where a line the
    vault stored with its secrets redacted matches the line it was made from."""
    if stored.startswith(data):
        return True
    if b"[REDACTED:" not in stored:
        return False
    import re

    from vault.secrets import REDACTION_PATTERN

    ours = data.split(b"\n")[:-1]
    theirs = stored.split(b"\n", len(ours))[:len(ours)]
    for line, kept in zip(ours, theirs):
        if line != kept and (b"[REDACTED:" not in kept or re.fullmatch(
                b"[^\n]+?".join(re.escape(part) for part in re.split(REDACTION_PATTERN, kept)),
                line) is None):
            return False
    return True


def _unless_database_lost(repo: VaultRepo, current: tuple[str, int] | None,
                          snap: Snapshot) -> Snapshot:
    """A file the vault holds as a database that now reads as binary, not SQLite: its header
    is damaged, or it was cut short inside its header. Corrupt (kept at its last good version,
    [health] auto_rollback applies), not a new plain file to store as raw pages or as the
    bytes left. Zeros where its header was (the whole file, or its first page, zeroed by a
    crash) are damage too, journal or not: no file put in a database's place begins with 100
    NUL bytes. (An empty file is not: SQLite takes it for a new empty database, which is what
    an app leaves that deleted its database and opened it again.)"""
    data = snap.data
    if data is None or current is None:
        return snap
    if data and data.count(0, 0, 100) == min(len(data), 100):
        # (counted, not stripped: no copy of a large file)
        why = "it is all zeros" if data.count(0) == len(data) else "its first page is zeroed"
    elif len(data) < len(SQLITE_HEADER):
        if not data or data != SQLITE_HEADER[:len(data)]:
            return snap  # (a short file, as most are)
        why = f"cut to {len(data)} bytes"
    elif len(data) < 512 or len(data) % 512 or data.startswith(DUMP_HEADER) or \
            not _looks_like_page_one(data):
        return snap  # (the common case: not even 512-byte pages)
    else:
        why = "its header is damaged"
    if not _stored_as_database(repo, current[0]):
        return snap
    return replace(snap, data=None, reason=f"SQLite: file is not a database ({why}; the "
                                           "vault's last version is a database)")


def _stored_as_database(repo: VaultRepo, oid: str) -> bool:
    from vault.objects import BlobReader

    with BlobReader(repo) as reader:
        return reader.get(oid).head(len(DUMP_HEADER)) == DUMP_HEADER


def _looks_like_page_one(data: bytes) -> bool:
    """The first page of a SQLite database whose 100-byte header is damaged: past the header,
    page 1 is still a table b-tree page with a sane cell count and content offset. Another
    file put in the database's place (encrypted by SQLCipher, say, or anything else) is
    random there, and is taken as the new file it is."""
    kind, cells = data[100], int.from_bytes(data[103:105], "big")
    content = int.from_bytes(data[105:107], "big") or 65536
    return kind in (0x05, 0x0D) and cells < 4096 and 108 <= content <= min(len(data), 65536)


def _screen(config: Config, plan: _Plan, source: str, vpath: str, data: bytes) -> bytes | None:
    """The [secrets] policy on one file's vault bytes: pass, redact, or block (None).

    A blocked file is also a failure: like an unreadable one, it will not fix itself, and the
    agent's new memory in it goes unrecorded until someone removes or allows the secret."""
    if config.secrets.policy == "allow":
        return data
    from vault.secrets import allowed_fingerprints, screen

    if plan.allowed is None:
        plan.allowed = allowed_fingerprints(config)
    screened = screen(data, path=vpath, settings=config.secrets, allowed=plan.allowed)
    if screened.data is None:
        plan.skipped.append(Skipped(vpath, screened.reason))
        plan.failures.append(SourceFailure(
            source, f"{vpath}: {screened.reason}", path=vpath,
            hint="remove the secret, or `vault secrets allow FINGERPRINT` if it is none"))
    elif screened.redacted:
        plan.redacted.append(Skipped(vpath, screened.reason))
    return screened.data


def source_prefix(path: str, depth: int) -> str:
    """The source prefix of a vault path: its first depth (1 or 2) folders, with the slash.
    (Once per file per sync: no split.)"""
    end = path.find("/") + 1
    if depth == 2 and end:
        end = path.find("/", end) + 1
    return path[:end] if end else path + "/"


def screening_key(config: Config) -> str:
    """What the [secrets] screening of this sync depends on, as one short key."""
    if config.secrets.policy == "allow":
        return "allow"
    import hashlib

    from vault.secrets import allowed_fingerprints

    parts = [config.secrets.policy, *sorted(config.secrets.allow_paths), "",
             *sorted(allowed_fingerprints(config))]
    return hashlib.sha1("\n".join(parts).encode("utf-8", "surrogateescape")).hexdigest()[:16]


def _save_cache(path: Path, old: StatCache, seen: dict[str, CachedFile], tree: FileMap,
                scanned: set[str], depth: int, scan_ns: int, commit: str | None,
                reads: int, screen: str) -> int:
    """Record the tree at commit, each file with the stat key that proves it (when known);
    return the scan time the cache on disk is proved against."""
    files: dict[str, CachedFile] = {}
    for vpath, value in tree.items():  # (CachedFile read by index: this runs per file)
        entry = seen.get(vpath)
        if entry is not None and entry[1] == value[0] and entry[2] == value[1]:
            files[vpath] = entry
            continue
        oid, mode = value
        if entry is None and source_prefix(vpath, depth) not in scanned:
            # A source not scanned this time: its old proof still holds if it was not racy.
            prior = old.files.get(vpath)
            if prior is not None and prior.key and not is_racy(prior.key, old.scanned_ns):
                entry = prior
        if entry is None or entry.oid != oid or entry.mode != mode:
            entry = CachedFile((), oid, mode)  # in the vault, not proven by a stat: re-read
        files[vpath] = entry
    if reads == 0 and commit == old.commit and files == old.files and screen == old.screen:
        return old.scanned_ns  # nothing learned: skip the write
    try:
        save_cache(path, StatCache(scanned_ns=scan_ns, commit=commit, files=files,
                                   screen=screen))
    except OSError as exc:
        # The commit (if any) is safe; without the cache the next sync just reads every file.
        raise RepoError(f"cannot write the stat cache {path}: {exc.strerror} "
                        "(the vault itself is intact)",
                        hint="check the permissions and free space of the vault folder") from None
    return scan_ns


def _proof(seen: dict[str, CachedFile], scanned_ns: int) -> tuple[str, int] | None:
    """What `vault.quick` compares next time: every file's vault path in scan order, and a hash
    of their stat keys; None when a key is missing or racily clean (the next sync reads it)."""
    keys = [cached[0] for cached in seen.values()]
    limit = scanned_ns - RACY_MARGIN_NS
    for key in keys:
        if len(key) != 4:  # (a database with companions, or no key at all)
            if not key or is_racy(key, scanned_ns):
                return None
        elif key[1] >= limit or key[2] >= limit:
            return None
    return "\0".join(seen), hash(tuple(keys))


def quote_path(path: str) -> str:
    """A path as git quotes it with core.quotePath off: in double quotes with C escapes when it
    holds a control character, a quote or a backslash, so that no file name can forge a line
    or a trailer of the message. Other names (any printable Unicode) are left as they are."""
    if path.isprintable() and '"' not in path and "\\" not in path:
        return path
    escapes = {"\n": "\\n", "\t": "\\t", "\r": "\\r", '"': '\\"', "\\": "\\\\"}
    out = []
    for char in path:
        if char in escapes:
            out.append(escapes[char])
        elif not char.isprintable():
            out.extend(f"\\{byte:03o}" for byte in char.encode("utf-8", "surrogateescape"))
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def commit_message(stamp: datetime, plan: _Plan, host: str) -> str:
    """The message `git log` shows: a summary line, the paths, and Vault-* trailers."""
    lines = [f"vault sync {format_time(stamp)}: {len(plan.modified)} modified, "
             f"{len(plan.added)} added, {len(plan.deleted)} deleted", ""]
    body = ([f"M {quote_path(p)}" for p in plan.modified]
            + [f"A {quote_path(p)}" for p in plan.added]
            + [f"D {quote_path(p)}" for p in plan.deleted])
    lines.extend(body[:MAX_BODY_PATHS])
    if len(body) > MAX_BODY_PATHS:
        lines.append(f"... and {len(body) - MAX_BODY_PATHS} more (git show --stat lists all)")
    lines.append("")
    if plan.skipped:
        lines.append(f"Vault-Skipped: {len(plan.skipped)}")
    if plan.redacted:
        lines.append(f"Vault-Redacted: {len(plan.redacted)}")
    lines.append(f"Vault-Host: {host}")
    lines.append(f"Vault-Version: {__version__}")
    return "\n".join(lines) + "\n"

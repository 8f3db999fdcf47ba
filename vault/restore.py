"""Point-in-time restore: bring files back as they were at a commit, safely and undoably."""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from vault.config import SOURCE_NAME_RE, Config
from vault.errors import EXIT_INTERRUPTED, RepoError
from vault.errors import RestoreError as RestoreError  # (vault.restore's callers catch it)
from vault.errors import UsageError, VaultError
from vault.fsutil import (BatchWriter, OutsideRoots, Staged, adopt_owner, fsync_dir,
                          new_file_mode, restored_mode, sync_filesystem)
from vault.lock import SyncLock
from vault.dbbuild import is_redacted_blob
from vault.objects import BlobReader, commit_info, first_parent_line, tree_files
from vault.pathsafe import UnsafePathError, check_vault_path, safe_target
from vault.repo import CommitInfo, VaultRepo
from vault.restore_db import (Databases, install_sqlite, refuse_any_open, refuse_if_open,
                              refuse_open_databases)
from vault.restore_modes import STATE_NAME as MODES_NAME
from vault.restore_modes import ModeBook
from vault.sources import (COMPANION_SUFFIXES, DUMP_HEADER, KEYED_COMPANIONS, SKIP_DIR_NAMES,
                           companion_key, companion_stem, compile_patterns, is_own_companion,
                           path_filter, scan_source, stat_key)
from vault.sync import (CACHE_NAME, SyncOptions, SyncResult, format_time, source_prefix,
                        sync, sync_locked)
from vault.when import Revision, parse_when

MODE_EXEC = 0o100755
# A file an earlier restore kept aside (_set_aside_uncaptured names them): never deleted by a
# restore, also not by the --delete of the undo command (the vault may not hold it).
_ASIDE = re.compile(r"\.pre-restore-\d{4}-\d{2}-\d{2}T\d{6}Z(-\d+)?(/|$)")  # or in one
_REPLACE_BATCH = 256  # files staged to replace live ones, flushed together (open files each)
EXCLUDED = "excluded by the config now"  # why a file its source's patterns skip is left out


class PartialRestoreError(RestoreError):
    """A restore into the live sources stopped part way: result says what it planned and how
    to undo it (a restore of result.undo_commit, for result.undo_sources, with --delete).
    Same exit code as its cause."""

    def __init__(self, cause: VaultError, result: RestoreResult) -> None:
        super().__init__(f"{cause.message} (part of the restore was carried out)",
                         hint=cause.hint)
        self.exit_code = cause.exit_code
        self.result = result

    @property
    def undo_commit(self) -> str | None:
        return self.result.undo_commit

    @property
    def undo_sources(self) -> tuple[str, ...]:
        return self.result.undo_sources


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
    # The live file's stat when the vault was found to hold it exactly: if it differs just
    # before the file is replaced or deleted, it is kept aside after all.
    seen: tuple[int, ...] = ()
    # delete: the blob the vault holds for the live file after the safety sync (what an undo
    # brings back: its permission bits are recorded under it, vault.restore_modes)
    held: str = ""
    # Why the live file is kept aside, when the plan knows it already (else the restore says)
    why: str = ""


@dataclass(frozen=True)
class RestorePlan:
    """The commit chosen and every action a restore would take."""

    commit: CommitInfo
    into: str | None  # the --to folder, or None for the live sources
    actions: tuple[Action, ...]
    # Files of the commit that the config no longer takes (its patterns exclude them, or their
    # source is not configured any more): not written into the live sources (the vault would
    # not track them, an undo could not take them back, or there is no live folder for them)
    left_out: tuple[str, ...] = ()
    # Why each of left_out is left out, in the same order: EXCLUDED, or "its source 'b' is not
    # in the config" (for the listing; --to DIR restores either)
    left_out_reasons: tuple[str, ...] = ()
    # Live files --delete would remove that the vault never held and its safety sync could not
    # take (a skip is never a deletion): left where they are
    not_deleted: tuple[str, ...] = ()

    @property
    def left_out_why(self) -> tuple[tuple[str, str], ...]:
        """Each left-out vault path with why it is left out."""
        return tuple(zip(self.left_out, self.left_out_reasons, strict=True))

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
    # The sources the undo covers (each one the safety sync took whole): a restore of
    # undo_commit with --delete limited to these puts back what this restore changed.
    undo_sources: tuple[str, ...] = ()
    new_sources: tuple[str, ...] = ()  # sources whose folder the restore made: undo leaves them
    redacted: tuple[str, ...] = ()  # restored files whose secrets were redacted: cannot come back
    # One line per restored database built with a stand-in for a collation only its
    # application knows: the application must REINDEX it (vault.restore_db.reindex_warning)
    warnings: tuple[str, ...] = ()


def resolve_at(repo: VaultRepo, text: str, now: datetime) -> CommitInfo:
    """The last commit at or before WHEN on the vault's branch (or the named revision)."""
    when = parse_when(text, now=now)
    if isinstance(when, Revision):  # (a full id of a loose commit: read without pygit2)
        spec = when.spec.strip()
        try:
            return commit_info(repo, spec) if len(spec) == 40 else repo.resolve(when.spec)
        except RepoError as exc:  # no such commit: a WHEN that names nothing, like a typo
            raise UsageError(exc.message, hint=exc.hint) from None
    head = repo.head_id()
    if head is None:
        raise RestoreError("the vault has no commits yet", hint="run `vault sync` first")
    first: CommitInfo | None = None
    for info in first_parent_line(repo, head):
        if info.time <= when.at:
            return info
        first = info
    assert first is not None
    raise UsageError(f"no commit at or before {format_time(when.at)}: the first commit is "
                     f"{first.id[:10]} at {format_time(first.time)}")


def plan_restore(config: Config, repo: VaultRepo, options: RestoreOptions,
                 now: datetime) -> RestorePlan:
    """Decide, without writing anything, what a restore does to each file."""
    commit = resolve_at(repo, options.at, now)
    known = {s.name: s for s in config.sources}
    for name in options.sources:
        if not SOURCE_NAME_RE.match(name):
            raise UsageError(f"--source {name!r}: not a source name (letters, digits, '.', '_' "
                             "or '-')")
        if name not in known and options.to is None:
            raise UsageError(f"no source named {name!r} in the config",
                             hint="use --to DIR to restore a source that is not configured")
    listing = tree_files(repo, commit.id)
    wanted = path_selector(config, options, listing)
    files = picked = {p: v for p, v in listing.items() if wanted(p)}
    if options.to is None and config.vault.layout != "{source}":
        # Other machines' files (under their own host prefix) are not this machine's to place.
        mine = config.vault.host + "/"
        files = {p: v for p, v in files.items() if p.startswith(mine)}
    left_out: dict[str, str] = {}  # vault path -> why
    if options.to is None:
        files, left_out = _taken_by_sources(config, files)
    if not files and picked and not left_out:
        # None of them is placed by the current layout: refused with --delete too, which
        # would otherwise delete every live file of the sources as "not there" at WHEN.
        raise _not_placed_error(config, options, commit, len(picked))
    if not files and not options.delete:
        if left_out:  # (all that was asked for: the files of a source gone from the config)
            raise _left_out_error(left_out)
        raise RestoreError(f"nothing matches in commit {commit.id[:10]}",
                           hint="check --source and --path (`vault log --path` helps)")
        raise RestoreError(f"nothing matches in commit {commit.id[:10]}",
                           hint="check --source and --path (`vault log --path` helps)")
    if options.to is not None:
        _refuse_live_folders(config, options.to, {
            *_tops(config, files), *(_delete_folders(config, options, files)
                                     if options.delete else ())})
    actions: list[Action] = []
    targets = _Targets(config, options)
    with BlobReader(repo) as reader:
        for path, (oid, mode) in sorted(files.items()):
            check_vault_path(path)
            if mode not in (0o100644, MODE_EXEC):
                # vault never stores links or submodules: such an entry was made by hand
                raise UnsafePathError(f"refusing to restore {path!r}: not a regular file in "
                                      f"the vault (mode {mode:o})")
            target, missing = targets.target(path)
            try:
                verb = "create" if missing else _verb(reader, Path(target), oid, mode)
            except OSError as exc:  # a folder on the way that cannot be entered, say
                raise RestoreError(f"cannot restore {path}: cannot look at {target}: "
                                   f"{exc.strerror or exc}",
                                   hint="fix the permissions, or restore elsewhere with --to DIR"
                                   ) from None
            actions.append(Action(verb, path, target, oid=oid, mode=mode))
        aside = _companions_in_the_way(reader, actions, files, now)
        if aside:
            actions = sorted(actions + aside, key=lambda a: a.path)
    actions, folders = _folders_in_the_way(actions, now)
    # Sources inside each other: one file, two vault paths. The same content is restored
    # once; different contents cannot both be.
    by_target: dict[str, Action] = {}
    for action in list(actions):
        first = by_target.setdefault(action.target, action)
        if first is action:
            continue
        if (first.oid, first.mode) != (action.oid, action.mode):
            raise RestoreError(f"cannot restore: {action.target} is both {first.path} and "
                               f"{action.path}, which differ (one source inside another)",
                               hint="restore one of them: --source NAME")
        actions.remove(action)
    if options.delete:
        for path, _present in _present_files(config, options, wanted, files):
            if _ASIDE.search(path):
                continue  # what an earlier restore kept aside: the user's to look at
            if path not in files:  # its target as for a write: resolved, checked, in a root
                target = targets.target(path)[0]
                if not (folders and target.startswith(folders)):
                    actions.append(Action("delete", path, target))
                # (else it goes with its folder, under its own name: moving it to a kept-aside
                # name first left that name inside the folder kept aside, where the restore
                # then looked for it under the file that took the folder's place)
        actions.sort(key=lambda a: a.path)
        if not actions:  # (a pattern with a typo in it: said, as without --delete)
            if left_out:
                raise _left_out_error(left_out)
            raise RestoreError(f"nothing matches in commit {commit.id[:10]}, nor among the "
                               "files there now",
                               hint="check --source and --path (`vault log --path` helps)")
    targets.refuse_files_in_the_way(actions)
    return RestorePlan(commit=commit, into=str(options.to) if options.to else None,
                       actions=tuple(actions), left_out=tuple(sorted(left_out)),
                       left_out_reasons=tuple(left_out[p] for p in sorted(left_out)))


def _taken_by_sources(config: Config, files: dict[str, tuple[str, int]]) -> tuple[
        dict[str, tuple[str, int]], dict[str, str]]:
    """The files a sync of their source would take now, and the vault paths of the others,
    each with why it is left out.

    A file of a source that is not in the config any more (renamed or removed: sync keeps
    its files in the vault) has no live folder to go back to: it is left out, like a file the
    patterns exclude, and not a reason to refuse the files of the sources still configured.
    """
    filters: dict[str, Callable[[str], bool]] = {}
    taken: dict[str, tuple[str, int]] = {}
    left_out: dict[str, str] = {}
    for path, value in files.items():
        owner = config.source_for(path)
        if owner is None:
            name = _top(path, config.prefix_depth).rpartition("/")[2]
            left_out[path] = f"its source {name!r} is not in the config"
            continue
        source, rel = owner
        takes = filters.get(source.name)
        if takes is None:
            takes = filters[source.name] = path_filter(source)
        if not takes(rel):
            left_out[path] = EXCLUDED
            continue
        taken[path] = value
    return taken, left_out


def _left_out_error(left_out: dict[str, str]) -> RestoreError:
    """The refusal when every file asked for is left out: the user asked for those files."""
    first = min(left_out)
    reasons = set(left_out.values())
    why = left_out[first] if len(reasons) == 1 else "not taken by the config now"
    more = f" and {len(left_out) - 1} more" if len(left_out) > 1 else ""
    return RestoreError(f"{first}{more}: {why}", hint="restore elsewhere with --to DIR")


def _not_placed_error(config: Config, options: RestoreOptions, commit: CommitInfo,
                      count: int) -> RestoreError:
    """The refusal when the commit holds files (those asked for) but none of them is under a
    configured source's folder as the current layout places it: synced under another [vault]
    layout, host or source names (a layout switch, say). Only --to DIR can restore them."""
    which = " that --source and --path pick" if options.sources or options.paths else ""
    where = f"{config.prefix('<source>')}..."
    lead = f"the one file{which} in commit {commit.id[:10]} is not" if count == 1 else \
        f"none of the {count} files{which} in commit {commit.id[:10]} is"
    return RestoreError(f"{lead} under a configured source as the current layout places it "
                        f"({where}): synced with another [vault] layout, host or source names, "
                        "or another machine's",
                        hint=f"restore elsewhere with --to DIR (`vault restore --at "
                             f"{commit.id[:12]} --to DIR`)")


def restore(config: Config, options: RestoreOptions, *,
            confirm: Callable[[RestorePlan], bool] = lambda plan: True,
            now: Callable[[], datetime] | None = None,
            progress: Callable[[int, int], None] | None = None) -> RestoreResult:
    """Restore under the sync lock: plan, sync what is about to be replaced, confirm, write."""
    clock = now or (lambda: datetime.now(timezone.utc))
    repo = VaultRepo.open(config.vault.path, config.vault.branch)
    if options.dry_run:
        plan = plan_restore(config, repo, options, clock())
        return RestoreResult(plan=_judged_dry(config, repo, plan, clock), dry_run=True)
    asked = False
    if options.to is None:
        # The question is asked before the sync lock is taken: while it waits for a person,
        # cron's and the agent's syncs go on (the lock is held for minutes of work, never for
        # a person). The commit is then pinned; everything is planned again under the lock.
        plan = plan_restore(config, repo, options, clock())
        if any(a.action != "unchanged" for a in plan.actions):
            refuse_open_databases(repo, plan)  # before asking, syncing or changing anything
            if not confirm(plan):
                raise RestoreError("restore cancelled; nothing was changed")
            asked = True
        options = replace(options, at=plan.commit.id)
    with SyncLock(config.state_dir, command="restore"), Databases(repo.path) as databases:
        databases.start()  # its start-up overlaps the planning (it is idle without databases)
        plan = plan_restore(config, repo, options, clock())
        live = plan.into is None and any(a.action != "unchanged" for a in plan.actions)
        if live:
            refuse_open_databases(repo, plan)  # before syncing or changing anything
        if not asked and not confirm(plan):
            raise RestoreError("restore cancelled; nothing was changed")
        safety: SyncResult | None = None
        undo: str | None = None
        involved: tuple[str, ...] = ()
        gone: tuple[str, ...] = ()  # sources whose folder is not there: the restore makes it
        if live:
            # Right before writing (the question above may have waited for minutes): put the
            # live state of every source the restore changes into the vault, so that the
            # restore can be undone exactly (a restore of that commit, for those sources, with
            # --delete). Then plan again, against the same commit: files may have changed
            # while the question waited.
            involved = _sources_changed(config, plan)
            gone = _missing(config, involved)
            safety = _safety_sync(config, repo, involved, clock)
            plan = plan_restore(config, repo, replace(options, at=plan.commit.id), clock())
            more = tuple(n for n in _sources_changed(config, plan) if n not in involved)
            syncs = [safety]
            if more:  # a source that had nothing to restore a moment ago
                gone += _missing(config, more)
                syncs.append(_safety_sync(config, repo, more, clock))
                involved = tuple(sorted(involved + more))
                if syncs[-1].commit:
                    safety = syncs[-1]  # the one that ends where the undo starts
            refuse_open_databases(repo, plan)
            plan = _set_aside_uncaptured(repo, plan, syncs, config.state_dir / CACHE_NAME)
            # The undo covers the sources the restore changes as it will carry it out: a
            # delete the safety sync could not take is not done (not_deleted), and a source
            # whose only change that was is not the undo's. None when nothing changes, or when
            # every source changed is one the restore makes (an undo with no source named
            # would cover them all).
            involved = _sources_changed(config, plan)
            gone = tuple(n for n in gone if n in involved)
            undo = repo.head_id() if _without(involved, gone) else None
        late: list[Action] = []  # live files that changed after the check: kept aside
        # Into the live sources: the modes of files deleted, for the undo that brings them back
        book = ModeBook(config.state_dir / MODES_NAME) if plan.into is None else None
        with BatchWriter(roots=_roots(config, options)) as writer:
            fresh = _FreshFolders.start(plan, writer, config.prefix_depth)
            try:
                try:
                    redacted = _apply_all(repo, plan.actions, writer, progress, databases,
                                          late, fresh=fresh, book=book)
                finally:
                    if book is not None:
                        _save_quietly(book)
                if fresh is not None:
                    fresh.move_in(writer)
            except (VaultError, KeyboardInterrupt) as exc:
                if fresh is not None:
                    fresh.discard(writer)
                    if isinstance(exc, VaultError):
                        exc.message = fresh.unstaged(exc.message)
                plan = _with(plan, late)
                if not writer.changes:
                    raise  # nothing was changed
                cause = exc if isinstance(exc, VaultError) else _interrupted()
                if undo is None:  # --to DIR (or only new sources): nothing to undo
                    cause.message += " (part of the restore was carried out)"
                    if cause is exc:
                        raise
                    raise cause from exc
                raise PartialRestoreError(cause, RestoreResult(
                    plan=plan, dry_run=False, safety_sync=safety, undo_commit=undo,
                    undo_sources=_without(involved, gone), new_sources=gone)) from exc
        warnings = tuple(databases.warnings())
    plan = _with(plan, late)
    return RestoreResult(plan=plan, dry_run=False, safety_sync=safety, undo_commit=undo,
                         undo_sources=_without(involved, gone), new_sources=gone,
                         redacted=tuple(redacted), warnings=warnings)


def _save_quietly(book: ModeBook) -> None:
    """Save the modes recorded; a state dir that cannot take them costs only those modes (the
    undo then gives the default ones), never the restore."""
    try:
        book.save()
    except OSError:
        pass


def _judged_dry(config: Config, repo: VaultRepo, plan: RestorePlan,
                clock: Callable[[], datetime]) -> RestorePlan:
    """A dry run's plan with the deletions the real run leaves (not_deleted): the safety
    sync's judgement, made by a dry-run sync of the sources with deletions (nothing written)."""
    if plan.into is None and any(a.action == "delete" for a in plan.actions):
        deleting = tuple(sorted({owner[0].name for a in plan.actions if a.action == "delete"
                                 and (owner := config.source_for(a.path)) is not None}))
        present = tuple(n for n in deleting if n not in _missing(config, deleting))
        if present:
            judged = sync(config, SyncOptions(dry_run=True, sources=present,
                                              allow_mass_delete=True), clock)
            head = repo.head_id()
            plan = _spare_skipped(plan, [judged], tree_files(repo, head) if head else {})
    return plan


def _spare_skipped(plan: RestorePlan, syncs: list[SyncResult],
                   stored: dict[str, tuple[str, int]]) -> RestorePlan:
    """A skip is never a deletion (as in a sync): a file the vault has never held and the
    safety sync could not take (half-written JSON, unreadable, a secret it blocks, too large)
    may well have been there at WHEN; it is not the vault's to delete (an undo with --delete
    would move it otherwise). Such deletes become not_deleted."""
    skipped = {s.path for sync in syncs for s in sync.skipped}
    spared = {a.path for a in plan.actions if a.action == "delete" and a.path in skipped
              and a.path not in stored}
    if not spared:
        return plan
    return replace(plan, actions=tuple(a for a in plan.actions if a.path not in spared),
                   not_deleted=tuple(sorted(spared)))


def _with(plan: RestorePlan, late: list[Action]) -> RestorePlan:
    """The plan as carried out: with the files kept aside at the last moment."""
    kept = {a.path: a for a in late}
    return replace(plan, actions=tuple(kept.get(a.path, a) for a in plan.actions)) if kept \
        else plan


def _sources_changed(config: Config, plan: RestorePlan) -> tuple[str, ...]:
    return tuple(sorted({owner[0].name for a in plan.actions if a.action != "unchanged"
                         and (owner := config.source_for(a.path)) is not None}))


def _missing(config: Config, names: tuple[str, ...]) -> tuple[str, ...]:
    """The sources among names whose folder is not there (a dangling link counts as gone)."""
    roots = {s.name: s.root for s in config.sources}
    return tuple(n for n in names if not os.path.exists(roots[n]))


def _without(names: tuple[str, ...], gone: tuple[str, ...]) -> tuple[str, ...]:
    """The sources an undo puts back: not those the restore brought back from nothing (an
    undo restores a commit, and no commit says "this folder is not there")."""
    return tuple(n for n in names if n not in gone)


def _safety_sync(config: Config, repo: VaultRepo, sources: tuple[str, ...],
                 clock: Callable[[], datetime]) -> SyncResult:
    """Sync the live state of sources before a restore replaces it.

    A source whose folder is gone has nothing to keep (the restore brings it back), and a
    sync that records many deletions is what the restore is there to repair: neither stops it.
    """
    gone = _missing(config, sources)
    present = tuple(name for name in sources if name not in gone)
    safety = sync_locked(config, repo, SyncOptions(sources=present, allow_mass_delete=True),
                         clock) if present else SyncResult(commit=None, timestamp=clock(),
                                                           dry_run=False)
    unreadable = [f for f in safety.failures if f.path is None]
    if unreadable:  # a corrupt file is fine: it is kept aside, like any skip
        raise RestoreError(f"cannot restore: the safety sync failed: {unreadable[0].message}",
                           hint="fix the source, or restore elsewhere with --to DIR")
    return safety


def _interrupted() -> VaultError:
    error = VaultError("interrupted")
    error.exit_code = EXIT_INTERRUPTED
    return error


def _tops(config: Config, paths: Iterable[str]) -> set[str]:
    """The source folders of vault paths: "name", or "host/name" with a host layout."""
    return {_top(path, config.prefix_depth) for path in paths}


def _top(path: str, depth: int) -> str:
    """The source folder of one vault path (its first depth parts): the sync's prefix."""
    return source_prefix(path, depth)[:-1]


def _delete_folders(config: Config, options: RestoreOptions, files: Iterable[str]) -> set[str]:
    """The folders below --to DIR that --delete looks in: those of the sources restored (the
    restore's own layout); anything else in DIR is not the restore's business."""
    if options.sources:
        return {config.prefix(n).rstrip("/") for n in options.sources}
    return _tops(config, files) | {config.prefix(s.name).rstrip("/") for s in config.sources}


def _refuse_live_folders(config: Config, to: Path, tops: set[str]) -> None:
    """--to DIR writes DIR/<source>/...: refuse when one of those folders is (or holds, or is
    inside) a live source, which a restore with --to would overwrite without any of the
    safety of a restore into the live sources, or the vault's repository."""
    tops.discard("")
    live = [(s.name, os.path.realpath(s.root)) for s in config.sources]
    repository = os.path.realpath(config.vault.path)

    def overlap(a: str, b: str) -> bool:  # one is, holds or is inside the other
        return a == b or a.startswith(b + "/") or b.startswith(a + "/")

    for top in sorted(tops):
        folder = os.path.realpath(to / top)
        if overlap(folder, repository):
            raise UsageError(f"--to {to} would write into the vault's own repository "
                             f"({repository})", hint="pick a folder outside it")
        for name, root in live:
            if overlap(folder, root):
                raise UsageError(f"--to {to} would write into the live source {name!r} "
                                 f"({root})", hint="restore into the live sources without --to "
                                                   "(safety sync, undo), or pick another folder")


def source_file_path(config: Config, path: str) -> str | None:
    """The vault path of a file or folder path inside a configured source root (`~` and
    relative paths taken as the shell means them), else None."""
    # normpath, not resolve(): `src/../src/f` means src/f, yet a symlinked root stays as typed.
    absolute = Path(os.path.normpath(Path(path).expanduser().absolute()))
    for source in config.sources:
        try:
            rel = absolute.relative_to(source.root)
        except ValueError:
            continue
        return (config.prefix(source.name) + rel.as_posix()).removesuffix("/.")
    return None


def _given_path(config: Config, pattern: str) -> str | None:
    """A --path given as the absolute path of a file or folder in a source: its vault path
    (with its trailing `/`, a folder's), matched as it is: `[ab].txt` or `f [1].md` is that
    file, not a pattern of others. None for any other pattern, which keeps its meaning:
    `/MEMORY.md` is gitignore's, the source's top one."""
    if not pattern.startswith(("/", "~")):
        return None
    vpath = source_file_path(config, pattern)
    if vpath is None:
        return None
    return vpath + "/" if pattern.endswith("/") else vpath


def path_selector(config: Config, options: RestoreOptions,
                  listing: Iterable[str]) -> Callable[[str], bool]:
    """Which vault paths --source and --path pick (restore's rule, also diff's)."""
    if not options.sources and not options.paths:
        return lambda path: True
    given = {p: _given_path(config, p) for p in options.paths}
    # A file's own path, and all below it as a folder's (`a/d/` only that: a folder's)
    exact = frozenset(v for v in given.values() if v is not None and not v.endswith("/"))
    below = tuple(v if v.endswith("/") else v + "/" for v in given.values() if v is not None)
    patterns = [p for p, v in given.items() if v is None]
    # A pattern that starts with a source's folder in the vault (`openclaw/memory/*.md`) is a
    # vault path, matched against vault paths only; any other (`memory/*.md`, `*.md`) is a path
    # in its source. (So `a/MEMORY.md` is source a's, not a folder `a` of another source.)
    # (Tops of the commit's own paths too: other machines' files, sources not configured.)
    tops = {config.prefix(s.name).split("/")[0] for s in config.sources} | {
        path.split("/", 1)[0] for path in listing}
    in_vault = [p for p in patterns if p.lstrip("/").split("/")[0] in tops]
    in_source = [p for p in patterns if p not in in_vault]
    try:
        match_vault = compile_patterns(in_vault) if in_vault else None
        match_source = compile_patterns(in_source) if in_source else None
    except ValueError as exc:
        raise UsageError(f"--path: not a valid pattern: {exc}",
                         hint="patterns are gitignore-style; a backslash escapes") from None
    sources = set(options.sources)

    def wanted(path: str) -> bool:
        owner = config.source_for(path)
        source, rel = (owner[0].name, owner[1]) if owner else path.partition("/")[::2]
        if sources and source not in sources:
            return False
        if not options.paths:
            return True
        return path in exact or (bool(below) and path.startswith(below)) or \
            (match_vault is not None and (match_vault(path) or any(
                path.startswith(p.rstrip("/") + "/") for p in in_vault))) or \
            (match_source is not None and match_source(rel))
    return wanted


def _roots(config: Config, options: RestoreOptions) -> tuple[str, ...]:
    """The folders a restore writes below, as safe_target resolves them (real paths)."""
    roots = [options.to] if options.to is not None else [s.root for s in config.sources]
    return tuple(os.path.realpath(root) for root in roots)


class _Targets:
    """Where each vault path goes on disk, checked by safe_target once per folder."""

    def __init__(self, config: Config, options: RestoreOptions) -> None:
        self._config = config
        self._to = options.to
        self._checked: dict[str, Path] = {}
        self._folders: dict[tuple[Path, str], tuple[str, bool]] = {}
        self.in_the_way: dict[str, str] = {}  # vault path -> a file where its folder goes

    def target(self, path: str) -> tuple[str, bool]:
        """The file path for a vault path (checked with check_vault_path), and whether its
        folder is missing (then the file is too, without a look at it)."""
        if self._to is not None:
            root, rel = self._to, path
        else:
            owner = self._config.source_for(path)
            if owner is None:
                raise RestoreError(f"{path}: its source is not in the config",
                                   hint="restore it elsewhere with --to DIR")
            root, rel = owner[0].root, owner[1]
        folder_rel, _, name = rel.rpartition("/")
        known = self._folders.get((root, folder_rel))
        if known is None or not name:
            folder = safe_target(root, rel, self._checked).parent
            missing = not os.path.lexists(folder)
            if missing or not folder.is_dir():
                there = folder  # the nearest thing on disk on the way: a folder, or in the way
                while not os.path.lexists(there) and there != there.parent:
                    there = there.parent
                if not there.is_dir():
                    self.in_the_way[path] = str(there)
            known = self._folders[(root, folder_rel)] = (str(folder).rstrip("/") + "/",
                                                        missing)
        return known[0] + name, known[1]

    def refuse_files_in_the_way(self, actions: list[Action]) -> None:
        """Refuse, while planning (so that a dry run says it too), a file where the restore
        needs a folder, unless the plan deletes it first."""
        deleted = {a.target for a in actions if a.action == "delete"}
        for path, there in sorted(self.in_the_way.items()):
            if there not in deleted:
                raise RestoreError(f"cannot restore {path}: {there} is a file where the "
                                   "restore needs a folder",
                                   hint="move it away, or restore elsewhere with --to DIR")


def _verb(reader: BlobReader, target: Path, oid: str, mode: int) -> str:
    if not target.exists() and not target.is_symlink():
        return "create"
    if target.is_symlink() or not target.is_file():
        return "overwrite"
    if bool(target.stat().st_mode & 0o100) != (mode == MODE_EXEC):
        return "overwrite"  # same bytes, but executable where it was not (or the reverse)
    return "unchanged" if _same_content(target, reader, oid) else "overwrite"


def _same_content(target: Path, reader: BlobReader, oid: str) -> bool:
    from vault.sqlite_dump import is_sqlite_file, snapshot_sqlite

    try:
        if reader.get(oid).head(len(DUMP_HEADER)) == DUMP_HEADER:
            return is_sqlite_file(target) and VaultRepo.hash_blob(snapshot_sqlite(target)) == oid
        return VaultRepo.hash_blob(target.read_bytes()) == oid
    except (OSError, VaultError):
        return False  # unreadable or corrupt: it gets replaced


def _present_files(config: Config, options: RestoreOptions, wanted: Callable[[str], bool],
                   in_vault: Iterable[str]) -> list[tuple[str, Path]]:
    """Files that exist now where the restore writes, as vault paths (for --delete).

    With --to, only _delete_folders are looked at. A source folder that is not there has
    nothing in it.
    """
    found: list[tuple[str, Path]] = []
    if options.to is not None:
        root = options.to
        for top in sorted(_delete_folders(config, options, in_vault)):
            folder = root / top
            if not folder.is_dir() or folder.is_symlink():
                continue  # a link here is refused when the plan resolves its targets
            for dirpath, dirs, names in os.walk(folder):
                dirs[:] = [d for d in dirs if d not in SKIP_DIR_NAMES]
                for name in names:
                    full = Path(dirpath) / name
                    rel = full.relative_to(root).as_posix()
                    if not name.endswith(COMPANION_SUFFIXES) and wanted(rel):
                        found.append((rel, full))
        return found
    chosen = set(options.sources or [s.name for s in config.sources])
    for source in config.sources:
        if source.name not in chosen or not os.path.lexists(source.root):
            continue
        scan = scan_source(source, skip_dirs=(config.vault.path, config.home))
        for entry in scan.entries:
            path = config.prefix(source.name) + entry.rel
            if wanted(path):
                found.append((path, Path(entry.path)))
    return found


def _set_aside_uncaptured(repo: VaultRepo, plan: RestorePlan, syncs: list[SyncResult],
                          cache_path: Path) -> RestorePlan:
    """Files the vault does not hold exactly as they are now are kept aside, not lost.

    The safety sync may have skipped a file (half-written JSON, unreadable), stored part of it
    (a JSONL file up to its last whole line) or stored it with its secrets redacted: each file
    about to be replaced or deleted is checked against what the vault's tip holds for it. A
    database is not dumped again: it is held when its stat (with its -wal and -journal) is
    still the one the safety sync's stat cache recorded for the dump it stored.
    """
    from vault.detect import is_racy, load_cache
    from vault.sqlite_dump import is_sqlite_file

    head = repo.head_id()
    stored = tree_files(repo, head) if head else {}
    plan = _spare_skipped(plan, syncs, stored)
    plan = replace(plan, actions=tuple(
        replace(a, held=stored[a.path][0]) if a.action == "delete" and a.path in stored else a
        for a in plan.actions))
    changing = [a for a in plan.actions if a.action in ("overwrite", "delete")]
    if not changing:
        return plan
    # Each file's stat, before it is looked at: a write after this point is seen later.
    seen = {a.target: _stat_key(a.target) for a in changing}
    cache = load_cache(cache_path)
    doubtful = {s.path for sync in syncs for s in (*sync.skipped, *sync.redacted)}
    stamp = _aside_stamp(syncs[0].timestamp)

    def captured(action: Action, reader: BlobReader) -> bool:
        if action.path in doubtful or action.path not in stored:
            return False
        target = Path(action.target)
        if is_sqlite_file(target):
            # Its dump, taken through the backup API by this sync (or, unchanged since, an
            # earlier one), unless secrets were redacted from it, and unless it was written
            # since: a write after the sync's stat (maybe after its snapshot) changes the key,
            # or, within the same clock tick as the stat (racy), maybe not: dumped again.
            cached = cache.files.get(action.path)
            if cache.commit != head or cached is None or cached.oid != stored[action.path][0] \
                    or cached.key != _stat_key(action.target) \
                    or is_redacted_blob(reader.get(cached.oid)):
                return False
            return not is_racy(cached.key, cache.scanned_ns) \
                or _same_content(target, reader, cached.oid)
        try:
            if target.is_symlink() or not target.is_file():
                return False
            return VaultRepo.hash_blob(target.read_bytes()) == stored[action.path][0]
        except OSError:
            return False  # moved aside unread

    with BlobReader(repo) as reader:
        uncaptured = {a.path for a in changing if not captured(a, reader)}
    # A file another process has open (an agent appending to its transcript) is moved aside
    # rather than replaced: the writer's later writes land in the kept file, not in a deleted one.
    from vault.inuse import open_paths

    held = {str(p) for p in open_paths([Path(a.target) for a in changing
                                         if a.path not in uncaptured])}
    used: set[str] = set()
    actions = tuple(
        replace(a, set_aside=_aside_name(a.target, stamp, used))
        if a.path in uncaptured or a.target in held else
        replace(a, seen=seen[a.target]) if a.action in ("overwrite", "delete") else a
        for a in plan.actions)
    return replace(plan, actions=actions)


COMPANION_IN_THE_WAY = "SQLite would take it for the restored database's own"
FOLDER_IN_THE_WAY = "a folder where the restore puts a file"


def _folders_in_the_way(actions: list[Action], now: datetime) -> tuple[
        list[Action], tuple[str, ...]]:
    """Each folder that stands where the commit has a file, kept aside whole (its files in
    it, under their own names), into the live sources (the safety sync holds its files) as
    into --to DIR: a file cannot be written over a folder. Planned here, so that a dry run
    says it too. Returns the actions, and those folders (each with a trailing slash): the
    files in them go with them, so --delete plans no delete of its own for any of them."""
    stamp = _aside_stamp(now)
    used: set[str] = set()
    folders: list[str] = []
    out: list[Action] = []
    for action in actions:
        if action.action == "overwrite" and not action.set_aside and _is_folder(action.target):
            action = replace(action, set_aside=_aside_name(action.target, stamp, used),
                             why=FOLDER_IN_THE_WAY)
            folders.append(action.target + "/")
        out.append(action)
    return out, tuple(folders)


def _is_folder(target: str) -> bool:
    """A real folder (a symlink to one is a file of the source's: it is replaced itself)."""
    try:
        return stat.S_ISDIR(os.lstat(target).st_mode)
    except OSError:
        return False


def _companions_in_the_way(reader: BlobReader, actions: list[Action],
                           files: dict[str, tuple[str, int]], now: datetime) -> list[Action]:
    """The files named like SQLite's X-wal, X-shm or X-journal beside a database X that the
    restore writes, when they are not the live X's own (X is a plain file, or not there):
    files of the user's, which the vault holds as such. SQLite would take them for the
    restored database's own (a WAL is replayed over it), so they cannot stay: they are kept
    aside, listed, and covered by the undo, as a file the restore replaces. (The live
    database's own go with it: the safety sync took its state through the backup API.)"""
    names: dict[str, set[str]] = {}  # folder -> the names in it (one listing per folder)
    # X for each X-wal, X-shm or X-journal the commit holds (usually none)
    stems = {companion_stem(p) for p in files if p.endswith(COMPANION_SUFFIXES)}
    planned = {a.path for a in actions}
    stamp = _aside_stamp(now)
    used: set[str] = set()
    aside: list[Action] = []
    for action in actions:
        if action.action not in ("create", "overwrite"):
            continue
        folder, _, name = action.target.rpartition("/")
        here = names.get(folder)
        if here is None:
            try:
                here = names[folder] = set(os.listdir(folder))
            except OSError:  # (a folder the restore makes: nothing in it yet)
                here = names[folder] = set()
        present = [s for s in COMPANION_SUFFIXES if name + s in here] if here else []
        if not present and action.path not in stems \
                or reader.get(action.oid).head(len(DUMP_HEADER)) != DUMP_HEADER:
            continue
        if action.path in stems:  # (a commit made by hand: a sync never stores such a pair)
            held = next(action.path + s for s in COMPANION_SUFFIXES if action.path + s in files)
            raise RestoreError(f"cannot restore {action.path}: the commit also holds "
                               f"{held}, which SQLite would take for the database's own",
                               hint="restore one of them (--path)")
        for suffix in present:
            path, target = action.path + suffix, action.target + suffix
            if path in planned or is_own_companion(target):
                continue  # (deleted by --delete; or the live database's own)
            aside.append(Action("delete", path, target, why=COMPANION_IN_THE_WAY,
                                set_aside=_aside_name(target, stamp, used)))
    return aside


def _aside_stamp(when: datetime) -> str:
    """The time in a kept-aside file's name (_ASIDE matches it): 2026-11-21T101500Z."""
    return format_time(when).replace(":", "")


def _aside_name(target: str, stamp: str, used: set[str]) -> str:
    """A name beside target for the live file kept aside, taken by nothing (and no companion
    of it), also not by another file of this restore."""
    base = f"{target}.pre-restore-{stamp}"
    name, n = base, 1
    while name in used or any(os.path.lexists(name + s) for s in ("", *COMPANION_SUFFIXES)):
        n += 1
        name = f"{base}-{n}"
    used.add(name)
    return name


def _stat_key(target: str) -> tuple[int, ...]:
    """The live file's stat key as the sync's scan makes it (sources.stat_key of the name
    itself, then of its -wal and -journal where there are such files: a database's write may
    touch only those); () when it is gone."""
    try:
        key = stat_key(os.lstat(target))
    except OSError:
        return ()
    for suffix in KEYED_COMPANIONS:
        if os.path.lexists(target + suffix):
            key += companion_key(target + suffix)
    return key


def _apply_all(repo: VaultRepo, actions: tuple[Action, ...], writer: BatchWriter,
               progress: Callable[[int, int], None] | None, databases: Databases,
               late: list[Action], fresh: _FreshFolders | None = None,
               book: ModeBook | None = None) -> list[str]:
    """Carry out every action, in order; the paths whose restored content carries redactions.
    Into late go the actions whose live file changed since it was checked (kept aside after
    all), also when a later one fails.

    Plain files are read, inflated, checked, written to a temp file beside their target and
    put in place, one by one in plan order; those that replace a live file wait until their
    contents are flushed (a batch at a time); new files below staging (_FreshFolders) are
    written in place. The object files are read ahead by threads (BlobReader.read_ahead).
    Databases are rebuilt by a helper process (Databases) and moved into place (and their
    old files set aside, when they must be) after the plain files. Folders are opened below
    roots without following symlinks. After a failure, the folders this restore made and
    left empty are removed. Into book go the modes of live files deleted; a new file takes
    the mode it records for its path and content.

    Tried and measured slower on two cores, where the database helper needs the other one:
    two threads sharing the files; the helper process writing half of the new files (10,000
    files on tmpfs: 1.15-1.6 s against 0.86-1.09 s, the helper's database build became the
    longest job); a flush every 1,000 or 2,000 new files, on a thread (the last flush went
    from ~100 ms to ~15 ms, the writes slowed by more).
    """
    redacted: list[str] = []
    done = 0
    # Files that replace a live one wait here, staged: they are flushed to disk (one syncfs for
    # the lot) before any of them is renamed over the old file, so that a power cut never
    # leaves an old file replaced by an empty one. New files are flushed once, at the end.
    replacing: list[tuple[Action, Staged]] = []
    used: set[str] = set()
    old = _OldCopies(writer, late, used)
    beside: dict[str, list[Action]] = {}  # a database's target -> COMPANION_IN_THE_WAY actions

    def recheck(action: Action) -> Action:
        """The action, keeping its live file aside when it changed since it was checked (an
        agent still writing): the check and the replace are moments apart."""
        now = _stat_key(action.target)
        if action.set_aside or not action.seen or now == action.seen or not now:
            return action  # (gone meanwhile: nothing to keep; written, or not deleted, anyway)
        stamp = _aside_stamp(datetime.now(timezone.utc))
        late.append(replace(action, set_aside=_aside_name(action.target, stamp, used)))
        return late[-1]

    def step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, len(actions))

    def flush() -> None:
        for folder in writer.filesystems():
            sync_filesystem(Path(folder))

    def replace_staged() -> None:
        if replacing:
            flush()
        while replacing:
            action, staged = replacing[0]
            try:
                action = recheck(action)
                if action.set_aside:
                    _set_aside(action, writer)
                else:
                    old.keep(action, move=False)
            except OSError as exc:
                raise _write_error(exc, action.target) from None  # (discarded below)
            del replacing[0]
            try:
                writer.publish(staged, exists=True)  # (which lets go of staged, come what may)
            except OSError as exc:
                raise _write_error(exc, action.target) from None
            step()
        old.settle()

    with BlobReader(repo) as reader:
        reader.read_ahead([a.oid for a in actions if a.action in ("create", "overwrite")])
        finished = False
        try:
            for action in actions:
                try:
                    stem = companion_stem(action.target) \
                        if action.target.endswith(COMPANION_SUFFIXES) else None
                    if stem is not None:
                        if action.why == COMPANION_IN_THE_WAY:
                            # kept aside with its database, as it is moved in: X's stat
                            # (checked again then) includes X-wal's
                            beside.setdefault(stem, []).append(action)
                            continue
                        if any(a.target == stem for a, _s in replacing):
                            replace_staged()  # X first: setting it aside takes X-wal along
                    if action.action == "delete":
                        action = recheck(action)
                        if book is not None and action.held:
                            book.note(action.path, action.held, action.target)
                        if action.set_aside or not old.keep(action, move=True):
                            _delete(action, writer)
                    elif action.action != "unchanged":
                        # a new file of _FreshFolders: written in its staging folder
                        staged_at = fresh.target(action.target) \
                            if fresh is not None and action.action == "create" else None
                        blob = reader.get(action.oid)
                        if blob.head(len(DUMP_HEADER)) == DUMP_HEADER:
                            # a database: rebuilt by the helper, moved in at the end
                            if staged_at is not None:
                                action = replace(action, target=staged_at)
                            target = Path(action.target)
                            writer.make_folder(str(target.parent))
                            databases.submit(action, target)  # (checked for openness
                            # before the writes began, and again before it is moved in)
                            continue
                        executable = action.mode == MODE_EXEC
                        mode = restored_mode(action.target, executable) \
                            if action.action == "overwrite" else _new_mode(book, action)
                        if is_redacted_blob(blob):
                            redacted.append(action.path)
                        if staged_at is not None:
                            # no one sees it until it is whole: no temp file
                            folder, _, name = staged_at.rpartition("/")
                            writer.write_new(folder, name, blob.view(), mode)
                            step()
                            continue
                        folder, _, name = action.target.rpartition("/")
                        staged = writer.stage(folder, name, blob.view(), mode)
                        if action.action == "overwrite":
                            replacing.append((action, staged))
                            if len(replacing) >= _REPLACE_BATCH:
                                replace_staged()
                            continue
                        writer.publish(staged, exists=False)
                except OSError as exc:
                    raise _write_error(exc, action.target) from None
                step()
            replace_staged()
            old.settle()
            built = list(databases.results())  # all built and checked before any moves in
            if any(action.action == "overwrite" for action, _tmp, _marked in built):
                flush()
            # again, after the flush (which takes a while), right before the moves: a
            # database may have been opened while they were built or flushed
            refuse_any_open([Path(action.target) for action, _tmp, _marked in built])
            for action, tmp, marked in built:
                target = Path(action.target)
                try:
                    mode = _new_mode(book, action) if action.action == "create" \
                        and not os.path.lexists(target) \
                        else restored_mode(action.target, action.mode == MODE_EXEC)
                    action = recheck(action)
                    if action.set_aside:
                        _set_aside(action, writer)
                    for companion in beside.pop(action.target, ()):
                        _set_aside(companion, writer)
                        step()
                    install_sqlite(tmp, target, durable=False, writer=writer, mode=mode)
                except OSError as exc:
                    raise _write_error(exc, action.target) from None
                if marked:
                    redacted.append(action.path)
                step()
            finished = True
        finally:
            for _action, staged in replacing:  # not put in place (after an error)
                writer.discard(staged)
            old.settle(quietly=True)
            databases.close()  # the temp folders of databases not moved in (after an error)
            if not finished:
                writer.remove_new_folders()
        # One flush per filesystem for the rest of the batch instead of an fsync per file:
        # every file was written to a temp file and moved into place in one step.
        flush()
    return sorted(redacted)


def _new_mode(book: ModeBook | None, action: Action) -> int:
    """The mode of a new file: the one a restore recorded when it deleted this path holding
    this content (so an undo gives back a 0600 file as 0600), or new_file_mode."""
    executable = action.mode == MODE_EXEC
    recorded = book.mode_for(action.path, action.oid, executable) if book is not None else None
    return new_file_mode(executable) if recorded is None else recorded


class _FreshFolders:
    """A restore --to DIR of sources whose folder DIR/<source> is not there: their files are
    written straight into a staging folder (DIR/.vault-restore-*/<source>), flushed with the
    rest, and each folder is then renamed into place whole.

    No one sees a file of those folders before the whole folder is written and flushed, which
    is what a temp file and a rename per file give, without them: a plain create costs a third
    less (10,000 files: 0.31-0.45 s against 0.43-0.76 s for unnamed temp files linked into
    place, on this VM). After a failure or an interrupt the staging folder goes, with whatever
    it held; a crash leaves it (sync and restore show it as left by an interrupted restore).
    """

    def __init__(self, into: str, tops: list[str], staging: str, depth: int,
                 every_top: bool) -> None:
        self._into = into
        self._tops = tops  # the source folders under DIR that are made here (host/source...)
        self._fresh = frozenset(tops)
        self._every_top = every_top  # all the plan's source folders under DIR are made here
        self._staging = staging
        self._depth = depth

    @classmethod
    def start(cls, plan: RestorePlan, writer: BatchWriter, depth: int) -> _FreshFolders | None:
        """Make the staging folder when some of the plan's source folders under DIR (depth
        parts deep: <source>, or <host>/<source>) are missing."""
        if plan.into is None:
            return None
        into = os.path.realpath(plan.into)
        planned = sorted({_top(a.target[len(into) + 1:], depth) for a in plan.actions
                          if a.action == "create" and a.target.startswith(into + "/")})
        tops = [t for t in planned if not os.path.lexists(os.path.join(into, t))]
        if not tops:
            return None
        try:
            writer.make_folder(into)
            staging = tempfile.mkdtemp(prefix=".vault-restore-", dir=into)
            adopt_owner(staging)  # (as root: what is made in it, and moved out, is into's owner's)
        except OSError as exc:
            raise _write_error(exc, into) from None
        writer.uncounted = staging + "/"  # a change once its folder is moved into place
        return cls(into, tops, staging, depth, every_top=len(tops) == len(planned))

    def target(self, target: str) -> str | None:
        """Where a new file at target is written: in the staging folder when its source
        folder is one made here, else None (written in place, as any other)."""
        start = len(self._into) + 1
        if target[start - 1:start] != "/" or not target.startswith(self._into):
            return None
        if self._every_top or _top(target[start:], self._depth) in self._fresh:
            return self._staging + target[start - 1:]
        return None

    def unstaged(self, message: str) -> str:
        """A message with the staging folder's paths as they are meant to be."""
        return message.replace(self._staging + "/", self._into + "/")

    def move_in(self, writer: BatchWriter) -> None:
        """Rename each staged folder into place (written and flushed by now), durably."""
        parents: set[str] = set()
        for top in self._tops:
            target = os.path.join(self._into, top)
            parent = os.path.dirname(target)
            try:
                if parent != self._into:
                    writer.make_folder(parent)  # (<host>, when only <host>/<source> is new)
                os.rename(os.path.join(self._staging, top), target)
            except OSError as exc:  # (made meanwhile by someone else, and not empty)
                raise RestoreError(f"cannot move {top} into {self._into}: "
                                   f"{exc.strerror or exc}",
                                   hint="did another program make it while the restore ran?"
                                   ) from None
            writer.changes += 1
            parents.add(parent)
            left = os.path.dirname(os.path.join(self._staging, top))
            while left != self._staging:  # the staging folder's own <host> folders
                try:
                    os.rmdir(left)
                except OSError:
                    break
                left = os.path.dirname(left)
        for parent in sorted(parents):
            fsync_dir(Path(parent))
        try:
            os.rmdir(self._staging)
        except OSError:
            pass  # (not empty: left, as after a crash; sync and restore name it)

    def discard(self, writer: BatchWriter) -> None:
        """After a failure: remove the staging folder and what it holds (none of it counted as
        a change: the writer's uncounted folder), then the folders made for it."""
        shutil.rmtree(self._staging, ignore_errors=True)
        writer.remove_new_folders()


class _OldCopies:
    """Live files a restore replaces or deletes, kept reachable under their kept-aside name (a
    hard link to a replaced file; a deleted one moved there) until it is sure nobody writes to
    them: an agent that opened one in the moment before it was replaced (after the last look
    for open files: the batch's flush takes a while) writes into the old file, not into
    nothing. settle() then drops each copy, or keeps it aside (as a late action) when another
    process holds it or it changed."""

    def __init__(self, writer: BatchWriter, late: list[Action], used: set[str]) -> None:
        self._writer = writer
        self._late = late
        self._used = used
        self._copies: list[tuple[Action, str]] = []  # action, kept-aside name of the old file

    def keep(self, action: Action, *, move: bool) -> bool:
        """Keep the live plain file of action reachable (moved away when move: a delete);
        False for a database (its own checks apply) or a file not there."""
        from vault.sqlite_dump import is_sqlite_file

        target = Path(action.target)
        if not action.seen or is_sqlite_file(target):
            return False
        folder, _, name = action.target.rpartition("/")
        aside = _aside_name(action.target, _aside_stamp(datetime.now(timezone.utc)), self._used)
        # Listed before it exists, so that an interrupt at any point leaves no copy that
        # settle() does not know of (one listed and never made is skipped there).
        self._copies.append((action, aside))
        try:
            if move:
                self._writer.move_in(folder, name, aside.rpartition("/")[2], replace=False)
            else:
                self._writer.link_in(folder, name, aside.rpartition("/")[2])
        except FileNotFoundError:
            self._copies.pop()
            return False  # gone meanwhile: nothing to keep
        except BaseException:
            if not os.path.lexists(aside):
                self._copies.pop()
            raise
        return True

    def settle(self, *, quietly: bool = False) -> None:
        """One look for holders of all the copies; each is dropped, or kept aside."""
        from vault.inuse import open_paths

        copies = self._copies
        if not copies:
            return
        done = 0  # (each copy leaves the list once handled: one that an interrupt left
        try:      # unhandled is still there for the settle(quietly=True) that follows it)
            held = {str(p) for p in open_paths([Path(aside) for _action, aside in copies])}
            for action, aside in copies:
                try:
                    st = os.lstat(aside)
                except (FileNotFoundError, NotADirectoryError):
                    # someone took it away (or its folder: a file stands there now): nothing
                    # of ours to keep or drop (a restore never moves away a folder holding
                    # one, _folders_in_the_way)
                    done += 1
                    continue
                seen = action.seen  # (a link changes the inode's ctime: not compared)
                if aside in held or (st.st_size, st.st_mtime_ns, st.st_ino) != (
                        seen[0], seen[1], seen[3]):
                    self._late.append(replace(action, set_aside=aside))
                else:
                    folder, _, name = aside.rpartition("/")
                    self._writer.remove(folder, name)
                done += 1
        except OSError:
            if not quietly:
                raise
            # (after an error: a copy left is a file kept, not a file lost)
        finally:
            del copies[:done]


def _delete(action: Action, writer: BatchWriter) -> None:
    from vault.sqlite_dump import is_sqlite_file

    if action.set_aside:
        _set_aside(action, writer)
        return
    folder, _, name = action.target.rpartition("/")
    # A database's -wal/-shm/-journal go with it; beside a plain file, such names are files of
    # the user's (synced as such), not to be touched.
    database = is_sqlite_file(Path(action.target))
    if database:
        refuse_if_open(Path(action.target))  # again: it may have been opened since the plan
    suffixes = ("", *COMPANION_SUFFIXES) if database else ("",)
    for suffix in suffixes:
        writer.remove(folder, name + suffix)


def _set_aside(action: Action, writer: BatchWriter) -> None:
    """Move the live file to action.set_aside (beside it); a database takes its -wal, -shm
    and -journal along (its last transactions may be in the WAL), and is refused while
    another process has it."""
    from vault.sqlite_dump import is_sqlite_file

    assert action.set_aside is not None
    target = Path(action.target)
    database = is_sqlite_file(target)
    if database:
        refuse_if_open(target)
    folder, _, name = action.target.rpartition("/")
    aside = action.set_aside.rpartition("/")[2]
    writer.move_in(folder, name, aside, replace=False)  # never over another kept file
    for suffix in COMPANION_SUFFIXES if database else ():
        try:
            writer.move_in(folder, name + suffix, aside + suffix, replace=False)
        except FileNotFoundError:
            pass


def _write_error(exc: OSError, target: str) -> VaultError:
    if exc.errno == errno.ELOOP:
        return UnsafePathError(f"refusing to write through a symlink: {exc.filename or target}")
    if isinstance(exc, OutsideRoots):  # not below any root of the restore
        return UnsafePathError(f"refusing to write outside the target: {target}")
    return RestoreError(f"{target}: cannot write: {exc.strerror or exc}",
                        hint="fix the cause and run the restore again")


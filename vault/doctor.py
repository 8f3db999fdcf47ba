"""vault doctor: every health check with a status and a one-line explanation; drills; repairs."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from vault.config import Config
from vault.errors import SourceError, VaultError
from vault.fsutil import atomic_write
from vault.repo import NotMadeByVaultError, VaultRepo, headless
from vault.sources import scan_source

OK, WARN, FAIL = "ok", "warn", "fail"
MIN_FREE_BYTES = 100 * 1024**2
LOW_FREE_BYTES = 1024**3


@dataclass(frozen=True)
class Check:
    """One health check: its name, ok / warn / fail, and a one-line explanation."""

    name: str
    status: str
    detail: str


@dataclass(frozen=True)
class Drill:
    """A restore drill: HEAD restored into a temp dir and proven equal, and how long it took."""

    commit: str
    files: int
    databases: int
    seconds: float
    problems: tuple[str, ...]
    chunks_reindexed: int = 0  # a sample of files chunked and embedded again (when indexed)


@dataclass(frozen=True)
class DoctorReport:
    """Every check, what --repair did, and the drill when asked for."""

    checks: tuple[Check, ...]
    repairs: tuple[str, ...] = ()
    drill: Drill | None = None

    @property
    def ok(self) -> bool:
        """True when no check failed (warnings allowed)."""
        return all(c.status != FAIL for c in self.checks) and (
            self.drill is None or not self.drill.problems)


def doctor(config: Config, *, repair: bool = False, drill: bool = False,
           crontab_file: Path | None = None,
           now: Callable[[], datetime] | None = None) -> DoctorReport:
    """Run every check (and the drill and repairs when asked); never raises for a failed check."""
    clock = now or (lambda: datetime.now(timezone.utc))
    repairs: list[str] = []
    repo, repo_check = open_and_check(config)
    if repo_check.status == FAIL and repair and repo is None and _headless(config.vault.path):
        # (its HEAD file alone is gone: written back in place, nothing re-cloned or lost)
        repairs.append(_write_missing_head(config))
        repo, repo_check = open_and_check(config)
    # (a project's repository is not damage: never re-cloned, drilled or judged as a vault)
    refused = _refusal(repo) if repo is not None and repo_check.status == FAIL else None
    if repo_check.status == FAIL and repair and refused is None and repo is not None \
            and _ref_damage(repo):
        # Damaged refs are fixed in place first (nothing is lost that way); a re-clone is
        # for what that cannot fix.
        repairs.extend(_repair_refs(config, repo))
        repo, repo_check = open_and_check(config)
    if repo_check.status == FAIL and repair and refused is None and (
            repo is not None or _headless(config.vault.path)):
        repaired, fresh = _repair_repository(config, repo_check.detail)
        repairs.append(repaired)
        if fresh is not None:
            repo, repo_check = fresh, check_repository(fresh)
    intact = repo is not None and repo_check.status != FAIL
    if intact:
        assert repo is not None
        # (after the repairs: a vault no sync can write to is intact, nothing to re-clone)
        problem = write_problem(repo, config.state_dir)
        if problem is not None:
            repo_check = Check("repository", FAIL, f"no sync can write to the vault: {problem} "
                                                   f"({repo_check.detail})")
    checks = [repo_check]
    # What a check that needs an intact vault says on any other (the report stays complete)
    unchecked = "not checked: " + (
        "not a vault" if refused is not None
        else "the vault itself is damaged" if repo is not None or _headless(config.vault.path)
        else "no vault") + " (see repository)"
    if intact:
        assert repo is not None
        checks.append(check_databases(repo))
        index_check = check_index(config, repo)
        if index_check.status == FAIL and repair:
            repairs.append(_rebuild_index(config))
            index_check = check_index(config, repo)
        checks.append(index_check)
    else:
        checks.append(Check("databases", WARN, unchecked))
        checks.append(Check("index", WARN, unchecked))
    checks.append(check_sources(config))
    if intact:
        assert repo is not None
        memory = check_memory_files(config, repo, clock)
        if memory.corrupt and repair:
            memory = _repair_memory_files(config, repo, clock, repairs)
        checks.append(memory.check)
    else:
        # (which files are corrupt is judged against the vault's good versions)
        checks.append(Check("memory files", WARN, unchecked))
    from vault.schedule import sync_interval

    checks.append(check_last_sync(config, repo, clock(),
                                  sync_interval(config, crontab_file, clock())))
    checks.append(check_lock(config))
    if refused is not None or repo is None:
        # (it may record or forget a tracking ref: not in a project's)
        checks.append(Check("remote", WARN, unchecked))
    else:
        checks.append(_guarded("remote", lambda: check_remote(config, repo), intact))
    checks.append(check_cron(config, crontab_file))
    checks.append(check_disk(config))
    drilled: Drill | None = None
    if drill:
        drilled = run_drill(config, repo) if repo is not None and refused is None else Drill(
            "", 0, 0, 0.0, (f"nothing to drill: {repo_check.detail}",))
    return DoctorReport(checks=tuple(checks), repairs=tuple(repairs), drill=drilled)


def _guarded(name: str, run: Callable[[], Check], intact: bool) -> Check:
    """A check that cannot crash the report: on a damaged vault whatever it raises is a
    warning (the repository check already fails and names the damage); on an intact one a
    VaultError is this check's failure."""
    try:
        return run()
    except VaultError as exc:
        if intact:
            return Check(name, FAIL, exc.message)
        return Check(name, WARN, f"not checked: {exc.message}")
    except Exception as exc:  # noqa: BLE001 - libgit2 fails in many ways on damaged objects
        if intact:
            raise
        return Check(name, WARN, f"not checked: the vault is damaged ({exc})")


def open_and_check(config: Config) -> tuple[VaultRepo | None, Check]:
    """The vault (None when it cannot be opened) and the repository check."""
    try:
        repo = VaultRepo.open(config.vault.path, config.vault.branch)
    except VaultError as exc:  # (no vault, a work tree: NoVaultError; no HEAD: RepoError)
        if _headless(config.vault.path):
            return None, Check("repository", FAIL, f"{config.vault.path}: its HEAD file is "
                                                   "missing (its objects and refs are there): "
                                                   "a damaged vault")
        return None, Check("repository", FAIL, exc.message)
    return repo, check_repository(repo)


def _headless(path: Path) -> bool:
    """A vault whose HEAD file is gone (repo.headless)."""
    return headless(path)


def _refusal(repo: VaultRepo) -> NotMadeByVaultError | None:
    """Why sync refuses this repository as the vault (its branch is not vault's), if it does."""
    try:
        repo.check_made_by_vault()
    except NotMadeByVaultError as exc:
        return exc
    except VaultError:
        pass  # a damaged tip: the objects check names it
    return None


def check_repository(repo: VaultRepo) -> Check:
    """A branch vault made (as sync demands), every object reachable from it readable and
    matching its id."""
    try:
        repo.check_refs()  # (git reads the branch through these: damaged, no sync commits)
    except VaultError as exc:
        return Check("repository", FAIL, exc.message)
    refused = _refusal(repo)
    if refused is not None:
        return Check("repository", FAIL, f"{refused.message} ({refused.hint})")
    try:
        count, problems = repo.verify()
    except VaultError as exc:
        return Check("repository", FAIL, exc.message)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return Check("repository", FAIL, problems[0] + more)
    if count == 0:
        return Check("repository", WARN, f"{repo.path}: no commits yet (run `vault sync`)")
    intact = f"{count} objects reachable from {repo.branch}, all intact"
    stray = repo.head_names_no_branch()
    if stray is not None:  # (syncs work; git's own commands on the vault do not)
        return Check("repository", WARN, f"{intact}; but HEAD names branch '{stray}', which "
                                         f"does not exist: `git -C {repo.path} log` fails "
                                         f"(`vault init` points HEAD at {repo.branch})")
    return Check("repository", OK, intact)


def write_problem(repo: VaultRepo, state_dir: Path) -> str | None:
    """What keeps every sync from writing, as a sync writes: a folder it makes files in that
    takes no new one (probed: a file made and removed) or an object folder that is not
    writable; a file it appends to (the branch's reflog, the lock file) that is read-only.
    None when a sync can write."""
    objects = repo.path / "objects"
    for folder in (objects, _nearest(repo.path / repo.ref_name, repo.path),
                   _nearest(repo.path / "logs" / repo.ref_name, repo.path),
                   _nearest(state_dir / "sync.lock", repo.path)):
        try:
            fd, probe = tempfile.mkstemp(prefix=".vault-doctor-probe-", dir=folder)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            return f"{folder} takes no new file ({exc.strerror or exc})"
    try:
        subfolders = sorted(d for d in objects.iterdir() if len(d.name) == 2)
    except OSError as exc:
        return f"{objects} cannot be read ({exc.strerror or exc})"
    for folder in subfolders:  # (each object goes into the one its id names)
        if not os.access(folder, os.W_OK | os.X_OK):
            return f"{folder} is not writable"
    from vault.lock import LOCK_NAME

    for appended in (repo.path / "logs" / repo.ref_name, state_dir / LOCK_NAME):
        if appended.exists() and not os.access(appended, os.W_OK):
            return f"{appended} is read-only"
    return None


def _nearest(path: Path, root: Path) -> Path:
    """The folder a sync writes path in, or the nearest one above it that exists (the sync
    makes the rest), never above root."""
    folder = path.parent
    while not folder.is_dir() and folder != root and folder != folder.parent:
        folder = folder.parent
    return folder


def check_databases(repo: VaultRepo) -> Check:
    """Every SQLite dump at the branch tip rebuilds into a database that passes integrity_check
    (rebuilt in the temp folder one at a time; a temp folder too small for one is a warning,
    not a bad dump)."""
    import apsw

    from vault.sqlite_dump import is_dump, load_dump

    head = repo.head_id()
    if head is None:
        return Check("databases", OK, "no commits yet")
    bad: list[str] = []
    unchecked: list[tuple[str, str]] = []  # (vault path, what is wrong with the temp folder)
    count = 0
    scratch = Path(tempfile.gettempdir())
    try:
        folder = tempfile.TemporaryDirectory(prefix="vault-doctor-")
    except OSError as exc:
        return Check("databases", WARN, f"cannot check: cannot make a folder in {scratch}: "
                                        f"{exc.strerror or exc} {_SCRATCH_HINT}")
    with folder as tmp:
        for path, (oid, _mode) in sorted(repo.files(head).items()):
            data = repo.read_blob(oid)
            if not is_dump(data):
                continue
            count += 1
            built = Path(tmp) / f"{count}.db"
            try:
                load_dump(data, built, durable=False)  # (scratch: no fsync)
            except (VaultError, apsw.Error, OSError) as exc:
                trouble = _scratch_trouble(exc, scratch, len(data), io_errors=True)
                if trouble is not None:
                    unchecked.append((path, trouble))
                elif isinstance(exc, VaultError):
                    bad.append(f"{path}: {exc.message}")
                else:
                    raise
            finally:
                # (each goes once checked: the temp folder never holds more than one)
                built.unlink(missing_ok=True)
    skipped = ""
    if unchecked:
        skipped = (f"{len(unchecked)} of {count} not checked: {unchecked[0][1]} to rebuild "
                   f"{unchecked[0][0]}")
    if bad:
        return Check("databases", FAIL, f"{len(bad)} of {count} do not rebuild: {bad[0]}"
                                        + (f" ({skipped})" if skipped else ""))
    if unchecked:
        good = count - len(unchecked)
        return Check("databases", WARN, f"cannot check: {skipped}; {good} rebuild and pass "
                                        f"integrity_check {_SCRATCH_HINT}")
    return Check("databases", OK, f"{count} SQLite database(s) rebuild and pass integrity_check")


_SCRATCH_HINT = "(not the vault's fault: set TMPDIR to a folder with more room)"


def _scratch_trouble(exc: BaseException, scratch: Path, needs: int, *,
                    io_errors: bool = False) -> str | None:
    """What is wrong with the temp folder, when exc (or what it was raised from) says it is
    full, over quota, or (io_errors, where nothing but the temp folder is written) failing;
    None when the work itself failed. "database or disk is full" (SQLite's, or the words of
    an error a helper process sent back as text) counts only when the folder is short of
    room for needs bytes: a dump can also fill a database by setting its max_page_count, and
    that is a bad dump."""
    import apsw

    full = False
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, OSError):
            if link.errno == errno.ENOSPC:
                return f"no space in {scratch}"
            if link.errno == errno.EDQUOT:
                return f"the disk quota is used up in {scratch}"
            if io_errors and link.errno in (errno.EIO, errno.EROFS):
                return f"{scratch} cannot be written ({link.strerror})"
        elif isinstance(link, apsw.FullError):
            full = True
        elif io_errors and isinstance(link, apsw.IOError):
            return f"{scratch} cannot be written ({link})"
        else:
            text = link.message if isinstance(link, VaultError) else str(link)
            full = full or any(words in text for words in _FULL_WORDS)
        link = link.__cause__ or link.__context__
    if not full:
        return None
    try:
        free = shutil.disk_usage(scratch).free
    except OSError:
        free = 0
    if free >= 4 * needs + 1024**2:  # (room to spare: a database may outgrow its dump)
        return None
    return f"no space in {scratch}"


_FULL_WORDS = ("database or disk is full", os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT))


def check_index(config: Config, repo: VaultRepo) -> Check:
    """The recall index against the branch tip: current, lagging by N commits, or damaged."""
    path = config.index_path
    if not path.exists():
        return Check("index", OK, "no recall index built (run `vault index` to search memory)")
    from vault.embed import resolve_model
    from vault.index import IndexOutdated, IndexStore

    try:
        key = resolve_model(config.index.model,
                            config.file.parent if config.file else None).key
        with IndexStore(path, readonly=True) as store:
            if store.conn.execute("PRAGMA quick_check").fetchall() != [("ok",)]:
                raise VaultError("PRAGMA quick_check failed")
            indexed = {commit for commit, _time in store.indexed_commits(key)}
    except IndexOutdated:
        return Check("index", WARN, f"{path} was made by an older vault: the next `vault "
                                    "index` or `vault recall` upgrades it (nothing is "
                                    "embedded again)")
    except Exception as exc:  # noqa: BLE001 - a damaged file fails in many ways
        text = exc.message if isinstance(exc, VaultError) else str(exc)
        cause = text.removeprefix(f"the index {path} is damaged: ")  # (IndexStoreError's own)
        return Check("index", FAIL, f"{path} is damaged: {cause} (`vault doctor --repair` "
                                    "rebuilds it from the vault)")
    head = repo.head_id()
    if head is None or head in indexed:
        return Check("index", OK, f"current at {head[:10] if head else 'an empty vault'}")
    lag = 0
    for info in repo.walk_first_parent(head):
        if info.id in indexed:
            return Check("index", WARN, f"lagging by {lag} commit(s) (`vault recall` catches "
                                        "up first; or set [index] after_sync = true)")
        lag += 1
    return Check("index", WARN, f"no commit of this branch indexed with {config.index.model} "
                                "(run `vault index`)")


def _rebuild_index(config: Config) -> str:
    """Rebuild a damaged index from the vault alone (the old file is replaced atomically)."""
    from vault.embed import make_embedder, resolve_model
    from vault.index import IndexOptions, build_index

    try:
        spec = resolve_model(config.index.model, config.file.parent if config.file else None)
        result = build_index(config, IndexOptions(rebuild=True), make_embedder(spec))
    except VaultError as exc:
        return f"could not rebuild the index: {exc.message}"
    return f"rebuilt the index from the vault ({result.chunks} chunks)"


def _drill_index_sample(config: Config, repo: VaultRepo, head: str,
                        sample: int = 20) -> tuple[int, str | None]:
    """Chunk and embed a sample of the restored files with the exported query encoder."""
    from vault.chunk import chunk_file
    from vault.embed import load_query_encoder, resolve_model

    if not config.index_path.exists():
        return 0, None  # never indexed here: nothing to prove (nor a model to need)
    try:
        spec = resolve_model(config.index.model, config.file.parent if config.file else None)
        encoder = load_query_encoder(config.models_dir, spec)
    except VaultError as exc:
        return 0, exc.message
    if encoder is None:
        return 0, None  # never indexed here: nothing to prove
    texts: list[str] = []
    for path, (oid, _mode) in sorted(repo.files(head).items())[:sample]:
        texts.extend(c.embed_text for c in chunk_file(path, repo.read_blob(oid)))
    if texts:
        vectors = encoder.embed_documents(texts)
        if len(vectors) != len(texts):
            return 0, "the encoder returned the wrong number of vectors"
    return len(texts), None


def check_sources(config: Config) -> Check:
    """Every configured source root can be read."""
    problems: list[str] = []
    files = 0
    for source in config.sources:
        try:
            files += len(scan_source(source, skip_dirs=(config.vault.path, config.home)).entries)
        except SourceError as exc:
            problems.append(exc.message)
    if problems:
        return Check("sources", FAIL, problems[0] + (f" (+{len(problems) - 1} more)"
                                                     if len(problems) > 1 else ""))
    return Check("sources", OK, f"{len(config.sources)} source(s) readable, {files} files")


@dataclass(frozen=True)
class MemoryFiles:
    """The memory files check, and what it found: files to roll back (corrupt, judged as sync
    judges them), files too fresh to judge, files being written."""

    check: Check
    corrupt: tuple[tuple[str, str, str], ...] = ()  # (vault path, file, reason)
    fresh: tuple[tuple[str, str, str], ...] = ()  # looked corrupt, written in the last 2 s
    busy: tuple[tuple[str, str], ...] = ()  # (vault path, reason): being written


def check_memory_files(config: Config, repo: VaultRepo,
                       now: Callable[[], datetime] | None = None) -> MemoryFiles:
    """Source files the vault has good versions of and that are now damaged, judged by sync's
    own rules (a dry run of it: the second look, the open-file check, a database whose header
    or first page is damaged), then the 2-second rule: a file written in the last 2 seconds
    is too fresh to judge; a file being written is busy, never corrupt."""
    from vault.rollback import too_fresh
    from vault.sync import BEING_WRITTEN, SyncOptions, sync_locked

    name = "memory files"
    if repo.head_id() is None:
        return MemoryFiles(Check(name, OK, "nothing synced yet"))
    try:  # (a dry run takes no lock and writes nothing)
        result = sync_locked(config, repo, SyncOptions(dry_run=True),
                             now or (lambda: datetime.now(timezone.utc)))
    except VaultError as exc:
        # (a dry run refuses what the sync would: every sync fails so, nothing is backed up)
        return MemoryFiles(Check(name, FAIL, f"a sync fails: {exc.message}"))
    corrupt = [(c.path, c.file, c.reason) for c in result.corrupt]
    fresh = tuple(c for c in corrupt if too_fresh(c[1]))
    judged = tuple(c for c in corrupt if c not in fresh)
    busy = tuple((s.path, s.reason) for s in result.skipped if s.reason == BEING_WRITTEN)
    notes = []
    if fresh:
        notes.append(f"{len(fresh)} too fresh to judge: {fresh[0][0]} does not parse "
                     f"({fresh[0][2]}) but was written in the last 2 s (it may still be being "
                     "written; never rolled back yet, the next check or sync judges it)")
    if busy:
        notes.append(f"{len(busy)} being written: {busy[0][0]} (changed while checked, or "
                     "open in another process; not judged, never rolled back)")
    if judged:
        more = "".join(f"; {note}" for note in notes)
        check = Check(name, FAIL, f"{len(judged)} corrupt: {judged[0][0]} ({judged[0][2]}); "
                                  f"`vault doctor --repair` rolls back{more}")
    elif notes:
        check = Check(name, WARN, "; ".join(notes))
    else:
        check = Check(name, OK, "no corrupt JSON or SQLite memory files")
    return MemoryFiles(check, judged, fresh, busy)


def _repair_memory_files(config: Config, repo: VaultRepo, clock: Callable[[], datetime],
                         repairs: list[str]) -> MemoryFiles:
    """Roll back the corrupt files under the sync lock (judged again under it, right before)."""
    from vault.lock import SyncLock
    from vault.rollback import roll_back

    with SyncLock(config.state_dir, command="doctor --repair"):
        memory = check_memory_files(config, repo, clock)
        failed: list[tuple[str, str]] = []  # (vault path, why): could not be rolled back
        done = roll_back(repo, list(memory.corrupt), clock(), failed=failed,
                         settings=config.snapshot) \
            if memory.corrupt else []
        for rollback in done:
            warning = f" (warning: {rollback.warning})" if rollback.warning else ""
            repairs.append(f"rolled back {rollback.path}: corrupt file kept as "
                           f"{rollback.aside}{warning}")
        why_not = dict(failed)
        rolled = {r.path for r in done}
        for vpath, _file, _reason in memory.corrupt:
            if vpath in why_not:
                repairs.append(why_not[vpath])  # ("cannot roll back <path>: <why>")
            elif vpath not in rolled:
                repairs.append(f"did not roll back {vpath}: it was written to or opened while "
                               "being rolled back (it may still be being written)")
        return check_memory_files(config, repo, clock) if done else memory


def check_last_sync(config: Config, repo: VaultRepo | None, now: datetime,
                    interval: tuple[int, str] | None = None) -> Check:
    """The age of the last sync against the interval between syncs (sync_interval: vault's
    cron entry's, else [schedule] interval)."""
    from vault.sync import last_run

    seconds, source = interval or (config.schedule.interval, "[schedule] interval")
    synced: datetime | None = None
    if repo is not None:
        try:
            last = repo.last_by_vault()  # (a commit vault did not make is no sync)
            synced = last.time if last is not None else None
        except VaultError:
            pass  # a damaged vault (the repository check says how): the stamp still tells
    when = last_run(config, synced)
    if when is None:
        return Check("last sync", FAIL, "never synced")
    age = (now - when).total_seconds()
    text = f"{when:%Y-%m-%dT%H:%M:%SZ}, {int(age // 60)} min ago"
    if age > 2 * seconds:
        return Check("last sync", FAIL, f"{text}: older than two intervals "
                                        f"({seconds // 60} min each, {source})")
    return Check("last sync", OK, text)


def check_lock(config: Config) -> Check:
    """The sync lock: free, or held (by a process that is alive: flock dies with its process)."""
    from vault.lock import lock_state

    state = lock_state(config.state_dir)
    if not state.held:
        return Check("lock", OK, "free")
    if state.pid and state.command is None:  # (vault's commands record themselves)
        return Check("lock", WARN, f"held by {state.who()}: no sync can run while it holds "
                                   "the lock")
    age = time.time() - state.since if state.since else 0
    who = state.who()
    if age > 3600:
        return Check("lock", WARN, f"held by {who} for {int(age // 60)} min: a hung sync?")
    return Check("lock", OK, f"held by {who} (a sync is running)")


def check_remote(config: Config, repo: VaultRepo) -> Check:
    """The remote answers, holds what vault last pushed there, and how many commits it lacks."""
    from vault.remote import RemoteError, clean, clean_url, origin_url, remote_url, require_git
    from vault.remote import tracking_ref

    url = remote_url(config)
    if url is None:
        return Check("remote", WARN, "no remote: the vault exists on this machine only")
    try:
        require_git()
    except RemoteError as exc:  # (every sync's push fails the same way)
        return Check("remote", FAIL, f"{clean_url(url)} not checked: {exc.message}")
    import git

    try:
        listed = git.cmd.Git().ls_remote(url, f"refs/heads/{repo.branch}", kill_after_timeout=30,
                                         env={"GIT_TERMINAL_PROMPT": "0"})
    except git.GitCommandError as exc:
        return Check("remote", FAIL, f"{clean_url(url)} unreachable: {clean(str(exc))}")
    words = str(listed).split()
    theirs = words[0] if words else None
    tracking = tracking_ref(repo.branch)
    known = repo.ref_id(tracking)
    # What vault last pushed is not on the remote (emptied, replaced, or another URL): forget
    # it, so that the next sync pushes everything again instead of "up to date". (A tip this
    # vault has not fetched yet is another host's news: the next sync fetches it.)
    if known is not None and (origin_url(repo.path) != url or theirs is None
                              or (repo.has_object(theirs)
                                  and repo.merge_base(known, theirs) != known)):
        _under_sync_lock(config, lambda: repo.delete_ref(tracking))
        lacks = repo.count_ahead(tracking)
        return Check("remote", WARN, f"{clean_url(url)} reachable, but it lacks {lacks} "
                                     "commit(s) vault pushed there before (emptied or "
                                     "replaced?); the next sync pushes them again")
    if (known is None and theirs is not None and origin_url(repo.path) == url
            and repo.has_object(theirs)):
        # No fetch or push recorded it yet (a bare clone has no tracking ref): record what the
        # remote holds as a fetch would, or every commit counts as not pushed yet.
        tip = theirs
        _under_sync_lock(config, lambda: repo.set_ref(tracking, tip,
                                                      "vault doctor: the remote's branch"))
    ahead = repo.count_ahead(tracking)
    if ahead:
        return Check("remote", WARN, f"{clean_url(url)} reachable; {ahead} commit(s) not "
                                     "pushed yet (`vault status` says why when a push failed)")
    return Check("remote", OK, f"{clean_url(url)} reachable, up to date")


def _under_sync_lock(config: Config, action: Callable[[], None]) -> None:
    """Move the tracking ref under the sync lock (a sync moves it; one running now fetches it
    anew, so a busy lock skips this)."""
    from vault.errors import BusyError
    from vault.lock import SyncLock

    try:
        with SyncLock(config.state_dir, command="doctor"):
            action()
    except BusyError:
        pass


def check_cron(config: Config, crontab_file: Path | None) -> Check:
    """vault's crontab entry (a systemd timer or agent hooks are fine too: then a warning)."""
    from vault.schedule import entry_problem, status

    try:
        st = status(config, crontab_file)
    except VaultError as exc:
        return Check("cron", WARN, f"{exc.message} (fine if a systemd timer or hooks run syncs)")
    if st.entry is None:
        return Check("cron", WARN, f"no vault entry in {st.crontab} (`vault cron install`, or "
                                   "a systemd timer / agent hooks)")
    problem = entry_problem(st.entry)
    if problem:
        return Check("cron", FAIL, f"vault's entry in {st.crontab} cannot sync: {problem} "
                                   "(`vault cron install` again)")
    return Check("cron", OK, f"{st.entry.schedule}, next run {st.next_run:%Y-%m-%d %H:%M}")


def check_disk(config: Config) -> Check:
    """Free space where the vault lives."""
    where = config.vault.path if config.vault.path.exists() else config.vault.path.parent
    while not where.exists() and where != where.parent:
        where = where.parent
    usage = shutil.disk_usage(where)
    free = f"{usage.free / 1024**3:.1f} GiB free of {usage.total / 1024**3:.0f} GiB"
    if usage.free < MIN_FREE_BYTES:
        return Check("disk", FAIL, f"{free}: syncs will fail soon")
    if usage.free < LOW_FREE_BYTES:
        return Check("disk", WARN, free)
    return Check("disk", OK, free)


def run_drill(config: Config, repo: VaultRepo) -> Drill:
    """Restore the branch tip into a temp dir and prove every file equal to the vault's copy."""
    from vault.restore import RestoreOptions, restore
    from vault.sqlite_dump import is_dump, snapshot_sqlite

    start = time.perf_counter()
    try:
        head = repo.head_id()
    except VaultError as exc:
        return Drill("", 0, 0, 0.0, (f"nothing to drill: {exc.message}",))
    if head is None:
        return Drill("", 0, 0, 0.0, ("nothing to drill: no commits yet",))
    problems: list[str] = []
    files = databases = 0
    scratch = Path(tempfile.gettempdir())
    try:
        folder = tempfile.TemporaryDirectory(prefix="vault-drill-")
    except OSError as exc:
        return Drill(head, 0, 0, time.perf_counter() - start, (
            f"cannot drill: cannot make a folder in {scratch}: {exc.strerror or exc} "
            f"{_SCRATCH_HINT}",))
    with folder as tmp:
        out = Path(tmp) / "restored"
        try:
            restore(config, RestoreOptions(at=head, to=out))
            tree = sorted(repo.files(head).items())
        except VaultError as exc:  # a damaged vault: the drill fails and says why
            trouble = _scratch_trouble(exc, scratch, _tree_size(repo, head))
            if trouble is not None:  # (the vault is not to blame: it was never read whole)
                return Drill(head, 0, 0, time.perf_counter() - start, (
                    f"cannot drill: {trouble} for the restored copy {_SCRATCH_HINT}",))
            return Drill(head, 0, 0, time.perf_counter() - start,
                         (f"the restore failed: {exc.message}",))
        for path, (oid, _mode) in tree:
            try:
                data = repo.read_blob(oid)
                if is_dump(data):  # (SQLite opens by path, as the sync did)
                    databases += 1
                    same = snapshot_sqlite(out / path) == data
                else:
                    same = hashlib.sha1(_read_restored(out, path)).digest() == hashlib.sha1(
                        data).digest()
            except (OSError, VaultError) as exc:
                problems.append(f"{path}: {exc}")
                continue
            files += 1
            if not same:
                problems.append(f"{path}: restored copy differs from the vault")
    try:
        chunks, trouble = _drill_index_sample(config, repo, head)
    except VaultError as exc:
        chunks, trouble = 0, exc.message
    if trouble:
        problems.append(f"index sample: {trouble}")
    return Drill(head, files, databases, time.perf_counter() - start, tuple(problems), chunks)


def _tree_size(repo: VaultRepo, head: str) -> int:
    """The bytes of every file at head (what a restore of it writes, databases as dumps)."""
    try:
        return sum(len(repo.read_blob(oid)) for oid, _mode in repo.files(head).values())
    except VaultError:
        return 0


def _read_restored(root: Path, path: str) -> bytes:
    """The bytes of root/path, opened one folder at a time as restore writes it (the full path
    may be longer than the system takes in one call)."""
    flags = os.O_RDONLY | os.O_CLOEXEC
    *folders, name = path.split("/")
    fd = os.open(root, flags | os.O_DIRECTORY)
    try:
        for folder in folders:
            inner = os.open(folder, flags | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = inner
        file_fd = os.open(name, flags, dir_fd=fd)
    finally:
        os.close(fd)
    with os.fdopen(file_fd, "rb") as handle:
        return handle.read()


def _ref_damage(repo: VaultRepo) -> bool:
    """A damaged HEAD or packed-refs, or a branch gone (or unreadable) that had a tip."""
    if repo.head_problem() is not None or repo.packed_refs_problem() is not None:
        return True
    try:
        repo.head_id()
    except VaultError:
        return repo.last_known_tip() is not None
    return False


def _repair_refs(config: Config, repo: VaultRepo) -> list[str]:
    """Fix damaged refs in place, under the sync lock: HEAD rewritten to name the configured
    branch, packed-refs kept aside and rewritten from its readable lines (and the reflogs),
    a missing branch put back at the last tip its reflog (or the stat cache) records when
    everything that tip reaches is intact. What was done; nothing when nothing applied."""
    from vault.lock import SyncLock

    done: list[str] = []
    with SyncLock(config.state_dir, command="doctor --repair"):
        problem = repo.head_problem()
        if problem is not None and (repo.path / "HEAD").exists():
            atomic_write(repo.path / "HEAD", f"ref: {repo.ref_name}\n".encode(), mode=0o644)
            done.append(f"rewrote HEAD ({problem.rsplit(' is ', 1)[-1]}) as "
                        f"`ref: {repo.ref_name}`")
        if repo.packed_refs_problem() is not None:
            done.append(_rewrite_packed_refs(repo.path))
        try:
            repo.head_id()
        except VaultError:
            known = repo.last_known_tip() if repo.packed_refs_problem() is None else None
            if known is not None:
                done.append(_put_branch_back(repo, *known))
    return done


def _write_missing_head(config: Config) -> str:
    """Write a headless vault's HEAD as `ref: refs/heads/<branch>`, under the sync lock."""
    from vault.lock import SyncLock

    path, ref = config.vault.path, f"refs/heads/{config.vault.branch}"
    with SyncLock(config.state_dir, command="doctor --repair"):
        if not _headless(path):
            return "HEAD was put back meanwhile (by another process)"
        atomic_write(path / "HEAD", f"ref: {ref}\n".encode(), mode=0o644)
    return f"wrote the missing HEAD as `ref: {ref}`"


def _put_branch_back(repo: VaultRepo, tip: str, record: str) -> str:
    """Point the missing branch at tip when tip and all it reaches are intact; what was done."""
    try:
        count, problems = repo.verify(tip)
    except VaultError as exc:
        problems, count = [exc.message], 0
    if problems:
        return (f"did not put branch {repo.branch} back at {tip[:10]} ({record}): "
                f"{problems[0]}")
    try:
        repo.restore_branch(tip, f"vault doctor --repair: branch put back at the tip {record} "
                                 "records")
    except VaultError as exc:
        return f"could not put branch {repo.branch} back at {tip[:10]} ({record}): {exc.message}"
    return (f"put branch {repo.branch} back at {tip[:10]}, the last tip {record} records "
            f"({count} objects reachable from it, all intact)")


def _rewrite_packed_refs(path: Path) -> str:
    """Keep a damaged packed-refs aside and write back the lines git can read; a ref on a
    damaged line comes back from its reflog when that names a tip, else it is dropped."""
    from vault.repo import read_packed_refs, reflog_tip

    lines = read_packed_refs(path)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    aside = path / f"packed-refs.damaged-{stamp}"
    kept: list[str] = []
    recovered: list[str] = []
    dropped: list[str] = []
    skip_peeled = False
    for line, ok in lines:
        if line.startswith("^"):
            if ok and not skip_peeled:
                kept.append(line)
            continue
        skip_peeled = not ok
        if ok:
            kept.append(line)
            continue
        name = line.split(" ")[-1] if " " in line else ""
        named = name.startswith("refs/") and ".." not in name.split("/")
        tip = reflog_tip(path, name) if named else None
        if tip is not None:
            kept.append(f"{tip} {name}")
            recovered.append(f"{name} at {tip[:10]}")
        else:
            dropped.append(name if named else repr(line[:60]))  # (a line naming no ref: whole)
    shutil.copyfile(path / "packed-refs", aside)  # (the original is kept, whatever happens)
    atomic_write(path / "packed-refs", "".join(f"{line}\n" for line in kept).encode(),
                 mode=0o644)
    text = f"rewrote packed-refs from its readable lines (the damaged one kept as {aside})"
    if recovered:
        text += "; from their reflogs: " + ", ".join(recovered)
    if dropped:
        text += "; dropped (nothing records them): " + ", ".join(dropped)
    return text


def _repair_repository(config: Config, why: str) -> tuple[str, VaultRepo | None]:
    """Re-clone a damaged vault from its remote under the sync lock, keeping the damaged one
    aside; the new vault (None when not re-cloned) and what was done."""
    from vault.lock import SyncLock
    from vault.remote import RemoteError, clean, clean_url, remote_url, require_git
    from vault.remote import tracking_ref

    path, branch = config.vault.path, config.vault.branch
    url = remote_url(config)
    if url is None:
        by_hand = (f"; its HEAD file alone is missing: `printf 'ref: refs/heads/{branch}\\n' "
                   f"> {path / 'HEAD'}` brings it back" if _headless(path) else "")
        return (f"cannot repair the repository ({why}): no remote to re-clone from ([vault] "
                f"remote is not set and the vault names no origin); the damaged vault is "
                f"untouched{by_hand}", None)
    try:
        require_git()  # (the re-clone is git's)
    except RemoteError as exc:
        return (f"cannot repair the repository ({why}): cannot re-clone from "
                f"{clean_url(url)}: {exc.message}; the damaged vault is untouched", None)
    # Never under a running sync: it writes into the vault this renames away (BusyError, exit
    # 11, as for a second sync).
    with SyncLock(config.state_dir, command="doctor --repair"):
        repo, check = open_and_check(config)  # again under the lock: repaired meanwhile?
        if check.status != FAIL:
            return "the repository was repaired meanwhile (by another vault process)", repo
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        aside = path.with_name(f"{path.name}.damaged-{stamp}")
        local_only = _local_only_commits(path, branch)
        import git

        # Cloned beside it, then the state folder (the lock file we hold, the stat cache, the
        # allow list, the index) moves into the clone, and the clone into place: the lock is
        # held on that file wherever it goes, so a sync that starts meanwhile finds it held
        # (or, for a moment, no vault), never a half-made clone without a lock to commit into.
        fresh_path = path.with_name(f".{path.name}.clone-{stamp}")
        old_umask = os.umask(0o077)  # private, as `vault init` makes it
        try:
            git.Repo.clone_from(url, str(fresh_path), bare=True, no_hardlinks=True,
                                env={"GIT_TERMINAL_PROMPT": "0"})
        except git.GitCommandError as exc:
            shutil.rmtree(fresh_path, ignore_errors=True)  # (whatever the failed clone left)
            return (f"re-clone from {clean_url(url)} failed ({clean(str(exc))}); the damaged "
                    "vault is untouched", None)
        finally:
            os.umask(old_umask)
        state = config.state_dir
        if state.is_dir():
            state.rename(fresh_path / state.name)
        path.rename(aside)
        fresh_path.rename(path)
        fresh = VaultRepo.open(path, branch)
        _as_vault_made_it(fresh)
        head = fresh.head_id()
        if head is not None:
            # What the remote has, as a push or fetch records it: without it every commit
            # would count as not pushed yet, and the next sync would push for nothing.
            fresh.set_ref(tracking_ref(branch), head,
                          "vault: re-cloned from the remote")
    note = (f"; {len(local_only)} commit(s) were only local (see {aside}): "
            + ", ".join(c[:10] for c in local_only[:5]) if local_only else "")
    return f"re-cloned the vault from {clean_url(url)}, damaged copy kept at {aside}{note}", fresh


def _as_vault_made_it(repo: VaultRepo) -> None:
    """What `vault init` gives a vault (HEAD on its branch, and VaultRepo.set_up's settings),
    on a clone."""
    import pygit2

    pygit2.Repository(str(repo.path)).set_head(repo.ref_name)  # (a clone's HEAD names the
    repo.set_up()  # remote's default branch)


def _local_only_commits(path: Path, branch: str) -> list[str]:
    """Commits the remote never received, from the branch's reflog (plain text files: they
    can be read even when every object of the damaged vault, or its HEAD, is gone)."""
    from vault.remote import tracking_ref

    tracking = _read_ref(path, tracking_ref(branch))
    try:
        lines = (path / "logs" / "refs" / "heads" / branch).read_text(
            errors="replace").splitlines()
    except OSError:
        return []
    ids = [line.split()[1] for line in lines if len(line.split()) > 1]
    if tracking in ids:
        ids = ids[len(ids) - ids[::-1].index(tracking):]
    seen: list[str] = []
    for oid in ids:
        if oid not in seen and set(oid) != {"0"}:
            seen.append(oid)
    return seen


def _read_ref(path: Path, name: str) -> str | None:
    """A ref of a (maybe damaged) repository, read as text: its loose file, else packed-refs."""
    try:
        text = (path / name).read_text(encoding="ascii", errors="replace").strip()
        if len(text) == 40:
            return text
    except OSError:
        pass
    try:
        packed = (path / "packed-refs").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    for line in packed.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] == name:
            return parts[0]
    return None

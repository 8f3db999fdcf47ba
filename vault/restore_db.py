"""A restore's databases: rebuilt from their dumps (by a helper process, beside the rest of the
restore), checked, and moved into place only while no other process has them open."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from vault.dbbuild import build, claim
from vault.errors import RepoError, RestoreError, SqliteSnapshotError
from vault.fsutil import BatchWriter, fsync_dir, give_owner_of, owner_for, restored_mode
from vault.objects import BlobReader
from vault.sources import COMPANION_SUFFIXES, DUMP_HEADER

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from vault.repo import VaultRepo
    from vault.restore import Action, RestorePlan


class Databases:
    """Rebuilds databases in a helper process (vault.dbbuild), beside the rest of the restore.

    Each database is built in a temp folder beside its target, by whichever of the helper and
    this process claims it first (mkdir of folder/claim): the helper takes them in order as
    they come, and results() builds here, from the last, those it has not started, so the two
    finish together. Where the helper cannot start or dies, this process builds what it did
    not. results() hands the databases over in the order they were submitted.
    """

    def __init__(self, vault_dir: Path) -> None:
        self._vault_dir = vault_dir
        self._jobs: list[tuple[Action, Path]] = []  # action, temp folder
        self._proc: subprocess.Popen[bytes] | None = None
        self._started = False
        self._feeding = True  # jobs still go to the helper
        # vault path -> the application's collations its database was rebuilt with stand-ins
        # for: the application must REINDEX them (sqlite_dump.reindex_warning says so)
        self.stand_ins: dict[str, tuple[str, ...]] = {}

    def __enter__(self) -> Databases:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()  # never used: it has nothing to finish
            self._proc.wait()

    def start(self) -> None:
        """Start the helper now, ahead of the first database (it waits for work)."""
        if self._started:
            return
        self._started = True
        if not sys.executable:  # an embedded interpreter may not know its own program
            return  # results() builds everything here
        # The helper imports this very copy of vault: it runs in the folder that holds the
        # package (the first place `-m` looks), so no `vault` folder where the user happens
        # to be can stand in for it.
        package_root = str(Path(__file__).resolve().parent.parent)
        paths = [package_root, *filter(None, [os.environ.get("PYTHONPATH")])]
        try:
            # stdout and stderr go nowhere: results come back as files, so no pipe can fill
            # up and stall the helper.
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "vault.dbbuild", str(self._vault_dir)],
                cwd=package_root, env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)},
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except OSError:
            self._proc = None
        if self._proc is not None and self._proc.stdin is not None:
            os.set_blocking(self._proc.stdin.fileno(), False)

    def submit(self, action: Action, target: Path) -> None:
        """Have action's database rebuilt beside target."""
        folder = Path(tempfile.mkdtemp(prefix=".vault-restore-", dir=target.parent))
        self._jobs.append((action, folder))
        self.start()
        if self._proc is not None and self._proc.stdin is not None and self._feeding:
            # One JSON object per line: any folder name (newlines, bytes that are not UTF-8)
            # goes over whole. The pipe does not block: a helper that does not keep up (or
            # never reads) gets no more work, and results() builds the rest here.
            request = json.dumps({"blob": action.oid, "folder": os.path.abspath(folder)})
            line = request.encode() + b"\n"
            try:
                written = os.write(self._proc.stdin.fileno(), line)
            except OSError:  # full (BlockingIOError), or the helper died
                written = 0
            if written != len(line):
                self._feeding = False  # a cut line is refused by the helper

    def results(self) -> Iterator[tuple[Action, Path, bool]]:
        """Each database, built and checked: its action, its temp folder, is it redacted?"""
        if not self._jobs:
            return
        if self._proc is not None and self._proc.stdin is not None:
            try:
                self._proc.stdin.close()  # no more work: it exits when done
            except OSError:
                pass
        results: dict[Path, dict[str, object]] = {}
        for action, folder in reversed(self._jobs):
            if claim(folder):
                results[folder] = build(self._vault_dir, action.oid, folder)
        for action, folder in self._jobs:
            result = results.get(folder) or self._helper_result(folder)
            if result is None:  # the helper died on it (or never was a helper): build it here
                _discard(folder)
                folder.mkdir()
                result = build(self._vault_dir, action.oid, folder)
            if "error" in result:
                error = RepoError if result.get("kind") == "repo" else SqliteSnapshotError
                raise error(str(result["error"]),
                            hint=str(result["hint"]) if result.get("hint") else None)
            names = result.get("stand_ins")
            if isinstance(names, list) and names:
                self.stand_ins[action.path] = tuple(map(str, names))
            yield action, folder, bool(result["redacted"])

    def _helper_result(self, folder: Path) -> dict[str, object] | None:
        """What the helper wrote for a job it claimed, once it is written; None when the
        helper is gone without writing it."""
        done = folder / "result"  # written whole (temp file and rename), or not at all
        while True:
            gone = self._proc is None or self._proc.poll() is not None
            try:
                result: dict[str, object] = json.loads(done.read_bytes())
                return result
            except (OSError, ValueError):
                if gone:
                    return None
            time.sleep(0.005)

    def warnings(self) -> list[str]:
        """One line for each database rebuilt so far whose application must REINDEX it."""
        from vault.sqlite_dump import reindex_warning

        return [reindex_warning(path, names) for path, names in sorted(self.stand_ins.items())]

    def close(self) -> None:
        """Stop any build under way and remove every temp folder left (after an error)."""
        if self._jobs and self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        for _action, folder in self._jobs:
            _discard(folder)
        self._jobs = []


def restore_sqlite_file(data: bytes, target: Path) -> tuple[str, ...]:
    """Rebuild the database beside the target, check it, drop stale WAL/SHM, move it in;
    return the application's collations it was rebuilt with stand-ins for (REINDEX them)."""
    refuse_if_open(target)
    stand_ins: list[str] = []
    built = build_sqlite(data, target, durable=True, stand_ins=stand_ins)
    try:
        refuse_if_open(target)  # again: it may have been opened while we built
    except BaseException:
        _discard(built)
        raise
    install_sqlite(built, target, durable=True, mode=restored_mode(str(target), False))
    return tuple(stand_ins)


def refuse_if_open(target: Path) -> None:
    from vault.inuse import open_by

    companions = [Path(f"{target}{suffix}") for suffix in COMPANION_SUFFIXES]
    holders = open_by([target, *companions])
    if holders:
        raise RestoreError(f"{target} is open in another process (pid "
                           f"{', '.join(map(str, holders))}); refusing to replace a live database",
                           hint="stop the agent first, or restore elsewhere with --to DIR")


def build_sqlite(data: bytes, target: Path, durable: bool,
                 stand_ins: list[str] | None = None) -> Path:
    """The database built from its dump and checked, in a temp folder beside the target; into
    stand_ins go the application's collations it was built with stand-ins for."""
    from vault.sqlite_dump import load_dump

    tmp = Path(tempfile.mkdtemp(prefix=".vault-restore-", dir=target.parent))
    try:
        names = load_dump(data, tmp / "db", durable=durable)  # builds, checks integrity
        if stand_ins is not None:
            stand_ins.extend(names)
    except BaseException:
        _discard(tmp)
        raise
    return tmp


def install_sqlite(built: Path, target: Path, durable: bool, mode: int,
                    writer: BatchWriter | None = None) -> None:
    """Move a database made by build_sqlite (in a temp folder beside target) into place,
    with mode (and, run as root, the owner of the file it replaces, or of its folder); with a
    writer, relative to the target's folder as the writer opened it. The caller has just made
    sure that no other process has the target open (refuse_if_open)."""
    try:
        # A leftover WAL would be replayed over the restored database: it goes first. (The
        # state it held is in the vault: the safety sync took it through the backup API.)
        # Its rows go into the old file before it goes, so that a restore killed between
        # the two leaves the old database whole, not without its last transactions.
        settle_journal(target)
        if writer is None:
            _remove_companions(target)
            give_owner_of(built / "db", owner_for(target))  # (as root: the live file's owner)
            os.chmod(built / "db", mode)  # built private (0o600)
            os.replace(built / "db", target)
        else:
            folder = str(target.parent)
            for suffix in COMPANION_SUFFIXES:
                writer.remove(folder, target.name + suffix)
            writer.move_in(folder, f"{built.name}/db", target.name, mode=mode)
        if durable:
            fsync_dir(target.parent)
    finally:
        _discard(built)


def settle_journal(target: Path) -> None:
    """Bring target's -wal (checkpointed) or hot -journal (rolled back) into its main file, so
    that the main file alone is the whole database before the companions are removed. Best
    effort: a database SQLite cannot open (damaged, not a database, a folder that refuses
    writes) is replaced with its companions dropped as before; the vault holds its state."""
    if not any(_has_data(Path(f"{target}{suffix}")) for suffix in ("-wal", "-journal")):
        return
    import apsw

    from vault.sqlite_dump import file_uri, is_sqlite_file

    if not is_sqlite_file(target):
        return
    try:
        db = apsw.Connection(file_uri(target), flags=apsw.SQLITE_OPEN_READWRITE
                             | apsw.SQLITE_OPEN_URI)
    except apsw.Error:
        return
    try:
        db.set_busy_timeout(1000)
        # (reading the schema rolls a hot journal back; the checkpoint is a no-op without WAL)
        db.execute("SELECT count(*) FROM sqlite_schema").fetchall()
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    except apsw.Error:
        pass
    finally:
        db.close()


def _has_data(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def _discard(tmp: Path) -> None:
    """Remove a build's temp folder, renamed away first: the helper may read a request late,
    after this process built that database itself, and its claim (a mkdir in the folder)
    must not succeed in the moment between the claim's removal and the folder's (it did, in
    a loaded CI run: the helper then built into the folder, and the restore failed with
    "Directory not empty" after its database was in place)."""
    gone = tmp.with_name(tmp.name + ".gone")  # (tmp's name is unique: so is this one)
    try:
        os.rename(tmp, gone)
    except FileNotFoundError:
        return
    import shutil

    shutil.rmtree(gone)


def _remove_companions(target: Path) -> None:
    for suffix in COMPANION_SUFFIXES:
        Path(f"{target}{suffix}").unlink(missing_ok=True)


def refuse_open_databases(repo: VaultRepo, plan: RestorePlan) -> None:
    """Refuse the restore up front when a database it replaces or deletes is open elsewhere:
    a live file that is a database, or one (damaged, say) that a database will replace. Each
    is checked again just before it is moved."""
    from vault.sqlite_dump import is_sqlite_file

    databases: list[Path] = []
    with BlobReader(repo) as reader:
        for action in plan.actions:
            if action.action not in ("overwrite", "delete"):
                continue
            target = Path(action.target)
            if is_sqlite_file(target) or (action.action == "overwrite" and reader.get(
                    action.oid).head(len(DUMP_HEADER)) == DUMP_HEADER):
                databases.append(target)
    refuse_any_open(databases)


def refuse_any_open(databases: list[Path]) -> None:
    """refuse_if_open for many databases, with one look through /proc for them all (each
    look reads every open file of every process: slow on a busy machine)."""
    from vault.inuse import open_paths

    files = [Path(f"{db}{suffix}") for db in databases for suffix in ("", *COMPANION_SUFFIXES)]
    held = open_paths(files)
    for db in databases:
        if any(Path(f"{db}{suffix}") in held for suffix in ("", *COMPANION_SUFFIXES)):
            refuse_if_open(db)  # (names the processes)

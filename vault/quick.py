"""`vault sync`'s quick check: prove that nothing changed without loading the CLI, the config
parser or git, and otherwise hand over to the full sync.

Most syncs find nothing to do (cron runs every 15 minutes, hooks on every compaction), and for
those the cost is the process itself: the CLI, TOML and git libraries take longer to import than
the stat walk takes. After every clean full sync, the sync writes a *plan* (`write_plan`): the
config file's bytes and the environment it was read in, the resolved sources, and where the lock,
stat cache and branch ref are. `quick_sync` runs first on `vault sync [--quiet] [--config F]`; it
trusts the plan only while all of that is unchanged, takes the sync lock, walks the sources with
the same scan as the full sync, and needs every file's stat to equal the stat cache's proof for
the branch tip. Anything else (a change, a racy or skipped file, another sync, hooks, a push to
make, a doubt of any kind) returns None and the full sync runs as if this did not exist.

Imports here and in what it calls (locate, sources, detect, errors) stay at os/stat/marshal.
"""

from __future__ import annotations

import marshal
import os
import sys
import time

from vault import __version__

PLAN_VERSION = 3  # 3: packed-refs
PLANS_DIR = "sync-plans"
NOTHING_CHANGED = "Nothing changed ({} files checked); no commit."
# Environment the parsed config depends on besides $VARS named in the file (added per plan).
ENV_NAMES = ("VAULT_HOME", "XDG_DATA_HOME", "HOME")
QUIET_FLAGS = frozenset({"--quiet", "-q"})

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from typing import Any

    from vault.config import Config
    from vault.sources import Scan
    from vault.sync import SyncResult


class _Source:
    """A configured source as the plan recorded it (what vault.sources.scan_source reads)."""

    __slots__ = ("name", "root", "include", "exclude")

    def __init__(self, name: str, root: str, include: tuple[str, ...],
                 exclude: tuple[str, ...]) -> None:
        self.name = name
        self.root = root
        self.include = include
        self.exclude = exclude


def plan_path(home: str, config_file: str) -> str:
    """Where the plan for one config file lives (in the data dir: VAULT_HOME moves it)."""
    import zlib

    name = f"{zlib.crc32(config_file.encode('utf-8', 'surrogateescape')):08x}.plan"
    return os.path.join(home, PLANS_DIR, name)


def quick_sync(argv: list[str]) -> int | None:
    """0 when a sync is proved to have nothing to do (having printed what it prints), else None."""
    args = _parse(argv)
    if args is None:
        return None
    explicit, quiet = args
    try:
        count = _nothing_changed(explicit)
    except Exception:  # noqa: BLE001 - any doubt at all: the full sync decides and reports
        return None
    if count is None:
        return None
    if not quiet:
        sys.stdout.write(NOTHING_CHANGED.format(count) + "\n")
    return 0


def _parse(argv: list[str]) -> tuple[str | None, bool] | None:
    """`sync`, `--quiet`/`-q`, `--config F`: the forms cron and hooks use; None for anything else."""
    if not argv or argv[0] != "sync":
        return None
    explicit: str | None = None
    quiet = False
    rest = iter(argv[1:])
    for arg in rest:
        if arg in QUIET_FLAGS:
            quiet = True
        elif arg == "--config":
            explicit = next(rest, None)
            if not explicit:
                return None
        elif arg.startswith("--config=") and len(arg) > len("--config="):
            explicit = arg[len("--config="):]
        else:
            return None
    return explicit, quiet


def _nothing_changed(explicit: str | None) -> int | None:
    """The number of files proved unchanged, or None when the full sync must run."""
    from vault.locate import find_config_file, home_dir

    config_file = find_config_file(explicit)
    plan = _read_plan(plan_path(home_dir(), config_file))
    if plan is None or plan["config_file"] != config_file:
        return None
    with open(config_file, "rb") as handle:
        if handle.read() != plan["config_bytes"]:
            return None
    if any(os.environ.get(name) != value for name, value in plan["env"]) \
            or os.uname().nodename != plan["nodename"]:
        return None
    fd = _try_lock(plan["lock"])
    if fd is None:
        return None  # another sync: the full path says who, and exits 11
    _say_who_holds(plan["lock"])
    try:
        return _check_under_lock(plan)
    finally:
        os.close(fd)


def _check_under_lock(plan: dict[str, Any]) -> int | None:
    from vault.errors import SourceError
    from vault.sources import scan_source

    if _stat_key(plan["cache"]) != plan["cache_stat"] \
            or _stat_key(plan["allow"]) != plan["allow_stat"] \
            or _stat_key(plan["git_config"]) != plan["git_config_stat"] \
            or _stat_key(plan["git_head"]) != plan["git_head_stat"] \
            or _stat_key(plan["packed_refs"]) != plan["packed_refs_stat"]:
        return None  # (a vault without HEAD is damaged: the full sync says so)
    for folder, marker in plan["leftovers"]:  # temp files of a killed sync: the full one sweeps
        if any(marker in name for name in os.listdir(folder)):
            return None
    head = _read_ref(plan["ref"])
    if head is None or head != plan["commit"]:
        return None
    objects = os.path.join(os.path.dirname(plan["git_config"]), "objects")
    if plan["tip_stat"] is None \
            or _stat_key(os.path.join(objects, head[:2], head[2:])) != plan["tip_stat"]:
        return None  # packed, deleted or rewritten: the full sync looks (and checks it)
    if plan["tracking"] and _read_ref(plan["tracking"]) != head:
        return None  # commits to push
    scanned_ns = time.time_ns()
    scans: dict[str, Scan] = {}
    paths: list[str] = []
    keys: list[tuple[int, ...]] = []
    for name, root, include, exclude, prefix in plan["sources"]:
        try:
            scan = scan_source(_Source(name, root, include, exclude), skip_dirs=plan["skip_dirs"])
        except SourceError:
            return None
        scans[name] = scan
        paths += [prefix + entry[0] for entry in scan.entries]
        keys += [entry[2] for entry in scan.entries]
    # The same files, in the same order, with the same stat keys as the full sync proved.
    if not any(s.skipped or s.unreadable_dirs for s in scans.values()) \
            and len(paths) == plan["count"] and "\0".join(paths) == plan["paths"] \
            and hash(tuple(keys)) == plan["keys_hash"]:
        try:
            os.utime(plan["stamp"])  # a completed sync: what status and doctor call the last
        except OSError:
            pass
        return len(paths)
    # Something changed: the full sync takes over, and need not walk the sources again.
    _PRESCANS.append(Prescan(plan, scanned_ns, scans))
    return None


class Prescan:
    """The walk a quick check made before it handed over to the full sync."""

    __slots__ = ("config_file", "sources", "scanned_ns", "scans", "ref", "commit", "cache",
                 "cache_stat")

    def __init__(self, plan: dict[str, Any], scanned_ns: int, scans: dict[str, Scan]) -> None:
        self.config_file: str = plan["config_file"]
        # (name, root, include, exclude, prefix) as the plan had them
        self.sources: tuple[tuple[Any, ...], ...] = plan["sources"]
        self.scanned_ns = scanned_ns  # taken before the walk began
        self.scans = scans
        # What the walk was checked against, under the lock: should another sync commit or
        # rewrite the cache before the full sync takes the lock, the walk is stale (files
        # the new tip has and the walk missed would be taken for deletions).
        self.ref: str = plan["ref"]
        self.commit: str = plan["commit"]
        self.cache: str = plan["cache"]
        self.cache_stat: tuple[int, ...] | None = plan["cache_stat"]


_PRESCANS: list[Prescan] = []


def take_prescan(config: Config) -> Prescan | None:
    """The quick check's walk of this process, once, if it walked these very sources and no
    other sync has run since (call it under the sync lock)."""
    if not _PRESCANS:
        return None
    prescan = _PRESCANS.pop()
    if config.file is None or os.fspath(config.file) != prescan.config_file \
            or _sources(config) != prescan.sources \
            or _read_ref(prescan.ref) != prescan.commit \
            or _stat_key(prescan.cache) != prescan.cache_stat:
        return None
    return prescan


def _read_plan(path: str) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as handle:
            raw = marshal.loads(handle.read())
    except (OSError, ValueError, EOFError, TypeError):
        return None
    if not isinstance(raw, dict) or raw.get("version") != PLAN_VERSION \
            or raw.get("python") != sys.version or raw.get("vault") != __version__:
        return None
    return raw


def _try_lock(path: object) -> int | None:
    """The sync lock (the same flock as vault.lock.SyncLock), without waiting; None if busy."""
    import fcntl

    try:
        fd = os.open(str(path), os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _say_who_holds(lock: str) -> None:
    """Write the lock's info file as vault.lock.SyncLock does (for `vault status` and the busy
    message of a sync that overlaps this check), without importing json."""
    host = os.uname().nodename
    if not host.replace(".", "").replace("-", "").replace("_", "").isalnum() \
            or not host.isascii():
        return  # a name that would need JSON escapes: the info file is only a courtesy
    info = f'{{"pid": {os.getpid()}, "host": "{host}", "since": {time.time()!r}, ' \
           f'"command": "sync"}}'
    try:
        with open(lock + ".json", "w") as handle:
            handle.write(info)
    except OSError:
        pass


def _read_ref(path: object) -> str | None:
    """A loose ref's full id; None for anything else (packed, symbolic, missing: let git read it)."""
    try:
        with open(str(path), "rb") as handle:
            text = handle.read(100).strip()
    except OSError:
        return None
    if len(text) != 40 or text.strip(b"0123456789abcdef"):
        return None
    return text.decode("ascii")


def _stat_key(path: object) -> tuple[int, ...] | None:
    try:
        st = os.stat(str(path))
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


# --- the full sync's side: write the plan, or remove it -------------------------------------


def write_plan(config: Config, result: SyncResult, *, all_sources: bool) -> None:
    """After a full sync: record a plan when the next sync's quick check may trust it, else
    remove the old one. Never fails the sync (the plan only saves time)."""
    if config.file is None:
        return
    path = plan_path(os.fspath(config.home), os.fspath(config.file))
    try:
        plan = _plan_for(config, result, all_sources)
        if plan is None:
            if os.path.exists(path):
                os.unlink(path)
            return
        from pathlib import Path

        from vault.fsutil import atomic_write, private_folder

        private_folder(Path(path).parent, Path(config.home))
        atomic_write(Path(path), marshal.dumps(plan), durable=False)
    except (OSError, ValueError):
        pass


def _plan_for(config: Config, result: SyncResult, all_sources: bool) -> dict[str, Any] | None:
    """The plan, or None when this sync's outcome cannot be replayed by the quick check."""
    from vault.lock import LOCK_NAME
    from vault.remote import remote_url, tracking_ref
    from vault.secrets import ALLOW_FILE
    from vault.sync import CACHE_NAME, LAST_RUN_NAME, screening_key

    hooks = config.hooks
    if (not all_sources or result.proof is None or result.dry_run or not result.ok
            or result.skipped or result.corrupt or result.rollbacks
            or hooks.pre_sync or hooks.post_sync or hooks.on_failure
            or (result.push is not None and not result.push.pushed)):
        return None
    assert config.file is not None
    if result.screen != screening_key(config):
        return None  # `vault secrets allow` ran meanwhile: the next sync reads files again
    commit = result.commit or result.parent
    if commit is None:
        return None
    paths, keys_hash = result.proof
    cache = config.state_dir / CACHE_NAME
    config_bytes = config.text  # as parsed: the file may have been edited during the sync
    if not config_bytes:
        return None
    names = ENV_NAMES + _expanded_names(config_bytes)
    vault_path = config.vault.path
    has_remote = remote_url(config) is not None
    return {
        "version": PLAN_VERSION, "python": sys.version, "vault": __version__,
        "config_file": os.fspath(config.file), "config_bytes": config_bytes,
        "env": tuple((name, os.environ.get(name)) for name in names),
        "nodename": os.uname().nodename,
        "lock": os.fspath(config.state_dir / LOCK_NAME),
        "cache": os.fspath(cache), "cache_stat": _stat_key(cache),
        # `vault secrets allow` changes what a sync stores without touching any file it reads
        "allow": os.fspath(config.state_dir / ALLOW_FILE),
        "allow_stat": _stat_key(config.state_dir / ALLOW_FILE),
        "stamp": os.fspath(config.state_dir / LAST_RUN_NAME),
        "git_config": os.fspath(vault_path / "config"),
        "git_config_stat": _stat_key(vault_path / "config"),
        "git_head": os.fspath(vault_path / "HEAD"), "git_head_stat": _stat_key(vault_path / "HEAD"),
        "packed_refs": os.fspath(vault_path / "packed-refs"),
        "packed_refs_stat": _stat_key(vault_path / "packed-refs"),
        "leftovers": ((os.fspath(config.state_dir), ".vault-tmp"),
                      (os.fspath(vault_path / "objects"), "tmp_object_git2_")),
        "ref": os.fspath(vault_path / "refs" / "heads" / config.vault.branch),
        "commit": commit,
        # the tip's object file as the sync that checked it left it (None when packed)
        "tip_stat": _stat_key(vault_path / "objects" / commit[:2] / commit[2:]),
        "tracking": (os.fspath(vault_path / tracking_ref(config.vault.branch))
                     if has_remote else ""),
        "sources": _sources(config),
        "skip_dirs": (os.fspath(vault_path), os.fspath(config.home)),
        "paths": paths, "keys_hash": keys_hash, "count": paths.count("\0") + 1 if paths else 0,
    }


def _expanded_names(config_bytes: bytes) -> tuple[str, ...]:
    """Every name os.path.expandvars would look up in the config's strings (after TOML
    escapes are decoded: "\\u0024HOME" is $HOME too), with its own pattern."""
    import re

    from vault.config import tomllib  # loaded already: the full sync parsed the config

    pattern = re.compile(r"\$(\w+|\{[^}]*\})", re.ASCII)  # posixpath.expandvars's
    names: set[str] = set()
    stack: list[object] = [tomllib.loads(config_bytes.decode("utf-8-sig"))]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str):
            names.update(m.strip("{}") for m in pattern.findall(value))
    return tuple(sorted(names))


def _sources(config: Config) -> tuple[tuple[Any, ...], ...]:
    return tuple((s.name, os.fspath(s.root), s.include, s.exclude, config.prefix(s.name))
                 for s in config.sources)

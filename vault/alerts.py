"""Failures reach people: every failure goes to failures.log, and to a GitHub issue if configured.

An alert is best effort by design: it runs when something already went wrong, so it never raises
for a logging or GitHub problem (a broken alert must not make a failing sync worse), and it is
rate-limited per issue title so a cron job failing every 15 minutes does not flood anyone.
"""

from __future__ import annotations

import json
import os
import platform
import re
import stat
import subprocess
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vault import __version__
from vault.config import Config
from vault.errors import VaultError, one_line_reason
from vault.fsutil import atomic_write
from vault.remote import clean

if TYPE_CHECKING:
    from github.Issue import Issue
    from github.PaginatedList import PaginatedList
    from github.Repository import Repository

LOG_NAME = "failures.log"
STATE_NAME = "alerts.json"
MAX_LOG_BYTES = 1024**2  # then failures.log moves to failures.log.1 (one old generation kept)
TAIL_LINES = 20
NETWORK_TIMEOUT = 20  # seconds per GitHub request: the caller is already in a failure path
LABEL_COLOR = "b60205"
MAX_SCANNED_ISSUES = 300  # open issues looked through for the title when the label is missing
STATE_KEEP = timedelta(days=90)
# Tokens that could end up in an error text (a URL, a header echoed back): never written anywhere.
_TOKEN_RE = re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})\b")
_AUTH_RE = re.compile(r"(?i)\b(authorization:?\s*)(?:bearer|token|basic)\s+\S+|\b(bearer\s+)\S+")


@dataclass(frozen=True)
class Failure:
    """One failed command: when, where, which, and a one-line error without any secret."""

    time: datetime
    host: str
    command: str
    error: str


@dataclass(frozen=True)
class AlertResult:
    """What alert() did: opened, commented, rate-limited, disabled or failed."""

    action: str  # "opened" | "commented" | "rate-limited" | "disabled" | "failed"
    issue_number: int | None = None
    url: str | None = None
    message: str = ""


def _utc(now: datetime | None) -> datetime:
    now = now or datetime.now(timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    return now.astimezone(timezone.utc)


def _stamp(time: datetime) -> str:
    return time.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_stamp(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        # Python 3.10's fromisoformat does not take the "Z" suffix.
        parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _tokens(config: Config) -> list[str]:
    """The token values this config can reach: scrubbed from everything vault writes."""
    names = {config.alerts.token_env, config.vault.token_env}
    values = [os.environ.get(n, "") for n in names]
    if config.alerts.token_file is not None:
        values.append(read_token_file(config.alerts.token_file)[0])
    return [v for v in values if len(v) >= 6]


def read_token_file(path: Path) -> tuple[str, str]:
    """The token in an [alerts] token_file (its first line), and "" or why it cannot be used.

    Like ssh with a private key, a file open to others (or one of another user) is refused:
    the token opens issues in the user's name.
    """
    where = f"[alerts] token_file {path}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        return "", f"{where}: {one_line_reason(exc)}"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return "", f"{where} is not a file"
        if st.st_uid != os.getuid():
            return "", f"{where} belongs to another user"
        if st.st_mode & 0o077:
            return "", (f"{where} is open to others (mode {stat.S_IMODE(st.st_mode):o}): "
                        f"chmod 600 it")
        data = os.read(fd, 4096)
    except OSError as exc:
        return "", f"{where}: {one_line_reason(exc)}"
    finally:
        os.close(fd)
    lines = data.decode("utf-8", errors="replace").strip().splitlines()
    token = lines[0].strip() if lines else ""
    return (token, "") if token else ("", f"{where} is empty")


def _token(config: Config) -> tuple[str, str, str]:
    """The token alerts send, where it comes from (for messages), and "" or why there is none."""
    settings = config.alerts
    if settings.token_file is not None:
        token, problem = read_token_file(settings.token_file)
        return token, f"[alerts] token_file {settings.token_file}", problem
    if os.environ.get(settings.token_env):
        return os.environ[settings.token_env], settings.token_env, ""
    return "", settings.token_env, (f"no GitHub token: set {settings.token_env} (a cron run "
                                    "has none: see [alerts] token_file)")


def scrub(text: str, config: Config) -> str:
    """One clean line: no credentials in URLs, no tokens, no Authorization values, nothing the
    secret scanner finds (a hook's output may be in it)."""
    from vault.secrets import scrub as scrub_secrets

    line = scrub_secrets(clean(text))
    for token in _tokens(config):
        line = line.replace(token, "***")
    line = _TOKEN_RE.sub("***", line)
    return _AUTH_RE.sub(lambda m: (m.group(1) or m.group(2)) + "***", line)


def log_path(config: Config) -> Path:
    """failures.log in the data dir."""
    return config.home / LOG_NAME


def record_failure(config: Config, command: str, error: str,
                   now: datetime | None = None) -> Failure:
    """Append one JSON line to failures.log; a logging problem is swallowed, never raised."""
    failure = Failure(time=_utc(now).replace(microsecond=0), host=config.vault.host,
                      command=scrub(command, config), error=scrub(error, config))
    line = json.dumps({"time": _stamp(failure.time), "host": failure.host,
                       "command": failure.command, "error": failure.error,
                       "version": __version__}, ensure_ascii=False) + "\n"
    path = log_path(config)
    try:
        config.home.mkdir(parents=True, mode=0o700, exist_ok=True)
        try:
            if path.stat().st_size > MAX_LOG_BYTES:
                os.replace(path, path.with_name(LOG_NAME + ".1"))
        except FileNotFoundError:
            pass
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(path, flags, 0o600)
        try:
            if os.fstat(fd).st_mode & 0o077:
                os.fchmod(fd, 0o600)  # an older or hand-made log: errors can name private paths
            # One write() of one line: O_APPEND keeps concurrent writers' lines whole.
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
    return failure


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def read_failures(config: Config, limit: int = TAIL_LINES) -> list[Failure]:
    """The last `limit` failures, oldest first; damaged lines are skipped."""
    path = log_path(config)
    lines = _read_lines(path)
    if len(lines) < limit:
        lines = _read_lines(path.with_name(LOG_NAME + ".1")) + lines
    failures: list[Failure] = []
    for line in lines:
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if not isinstance(doc, dict):
            continue
        time = _parse_stamp(doc.get("time"))
        fields = [doc.get(k) for k in ("host", "command", "error")]
        if time is None or not all(isinstance(f, str) for f in fields):
            continue
        failures.append(Failure(time, str(fields[0]), str(fields[1]), str(fields[2])))
    return failures[-limit:] if limit > 0 else []


def issue_title(failure: Failure) -> str:
    """Stable per host and command, so a repeated failure finds its open issue."""
    return f"vault: {failure.command} failing on {failure.host}"


# --- rate limit ------------------------------------------------------------------------------


def _state_path(config: Config) -> Path:
    # In the vault's state folder once a sync has made it; until then in the data dir. An alert
    # never makes that folder: before `vault init` it would leave a folder where init expects
    # none, and in a repository vault did not make (the [vault] path of a project's bare
    # clone, say) it would write into that repository, and its presence would let the next
    # sync take the repository for a vault (sync.check_before_state).
    if config.state_dir.is_dir():
        return config.state_dir / STATE_NAME
    return config.home / STATE_NAME


def _load_state(path: Path) -> dict[str, dict[str, Any]]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    sent = doc.get("sent") if isinstance(doc, dict) else None
    if not isinstance(sent, dict):
        return {}
    return {k: v for k, v in sent.items() if isinstance(k, str) and isinstance(v, dict)}


def _save_state(config: Config, path: Path, sent: dict[str, dict[str, Any]],
                now: datetime) -> None:
    keep = {title: entry for title, entry in sent.items()
            if (last := _parse_stamp(entry.get("time"))) is not None and now - last < STATE_KEEP}
    try:
        if path.parent == config.home:  # (the state folder is never made here: _state_path)
            config.home.mkdir(parents=True, mode=0o700, exist_ok=True)
        atomic_write(path, (json.dumps({"sent": keep}, indent=2, sort_keys=True) + "\n").encode())
    except OSError:
        pass  # the alert itself went out; at worst the next one is not rate-limited


# --- the issue body ----------------------------------------------------------------------------


def _git_version() -> str:
    try:
        proc = subprocess.run(["git", "--version"], capture_output=True, text=True, timeout=5,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return "not found"
    return proc.stdout.strip().removeprefix("git version ") or "unknown"


def _libgit2_version() -> str:
    try:
        import pygit2
    except ImportError:  # pragma: no cover - a dependency, but an alert must still go out
        return "not installed"
    return f"{pygit2.LIBGIT2_VERSION} (pygit2 {getattr(pygit2, '__version__', '?')})"


def _fenced(lines: list[str]) -> str:
    text = "\n".join(lines) or "(empty)"
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def issue_body(config: Config, failure: Failure, *, repeat: bool = False) -> str:
    """Markdown: what failed, where, versions, the tail of failures.log and a checklist."""
    host = failure.host
    intro = (f"Still failing on `{host}`: `vault {failure.command}` at {_stamp(failure.time)}."
             if repeat else
             f"`vault {failure.command}` failed on `{host}` at {_stamp(failure.time)}.")
    tail = [f"{_stamp(f.time)} {f.host} {f.command}: {scrub(f.error, config)}"
            for f in read_failures(config, TAIL_LINES)]
    rows = [("host", host), ("vault", __version__),
            ("Python", f"{platform.python_version()} ({platform.python_implementation()})"),
            ("OS", platform.platform()), ("git", _git_version()), ("libgit2", _libgit2_version())]
    table = "\n".join(["| | |", "|---|---|"]
                      + [f"| {k} | {v.replace('|', '/')} |" for k, v in rows])
    return "\n\n".join([
        intro,
        "**Error**\n\n" + _fenced([scrub(failure.error, config)]),
        table,
        f"**Last {len(tail)} lines of failures.log** (`{log_path(config)}`)\n\n" + _fenced(tail),
        "**Checklist**\n\n"
        f"- [ ] run `vault doctor` on `{host}`\n"
        "- [ ] check the sources are mounted\n"
        "- [ ] `vault status` shows unpushed commits?\n"
        "- [ ] close this issue when `vault doctor` is green",
        "<sub>Opened by vault. Repeats of this failure comment here, at most once per "
        f"{_duration(config.alerts.min_interval)}.</sub>",
    ])


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# --- the alert ---------------------------------------------------------------------------------


def alert(config: Config, failure: Failure, *, base_url: str | None = None,
          now: datetime | None = None) -> AlertResult:
    """Open a GitHub issue for the failure, or comment on the open one; never raises for GitHub."""
    settings = config.alerts
    if not settings.github_repo:
        return AlertResult("disabled", message="no [alerts] github_repo configured")
    now = _utc(now)
    title = issue_title(failure)
    state_path = _state_path(config)
    sent = _load_state(state_path)
    if not sent and state_path != config.home / STATE_NAME:
        sent = _load_state(config.home / STATE_NAME)  # (kept there until a sync made the folder)
    last = _parse_stamp(sent.get(title, {}).get("time"))
    interval = timedelta(seconds=settings.min_interval)
    if last is not None and timedelta(0) <= now - last < interval:
        entry = sent[title]
        number = entry.get("issue") if isinstance(entry.get("issue"), int) else None
        url = entry.get("url") if isinstance(entry.get("url"), str) else None
        return AlertResult("rate-limited", number, url,
                           f"an alert for {title!r} went out at {_stamp(last)}; "
                           f"the next one not before {_stamp(last + interval)}")
    token, source, problem = _token(config)
    if not token:
        return _failed(config, failure, problem, now)
    from vault.github import api_url

    try:
        api = api_url(base_url)
    except VaultError as exc:
        return _failed(config, failure, exc.message, now)
    try:
        result = _send(config, failure, title, token, api)
    except Exception as exc:  # noqa: BLE001 - see the module docstring: an alert never raises
        return _failed(config, failure, _describe(exc, source, api,
                                                     settings.github_repo), now)
    sent[title] = {"time": _stamp(now), "issue": result.issue_number, "url": result.url,
                   "action": result.action}
    _save_state(config, state_path, sent, now)
    return result


def _send(config: Config, failure: Failure, title: str, token: str, api: str) -> AlertResult:
    """The GitHub calls: find the open issue (comment) or open one (labelled if possible)."""
    from github import Auth, Github

    settings = config.alerts
    # No retries and no client-side throttling: a handful of requests, in a failure path.
    # lazy: the repository object makes no request of its own (the issue calls name it).
    gh = Github(auth=Auth.Token(token), base_url=api, retry=None, timeout=NETWORK_TIMEOUT,
                per_page=100, seconds_between_requests=None, seconds_between_writes=None,
                lazy=True)
    repo = gh.get_repo(settings.github_repo)
    issue = _find_open(repo.get_issues(state="open", labels=[settings.label]), title)
    if issue is None:
        # An earlier alert may have gone out without the label (GitHub refused or failed to
        # make it then): the label existing now must not make that issue invisible, or each
        # later alert opens one more for the same failure.
        issue = _find_open(repo.get_issues(state="open"), title)
        if issue is not None:
            _label_late(repo, issue, settings.label)
    if issue is not None:
        issue.create_comment(issue_body(config, failure, repeat=True))
        return AlertResult("commented", issue.number, issue.html_url,
                           f"commented on {settings.github_repo}#{issue.number}")
    body = issue_body(config, failure)
    unlabelled = _ensure_label(repo, settings.label)
    created = (repo.create_issue(title=title, body=body) if unlabelled
               else repo.create_issue(title=title, body=body, labels=[settings.label]))
    note = f" (without the label {settings.label!r}: {unlabelled})" if unlabelled else ""
    return AlertResult("opened", created.number, created.html_url,
                       f"opened {settings.github_repo}#{created.number}{note}")


def _find_open(issues: PaginatedList[Issue], title: str) -> Issue | None:
    for i, issue in enumerate(issues):
        if i >= MAX_SCANNED_ISSUES:
            break
        # The issues list includes pull requests; a PR with this title is not our alert (and
        # html_url tells without the extra request reading `pull_request` would cost).
        if issue.title == title and issue.state == "open" and "/pull/" not in issue.html_url:
            return issue
    return None


def _ensure_label(repo: Repository, name: str) -> str:
    """"" when the label exists or was created; else why the issue goes out without it."""
    from github import GithubException, UnknownObjectException

    try:
        repo.get_label(name).color  # noqa: B018 - the attribute fetches the lazy label
        return ""
    except UnknownObjectException:
        pass
    except GithubException as exc:
        if exc.status == 401:
            raise
        # (a 5xx reading it: creating it answers whether it exists, "already_exists")
    except OSError as exc:  # requests' Timeout and ConnectionError: no second wait for it
        return f"GitHub did not answer about it ({type(exc).__name__})"
    try:
        repo.create_label(name, LABEL_COLOR, "vault: a sync or health check is failing")
        return ""
    except GithubException as exc:
        if exc.status == 401:
            raise
        if exc.status == 422 and "already_exists" in json.dumps(exc.data):
            return ""  # created in between (another host)
        # 403/404: no right to create labels; 5xx: GitHub failed. Either way the issue goes
        # out without the label rather than not at all, and a later alert labels it.
        if exc.status in (403, 404):
            return f"creating it was refused ({exc.status})"
        return f"GitHub failed to create it ({exc.status})"
    except OSError as exc:  # a timeout or a dropped connection: the issue goes out all the same
        return f"GitHub did not answer creating it ({type(exc).__name__})"


def _label_late(repo: Repository, issue: Issue, name: str) -> None:
    """Give an issue opened without the label the label, now that it can be made (best effort:
    the comment is what matters)."""
    from github import GithubException

    try:
        if not _ensure_label(repo, name):
            issue.add_to_labels(name)
    except (GithubException, OSError):  # (OSError: requests' Timeout and ConnectionError)
        pass


def _describe(exc: Exception, source: str, api: str, repo: str) -> str:
    """One line for a GitHub or network error; never the token."""
    from github import BadCredentialsException, GithubException

    if isinstance(exc, BadCredentialsException):
        return f"GitHub rejected the token in {source}"
    if isinstance(exc, GithubException):
        detail = exc.data.get("message") if isinstance(exc.data, dict) else ""
        return f"GitHub refused ({exc.status}) for {repo}: {detail or 'no detail'}"
    if isinstance(exc, OSError):  # requests' ConnectionError and Timeout are OSErrors
        from vault.github import unreachable

        return unreachable(exc, api, NETWORK_TIMEOUT)
    return f"unexpected: {type(exc).__name__}: {exc}"


def _failed(config: Config, failure: Failure, message: str, now: datetime) -> AlertResult:
    message = scrub(f"alert not sent: {message}", config)
    record_failure(config, "alert", f"{failure.command}: {message}", now)
    return AlertResult("failed", message=message)

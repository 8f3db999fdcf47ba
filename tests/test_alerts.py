"""failures.log and GitHub alerts: the real PyGithub client against a small issues API on 127.0.0.1."""

from __future__ import annotations

import json
import stat
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from conftest import write_config
from vault.alerts import (AlertResult, Failure, alert, issue_title, read_failures,
                          record_failure)
from vault.config import AlertsSettings, Config, load_config
from vault.errors import ConfigError

TOKEN = "ghp_alerttoken0123456789abcdefghijklmnop"
REPO = "sam/ops"
T0 = datetime(2026, 11, 21, 10, 15, tzinfo=timezone.utc)


class FakeIssues(BaseHTTPRequestHandler):
    """Answers what alert() calls: list issues, create issue, comment, get and create label."""

    issues: list[dict[str, Any]] = []
    labels: dict[str, dict[str, Any]] = {}
    refuse_labels = False
    requests: list[tuple[str, str]] = []
    posted: list[tuple[str, Any]] = []
    fail: dict[tuple[str, str], int] = {}  # (method, path) -> the status it answers with

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") not in (f"token {TOKEN}", f"Bearer {TOKEN}"):
            self._send(401, {"message": "Bad credentials"})
            return False
        code = self.fail.get((self.command, urlsplit(self.path).path))
        if code is not None:
            self._send(code, {"message": "Server Error"})
            return False
        return True

    def _base(self) -> str:
        return f"http://{self.headers['Host']}/repos/{REPO}"

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self.requests.append(("GET", self.path))
        if not self._authorized():
            return
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == f"/repos/{REPO}/issues":
            state = query.get("state", ["open"])[0]
            wanted = set(query["labels"][0].split(",")) if "labels" in query else set()
            found = [i for i in self.issues if state in ("all", i["state"])
                     and wanted <= {label["name"] for label in i["labels"]}]
            self._send(200, found)
        elif url.path.startswith(f"/repos/{REPO}/labels/"):
            name = url.path.rsplit("/", 1)[1]
            if name in self.labels:
                self._send(200, self.labels[name])
            else:
                self._send(404, {"message": "Not Found"})
        else:
            self._send(404, {"message": "Not Found"})

    def do_POST(self) -> None:  # noqa: N802
        self.requests.append(("POST", self.path))
        if not self._authorized():
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        self.posted.append((self.path, body))
        path = urlsplit(self.path).path
        if path == f"/repos/{REPO}/labels":
            if self.refuse_labels:
                self._send(403, {"message": "Resource not accessible by integration"})
                return
            label = {"name": body["name"], "color": body["color"],
                     "url": f"{self._base()}/labels/{body['name']}"}
            self.labels[body["name"]] = label
            self._send(201, label)
        elif path == f"/repos/{REPO}/issues":
            number = len(self.issues) + 1
            issue = {"id": 100 + number, "number": number, "title": body["title"],
                     "body": body.get("body", ""), "state": "open",
                     "labels": [self.labels[n] for n in body.get("labels", [])
                                if n in self.labels],
                     "url": f"{self._base()}/issues/{number}",
                     "html_url": f"https://github.example/{REPO}/issues/{number}",
                     "comments": 0}
            self.issues.append(issue)
            self._send(201, issue)
        elif path.startswith(f"/repos/{REPO}/issues/") and path.endswith("/labels"):
            issue = self.issues[int(path.split("/")[-2]) - 1]
            issue["labels"] += [self.labels[n] for n in body if n in self.labels
                                and self.labels[n] not in issue["labels"]]
            self._send(200, issue["labels"])
        elif path.startswith(f"/repos/{REPO}/issues/") and path.endswith("/comments"):
            number = int(path.split("/")[-2])
            issue = self.issues[number - 1]
            issue["comments"] += 1
            self._send(201, {"id": 500 + issue["comments"], "body": body["body"],
                             "html_url": f"{issue['html_url']}#issuecomment-{issue['comments']}"})
        else:
            self._send(404, {"message": "Not Found"})


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    FakeIssues.issues = []
    FakeIssues.labels = {}
    FakeIssues.refuse_labels = False
    FakeIssues.requests = []
    FakeIssues.posted = []
    FakeIssues.fail = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeIssues)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("GITHUB_API_URL", url)
    yield url
    server.shutdown()
    server.server_close()


@pytest.fixture
def alerting(tmp_path: Path, workspace: Path) -> Config:
    """A config with [alerts] github_repo set (and an initialised-looking vault folder)."""
    (tmp_path / "memory-vault").mkdir()
    path = write_config(tmp_path / "vault.toml", {"agent": workspace},
                        extra=f'\n[alerts]\ngithub_repo = "{REPO}"\nmin_interval = "1h"\n')
    return load_config(path)


def everything_written(config: Config) -> str:
    """Every file vault may have written for alerts, concatenated."""
    texts = []
    for root in (config.home, config.vault.path):
        for path in root.rglob("*"):
            if path.is_file():
                texts.append(path.read_text(errors="replace"))
    return "\n".join(texts)


# --- failures.log --------------------------------------------------------------------------------


def test_record_failure_appends_json_lines_privately(config: Config) -> None:
    first = record_failure(config, "sync", "source 'agent': no such directory", now=T0)
    record_failure(config, "doctor", "fatal: could not read from remote",
                   now=T0 + timedelta(minutes=15))
    assert first == Failure(T0, "testhost", "sync", "source 'agent': no such directory")
    log = config.home / "failures.log"
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert lines[0] == {"time": "2026-11-21T10:15:00Z", "host": "testhost", "command": "sync",
                        "error": "source 'agent': no such directory", "version": "0.1.0"}
    assert [d["command"] for d in lines] == ["sync", "doctor"]
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.home.stat().st_mode) == 0o700


def test_errors_are_one_clean_line_without_credentials(config: Config,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    failure = record_failure(
        config, "sync",
        "Cmd('git') failed\n  stderr: 'fatal: unable to access "
        f"'https://sam:{TOKEN}@github.com/sam/memory-vault.git/': 403'\n")
    assert "\n" not in failure.error and failure.error.startswith("stderr: 'fatal:")
    assert TOKEN not in failure.error and "sam:" not in failure.error
    other = record_failure(config, "sync", "header Authorization: Bearer abc.def.ghi leaked, "
                                           "and ghp_0123456789abcdefghijklmnopqrstuv too")
    assert "abc.def.ghi" not in other.error and "ghp_0123" not in other.error
    text = (config.home / "failures.log").read_text()
    assert TOKEN not in text and "abc.def.ghi" not in text


def test_read_failures_returns_the_tail_and_skips_damaged_lines(config: Config) -> None:
    for i in range(30):
        record_failure(config, "sync", f"failure {i}", now=T0 + timedelta(minutes=i))
    with (config.home / "failures.log").open("a") as log:
        log.write("not json\n[1, 2]\n{\"time\": \"yesterday\", \"host\": \"h\"}\n{\"time\": \n")
    record_failure(config, "sync", "failure 30", now=T0 + timedelta(minutes=30))
    tail = read_failures(config, limit=5)
    assert [f.error for f in tail] == [f"failure {i}" for i in range(26, 31)]
    assert tail[-1].time == T0 + timedelta(minutes=30)
    assert len(read_failures(config)) == 20


def test_read_failures_without_a_log(config: Config) -> None:
    assert read_failures(config) == []


def test_a_big_log_is_rotated_and_still_read(config: Config,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("vault.alerts.MAX_LOG_BYTES", 500)
    for i in range(12):
        record_failure(config, "sync", f"failure {i}", now=T0 + timedelta(minutes=i))
    old = config.home / "failures.log.1"
    assert old.is_file() and (config.home / "failures.log").stat().st_size <= 500 + 200
    # lines are ~125 bytes: rotated after 5 and after 10 lines; one old generation is kept
    assert [f.error for f in read_failures(config, limit=50)] == [
        f"failure {i}" for i in range(5, 12)]
    assert [f.error for f in read_failures(config, limit=3)] == [
        f"failure {i}" for i in range(9, 12)]


def test_a_logging_problem_never_raises(config: Config, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the data dir should be")
    broken = Config(file=None, home=blocker / "vault", vault=config.vault)
    failure = record_failure(broken, "sync", "boom", now=T0)
    assert failure.error == "boom"
    assert read_failures(broken) == []


# --- config --------------------------------------------------------------------------------------


def test_alerts_section_defaults_and_values(tmp_path: Path, workspace: Path,
                                            config: Config) -> None:
    assert config.alerts == AlertsSettings()
    assert (config.alerts.github_repo, config.alerts.min_interval) == ("", 3600)
    path = write_config(tmp_path / "v2.toml", {"agent": workspace}, extra=(
        '\n[alerts]\ngithub_repo = "acme/ops"\ntoken_env = "OPS_TOKEN"\n'
        'min_interval = "30m"\nlabel = "vault"\n'))
    assert load_config(path).alerts == AlertsSettings("acme/ops", "OPS_TOKEN", 1800, "vault")


@pytest.mark.parametrize("body, message", [
    ("repo = 'x'", "alerts.repo: unknown key"),
    ("github_repo = 'sam'", "alerts.github_repo: 'sam': use OWNER/NAME"),
    ("github_repo = 3", "alerts.github_repo: must be a string, not an integer"),
    ("min_interval = 'often'", "alerts.min_interval: cannot understand duration"),
    ("min_interval = '10s'", "alerts.min_interval: must be at least 1m"),
    ("token_env = 'MY TOKEN'", "alerts.token_env: 'MY TOKEN' is not an environment variable"),
    ("label = ''", "alerts.label: must be 1 to 50 characters"),
])
def test_alerts_section_errors(tmp_path: Path, workspace: Path, body: str, message: str) -> None:
    path = write_config(tmp_path / "bad.toml", {"agent": workspace}, extra=f"\n[alerts]\n{body}\n")
    with pytest.raises(ConfigError, match=message):
        load_config(path)


# --- alerts --------------------------------------------------------------------------------------


def test_first_alert_opens_a_labelled_issue(api: str, alerting: Config) -> None:
    failure = record_failure(alerting, "sync", "source 'agent': no such directory", now=T0)
    result = alert(alerting, failure, now=T0)
    assert result == AlertResult("opened", 1, f"https://github.example/{REPO}/issues/1",
                                 f"opened {REPO}#1")
    assert [(method, urlsplit(path).path) for method, path in FakeIssues.requests] == [
        ("GET", f"/repos/{REPO}/issues"),  # ?state=open&labels=critical: none yet
        ("GET", f"/repos/{REPO}/issues"),  # ?state=open: none unlabelled either
        ("GET", f"/repos/{REPO}/labels/critical"),  # 404
        ("POST", f"/repos/{REPO}/labels"),
        ("POST", f"/repos/{REPO}/issues")]
    assert "labels=critical" in FakeIssues.requests[0][1]
    assert FakeIssues.labels["critical"]["color"]
    (issue,) = FakeIssues.issues
    assert issue["title"] == "vault: sync failing on testhost" == issue_title(failure)
    assert [label["name"] for label in issue["labels"]] == ["critical"]
    body = issue["body"]
    for part in ("`vault sync` failed on `testhost` at 2026-11-21T10:15:00Z",
                 "| host | testhost |", "| vault | 0.1.0 |", "| Python |", "| OS |",
                 "| git |", "| libgit2 |",
                 "source 'agent': no such directory",
                 "2026-11-21T10:15:00Z testhost sync: source 'agent': no such directory",
                 "- [ ] run `vault doctor` on `testhost`",
                 "- [ ] check the sources are mounted",
                 "- [ ] `vault status` shows unpushed commits?",
                 "- [ ] close this issue when `vault doctor` is green"):
        assert part in body, part
    state = json.loads((alerting.home / "alerts.json").read_text())  # (no state folder yet)
    assert state["sent"][issue_title(failure)]["issue"] == 1


def test_repeats_are_rate_limited_then_comment(api: str, alerting: Config) -> None:
    failure = record_failure(alerting, "sync", "push failed: offline", now=T0)
    assert alert(alerting, failure, now=T0).action == "opened"
    seen = len(FakeIssues.requests)

    later = T0 + timedelta(minutes=15)
    again = record_failure(alerting, "sync", "push failed: offline", now=later)
    limited = alert(alerting, again, now=later)
    assert limited.action == "rate-limited"
    assert limited.issue_number == 1 and "2026-11-21T11:15:00Z" in limited.message
    assert len(FakeIssues.requests) == seen  # no request reached the server

    hour = T0 + timedelta(hours=1)
    third = record_failure(alerting, "sync", "push failed: still offline", now=hour)
    result = alert(alerting, third, now=hour)
    assert (result.action, result.issue_number) == ("commented", 1)
    assert len(FakeIssues.issues) == 1 and FakeIssues.issues[0]["comments"] == 1
    path, comment = FakeIssues.posted[-1]
    assert path == f"/repos/{REPO}/issues/1/comments"
    assert "Still failing on `testhost`" in comment["body"]
    assert "push failed: still offline" in comment["body"]
    # another command on the same host is another title: not limited by the sync alert
    doctor = record_failure(alerting, "doctor", "vault is behind", now=hour)
    assert alert(alerting, doctor, now=hour).action == "opened"


def test_a_closed_issue_leads_to_a_new_one(api: str, alerting: Config) -> None:
    failure = record_failure(alerting, "sync", "boom", now=T0)
    assert alert(alerting, failure, now=T0).issue_number == 1
    FakeIssues.issues[0]["state"] = "closed"
    later = T0 + timedelta(hours=2)
    result = alert(alerting, record_failure(alerting, "sync", "boom", now=later), now=later)
    assert (result.action, result.issue_number) == ("opened", 2)
    assert [i["state"] for i in FakeIssues.issues] == ["closed", "open"]


def test_refused_label_opens_the_issue_without_it(api: str, alerting: Config) -> None:
    FakeIssues.refuse_labels = True
    failure = record_failure(alerting, "sync", "boom", now=T0)
    result = alert(alerting, failure, now=T0)
    assert (result.action, result.issue_number) == ("opened", 1)
    assert "without the label 'critical'" in result.message
    assert ("POST", f"/repos/{REPO}/labels") in FakeIssues.requests
    assert "labels" not in FakeIssues.posted[-1][1]
    # the next alert still finds that unlabelled issue and comments on it
    later = T0 + timedelta(hours=1)
    assert alert(alerting, failure, now=later).action == "commented"
    assert len(FakeIssues.issues) == 1


def test_a_label_made_later_still_finds_the_unlabelled_issue(api: str,
                                                             alerting: Config) -> None:
    """QA: once the label existed, alerts searched only labelled issues and opened a second
    issue for the same failure instead of commenting on the first (opened without it)."""
    FakeIssues.refuse_labels = True
    first = alert(alerting, record_failure(alerting, "sync", "boom", now=T0), now=T0)
    assert (first.action, first.issue_number) == ("opened", 1)
    assert first.message.endswith("(without the label 'critical': creating it was refused (403))")
    # the user makes the label by hand (or a host with more rights does)
    FakeIssues.labels["critical"] = {"name": "critical", "color": "b60205",
                                     "url": f"{api}/repos/{REPO}/labels/critical"}
    later = T0 + timedelta(hours=2)
    again = alert(alerting, record_failure(alerting, "sync", "boom again", now=later), now=later)
    assert (again.action, again.issue_number) == ("commented", 1), again
    assert [i["number"] for i in FakeIssues.issues] == [1]
    assert [label["name"] for label in FakeIssues.issues[0]["labels"]] == ["critical"]


def test_a_label_github_failed_to_make_is_not_called_refused(api: str,
                                                             alerting: Config) -> None:
    """QA: a 502 while creating the label was "creating it was refused", and the next alert,
    which made the label, opened a second issue."""
    FakeIssues.fail = {("POST", f"/repos/{REPO}/labels"): 502}
    first = alert(alerting, record_failure(alerting, "sync", "boom", now=T0), now=T0)
    assert (first.action, first.issue_number) == ("opened", 1)
    assert first.message.endswith(
        "(without the label 'critical': GitHub failed to create it (502))"), first.message
    FakeIssues.fail = {}
    later = T0 + timedelta(hours=2)
    again = alert(alerting, record_failure(alerting, "sync", "boom", now=later), now=later)
    assert (again.action, again.issue_number) == ("commented", 1), again
    assert len(FakeIssues.issues) == 1
    assert [label["name"] for label in FakeIssues.issues[0]["labels"]] == ["critical"]
    # and a third alert finds it by its label, as a first labelled one
    third_at = later + timedelta(hours=2)
    seen = len(FakeIssues.requests)
    third = alert(alerting, record_failure(alerting, "sync", "boom", now=third_at), now=third_at)
    assert (third.action, third.issue_number) == ("commented", 1)
    assert [m for m, _ in FakeIssues.requests[seen:]] == ["GET", "POST"]  # list, comment


def test_a_label_github_cannot_read_or_make_is_not_the_alert_failing(api: str,
                                                                     alerting: Config) -> None:
    FakeIssues.fail = {("GET", f"/repos/{REPO}/labels/critical"): 503,
                       ("POST", f"/repos/{REPO}/labels"): 503}
    result = alert(alerting, record_failure(alerting, "sync", "boom", now=T0), now=T0)
    assert (result.action, result.issue_number) == ("opened", 1), result
    assert "GitHub failed to create it (503)" in result.message


def test_existing_label_is_used_as_is(api: str, alerting: Config) -> None:
    FakeIssues.labels["critical"] = {"name": "critical", "color": "000000",
                                     "url": f"{api}/repos/{REPO}/labels/critical"}
    assert alert(alerting, record_failure(alerting, "sync", "boom"), now=T0).action == "opened"
    assert not any(path.endswith("/labels") for path, _ in FakeIssues.posted)
    assert FakeIssues.labels["critical"]["color"] == "000000"


def test_bad_token_fails_cleanly_and_is_logged(api: str, alerting: Config,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    bad = "ghp_wrongtoken0123456789abcdefghijklmnopq"
    monkeypatch.setenv("GITHUB_TOKEN", bad)
    failure = record_failure(alerting, "sync", "boom", now=T0)
    result = alert(alerting, failure, now=T0)
    assert result == AlertResult(
        "failed", message="alert not sent: GitHub rejected the token in GITHUB_TOKEN")
    assert FakeIssues.issues == []
    last = read_failures(alerting)[-1]
    assert (last.command, last.error) == (
        "alert", "sync: alert not sent: GitHub rejected the token in GITHUB_TOKEN")
    # a failed alert is not rate-limited: the next failure tries again
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    assert alert(alerting, failure, now=T0 + timedelta(minutes=15)).action == "opened"
    captured = capsys.readouterr()
    assert captured.out == captured.err == ""
    for secret in (bad, TOKEN):
        assert secret not in everything_written(alerting)
        assert secret not in json.dumps(FakeIssues.issues)


def test_missing_token_and_unreachable_server(alerting: Config,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    failure = record_failure(alerting, "sync", "boom", now=T0)
    result = alert(alerting, failure, now=T0)
    assert (result.action, result.message) == (
        "failed", "alert not sent: no GitHub token: set GITHUB_TOKEN (a cron run has none: "
                  "see [alerts] token_file)")
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    closed = ThreadingHTTPServer(("127.0.0.1", 0), FakeIssues)
    url = f"http://127.0.0.1:{closed.server_address[1]}"
    closed.server_close()  # nothing listens there now
    offline = alert(alerting, failure, base_url=url, now=T0)
    assert offline.action == "failed"
    assert offline.message == f"alert not sent: cannot reach {url}: ConnectionError"
    assert TOKEN not in everything_written(alerting)


def test_before_init_the_state_lives_in_the_data_dir(api: str, tmp_path: Path,
                                                    workspace: Path) -> None:
    path = write_config(tmp_path / "vault.toml", {"agent": workspace},
                        extra=f'\n[alerts]\ngithub_repo = "{REPO}"\n')
    config = load_config(path)
    assert alert(config, record_failure(config, "doctor", "no vault", now=T0),
                 now=T0).action == "opened"
    assert not config.vault.path.exists()  # `vault init` still finds an empty place
    assert (config.home / "alerts.json").is_file()


def test_no_github_repo_is_disabled(config: Config, api: str) -> None:
    result = alert(config, record_failure(config, "sync", "boom"))
    assert result.action == "disabled"
    assert FakeIssues.requests == []


# --- [alerts] token_file: a token cron runs can read ----------------------------------------------


def token_file(path: Path, text: str = TOKEN + "\n", mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def with_token_file(tmp_path: Path, workspace: Path, value: str) -> Config:
    (tmp_path / "memory-vault").mkdir(exist_ok=True)
    return load_config(write_config(tmp_path / "vault.toml", {"agent": workspace}, extra=(
        f'\n[alerts]\ngithub_repo = "{REPO}"\ntoken_file = "{value}"\n')))


def test_token_file_is_read_relative_to_the_config_with_its_variables(
        tmp_path: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert with_token_file(tmp_path, workspace, "keys/gh").alerts.token_file == \
        tmp_path / "keys" / "gh"
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path / "s"))
    config = with_token_file(tmp_path, workspace, "${SECRETS_DIR}/gh")
    assert config.alerts.token_file == tmp_path / "s" / "gh"
    assert ("SECRETS_DIR", str(tmp_path / "s")) in config.path_vars  # (the cron entry sets it)
    assert with_token_file(tmp_path, workspace, "~/gh").alerts.token_file == \
        Path.home() / "gh"
    monkeypatch.delenv("SECRETS_DIR")
    with pytest.raises(ConfigError, match=r"alerts.token_file: \$\{SECRETS_DIR\} is not set"):
        with_token_file(tmp_path, workspace, "${SECRETS_DIR}/gh")


def test_alerts_use_the_token_file_without_the_variable(api: str, tmp_path: Path,
                                                        workspace: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """QA: alerts read the token only from $GITHUB_TOKEN, which cron never passes: an alert
    from the installed cron entry could never go out."""
    monkeypatch.delenv("GITHUB_TOKEN")
    config = with_token_file(tmp_path, workspace, str(token_file(tmp_path / "gh-token")))
    result = alert(config, record_failure(config, "sync", f"boom {TOKEN}", now=T0), now=T0)
    assert (result.action, result.issue_number) == ("opened", 1), result
    assert TOKEN not in everything_written(config)  # (scrubbed like the variable's)
    assert TOKEN not in json.dumps(FakeIssues.issues)
    # the file, when set, is the token, also where the variable holds another
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_someothertoken0123456789abcdefghijk")
    later = T0 + timedelta(hours=1)
    assert alert(config, record_failure(config, "sync", "boom", now=later),
                 now=later).action == "commented"


@pytest.mark.parametrize("mode,text,why", [
    (0o644, TOKEN, "is open to others (mode 644): chmod 600 it"),
    (0o640, TOKEN, "is open to others (mode 640): chmod 600 it"),
    (0o600, " \n\n", "is empty"),
    (None, "", ": No such file or directory"),
])
def test_a_token_file_that_cannot_be_used_says_why(api: str, tmp_path: Path, workspace: Path,
                                                   mode: int | None, text: str,
                                                   why: str) -> None:
    path = tmp_path / "gh-token"
    if mode is not None:
        token_file(path, text, mode)
    config = with_token_file(tmp_path, workspace, str(path))
    result = alert(config, record_failure(config, "sync", "boom", now=T0), now=T0)
    separator = "" if why.startswith(":") else " "
    assert (result.action, result.message) == (
        "failed", f"alert not sent: [alerts] token_file {path}{separator}{why}")
    assert FakeIssues.requests == []  # (a token others can read is never sent)
    assert TOKEN not in everything_written(config)


def test_a_rejected_token_file_is_named(api: str, tmp_path: Path, workspace: Path) -> None:
    path = token_file(tmp_path / "gh-token", "ghp_wrongtoken0123456789abcdefghijklmnopq\n")
    config = with_token_file(tmp_path, workspace, str(path))
    result = alert(config, record_failure(config, "sync", "boom", now=T0), now=T0)
    assert result.message == f"alert not sent: GitHub rejected the token in [alerts] token_file {path}"


def test_an_alert_goes_out_from_the_installed_cron_entry(api: str, tmp_path: Path,
                                                         workspace: Path) -> None:
    """The whole way: `vault cron install`'s line, run with cron's environment only (plus the
    GITHUB_API_URL line a GitHub Enterprise user's crontab holds, here the fake's), a sync that
    fails, an issue opened with the token from the file."""
    import subprocess

    from vault.schedule import install

    from vault.repo import VaultRepo

    config = with_token_file(tmp_path, workspace, str(token_file(tmp_path / "gh-token")))
    VaultRepo.init(config.vault.path, "main")
    workspace.rename(tmp_path / "unmounted")  # a sync that fails: its source is gone
    tab = tmp_path / "crontab"
    install(config, "15m", tab)
    line = next(x for x in tab.read_text().splitlines() if "vault-sync" in x)
    command = line.split(" ", 5)[5].rsplit(" # vault-sync", 1)[0].replace("\\%", "%")
    env = {"SHELL": "/bin/sh", "HOME": str(tmp_path / "home"), "LOGNAME": "cron",
           "PATH": "/usr/bin:/bin", "GITHUB_API_URL": api}
    subprocess.run(["/bin/sh", "-c", command], env=env, cwd="/", check=True, timeout=120)
    log = (config.home / "failures.log").read_text()
    assert [i["title"] for i in FakeIssues.issues] == ["vault: sync failing on testhost"], log
    assert "alert not sent" not in log and TOKEN not in log

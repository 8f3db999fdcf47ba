"""Alerts a review found broken: one that wrote into a project's bare repository (the [vault]
path of a refused sync), and one a slow or dropped label request kept from going out."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conftest import git, run_cli, write_config
from test_alerts import REPO, T0, TOKEN, FakeIssues, alerting, api  # noqa: F401 - fixtures
from vault import alerts
from vault.alerts import alert, issue_title, record_failure
from vault.config import Config, load_config


def test_an_alert_for_a_refused_sync_writes_nothing_into_the_repository_it_refused(
        api: str, tmp_path: Path, workspace: Path) -> None:  # noqa: F811
    """[vault] path: a project's bare clone. The sync is refused (not made by vault); its alert
    used to make the state folder in it for alerts.json, and the next sync, seeing that
    folder, skipped its check and wrote sync.lock there too."""
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "README.md").write_text("a project\n")
    git(proj, "init", "-q", "-b", "main")
    git(proj, "add", "README.md")
    git(proj, "-c", "user.name=p", "-c", "user.email=p@example.com", "commit", "-qm", "start")
    bare = tmp_path / "projbare"
    git(tmp_path, "clone", "-q", "--bare", str(proj), str(bare))
    before = sorted(p.relative_to(bare) for p in bare.rglob("*"))
    config = write_config(tmp_path / "vault.toml", {"agent": workspace}, vault_path=bare,
                          extra=f'\n[alerts]\ngithub_repo = "{REPO}"\n')
    for _ in range(2):
        proc = run_cli("sync", "--config", str(config))
        assert proc.returncode == 1, proc.stderr
        assert "was not made by vault; refusing" in proc.stderr
    assert sorted(p.relative_to(bare) for p in bare.rglob("*")) == before
    assert (load_config(config).home / "alerts.json").is_file()  # (rate-limited there)
    assert len(FakeIssues.issues) == 1


def test_after_the_first_sync_the_state_moves_into_the_vault_and_keeps_its_rate_limit(
        api: str, tmp_path: Path, workspace: Path) -> None:  # noqa: F811
    config_file = write_config(tmp_path / "vault.toml", {"agent": workspace},
                               extra=f'\n[alerts]\ngithub_repo = "{REPO}"\n')
    config = load_config(config_file)
    assert alert(config, record_failure(config, "doctor", "no vault", now=T0),
                 now=T0).action == "opened"
    assert run_cli("init", "--config", str(config_file)).returncode == 0
    assert not config.state_dir.exists()  # (init makes none; an alert made one, before)
    assert run_cli("sync", "-q", "--config", str(config_file)).returncode == 0
    later = T0 + timedelta(minutes=5)
    result = alert(config, record_failure(config, "doctor", "again", now=later), now=later)
    assert result.action == "rate-limited"  # (what the data dir's alerts.json says)
    later = T0 + timedelta(hours=2)
    result = alert(config, record_failure(config, "doctor", "again", now=later), now=later)
    assert (result.action, result.issue_number) == ("commented", 1)
    sent = json.loads((config.state_dir / "alerts.json").read_text())["sent"]
    assert sent["vault: doctor failing on testhost"]["action"] == "commented"


# --- a label request that times out or drops -------------------------------------------------


@pytest.fixture
def labels_fail(api: str, monkeypatch: pytest.MonkeyPatch  # noqa: F811
                ) -> Iterator[Callable[[str], None]]:
    """labels_fail("stall"): the fake GitHub answers no label request (the client times out,
    after 1 second here); labels_fail("drop"): it closes the connection without an answer."""
    mode: list[str] = []
    release = threading.Event()
    get, post = FakeIssues.do_GET, FakeIssues.do_POST

    def failing(real: Callable[[FakeIssues], None]) -> Callable[[FakeIssues], None]:
        def handler(self: FakeIssues) -> None:
            path = urlsplit(self.path).path
            if mode and (path.startswith(f"/repos/{REPO}/labels")
                         or path.endswith("/labels")):
                self.requests.append((self.command, self.path))
                if mode[0] == "stall":
                    release.wait(30)
                self.close_connection = True  # no answer at all
                return
            real(self)
        return handler

    monkeypatch.setattr(FakeIssues, "do_GET", failing(get))
    monkeypatch.setattr(FakeIssues, "do_POST", failing(post))
    monkeypatch.setattr(alerts, "NETWORK_TIMEOUT", 1)
    yield mode.append
    release.set()


@pytest.mark.parametrize("how", ["stall", "drop"])
def test_a_label_request_that_fails_on_the_network_still_opens_the_issue(
        labels_fail: Callable[[str], None], alerting: Config, how: str  # noqa: F811
) -> None:
    labels_fail(how)
    failure = record_failure(alerting, "sync", "push failed: offline", now=T0)
    result = alert(alerting, failure, now=T0)
    assert result.action == "opened", result.message
    kind = "ReadTimeout" if how == "stall" else "ConnectionError"
    assert result.message == (f"opened {REPO}#1 (without the label 'critical': GitHub did not "
                              f"answer about it ({kind}))")
    (issue,) = FakeIssues.issues
    assert issue["title"] == issue_title(failure) and issue["labels"] == []
    assert TOKEN not in json.dumps(result.message)


@pytest.mark.parametrize("how", ["stall", "drop"])
def test_a_late_label_that_fails_on_the_network_still_comments(
        labels_fail: Callable[[str], None], alerting: Config, how: str  # noqa: F811
) -> None:
    FakeIssues.refuse_labels = True  # the first issue goes out without the label
    failure = record_failure(alerting, "sync", "push failed: offline", now=T0)
    assert alert(alerting, failure, now=T0).action == "opened"
    FakeIssues.refuse_labels = False
    labels_fail(how)
    later = T0 + timedelta(hours=2)
    result = alert(alerting, record_failure(alerting, "sync", "again", now=later), now=later)
    assert (result.action, result.issue_number) == ("commented", 1), result.message
    assert FakeIssues.issues[0]["comments"] == 1

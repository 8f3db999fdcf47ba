"""Alerts a review found broken: one that wrote into a project's bare repository (the [vault]
path of a refused sync)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from conftest import git, run_cli, write_config
from test_alerts import REPO, T0, FakeIssues, api  # noqa: F401 - fixtures
from vault.alerts import alert, record_failure
from vault.config import load_config


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


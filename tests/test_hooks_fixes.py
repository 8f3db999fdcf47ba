"""Hooks fixes: pre_sync runs only for a sync that happens, and the agent hooks read a leading ~
in VAULT_HOME (or XDG_DATA_HOME) as vault does."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import run_cli, write_config
from test_hooks import STAMP, attempts, finish, hook_env, start_hook
from vault.config import load_config, vault_home
from vault.repo import VaultRepo

HOOKS = ('pre_sync = "touch {pre}"\n'
         'on_failure = "printf %s \\"$VAULT_ERROR\\" > {failed}"\n')


def test_pre_sync_does_not_run_when_there_is_no_vault(tmp_path: Path, workspace: Path) -> None:
    """VAULT_HOME at an empty folder: pre_sync did its work, then 'Error: no vault at ...'
    (exit 10). Now the sync's own error comes first, and on_failure still hears of it."""
    pre, failed = tmp_path / "pre-ran", tmp_path / "failed"
    cfg = tmp_path / "vault.toml"
    cfg.write_text("[hooks]\n" + HOOKS.format(pre=pre, failed=failed)
                   + f'\n[[sources]]\nname = "agent"\npath = "{workspace}"\n')
    empty = tmp_path / "empty-home"
    empty.mkdir()
    proc = run_cli("sync", "--config", str(cfg), env={"VAULT_HOME": str(empty)})
    where = empty / "memory-vault"
    assert proc.returncode == 10, proc.stderr
    assert proc.stderr.splitlines()[0] == f"Error: no vault at {where}"
    assert not pre.exists()
    assert failed.read_text() == f"no vault at {where}"
    assert not where.exists()  # (no lock folder made either)


def test_pre_sync_does_not_run_for_a_damaged_vault(tmp_path: Path, workspace: Path) -> None:
    """A vault whose HEAD file is gone: every command exits 1 with the damage; pre_sync ran."""
    pre, failed = tmp_path / "pre-ran", tmp_path / "failed"
    config = load_config(write_config(tmp_path / "vault.toml", {"agent": workspace},
                                      extra="[hooks]\n" + HOOKS.format(pre=pre, failed=failed)))
    VaultRepo.init(config.vault.path, config.vault.branch)
    (config.vault.path / "HEAD").unlink()
    proc = run_cli("sync", "--config", str(config.file))
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines()[0].startswith(
        f"Error: {config.vault.path} is a damaged vault (HEAD missing)")
    assert not pre.exists()
    assert "is a damaged vault (HEAD missing)" in failed.read_text()


def test_pre_sync_still_runs_for_a_sync_that_happens(tmp_path: Path, workspace: Path) -> None:
    """A vault's first sync (its lock folder not made yet) and the next one both run it."""
    pre, failed = tmp_path / "pre-ran", tmp_path / "failed"
    config = load_config(write_config(tmp_path / "vault.toml", {"agent": workspace},
                                      extra="[hooks]\n" + HOOKS.format(pre=pre, failed=failed)))
    VaultRepo.init(config.vault.path, config.vault.branch)
    for _ in range(2):
        proc = run_cli("sync", "--quiet", "--config", str(config.file))
        assert proc.returncode == 0, proc.stderr
        assert pre.exists() and not failed.exists()
        pre.unlink()


@pytest.mark.parametrize("kind", ["sh", "node"])
@pytest.mark.parametrize("variable", ["VAULT_HOME", "XDG_DATA_HOME"])
def test_a_hook_reads_a_leading_tilde_as_vault_does(kind: str, variable: str, tmp_path: Path,
                                                    workspace: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """VAULT_HOME="~/vh" (quoted in an agent's settings, so no shell expands it): vault reads
    it as $HOME/vh, the hooks logged to ./~/vh/vault.log in the agent's working folder."""
    config_file = write_config(tmp_path / "vault.toml", {"agent": workspace})
    config = load_config(config_file)
    VaultRepo.init(config.vault.path, config.vault.branch)
    workspace.rename(tmp_path / "gone")
    env = hook_env(tmp_path, config_file)
    env.pop("VAULT_HOME")
    env[variable] = "~/vh"
    home = Path(env["HOME"]) / "vh" / ("vault" if variable == "XDG_DATA_HOME" else "")
    assert vault_home(env) == home  # the rule vault itself follows
    cwd = tmp_path / "agent-cwd"  # (where the agent runs the hook)
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    finish(start_hook(kind, tmp_path, env))
    assert list(cwd.iterdir()) == []  # no stray ./~ folder
    log = (home / "vault.log").read_text().splitlines()
    assert log[0] == f"Error: source 'agent': folder not found: {workspace}"
    assert re.fullmatch(STAMP + r" vault sync exited 1 \(see vault status\)", log[-1])
    assert attempts(tmp_path) == ["1"]


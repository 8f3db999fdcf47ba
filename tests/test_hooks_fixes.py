"""Hooks fixes: pre_sync runs only for a sync that happens."""

from __future__ import annotations

from pathlib import Path

from conftest import run_cli, write_config
from vault.config import load_config
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

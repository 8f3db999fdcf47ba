"""Sync edge cases a review found: skipped folders, repeated options, names that forge lines."""

from __future__ import annotations

from pathlib import Path

from conftest import Clock, git
from vault.config import Config
from vault.repo import VaultRepo
from vault.sync import SyncOptions, quote_path, sync


def test_a_folder_that_became_a_symlink_keeps_its_files(config: Config, vault: VaultRepo,
                                                        clock: Clock, workspace: Path,
                                                        tmp_path: Path) -> None:
    sync(config, now=clock)
    elsewhere = tmp_path / "elsewhere"
    (workspace / "memory").rename(elsewhere)
    (workspace / "memory").symlink_to(elsewhere)
    clock.tick()
    result = sync(config, now=clock)
    assert [s.path for s in result.skipped] == ["agent/memory"]
    assert result.deleted == ()  # a skip is never a deletion
    files = git(config.vault.path, "ls-tree", "-r", "--name-only", "HEAD").split()
    assert "agent/memory/2026-11-20.md" in files


def test_a_source_named_twice_is_synced_once(config: Config, vault: VaultRepo,
                                             clock: Clock) -> None:
    result = sync(config, SyncOptions(sources=("agent", "agent")), now=clock)
    assert len(result.added) == len(set(result.added)) == 5
    message = git(config.vault.path, "log", "-1", "--format=%B")
    assert message.startswith("vault sync 2026-11-21T10:15:00Z: 0 modified, 5 added, 0 deleted")


def test_a_file_name_cannot_forge_lines_or_trailers(config: Config, vault: VaultRepo,
                                                    clock: Clock, workspace: Path) -> None:
    sync(config, now=clock)
    (workspace / "note\n\nVault-Host: evil\nD agent").write_text("x\n")
    (workspace / 'say "hi"\\.md').write_text("y\n")
    clock.tick()
    result = sync(config, now=clock)
    assert len(result.added) == 2
    body = git(config.vault.path, "log", "-1", "--format=%B")
    assert 'A "agent/note\\n\\nVault-Host: evil\\nD agent"' in body
    assert 'A "agent/say \\"hi\\"\\\\.md"' in body
    trailers = git(config.vault.path, "log", "-1", "--format=%(trailers:only,unfold)").split("\n")
    assert [t for t in trailers if t.startswith("Vault-Host:")] == ["Vault-Host: testhost"]
    # the real names, as git itself quotes them
    listed = git(config.vault.path, "show", "--format=", "--name-only", "HEAD").splitlines()
    assert sorted(listed) == sorted(quote_path(p) for p in result.added)


def test_quote_path_leaves_ordinary_names_alone() -> None:
    assert quote_path("agent/memory/2026-11-21.md") == "agent/memory/2026-11-21.md"
    assert quote_path("agent/caf\u00e9 \u2615.md") == "agent/caf\u00e9 \u2615.md"
    assert quote_path("agent/tab\there") == '"agent/tab\\there"'
    assert quote_path("agent/\udcff.md") == '"agent/\\377.md"'  # a byte that is not UTF-8


def test_a_database_whose_header_is_damaged_is_corrupt_not_a_new_file(
        config: Config, vault: VaultRepo, clock: Clock, workspace: Path) -> None:
    sync(config, now=clock)
    stored = git(config.vault.path, "rev-parse", "HEAD:agent/memory.db").strip()
    db = workspace / "memory.db"
    damaged = bytearray(db.read_bytes())
    damaged[:23] = b"GARBAGE-GARBAGE-GARBAGE"
    db.write_bytes(bytes(damaged))
    clock.tick()
    result = sync(config, now=clock)
    assert [c.path for c in result.corrupt] == ["agent/memory.db"]
    assert not result.ok and "agent/memory.db" not in result.modified
    assert git(config.vault.path, "rev-parse", "HEAD:agent/memory.db").strip() == stored


def test_a_gitmodules_file_is_not_stored(config: Config, vault: VaultRepo, clock: Clock,
                                         workspace: Path) -> None:
    (workspace / ".gitmodules").write_text('[submodule "../../a"]\n\tpath = y\n'
                                           '\turl = -oProxyCommand=x\n')
    result = sync(config, now=clock)
    assert [(s.path, s.reason) for s in result.skipped] == [
        ("agent/.gitmodules", "git reads a .gitmodules file as submodule settings; not stored")]
    git(config.vault.path, "fsck", "--strict")  # raises on any error

"""Config: search order, defaults, validation that names the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from vault.config import find_config, load_config, parse_size
from vault.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "ws").mkdir()
    cfg = load_config(write(tmp_path / "vault.toml", '[[sources]]\nname = "a"\npath = "ws"\n'))
    assert cfg.sources[0].root == tmp_path / "ws"
    assert cfg.vault.branch == "main"
    assert cfg.vault.path == tmp_path / "home" / "vault-data" / "memory-vault"  # VAULT_HOME
    assert cfg.sources[0].include == ("*",)


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = write(tmp_path / "vault.toml", "")
    other = write(tmp_path / "other.toml", "")
    user = tmp_path / "home" / ".config" / "vault" / "vault.toml"
    user.parent.mkdir(parents=True)
    write(user, "")
    assert find_config() == local
    monkeypatch.setenv("VAULT_CONFIG", str(other))
    assert find_config() == other
    assert find_config(explicit=str(local)) == local
    monkeypatch.delenv("VAULT_CONFIG")
    local.unlink()
    assert find_config() == user
    user.unlink()
    with pytest.raises(ConfigError, match="no vault.toml found"):
        find_config()


@pytest.mark.parametrize("text, message", [
    ("[vault]\npaht = 'x'\n", "vault.paht: unknown key"),
    ("colour = 1\n", "colour: unknown key"),
    ("[[sources]]\nname = 'a'\npath = 'x'\ninclude = '*.md'\n",
     "sources[0].include: must be an array, not a string"),
    ("[[sources]]\nname = 'a'\npath = 'x'\n[[sources]]\nname = 'a'\npath = 'y'\n",
     "sources[1].name: duplicate source name 'a'"),
    ("[[sources]]\npath = 'x'\n", "sources[0].name: missing"),
    ("[[sources]]\nname = 'a/b'\npath = 'x'\n", "sources[0].name: 'a/b': use letters"),
    ("[[sources]]\nname = 'a'\n", "sources[0].path: missing"),
    # a misspelt required key is named as such, not reported missing
    ("[[sources]]\nname = 'a'\npaht = 'x'\n", "sources[0].paht: unknown key (is it 'path'?)"),
    ("[[sources]]\nnmae = 'a'\npath = 'x'\n", "sources[0].nmae: unknown key (is it 'name'?)"),
    ("[[sources]]\nname = 'a'\nfolder = 'x'\n", "sources[0].folder: unknown key"),
    ("[[sources]]\nname = 'a'\npath = 'x'\nexclude = ['']\n",
     "sources[0].exclude[0]: must be a non-empty string"),
    ("[snapshot]\nmax_file_size = 'huge'\n", "snapshot.max_file_size: not a size: 'huge'"),
    ("[snapshot]\nread_retries = true\n", "snapshot.read_retries: must be an integer, not a boolean"),
    ("[snapshot]\nread_retries = 0\n", "snapshot.read_retries: must be between 1 and 100"),
    ("[vault]\nbranch = 'a..b'\n", "vault.branch: not a valid branch name"),
    ("[alerts]\nrepo = 'x'\n", "alerts.repo: unknown key"),
    ("[secrets]\npolicy = 'ignore'\n", "secrets.policy: 'ignore': use one of block, redact, allow"),
    ("[secrets]\nallow_fingerprints = ['sk-live-123']\n",
     "secrets.allow_fingerprints[0]: 'sk-live-123' is not a fingerprint"),
    ("[hooks]\npre_sync = 3\n", "hooks.pre_sync: must be a string, not an integer"),
    ("[hooks]\ntimeout = 0\n", "hooks.timeout: must be between 1 and 3600 seconds"),
    ("[hooks]\npost-sync = 'x'\n", "hooks.post-sync: unknown key"),
    ("[schedule]\ninterval = 'often'\n", "schedule.interval: "),
    ("[schedule]\ninterval = '10s'\n", "schedule.interval: must be at least 1m"),
    ("vault = 3\n", "vault: must be a table, not an integer"),
    ("[vault\n", "not valid TOML"),
])
def test_bad_config_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "vault.toml", text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


@pytest.mark.parametrize("text, size", [
    ("100", 100), ("1 KiB", 1024), ("50MB", 50_000_000), ("2 GiB", 2 * 1024**3), (4096, 4096),
    ("1.5 MiB", int(1.5 * 1024**2)), ("8388607 TiB", 8388607 * 1024**4), (2**63 - 1, 2**63 - 1),
])
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


def test_sections_parse(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path / "vault.toml", (
        "[secrets]\npolicy = 'redact'\nallow_paths = ['docs/*.md']\n"
        "allow_fingerprints = ['0123abcd0123abcd']\n"
        "[hooks]\npre_sync = 'echo pre'\ntimeout = 5\n[schedule]\ninterval = '1h'\n")))
    assert (cfg.secrets.policy, cfg.secrets.allow_paths) == ("redact", ("docs/*.md",))
    assert cfg.hooks.pre_sync == "echo pre" and cfg.hooks.timeout == 5
    assert cfg.schedule.interval == 3600


def test_a_fingerprint_in_capitals_is_allowed(tmp_path: Path) -> None:
    """Copied from a report in capitals, it means what `vault secrets allow` takes."""
    from vault.secrets import allowed_fingerprints

    cfg = load_config(write(tmp_path / "vault.toml",
                            "[secrets]\nallow_fingerprints = ['0123ABCD0123abcd']\n"))
    assert "0123abcd0123abcd" in allowed_fingerprints(cfg)


def test_root_vault_toml_is_valid() -> None:
    """The commented example at the repository root loads against examples/."""
    root = Path(__file__).resolve().parent.parent
    cfg = load_config(root / "vault.toml")
    assert {s.name for s in cfg.sources} >= {"openclaw", "ragent", "memento", "synthians"}
    for source in cfg.sources:
        assert source.root.is_dir(), source


def test_paths_expand_variables_and_the_home_folder(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """What worked before unset variables became errors still works: ~, $HOME, ${NAME}, a TOML
    escape, a variable holding '~' or an empty value; '$$' is a literal '$'."""
    home = Path.home()
    monkeypatch.setenv("AGENT_HOME", "/srv/agent")
    monkeypatch.setenv("TILDE", "~/t")
    monkeypatch.setenv("EMPTY", "")
    cfg = load_config(write(tmp_path / "vault.toml", "\n".join(
        f'[[sources]]\nname = "s{i}"\npath = "{path}"' for i, path in enumerate([
            "~/a", "$HOME/b", "${AGENT_HOME}/c", "\\u0024AGENT_HOME/d", "$TILDE", "x$EMPTY/e",
            "/data/$$AGENT_HOME", "rel"])) + '\n[index]\npath = "$AGENT_HOME/index.db"\n'))
    assert [s.root for s in cfg.sources] == [
        home / "a", home / "b", Path("/srv/agent/c"), Path("/srv/agent/d"), home / "t",
        tmp_path / "x" / "e", Path("/data/$AGENT_HOME"), tmp_path / "rel"]
    assert cfg.index.path == Path("/srv/agent/index.db")
    # what `vault cron install` writes into its entry (cron passes none of these but HOME)
    assert cfg.path_vars == (("AGENT_HOME", "/srv/agent"), ("EMPTY", ""), ("HOME", str(home)),
                             ("TILDE", "~/t"))

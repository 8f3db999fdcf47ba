"""Where things are before any config is read: the data dir and the config file search.

Plain os.path and no other imports: `vault sync`'s quick check runs this before anything
heavier is loaded (vault.config wraps it in Path objects for everyone else).
"""

from __future__ import annotations

import os

from vault.errors import ConfigError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from collections.abc import Mapping

CONFIG_NAME = "vault.toml"


def home_dir(env: Mapping[str, str] | None = None) -> str:
    """The data dir: VAULT_HOME, else $XDG_DATA_HOME/vault, else ~/.local/share/vault."""
    env = os.environ if env is None else env
    if env.get("VAULT_HOME"):
        return os.path.abspath(os.path.expanduser(env["VAULT_HOME"]))
    xdg = env.get("XDG_DATA_HOME")
    base = os.path.expanduser(xdg) if xdg else os.path.join(os.path.expanduser("~"),
                                                            ".local", "share")
    return os.path.abspath(os.path.join(base, "vault"))


def user_config_file(env: Mapping[str, str] | None = None) -> str:
    """The user's config: $XDG_CONFIG_HOME/vault/vault.toml or ~/.config/vault/vault.toml."""
    env = os.environ if env is None else env
    xdg = env.get("XDG_CONFIG_HOME")
    base = os.path.expanduser(xdg) if xdg else os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "vault", CONFIG_NAME)


def _missing(path: str) -> str:
    if os.path.isdir(path):
        return "is a folder, not a file"
    return "is not a regular file" if os.path.exists(path) else "not found"


def find_config_file(explicit: str | os.PathLike[str] | None = None,
                     env: Mapping[str, str] | None = None,
                     cwd: str | os.PathLike[str] | None = None) -> str:
    """Pick the config file: --config, then VAULT_CONFIG, then ./vault.toml, then the user's dir."""
    env = os.environ if env is None else env
    if explicit:
        path = os.path.expanduser(os.fspath(explicit))
        if not os.path.isfile(path):
            raise ConfigError(f"config file {_missing(path)}: {path}")
        return os.path.abspath(path)
    if env.get("VAULT_CONFIG"):
        path = os.path.expanduser(env["VAULT_CONFIG"])
        if not os.path.isfile(path):
            raise ConfigError(f"config file {_missing(path)}: {path} (from VAULT_CONFIG)")
        return os.path.abspath(path)
    local = os.path.join(os.fspath(cwd) if cwd is not None else os.getcwd(), CONFIG_NAME)
    if os.path.isfile(local):
        return os.path.abspath(local)
    user = user_config_file(env)
    if os.path.isfile(user):
        return user
    raise ConfigError(
        f"no {CONFIG_NAME} found (looked in --config, VAULT_CONFIG, ./{CONFIG_NAME}, {user})",
        hint=f"copy the example {CONFIG_NAME} from the vault README and list your sources",
    )

"""Path safety for restores: a vault path may only ever land inside its target root."""

from __future__ import annotations

import os
from pathlib import Path

from vault.errors import VaultError


class UnsafePathError(VaultError):
    """A vault entry would be written outside its target (.., absolute, or through a symlink)."""


def check_vault_path(path: str) -> tuple[str, ...]:
    """Split a vault tree path into safe components, or raise UnsafePathError."""
    # A backslash is an ordinary character in a POSIX file name: it is kept, not refused.
    if not path or path.startswith("/") or "\x00" in path:
        raise UnsafePathError(f"refusing unsafe path in the vault: {path!r}")
    parts = tuple(path.split("/"))
    for part in parts:
        if part in ("", ".", "..") or part.lower() == ".git":
            raise UnsafePathError(f"refusing unsafe path in the vault: {path!r}")
    return parts


def safe_target(root: Path, rel: str, checked: dict[str, Path] | None = None) -> Path:
    """root/rel, refusing any component that escapes root (.., absolute, symlinked folders).

    checked caches folders already proven safe (pass the same dict for a whole batch).
    """
    parts = check_vault_path(rel)
    folder = f"{root}\0{'/'.join(parts[:-1])}"
    if checked is not None and folder in checked:
        return checked[folder] / parts[-1]
    real_root = Path(os.path.realpath(root))
    current = real_root
    for part in parts[:-1]:
        current = current / part
        if current.is_symlink():
            # Sync never follows a link (a folder that became one is skipped, its files kept
            # as they were): writing them back through it would land in another folder, inside
            # the root or out of it.
            resolved = Path(os.path.realpath(current))
            where = "that leaves " + str(root) if resolved != real_root and \
                real_root not in resolved.parents else "inside " + str(root)
            raise UnsafePathError(f"refusing to write through a symlink {where}: "
                                  f"{current} -> {resolved}",
                                  hint="replace the link with a folder, or restore elsewhere "
                                       "with --to DIR")
    if checked is not None:
        checked[folder] = current
    # A symlink as the last component is fine: os.replace swaps the name itself and never
    # writes through the link.
    return current / parts[-1]

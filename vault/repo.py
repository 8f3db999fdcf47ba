"""The vault repository: the only module that touches git (pygit2 writes objects in-process)."""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from vault.errors import NoVaultError, RepoError, VaultError, one_line_reason
from vault.fsutil import sync_filesystem

AUTHOR_NAME = "vault"

if TYPE_CHECKING:
    import pygit2

FileMap = dict[str, tuple[str, int]]  # vault path -> (blob id, mode)
HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class CommitInfo:
    """One commit of the vault's history, as `vault log` shows it."""

    id: str
    time: datetime
    summary: str
    message: str
    parents: tuple[str, ...]


def _by_vault(message: str) -> bool:
    return vault_host(message) is not None


def vault_host(message: str) -> str | None:
    """The host a vault commit names in its `Vault-Host:` trailer; None for other commits."""
    for line in message.splitlines():
        if line.startswith("Vault-Host: "):
            return line[len("Vault-Host: "):].strip()
    return None


class NotMadeByVaultError(VaultError):
    """A repository whose branch vault did not make (a project's): never used as the vault."""


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def remove_folders(made: list[Path]) -> None:
    """Remove the folders make_folder made (innermost first) that are still empty."""
    for folder in reversed(made):
        try:
            folder.rmdir()
        except OSError:
            return


def headless(path: Path) -> bool:
    """A vault whose HEAD file is gone: damage (git no longer sees a repository), not a folder
    that never was a vault."""
    return (path.is_dir() and not (path / "HEAD").exists() and (path / "objects").is_dir()
            and (path / "refs").is_dir())


def _headless_error(path: Path, branch: str) -> RepoError:
    return RepoError(f"{path} is a damaged vault (HEAD missing): its objects and refs are "
                     "there, its HEAD file is gone",
                     hint="`vault doctor --repair` writes it back (or by hand: printf "
                          f"'ref: refs/heads/{branch}\\n' > {path / 'HEAD'})")


def _work_tree(path: Path) -> NoVaultError:
    return NoVaultError(f"{path} is a git work tree (it has a .git), not a vault",
                        hint="a vault is a bare repository of its own: set [vault] path to an "
                             "empty or new folder")


class VaultRepo:
    """A bare git repository holding the vault's history on one branch."""

    def __init__(self, path: Path, branch: str) -> None:
        self.path = path
        self.branch = branch
        self.ref_name = f"refs/heads/{branch}"
        self._pygit2_repo: pygit2.Repository | None = None

    @property
    def _repo(self) -> pygit2.Repository:
        # pygit2 is imported on first use: a sync that finds nothing changed never needs it.
        if self._pygit2_repo is None:
            import pygit2

            try:
                self._pygit2_repo = pygit2.Repository(str(self.path))
            except pygit2.GitError:
                raise NoVaultError(f"{self.path} is not a vault (not a git repository)",
                                   hint="run `vault init`, or fix [vault] path") from None
        return self._pygit2_repo

    @classmethod
    def init(cls, path: Path, branch: str) -> tuple[VaultRepo, bool]:
        """Create the vault (private to the user); return it and whether it was new."""
        import pygit2

        try:
            if (path / ".git").exists():
                raise _work_tree(path)
            if headless(path):
                raise _headless_error(path, branch)
            if (path / "HEAD").exists():
                existing = cls.open(path, branch)
                existing.check_made_by_vault()
                from vault.remote import tracking_ref

                existing.adopt_clone(tracking_ref(branch))
                existing.point_head()
                # An empty repository made beforehand becomes the vault now ("created"); one
                # made by git (a bare clone, an empty one) gets the vault's settings either way.
                fresh = existing.head_id() is None and not _described_as_vault(path)
                existing.set_up()
                return existing, fresh
            if path.exists() and not path.is_dir():
                raise RepoError(f"{path} is not a folder",
                                hint="set [vault] path to an empty or new folder")
            if path.exists() and any(path.iterdir()):
                raise VaultError(f"{path} exists and is not empty; refusing to create a vault "
                                 "there", hint="set [vault] path to an empty or new folder")
        except OSError as exc:  # e.g. a folder on the way that cannot be read, a name too long
            raise RepoError(f"cannot create the vault at {path}: {one_line_reason(exc)}") from None
        old_umask = os.umask(0o077)
        try:
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
            pygit2.init_repository(str(path), bare=True, initial_head=branch)
        except (OSError, pygit2.GitError) as exc:
            raise RepoError(f"cannot create the vault at {path}: {one_line_reason(exc)}") from None
        finally:
            os.umask(old_umask)
        made = cls(path, branch)
        made.set_up()
        return made, True

    @staticmethod
    def make_folder(path: Path) -> list[Path]:
        """Create path, a new vault's folder, and the folders missing above it (private to
        the user); return the folders made, outermost first, for remove_folders. RepoError
        when it cannot be made, as init says it."""
        missing = []
        at = path
        while not os.path.lexists(at) and at != at.parent:
            missing.append(at)
            at = at.parent
        made: list[Path] = []
        old_umask = os.umask(0o077)
        try:
            for folder in reversed(missing):
                folder.mkdir(mode=0o700)
                made.append(folder)
        except OSError as exc:
            remove_folders(made)
            raise RepoError(f"cannot create the vault at {path}: {one_line_reason(exc)}") from None
        finally:
            os.umask(old_umask)
        return made

    @classmethod
    def open(cls, path: Path, branch: str) -> VaultRepo:
        """Open an existing vault; NoVaultError when there is none."""
        if not path.exists():
            raise NoVaultError(f"no vault at {path}", hint="run `vault init` first")
        if (path / ".git").exists():  # a project of the user's: its branch is not ours to move
            raise _work_tree(path)
        if headless(path):
            raise _headless_error(path, branch)
        if not ((path / "HEAD").is_file() and (path / "objects").is_dir()):
            raise NoVaultError(f"{path} is not a vault (not a git repository)",
                               hint="run `vault init`, or fix [vault] path")
        return cls(path.resolve(), branch)

    def check_made_by_vault(self, tip: str | None = None) -> CommitInfo | None:
        """Refuse a repository whose branch vault did not make (a project's bare repository):
        no commit on its first-parent line carries vault's trailer. (An empty repository is
        fine, and so is a commit made by hand on top of a vault's.) Return what
        last_by_vault(tip) found: the last sync's commit, None on an empty branch."""
        tip = tip or self.head_id()
        if tip is None:
            self._refuse_foreign_refs()
            return None
        last = self.last_by_vault(tip)
        if last is None:
            raise NotMadeByVaultError(
                f"{self.path} is a git repository whose branch '{self.branch}' was not made "
                "by vault; refusing to use it as the vault",
                hint="set [vault] path to an empty or new folder")
        return last

    def _refuse_foreign_refs(self) -> None:
        """NotMadeByVaultError for a repository without our branch that holds refs vault did
        not make: someone's project (a bare clone of it, on another branch); taking it would
        commit into it and push to its origin."""
        foreign = self.foreign_ref()
        if foreign is not None:
            raise NotMadeByVaultError(
                f"{self.path} is a git repository whose branch '{self.branch}' is missing "
                f"and whose ref {foreign} was not made by vault; refusing to use it as the "
                "vault", hint="set [vault] path to an empty or new folder")

    def foreign_ref(self) -> str | None:
        """The first ref (loose or packed: branches, tags, remote-tracking refs) whose
        commit's first-parent line holds no commit vault made; None when there is none.
        Symbolic refs are skipped (they name another ref)."""
        import pygit2

        try:
            names = sorted(self._repo.references)
        except pygit2.GitError as exc:
            raise RepoError(f"cannot read the refs of {self.path}: {one_line_reason(exc)}",
                            hint="`vault doctor` checks the vault") from None
        for name in names:
            try:
                ref = self._repo.references.get(name)
                if ref is None or ref.type != pygit2.enums.ReferenceType.DIRECT:
                    continue
                oid = self._peel(str(ref.target), name)
            except (KeyError, ValueError, pygit2.GitError, _Unresolved):
                return name  # (a tag of a tree or blob, a ref that cannot be read)
            while True:
                if not self.has_object(oid):
                    return name  # (a shallow line, or a ref to nothing: not vault's)
                info = self._read_info(oid)
                if _by_vault(info.message):
                    break
                if not info.parents:
                    return name
                oid = info.parents[0]
        return None

    def head_branch(self) -> str | None:
        """The branch HEAD names (None: detached, unreadable or garbage)."""
        text = _read_text(self.path / "HEAD").strip()
        if not text.startswith("ref: refs/heads/") or len(text.split()) != 2:
            return None
        return text.removeprefix("ref: refs/heads/")

    def head_names_no_branch(self) -> str | None:
        """The branch HEAD names when it is another than the vault's and does not exist (git's
        default branch of an empty repository): `git log` fails, `git clone` warns."""
        import pygit2

        name = self.head_branch()
        if name is None or name == self.branch:
            return None
        try:
            if self._repo.references.get(f"refs/heads/{name}") is not None:
                return None
        except (ValueError, pygit2.GitError):
            pass  # (a name git cannot read is no branch either)
        return name

    def point_head(self) -> bool:
        """Point HEAD at the vault's branch when it names another that does not exist; True
        when it did."""
        import pygit2

        if self.head_names_no_branch() is None:
            return False
        try:
            self._repo.set_head(self.ref_name)
        except (OSError, pygit2.GitError) as exc:
            raise RepoError(f"cannot point HEAD of {self.path} at {self.ref_name}: "
                            f"{one_line_reason(exc)}") from None
        return True

    def set_up(self) -> None:
        """The vault's own settings, on a repository it made, adopted or re-cloned: private to
        the user, a reflog (a second way back), never a repack by a `git` command while vault
        writes (restore reads the loose objects), and the vault's description."""
        import pygit2

        try:
            os.chmod(self.path, 0o700)
            settings = self._repo.config
            settings["core.logAllRefUpdates"] = "always"
            settings["gc.auto"] = "0"
            if not _described_as_vault(self.path):
                (self.path / "description").write_text(DESCRIPTION)
        except (OSError, pygit2.GitError) as exc:
            raise RepoError(f"cannot set up the vault at {self.path}: {one_line_reason(exc)}") from None

    def last_by_vault(self, tip: str | None = None) -> CommitInfo | None:
        """The newest commit vault made on the branch's first-parent line: the last sync's
        (None when vault made none; a shallow history, not judged, gives the tip; a damaged
        commit on the way is a RepoError)."""
        tip = tip or self.head_id()
        oid = tip
        while oid is not None:
            # (each commit read checked: libgit2's commit.parents read them unchecked, and
            # looped forever on a truncated one, libgit2#7342)
            info = self._read_info(oid)
            if _by_vault(info.message):
                return info
            oid = info.parents[0] if info.parents else None
            if oid is not None and not self.has_object(oid):
                return self.commit_info(tip) if tip is not None else None  # (shallow: not judged)
        return None

    def adopt_clone(self, tracking: str) -> bool:
        """On a bare clone git left as it made it, record the tracking ref (what the remote's
        branch held) from the branch's tip; True when recorded.

        `git clone --bare` writes no remote-tracking ref, so every commit would count as not
        pushed yet. Only a clone nothing has moved since counts: an origin, no tracking ref,
        the tip in packed-refs alone (vault and git write a loose ref when they move it) and no
        reflog line but the clone's; anything else waits for the next push's fetch.
        """
        head = self.head_id()
        if (head is None or self.ref_id(tracking) is not None
                or (self.path / self.ref_name).exists()
                or f"{head} {self.ref_name}" not in _read_text(
                    self.path / "packed-refs").splitlines()
                or '[remote "origin"]' not in _read_text(self.path / "config")):
            return False
        log = _read_text(self.path / "logs" / self.ref_name).splitlines()
        if any("\tclone: " not in line for line in log):
            return False
        import pygit2

        try:
            self.set_ref(tracking, head, "vault: init on a clone, the remote's branch as cloned")
        except (OSError, pygit2.GitError):
            return False  # (best effort: the next push's fetch records it)
        return True

    # Reading -------------------------------------------------------------------------------

    def head_id(self) -> str | None:
        """The commit the branch points at, or None before the first sync."""
        # Fast path without pygit2: a loose ref file holding a full id is authoritative
        # (git reads loose refs before packed-refs). Anything else goes through libgit2.
        try:
            text = (self.path / self.ref_name).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            text = ""
        if is_id(text):
            return text
        import pygit2

        try:
            ref = self._repo.references.get(self.ref_name)
        except pygit2.GitError as exc:
            raise RepoError(f"cannot read branch {self.branch}: {exc}") from None
        if ref is None:
            self._refuse_lost_branch()
            return None
        return str(ref.target)

    def check_refs(self) -> None:
        """RepoError when HEAD or packed-refs is damaged: git no longer reads the vault, and
        every sync fails at its last step (a missing branch with a history is head_id's)."""
        problem = self.head_problem() or self.packed_refs_problem()
        if problem is not None:
            raise RepoError(f"{problem}; git cannot read the vault, and no sync can commit",
                            hint="`vault doctor --repair` fixes it")

    def head_problem(self) -> str | None:
        """What is wrong with the HEAD file (empty or garbage, as a crash can leave it), if
        anything. A HEAD naming another branch is git's business, not damage."""
        try:
            raw = (self.path / "HEAD").read_bytes()
        except FileNotFoundError:
            return f"the vault's HEAD file {self.path / 'HEAD'} is missing"
        except OSError as exc:
            return f"the vault's HEAD file cannot be read: {one_line_reason(exc)}"
        text = raw.decode("ascii", errors="replace").strip()
        if text.startswith("ref: refs/") and len(text.split()) == 2:
            return None
        if is_id(text):  # a detached HEAD
            return None
        what = "empty" if not text else f"damaged (it reads {text[:40]!r})"
        return f"the vault's HEAD file {self.path / 'HEAD'} is {what}"

    def packed_refs_problem(self) -> str | None:
        """What is wrong with packed-refs, if anything (vault never packs refs; git may)."""
        lines = read_packed_refs(self.path)
        bad = next((n for n, (_line, ok) in enumerate(lines, 1) if not ok), None)
        if bad is None:
            return None
        return (f"the vault's packed-refs file {self.path / 'packed-refs'} is damaged "
                f"(line {bad}: {lines[bad - 1][0][:60]!r})")

    def last_known_tip(self) -> tuple[str, str] | None:
        """The tip the branch last had by the vault's own records, and which record: the last
        line of the branch's reflog, else the commit the stat cache was written for (when no
        other branch points at it: the config may name a new branch). None for a new vault."""
        logged = reflog_tip(self.path, self.ref_name)
        if logged is not None:
            return logged, "its reflog"
        from vault.detect import load_cache
        from vault.sync import CACHE_NAME

        # (the state dir is Config.state_dir: `vault/` inside the vault)
        cached = load_cache(self.path / "vault" / CACHE_NAME).commit
        if cached is None or len(cached) != 40 or not self.has_object(cached):
            return None
        import pygit2

        try:
            others = [ref for ref in self._repo.references
                      if ref.startswith("refs/heads/") and ref != self.ref_name]
            if any(self.ref_id(ref) == cached for ref in others):
                return None
        except pygit2.GitError:
            pass  # damaged packed-refs: head_id says so first
        return cached, "the stat cache"

    def _refuse_lost_branch(self) -> None:
        """RepoError when the branch is missing (or unreadable) but had a history: a sync now
        would make a new first commit and cut the old ones off."""
        problem = self.packed_refs_problem()
        if problem is not None:
            raise RepoError(f"cannot read branch {self.branch}: {problem}",
                            hint="`vault doctor --repair` fixes it")
        known = self.last_known_tip()
        if known is None:
            return
        tip, record = known
        raise RepoError(f"branch {self.branch} is missing from the vault, but {record} names "
                        f"its last tip {tip[:10]}: a sync now would cut its history off",
                        hint="`vault doctor --repair` puts the branch back")

    def restore_branch(self, tip: str, reason: str) -> None:
        """Put a missing branch back at tip (only while it is still missing, or its loose ref
        file holds no id: an emptied one, as a crash can leave it, goes)."""
        loose = self.path / self.ref_name
        text = _read_text(loose).strip() if loose.is_file() else None
        if text is not None and not is_id(text):
            try:
                loose.unlink()
            except OSError as exc:
                raise RepoError(f"cannot remove the damaged ref {loose}: {one_line_reason(exc)}") \
                    from None
        self._move_branch(None, tip, reason)

    def check_tip(self, head: str) -> None:
        """RepoError when the branch's tip commit is missing or damaged (inflated with zlib
        while it is a loose object, a few hundred bytes: a sync that trusts its stat cache
        must not call a damaged vault fine)."""
        if (self.path / "objects" / head[:2] / head[2:]).is_file():
            self._check_loose(head)
        else:
            self._commit(head)  # packed (libgit2 finds it), or missing (it says so)

    def commit_info(self, commit_id: str) -> CommitInfo:
        """Id, time, message and parents of one commit."""
        commit = self._commit(commit_id)
        return _info(commit)

    def resolve(self, spec: str) -> CommitInfo:
        """A commit id, prefix, branch, tag or HEAD (`@`), with `~N`/`^N` suffixes -> that
        commit (HEAD is the vault's branch).

        Every commit on the way is read checked (objects.loose_commit, or _commit, which checks
        a loose one with zlib first): libgit2's revparse read them unchecked, and looped
        forever on a truncated one (libgit2#7342). RepoError when spec names no commit; damage
        found on the way is a VaultError (exit 1), not a RepoError: callers turn resolve's
        RepoError into a usage error (a WHEN that names nothing), and damage is no typo.
        """
        import re

        match = re.fullmatch(r"([^~^\s]+)((?:~\d*|\^\d*)*)", spec.strip())
        try:
            if match is None:
                raise _Unresolved(spec)
            oid = self._resolve_base(match.group(1))
            for op, count in re.findall(r"([~^])(\d*)", match.group(2)):
                n = int(count) if count else 1
                if op == "~":
                    for _ in range(n):
                        parents = self._read_info(oid).parents
                        if not parents:
                            raise _Unresolved(spec)
                        oid = parents[0]
                elif n:
                    parents = self._read_info(oid).parents
                    if n > len(parents):
                        raise _Unresolved(spec)
                    oid = parents[n - 1]
            return self._read_info(oid)
        except _Unresolved:
            pass
        except RepoError as exc:  # damage on the way (see above)
            raise VaultError(exc.message, hint=exc.hint or _DAMAGED_HINT) from None
        try:
            empty = self.head_id() is None
        except RepoError as exc:  # (a lost branch: damage too)
            raise VaultError(exc.message, hint=exc.hint) from None
        if empty:  # (as restore says it for a time)
            raise VaultError("the vault has no commits yet", hint="run `vault sync` first")
        raise RepoError(f"no commit {spec!r} in the vault", hint="`vault log` lists the commits")

    def _resolve_base(self, name: str) -> str:
        """The commit a revision's base names, in git's order: HEAD (the vault's branch), a
        full id, a ref (refs/NAME, tags, heads, remotes), a unique prefix. _Unresolved when
        none; tags are peeled to their commit."""
        if name in ("HEAD", "@"):
            head = self.head_id()
            if head is None:
                raise _Unresolved(name)
            return head
        lowered = name.lower()
        if is_id(lowered) and self._object_kind(lowered) is not None:
            return self._peel(lowered, name)
        target = self._dwim_ref(name)
        if target is not None:
            return self._peel(target, name)
        if 4 <= len(name) < 40 and set(lowered) <= HEX:
            return self._peel(self._commit_with_prefix(lowered), name)
        raise _Unresolved(name)

    def _dwim_ref(self, name: str) -> str | None:
        """The id a ref name points at, tried as git tries it (refs/NAME, refs/tags/NAME,
        refs/heads/NAME, refs/remotes/NAME, refs/remotes/NAME/HEAD); reads refs only."""
        import pygit2

        for candidate in (name if name.startswith("refs/") else None, f"refs/{name}",
                          f"refs/tags/{name}", f"refs/heads/{name}", f"refs/remotes/{name}",
                          f"refs/remotes/{name}/HEAD"):
            if candidate is None:
                continue
            try:
                ref = self._repo.references.get(candidate)
                if ref is not None:
                    return str(ref.resolve().target)
            except (KeyError, ValueError, pygit2.GitError):
                continue  # (not a valid ref name, or a symbolic ref to nothing)
        return None

    def _commit_with_prefix(self, prefix: str) -> str:
        """The one commit (or tag) whose id starts with prefix: like git in a ^{commit}
        context, a blob or tree sharing the prefix does not make it ambiguous. Ids come from
        the loose objects' file names and the odb's listing, types from zlib headers (or the
        pack): nothing is inflated whole by libgit2 here."""
        from vault.errors import UsageError

        found = self._ids_with_prefix(prefix)
        if len(found) > 1:
            # ("damaged": a loose object whose header cannot be read might be a commit)
            found = [oid for oid in found
                     if self._object_kind(oid) in ("commit", "tag", "damaged")]
            if len(found) > 1:
                raise UsageError(f"ambiguous commit prefix {prefix!r}: give more characters",
                                 hint="it starts the commits "
                                      + ", ".join(c[:12] for c in found[:5]))
        if not found:
            raise _Unresolved(prefix)
        return found[0]

    def _ids_with_prefix(self, prefix: str) -> list[str]:
        """Every object id starting with prefix: loose file names, then the odb if packed."""
        objects = self.path / "objects"
        try:
            names = {prefix[:2] + n for n in os.listdir(objects / prefix[:2])
                     if len(n) == 38 and n.startswith(prefix[2:]) and set(n) <= HEX}
        except OSError:
            names = set()
        try:  # a vault never packs; a user-made one may (or borrow through alternates)
            packed = any(n.endswith(".pack") for n in os.listdir(objects / "pack"))
        except OSError:
            packed = False
        if packed or (objects / "info" / "alternates").exists():
            # (the odb lists ids without reading the objects)
            names |= {str(oid) for oid in self._repo.odb if str(oid).startswith(prefix)}
        return sorted(names)

    def _object_kind(self, oid: str) -> str | None:
        """An object's type ("commit", "tree", "blob", "tag"), read from a loose object's zlib
        header (never by libgit2, which loops on a truncated one) or from the pack; "damaged"
        for a loose one whose header cannot be read; None for a missing one."""
        import pygit2

        try:
            with open(self.path / "objects" / oid[:2] / oid[2:], "rb") as handle:
                start = handle.read(256)
        except FileNotFoundError:
            try:
                packed = int(self._repo.odb.read_header(oid)[0])
            except (KeyError, ValueError, pygit2.GitError):
                return None
            return {1: "commit", 2: "tree", 3: "blob", 4: "tag"}.get(packed, "damaged")
        except OSError:
            return "damaged"
        try:
            header = zlib.decompressobj().decompress(start, 32)
        except zlib.error:
            return "damaged"
        kind, space, _size = header.partition(b"\0")[0].partition(b" ")
        name = kind.decode("ascii", "replace")
        return name if space and name in ("commit", "tree", "blob", "tag") else "damaged"

    def _peel(self, oid: str, spec: str) -> str:
        """The commit oid is or (a tag) points at; _Unresolved for a tree or blob."""
        import pygit2

        for _ in range(16):  # (a tag of a tag of ...; a loop of tags cannot be made, but)
            kind = self._object_kind(oid)
            if kind in ("commit", "damaged", None):
                return oid  # (a damaged or missing one: reading it says what is wrong)
            if kind != "tag":
                raise _Unresolved(spec)
            self._check_loose(oid)
            try:
                tag = self._repo[oid]
            except (KeyError, ValueError, pygit2.GitError) as exc:
                raise RepoError(f"vault object {oid} is missing or damaged: "
                                f"{one_line_reason(exc)}", hint=_DAMAGED_HINT) from None
            if not isinstance(tag, pygit2.Tag):
                raise _Unresolved(spec)
            oid = str(tag.target)
        raise _Unresolved(spec)

    def _read_info(self, oid: str) -> CommitInfo:
        """One commit, read checked: by hand when it is a whole loose commit, else by libgit2
        after _commit's check."""
        from vault.objects import loose_commit

        return loose_commit(self, oid) or _info(self._commit(oid))

    def files(self, commit_id: str | None) -> FileMap:
        """Every file in a commit's tree: vault path -> (blob id, mode)."""
        import pygit2

        if commit_id is None:
            return {}
        commit = self._commit(commit_id)
        self._check_trees(str(commit.tree_id))
        try:
            tree = commit.tree
            index = pygit2.Index()
            try:
                index.read_tree(tree)
            except pygit2.GitError:
                # libgit2 refuses entries such as '..' or '.git' (a hand-made commit): list
                # them anyway, so that restore can name and refuse them.
                return dict(_walk_tree(tree, ""))
            return {entry.path: (str(entry.id), int(entry.mode)) for entry in index}
        except (KeyError, ValueError, OSError, pygit2.GitError) as exc:
            raise RepoError(f"the tree of vault commit {commit_id[:10]} is missing or damaged: "
                            f"{one_line_reason(exc)}",
                            hint="`vault doctor` checks the vault; `vault doctor --repair` "
                                 "re-clones it from its remote") from None

    def read_blob(self, oid: str) -> bytes:
        """The bytes of one blob."""
        import pygit2

        oid = self._full_id(oid)
        if len(oid) == 40:
            self._check_loose(oid)  # (libgit2 loops forever on a truncated one)
        try:
            blob = self._repo.get(pygit2.Oid(hex=oid)) if len(oid) == 40 else self._repo[oid]
        except (KeyError, ValueError, pygit2.GitError) as exc:
            raise RepoError(f"vault object {oid} is missing or damaged: {exc}") from None
        if blob is None:
            raise RepoError(f"vault object {oid} is missing")
        if not isinstance(blob, pygit2.Blob):
            raise RepoError(f"vault object {oid} is not a file")
        return blob.data

    def has_object(self, oid: str) -> bool:
        """True when the object is in the object database (damaged or not: `oid in
        repository` read it, and looped forever on a truncated one, libgit2#7342)."""
        import pygit2

        try:
            return bool(self._repo.odb.exists(oid))
        except (ValueError, pygit2.GitError):
            return False

    def walk(self, start: str | None = None) -> Iterator[CommitInfo]:
        """Commits from start (default: the branch tip) back to the first, newest first.

        Each commit is read checked (a loose one with zlib, objects.loose_commit; any other
        through _commit, which checks first): libgit2's walker read them unchecked, and looped
        forever on a truncated one (libgit2#7342). Newest first by committer time, which vault never
        lets go back from a parent to its child: a child comes before its parents."""
        import heapq

        from vault.objects import loose_commit

        start = start or self.head_id()
        if start is None:
            return
        seen: set[str] = set()
        frontier: list[tuple[float, int, CommitInfo]] = []  # (ties: first found, first out)

        def found(oid: str) -> None:
            seen.add(oid)
            info = loose_commit(self, oid) or _info(self._commit(oid))
            heapq.heappush(frontier, (-info.time.timestamp(), len(seen), info))

        found(start)
        while frontier:
            info = heapq.heappop(frontier)[2]
            yield info
            for parent in info.parents:
                if parent not in seen:
                    found(parent)

    def walk_first_parent(self, start: str) -> Iterator[CommitInfo]:
        """The branch's own line of history from start back to the first commit (each commit
        checked before libgit2 reads it)."""
        oid: str | None = start
        while oid is not None:
            info = _info(self._commit(oid))
            yield info
            oid = info.parents[0] if info.parents else None

    def changed_paths(self, commit_id: str) -> dict[str, str]:
        """Paths a commit changed against its first parent: path -> 'A', 'M' or 'D'.

        Loose trees are read and compared here, with zlib (which a truncated one cannot
        get past; libgit2 looped forever on it, libgit2#7342); pygit2's diff compares trees
        that are not loose, once every loose tree below them is checked."""
        commit = self._commit(commit_id)
        trees: list[str | None] = [str(self._commit(str(commit.parent_ids[0])).tree_id)] \
            if commit.parent_ids else [None]
        trees.append(str(commit.tree_id))
        changed: dict[str, str] = {}
        try:
            self._diff_trees(trees[0], trees[1], "", changed)
            return changed
        except _NotLoose:
            pass
        import pygit2

        for tree in trees:
            if tree is not None:
                self._check_trees(tree)
        try:
            if commit.parents:
                diff = commit.parents[0].tree.diff_to_tree(commit.tree)
            else:
                diff = commit.tree.diff_to_tree(swap=True)  # against the empty tree: all added
        except (KeyError, ValueError, pygit2.GitError) as exc:
            raise RepoError(f"a tree of vault commit {commit_id[:10]} is missing or damaged: "
                            f"{one_line_reason(exc)}", hint=_DAMAGED_HINT) from None
        status = {pygit2.enums.DeltaStatus.ADDED: "A", pygit2.enums.DeltaStatus.DELETED: "D"}
        return {d.new_file.path if d.status != pygit2.enums.DeltaStatus.DELETED
                else d.old_file.path: status.get(d.status, "M") for d in diff.deltas}

    def _diff_trees(self, old: str | None, new: str | None, prefix: str,
                    changed: dict[str, str]) -> None:
        """changed_paths for two loose trees (None: no tree), the same subtree skipped."""
        if old == new:
            return
        before, after = self._tree_entries(old), self._tree_entries(new)
        for name in before.keys() | after.keys():
            a, b = before.get(name), after.get(name)
            path = prefix + name
            a_tree = a is not None and a[0] == 0o40000
            b_tree = b is not None and b[0] == 0o40000
            if a_tree or b_tree:
                self._diff_trees(a[1] if a_tree and a else None,
                                 b[1] if b_tree and b else None, path + "/", changed)
            if a is not None and not a_tree and (b is None or b_tree):
                changed[path] = "D"
            elif b is not None and not b_tree and (a is None or a_tree):
                changed[path] = "A"
            elif a is not None and b is not None and not a_tree and not b_tree and a != b:
                changed[path] = "M"

    def _tree_entries(self, oid: str | None) -> dict[str, tuple[int, str]]:
        """A loose tree's entries (name -> (mode, id)), read with zlib and checked; _NotLoose
        for a tree that is not a loose object, RepoError for a damaged one."""
        if oid is None:
            return {}
        from vault.objects import loose_body, tree_entries

        body = loose_body(os.fspath(self.path / "objects"), oid, b"tree")
        if body is None:
            self._check_loose(oid)  # (a damaged one says so)
            raise _NotLoose(oid)
        try:
            return {name.decode("utf-8", "surrogateescape"): (mode, entry)
                    for mode, name, entry in tree_entries(body)}
        except ValueError:
            raise RepoError(f"vault tree {oid} is damaged (an entry cannot be read)",
                            hint=_DAMAGED_HINT) from None

    # Writing -------------------------------------------------------------------------------

    def write_blob(self, data: bytes) -> str:
        """Store bytes as a blob (no-op when already there and whole); return its id.

        libgit2 keeps an object file it finds under the id, whatever it holds: a damaged one
        (emptied, truncated) failed every later sync that wrote the same content ("invalid
        object specified"), or was committed as it was. It is replaced here, atomically."""
        import pygit2

        oid = self.hash_blob(data)
        try:
            if self._loose_state(oid) == "damaged":
                self._replace_loose(oid, b"blob", data)
                return oid
            return str(self._repo.create_blob(data))
        except (pygit2.GitError, OSError) as exc:  # libgit2 reports ENOSPC/EROFS as OSError
            raise self._write_error(exc, len(data)) from None

    def _loose_state(self, oid: str) -> str:
        """"missing" (no loose file: packed, or not there), "intact" (inflates whole, its
        header right, hashing to its id) or "damaged"."""
        import hashlib

        try:
            raw = (self.path / "objects" / oid[:2] / oid[2:]).read_bytes()
        except FileNotFoundError:
            return "missing"
        except OSError:
            return "damaged"
        try:
            whole = zlib.decompress(raw)
        except zlib.error:
            return "damaged"
        nul = whole.find(b"\0", 0, 32)
        kind, _, size = whole[:max(nul, 0)].partition(b" ")
        if nul < 0 or kind not in (b"blob", b"tree", b"commit", b"tag") \
                or size != str(len(whole) - nul - 1).encode() \
                or hashlib.sha1(whole).hexdigest() != oid:
            return "damaged"
        return "intact"

    def _replace_loose(self, oid: str, kind: bytes, data: bytes) -> None:
        """Write a loose object anew over a damaged file of that id: a temp file in the
        objects folder (named as libgit2 names its own, so that a sync cleans up one a crash
        left), fsync, os.replace. Read-only, as git leaves object files."""
        import tempfile

        objects = self.path / "objects"
        (objects / oid[:2]).mkdir(mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="tmp_object_git2_", dir=objects)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(zlib.compress(kind + b" " + str(len(data)).encode() + b"\0" + data))
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o444)
            os.replace(tmp, objects / oid[:2] / oid[2:])
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def _write_error(self, exc: BaseException, size: int = 0) -> RepoError:
        """One clear line for a failed write; libgit2 sometimes loses the errno of a full disk."""
        import shutil

        try:
            free = shutil.disk_usage(self.path).free
        except OSError:
            free = None
        if free is not None and free < size + 1024**2:
            return RepoError(f"cannot write to the vault: No space left on device "
                             f"({free / 1024**2:.1f} MiB free, {size / 1024**2:.1f} MiB needed)",
                             hint="free space on the vault's disk; nothing was committed")
        return RepoError(f"cannot write to the vault: {one_line_reason(exc)}",
                         hint="check free space and permissions of the vault folder")

    @staticmethod
    def hash_blob(data: bytes) -> str:
        """The blob id bytes would get, without writing anything."""
        import pygit2
        return str(pygit2.hash(data))

    def commit(self, parent: str | None, changes: Mapping[str, tuple[str, int] | None],
               message: str, when: datetime, host: str) -> str:
        """Write a commit of parent's tree with changes applied, then move the branch to it."""
        import pygit2

        # (a damaged HEAD or packed-refs fails the ref update, the last step: refuse first)
        self.check_refs()
        if parent is None and self.head_id() is None:
            # A first commit: never into a project's repository whose other refs vault did
            # not make (its origin would get it on the next push). Callers refuse such a
            # repository before writing anything; this is the last guard.
            self._refuse_foreign_refs()
        try:
            base = self._commit(parent).tree_id if parent is not None else None
            if base is not None:
                # (tree_id, not tree: libgit2 would read it, and loops forever inflating a
                # truncated loose object; _check_loose looks first)
                self._check_loose(str(base))
                if not self.has_object(str(base)):
                    raise RepoError(f"the tree of vault commit {str(parent)[:10]} is missing",
                                    hint="`vault doctor --repair` re-clones the vault from its "
                                         "remote")
        except (KeyError, ValueError, pygit2.GitError) as exc:
            raise RepoError(f"the tree of vault commit {str(parent)[:10]} is missing or "
                            f"damaged: {one_line_reason(exc)}",
                            hint="`vault doctor` checks the vault; `vault doctor --repair` "
                                 "re-clones it from its remote") from None
        try:
            tree = self._update_tree(base, changes, root=True)
            if tree is None:  # pragma: no cover - the root is always written
                raise RepoError("internal error: no root tree")
            stamp = int(when.astimezone(timezone.utc).timestamp())
            sig = pygit2.Signature(AUTHOR_NAME, f"vault@{host}", stamp, 0)
            # The committer time (what `vault log` shows and `--at` goes by) is never before
            # the parent's, as on a replay: a clock set back between two syncs must not make a
            # moment resolve to a tree synced after it. The author time stays the clock's.
            latest = max(stamp, self._commit(parent).commit_time) if parent else stamp
            committer = sig if latest == stamp else pygit2.Signature(
                AUTHOR_NAME, f"vault@{host}", latest, 0)
            parents = [pygit2.Oid(hex=parent)] if parent else []
            oid = self._written(lambda: self._repo.create_commit(None, sig, committer, message,
                                                                 tree, parents))
        except (pygit2.GitError, OSError) as exc:
            if isinstance(exc, pygit2.GitError) and "Unable to read tree" in str(exc):
                raise RepoError(f"a tree of vault commit {str(parent)[:10]} is missing or "
                                f"damaged: {one_line_reason(exc)}",
                                hint="`vault doctor --repair` re-clones the vault from its "
                                     "remote") from None
            raise self._write_error(exc) from None
        # Objects must be on disk before the ref that makes them reachable.
        sync_filesystem(self.path)
        self._move_branch(parent, str(oid), message.splitlines()[0])
        return str(oid)

    def verify(self, tip: str | None = None) -> tuple[int, list[str]]:
        """Read and re-hash every object reachable from tip (default: the branch), as git fsck
        checks them."""
        import hashlib

        import pygit2

        head = tip or self.head_id()
        if head is None:
            return 0, []
        names = {1: b"commit", 2: b"tree", 3: b"blob", 4: b"tag"}
        seen: set[str] = set()
        problems: list[str] = []
        stack: list[tuple[str, str, str]] = [(head, "commit", "the branch tip")]
        while stack:
            oid, kind, where = stack.pop()
            if oid in seen:
                continue
            seen.add(oid)
            try:
                self._check_loose(oid)
                otype, data = self._repo.odb.read(pygit2.Oid(hex=oid))[:2]
            except (KeyError, ValueError, pygit2.GitError) as exc:
                problems.append(f"{kind} {oid[:10]} ({where}) is missing or unreadable: "
                                f"{str(exc).splitlines()[0] if str(exc) else 'damaged'}")
                continue
            header = names.get(otype, b"?") + b" " + str(len(data)).encode() + b"\0"
            if hashlib.sha1(header + data).hexdigest() != oid:
                problems.append(f"{kind} {oid[:10]} ({where}) is damaged: its content does not "
                                "match its id")
                continue
            if otype == 1:
                commit = self._repo[oid]
                assert isinstance(commit, pygit2.Commit)
                stack.append((str(commit.tree_id), "tree", f"commit {oid[:10]}"))
                stack.extend((str(p), "commit", f"parent of {oid[:10]}")
                             for p in commit.parent_ids)
            elif otype == 2:
                tree = self._repo[oid]
                assert isinstance(tree, pygit2.Tree)
                for entry in tree:
                    if entry.filemode == pygit2.enums.FileMode.COMMIT:
                        continue  # a submodule link points outside this repository
                    kind = "tree" if entry.filemode == pygit2.enums.FileMode.TREE else "blob"
                    stack.append((str(entry.id), kind, f"{where}: {entry.name}"))
        return len(seen), problems

    # Refs and history for pushing -----------------------------------------------------------

    def ref_id(self, name: str) -> str | None:
        """The commit a ref points at (loose ref file first, libgit2 otherwise), or None."""
        try:
            text = (self.path / name).read_text(encoding="ascii").strip()
            if is_id(text):
                return text
        except (OSError, UnicodeDecodeError):
            pass
        import pygit2

        try:
            ref = self._repo.references.get(name)
        except pygit2.GitError:
            return None
        return str(ref.target) if ref is not None else None

    def set_ref(self, name: str, oid: str, reason: str) -> None:
        """Point a ref (e.g. the remote-tracking one) at a commit."""
        import pygit2

        if not oid:
            return
        self._repo.create_reference_direct(name, pygit2.Oid(hex=oid), True, message=reason)

    def delete_ref(self, name: str) -> None:
        """Remove a ref if it exists."""
        ref = self._repo.references.get(name)
        if ref is not None:
            ref.delete()

    def merge_base(self, a: str, b: str) -> str | None:
        """The best common ancestor of two commits (read checked: see _paint)."""
        _flags, _infos, bases = self._paint(a, b)
        return bases[0] if bases else None

    def count_ahead(self, tracking: str) -> int:
        """Commits on the branch that the tracking ref does not have (all of them without one)."""
        head = self.head_id()
        if head is None:
            return 0
        upstream = self.ref_id(tracking)
        if upstream is None:
            return sum(1 for _ in self.walk(head))
        flags, _infos, _bases = self._paint(head, upstream)
        return sum(1 for f in flags.values() if f & (_ONE | _TWO) == _ONE)

    def move_branch(self, expected: str | None, new: str, reason: str) -> None:
        """Point the branch at new if it still points at expected (compare-and-swap)."""
        self._move_branch(expected, new, reason)

    def hosts_since(self, base: str | None, tip: str) -> list[str | None]:
        """The Vault-Host of each commit reachable from tip but not from base (None: a commit
        vault did not make), newest first."""
        if base is None:
            return [vault_host(info.message) for info in self.walk(tip)]
        flags, infos, _bases = self._paint(tip, base)
        only = sorted((info for oid, info in infos.items() if flags[oid] & (_ONE | _TWO) == _ONE),
                      key=lambda info: -info.time.timestamp())
        return [vault_host(info.message) for info in only]

    def _paint(self, one: str, two: str) -> tuple[dict[str, int], dict[str, CommitInfo],
                                                   list[str]]:
        """git's paint-down-to-common (libgit2's mark_parents) over checked reads: each
        commit's flags (_ONE: reachable from one, _TWO: from two), the commits read, and the
        merge bases, best first.

        libgit2's merge_base, ahead_behind and walker read the commits unchecked, and looped
        forever on a truncated one (libgit2#7342). Commits are taken newest first by committer
        time, until every commit still queued is reachable from both (stale)."""
        import heapq

        infos: dict[str, CommitInfo] = {}
        flags: dict[str, int] = {}
        queue: list[tuple[float, int, str]] = []
        roots: list[str] = []
        bases: list[str] = []

        def push(oid: str, mark: int) -> None:
            info = infos.get(oid)
            if info is None:
                info = infos[oid] = self._read_info(oid)
            flags[oid] = flags.get(oid, 0) | mark
            heapq.heappush(queue, (-info.time.timestamp(), len(infos) + len(queue), oid))

        push(one, _ONE)
        push(two, _TWO)
        while any(not flags[oid] & _STALE for _t, _n, oid in queue) or any(
                not flags[oid] & _STALE for oid in roots):
            if not queue:
                break
            oid = heapq.heappop(queue)[2]
            mark = flags[oid] & (_ONE | _TWO | _STALE)
            if mark == _ONE | _TWO:
                if oid not in bases:
                    bases.append(oid)
                mark |= _STALE  # (what is below a merge base is no better a base)
            parents = infos[oid].parents
            for parent in parents:
                if flags.get(parent, 0) & mark != mark:
                    push(parent, mark)
            if not parents:
                roots.append(oid)
        return flags, infos, bases

    def replay_onto(self, base: str | None, local: str, onto: str, host: str,
                    now: datetime) -> int:
        """Re-make this host's commits since base on top of onto, taking only the host's folder.

        With one folder per host the trees never conflict: each new commit is onto's tree with
        this host's folder as the original commit had it. Messages and authors (the sync's time)
        are kept; the committer time is now, and never before its parent's: the branch's line
        of history then stays in time order, so a moment (`restore --at`) never resolves to a
        commit whose tree holds what other hosts synced after it. The branch moves to the new
        tip only if it still points at local.
        """
        import pygit2

        chain = self._replay_chain(base, local)
        parent = self._commit(onto)
        for original in reversed(chain):
            self._check_loose(str(parent.tree_id))
            self._check_loose(str(original.tree_id))
            builder = self._repo.TreeBuilder(parent.tree)
            if host in original.tree:
                builder.insert(host, original.tree[host].id, pygit2.enums.FileMode.TREE)
            elif builder.get(host) is not None:
                builder.remove(host)
            when = max(int(now.timestamp()), parent.commit_time)
            committer = pygit2.Signature(original.committer.name, original.committer.email,
                                         when, 0)
            tree = self._written(builder.write)
            oid = self._written(lambda: self._repo.create_commit(
                None, original.author, committer, original.message, tree, [parent.id]))
            parent = self._commit(str(oid))
        sync_filesystem(self.path)
        self._move_branch(local, str(parent.id), f"vault: replayed {len(chain)} commit(s) on "
                                                 "top of the remote")
        return len(chain)

    def _replay_chain(self, base: str | None, local: str) -> list[pygit2.Commit]:
        """The commits replay_onto re-makes: local's first-parent line down to base, newest
        first."""
        chain: list[pygit2.Commit] = []
        commit: pygit2.Commit | None = self._commit(local)
        while commit is not None and str(commit.id) != base:
            chain.append(commit)
            # (_commit checks each one: commit.parents read them unchecked, libgit2#7342)
            commit = self._commit(str(commit.parent_ids[0])) if commit.parent_ids else None
        return chain

    def outside_host(self, base: str | None, local: str, host: str) -> tuple[str, str] | None:
        """A commit replay_onto would re-make, and a path it changes outside the host's folder
        (None when every one changes only `<host>/`): a replay takes only that folder, so what
        such a commit did elsewhere (a commit made by hand, or one made under another [vault]
        layout or host) would be lost."""
        for commit in reversed(self._replay_chain(base, local)):
            outside = sorted(path for path in self.changed_paths(str(commit.id))
                             if not path.startswith(host + "/"))
            if outside:
                return str(commit.id), outside[0]
        return None

    def _update_tree(self, base: pygit2.Oid | None,
                     changes: Mapping[str, tuple[str, int] | None], *,
                     root: bool = False, prefix: str = "") -> pygit2.Oid | None:
        """Write the trees of the changed folders only (bottom-up); None for an emptied folder."""
        import pygit2

        if base is not None:
            self._check_loose(str(base))
        builder = self._repo.TreeBuilder(base) if base is not None else self._repo.TreeBuilder()
        here: dict[str, tuple[str, int] | None] = {}
        below: dict[str, dict[str, tuple[str, int] | None]] = {}
        for path, value in changes.items():
            name, _, rest = path.partition("/")
            if rest:
                below.setdefault(name, {})[rest] = value
            else:
                here[name] = value
        # Deletions first, so a file replaced by a folder (or the reverse) works in one pass.
        # A change names a file: its deletion never removes a folder of that name, and the
        # deletions below a folder never remove a file standing where the folder was.
        for name, value in here.items():
            existing = builder.get(name) if value is None else None
            if existing is not None and not isinstance(existing, pygit2.Tree):
                builder.remove(name)
        for name, sub in below.items():
            existing = builder.get(name)
            is_tree = isinstance(existing, pygit2.Tree)
            new_sub = self._update_tree(existing.id if is_tree else None, sub,
                                        prefix=f"{prefix}{name}/")
            if new_sub is None:
                if is_tree:
                    builder.remove(name)
            elif existing is not None and not is_tree:
                raise _clash(prefix + name, "a file the vault keeps stands where these files' "
                             "folder would go")
            else:
                _insert(builder, name, new_sub, pygit2.enums.FileMode.TREE, prefix)
        for name, value in here.items():
            if value is not None:
                if isinstance(builder.get(name), pygit2.Tree):
                    raise _clash(prefix + name, "a folder whose files the vault keeps stands "
                                 "where this file would go")
                _insert(builder, name, pygit2.Oid(hex=value[0]), pygit2.enums.FileMode(value[1]),
                        prefix)
        if not root and len(builder) == 0:
            return None
        return self._written(builder.write)

    def _written(self, write: Callable[[], pygit2.Oid]) -> pygit2.Oid:
        """write() an object through libgit2, then make sure its loose file is whole: libgit2
        keeps a file it finds under the id (it only touches it), so an object damaged on disk
        stays damaged when the same content is written again. A damaged one goes, and is
        written anew (its id proves the new bytes right)."""
        oid = write()
        if self._loose_state(str(oid)) == "damaged":
            try:
                (self.path / "objects" / str(oid)[:2] / str(oid)[2:]).unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise self._write_error(exc) from None
            oid = write()
        return oid

    def _move_branch(self, expected: str | None, new: str, reason: str) -> None:
        """Point the branch at new, but only if it still points at expected.

        Callers hold the sync lock, so no other vault process can be updating the ref: a
        `<ref>.lock` file found now was left by a killed process (libgit2 creates it, writes
        and renames it), and it goes, or every later sync would fail.
        """
        import pygit2

        for stale in (self.path / f"{self.ref_name}.lock", self.path / "packed-refs.lock"):
            try:
                stale.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                self._refuse_conflicting_ref()  # (a file where a folder of the name is)
                raise RepoError(f"cannot remove the stale lock {stale}: {exc.strerror}") from None
        try:
            ref = self._repo.references.get(self.ref_name)
            current = str(ref.target) if ref is not None else None
            if current != expected:
                raise RepoError(f"branch {self.branch} moved during the sync "
                                f"({expected} -> {current}); nothing was changed")
            if ref is None:
                self._repo.create_reference_direct(self.ref_name, pygit2.Oid(hex=new), False,
                                                   message=reason)
            else:
                ref.set_target(pygit2.Oid(hex=new), reason)
        except (pygit2.GitError, OSError) as exc:
            self._refuse_conflicting_ref()
            raise RepoError(f"cannot update branch {self.branch}: {one_line_reason(exc)}") from None
        sync_filesystem(self.path)

    def _refuse_conflicting_ref(self) -> None:
        """RepoError naming the branch that keeps this one from being made: git cannot have
        both `main` and `main/sub` (one would be a file where the other needs a folder)."""
        try:
            names = list(self._repo.references)
        except Exception:  # noqa: BLE001 - the caller reports its own error then
            return
        ours = self.ref_name
        other = next((n for n in names if n.startswith(ours + "/") or ours.startswith(n + "/")),
                     None)
        if other is not None:
            theirs = other.removeprefix("refs/heads/")
            raise RepoError(f"branch {self.branch} cannot be made in this vault: it has a "
                            f"{'branch' if other != theirs else 'ref'} {theirs}, and git cannot "
                            f"have both",
                            hint="set [vault] branch to a name that is not inside the other (or "
                                 f"rename that one: git -C {self.path} branch -m {theirs} NEW)")

    def _full_id(self, text: str) -> str:
        """The full id of a unique prefix (so that _check_loose can look at the object before
        libgit2 reads it); text as it is otherwise (libgit2 then says missing or ambiguous
        without reading any object)."""
        lowered = text.lower()
        if len(text) == 40 or not (4 <= len(text) < 40 and set(lowered) <= HEX):
            return text
        found = self._ids_with_prefix(lowered)
        return found[0] if len(found) == 1 else text

    def _check_loose(self, oid: str) -> None:
        """Refuse a damaged loose object before libgit2 reads it.

        libgit2 up to 1.9.7 (pygit2 1.21.0) loops forever inflating a truncated loose object
        (libgit2#7342): the sync would hang holding the lock, and every later sync exit 11.
        """
        path = self.path / "objects" / oid[:2] / oid[2:]
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return  # packed, or missing: libgit2 reports a missing object itself
        except OSError as exc:
            raise RepoError(f"vault object {oid} cannot be read: {exc.strerror}") from None
        inflater = zlib.decompressobj()
        try:
            inflater.decompress(raw)
            whole = inflater.eof
        except zlib.error:
            whole = False
        if not whole:
            raise RepoError(f"vault object {oid} is damaged (truncated or not a zlib stream)",
                            hint="`vault doctor` checks the vault; `vault doctor --repair` "
                                 "re-clones it from its remote")

    def _check_trees(self, root: str) -> None:
        """_check_loose every loose tree under root, reading them with zlib (not libgit2)."""
        stack, seen = [root], set()
        while stack:
            oid = stack.pop()
            if oid in seen:
                continue
            seen.add(oid)
            self._check_loose(oid)
            try:
                data = zlib.decompress((self.path / "objects" / oid[:2] / oid[2:]).read_bytes())
            except OSError:
                continue  # packed or missing: left to libgit2
            body = data[data.index(b"\0") + 1:]
            i = 0
            while i < len(body):  # entries: b"<mode> <name>\0<20-byte id>"
                nul = body.index(b"\0", i)
                if body[i:body.index(b" ", i)] == b"40000":
                    stack.append(body[nul + 1:nul + 21].hex())
                i = nul + 21

    def _commit(self, commit_id: str) -> pygit2.Commit:
        import pygit2

        commit_id = self._full_id(commit_id)
        if len(commit_id) == 40:
            self._check_loose(commit_id)
        try:
            obj = self._repo[commit_id]
        except KeyError:
            raise RepoError(f"vault commit {commit_id} is missing",
                            hint="`vault doctor --repair` re-clones the vault from its "
                                 "remote") from None
        except (ValueError, pygit2.GitError) as exc:
            raise RepoError(f"vault commit {commit_id} is missing or damaged: {exc}") from None
        if not isinstance(obj, pygit2.Commit):
            raise RepoError(f"{commit_id} is not a commit")
        return obj


_ONE, _TWO, _STALE = 1, 2, 4  # _paint's flags


class _NotLoose(Exception):
    """An object that is not a loose object of the vault (packed, or missing)."""


class _Unresolved(Exception):
    """A revision that names no commit of the vault."""


_DAMAGED_HINT = ("`vault doctor` checks the vault; `vault doctor --repair` re-clones it from its "
                 "remote")


def _insert(builder: pygit2.TreeBuilder, name: str, oid: pygit2.Oid, mode: int,
            prefix: str) -> None:
    """Add one entry to a tree; a name git cannot hold is named as such, not as a disk error."""
    import pygit2

    try:
        builder.insert(name, oid, mode)
    except ValueError:  # a NUL, or a name that is not UTF-8 (surrogate escapes)
        raise _refused(prefix + name, "not a name git can store") from None
    except pygit2.GitError as exc:
        if "invalid object" in str(exc):  # (libgit2 reads the header of what goes in)
            raise RepoError(f"vault object {oid} ({prefix + name}) is missing or damaged; "
                            "nothing was committed", hint=_DAMAGED_HINT) from None
        if "invalid name" not in str(exc):
            raise
        raise _refused(prefix + name, "git refuses it in a tree") from None


DESCRIPTION = "memory-vault: agent memory kept by vault\n"


def _described_as_vault(path: Path) -> bool:
    return _read_text(path / "description") == DESCRIPTION


def is_id(text: str) -> bool:
    """A full object id as git writes it in refs (40 lower-case hex digits)."""
    return len(text) == 40 and set(text) <= HEX


def reflog_tip(path: Path, ref: str) -> str | None:
    """The id the last line of a ref's reflog moved it to; None without one (or when that
    line deleted the ref)."""
    lines = _read_text(path / "logs" / ref).splitlines()
    words = lines[-1].split() if lines else []
    tip = words[1] if len(words) > 1 else ""
    return tip if is_id(tip) and set(tip) != {"0"} else None


def read_packed_refs(path: Path) -> list[tuple[str, bool]]:
    """Each line of a repository's packed-refs (none when it has none), and whether git can
    read it: the header, `<id> <ref>`, or `^<id>` (the peeled id of the tag above)."""
    try:
        raw = (path / "packed-refs").read_bytes()
    except OSError:
        return []
    lines = raw.decode("utf-8", errors="replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    judged = []
    for n, line in enumerate(lines):
        words = line.split(" ")
        if n == 0 and line.startswith("# pack-refs with:"):
            ok = True
        elif line.startswith("^"):
            ok = len(line) == 41 and set(line[1:]) <= HEX and n > 0
        else:
            ok = len(words) == 2 and is_id(words[0]) and words[1].startswith("refs/")
        judged.append((line, ok))
    return judged


def _clash(path: str, why: str) -> RepoError:
    """A change the tree cannot take without dropping what the vault keeps (sync holds such
    files back first: reaching this is a bug, stopped before anything is lost)."""
    return RepoError(f"cannot store {path}: {why}; nothing was committed",
                     hint="please report this; the vault is intact")


def _refused(path: str, why: str) -> RepoError:
    return RepoError(f"the vault refuses the file name {path!r}: {why}; nothing was committed",
                     hint="rename the file, or exclude it in the source's patterns")


def _walk_tree(tree: pygit2.Tree, prefix: str) -> Iterator[tuple[str, tuple[str, int]]]:
    import pygit2

    for entry in tree:
        path = prefix + str(entry.name)
        if isinstance(entry, pygit2.Tree):
            yield from _walk_tree(entry, path + "/")
        else:
            yield path, (str(entry.id), int(entry.filemode))


def _info(commit: pygit2.Commit) -> CommitInfo:
    message = commit.message
    return CommitInfo(id=str(commit.id),
                      time=datetime.fromtimestamp(commit.commit_time, timezone.utc),
                      summary=message.split("\n", 1)[0], message=message,
                      parents=tuple(str(p) for p in commit.parent_ids))

"""Push the vault to its remote through the user's own git (GitPython): never a force-push."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from vault.config import Config
from vault.errors import VaultError, one_line_reason
from vault.repo import VaultRepo

REMOTE = "origin"
ATTEMPTS = 5  # fetch, replay and push again when another host pushed in between
NETWORK_TIMEOUT = 120  # seconds for one fetch or push
URL_SECRET = re.compile(r"(://)[^/@\s]+@")


UP_TO_DATE = "up to date with the remote"  # PushResult.message when the remote had it all


@dataclass(frozen=True)
class PushResult:
    """What a push did: pushed or not, what is still only local, commits replayed on top."""

    pushed: bool
    unpushed: int
    replayed: int = 0
    message: str = ""
    # The remote answered and said no (a rejected push, no access, commits vault cannot put its
    # own on top of): the next sync will not fix it, someone must. Offline is not refused.
    refused: bool = False


class RemoteError(VaultError):
    """The remote could not be set up (the vault itself is fine)."""


def clean(text: str) -> str:
    """A git message without credentials embedded in URLs, on one line."""
    text = URL_SECRET.sub(r"\1***@", text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    useful = [line for line in lines if line.startswith(("fatal:", "error:", "remote:", "!"))]
    return (useful or lines or ["unknown error"])[-1][:300]


def clean_url(url: str) -> str:
    """A remote URL without embedded credentials."""
    return URL_SECRET.sub(r"\1***@", url)


def remote_url(config: Config) -> str | None:
    """[vault] remote, else the vault repository's own origin (as `vault init --github` sets)."""
    if config.vault.remote:
        return config.vault.remote
    return origin_url(config.vault.path)


def origin_url(vault_path: Path) -> str | None:
    """The origin URL recorded in the vault repository's config file (read without git)."""
    import pygit2

    # libgit2 reads the value as git does: git writes a URL holding '#' or ';' quoted, with
    # backslash escapes, and a hand parser returned the quotes too (so the remote never
    # matched [vault] remote). About 20 µs, on the sync path with no git program at all.
    try:
        return str(pygit2.Config(str(vault_path / "config"))[f"remote.{REMOTE}.url"])
    except (KeyError, OSError, ValueError, pygit2.GitError):
        return None  # (no origin, no vault there, or a config git cannot read either)


def set_remote(repo: VaultRepo, url: str) -> None:
    """Point the vault's origin at url (created or updated); a new URL forgets what the old
    remote held, so the next sync pushes everything to the new one."""
    import pygit2

    if origin_url(repo.path) != url:
        # The tracking ref says what the *old* remote held: kept, the new remote would pass
        # for up to date until some later sync makes a commit (a failed fetch, or `init
        # --github`, which never fetches, leaves it in place). Dropped first, so that a kill
        # between the two steps costs at most a fetch, never a remote believed up to date.
        repo.delete_ref(tracking_ref(repo.branch))
    # libgit2 writes the config as `git remote add/set-url` would (the same default fetch
    # refspec, quoting), and needs no git program: `init --github` works where none is on PATH.
    try:
        remotes = pygit2.Repository(str(repo.path)).remotes
        if REMOTE in remotes.names():
            remotes.set_url(REMOTE, url)
        else:
            remotes.create(REMOTE, url)
    except (OSError, ValueError, pygit2.GitError) as exc:
        raise RemoteError(f"cannot set the vault's remote: {clean(str(exc))}") from None


def require_git() -> None:
    """Raise RemoteError when GitPython cannot run git (cron's PATH, /usr/bin:/bin, often has
    none: git in /usr/local/bin or /opt/homebrew/bin)."""
    try:
        import git  # noqa: F401 - GitPython looks for the git program when it is imported
    except ImportError as exc:
        raise RemoteError(_no_git(exc)) from None


def _no_git(exc: ImportError) -> str:
    if "git executable" not in str(exc).lower():
        return f"cannot load GitPython: {one_line_reason(exc)}"
    named = os.environ.get("GIT_PYTHON_GIT_EXECUTABLE")
    if named:
        return f"GIT_PYTHON_GIT_EXECUTABLE={named} is not a git program that runs"
    path = os.environ.get("PATH", "")
    return (f"no git program on PATH ({path[:200] or 'empty'}): put git's folder on PATH "
            "(a crontab can set PATH) or set GIT_PYTHON_GIT_EXECUTABLE")


def tracking_ref(branch: str) -> str:
    """The ref that records what the remote's branch held at the last fetch or push."""
    return f"refs/remotes/{REMOTE}/{branch}"


def nothing_to_push(config: Config, repo: VaultRepo) -> bool:
    """True when the branch equals what the remote had at the last fetch or push (no network).

    A remote that [vault] remote now names for the first time has had nothing pushed to it:
    what the tracking ref says is about the old one.
    """
    head = repo.head_id()
    if head is None:
        return True
    if _new_remote(config, repo):
        return False
    return head == repo.ref_id(tracking_ref(repo.branch))


def unpushed(config: Config, repo: VaultRepo) -> int:
    """Commits the remote lacks, as far as the last fetch or push knows (no network): all of
    them for a [vault] remote no sync has pointed the vault at yet."""
    if _new_remote(config, repo):
        return sum(1 for _ in repo.walk()) if repo.head_id() is not None else 0
    return repo.count_ahead(tracking_ref(repo.branch))


def _new_remote(config: Config, repo: VaultRepo) -> bool:
    # (the next push points origin at it, and forgets the old remote's tracking ref)
    return bool(config.vault.remote) and origin_url(repo.path) != config.vault.remote


# git's words for a remote that answered and said no, as opposed to one that could not be
# reached: retrying at the next sync will not help, someone has to act. (A path that is not a
# repository stays "offline": often a disk or share that is not mounted right now.)
_REFUSALS = ("[remote rejected]", "permission denied", "authentication failed",
             "could not read username", "could not read password", "repository not found",
             "access denied", "returned error: 403", "returned error: 401",
             "host key verification failed", "denied to", "read only", "read-only",
             "not allowed to push")


# An HTTP 404 from any host but github.com (GitLab, Gitea, a typo in the URL): git says
# "fatal: repository 'https://host/x.git/' not found", without GitHub's "Repository not found".
_NO_SUCH_REPOSITORY = re.compile(r"repository '[^'\n]*' not found")


# ... except a ref another push was updating at the same moment: a race, the next try wins
_RACES = ("cannot lock ref", "failed to update ref", "incorrect old value")


def _refused(text: str) -> bool:
    lowered = text.lower()
    return (any(word in lowered for word in _REFUSALS)
            or _NO_SUCH_REPOSITORY.search(lowered) is not None) \
        and not any(word in lowered for word in _RACES)


def _reason(text: str) -> str:
    """Why git failed, on one line: the rejected ref's reason and what the remote said."""
    # (GitPython quotes git's stderr: its first line comes as "stderr: 'remote: ...")
    lines = [line.strip().removeprefix("stderr: '").rstrip("' ") for line in text.splitlines()]
    said = [line for line in lines if line.startswith("remote:") and line != "remote:"]
    rejected = [line for line in lines if line.startswith("! [remote rejected]")]
    if rejected:
        parts = [rejected[-1].lstrip("! ")] + said[-2:]
        return clean(" ".join(parts))
    return clean(text)


def push(config: Config, repo: VaultRepo, now: datetime | None = None) -> PushResult:
    """Fetch, put local commits on top of the remote branch if another host moved it, push.

    now: the committer time of commits replayed on top of other hosts' (default: the clock).
    """
    url = remote_url(config)
    if url is None:
        raise RemoteError("no remote configured", hint="set [vault] remote or use init --github")
    if _new_remote(config, repo):
        set_remote(repo, config.vault.remote)  # (the fetch below resets the tracking ref)
    try:
        require_git()
    except RemoteError as exc:
        # Not "offline": the next sync, from the same cron entry, finds no git either, so it
        # fails as a refused push does (exit 1, failures.log, an alert).
        return PushResult(False, repo.count_ahead(tracking_ref(repo.branch)),
                          message=exc.message, refused=True)
    import git

    env = {"GIT_TERMINAL_PROMPT": "0"}  # cron has no one to type a password
    if "GIT_SSH_COMMAND" not in os.environ:
        env["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes"
    grepo = git.Repo(str(repo.path))
    branch, tracking = repo.branch, tracking_ref(repo.branch)
    replayed = 0
    for _ in range(ATTEMPTS):
        try:
            with grepo.git.custom_environment(**env):
                grepo.git.fetch(REMOTE, f"+refs/heads/{branch}:{tracking}",
                                kill_after_timeout=NETWORK_TIMEOUT)
        except git.GitCommandError as exc:
            if "couldn't find remote ref" not in str(exc):
                text = str(exc)
                if _refused(text):
                    return PushResult(False, repo.count_ahead(tracking), replayed,
                                      f"the remote refused: {clean(text)}", refused=True)
                return PushResult(False, repo.count_ahead(tracking), replayed,
                                  f"offline: {clean(text)}")
            repo.delete_ref(tracking)  # the remote branch does not exist yet: first push
        local, remote = repo.head_id(), repo.ref_id(tracking)
        if local is None:
            return PushResult(False, 0, message="nothing to push yet")
        if remote == local:  # (a bare clone has no tracking ref until this fetch: all there)
            return PushResult(True, 0, replayed, UP_TO_DATE)
        if remote is not None:
            base = repo.merge_base(local, remote)
            if base == local:  # only the remote moved: take its commits
                # ... if they are other hosts' own folders: with the default layout any other
                # writer, or one under this [vault] host, writes this machine's own files, and
                # taking its version here would have each sync overwrite the other's.
                refusal = _cannot_replay(config, repo, local, remote)
                if refusal:
                    return PushResult(False, repo.count_ahead(tracking), replayed, refusal,
                                      refused=True)
                repo.move_branch(local, remote, "vault: fast-forward to the remote")
                return PushResult(True, 0, replayed, UP_TO_DATE)
            if base != remote:  # both moved
                refusal = (_cannot_replay(config, repo, base, remote)
                           or _cannot_take_only_host(config, repo, base, local))
                if refusal:
                    return PushResult(False, repo.count_ahead(tracking), replayed, refusal,
                                      refused=True)
                replayed += repo.replay_onto(base, local, remote, config.vault.host,
                                             now or datetime.now(timezone.utc))
        try:
            with grepo.git.custom_environment(**env):
                grepo.git.push(REMOTE, f"refs/heads/{branch}:refs/heads/{branch}",
                               kill_after_timeout=NETWORK_TIMEOUT)
        except git.GitCommandError as exc:
            text = str(exc)
            if _refused(text):
                return PushResult(False, repo.count_ahead(tracking), replayed,
                                  f"the remote refused the push: {_reason(text)}", refused=True)
            if "rejected" in text or "fetch first" in text or "non-fast-forward" in text:
                continue  # another host pushed in between: fetch and replay again
            return PushResult(False, repo.count_ahead(tracking), replayed,
                              f"push failed: {clean(text)}")
        repo.set_ref(tracking, repo.head_id() or "", "vault: pushed")
        return PushResult(True, 0, replayed, "pushed")
    return PushResult(False, repo.count_ahead(tracking), replayed,
                      f"the remote kept moving; gave up after {ATTEMPTS} attempts")


def _cannot_replay(config: Config, repo: VaultRepo, since: str | None, remote: str) -> str:
    """Why this vault's commits cannot go on top of the remote's new ones (those reachable
    from remote and not from since), or its branch move to them ("" when they can)."""
    theirs = repo.hosts_since(since, remote)
    # Commits vault did not make: with the default layout vault cannot tell whose files they
    # change; with a host layout they are fine on top of a vault's history (a commit made by
    # hand: a replay takes only this host's folder), not as a branch vault never wrote to (a
    # README a hosting site made).
    if any(host is None for host in theirs) and (
            config.vault.layout == "{source}" or repo.last_by_vault(remote) is None):
        return ("the remote branch has commits vault did not make (a README or license "
                "made with the repository?): push to an empty repository, or remove them")
    if config.vault.layout == "{source}":
        return ("the remote branch has commits from another machine; with several machines "
                "set [vault] layout = \"{host}/{source}\" on each")
    if config.vault.host in theirs:
        return (f"the remote has commits from host '{config.vault.host}' that this vault does "
                "not have: another machine with the same [vault] host (give each its own), or "
                "this machine's vault made anew (set a new [vault] host)")
    return ""


def _cannot_take_only_host(config: Config, repo: VaultRepo, base: str | None, local: str) -> str:
    """Why this vault's own commits since base cannot be replayed ("" when they can): a replay
    keeps only each commit's `<host>/` folder, so a commit that changed anything else (made by
    hand, or before a switch of [vault] layout or host) would lose it, locally and on the
    remote. They are kept as they are; a person decides."""
    host, found = config.vault.host, repo.outside_host(base, local, config.vault.host)
    if found is None:
        return ""
    commit, path = found
    return (f"commit {commit[:10]} changes {path}, outside this host's folder {host}/ (made by "
            "hand, or under another [vault] layout or host), which a replay would drop: push it "
            "yourself (rebased in a clone of the vault) or give it up, then point the branch at "
            f"the remote's: git -C {repo.path} update-ref refs/heads/{repo.branch} "
            f"{tracking_ref(repo.branch)}")

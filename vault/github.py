"""`vault init --github`: create (or adopt) the private GitHub repository for the vault."""

from __future__ import annotations

import os
from dataclasses import dataclass

from vault.errors import UsageError, VaultError

DEFAULT_NAME = "memory-vault"
DEFAULT_API = "https://api.github.com"
TIMEOUT = 30  # seconds per GitHub request of `vault init --github`


class GitHubError(VaultError):
    """GitHub refused, or the repository is not safe to use; no token is ever in the message."""


def unreachable(exc: OSError, api: str, timeout: float) -> str:
    """One line for GitHub not answering (requests' ConnectionError and Timeout are OSErrors);
    for init --github and for alerts."""
    import requests

    if isinstance(exc, requests.exceptions.Timeout):
        return f"{api} did not answer within {timeout:g}s"
    return f"cannot reach {api}: {type(exc).__name__}"


@dataclass(frozen=True)
class GitHubRepo:
    """The repository the vault pushes to."""

    full_name: str
    url: str  # https clone URL (the user's git credential helper authenticates it)
    ssh_url: str
    created: bool


def api_url(base_url: str | None = None) -> str:
    """The GitHub API to call: base_url, else $GITHUB_API_URL, else api.github.com; a
    UsageError naming GITHUB_API_URL when that is no http(s) URL (PyGithub fails on one with
    an AttributeError or an assert, which said only "unexpected", exit 3)."""
    from urllib.parse import urlsplit

    api = base_url or os.environ.get("GITHUB_API_URL") or DEFAULT_API
    try:
        parts = urlsplit(api)
        parts.port  # noqa: B018 - raises ValueError for a port that is no number or too big
        why = ("" if parts.scheme in ("http", "https") and parts.hostname
               else "not an http(s) URL with a host")
    except ValueError as exc:
        why = str(exc)
    if why:
        raise _bad_api(api, why)
    return api


def _bad_api(api: str, why: str) -> UsageError:
    from vault.remote import clean_url

    return UsageError(f"GITHUB_API_URL {clean_url(api)!r}: {why}",
                      hint="GitHub Enterprise's is https://HOST/api/v3; unset it for github.com")


def parse_spec(spec: str) -> tuple[str, str]:
    """'OWNER/NAME' or 'OWNER' (name memory-vault) -> (owner, name)."""
    owner, _, name = spec.strip().strip("/").partition("/")
    name = name or DEFAULT_NAME
    if not owner or "/" in name or not all(c.isalnum() or c in "-_." for c in owner + name):
        raise UsageError(f"--github {spec!r}: use OWNER/NAME (or OWNER for OWNER/{DEFAULT_NAME})")
    return owner, name


def ensure_private_repo(spec: str, token_env: str = "GITHUB_TOKEN",
                        base_url: str | None = None) -> GitHubRepo:
    """Create OWNER/NAME as a private repository, or adopt it if it exists and is private."""
    from github import Auth, BadCredentialsException, Github, GithubException
    from github import UnknownObjectException

    owner, name = parse_spec(spec)
    token = os.environ.get(token_env, "")
    if not token:
        raise GitHubError(f"no GitHub token: set {token_env}",
                          hint="a token with the 'repo' scope (or fine-grained: administration)")
    api = api_url(base_url)
    try:
        gh = Github(auth=Auth.Token(token), base_url=api, retry=None, timeout=TIMEOUT)
    except (AssertionError, AttributeError, TypeError, ValueError) as exc:
        raise _bad_api(api, f"{type(exc).__name__}: {exc}") from None  # (one api_url missed)
    full = f"{owner}/{name}"
    creating = False  # (a create that got no answer may have been carried out all the same)
    try:
        login = gh.get_user().login
        try:
            repo = gh.get_repo(full)
            created = False
        except UnknownObjectException:
            creating = True
            if owner.lower() == login.lower():
                repo = gh.get_user().create_repo(
                    name, private=True, auto_init=False,
                    description="Agent memory, kept by vault (private)")
            else:
                repo = gh.get_organization(owner).create_repo(
                    name, private=True, auto_init=False,
                    description="Agent memory, kept by vault (private)")
            created = True
    except BadCredentialsException:
        raise GitHubError(f"GitHub rejected the token in {token_env}") from None
    except GithubException as exc:
        detail = exc.data.get("message") if isinstance(exc.data, dict) else ""
        raise GitHubError(f"GitHub refused ({exc.status}): {detail or 'no detail'}") from None
    except OSError as exc:
        if creating:
            raise GitHubError(f"{unreachable(exc, api, TIMEOUT)} while creating {full}: it may "
                              "have been created all the same",
                              hint="run `vault init --github` again: it takes the repository "
                                   "if it is there") from None
        raise GitHubError(f"{unreachable(exc, api, TIMEOUT)}; nothing was created",
                          hint="check the network (or GITHUB_API_URL), then run "
                               "`vault init --github` again") from None
    if not repo.private:
        raise GitHubError(f"refusing to use {full}: it is public, and agent memory is private",
                          hint="make it private on GitHub, or choose another name")
    return GitHubRepo(full_name=repo.full_name, url=repo.clone_url, ssh_url=repo.ssh_url,
                      created=created)

"""`vault secrets`: list the secrets in the sources or the vault's history; allow known ones."""

from __future__ import annotations

from typing import Any

import click

from vault.cliutil import EXIT_CODE_HELP, Abort, config_option, emit_json, json_option, \
    load_config_at


def register(group: click.Group) -> None:
    """Add the `secrets` command group to the CLI."""
    group.add_command(secrets)


@click.group(epilog=EXIT_CODE_HELP)
def secrets() -> None:
    """Find secrets before they reach the vault; values are never shown, only fingerprints."""


@secrets.command(epilog=EXIT_CODE_HELP)
@config_option
@json_option
@click.option("--history", is_flag=True,
              help="Scan every commit already in the vault instead of the sources.")
def scan(config_path: str | None, as_json: bool, history: bool) -> None:
    """List the secrets in the sources now (or in the vault's history), by fingerprint.

    Exits 1 when it finds a secret that is not allowed, or cannot read a source's folder
    (the other sources are scanned all the same).
    """
    from vault.secrets import allowed_fingerprints, scan_history, scan_sources

    config = load_config_at(config_path)
    found: list[Any]
    not_scanned: list[tuple[str, str]] = []
    failures: list[tuple[str, str]] = []
    if history:
        from vault.repo import VaultRepo

        repo = VaultRepo.open(config.vault.path, config.vault.branch)
        found = list(scan_history(repo, allow_fingerprints=allowed_fingerprints(config),
                                  allow_paths=config.secrets.allow_paths))
    else:
        scanned = scan_sources(config)
        found, not_scanned, failures = scanned.findings, scanned.not_scanned, scanned.failures
    groups = _by_fingerprint(found)
    scope = "history" if history else "sources"
    if as_json:
        emit_json({"scope": scope, "policy": config.secrets.policy, "count": len(groups),
                   "findings": [{"fingerprint": fp, "kind": kind,
                                 "locations": [_location(f) for f in items]}
                                for fp, kind, items in groups],
                   "not_scanned": [{"path": p, "reason": r} for p, r in not_scanned],
                   "failures": [{"source": s, "message": m} for s, m in failures]})
    else:
        _render(groups, scope, config.secrets.policy)
        if not_scanned:
            click.echo(f"Not scanned ({len(not_scanned)}, and not synced either until they "
                       "can be read):")
            for path, reason in not_scanned:
                click.echo(f"  {path}: {reason}")
        for _, message in failures:
            click.echo(f"Not scanned: {message}")
    if groups or failures:
        raise Abort(1)


@secrets.command(epilog=EXIT_CODE_HELP)
@config_option
@json_option
@click.argument("fingerprint")
def allow(config_path: str | None, as_json: bool, fingerprint: str) -> None:
    """Accept a FINGERPRINT (from `vault secrets scan`) as not a secret in later syncs."""
    from vault.secrets import ALLOW_FILE, allow_fingerprint

    config = load_config_at(config_path)
    added = allow_fingerprint(config, fingerprint)
    value = fingerprint.strip().lower()
    if as_json:
        emit_json({"fingerprint": value, "added": added,
                   "file": str(config.state_dir / ALLOW_FILE)})
        return
    if added:
        click.echo(f"Allowed {value}: later syncs take files holding it as they are.")
    else:
        click.echo(f"Already allowed: {value}")


def _by_fingerprint(found: list[Any]) -> list[tuple[str, str, list[Any]]]:
    """Findings grouped by fingerprint, in fingerprint order."""
    groups: dict[str, tuple[str, list[Any]]] = {}
    for finding in found:
        groups.setdefault(finding.fingerprint, (finding.kind, []))[1].append(finding)
    return [(fp, kind, items) for fp, (kind, items) in sorted(groups.items())]


def _location(finding: Any) -> dict[str, Any]:
    """Where one finding is, for --json: path and locator, and for history the commits."""
    place: dict[str, Any] = {"path": finding.path, "locator": finding.locator}
    if hasattr(finding, "first_commit"):
        place.update(first_commit=finding.first_commit, last_commit=finding.last_commit,
                     commits=finding.commits)
    return place


def _render(groups: list[tuple[str, str, list[Any]]], scope: str, policy: str) -> None:
    where = "the sources" if scope == "sources" else "the vault's history"
    if not groups:
        click.echo(f"No secrets found in {where}.")
        return
    noun = "secret" if len(groups) == 1 else "secrets"
    click.echo(f"{len(groups)} {noun} found in {where} (values are never shown):")
    for fp, kind, items in groups:
        click.echo(f"  {fp}  {kind}")
        for f in items:
            commits = ""
            if hasattr(f, "first_commit"):
                span = (f.first_commit[:10] if f.first_commit == f.last_commit
                        else f"{f.first_commit[:10]}..{f.last_commit[:10]}")
                commits = f" (commit {span}, {f.commits} in all)"
            click.echo(f"      {f.path} {f.locator}{commits}")
    if scope == "sources":
        effect = {"block": "sync leaves the new versions of these files out of the vault",
                  "redact": "sync commits these files with the values redacted",
                  "allow": "sync commits these files as they are"}.get(policy, "")
        click.echo(f"Policy {policy}: {effect}.")
    else:
        click.echo("These values are in the vault's history; rotate them.")
    click.echo("If one is not a secret: vault secrets allow FINGERPRINT")

"""The `vault` command: parse, call one library function, render text or --json, map errors."""

from __future__ import annotations

import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

import click

from vault import __version__
from vault.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_UNEXPECTED, EXIT_USAGE, VaultError

from vault.cliutil import (  # noqa: F401 - re-exported for command modules
    EXIT_CODE_HELP, Abort, config_option, emit_json, emit_json_error, json_option,
    load_config_at, one_line, print_error, shown)


class _ReaderGone(Exception):
    """The program reading vault's output stopped (`vault log | head`)."""


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        # click itself turns a broken pipe into exit 1 (after its own try): said here first.
        try:
            return super().invoke(ctx)
        except BrokenPipeError as exc:
            raise _ReaderGone() from exc

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        # `vault --help` and `--version` print while the arguments are parsed, before invoke:
        # `vault --help | head -0` exited 1 (click's own broken-pipe exit), not 0.
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except BrokenPipeError as exc:
            raise _ReaderGone() from exc


@click.group(cls=_Group, epilog=EXIT_CODE_HELP,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vault")
def cli() -> None:
    """vault: a Git-backed memory vault for AI agents.

    Sync agent memory files (Markdown, JSON, JSONL transcripts, live SQLite
    databases) into a private git repository, one timestamped commit per sync.
    """


@cli.command(epilog=EXIT_CODE_HELP)
@config_option
@json_option
@click.option("--github", "github", metavar="OWNER/NAME",
              help="Also create the private GitHub repository (default name memory-vault) and "
                   "push there; token from $GITHUB_TOKEN ([vault] token_env).")
def init(config_path: str | None, as_json: bool, github: str | None) -> None:
    """Create the vault repository (a bare git repository, private to you)."""
    from vault.repo import VaultRepo

    config = load_config_at(config_path)
    hosted = None
    made: tuple[VaultRepo, bool] | None = None
    if github:
        from vault.github import ensure_private_repo, parse_spec
        from vault.repo import remove_folders

        parse_spec(github)  # (a bad NAME is a usage error before anything is made)
        room: list[Path] = []
        if not _nothing_at(config.vault.path):
            # Something is there (a vault, a project's work tree, a file): init takes it or
            # refuses it, creating nothing, before a repository is made on GitHub for it.
            made = VaultRepo.init(config.vault.path, config.vault.branch)
        else:  # (a path that cannot be made is refused before GitHub is asked)
            room = VaultRepo.make_folder(config.vault.path)
        # (a new vault is made after GitHub answered: a failed call leaves nothing behind)
        try:
            hosted = ensure_private_repo(github, config.vault.token_env)
        except BaseException:
            remove_folders(room)
            raise
    repo, created = made or VaultRepo.init(config.vault.path, config.vault.branch)
    if hosted is not None:
        from vault.remote import set_remote

        set_remote(repo, hosted.url)
    if as_json:
        emit_json({"path": str(repo.path), "branch": repo.branch, "created": created,
                   "sources": [s.name for s in config.sources],
                   "github": None if hosted is None else {
                       "repository": hosted.full_name, "remote": hosted.url,
                       "created": hosted.created}})
        return
    verb = "Created" if created else "Already a vault:"
    click.echo(f"{verb} {repo.path} (branch {repo.branch})")
    if hosted is not None:
        click.echo(f"GitHub: {'created' if hosted.created else 'using'} private repository "
                   f"{hosted.full_name}; each sync pushes to {hosted.url}")
    if created:
        click.echo(f"Next: `vault sync` records {len(config.sources)} source(s): "
                   + ", ".join(s.name for s in config.sources))


def _work_done() -> None:
    from vault.entry import work_done

    work_done()


def _nothing_at(path: Path) -> bool:
    """Whether the vault path is free: missing, or an empty folder."""
    try:
        return not path.exists() or (path.is_dir() and not any(path.iterdir()))
    except OSError:
        return False  # (init says what is wrong with it)


@cli.command(epilog=EXIT_CODE_HELP)
@config_option
@json_option
@click.option("--dry-run", is_flag=True, help="Show what would be committed; write nothing.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing unless something fails (cron).")
@click.option("--allow-mass-delete", is_flag=True,
              help="Record a sync that deletes more than half of a source's files.")
@click.option("--source", "sources", multiple=True, metavar="NAME",
              help="Sync only this source (repeatable).")
def sync(config_path: str | None, as_json: bool, dry_run: bool, quiet: bool,
         allow_mass_delete: bool, sources: tuple[str, ...]) -> None:
    """Record every changed memory file in one timestamped commit."""
    from vault.hooks import sync_with_hooks
    from vault.sync import SyncOptions

    from vault.errors import BusyError

    from vault.cliutil import Progress

    config = load_config_at(config_path)
    try:
        with Progress("Reading changed files", not (quiet or as_json)) as bar:
            result, hooks = sync_with_hooks(config, SyncOptions(
                dry_run=dry_run, allow_mass_delete=allow_mass_delete, sources=sources,
                progress=bar.file if bar.enabled else None))
    except BusyError:
        raise  # another sync is running: normal, not a failure to report
    except VaultError as exc:
        if not dry_run:
            _report_failure(config, "sync", exc.message, as_json)
        raise
    except Exception as exc:
        if not dry_run:
            _report_unexpected(config, "sync", exc, as_json)
        raise
    _work_done()  # (an interrupt now would cut the report of a commit that is made)
    for hook in hooks:
        if hook.returncode != 0:
            click.echo(f"Warning: {hook.event} hook failed ({hook.why()}): {hook.said()}",
                       err=True)
    if as_json:
        emit_json({**sync_json(result), "hooks": [
            {"event": h.event, "returncode": h.returncode} for h in hooks]})
    elif not quiet:
        _render_sync(result)
        for rollback in result.rollbacks:
            click.echo(f"Rolled back {shown(rollback.path)}: the corrupt file is kept as "
                       f"{shown(rollback.aside)}, its last good version is back")
            if rollback.warning:
                click.echo(f"Warning: {one_line(rollback.warning)}", err=True)
        if result.push is not None:
            from vault.remote import UP_TO_DATE

            if result.push.pushed and result.push.message == UP_TO_DATE:
                click.echo("Up to date with the remote.")  # (it had the commits already)
            elif result.push.pushed:
                extra = (f" ({result.push.replayed} commit(s) replayed on top of other hosts')"
                         if result.push.replayed else "")
                click.echo(f"Pushed to the remote{extra}.")
            elif not result.push.refused:
                click.echo(f"Warning: not pushed, {result.push.unpushed} commit(s) stay local "
                           f"until the next sync: {result.push.message}", err=True)
    push = result.push
    refused = push is not None and push.refused
    if push is not None and push.refused and not dry_run:
        # (also under --quiet: the next sync will not fix it, so a person must hear of it)
        message = f"not pushed: {push.message}"
        if not as_json:
            kept = f" ({push.unpushed} commit(s) kept in the vault only)" if push.unpushed else ""
            print_error(message + kept)
        _report_failure(config, "push", message, as_json)
    if result.commit and config.index.after_sync:
        _index_after_sync(config, result.commit, as_json, quiet)
    for failure in result.failures:
        print_error(failure.message, failure.hint)
    if not result.ok:
        if not dry_run:
            if len(result.failures) == 1:
                summary = result.failures[0].message
            else:  # each in failures.log (a rollback's own reason too); one alert for all
                from vault.alerts import record_failure

                for failure in result.failures:
                    record_failure(config, "sync", failure.message)
                summary = f"{len(result.failures)} failures: {result.failures[0].message}"
            _report_failure(config, "sync", summary, as_json)
        raise Abort(1)
    if refused:
        raise Abort(1)


def _index_after_sync(config: Any, commit: str, as_json: bool, quiet: bool) -> None:
    """[index] after_sync: keep the recall index current; a failure is a warning, not a failed
    sync (the commit is made)."""
    from vault.index import index_after_sync

    try:
        done = index_after_sync(config, commit)
    except VaultError as exc:
        click.echo(f"Warning: index not updated: {exc.message}", err=True)
        return
    except Exception as exc:  # (a bug: said and logged, but the sync's commit is made)
        message = f"index not updated: {unexpected_message(exc)}"
        click.echo(f"Warning: {message}", err=True)
        _report_failure(config, "index", message, as_json)
        return
    if done is not None:
        from vault.cli_recall import index_line, index_warnings

        index_warnings(done)  # (on stderr, also under --quiet: a file not indexed whole)
        if not (quiet or as_json):
            click.echo(index_line(done))


def _report_failure(config: Any, command: str, message: str, as_json: bool) -> None:
    """failures.log gets a line; [alerts] opens or comments on a GitHub issue (rate-limited)."""
    from vault.alerts import alert, record_failure

    outcome = alert(config, record_failure(config, command, message))
    if outcome.action == "failed" and not as_json:
        click.echo(f"Warning: {outcome.message}", err=True)


def _report_unexpected(config: Any, command: str, exc: Exception, as_json: bool) -> None:
    """An error vault did not foresee (a bug, a missing program): main() says it on stderr,
    exit 3; under cron nobody reads that, so failures.log and [alerts] hear of it too."""
    from vault.entry import interrupted

    if interrupted() or (isinstance(exc, OSError) and _writing_output(exc)):
        return  # (a Ctrl-C some library turned into another error; the output's own error)
    _report_failure(config, command, unexpected_message(exc), as_json)


def unexpected_message(exc: BaseException) -> str:
    """The one line said of an unexpected error."""
    return f"unexpected: {type(exc).__name__}: {exc}"


def sync_json(result: Any) -> dict[str, Any]:
    """The stable --json schema of a sync."""
    from vault.sync import format_time

    return {"commit": result.commit, "parent": result.parent,
            "timestamp": format_time(result.timestamp), "dry_run": result.dry_run,
            "added": list(result.added), "modified": list(result.modified),
            "deleted": list(result.deleted),
            "skipped": [{"path": s.path, "reason": s.reason} for s in result.skipped],
            "unchanged": result.unchanged,
            "failures": [{"source": f.source, "message": f.message, "path": f.path}
                         for f in result.failures],
            # (a push the remote refused fails the sync too: exit 1)
            "ok": result.ok and not (result.push is not None and result.push.refused),
            "corrupt": [{"path": c.path, "reason": c.reason} for c in result.corrupt],
            "redacted": [{"path": r.path, "reason": r.reason} for r in result.redacted],
            "waiting": [{"path": w.path, "reason": w.reason} for w in result.waiting],
            "rollbacks": [{"path": r.path, "aside": r.aside, "restored_from": r.commit,
                           "warning": r.warning or None}
                          for r in result.rollbacks],
            "push": None if result.push is None else {
                "pushed": result.push.pushed, "unpushed": result.push.unpushed,
                "replayed": result.push.replayed, "message": result.push.message,
                "refused": result.push.refused}}


def _render_sync(result: Any) -> None:
    from vault.sync import format_time

    counts = (f"{len(result.modified)} modified, {len(result.added)} added, "
              f"{len(result.deleted)} deleted")
    if result.dry_run:
        head = f"Dry run: would commit {counts}" if result.changed else "Dry run: nothing to commit"
        click.echo(f"{head} ({result.unchanged} unchanged)")
    elif result.commit:
        click.echo(f"Committed {result.commit[:10]} at {format_time(result.timestamp)}: "
                   f"{counts} ({result.unchanged} unchanged)")
    elif result.failures:  # (each said on stderr, after this)
        click.echo(f"Nothing committed ({result.unchanged} files checked).")
    else:
        click.echo(f"Nothing changed ({result.unchanged} files checked); no commit.")
    for tag, paths in (("M", result.modified), ("A", result.added), ("D", result.deleted)):
        for path in paths[:20]:
            click.echo(f"  {tag} {shown(path)}")
        if len(paths) > 20:
            click.echo(f"  ... and {len(paths) - 20} more ({tag})")
    for item in result.redacted:
        click.echo(f"Redacted {shown(item.path)}: {item.reason}")
    for item in result.waiting:
        click.echo(f"Waiting: {shown(item.path)}: {item.reason}")
    if result.skipped:
        click.echo(f"Skipped {len(result.skipped)} (the vault keeps what it had of them):")
        for item in result.skipped:
            click.echo(f"  {shown(item.path)}: {item.reason}")


@cli.command(epilog=EXIT_CODE_HELP)
@config_option
@json_option
def status(config_path: str | None, as_json: bool) -> None:
    """Show the last sync, what is pending, and the lock."""
    from vault.status import status as read_status
    from vault.sync import format_time

    config = load_config_at(config_path)
    st = read_status(config)
    last = st.last_sync
    lock = {"held": st.lock.held, "pid": st.lock.pid, "host": st.lock.host,
            "command": st.lock.command}
    if as_json:
        emit_json({"vault": st.vault_path, "branch": st.branch, "commits": st.commits,
                    "last_sync": None if last is None else {
                        "commit": last.id, "time": format_time(last.time),
                        "summary": last.summary},
                    # (a dry-run sync's document, as `sync --dry-run --json` prints it: a dry
                    # run runs no hooks)
                    "pending": {**sync_json(st.pending), "hooks": []}, "lock": lock,
                    "last_run": format_time(st.last_run) if st.last_run else None,
                    "interval_seconds": st.interval, "overdue": st.overdue,
                    "remote": st.remote, "unpushed": st.unpushed,
                    "last_failure": None if st.last_failure is None else {
                        "time": format_time(st.last_failure.time),
                        "command": st.last_failure.command, "error": st.last_failure.error}})
        return
    click.echo(f"Vault:     {st.vault_path} (branch {st.branch}, {st.commits} commits)")
    if last is None:
        click.echo("Last sync: never (run `vault sync`)")
    else:
        ran = st.last_run or last.time
        click.echo(f"Last sync: {format_time(ran)} ({_ago(ran)})")
        click.echo(f"Last commit: {format_time(last.time)} ({_ago(last.time)}), "
                   f"{last.id[:10]}")
        if st.overdue:
            click.echo(f"Warning:   the last sync is older than two intervals "
                       f"({st.interval // 60} min each): is cron or the timer running?")
    p = st.pending
    if p.changed or p.skipped:
        click.echo(f"Pending:   {len(p.modified)} modified, {len(p.added)} added, "
                   f"{len(p.deleted)} deleted, {len(p.skipped)} skipped")
    else:
        click.echo(f"Pending:   nothing ({p.unchanged} files up to date)")
    for failure in p.failures:
        click.echo(f"Problem:   {one_line(failure.message)}")  # (names the source or file)
    failed_paths = {failure.path for failure in p.failures}  # (said just above)
    left = [s for s in p.skipped if s.path not in failed_paths]
    for skipped in left[:SKIPPED_SHOWN]:
        click.echo(f"Skipped:   {shown(skipped.path)}: {one_line(skipped.reason)}")
    if len(left) > SKIPPED_SHOWN:
        click.echo(f"Skipped:   ... and {len(left) - SKIPPED_SHOWN} more (`vault sync "
                   "--dry-run` lists them all)")
    if st.last_failure is not None:
        f = st.last_failure
        click.echo(f"Failed:    {format_time(f.time)} vault {f.command}: {one_line(f.error)} "
                   "(after the last sync; failures.log has them all)")
    if st.remote:
        click.echo(f"Remote:    {st.remote} ({st.unpushed} commit(s) not pushed yet)"
                   if st.unpushed else f"Remote:    {st.remote} (up to date)")
    if st.lock.held:
        who = f" by {st.lock.who()}" if st.lock.pid else ""
        click.echo(f"Lock:      held{who}")
    else:
        click.echo("Lock:      free")


def _ago(moment: datetime) -> str:
    seconds = int((datetime.now(timezone.utc) - moment).total_seconds())
    ahead = seconds < -60  # (a clock that was fast then, or is slow now: said, not hidden)
    seconds = abs(seconds)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            amount = f"{n} {unit}{'s' if n != 1 else ''}"
            return f"{amount} in the future: is a clock wrong?" if ahead else f"{amount} ago"
    return "just now" if seconds < 5 else f"{seconds} seconds ago"


@cli.command(epilog=EXIT_CODE_HELP)
@config_option
@json_option
@click.option("--path", "paths", multiple=True, metavar="P",
              help="Only commits that changed this path, folder or glob (repeatable).")
@click.option("--since", metavar="WHEN", help="Only commits at or after WHEN (e.g. '2h ago').")
@click.option("-n", "limit", type=click.IntRange(min=1), metavar="N",
              help="At most N commits.")
def log(config_path: str | None, as_json: bool, paths: tuple[str, ...], since: str | None,
        limit: int | None) -> None:
    """The audit trail: the vault's commits, newest first."""
    from vault.history import log as read_log
    from vault.repo import VaultRepo
    from vault.show import vault_pattern
    from vault.sync import format_time

    config = load_config_at(config_path)
    paths = tuple(vault_pattern(config, p) for p in paths)
    repo = VaultRepo.open(config.vault.path, config.vault.branch)
    since_at = _since(repo, since) if since is not None else None
    entries = read_log(repo, paths=paths, since=since_at, limit=limit)
    if as_json:
        emit_json({"commits": [{"commit": e.commit.id, "time": format_time(e.commit.time),
                                 "summary": e.commit.summary, "message": e.commit.message,
                                 "changes": [{"status": s, "path": p} for s, p in e.changes]}
                                for e in entries]})
        return
    if not entries:
        click.echo("No commits" + (" match" if paths or since else " yet") + ".")
    for entry in entries:
        click.echo(f"{entry.commit.id[:10]}  {format_time(entry.commit.time)}  "
                   f"{entry.commit.summary}")
        for status_code, path in entry.changes:
            click.echo(f"    {status_code} {shown(path)}")


def _since(repo: Any, text: str) -> Any:
    from vault.history import since_time

    return since_time(repo, text, datetime.now(timezone.utc))


@cli.command(epilog=EXIT_CODE_HELP)
@config_option
@json_option
@click.option("--at", "at", metavar="WHEN", required=True,
              help="ISO time, date, HH:MM, '2h ago', 'yesterday', commit id or HEAD~N.")
@click.option("--to", "to", metavar="DIR", type=click.Path(file_okay=False),
              help="Write into DIR (as <source>/<path>) instead of the live sources.")
@click.option("--source", "sources", multiple=True, metavar="NAME",
              help="Only this source (repeatable).")
@click.option("--path", "paths", multiple=True, metavar="GLOB",
              help="Only matching paths (repeatable; vault path or path in its source).")
@click.option("--dry-run", is_flag=True, help="List every action; change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before overwriting live files.")
@click.option("--delete", is_flag=True,
              help="Also delete files that did not exist at WHEN (default: keep them).")
def restore(config_path: str | None, as_json: bool, at: str, to: str | None,
            sources: tuple[str, ...], paths: tuple[str, ...], dry_run: bool, yes: bool,
            delete: bool) -> None:
    """Bring files back as they were at WHEN, safely and undoably."""
    from pathlib import Path

    from vault.restore import PartialRestoreError, RestoreOptions, RestorePlan
    from vault.restore import restore as run_restore

    if to is not None and not to.strip():
        from vault.errors import UsageError

        raise UsageError("--to needs a folder (an empty one would mean the live sources)")
    config = load_config_at(config_path)
    options = RestoreOptions(at=at, to=Path(to).absolute() if to else None, sources=sources,
                             paths=paths, dry_run=dry_run, delete=delete)

    def confirm(plan: RestorePlan) -> bool:
        if yes or not plan.touches_live_files:
            return True
        if not sys.stdin.isatty():
            from vault.errors import UsageError

            raise UsageError("refusing to overwrite live files without --yes (no terminal to ask)",
                             hint="add --dry-run to see the actions, --to DIR to restore aside")
        if not as_json:
            _render_plan(plan, limit=30)
        return click.confirm("Overwrite these live files?", default=False, err=True)

    from vault.cliutil import Progress

    try:
        with Progress("Restoring", not as_json and not dry_run) as bar:
            result = run_restore(config, options, confirm=confirm,
                                 progress=bar.step if bar.enabled else None)
    except PartialRestoreError as exc:
        undo = _undo_command(config, options, exc.result)
        exc.hint = f"undo what was done with: {undo}"
        if as_json:  # the document too, with the error: what was planned, how to undo it
            emit_json({**restore_json(exc.result, undo), "error": exc.message})
        raise
    _work_done()  # (an interrupt now would lose the undo of files already restored)
    undo = _undo_command(config, options, result)
    if as_json:
        emit_json(restore_json(result, undo))
        return
    _render_plan(result.plan, limit=None if dry_run else 50)
    if result.safety_sync is not None and result.safety_sync.commit:
        click.echo(f"Safety sync: committed {result.safety_sync.commit[:10]} first "
                   "(the state just replaced is in the vault).")
    for action in result.plan.actions:
        if action.set_aside:
            folder = os.path.isdir(action.set_aside) and not os.path.islink(action.set_aside)
            # (a folder: its files are the safety sync's to take, like any others)
            why = action.why or ("a folder where the restore puts a file" if folder
                                 else "not in the vault")
            kept = "Would keep aside" if dry_run else "Kept aside"
            click.echo(f"{kept} ({why}): {shown(action.set_aside)}")
    for warning in result.warnings:  # (a database the application must REINDEX)
        click.echo(f"Warning: {one_line(warning)}", err=True)
    if result.redacted:
        click.echo(f"Warning: {len(result.redacted)} restored file(s) hold [REDACTED:...] "
                   "markers: the secrets they held were never stored and cannot come back "
                   f"({', '.join(result.redacted[:3])})", err=True)
    if dry_run:
        click.echo("Dry run: nothing was changed.")
    elif undo:
        click.echo(f"Undo with: {undo}")
    if not dry_run and result.new_sources:
        click.echo(f"(The undo leaves out {', '.join(result.new_sources)}: its folder was not "
                   "there before the restore; delete it to go back.)")


def _render_plan(plan: Any, limit: int | None) -> None:
    from vault.sync import format_time

    where = f"into {plan.into}" if plan.into else "into the live sources"
    click.echo(f"Restoring commit {plan.commit.id[:10]} ({format_time(plan.commit.time)}) {where}")
    changing = [a for a in plan.actions if a.action != "unchanged"]
    for action in changing[:limit]:
        click.echo(f"  {action.action:9} {shown(action.path)}")
    if limit is not None and len(changing) > limit:
        click.echo(f"  ... and {len(changing) - limit} more")
    counts = {k: sum(1 for a in plan.actions if a.action == k)
              for k in ("create", "overwrite", "delete", "unchanged")}
    click.echo(", ".join(f"{n} {k}" for k, n in counts.items()))
    for path, why in plan.left_out_why[:limit]:
        click.echo(f"Left out ({why}; --to DIR restores it): {shown(path)}")
    if limit is not None and len(plan.left_out) > limit:
        click.echo(f"  ... and {len(plan.left_out) - limit} more left out")
    for path in plan.not_deleted:
        click.echo(f"Not deleted (the vault cannot take it, so it is not the vault's to "
                   f"delete): {shown(path)}")


SKIPPED_SHOWN = 5  # `vault status` names this many skipped files
DIFF_ROWS_SHOWN = 5  # `vault diff` lists this many changed rows of a table (--json: ROW_LIMIT)
UNDO_PATHS = 50  # an undo names each file the restore changed, up to this many


def _undo_command(config: Any, options: Any, result: Any) -> str | None:
    """The command that puts back what the restore changed: a restore of the safety commit,
    for the sources it took whole, with --delete; naming each file changed when they are few
    (then files the safety sync could not take, which the restore did not touch, stay put).
    None when the restore changed nothing in those sources: an undo with no --path would
    cover them whole, files the restore never touched included."""
    if result.undo_commit is None or not result.undo_sources:
        return None  # (without --source it would cover every source)
    import shlex

    from vault.sources import pattern_for

    covered = set(result.undo_sources)
    changed = [a.path for a in result.plan.actions if a.action != "unchanged"
               and (owner := config.source_for(a.path)) is not None
               and owner[0].name in covered]
    if not changed:
        return None  # (every delete left as not_deleted, say: nothing to put back)
    parts = ["vault", "restore", "--at", result.undo_commit[:12]]
    for name in result.undo_sources:  # the sources the safety sync took whole: no others
        parts += ["--source", name]
    # A name that ends in other white space cannot be written as a pattern (it would be cut),
    # nor one with a line break: then the undo covers the sources whole
    exact = len(changed) <= UNDO_PATHS and all(
        (p == p.rstrip() or p.endswith(" ")) and "\n" not in p and "\r" not in p
        for p in changed)
    patterns = [pattern_for(p) for p in changed] if exact else list(options.paths)
    for pattern in patterns:
        parts += ["--path", pattern]
    parts += ["--delete", "--yes"]
    if config.file:
        parts += ["--config", str(config.file)]
    return " ".join(shlex.quote(p) for p in parts)


def restore_json(result: Any, undo: str | None) -> dict[str, Any]:
    """The stable --json schema of a restore."""
    from vault.sync import format_time

    plan = result.plan
    counts = {k: sum(1 for a in plan.actions if a.action == k)
              for k in ("create", "overwrite", "delete", "unchanged")}
    return {"commit": plan.commit.id, "time": format_time(plan.commit.time),
            "summary": plan.commit.summary, "into": plan.into, "dry_run": result.dry_run,
            "actions": [{"action": a.action, "path": a.path, "target": a.target,
                         "set_aside": a.set_aside} for a in plan.actions],
            "counts": counts,
            "safety_sync": None if result.safety_sync is None else sync_json(result.safety_sync),
            "undo": undo, "redacted": list(result.redacted), "left_out": list(plan.left_out),
            "left_out_reasons": list(plan.left_out_reasons),
            "warnings": list(result.warnings),
            "not_deleted": list(plan.not_deleted)}


@cli.command(epilog=EXIT_CODE_HELP)
@config_option
@json_option
@click.argument("path")
@click.option("--at", "at", metavar="WHEN", default="HEAD", show_default=True,
              help="The moment to look at (any WHEN that restore accepts).")
@click.option("--sql", metavar="QUERY",
              help="For a SQLite file: run a read-only query against it as it was.")
def show(config_path: str | None, as_json: bool, path: str, at: str, sql: str | None) -> None:
    """Print a file as it was at WHEN (or query a database as it was)."""
    from vault.repo import VaultRepo
    from vault.show import query_dump, show_file
    from vault.sync import format_time

    if sql is not None:
        from vault.cli_recall import argument_text

        sql = argument_text(sql, "--sql")
    config = load_config_at(config_path)
    repo = VaultRepo.open(config.vault.path, config.vault.branch)
    shown = show_file(config, repo, path, at, datetime.now(timezone.utc))
    head = {"path": shown.path, "commit": shown.commit.id, "time": format_time(shown.commit.time)}
    if sql is not None:
        result = query_dump(shown.data, sql)
        if as_json:
            emit_json({**head, "columns": list(result.columns),
                        "rows": [[_jsonable(v) for v in row] for row in result.rows]})
            return
        if result.columns:
            click.echo("\t".join(map(_cell, result.columns)))
        for row in result.rows:
            click.echo("\t".join("NULL" if v is None else _cell(_jsonable(v)) for v in row))
        return
    if as_json:
        try:  # exact: text as it is, anything else (latin-1, binary) base64, never "\ufffd"
            content, encoding = shown.data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            import base64

            content, encoding = base64.b64encode(shown.data).decode("ascii"), "base64"
        emit_json({**head, "sqlite": shown.sqlite, "size": len(shown.data),
                   "encoding": encoding, "content": content})
        return
    sys.stdout.buffer.write(shown.data)
    sys.stdout.buffer.flush()


_CELL_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _cell(value: Any) -> str:
    """A value for the tab-separated rows of `show --sql`: a tab, a line break, a backslash
    or another control character in it written as a C escape, so that one value stays one
    column of one line (and no escape sequence reaches the terminal). --json is exact."""
    text = str(value)
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(_CELL_ESCAPES.get(c) or (c if c.isprintable() else _escape(c)) for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 \
        else f"\\U{code:08x}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return "x'" + value.hex() + "'"
    return value


@cli.command(epilog=EXIT_CODE_HELP)
@config_option
@json_option
@click.argument("when1", metavar="WHEN1")
@click.argument("when2", metavar="[WHEN2]", default="HEAD")
@click.option("--path", "paths", multiple=True, metavar="GLOB",
              help="Only matching paths (repeatable).")
def diff(config_path: str | None, as_json: bool, when1: str, when2: str,
         paths: tuple[str, ...]) -> None:
    """What changed between WHEN1 and WHEN2 (default: the last sync), file by file."""
    from vault.dumpdiff import ROW_LIMIT
    from vault.diff import diff as run_diff
    from vault.repo import VaultRepo
    from vault.sync import format_time

    config = load_config_at(config_path)
    repo = VaultRepo.open(config.vault.path, config.vault.branch)
    result = run_diff(repo, when1, when2, datetime.now(timezone.utc), paths, config=config)
    if as_json:
        emit_json({
            "old": {"commit": result.old.id, "time": format_time(result.old.time)},
            "new": {"commit": result.new.id, "time": format_time(result.new.time)},
            "files": [{"path": f.path, "status": f.status, "sqlite": f.sqlite,
                       "old_kind": f.old_kind, "new_kind": f.new_kind,
                       "lines_added": f.lines_added, "lines_removed": f.lines_removed,
                       "binary": f.binary,
                       "tables": [{"table": t.table, "status": t.status, "added": t.added,
                                   "changed": t.changed, "removed": t.removed,
                                   "schema_changed": t.schema_changed,
                                   "rows": [{"kind": r.kind, "key": r.key, "old": r.old,
                                             "new": r.new} for r in t.rows],
                                   "rows_not_listed": t.row_changes - len(t.rows)}
                                  for t in f.tables]} for f in result.files]})
        return
    click.echo(f"From {result.old.id[:10]} ({format_time(result.old.time)}) "
               f"to {result.new.id[:10]} ({format_time(result.new.time)}):")
    if not result.files:
        click.echo("  no differences")
    tag = {"added": "A", "modified": "M", "deleted": "D"}
    for f in result.files:
        lines = "binary" if f.binary else f"+{f.lines_added} -{f.lines_removed}"
        if not f.sqlite:
            click.echo(f"  {tag[f.status]} {shown(f.path)}  {lines}")
            continue
        if f.kind_changed:  # a plain file on one side: its lines, then the tables
            kinds = " -> ".join("SQLite" if k == "sqlite" else "plain"
                                for k in (f.old_kind, f.new_kind))
            click.echo(f"  {tag[f.status]} {shown(f.path)}  ({kinds})  {lines}")
        else:
            click.echo(f"  {tag[f.status]} {shown(f.path)}  (SQLite)")
        for t in f.tables:
            what = ", ".join(f"{n} {k}" for k, n in (("added", t.added), ("changed", t.changed),
                                                     ("removed", t.removed)) if n)
            schema = "; schema changed" if t.schema_changed else ""
            click.echo(f"      {t.table}: {what or 'no row changes'}{schema}")
            for r in t.rows[:DIFF_ROWS_SHOWN]:
                click.echo(f"        {r.kind} {r.key}")
            more = t.row_changes - min(len(t.rows), DIFF_ROWS_SHOWN)
            if more > 0:
                click.echo(f"        ... and {more} more (`--json` lists the first "
                           f"{ROW_LIMIT} in key order)")


@cli.command(epilog=EXIT_CODE_HELP)
@config_option
@json_option
@click.option("--repair", is_flag=True,
              help="Fix what can be fixed (roll back corrupt memory files, re-clone a damaged "
                   "vault from its remote) and say what was done.")
@click.option("--drill", is_flag=True,
              help="Restore the last sync into a temp dir and prove every file equal.")
@click.option("--crontab-file", metavar="PATH", type=click.Path(dir_okay=False),
              help="Check this crontab file instead of your crontab.")
def doctor(config_path: str | None, as_json: bool, repair: bool, drill: bool,
           crontab_file: str | None) -> None:
    """Check the vault's health: exit 1 when a check fails, so monitoring can call it."""
    from pathlib import Path

    from vault.doctor import doctor as run_doctor

    config = load_config_at(config_path)
    try:
        report = run_doctor(config, repair=repair, drill=drill,
                            crontab_file=Path(crontab_file) if crontab_file else None)
    except Exception as exc:
        if not isinstance(exc, VaultError):
            _report_unexpected(config, "doctor", exc, as_json)
        raise
    if as_json:
        emit_json({"ok": report.ok,
                   "checks": [{"name": c.name, "status": c.status, "detail": c.detail}
                              for c in report.checks],
                   "repairs": list(report.repairs),
                   "drill": None if report.drill is None else {
                       "commit": report.drill.commit, "files": report.drill.files,
                       "databases": report.drill.databases,
                       "seconds": round(report.drill.seconds, 3),
                       "chunks_reindexed": report.drill.chunks_reindexed,
                       "problems": list(report.drill.problems)}})
    else:
        marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
        for check in report.checks:
            click.echo(f"{marks[check.status]}  {check.name:13} {one_line(check.detail)}")
        for done in report.repairs:
            click.echo(f"repaired: {one_line(done)}")
        if report.drill is not None:
            d = report.drill
            verdict = "passed" if not d.problems else f"FAILED: {one_line(d.problems[0])}"
            sample = f", re-indexed {d.chunks_reindexed} chunks" if d.chunks_reindexed else ""
            click.echo(f"drill: restored {d.files} files ({d.databases} databases) of "
                       f"{d.commit[:10]}{sample} in {d.seconds:.2f} s, {verdict}")
    if not report.ok:
        failed = [c for c in report.checks if c.status == "fail"]
        if failed:
            line = (f"{failed[0].name}: {failed[0].detail}"
                    + (f" (+{len(failed) - 1} more failed checks)" if len(failed) > 1 else ""))
        else:  # (the drill's own reason: a full temp folder is not the vault's fault)
            problems = report.drill.problems if report.drill is not None else ()
            line = "the restore drill failed" + (f": {problems[0]}" if problems else "")
        print_error(line)
        _report_failure(config, "doctor", line, as_json)
        raise Abort(1)


@cli.group(epilog=EXIT_CODE_HELP)
def cron() -> None:
    """Run `vault sync --quiet` from cron (one entry, absolute paths, appends to vault.log)."""


crontab_file_option = click.option(
    "--crontab-file", metavar="PATH", type=click.Path(dir_okay=False),
    help="Edit this crontab file instead of your crontab (crontabs kept in files, tests).")


@cron.command("install", epilog=EXIT_CODE_HELP)
@config_option
@json_option
@crontab_file_option
@click.option("--every", default="15m", show_default=True, metavar="INTERVAL",
              help="How often: 5m, 10m, 15m, 30m, 1h, 2h, 6h, 12h or 1d.")
def cron_install(config_path: str | None, as_json: bool, crontab_file: str | None,
                 every: str) -> None:
    """Add vault's crontab entry (installing twice changes nothing)."""
    from pathlib import Path

    from vault.schedule import install

    config = load_config_at(config_path)
    st = install(config, every, Path(crontab_file) if crontab_file else None)
    _render_cron(st, as_json, config)


@cron.command("remove", epilog=EXIT_CODE_HELP)
@config_option
@json_option
@crontab_file_option
def cron_remove(config_path: str | None, as_json: bool, crontab_file: str | None) -> None:
    """Remove vault's crontab entry."""
    from pathlib import Path

    from vault.schedule import remove

    config = load_config_at(config_path)
    removed = remove(config, Path(crontab_file) if crontab_file else None)
    if as_json:
        emit_json({"removed": removed})
    else:
        click.echo("Removed vault's crontab entry." if removed else "No vault crontab entry.")


@cron.command("status", epilog=EXIT_CODE_HELP)
@config_option
@json_option
@crontab_file_option
def cron_status(config_path: str | None, as_json: bool, crontab_file: str | None) -> None:
    """Show the entry, the last sync and the next run."""
    from pathlib import Path

    from vault.schedule import status as read_cron

    config = load_config_at(config_path)
    _render_cron(read_cron(config, Path(crontab_file) if crontab_file else None), as_json,
                 config)


def _render_cron(st: Any, as_json: bool, config: Any = None) -> None:
    last = None
    if config is not None:
        from vault.errors import NoVaultError
        from vault.repo import VaultRepo

        try:
            repo = VaultRepo.open(config.vault.path, config.vault.branch)
            from vault.sync import last_run

            synced = repo.last_by_vault()  # (a commit made by hand is no sync)
            last = last_run(config, synced.time if synced else None)
        except NoVaultError:
            last = None
    from vault.sync import format_time

    if as_json:
        emit_json({"installed": st.entry is not None, "crontab": st.crontab,
                   "schedule": st.entry.schedule if st.entry else None,
                   "line": st.entry.line if st.entry else None,
                   "next_run": st.next_run.isoformat() if st.next_run else None,
                   "last_sync": format_time(last) if last else None})
        return
    if st.entry is None:
        click.echo(f"No vault entry in {st.crontab} (run `vault cron install`).")
        return
    click.echo(f"Entry ({st.crontab}): {st.entry.line}")
    click.echo(f"Next run:  {st.next_run:%Y-%m-%d %H:%M} (local time)")
    if config is not None:
        click.echo(f"Last sync: {format_time(last) if last else 'never'}")


@cli.command(epilog=EXIT_CODE_HELP)
@json_option
@click.option("--keep", metavar="DIR", help="Run in DIR and keep it (default: a temp dir).")
def demo(as_json: bool, keep: str | None) -> None:
    """Run the whole flow on a temporary copy of the bundled example memory."""
    from vault.demo import run_demo

    steps = run_demo(keep)
    if as_json:
        emit_json({"steps": [{"title": s.title, "command": s.command, "output": s.output}
                              for s in steps]})
        return
    for step in steps:
        click.secho(f"\n== {step.title}", bold=True)
        if step.command:
            click.echo(f"$ {step.command}")
        if step.output:
            click.echo(step.output.rstrip("\n"))


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn every outcome into a one-line message and exit code
    (and, under --json, a JSON document saying so)."""
    debug = bool(os.environ.get("VAULT_DEBUG"))
    args = sys.argv[1:] if argv is None else argv
    try:
        cli.main(args=argv, prog_name="vault", standalone_mode=False)
    except Abort as exc:
        sys.exit(exc.code)
    except VaultError as exc:
        if debug:
            _print_traceback()
        print_error(exc.message, exc.hint)
        emit_json_error(args, exc.message, exc.hint, exc.exit_code)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        code = EXIT_USAGE if isinstance(exc, click.UsageError) else exc.exit_code
        emit_json_error(args, exc.format_message(), None, code)
        sys.exit(code)
    except (KeyboardInterrupt, click.exceptions.Abort):
        _exit_interrupted(args)
    except (BrokenPipeError, _ReaderGone):
        # What is left in stdout's buffer goes nowhere (Python would report the pipe once more
        # when it flushes at exit): the reader has what it wanted, so this is a success.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, exit 3
        if debug:
            _print_traceback()
        if isinstance(exc, OSError) and _writing_output(exc):
            # (a full disk under `> file`, /dev/full): what the command did is done; only
            # what it had to say is lost, and Python would report it again at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            print_error(f"cannot write the output: {exc.strerror or exc}",
                        "what the command did is done; only its output is lost")
            sys.exit(EXIT_FAILED)
        from vault.entry import interrupted

        if interrupted():  # a Ctrl-C that some library turned into another error
            _exit_interrupted(args)
        message = unexpected_message(exc)
        hint = "set VAULT_DEBUG=1 for a traceback; please report it"
        print_error(message, hint)
        emit_json_error(args, message, hint, EXIT_UNEXPECTED)
        sys.exit(EXIT_UNEXPECTED)
    sys.exit(0)


def _writing_output(exc: BaseException) -> bool:
    """Whether the error was raised writing the command's output (in click.echo)."""
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name == "echo" and code.co_filename.endswith(os.path.join("click", "utils.py")):
            return True
        tb = tb.tb_next
    return False


def _print_traceback() -> None:
    import traceback  # (6 ms: only for VAULT_DEBUG)

    traceback.print_exc()


def _exit_interrupted(args: list[str]) -> NoReturn:
    click.echo("Error: interrupted", err=True)
    emit_json_error(args, "interrupted", None, EXIT_INTERRUPTED)
    sys.exit(EXIT_INTERRUPTED)


def _register_command_modules() -> None:
    """Commands that live in their own modules (they import nothing heavy at load time)."""
    from vault.cli_recall import register as register_recall
    from vault.cli_secrets import register as register_secrets

    register_recall(cli)
    register_secrets(cli)


_register_command_modules()


if __name__ == "__main__":  # pragma: no cover
    main()

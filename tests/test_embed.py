"""Embedders: the fake, model resolution, and the real model with its ONNX twin."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path
import numpy as np
import pytest

from vault.embed import (DEFAULT_MODEL, MIN_EXPORT_COSINE, EmbedError, HashEmbedder,
                         OnnxEmbedder, SentenceTransformerEmbedder, encoder_dir,
                         ensure_query_encoder, load_query_encoder, resolve_model)

TEXTS = [
    "What did Sam decide about the kitchen renovation?",
    "BILL-412",
    "user: remind me to follow up on Friday",
    "Héllo wörld — ünïcode 🎉 中文",
    "",
    "word " * 400,  # longer than the model's 256-token window: truncated the same way
]


@functools.lru_cache(maxsize=1)
def real_model() -> tuple[SentenceTransformerEmbedder, Path]:
    """The real model, loaded once per test session, and its ONNX twin exported once."""
    spec = resolve_model(DEFAULT_MODEL)
    embedder = SentenceTransformerEmbedder(spec)
    models = Path(tempfile.mkdtemp(prefix="vault-test-models-"))
    atexit.register(shutil.rmtree, models, True)
    ensure_query_encoder(embedder, models)
    return embedder, models


def link_models(home_models: Path) -> None:
    """Make the session's exported encoder visible under a test's VAULT_HOME/models."""
    embedder, models = real_model()
    home_models.mkdir(parents=True, exist_ok=True)
    link = encoder_dir(home_models, embedder.spec)
    if not link.exists():
        link.symlink_to(encoder_dir(models, embedder.spec))


def test_hash_embedder_is_deterministic_and_normalised() -> None:
    a = HashEmbedder(64).embed_documents(["tea in the morning", "tea in the morning", ""])
    assert a.shape == (3, 64) and a.dtype == np.float32
    assert np.allclose(a[0], a[1]) and np.isclose(np.linalg.norm(a[0]), 1.0)
    assert not a[2].any()  # no words, no direction
    b = HashEmbedder(64).embed_queries(["morning tea"])
    assert float(a[0] @ b[0]) > 0.4


def test_resolve_model_forms(tmp_path: Path) -> None:
    assert resolve_model("hash:32").kind == "hash"
    default = resolve_model(DEFAULT_MODEL)
    assert default.path is not None and (default.path / "modules.json").is_file()
    assert default.key.startswith(f"{DEFAULT_MODEL}@")
    assert resolve_model("sentence-transformers/all-MiniLM-L6-v2").key == default.key
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert resolve_model(str(folder)).path == folder.resolve()
    with pytest.raises(EmbedError, match="hash:N"):
        resolve_model("hash:big")
    with pytest.raises(EmbedError, match="not found"):
        resolve_model("./missing-model")
    assert load_query_encoder(tmp_path, default) is None  # nothing exported there


@pytest.mark.model
def test_onnx_twin_matches_sentence_transformers() -> None:
    embedder, models = real_model()
    twin = load_query_encoder(models, embedder.spec)
    assert isinstance(twin, OnnxEmbedder) and twin.key == embedder.key
    assert twin.meta["check_cosine"] >= MIN_EXPORT_COSINE
    ours = twin.embed_queries(TEXTS)
    theirs = embedder.model.encode(TEXTS, convert_to_numpy=True)
    theirs = theirs / np.linalg.norm(theirs, axis=1, keepdims=True)
    cosines = np.sum(ours * theirs, axis=1)
    assert cosines.min() >= 0.9999, cosines
    docs = twin.embed_documents(TEXTS)  # batched with padding: the same vectors
    assert np.sum(docs * ours, axis=1).min() >= 0.9999


@pytest.mark.model
def test_real_model_ranks_a_paraphrase_first() -> None:
    embedder, _ = real_model()
    docs = embedder.embed_documents(["The user prefers tea over coffee in the morning.",
                                     "The backup job runs nightly at 02:00.",
                                     "Kitchen renovation quote: 21,000 euro."])
    query = embedder.embed_queries(["what hot drink does the user like?"])[0]
    assert int(np.argmax(docs @ query)) == 0

"""Embedding backends of the real model: chosen by settings, built once and cached, keyed into the model id
(a worker with another backend refuses to write), vectors within the quality gate of torch's."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from sync_support import add_items

from nearrec.config import Settings
from nearrec.embedding import Embedder, configured_model_id, load_embedder
from nearrec.embedding.onnx import OnnxEmbedder, int8_kernels, onnx_model_file
from nearrec.embedding.onnx_build import check_mean_pooling
from nearrec.embedding.sentence import SentenceTransformerEmbedder, default_model_path, model_fingerprint
from nearrec.errors import ConfigError, ModelMismatchError
from nearrec.sync.worker import SyncWorker
from nearrec.vectors.edge import EdgeVectorStore

TEXTS = [
    "Toy Story (1995). Genres: Animation, Children's, Comedy",
    "Toy Story 2 (1999). Genres: Animation, Children's, Comedy",
    "GoldenEye (1995). Genres: Action, Adventure, Thriller",
    "Tomorrow Never Dies (1997). Genres: Action, Romance, Thriller",
    "Heat (1995). Genres: Action, Crime, Thriller",
    "Casino (1995). Genres: Drama, Thriller",
    "Sense and Sensibility (1995). Genres: Drama, Romance",
    "Pride and Prejudice (1995). Genres: Drama, Romance",
    "Apollo 13 (1995). Genres: Action, Drama, Thriller",
    "Star Wars (1977). Genres: Action, Adventure, Romance, Sci-Fi, War",
    "Alien (1979). Genres: Action, Horror, Sci-Fi, Thriller",
    "Aliens (1986). Genres: Action, Sci-Fi, Thriller, War",
    "The Lion King (1994). Genres: Animation, Children's, Musical",
    "Aladdin (1992). Genres: Animation, Children's, Comedy, Musical",
    "Astronauts pilot a starship to a distant galaxy to save humanity from a dying sun.",
    "A crew of explorers travels through a wormhole in search of a new home for humanity.",
    "A young chef opens a small restaurant in Paris and learns to bake the perfect bread.",
    "An old baker teaches his grandson the secrets of sourdough in a village bakery.",
    "An underdog soccer team fights its way to the championship final.",
    "A washed-up boxer gets one last shot at the heavyweight title.",
    "A family moves into an old house haunted by a vengeful ghost.",
    "Teenagers spend a night in an abandoned asylum where something still walks the halls.",
    "Waterproof hiking boots with a grippy sole for muddy trails.",
    "Lightweight trail running shoes with a breathable mesh upper.",
    "A stainless steel chef's knife, 20 cm, with a full tang.",
    "A cast iron skillet, pre-seasoned, for searing and baking.",
    "   leading and trailing spaces are ignored   ",
    "word " * 400,  # longer than max_seq_length: truncated like sentence-transformers does
]


def settings_for(backend: str, data_dir: Path) -> Settings:
    return Settings(embedding_backend=backend, embedding_model="", data_dir=data_dir, _env_file=None)  # type: ignore[call-arg,arg-type]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data dir for the module: each backend is built once."""
    return tmp_path_factory.mktemp("backends")


@pytest.fixture(scope="module")
def torch_vectors() -> np.ndarray:
    return SentenceTransformerEmbedder(default_model_path(), batch_size=64).embed(TEXTS)


def overlap_at(ref: np.ndarray, got: np.ndarray, k: int) -> float:
    def top(v: np.ndarray) -> np.ndarray:
        sims = v @ v.T
        np.fill_diagonal(sims, -np.inf)
        return np.argsort(-sims, axis=1)[:, :k]

    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(top(ref), top(got), strict=True)]))


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "min_cosine"), [("onnx", 0.9999), ("onnx-int8", 0.995)])
def test_onnx_vectors_are_within_the_gate_of_torch(
    backend: str, min_cosine: float, models_dir: Path, torch_vectors: np.ndarray
) -> None:
    embedder = load_embedder(settings_for(backend, models_dir))
    assert isinstance(embedder, OnnxEmbedder) and embedder.dim == 384
    got = embedder.embed(TEXTS)
    assert got.dtype == np.float32 and np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cosine = np.sum(got * torch_vectors, axis=1)
    assert cosine.mean() >= 0.99 and cosine.min() >= min_cosine, cosine
    assert overlap_at(torch_vectors, got, 5) >= 0.9
    # batching and order do not change a text's vector (sorted by length, padded per batch; int8 scales
    # are per token, so they do not depend on the other texts of a batch either)
    embedder.batch_size = 3
    again = embedder.embed(TEXTS[::-1])[::-1]
    assert np.allclose(again, got, atol=1e-4)
    assert embedder.embed([]).shape == (0, 384)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_lanes_and_token_budgets_keep_each_texts_vector_and_order(backend: str, models_dir: Path) -> None:
    """Batches of at most N tokens, several at once, and concurrent callers: the same vector per text, in the
    caller's order."""
    loaded = load_embedder(settings_for(backend, models_dir))
    assert isinstance(loaded, OnnxEmbedder)
    path = default_model_path()
    onnx_file = onnx_model_file(models_dir / "models", model_fingerprint(path), backend)
    one = OnnxEmbedder(path, onnx_file, "x", batch_size=64, batch_tokens=1_000_000, threads=1)
    ref = one.embed(TEXTS)  # one lane, batches of 64 texts
    for lanes, batch_tokens in [(2, 512), (3, 40), (1, 1)]:
        many = OnnxEmbedder(path, onnx_file, "x", batch_size=64, batch_tokens=batch_tokens, threads=lanes)
        assert many.lanes == lanes
        assert np.allclose(many.embed(TEXTS), ref, atol=1e-5), (lanes, batch_tokens)
        assert np.allclose(many.embed(TEXTS[5:9]), ref[5:9], atol=1e-5)
    shared = OnnxEmbedder(path, onnx_file, "x", batch_tokens=64, threads=2)
    results: dict[int, np.ndarray] = {}

    def call(k: int) -> None:
        results[k] = shared.embed(TEXTS[k:] + TEXTS[:k])

    threads = [threading.Thread(target=call, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        assert np.allclose(results[k], np.roll(ref, -k, axis=0), atol=1e-5), k


@pytest.mark.slow
def test_backend_is_chosen_by_settings_cached_and_keyed_into_the_model_id(models_dir: Path) -> None:
    onnx = load_embedder(settings_for("onnx", models_dir))
    fingerprint = model_fingerprint(default_model_path())
    assert isinstance(onnx, OnnxEmbedder) and onnx.model_id == f"{fingerprint}+onnx"
    assert configured_model_id(settings_for("onnx", models_dir)) == onnx.model_id
    assert configured_model_id(settings_for("onnx-int8", models_dir)) == f"{fingerprint}+onnx-int8.2"
    assert configured_model_id(settings_for("torch", models_dir)) == fingerprint  # unchanged for torch
    assert Settings(_env_file=None).embedding_backend == "onnx-int8"  # the default  # type: ignore[call-arg]
    built = onnx_model_file(models_dir / "models", fingerprint, "onnx")
    assert built.is_file() and ".ort-" in built.name
    int8 = load_embedder(settings_for("onnx-int8", models_dir))
    assert int8.model_id == f"{fingerprint}+onnx-int8.2"
    int8_file = onnx_model_file(models_dir / "models", fingerprint, "onnx-int8", int8_kernels())
    assert int8_file.is_file() and int8_file.stat().st_size < built.stat().st_size * 0.7  # int8 layers
    stamp = built.stat().st_mtime_ns
    again = load_embedder(settings_for("onnx", models_dir))  # cached: not built again
    assert built.stat().st_mtime_ns == stamp and again.model_id == onnx.model_id
    assert not list((models_dir / "models").glob("*.partial"))


@pytest.mark.slow
def test_a_worker_with_another_backend_refuses_to_write(
    db: Engine, sessions: sessionmaker[Session], settings: Settings, models_dir: Path
) -> None:
    onnx: Embedder = load_embedder(settings_for("onnx", models_dir))
    add_items(sessions, [{"external_id": f"i{i}", "text": t} for i, t in enumerate(TEXTS[:4])])
    with EdgeVectorStore(settings.data_dir / "vectors") as store:
        SyncWorker(sessions, store, onnx, settings).drain()
        assert store.get_metadata("nearrec_items")["embedding_model"] == onnx.model_id
        # the same model under torch has another id: its vectors must not join the onnx ones
        other = _TorchIdOnly(model_fingerprint(default_model_path()), onnx)
        with pytest.raises(ModelMismatchError, match="reindex"):
            SyncWorker(sessions, store, other, settings).prepare()


class _TorchIdOnly:
    """Reports the torch backend's model id (loading torch here would only slow the test down)."""

    def __init__(self, model_id: str, inner: Embedder) -> None:
        self._id, self._inner = model_id, inner

    @property
    def model_id(self) -> str:
        return self._id

    @property
    def dim(self) -> int:
        return self._inner.dim

    def embed(self, texts: list[str]) -> np.ndarray:
        return self._inner.embed(texts)


def test_onnx_backends_need_a_mean_pooling_model_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model directory"):
        configured_model_id(
            settings_for("onnx", tmp_path).model_copy(update={"embedding_model": "some-org/x"})
        )
    (tmp_path / "1_Pooling").mkdir()
    modules = [
        {"idx": 0, "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    with pytest.raises(ConfigError, match="mean Pooling"):
        check_mean_pooling(tmp_path)
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    check_mean_pooling(tmp_path)
    check_mean_pooling(default_model_path())

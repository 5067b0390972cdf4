"""Embedders without I/O: the hashing embedder, model selection from settings, normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from nearrec.config import Settings
from nearrec.embedding import Embedder, HashingEmbedder, configured_model_id, l2_normalise, load_embedder
from nearrec.errors import ConfigError


def settings(model: str, backend: str = "torch") -> Settings:
    return Settings(embedding_model=model, embedding_backend=backend, _env_file=None)  # type: ignore[call-arg,unused-ignore,arg-type]


def test_hashing_embedder_is_deterministic_unit_length_float32() -> None:
    e = HashingEmbedder(32)
    a = e.embed(["the robot in space", "", "a a a", "x"])
    assert a.shape == (4, 32) and a.dtype == np.float32
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-6)
    assert np.array_equal(a, HashingEmbedder(32).embed(["the robot in space", "", "a a a", "x"]))
    assert e.embed([]).shape == (0, 32)
    assert isinstance(e, Embedder)


def test_hashing_embedder_puts_texts_sharing_words_closer() -> None:
    v = HashingEmbedder(256).embed(["space robot alien", "alien robot war", "love letters in paris"])
    assert v[0] @ v[1] > v[0] @ v[2]
    case = HashingEmbedder(256).embed(["Space Robot", "space robot"])
    assert np.allclose(case[0], case[1])


def test_load_embedder_picks_hashing_from_settings() -> None:
    e = load_embedder(settings("hashing:48"))
    assert isinstance(e, HashingEmbedder) and e.dim == 48 and e.model_id == "hashing:48"
    assert load_embedder(settings("hashing")).dim == 64
    assert configured_model_id(settings("hashing:48")) == "hashing:48"
    for bad in ("hashing:x", "hashing:1"):
        with pytest.raises(ConfigError, match="hashing:<dims>"):
            load_embedder(settings(bad))


def test_configured_model_id_of_the_default_model_needs_no_loading() -> None:
    model_id = configured_model_id(settings(""))
    assert model_id.startswith("all-MiniLM-L6-v2@") and len(model_id.split("@")[1]) == 12
    assert configured_model_id(settings("some-org/some-model")) == "some-org/some-model"
    assert configured_model_id(settings("", "onnx-int8")) == f"{model_id}+onnx-int8.2"  # recipe revision 2
    assert configured_model_id(settings("hashing:8", "onnx")) == "hashing:8"  # no backend for hashing


def test_l2_normalise_keeps_zero_rows() -> None:
    out = l2_normalise(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert out.dtype == np.float32 and np.allclose(out, [[0.6, 0.8], [0.0, 0.0]])
    assert l2_normalise(np.array([1.0, 1.0])).shape == (1, 2)


def test_length_batches_cover_every_text_once_longest_first_within_the_budgets() -> None:
    from nearrec.embedding.onnx import length_batches

    rng = np.random.default_rng(3)
    lengths = rng.integers(1, 300, size=500)
    for batch_size, batch_tokens, lanes in [
        (64, 512, 1),
        (64, 512, 2),
        (8, 10_000, 1),
        (64, 100, 4),
        (3, 1, 1),
    ]:
        batches = length_batches(lengths, batch_size, batch_tokens, lanes)
        order = np.concatenate(batches)
        assert sorted(order.tolist()) == list(range(500))  # every text exactly once
        assert np.all(np.diff(lengths[order]) <= 0)  # longest first, so a batch pads to its first text
        for rows in batches:
            assert 1 <= len(rows) <= batch_size
            assert len(rows) == 1 or len(rows) * lengths[rows].max() <= batch_tokens
    # few texts: split so that every lane gets some
    assert [len(b) for b in length_batches(np.array([5, 5, 5, 5, 5]), 64, 512, 2)] == [3, 2]
    assert [len(b) for b in length_batches(np.array([5, 5, 5]), 64, 512, 1)] == [3]
    assert length_batches(np.array([], dtype=int), 64, 512, 2) == []


def test_usable_cpus_is_at_least_one() -> None:
    from nearrec.embedding.onnx import usable_cpus

    assert usable_cpus() >= 1

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

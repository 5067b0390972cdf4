"""The user-vector math: recency, interaction types, ratings, profile blend, negatives."""

from __future__ import annotations

import numpy as np
import pytest

from nearrec.config import DEFAULT_INTERACTION_WEIGHTS, Settings
from nearrec.model.user_vector import UserVectorParams, build_user_vector, history_weights, type_weight

P = UserVectorParams(
    dict(DEFAULT_INTERACTION_WEIGHTS), rating_threshold=4.0, half_life=2.0, profile_weight=0.5
)
E = np.eye(4, dtype=np.float32)


def test_recency_halves_every_half_life_interactions() -> None:
    w = history_weights([("view", None)] * 5, P)
    assert np.allclose(w, [1, 0.5**0.5, 0.5, 0.5**1.5, 0.25])


def test_type_weights_ratings_and_unknown_types() -> None:
    assert type_weight("purchase", None, P) == 3.0
    assert type_weight("dislike", None, P) == -1.0
    assert type_weight("rating", 4.0, P) == 1.0 and type_weight("rating", 3.5, P) == -1.0
    assert type_weight("rating", None, P) == 1.0
    assert type_weight("bookmark", None, P) == 1.0  # unknown types count like a view
    assert np.allclose(history_weights([("like", None), ("rating", 1.0)], P), [2.0, -(0.5**0.5)])


def test_params_from_settings_and_history_limit() -> None:
    s = Settings(half_life=5.0, profile_weight=0.1, _env_file=None)  # type: ignore[call-arg,unused-ignore]
    p = UserVectorParams.from_settings(s)
    assert p.half_life == 5.0 and p.profile_weight == 0.1 and p.interaction_weights["like"] == 2.0
    assert 0.5 ** (p.history_limit / p.half_life) <= 1e-6
    assert 0.5 ** ((p.history_limit - 2) / p.half_life) > 1e-6


def test_history_only_is_the_normalised_weighted_mean() -> None:
    v = build_user_vector(None, E[:2], np.array([3.0, 1.0]))
    assert v is not None and v.dtype == np.float32
    assert np.allclose(v, np.array([3, 1, 0, 0]) / np.sqrt(10))


def test_profile_only_is_the_profile_whatever_its_weight() -> None:
    v = build_user_vector(E[2] * 5, np.zeros((0, 4)), np.zeros(0), profile_weight=0.0)
    assert v is not None and np.allclose(v, E[2])


def test_profile_is_blended_with_its_weight() -> None:
    v = build_user_vector(E[1], E[:1], np.array([1.0]), profile_weight=0.5)
    assert v is not None and np.allclose(v, np.array([1, 0.5, 0, 0]) / np.sqrt(1.25))


def test_negative_interactions_push_away() -> None:
    liked, disliked = np.array([1.0, 0.2, 0, 0]), np.array([0.2, 1.0, 0, 0])
    v = build_user_vector(None, np.stack([liked, disliked]), np.array([1.0, -1.0]))
    plain = build_user_vector(None, liked[None, :], np.array([1.0]))
    assert v is not None and plain is not None
    assert v @ disliked < plain @ disliked < 1
    assert v[1] < 0


def test_nothing_gives_no_vector() -> None:
    assert build_user_vector(None, np.zeros((0, 4)), np.zeros(0)) is None
    assert build_user_vector(None, E[:2], np.zeros(2)) is None  # all weights zero
    assert build_user_vector(None, np.stack([E[0], E[0]]), np.array([1.0, -1.0])) is None  # cancelled out


def test_shapes_must_match() -> None:
    with pytest.raises(ValueError, match="do not match"):
        build_user_vector(None, E[:2], np.ones(3))

"""skin.service.cache: the last forward passes, keyed by model and photo content."""

from __future__ import annotations

import numpy as np
import pytest

from skin.service.cache import ForwardPass, PredictionCache, photo_key
from tests.bad_uploads import skin_photo


def _pass(v: float) -> ForwardPass:
    return ForwardPass(np.array([v]), None, None)


def test_key_is_the_model_and_the_pixels():
    a, b = skin_photo(seed=1), skin_photo(seed=2)
    assert photo_key("condition", a) == photo_key("condition", a.copy())
    assert photo_key("condition", a) != photo_key("condition", b)
    assert photo_key("condition", a) != photo_key("age", a)


def test_least_recently_used_is_dropped_first():
    cache = PredictionCache(2)
    cache.put(("a",), _pass(1))
    cache.put(("b",), _pass(2))
    assert cache.get(("a",)).probs[0] == 1  # "a" is now the most recent
    cache.put(("c",), _pass(3))
    assert cache.get(("b",)) is None and cache.get(("a",)) is not None and len(cache) == 2
    cache.clear()
    assert len(cache) == 0


def test_size_zero_keeps_nothing():
    cache = PredictionCache(0)
    cache.put(("a",), _pass(1))
    assert cache.get(("a",)) is None
    with pytest.raises(ValueError, match="≥ 0"):
        PredictionCache(-1)

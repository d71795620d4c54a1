"""The last few forward passes, so that Explain after Predict on the same photo runs no model again.

Keyed by the model and the photo's pixels (a SHA-1 of them: cheaper than the
processor it saves), the cache keeps the softmax, the input tensor and, for
timm CNNs, the last feature map Grad-CAM reads; never the photo itself. The
face detector's answer is kept the same way (:class:`FaceFound`, under
:data:`FACE_DETECTOR`): Explain needs it again to pick the model's picture,
and detecting costs about as much as a model's forward pass. With both kept,
Explain finds the photo type Predict found without running anything again.
``functools.lru_cache`` does not fit: the key is computed from the photo, and
the values must be shared between threads and cleared by the benchmarks.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any, NamedTuple


class ForwardPass(NamedTuple):
    """One model's output on one photo."""

    #: softmax over the model's labels, ``(num_labels,)``
    probs: Any
    #: the processor's ``pixel_values`` the model read, ``(1, 3, H, W)``
    pixel_values: Any
    #: the last feature map (timm CNNs), or ``None``
    features: Any
    #: the photo-type gate's features, when the gate reads this model's (:mod:`skin.phototype_features`)
    gate_features: Any = None


class FaceFound(NamedTuple):
    """The face detector's answer on one photo: its largest face, or ``None`` when it found none."""

    face: Any


#: The cache key's "model" for the face detector's answers.
FACE_DETECTOR = "face-detector"


def photo_key(model_key: str, rgb) -> tuple:
    """The cache key of model ``model_key`` on the RGB PIL image ``rgb``."""
    return model_key, rgb.size, hashlib.sha1(rgb.tobytes()).hexdigest()


class PredictionCache:
    """A thread-safe least-recently-used map from :func:`photo_key` to :class:`ForwardPass`.

    ``maxsize=0`` keeps nothing (every request runs the model).
    """

    def __init__(self, maxsize: int):
        if maxsize < 0:
            raise ValueError(f"the prediction cache size must be ≥ 0, got {maxsize}")
        self.maxsize = maxsize
        self._items: OrderedDict[tuple, ForwardPass] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> ForwardPass | None:
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
            return hit

    def put(self, key: tuple, value: ForwardPass) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

"""Cheap checks that an image file on disk can be used, safe opening, and the normalisation constants.

``image_file_problem`` runs on every file while a dataset is prepared, so it
reads the header (Pillow's lazy ``open``) and the last bytes of the file, never
the whole pixel data: a truncated JPEG lacks its end-of-image marker, a
truncated PNG its ``IEND`` chunk. That keeps preparation as fast as
``datasets``' own ``imagefolder``, which checks nothing.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, UnidentifiedImageError

_TAIL = 1024  # JPEG writers may pad a few bytes after the EOI marker.

# Per-channel (RGB) mean and std that ImageNet-trained backbones normalise with: timm.data's
# IMAGENET_DEFAULT_* and IMAGENET_INCEPTION_* values, written once here so that neither the model
# factory nor the explanations import timm (seconds) just to read them; tests check they match timm's.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)


def image_file_problem(path: str | os.PathLike) -> str | None:
    """Return why ``path`` cannot be used as an image, or ``None`` if it can."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        return "file not found"
    size = os.path.getsize(path)
    if size == 0:
        return "empty file"
    try:
        with Image.open(path) as im:
            fmt = im.format
            width, height = im.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        return f"not a readable image ({type(e).__name__}: {e})"
    if width < 1 or height < 1:
        return f"image has no pixels ({width}x{height})"
    with open(path, "rb") as f:
        f.seek(max(0, size - _TAIL))
        tail = f.read()
    if fmt == "JPEG" and b"\xff\xd9" not in tail:
        return "truncated JPEG (no end-of-image marker)"
    if fmt == "PNG" and b"IEND" not in tail:
        return "truncated PNG (no IEND chunk)"
    return None


def as_rgb_array(image) -> np.ndarray:
    """PIL image or HxWx3 uint8 array → HxWx3 uint8 RGB array (no copy if possible)."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(
            f"expected a PIL image or an HxWx3 uint8 RGB array, got shape {arr.shape} "
            f"dtype {arr.dtype}; convert with PIL.Image.open(path).convert('RGB')"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"image has no pixels (shape {arr.shape})")
    return arr


def as_rgb_pil(image) -> Image.Image:
    """PIL image or HxWx3 uint8 array → RGB PIL image."""
    if isinstance(image, Image.Image):
        return image.convert("RGB") if image.mode != "RGB" else image
    return Image.fromarray(as_rgb_array(image))

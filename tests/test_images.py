"""skin.images: the cheap file check every builder runs, RGB coercion, and the normalisation constants."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from skin import images


def _encoded(fmt: str, size=(64, 48)) -> bytes:
    noise = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, fmt)
    return buf.getvalue()


def test_good_files_have_no_problem(tmp_path):
    for fmt, ext in (("JPEG", "jpg"), ("PNG", "png"), ("BMP", "bmp")):
        path = tmp_path / f"ok.{ext}"
        path.write_bytes(_encoded(fmt))
        assert images.image_file_problem(path) is None


@pytest.mark.parametrize(
    ("name", "data", "problem"),
    [("empty.jpg", b"", "empty file"), ("notes.jpg", b"just text, not an image", "not a readable image"),
     ("cut.jpg", _encoded("JPEG")[:-200], "truncated JPEG"), ("cut.png", _encoded("PNG")[:-12], "truncated PNG")],
)
def test_broken_files_are_named(tmp_path, name, data, problem):
    path = tmp_path / name
    path.write_bytes(data)
    assert problem in images.image_file_problem(path)


def test_missing_file(tmp_path):
    assert images.image_file_problem(tmp_path / "gone.jpg") == "file not found"


def test_rgb_coercion_of_pil_images_and_arrays():
    grey = Image.new("L", (5, 4), 128)
    arr = images.as_rgb_array(grey)
    assert arr.shape == (4, 5, 3) and arr.dtype == np.uint8 and (arr == 128).all()
    rgb = np.zeros((4, 5, 3), np.uint8)
    assert images.as_rgb_array(rgb) is rgb  # no copy
    assert images.as_rgb_pil(rgb).mode == "RGB" and images.as_rgb_pil(grey).mode == "RGB"
    for bad in (np.zeros((4, 5), np.uint8), np.zeros((4, 5, 3), np.float32), np.zeros((0, 5, 3), np.uint8)):
        with pytest.raises(ValueError):
            images.as_rgb_array(bad)


def test_normalisation_constants_are_timms():
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, IMAGENET_INCEPTION_MEAN, IMAGENET_INCEPTION_STD

    assert (images.IMAGENET_MEAN, images.IMAGENET_STD) == (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)
    assert (images.INCEPTION_MEAN, images.INCEPTION_STD) == (IMAGENET_INCEPTION_MEAN, IMAGENET_INCEPTION_STD)

"""The skin tone every builder estimates from its images (``dataset_scripts/_base.py``).

Every registered builder, on its fixture (``tests/layouts.py``,
``tests/fixtures_layouts.py``), has ``ita_estimated`` and
``tone_bucket_estimated`` next to its own columns (the labelled ``tone_bucket``
untouched); on synthetic skin patches of known CIELAB colour the values are
those of :func:`skin.tone.estimate_tone`; lesion close-ups leave the centre
out where face datasets use the whole image; the values are cached with the
prepared dataset (a second load calls nothing).
"""

from __future__ import annotations

import io
import math

import datasets
import numpy as np
import pytest
from PIL import Image
from skimage.color import lab2rgb, rgb2lab

import fixtures_layouts
import layouts
from dataset_scripts import _base
from skin import data
from skin.tone import TONE_BUCKETS, bucket_from_ita

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

#: One fixture maker per registered builder (DermNet's when its fixture exists).
MAKERS = {
    "ham10000": layouts.make_ham10000,
    "utkface": layouts.make_utkface,
    "pad_ufes20": layouts.make_pad_ufes20,
    "ddi": layouts.make_ddi,
    "scin": fixtures_layouts.make_scin,
    "kaggle": fixtures_layouts.make_kaggle,
    "aihub": fixtures_layouts.make_aihub,
}
if hasattr(layouts, "make_dermnet"):
    MAKERS["dermnet"] = layouts.make_dermnet
FACE_DATASETS = {"utkface", "aihub"}
LIGHT_SKIN, DARK_SKIN = (75, 8, 14), (35, 12, 18)  # CIELAB: ITA about 61 and -40 degrees


def _rgb_of_lab(L, a, b) -> np.ndarray:
    rgb = lab2rgb(np.array([[[L, a, b]]], dtype=float))
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)[0, 0]


def _ita_of(pixel) -> float:
    L, _, b = rgb2lab(np.asarray(pixel, np.uint8).reshape(1, 1, 3))[0, 0]
    return math.degrees(math.atan((L - 50) / b))


def _patch(skin, lesion=None, side=128, lesion_radius=0.42) -> np.ndarray:
    """A square of ``skin`` (CIELAB), with a central disc of ``lesion`` covering most of it if given."""
    img = np.tile(_rgb_of_lab(*skin), (side, side, 1))
    if lesion is not None:
        yy, xx = np.mgrid[:side, :side]
        disc = (yy - (side - 1) / 2) ** 2 + (xx - (side - 1) / 2) ** 2 <= (lesion_radius * side) ** 2
        img[disc] = _rgb_of_lab(*lesion)
    return img


def _builder(name: str, tmp_path):
    return data.builder_class(name)(data_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"))


def _png(tmp_path, arr, name="patch.png") -> str:
    path = tmp_path / name
    Image.fromarray(arr).save(path)
    return str(path)


def test_every_builder_has_a_fixture_here():
    assert set(MAKERS) == set(data.BUILDERS)


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_estimated_tone_columns_on_every_builder(name, tmp_path):
    layout = MAKERS[name](tmp_path)
    dsd = data.load(name, layout.data_dir, cache_dir=str(tmp_path / "cache"))
    for split, ds in dsd.items():
        assert ds.features["ita_estimated"] == datasets.Value("float32")
        assert ds.features["tone_bucket_estimated"] == datasets.Value("string")
        for ita, bucket in zip(ds["ita_estimated"], ds["tone_bucket_estimated"]):
            assert (ita is None) == (bucket is None), (name, split, ita, bucket)
            if ita is not None:
                assert -90 <= ita <= 90 and bucket == bucket_from_ita(ita) and bucket in TONE_BUCKETS
        if "tone_bucket" in ds.features:  # the labelled bucket is its own column, untouched
            assert ds.features["tone_bucket"] == datasets.Value("string")
    assert data.builder_class(name).LESION_PHOTOS is (name not in FACE_DATASETS)


def test_skin_coloured_fixture_photos_get_an_estimate(tmp_path):
    """DermNet's fixture photos are skin-coloured (the other fixtures are noise): nearly all get a bucket."""
    if "dermnet" not in MAKERS:
        pytest.skip("no DermNet fixture yet")
    layout = MAKERS["dermnet"](tmp_path)
    dsd = data.load("dermnet", layout.data_dir, cache_dir=str(tmp_path / "cache"))
    buckets = [b for ds in dsd.values() for b in ds["tone_bucket_estimated"]]
    assert sum(b is not None for b in buckets) >= 0.8 * len(buckets)


@pytest.mark.parametrize("skin, bucket", [(LIGHT_SKIN, "light"), (DARK_SKIN, "dark")])
@pytest.mark.parametrize("name", ["ham10000", "utkface"])
def test_known_light_and_dark_patches(skin, bucket, name, tmp_path):
    tone = _builder(name, tmp_path).estimated_tone(_png(tmp_path, _patch(skin)))
    assert tone["tone_bucket_estimated"] == bucket
    assert tone["ita_estimated"] == pytest.approx(_ita_of(_rgb_of_lab(*skin)), abs=1e-6)


def test_lesion_centre_left_out_of_close_ups_but_not_faces(tmp_path):
    # Dark, still skin-coloured disc over ~55 % of the picture: the whole image's median is the disc's,
    # what is left once the centre (and the darkest tenth of the rest) is dropped is mostly light skin.
    path = _png(tmp_path, _patch(LIGHT_SKIN, lesion=DARK_SKIN))
    lesion = _builder("ham10000", tmp_path).estimated_tone(path)
    face = _builder("utkface", tmp_path).estimated_tone(path)
    assert lesion["ita_estimated"] == pytest.approx(_ita_of(_rgb_of_lab(*LIGHT_SKIN)), abs=1e-6)
    assert lesion["tone_bucket_estimated"] == "light"
    assert face["tone_bucket_estimated"] == "dark"


def test_crops_written_as_bytes_are_estimated_like_files(tmp_path):
    arr = _patch(LIGHT_SKIN, lesion=DARK_SKIN, lesion_radius=0.2)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    builder = _builder("aihub", tmp_path)
    assert builder.estimated_tone({"bytes": buf.getvalue(), "path": None}) == builder.estimated_tone(
        _png(tmp_path, arr))


def test_jpeg_is_decoded_small_and_agrees_with_the_app_size(tmp_path):
    """The builders' small work copy (JPEG draft decoding) gives the app's bucket on a smooth photo."""
    from skin.tone import estimate_tone

    path = tmp_path / "face.jpg"
    arr = _patch((62, 11, 17), side=400)
    Image.fromarray(arr).save(path, quality=92)
    ours = _builder("utkface", tmp_path).estimated_tone(str(path))
    with Image.open(path) as im:
        app = estimate_tone(im)
    assert ours["tone_bucket_estimated"] == app["bucket"]
    assert ours["ita_estimated"] == pytest.approx(app["ita"], abs=1.0)


def test_undecodable_pixels_name_the_file(tmp_path):
    path = tmp_path / "broken.jpg"
    Image.fromarray(_patch(LIGHT_SKIN)).save(path)
    raw = path.read_bytes()
    path.write_bytes(raw[:200] + b"\x00" * 50 + raw[-2:])  # header and end marker kept, scan data gone
    with pytest.raises(ValueError, match="broken.jpg"):
        _builder("ham10000", tmp_path).estimated_tone(str(path))


def test_cached_with_the_prepared_dataset(tmp_path, monkeypatch):
    calls = []
    real = _base.estimate_tone

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(_base, "estimate_tone", counting)
    layout = layouts.make_ham10000(tmp_path)
    cache = str(tmp_path / "cache")
    first = data.load("ham10000", layout.data_dir, cache_dir=cache)
    assert len(calls) == layout.n_good
    second = data.load("ham10000", layout.data_dir, cache_dir=cache)
    assert len(calls) == layout.n_good, "a second load recomputed the tone instead of reading the cache"
    assert {k: ds["ita_estimated"] for k, ds in first.items()} == {k: ds["ita_estimated"] for k, ds in second.items()}
    # a new revision of what the base class writes is prepared again, never served from the old cache
    monkeypatch.setattr(_base.SkinImageBuilder, "PREPARED_REVISION", "test-next")
    data.load("ham10000", layout.data_dir, cache_dir=cache)
    assert len(calls) == 2 * layout.n_good

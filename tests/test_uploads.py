"""skin.uploads: raw bytes in, upright RGB out; every refusal names the problem and the fix."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from skin.uploads import WORK_SIDE, UploadError, load_image, read_upload, to_rgb
from tests.bad_uploads import corpus, decompression_bomb, png16, sideways_photo, skin_photo

LIMIT = 1024 * 1024


def _jpeg(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.mark.parametrize("item", [c for c in corpus(LIMIT) if c.expect == "error"], ids=lambda c: c.name)
def test_bad_upload_refused_with_named_problem(item):
    with pytest.raises(UploadError) as err:
        load_image(item.data, max_bytes=LIMIT)
    assert item.keyword.lower() in str(err.value).lower()
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("item", [c for c in corpus(LIMIT) if c.expect == "ok"], ids=lambda c: c.name)
def test_odd_upload_converted_with_note(item):
    loaded = load_image(item.data, max_bytes=LIMIT)
    assert loaded.image.mode == "RGB"
    assert any(item.keyword.lower() in n.lower() for n in loaded.notes), loaded.notes


@pytest.mark.parametrize(
    ("name", "code"),
    [("not_image", "not_image"), ("truncated_jpeg", "truncated"), ("truncated_png", "truncated"),
     ("empty", "empty"), ("thumbnail", "too_small"), ("elongated", "aspect"),
     ("decompression_bomb", "too_many_pixels"), ("pdf_renamed", "not_image"), ("very_large_file", "too_large_file")],
)
def test_refusals_carry_a_machine_readable_code(name, code):
    item = next(c for c in corpus(LIMIT) if c.name == name)
    with pytest.raises(UploadError) as err:
        load_image(item.data, max_bytes=LIMIT)
    assert err.value.code == code


@pytest.mark.parametrize(
    ("head", "what"),
    [(b"PK\x03\x04rest", "ZIP"), (b"\x1f\x8b\x08\x00", "gzip"), (b"  \n<SVG xmlns=", "SVG"),
     (b"\x00\x00\x00\x18ftypmp42", "video"), (b"\x00\x00\x00\x18ftypqt  ", "video")],
)
def test_documents_are_recognised_by_their_first_bytes(head, what):
    with pytest.raises(UploadError, match=what) as err:
        load_image(head + b"\x00" * 100)
    assert err.value.code == "not_image"


def test_not_bytes_is_refused():
    with pytest.raises(UploadError, match="bytes of an image file"):
        load_image(np.zeros((64, 64, 3), np.uint8))


def test_png16_is_not_white():
    arr = np.asarray(load_image(png16()).image, dtype=float)
    # source spans 20000..50000 of 65535 → 78..195 of 255
    assert 70 < arr.min() + 10 and arr.max() < 215
    assert 120 < arr.mean() < 150


@pytest.mark.parametrize("fmt", ["JPEG", "HEIF", "AVIF"])
def test_sideways_photo_is_upright(fmt):
    data = sideways_photo(fmt)
    loaded = load_image(data)
    assert loaded.format == fmt
    assert any("rotated upright" in n for n in loaded.notes), loaded.notes
    im = loaded.image
    assert im.size == (320, 240)
    arr = np.asarray(im).astype(int)
    top, left = arr[:16].mean(axis=(0, 1)), arr[:, :16].mean(axis=(0, 1))
    assert top[0] > 200 and top[1] < 60, "the red band must be on top once upright"
    assert left[1] > 100, "and not on the side where it is stored"
    if fmt == "JPEG":  # HEIF readers hand out the pixels already turned (libheif applies the rotation box)
        raw = Image.open(io.BytesIO(data))
        assert raw.size == (240, 320)  # stored sideways
        assert np.asarray(raw.convert("RGB"))[:, :16, 1].astype(int).mean() < 60


@pytest.mark.parametrize(("brand", "name"), [(b"heic", "HEIC"), (b"mif1", "HEIF"), (b"avif", "AVIF")])
def test_damaged_phone_formats_are_named(brand, name):
    """A HEIC / AVIF whose data is missing is refused as damaged, naming its format (not 'not an image')."""
    with pytest.raises(UploadError, match=name) as err:
        load_image(b"\x00\x00\x00\x18ftyp" + brand + b"\x00" * 100)
    assert err.value.code == "corrupt"


def test_phone_format_reads_like_its_jpeg():
    """A HEIC of a photo decodes to the same pixels as the JPEG of it, within the two codecs' loss."""
    photo = skin_photo((320, 240), seed=5)
    arrays = []
    for fmt in ("JPEG", "HEIF"):
        buf = io.BytesIO()
        photo.save(buf, fmt, quality=92)
        arrays.append(np.asarray(load_image(buf.getvalue()).image, dtype=float))
    assert arrays[0].shape == arrays[1].shape == (240, 320, 3)
    assert np.abs(arrays[0] - np.asarray(photo, float)).mean() < 4
    assert np.abs(arrays[1] - np.asarray(photo, float)).mean() < 4


def test_bomb_is_refused_before_decoding():
    import tracemalloc

    data = decompression_bomb(20000)
    assert len(data) < 200_000
    tracemalloc.start()
    with pytest.raises(UploadError, match="megapixels"):
        load_image(data)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50 * 2**20


def test_large_photo_is_downscaled_with_draft():
    loaded = load_image(_jpeg(skin_photo((3000, 2000))))
    assert max(loaded.image.size) <= WORK_SIDE
    assert loaded.original_size == (3000, 2000)
    assert any("downscaled" in n for n in loaded.notes)


def test_summary_is_plain_json():
    loaded = load_image(_jpeg(skin_photo((3000, 2000))))
    summary = json.loads(json.dumps(loaded.summary()))
    assert summary["format"] == "JPEG" and summary["original_size"] == [3000, 2000]
    assert max(summary["width"], summary["height"]) <= WORK_SIDE and summary["notes"] == loaded.notes


def test_transparent_pixels_become_white_not_garbage():
    rgba = Image.new("RGBA", (80, 80), (10, 200, 30, 0))
    assert np.asarray(to_rgb(rgba)).min() == 255


def test_wide_greyscale_modes_are_scaled_not_clipped():
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64)
    notes: list[str] = []
    as_i = np.asarray(to_rgb(Image.fromarray(ramp.astype(np.int32), "I"), notes))
    assert as_i.shape == (64, 64, 3) and as_i.max() == 255 and 120 < as_i.mean() < 135
    assert any("32-bit" in n for n in notes)
    unit = np.asarray(to_rgb(Image.fromarray((ramp / 65535).astype(np.float32), "F")))
    assert unit.max() == 255 and 120 < unit.mean() < 135  # [0, 1] floats are scaled up, not left black
    assert (np.asarray(to_rgb(Image.new("RGB", (4, 4), (1, 2, 3)))) == (1, 2, 3)).all()


def test_path_input_and_missing_file(tmp_path):
    p = tmp_path / "a.jpg"
    p.write_bytes(_jpeg(skin_photo()))
    assert load_image(p).image.size == (320, 240)
    with pytest.raises(UploadError, match="upload the photo again"):
        load_image(tmp_path / "gone.jpg")


def test_read_upload_refuses_empty_and_over_size_files_before_reading(tmp_path):
    empty, big = tmp_path / "empty.jpg", tmp_path / "big.jpg"
    empty.write_bytes(b"")
    big.write_bytes(b"\xff" * 2048)
    with pytest.raises(UploadError, match="empty") as err:
        read_upload(empty)
    assert err.value.code == "empty"
    with pytest.raises(UploadError, match="limit") as err:
        read_upload(big, max_bytes=1024)
    assert err.value.code == "too_large_file"
    assert read_upload(big) == b"\xff" * 2048


def test_bench_uploads_reads_every_phone_format(tmp_path):
    """bench/bench_uploads.py on a small photo: one row per format, both readers, the same output size."""
    import json

    from tests.bench_scripts import load_bench

    bench = load_bench("bench_uploads")
    out = tmp_path / "uploads.json"
    assert bench.main(["--repeats", "1", "--size", "640", "480", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["format"] for r in rows] == ["JPEG", "HEIF", "AVIF", "WEBP"]
    assert all(r["decoded_to"] == [640, 480] and r["load_image_s"] > 0 and r["plain_pillow_s"] > 0 for r in rows)


def test_large_photo_is_shrunk_as_well_as_by_lanczos_alone():
    """The two-step shrink (REDUCING_GAP) of a large non-JPEG gives Lanczos's result within 45 dB PSNR."""
    photo = skin_photo((3200, 2400), seed=7)  # over 3x the work side: the first step halves it
    buf = io.BytesIO()
    photo.save(buf, "BMP")
    loaded = load_image(buf.getvalue(), max_bytes=len(buf.getvalue())).image
    fair = photo.copy()
    fair.thumbnail((1024, 1024), Image.Resampling.LANCZOS, reducing_gap=None)
    assert loaded.size == fair.size == (1024, 768)
    mse = np.mean((np.asarray(loaded, float) - np.asarray(fair, float)) ** 2)
    assert mse > 0, "the two-step shrink was not used"
    assert 10 * np.log10(255**2 / mse) > 45

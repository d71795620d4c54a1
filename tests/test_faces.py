"""Faces: a real detector on real faces (astronaut, UTKFace), landmarks in the right places."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skin import faces
from skin.faces import CHIP_SHIFT, CHIP_SIDE, LANDMARK_NAMES, Face, crop_face, detect_faces, face_chip, largest_face

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())  # 512x512, ships in the scikit-image wheel


def _centre(box):
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def _check_landmarks(face: Face):
    """MTCNN's five landmarks lie in the face box, in a face's order (left/right as seen in the image)."""
    lm = face.landmarks
    assert set(lm) == set(LANDMARK_NAMES)
    x1, y1, x2, y2 = face.box
    assert all(x1 <= x <= x2 and y1 <= y <= y2 for x, y in lm.values()), (face.box, lm)
    assert lm["left_eye"][0] < lm["nose"][0] < lm["right_eye"][0]
    assert lm["mouth_left"][0] < lm["mouth_right"][0]
    eye_y = (lm["left_eye"][1] + lm["right_eye"][1]) / 2
    assert eye_y < lm["nose"][1] < (lm["mouth_left"][1] + lm["mouth_right"][1]) / 2


def test_astronaut_one_face_with_plausible_box_and_landmarks(astronaut):
    found = detect_faces(astronaut)
    assert len(found) == 1
    face = found[0]
    assert face.score is not None and face.score > 0.99
    cx, cy = _centre(face.box)
    # Eileen Collins' face: about x 180-270, y 60-175 in the 512x512 picture
    assert 200 < cx < 250 and 90 < cy < 150, face.box
    assert 60 < face.width < 140 and 70 < face.height < 160, face.box
    _check_landmarks(face)
    assert largest_face(astronaut) == face
    # an array gives the same answer as a PIL image
    same = detect_faces(np.asarray(astronaut))[0]
    np.testing.assert_allclose(same.box, face.box, atol=1e-3)


def test_crop_face_adds_the_margin_and_stays_inside(astronaut):
    face = largest_face(astronaut)
    tight = crop_face(astronaut, face, margin=0.0)
    loose = crop_face(astronaut, face)
    assert abs(tight.width - face.width) <= 1 and abs(tight.height - face.height) <= 1
    assert loose.width == pytest.approx(1.4 * face.width, abs=2)
    assert loose.height == pytest.approx(1.4 * face.height, abs=2)
    whole = crop_face(astronaut, face, margin=5.0)  # clipped to the picture
    assert whole.size == astronaut.size
    with pytest.raises(ValueError, match="margin"):
        crop_face(astronaut, face, margin=-0.1)


def test_face_chip_is_the_square_the_chips_frame(astronaut):
    face = largest_face(astronaut)
    chip = face_chip(astronaut, face)
    side = CHIP_SIDE * face.width
    assert chip.width == pytest.approx(side, abs=2) and chip.height == pytest.approx(side, abs=2)
    edge = Face((0.0, 0.0, face.width, face.height), face.score, {})  # a face in the corner: clipped
    clipped = face_chip(astronaut, edge)
    assert clipped.width < side - 2 and clipped.height <= round(side) + 1


def test_the_chip_constants_are_the_measured_medians():
    """CHIP_SIDE / CHIP_SHIFT are bench/bench_face_crop.py's medians over UTKFace training chips."""
    import json

    result = json.loads((Path(__file__).resolve().parents[1] / "bench" / "results" / "face_crop.json").read_text())
    geometry = result["geometry_train"]
    assert geometry["n"] >= 250
    assert CHIP_SIDE == pytest.approx(geometry["side_over_box_width_p10_50_90"][1], abs=0.005)
    assert CHIP_SHIFT == pytest.approx(geometry["centre_shift_over_box_height_p10_50_90"][1], abs=0.0005)
    # and on validation chips the chip-shaped crop beat the old one in every surround
    assert all(r["mae_gain_of_face_chip"]["mean"] > 2 * r["mae_gain_of_face_chip"]["se"]
               for r in result["validation"].values())


@pytest.mark.needs_shared_data
def test_face_chip_of_a_pasted_utkface_chip_recovers_the_chip():
    """A chip pasted into a larger grey picture: the detector's box, framed by face_chip, lands on the chip."""
    pad, overlaps = 100, []
    for path in _utk_chips(12):
        with Image.open(path) as im:
            chip = im.convert("RGB")
        picture = Image.new("RGB", (chip.width + 2 * pad, chip.height + 2 * pad), (128, 128, 128))
        picture.paste(chip, (pad, pad))
        face = largest_face(picture)
        if face is None:
            continue
        x1, y1 = pad, pad
        x2, y2 = pad + chip.width, pad + chip.height
        side = CHIP_SIDE * face.width
        cx, cy = _centre(face.box)
        cy += CHIP_SHIFT * face.height
        a = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
        inter = max(0, min(a[2], x2) - max(a[0], x1)) * max(0, min(a[3], y2) - max(a[1], y1))
        overlaps.append(inter / (side * side + chip.width * chip.height - inter))
        assert face_chip(picture, face).size == (round(a[2]) - round(a[0]), round(a[3]) - round(a[1]))
    assert len(overlaps) >= 10 and np.median(overlaps) > 0.8, overlaps


def test_large_photos_are_searched_downscaled_and_boxes_scaled_back(astronaut):
    small = largest_face(astronaut)
    big = largest_face(astronaut.resize((2048, 2048)))
    np.testing.assert_allclose(np.array(big.box) / 4, small.box, atol=6)
    np.testing.assert_allclose(np.array(big.landmarks["nose"]) / 4, small.landmarks["nose"], atol=4)


@pytest.mark.parametrize(
    "blank",
    [np.zeros((240, 320, 3), np.uint8), np.full((300, 300, 3), 200, np.uint8)],
    ids=["black", "grey"],
)
@pytest.mark.parametrize("backend", ["mtcnn", "opencv"])
def test_blank_image_has_no_face(blank, backend):
    assert detect_faces(blank, backend=backend) == []
    assert largest_face(blank, backend=backend) is None


@pytest.mark.parametrize("size", [(1, 1), (12, 12), (19, 40)])
@pytest.mark.parametrize("backend", ["mtcnn", "opencv"])
def test_images_too_small_for_a_face_give_no_face(size, backend):
    assert detect_faces(np.zeros((*size, 3), np.uint8), backend=backend) == []


def test_opencv_backend_finds_the_astronaut_with_a_box_only(astronaut):
    found = detect_faces(astronaut, backend="opencv")
    assert len(found) >= 1
    face = found[0]
    assert face.score is None and face.landmarks is None
    assert 200 < _centre(face.box)[0] < 250 and 90 < _centre(face.box)[1] < 150, face.box


def test_falls_back_to_opencv_with_a_clear_warning_when_mtcnn_cannot_import(astronaut, monkeypatch):
    def broken():
        raise ImportError("No module named 'facenet_pytorch'")

    monkeypatch.setattr(faces, "_mtcnn_class", broken)
    monkeypatch.setattr(faces, "_DETECTORS", {})
    monkeypatch.setattr(faces, "_MTCNN_ERROR", [])
    with pytest.warns(RuntimeWarning, match="falling back to OpenCV"):
        found = detect_faces(astronaut)
    assert found and found[0].landmarks is None
    with pytest.raises(ImportError):
        detect_faces(astronaut, backend="mtcnn")


def test_bad_arguments_raise_value_errors(astronaut):
    with pytest.raises(ValueError, match="backend"):
        detect_faces(astronaut, backend="dlib")
    with pytest.raises(ValueError, match="min_score"):
        detect_faces(astronaut, min_score=2)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        detect_faces(np.zeros((10, 10), np.uint8))


def _utk_chips(n: int) -> list[Path]:
    folder = SHARED / "utkface" / "UTKFace"
    if not folder.is_dir():
        pytest.skip(f"UTKFace not found at {folder} (needs ../shared/data)")
    files = sorted(folder.glob("*.jpg"))
    return files[7 :: max(1, len(files) // n)][:n]


@pytest.mark.needs_shared_data
def test_utkface_chips_faces_found_with_landmarks_in_order():
    chips = _utk_chips(30)
    largest_face(Image.new("RGB", (64, 64)))  # load the detector outside the timing
    found, seconds = 0, 0.0
    for path in chips:
        with Image.open(path) as im:
            im = im.convert("RGB")
        start = time.perf_counter()
        face = largest_face(im)
        seconds += time.perf_counter() - start
        if face is None:
            continue
        found += 1
        _check_landmarks(face)
    rate = found / len(chips)
    print(f"\nUTKFace: face found in {found}/{len(chips)} chips ({rate:.0%}), "
          f"{seconds / len(chips) * 1000:.0f} ms each")
    assert rate >= 0.9


def test_the_tone_of_a_portrait_is_read_as_the_chips_were(astronaut):
    """The app's tone bucket of a portrait (``photo_tone``) is read in the chip-shaped square, as the age
    model's card buckets were read on whole UTKFace chips: the astronaut's chip pasted onto the orange cat
    keeps its own bucket; the box + 0.2 crop used before took in the fur and moved it to another bucket."""
    from skimage import data

    from skin.service.views import photo_tone
    from skin.tone import estimate_tone

    chip = face_chip(astronaut, largest_face(astronaut)).resize((200, 200))
    own = estimate_tone(chip)
    picture = Image.fromarray(data.chelsea()).convert("RGB").resize((400, 400))
    picture.paste(chip, (100, 100))
    face = largest_face(picture)
    served = photo_tone(picture, face)
    before = estimate_tone(crop_face(picture, face, 0.2))
    assert served["source"] == "face" and served["bucket"] == own["bucket"]
    assert abs(served["ita"] - own["ita"]) < 10 < abs(before["ita"] - own["ita"])
    assert before["bucket"] != own["bucket"]


def test_bench_face_tone_pastes_the_chip_as_the_crop_bench_does():
    """bench_face_tone's pictures: the chip in the middle of a canvas PAD wider on every side, as in
    bench_face_crop, behind a grey canvas or a real photograph."""
    from tests.bench_scripts import load_bench

    bench = load_bench("bench_face_tone")
    chip = Image.new("RGB", (200, 160), (200, 150, 120))
    pictures = {name: paste(chip) for name, paste in bench.surrounds().items()}
    assert set(pictures) == {"grey", *bench.BACKGROUNDS}
    for name, picture in pictures.items():
        assert picture.size == (200 + 2 * bench.PAD, 160 + 2 * bench.PAD), name
        assert picture.crop((bench.PAD, bench.PAD, bench.PAD + 200, bench.PAD + 160)).getcolors() == \
            [(200 * 160, (200, 150, 120))], name
    assert pictures["grey"].getpixel((0, 0)) == (128, 128, 128)
    assert pictures["chelsea"].getpixel((0, 0)) != (128, 128, 128)

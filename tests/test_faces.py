"""Faces: a real detector on real faces (astronaut, UTKFace), regions in the right places."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skin import faces
from skin.faces import (
    LANDMARK_NAMES,
    REGION_NAMES,
    Face,
    crop_face,
    crop_regions,
    detect_faces,
    face_landmarks,
    largest_face,
    region_boxes,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())  # 512x512, ships in the scikit-image wheel


def _centre(box):
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def _check_regions(image: Image.Image, face: Face):
    boxes = region_boxes(face)
    assert set(boxes) == set(REGION_NAMES)
    crops = crop_regions(image, face)
    for name in ("forehead", "left_cheek", "right_cheek", "nose", "chin"):
        assert name in crops, f"{name} missing"
        w, h = crops[name].size
        assert 2 <= w <= image.width and 2 <= h <= image.height
    # vertical order: forehead above the cheeks, the cheeks above the chin
    assert boxes["forehead"][3] <= boxes["left_cheek"][1] and boxes["forehead"][3] <= boxes["right_cheek"][1]
    assert boxes["left_cheek"][3] <= boxes["chin"][1] and boxes["right_cheek"][3] <= boxes["chin"][1]
    assert _centre(boxes["forehead"])[1] < _centre(boxes["nose"])[1] < _centre(boxes["chin"])[1]
    # left/right as seen in the image, the nose between the cheeks
    assert _centre(boxes["left_cheek"])[0] < _centre(boxes["nose"])[0] < _centre(boxes["right_cheek"])[0]
    # the cheeks and the nose lie inside the face box
    x1, y1, x2, y2 = face.box
    for name in ("left_cheek", "right_cheek", "nose"):
        cx, cy = _centre(boxes[name])
        assert x1 <= cx <= x2 and y1 <= cy <= y2, name


def test_astronaut_one_face_with_plausible_box_and_landmarks(astronaut):
    found = detect_faces(astronaut)
    assert len(found) == 1
    face = found[0]
    assert face.score is not None and face.score > 0.99
    cx, cy = _centre(face.box)
    # Eileen Collins' face: about x 180-270, y 60-175 in the 512x512 picture
    assert 200 < cx < 250 and 90 < cy < 150, face.box
    assert 60 < face.width < 140 and 70 < face.height < 160, face.box
    lm = face.landmarks
    assert set(lm) == set(LANDMARK_NAMES)
    assert lm["left_eye"][0] < lm["right_eye"][0] and lm["mouth_left"][0] < lm["mouth_right"][0]
    eye_y = (lm["left_eye"][1] + lm["right_eye"][1]) / 2
    assert eye_y < lm["nose"][1] < lm["mouth_left"][1]
    assert largest_face(astronaut) == face
    # an array gives the same answer as a PIL image
    same = detect_faces(np.asarray(astronaut))[0]
    np.testing.assert_allclose(same.box, face.box, atol=1e-3)


def test_astronaut_regions_in_the_right_order(astronaut):
    _check_regions(astronaut, largest_face(astronaut))


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


def test_opencv_backend_finds_the_astronaut_and_regions_come_from_the_box(astronaut):
    found = detect_faces(astronaut, backend="opencv")
    assert len(found) >= 1
    face = found[0]
    assert face.score is None and face.landmarks is None
    assert 200 < _centre(face.box)[0] < 250 and 90 < _centre(face.box)[1] < 150, face.box
    lm = face_landmarks(face)  # placed from box proportions
    assert face.box[0] < lm["left_eye"][0] < lm["nose"][0] < lm["right_eye"][0] < face.box[2]
    _check_regions(astronaut, face)


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


def test_region_geometry_from_known_landmarks():
    # eyes 100 px apart at y=200; nose tip at y=260; mouth corners at y=300
    face = Face(
        box=(150, 120, 350, 380),
        score=1.0,
        landmarks={
            "left_eye": (200, 200),
            "right_eye": (300, 200),
            "nose": (250, 260),
            "mouth_left": (215, 300),
            "mouth_right": (285, 300),
        },
    )
    boxes = region_boxes(face)
    np.testing.assert_allclose(boxes["forehead"], (190, 95, 310, 155))
    np.testing.assert_allclose(boxes["left_cheek"], (165, 230, 215, 280))
    np.testing.assert_allclose(boxes["right_cheek"], (285, 230, 335, 280))
    np.testing.assert_allclose(boxes["nose"], (230, 215, 270, 265))
    np.testing.assert_allclose(boxes["chin"], (215, 330, 285, 375))
    # crops are clipped to the image, and regions cut off entirely are left out
    img = Image.new("RGB", (400, 320))
    crops = crop_regions(img, face)
    assert crops["left_cheek"].size == (50, 50)
    assert "chin" not in crops and crops["forehead"].size == (120, 60)


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
def test_utkface_chips_faces_found_and_regions_ordered():
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
        _check_regions(im, face)
    rate = found / len(chips)
    print(f"\nUTKFace: face found in {found}/{len(chips)} chips ({rate:.0%}), {seconds / len(chips) * 1000:.0f} ms each")
    assert rate >= 0.9

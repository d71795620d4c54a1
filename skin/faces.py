"""Find faces: the service refuses portraits for close-up models and crops the face for the age model.

Detectors, both with weights inside their PyPI wheels (nothing is downloaded):

* **MTCNN** (Zhang et al. 2016, "Joint face detection and alignment using
  multi-task cascaded convolutional networks", IEEE SPL 23(10)) from
  ``facenet-pytorch``: boxes, a confidence and five landmarks (eye centres,
  nose tip, mouth corners). Preferred. Runs on the CPU; the torch thread count
  is left as the caller set it.
* **OpenCV Haar cascade** (Viola & Jones 2001, ``haarcascade_frontalface_default.xml``
  from ``opencv-python-headless``): boxes only, no score, no landmarks. Used
  when MTCNN cannot be imported (a warning says why) or when asked for with
  ``backend="opencv"``.

Each detector is built once, on first use, and cached for the process.

Left and right landmarks are **as seen in the image**: ``left_eye`` is the eye
on the image's left, which is the person's right eye in an unmirrored photo and
their left one in a mirrored selfie; a single photo cannot tell which it is.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass

import numpy as np

from skin.images import as_rgb_pil

# MTCNN's own default stage thresholds find faces down to ~0.6 confidence;
# keeping >= 0.9 drops most false alarms on skin close-ups, patterned cloth and
# lesions while true faces score > 0.99 (UTKFace chips, skimage's astronaut).
MIN_SCORE = 0.9
# Smallest face searched for: 20 px, or a tenth of the image's short side if
# larger (a photo for skin analysis shows the face large; not searching for tiny
# faces saves the costliest image-pyramid levels and some false alarms).
MIN_FACE_SIZE = 20
MIN_FACE_FRACTION = 0.1
# MTCNN misplaces box and landmarks when the face touches the frame (tight
# crops such as UTKFace's aligned chips: eye landmarks land on the brow or
# hairline), because its refinement stages see the face cut off, and the Haar
# cascade misses such faces (79 of 142 UTKFace chips found unpadded, 134
# padded). Both search a copy padded by a grey border of this fraction of the
# long side.
PAD_FRACTION = 0.2
# Large photos are searched at this long side (faces in a skin-analysis photo
# are large): keeps detection ~constant time; boxes are scaled back.
DETECT_SIDE = 1024

# The square UTKFace's aligned and cropped chips take around a face, against MTCNN's box of that face:
# side CHIP_SIDE x the box width, centre CHIP_SHIFT x the box height below the box centre (medians over
# 300 training chips, bench/bench_face_crop.py, bench/results/face_crop.json). The age model, trained on
# chips, is shown the same framing (face_chip): the box widened by 0.2 showed it a smaller face, higher.
CHIP_SIDE = 1.19
CHIP_SHIFT = 0.066

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

_DETECTORS: dict[str, object] = {}
_MTCNN_ERROR: list[str] = []  # why MTCNN could not be loaded, once known


@dataclass(frozen=True)
class Face:
    """A detected face. ``box`` is (x1, y1, x2, y2) in pixels of the input image,
    clipped to it; ``score`` the detector's confidence (``None`` for OpenCV,
    which gives none); ``landmarks`` maps :data:`LANDMARK_NAMES` to (x, y), or
    is ``None`` when the detector gives none."""

    box: tuple[float, float, float, float]
    score: float | None = None
    landmarks: dict[str, tuple[float, float]] | None = None

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)


def _mtcnn_class():
    """``facenet_pytorch.MTCNN`` (its weights ship in the wheel).

    facenet-pytorch is installed with ``--no-deps`` (its pins are stale); its
    package ``__init__`` imports ``requests``, which requirements.txt provides.
    """
    from facenet_pytorch import MTCNN

    return MTCNN


def _get_mtcnn():
    if "mtcnn" not in _DETECTORS:
        MTCNN = _mtcnn_class()
        _DETECTORS["mtcnn"] = MTCNN(keep_all=True, min_face_size=MIN_FACE_SIZE, device="cpu")
    return _DETECTORS["mtcnn"]


def _get_opencv():
    if "opencv" not in _DETECTORS:
        try:
            import cv2
        except ImportError as e:
            raise ImportError(
                "the OpenCV face detector needs opencv-python-headless: pip install opencv-python-headless"
            ) from e
        path = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
        cascade = cv2.CascadeClassifier(path)
        if cascade.empty():
            raise RuntimeError(f"could not load the Haar cascade {path}: reinstall opencv-python-headless")
        _DETECTORS["opencv"] = cascade
    return _DETECTORS["opencv"]


def _resolve_backend(backend: str) -> str:
    if backend not in ("auto", "mtcnn", "opencv"):
        raise ValueError(f"backend must be 'auto', 'mtcnn' or 'opencv', got {backend!r}")
    if backend != "auto":
        return backend
    if "mtcnn" in _DETECTORS:
        return "mtcnn"
    if _MTCNN_ERROR:
        return "opencv"
    try:
        _get_mtcnn()
        return "mtcnn"
    except ImportError as e:
        _MTCNN_ERROR.append(str(e))
        warnings.warn(
            f"MTCNN face detector unavailable ({e}); falling back to OpenCV's Haar cascade, which gives "
            "no landmarks and misses more faces. Install facenet-pytorch==2.6.0 "
            "(--no-deps) with torch and torchvision for the better detector.",
            RuntimeWarning,
            stacklevel=3,
        )
        return "opencv"


def _detect_mtcnn(pil, min_score: float, min_face: float) -> list[Face]:
    """MTCNN on the image padded with a grey border of :data:`PAD_FRACTION`.

    Calls the ``detect_face`` function that ``MTCNN.detect`` itself wraps, so
    the smallest face size can be set per call without mutating the shared,
    cached detector.
    """
    import torch
    from PIL import ImageOps

    detector = _get_mtcnn()
    pad = int(round(PAD_FRACTION * max(pil.size)))
    padded = ImageOps.expand(pil, border=pad, fill=(128, 128, 128)) if pad else pil
    detect_face = sys.modules[type(detector).__module__].detect_face
    with torch.inference_mode():
        batch_boxes, batch_points = detect_face(
            padded, min_face, detector.pnet, detector.rnet, detector.onet,
            detector.thresholds, detector.factor, detector.device,
        )
    boxes, points = np.asarray(batch_boxes[0], dtype=float), np.asarray(batch_points[0], dtype=float)
    faces = []
    for row, pts in zip(boxes.reshape(-1, 5), points.reshape(-1, 5, 2)):
        if row[4] < min_score:
            continue
        landmarks = {name: (float(x) - pad, float(y) - pad) for name, (x, y) in zip(LANDMARK_NAMES, pts)}
        faces.append(Face(tuple(float(v) - pad for v in row[:4]), float(row[4]), landmarks))
    return faces


def _detect_opencv(pil, min_face: float) -> list[Face]:
    import cv2

    gray = cv2.equalizeHist(cv2.cvtColor(np.asarray(pil), cv2.COLOR_RGB2GRAY))
    pad = int(round(PAD_FRACTION * max(pil.size)))  # a face touching the frame is missed otherwise
    gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=128)
    found = _get_opencv().detectMultiScale(
        gray, scaleFactor=1.1, minNeighbors=5, minSize=(int(min_face), int(min_face))
    )
    return [
        Face((float(x - pad), float(y - pad), float(x + w - pad), float(y + h - pad)))
        for x, y, w, h in np.reshape(found, (-1, 4))
    ]


def detect_faces(image, *, backend: str = "auto", min_score: float = MIN_SCORE) -> list[Face]:
    """All faces in a PIL image or HxWx3 uint8 array, largest first.

    ``backend``: ``"auto"`` (MTCNN, else OpenCV with a warning), ``"mtcnn"``
    or ``"opencv"``. ``min_score`` applies to MTCNN's confidence. An image
    without a face, or too small to hold one of :data:`MIN_FACE_SIZE` px,
    gives an empty list.
    """
    if not 0.0 <= min_score <= 1.0:
        raise ValueError(f"min_score is a probability in [0, 1], got {min_score}")
    pil = as_rgb_pil(image)
    width, height = pil.size
    scale = 1.0
    if max(width, height) > DETECT_SIDE:
        from PIL import Image

        scale = DETECT_SIDE / max(width, height)
        pil = pil.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BILINEAR)
    name = _resolve_backend(backend)
    if min(pil.size) < MIN_FACE_SIZE:  # no face we search for fits (and MTCNN fails on it)
        return []
    min_face = max(MIN_FACE_SIZE, MIN_FACE_FRACTION * min(pil.size))
    faces = _detect_mtcnn(pil, min_score, min_face) if name == "mtcnn" else _detect_opencv(pil, min_face)
    faces = [_rescale_and_clip(f, 1.0 / scale, width, height) for f in faces]
    faces = [f for f in faces if f.area > 0]
    return sorted(faces, key=lambda f: f.area, reverse=True)


def _rescale_and_clip(face: Face, factor: float, width: int, height: int) -> Face:
    x1, y1, x2, y2 = (v * factor for v in face.box)
    box = (min(max(x1, 0.0), width), min(max(y1, 0.0), height), min(max(x2, 0.0), width), min(max(y2, 0.0), height))
    landmarks = None
    if face.landmarks is not None:
        landmarks = {k: (x * factor, y * factor) for k, (x, y) in face.landmarks.items()}
    return Face(box, face.score, landmarks)


def largest_face(image, **kwargs) -> Face | None:
    """The largest face (by box area), or ``None``. Keywords go to :func:`detect_faces`."""
    faces = detect_faces(image, **kwargs)
    return faces[0] if faces else None


# --- crops ---------------------------------------------------------------------------------


def _clip_box(box, width: int, height: int) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = box
    x1, x2 = (int(round(min(max(v, 0), width))) for v in (x1, x2))
    y1, y2 = (int(round(min(max(v, 0), height))) for v in (y1, y2))
    return x1, y1, x2, y2


def crop_face(image, face: Face, margin: float = 0.2):
    """The face box widened by ``margin`` × its width/height on every side, as a PIL image.

    The crop is clipped to the image (so it can be smaller than asked near an edge).
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0 (a fraction of the face size), got {margin}")
    pil = as_rgb_pil(image)
    x1, y1, x2, y2 = face.box
    dx, dy = margin * face.width, margin * face.height
    return _crop(pil, face, (x1 - dx, y1 - dy, x2 + dx, y2 + dy))


def face_chip(image, face: Face):
    """The square around ``face`` framed as UTKFace's chips are (:data:`CHIP_SIDE`, :data:`CHIP_SHIFT`),
    as a PIL image: what a face model trained on the chips reads. Clipped to the image, like
    :func:`crop_face`, so a face at the photo's edge gives a smaller, non-square crop."""
    pil = as_rgb_pil(image)
    x1, y1, x2, y2 = face.box
    side = CHIP_SIDE * face.width
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2 + CHIP_SHIFT * face.height
    return _crop(pil, face, (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2))


def _crop(pil, face: Face, box):
    """``pil`` cropped to ``box`` clipped to the image; a box wholly outside it is an error naming ``face``."""
    box = _clip_box(box, *pil.size)
    if box[2] - box[0] < 1 or box[3] - box[1] < 1:
        raise ValueError(f"face box {face.box} lies outside the {pil.size[0]}x{pil.size[1]} image")
    return pil.crop(box)

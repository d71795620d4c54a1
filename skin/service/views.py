"""The picture each model reads from a photo, and the picture shown back to the visitor.

A face model reads the largest face, cropped; it abstains when there is none.
A close-up model reads the whole photo; with ``refuse_faces`` it abstains on a
portrait (a face filling at least ``PORTRAIT_FACE_FRACTION`` of the photo),
because it was trained on close-ups of one lesion, not on photos of people.
Explanations are drawn over the model's own input, de-normalised
(:func:`model_input_image`), so the map and the picture line up by construction.
The skin tone is read from the face, framed as the age model's chips, when there is one (:func:`photo_tone`).
"""

from __future__ import annotations

import numpy as np

from skin.phototype import PhotoType
from skin.service.config import PORTRAIT_FACE_FRACTION, ModelSpec


def blocking_problems(spec: ModelSpec, problems: list[dict]) -> list[dict]:
    """The photo-quality problems (:func:`skin.quality.check_quality`'s, as dicts) that withhold model
    ``spec``'s answer: every one, except a black-and-white photo for a face model, which was trained on
    UTKFace's portraits, black-and-white ones among them (:data:`skin.quality.NO_COLOUR_CHROMA`)."""
    return [p for p in problems if not (spec.input == "face" and p.get("code") == "no_colour")]


def needs_face(spec: ModelSpec, kind: PhotoType | None = None) -> bool:
    """Whether model ``spec`` needs the face detector on a photo of type ``kind``: it reads faces, or it
    refuses portraits and the photo was not detected as a dermatoscope close-up.

    The portrait check guards a close-up model against photos of people. A photo the gate itself (not the
    user) calls ``dermoscopy`` skips it: the gate almost never takes a face photo for a dermatoscope
    close-up (measured on every validation and test image of UTKFace: ``all_held_out`` in
    ``models/phototype/report.json``, bounded by a test), and the detector costs as much as a model's
    forward pass on every such upload.
    """
    if spec.input == "face":
        return True
    gate_says_dermoscopy = kind is not None and kind.label == "dermoscopy" and not kind.overridden
    return spec.refuse_faces and not gate_says_dermoscopy


def model_view(spec: ModelSpec, image, face, kind: PhotoType | None = None):
    """``(picture, None)`` for model ``spec`` to read, or ``(None, reason)`` when it refuses the photo.

    ``face``: the photo's largest face (:func:`skin.faces.largest_face`), or
    ``None``; only read when :func:`needs_face` (for a photo of type ``kind``).
    """
    if not needs_face(spec, kind):
        return image, None
    if spec.input != "face":
        share = 0.0 if face is None else face.area / (image.width * image.height)
        if share >= PORTRAIT_FACE_FRACTION:
            return None, (f"a face fills {share:.0%} of this photo: this model reads close-ups of one skin "
                          "spot, not photos of people. Photograph the spot from about 10 cm, or crop the "
                          "photo to the spot, and upload it again")
        return image, None
    if face is None:
        return None, ("no face found: this model needs a photo of a face, looking at the camera, well lit, "
                      "filling at least a third of the picture")
    from skin.faces import face_chip

    return face_chip(image, face), None  # framed as the face model's training chips (UTKFace)


def photo_tone(image, face) -> dict:
    """ITA tone bucket (:func:`skin.tone.estimate_tone`) of the face when a face was found, else of
    the photo with its central lesion excluded; ``source`` says which.

    The face is read in the square the age model reads (:func:`skin.faces.face_chip`), framed as
    UTKFace's chips are, because the age model's fairness card gives its figures per bucket of the
    chips' whole-image estimate: the user's bucket must be read the way those were. The face box
    widened by 0.2 on every side, used before, took in background that the skin mask lets through
    (wood, beige walls, orange fur), and moved a pasted chip out of its own bucket far more often
    (bench/bench_face_tone.py)."""
    from skin.reports import to_jsonable
    from skin.tone import estimate_tone

    if face is not None:
        from skin.faces import face_chip

        return {**to_jsonable(estimate_tone(face_chip(image, face))), "source": "face"}
    return {**to_jsonable(estimate_tone(image, lesion_photo=True)), "source": "photo (central lesion excluded)"}


def tone_version() -> str:
    """A short fingerprint of how :func:`photo_tone` reads a photo: the face framing (the function and
    :data:`skin.faces.CHIP_SIDE` / ``CHIP_SHIFT``), the close-up rule, and :mod:`skin.tone`'s skin mask,
    lesion exclusion, work size and bucket edges. A history entry keeps it, so that a bucket moved by a
    change of the reading is not taken for a change of light."""
    import hashlib

    from skin import tone
    from skin.faces import CHIP_SHIFT, CHIP_SIDE

    settings = ("CR_RANGE", "CB_RANGE", "L_RANGE", "MAX_CHROMA", "LESION_CENTER_RADIUS", "LESION_DROP_DARKEST",
                "MIN_SKIN_FRACTION", "MIN_SKIN_PIXELS", "WORK_SIDE", "ITA_LIGHT_MIN", "ITA_DARK_MAX")
    reading = f"face: face_chip {CHIP_SIDE} {CHIP_SHIFT}; close-up: lesion_photo; " + "; ".join(
        f"{name} {getattr(tone, name)}" for name in settings)
    return hashlib.sha256(reading.encode()).hexdigest()[:12]


def _mean_std(processor) -> tuple[np.ndarray, np.ndarray]:
    data_config = getattr(processor, "data_config", None)  # TimmWrapperImageProcessor
    if isinstance(data_config, dict) and "mean" in data_config:
        mean, std = data_config["mean"], data_config["std"]
    else:
        mean = getattr(processor, "image_mean", None) or (0.5, 0.5, 0.5)
        std = getattr(processor, "image_std", None) or (0.5, 0.5, 0.5)
    return np.asarray(mean, np.float32), np.asarray(std, np.float32)


def model_input_image(pixel_values, processor, min_side: int = 384):
    """The picture the model saw: ``pixel_values`` de-normalised, upscaled for display."""
    from PIL import Image

    mean, std = _mean_std(processor)
    x = pixel_values.detach().float().cpu().numpy()[0].transpose(1, 2, 0)
    rgb = np.clip((x * std + mean) * 255.0, 0, 255).round().astype(np.uint8)
    im = Image.fromarray(rgb, "RGB")
    if min(im.size) < min_side:
        scale = min_side / min(im.size)
        im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.BICUBIC)
    return im

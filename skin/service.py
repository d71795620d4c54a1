"""Everything the app does, without the UI: configuration, predict, explain, fairness card.

``app.py`` only lays out Gradio components and calls a :class:`SkinLensService`;
the same service answers the named API endpoints and the benchmarks, so what is
tested here is what the public gets.

Configuration (``skinlens.yaml`` at the repository root, or the file named by
the environment variable ``SKINLENS_CONFIG``)::

    models:
      condition: {task: condition_ham10000, model: "default:condition", input: closeup}
      age:       {task: age_utkface,        model: "default:age",       input: face}
    top_k: 3
    abstain_below: 0.5
    max_upload_mb: 20

``model`` is anything :func:`skin.hub.load_classifier` takes: a checkpoint
folder (relative paths are read from the config file's folder), a Hub id, or an
embedded default. Models load lazily, once per process, and stay resident.
A model that is missing does not stop the app: :meth:`SkinLensService.status`
says what is missing and how to build it, and predicting with it raises
:class:`ModelUnavailable` naming the command.

Deliberate choices:

* **Abstention.** The exported models are calibrated (temperature folded into
  the classifier), so the top probability is an honest estimate of being right.
  The default threshold ``abstain_below: 0.5`` answers only when the model is
  more likely right than wrong. For age, the probability of the *predicted age
  group* (the summed probability of its years) is compared, not of one year:
  a single year out of 101 is rarely above 0.5 even when the estimate is good.
  The group shown is the estimate's (so the age and its group agree); in about
  5 % of UTKFace validation faces (nine in ten within 3.3 years of 25, 50 or 75)
  another group holds more mass; the estimate's group then holds under half, so
  at the default threshold the model abstains and says which group it compared.
  The app also abstains when the photo fails the quality check (every task),
  no face is found (face tasks), or a face fills at least
  ``PORTRAIT_FACE_FRACTION`` of the photo (models with ``refuse_faces``: by
  default those trained on close-ups of one lesion, ``CLOSEUP_ONLY_DATASETS``;
  SCIN or Kaggle photos may show a face, so their models answer on them).
* **Skin tone** for the fairness card is estimated (ITA, three buckets of
  :mod:`skin.tone`) on the face crop when a face was found, else on the whole
  photo with the central lesion excluded (``lesion_photo=True``).
* **Explanations** are computed on exactly the model object that predicted, on
  exactly the ``pixel_values`` it saw, and drawn over that same input
  (de-normalised), so the map and the picture line up by construction.
* **Concurrency.** One lock per model serialises its forward passes and
  explanations: Captum's hooks (Grad-CAM) are registered on the shared model
  and would otherwise capture a concurrent request's activations.
"""

from __future__ import annotations

import json
import math
import os
import threading
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skin.uploads import MAX_PIXELS, MAX_UPLOAD_BYTES, LoadedImage, UploadError, load_image

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_ENV = "SKINLENS_CONFIG"
DEFAULT_CONFIG_PATH = REPO_ROOT / "skinlens.yaml"
DEFAULT_EXPLAIN_RESULTS = REPO_ROOT / "bench" / "results" / "explain.json"

DISCLAIMER = ("**Not medical advice.** SkinLens is a research demo: it can be wrong, it has not been "
              "clinically validated, and it cannot diagnose anything. If a spot on your skin changes, bleeds, "
              "itches or worries you, see a doctor or dermatologist.")
BUILD_HINT = ("build the embedded default models with the commands in README.md, section 'Models' "
              "(python train.py --task condition_ham10000 ... / --task age_utkface ...), or point "
              "skinlens.yaml (or SKINLENS_CONFIG) at a trained checkpoint folder or Hub id")

INPUTS = ("closeup", "face")
# A close-up model abstains on a photo where a face covers at least this share of the picture.
# Measured with skin.faces.largest_face: no face at all in 400 HAM10000 and 37 PAD-UFES-20 photos;
# faces fill 69-100 % of UTKFace chips and 3.5 % of scikit-image's half-length astronaut portrait.
PORTRAIT_FACE_FRACTION = 0.02
#: Datasets of close-ups of one lesion: models trained on them refuse portraits unless configured otherwise.
CLOSEUP_ONLY_DATASETS = ("ham10000", "pad_ufes20")
#: Licences of the data each task's models are trained on (shown in the app).
DATASETS = {
    "ham10000": ("HAM10000", "CC BY-NC-SA 4.0 (Tschandl et al. 2018), non-commercial",
                 "https://doi.org/10.7910/DVN/DBW86T"),
    "utkface": ("UTKFace", "non-commercial research only (UTKFace terms)", "https://susanqq.github.io/UTKFace/"),
    "pad_ufes20": ("PAD-UFES-20", "CC BY 4.0 (Pacheco et al. 2020)", "https://doi.org/10.17632/zr7vgbcyr2.1"),
    "scin": ("SCIN", "SCIN data use terms (Google Research)", "https://github.com/google-research-datasets/scin"),
    "ddi": ("DDI", "DDI research use agreement (Stanford AIMI)", "https://ddi-dataset.github.io/"),
    "kaggle": ("Kaggle Skin Diseases Image Dataset", "see the dataset page", "https://www.kaggle.com/"),
    "aihub": ("AI-Hub skin condition data (71645)", "AI-Hub terms", "https://www.aihub.or.kr/"),
}
#: What the fairness card says when a dataset has no skin-tone labels.
NO_TONE_LABELS = {
    "ham10000": "not measured for any skin tone: the training data (HAM10000) is almost all light skin and has "
                "no skin-tone labels. Expect the model to be less reliable on medium and dark skin.",
    "utkface": "not measured by skin tone: UTKFace labels race, not skin tone (per-race results are listed "
               "below). Race is not skin tone; treat them as a rough guide only.",
    "kaggle": "not measured for any skin tone: the Kaggle dataset has no skin-tone labels.",
    "aihub": "not measured by skin tone: the AI-Hub data are of Korean adults, with no skin-tone labels.",
}
#: Main metric of the card per task kind: (metric, label, higher is better, "large gap" threshold).
CARD_METRIC = {
    "classification": ("balanced_accuracy", "balanced accuracy", True, 0.10),
    "ordinal": ("accuracy", "accuracy", True, 0.10),
    "age": ("mae", "mean absolute error (years)", False, 3.0),
}
TONE_ATTRIBUTE = "tone_bucket"
#: Predictions kept (keyed by model and input-tensor hash; probabilities only, no image).
PROB_CACHE_SIZE = 64


class ModelUnavailable(ValueError):
    """A configured model cannot be loaded (not built, not downloaded, no safetensors)."""


# --------------------------------------------------------------------------- #
# Configuration
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class ModelSpec:
    """One configured model: which task, which checkpoint, which kind of photo."""

    key: str
    task: str
    model: str
    input: str = "closeup"
    title: str = ""
    abstain_below: float = 0.5
    card_url: str | None = None
    refuse_faces: bool = False


@dataclass(frozen=True)
class ExamplePhoto:
    """An example photo offered in the app: read from ``path`` at run time (never shipped in the
    repository: the datasets' licences do not allow redistribution), shown with its licence."""

    path: str
    caption: str
    licence: str

    @property
    def available(self) -> bool:
        return os.path.isfile(self.path)


@dataclass(frozen=True)
class AppConfig:
    models: dict[str, ModelSpec]
    top_k: int = 3
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    max_pixels: int = MAX_PIXELS
    explain_results: str = str(DEFAULT_EXPLAIN_RESULTS)
    model_card_url: str = "model_card.md"
    source: str = "built-in defaults"
    examples: list[ExamplePhoto] = field(default_factory=list)

    def available_examples(self) -> list[ExamplePhoto]:
        """The example photos present on this machine."""
        return [e for e in self.examples if e.available]


DEFAULT_MODELS = {
    "condition": {"task": "condition_ham10000", "model": "default:condition", "input": "closeup",
                  "title": "Skin condition (7 HAM10000 lesion classes)"},
    "age": {"task": "age_utkface", "model": "default:age", "input": "face", "title": "Apparent age"},
}


def _resolve_model_ref(ref: str, base: Path) -> str:
    """Relative folder paths are relative to the config file; Hub ids and defaults pass through."""
    if ref.startswith("default:"):
        return ref
    p = Path(ref).expanduser()
    if not p.is_absolute() and (base / p).exists():
        return str((base / p).resolve())
    return str(p) if p.exists() else ref


def load_config(path: str | os.PathLike | None = None) -> AppConfig:
    """Read the app configuration: ``path``, else ``$SKINLENS_CONFIG``, else ``skinlens.yaml``.

    A missing default file gives the built-in defaults; a missing file that
    was asked for explicitly is an error.
    """
    import yaml

    from skin.tasks import get_task

    explicit = path or os.environ.get(CONFIG_ENV)
    cfg_path = Path(explicit) if explicit else DEFAULT_CONFIG_PATH
    raw: dict[str, Any] = {}
    if cfg_path.is_file():
        try:
            raw = yaml.safe_load(cfg_path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"{cfg_path} is not valid YAML: {e}") from e
        if not isinstance(raw, dict):
            raise ValueError(f"{cfg_path} must hold a mapping (models:, top_k:, ...), got {type(raw).__name__}")
    elif explicit:
        raise ValueError(f"config file {cfg_path} not found (from {'SKINLENS_CONFIG' if not path else 'path'}); "
                         "fix the path or unset SKINLENS_CONFIG to use skinlens.yaml")
    base = cfg_path.resolve().parent
    default_threshold = float(raw.get("abstain_below", 0.5))
    models_raw = raw.get("models", DEFAULT_MODELS)
    if not isinstance(models_raw, dict) or not models_raw:
        raise ValueError(f"{cfg_path}: 'models' must map a name to {{task:, model:, input:}}")
    models = {}
    for key, m in models_raw.items():
        if not isinstance(m, dict) or "model" not in m or "task" not in m:
            raise ValueError(f"{cfg_path}: models.{key} needs 'task' (e.g. condition_ham10000) and 'model' "
                             "(a folder, Hub id or default:...)")
        task = get_task(str(m["task"]))
        inp = str(m.get("input", "face" if task.kind == "age" else "closeup"))
        if inp not in INPUTS:
            raise ValueError(f"{cfg_path}: models.{key}.input must be one of {INPUTS}, got {inp!r}")
        refuse = m.get("refuse_faces", inp == "closeup" and task.dataset in CLOSEUP_ONLY_DATASETS)
        if not isinstance(refuse, bool):
            raise ValueError(f"{cfg_path}: models.{key}.refuse_faces must be true or false, got {refuse!r}")
        if refuse and inp == "face":
            raise ValueError(f"{cfg_path}: models.{key} reads faces (input: face): drop refuse_faces")
        thr = float(m.get("abstain_below", default_threshold))
        if not 0.0 <= thr < 1.0:
            raise ValueError(f"{cfg_path}: models.{key}.abstain_below must be in [0, 1), got {thr}")
        models[str(key)] = ModelSpec(
            key=str(key), task=task.name, model=_resolve_model_ref(str(m["model"]), base), input=inp,
            title=str(m.get("title") or task.description), abstain_below=thr, card_url=m.get("card_url"),
            refuse_faces=refuse,
        )
    examples_raw = raw.get("examples") or []
    if not isinstance(examples_raw, list):
        raise ValueError(f"{cfg_path}: 'examples' must be a list of {{path:, caption:, licence:}}")
    examples = []
    for i, e in enumerate(examples_raw):
        if not isinstance(e, dict) or not e.get("path") or not e.get("licence"):
            raise ValueError(f"{cfg_path}: examples[{i}] needs 'path' and 'licence' (and a 'caption'): an "
                             "example photo is shown with its licence")
        path = Path(str(e["path"]))
        examples.append(ExamplePhoto(path=str(path if path.is_absolute() else base / path),
                                     caption=str(e.get("caption") or path.name), licence=str(e["licence"])))
    top_k = int(raw.get("top_k", 3))
    if top_k < 1:
        raise ValueError(f"{cfg_path}: top_k must be ≥ 1, got {top_k}")
    explain_results = raw.get("explain_results")
    return AppConfig(
        models=models,
        top_k=top_k,
        max_upload_bytes=int(float(raw.get("max_upload_mb", MAX_UPLOAD_BYTES / 2**20)) * 2**20),
        max_pixels=int(raw.get("max_pixels", MAX_PIXELS)),
        explain_results=str((base / explain_results) if explain_results else DEFAULT_EXPLAIN_RESULTS),
        model_card_url=str(raw.get("model_card_url", "model_card.md")),
        source=str(cfg_path) if cfg_path.is_file() else "built-in defaults",
        examples=examples,
    )


# --------------------------------------------------------------------------- #
# Loaded models
# --------------------------------------------------------------------------- #


@dataclass
class LoadedModel:
    spec: ModelSpec
    model: Any
    processor: Any
    labels: list[str]
    kind: str
    lock: threading.Lock = field(default_factory=threading.Lock)

    def pixel_values(self, image):
        """The processor's tensor for one PIL image, ``(1, 3, H, W)``."""
        out = self.processor(images=image if image.mode == "RGB" else image.convert("RGB"), return_tensors="pt")
        return out["pixel_values"]


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


def _ages(labels: list[str]) -> np.ndarray:
    try:
        return np.asarray([float(str(lbl).rstrip("+")) for lbl in labels])
    except ValueError as e:
        raise ValueError(f"age model labels must be ages ('0', ..., '100+'), got {labels[:3]}...") from e


def _jsonable(obj):
    """Dataclasses / numpy / tuples → plain JSON types (NaN → None)."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    if hasattr(obj, "_asdict"):
        return _jsonable(obj._asdict())
    if hasattr(obj, "__dict__"):
        return _jsonable({k: v for k, v in vars(obj).items() if not k.startswith("_")})
    return str(obj)


# --------------------------------------------------------------------------- #
# The service
# --------------------------------------------------------------------------- #


class SkinLensService:
    """Predict, explain and fairness card for the configured models (thread-safe)."""

    def __init__(self, config: AppConfig | None = None):
        self.config = config or load_config()
        self._models: dict[str, LoadedModel] = {}
        self._errors: dict[str, str] = {}
        self._load_lock = threading.Lock()
        self._faithfulness: dict[str, dict] | None = None
        self._prob_cache: dict[tuple[str, str], np.ndarray] = {}
        #: 0 turns the prediction cache off (benchmarks): SKINLENS_PREDICTION_CACHE
        self.cache_size = int(os.environ.get("SKINLENS_PREDICTION_CACHE", PROB_CACHE_SIZE))
        self._cache_lock = threading.Lock()

    # ---------------- models ----------------
    def model_problem(self, key: str) -> str | None:
        """Why model ``key`` cannot be used, without loading it (``None`` = looks usable)."""
        spec = self._spec(key)
        if key in self._models:
            return None
        if key in self._errors:
            return self._errors[key]
        ref = spec.model
        if ref.startswith("default:"):
            from skin.hub import default_dir

            try:
                default_dir(ref)
            except ValueError as e:
                return f"model '{key}' ({ref}) is not available: {e}"
            return None
        if os.path.isdir(ref):
            if not any(Path(ref).glob("*.safetensors")):
                return (f"model '{key}': {ref} has no *.safetensors weights (pickle checkpoints are refused): "
                        "re-export it with skin.models.export_merged")
            return None
        if "/" in ref and not ref.startswith((".", "/")):
            if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "false", "False", ""):
                from huggingface_hub import try_to_load_from_cache

                if not isinstance(try_to_load_from_cache(ref, "config.json"), str):
                    return (f"model '{key}': Hub model {ref} is not in the local cache and HF_HUB_OFFLINE is set: "
                            "download it once (huggingface-cli download) or unset HF_HUB_OFFLINE")
            return None
        return f"model '{key}': {ref} is neither a folder, a Hub id (owner/name) nor default:condition/default:age"

    def status(self) -> dict[str, dict]:
        """``{key: {"task", "model", "available", "problem"}}`` for every configured model."""
        out = {}
        for key, spec in self.config.models.items():
            problem = self.model_problem(key)
            out[key] = {"task": spec.task, "model": spec.model, "title": spec.title, "input": spec.input,
                        "available": problem is None, "problem": problem,
                        "loaded": key in self._models}
        return out

    def notice(self) -> str | None:
        """Markdown notice listing missing models and how to build them (``None`` when all are there)."""
        missing = [s["problem"] for s in self.status().values() if not s["available"]]
        if not missing:
            return None
        lines = "\n".join(f"- {p}" for p in missing)
        return f"⚠️ **Some models are missing**, so their results are not shown:\n{lines}\n\nTo fix: {BUILD_HINT}."

    def _spec(self, key: str) -> ModelSpec:
        if key not in self.config.models:
            raise ValueError(f"unknown task {key!r}; this app is configured for: {', '.join(self.config.models)}")
        return self.config.models[key]

    def model(self, key: str) -> LoadedModel:
        """The loaded model ``key`` (loaded on first use, then resident)."""
        spec = self._spec(key)
        if key in self._models:
            return self._models[key]
        with self._load_lock:
            if key in self._models:
                return self._models[key]
            problem = self.model_problem(key)
            if problem:
                raise ModelUnavailable(f"{problem}. To fix: {BUILD_HINT}")
            from skin.hub import load_classifier
            from skin.inference import prepare_for_inference
            from skin.tasks import get_task

            try:
                model, processor = load_classifier(spec.model)
            except (ValueError, OSError) as e:
                self._errors[key] = f"model '{key}' ({spec.model}) failed to load: {e}"
                raise ModelUnavailable(f"{self._errors[key]}. To fix: {BUILD_HINT}") from e
            # Folded BatchNorm + channels-last: the same function, ~2x faster on
            # CPU; predictions and explanations both run on this one model.
            model = prepare_for_inference(model)
            cfg = model.config
            labels = [cfg.id2label[i] for i in range(cfg.num_labels)]
            kind = get_task(spec.task).kind
            if kind == "age":
                _ages(labels)
            self._models[key] = LoadedModel(spec, model, processor, labels, kind)
            return self._models[key]

    def load_all(self) -> dict[str, str | None]:
        """Load every available model now (e.g. at start-up); ``{key: problem or None}``."""
        out = {}
        for key in self.config.models:
            try:
                self.model(key)
                out[key] = None
            except ModelUnavailable as e:
                out[key] = str(e)
        return out

    def warm_up(self) -> None:
        """Load every model and run one prediction on a synthetic photo.

        The first real request then finds the models, the face detector and
        the CPU kernels ready (part of the cold-start budget). A missing model
        is reported by :meth:`status`, not here.
        """
        import torch
        from PIL import Image

        from skin.quality import check_quality
        from skin.tone import estimate_tone

        problems = self.load_all()
        if all(problems.values()):
            return
        # A flat synthetic photo fails the quality check, so predict() would stop before the models:
        # run each model, the face detector and the photo checks on it directly instead.
        photo = Image.new("RGB", (320, 320), (186, 140, 118))
        for key, problem in problems.items():
            if problem is None:
                lm = self.model(key)
                with lm.lock, torch.inference_mode():
                    lm.model(pixel_values=lm.pixel_values(photo))
        if any(spec.input == "face" or spec.refuse_faces for spec in self.config.models.values()):
            self._face(photo)
        check_quality(photo)
        estimate_tone(photo, lesion_photo=True)

    # ---------------- inputs ----------------
    def load_upload(self, path_or_bytes) -> LoadedImage:
        """Decode an upload safely (:func:`skin.uploads.load_image` with the configured limits)."""
        return load_image(path_or_bytes, max_bytes=self.config.max_upload_bytes, max_pixels=self.config.max_pixels)

    def _as_loaded(self, image) -> LoadedImage:
        from PIL import Image

        if isinstance(image, LoadedImage):
            return image
        if isinstance(image, Image.Image):
            rgb = image.convert("RGB")
            return LoadedImage(rgb, None, rgb.size, image.mode, [])
        return self.load_upload(image)

    def _face(self, image):
        from skin.faces import largest_face

        return largest_face(image)

    def _model_view(self, spec: ModelSpec, image, face_cache: dict):
        """(the image the model ``spec`` reads, or None, reason) — face crop for face tasks; a
        ``refuse_faces`` model refuses a photo of a person (a face filling ``PORTRAIT_FACE_FRACTION``)."""
        if spec.input != "face" and not spec.refuse_faces:
            return image, None
        if "face" not in face_cache:
            face_cache["face"] = self._face(image)
        face = face_cache["face"]
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
        from skin.faces import crop_face

        return crop_face(image, face), None

    # ---------------- predict ----------------
    def _forward(self, lm: LoadedModel, view) -> tuple[np.ndarray, Any, Any]:
        """``(softmax, input tensor, last feature map or None)`` of ``lm`` on ``view``.

        The last few results (with the input tensor) are cached by the photo's
        content, so Explain after Predict on the same photo runs neither the
        processor nor the model again; for timm CNNs the
        forward pass also records the feature map Grad-CAM reads
        (:func:`skin.explain.capture_features`), so Grad-CAM then needs only a
        backward pass through the classifier head.
        """
        import hashlib

        import torch

        from skin.explain import capture_features

        rgb = view if view.mode == "RGB" else view.convert("RGB")
        digest = hashlib.sha1(rgb.tobytes()).hexdigest()  # cheaper than the processor it saves
        cache_key = (lm.spec.key, rgb.size, digest)
        with self._cache_lock:
            hit = self._prob_cache.get(cache_key)
        if hit is not None:
            return hit[0].copy(), hit[2], hit[1]
        x = lm.pixel_values(rgb)
        with lm.lock, torch.inference_mode(), capture_features(lm.model) as store:
            logits = lm.model(pixel_values=x).logits
        probs = torch.softmax(logits.float(), dim=-1)[0].cpu().numpy()
        features = store.get("features")
        with self._cache_lock:
            self._prob_cache[cache_key] = (probs, features, x)
            while len(self._prob_cache) > self.cache_size:
                self._prob_cache.pop(next(iter(self._prob_cache)))
        return probs.copy(), x, features

    def _probs(self, lm: LoadedModel, view) -> tuple[np.ndarray, Any]:
        """Softmax of ``lm`` on ``view`` and the input tensor (see :meth:`_forward`)."""
        probs, x, _ = self._forward(lm, view)
        return probs, x

    def _read_out(self, lm: LoadedModel, probs: np.ndarray) -> dict:
        spec, k = lm.spec, self.config.top_k
        if lm.kind == "age":
            from skin.metrics import expected_age
            from skin.tasks import age_group_names, age_to_group

            ages = _ages(lm.labels)
            estimate = float(expected_age(probs[None], ages)[0])
            names = age_group_names()
            groups = age_to_group(ages)
            group_p = np.bincount(groups, weights=probs, minlength=len(names))
            g = int(age_to_group(estimate))
            order = np.argsort(-group_p)[:k]
            out = {"estimate": round(estimate, 1), "group": names[g], "group_probability": float(group_p[g]),
                   "top_k": [{"label": names[i], "probability": float(group_p[i])} for i in order],
                   "confidence": float(group_p[g])}
        else:
            order = np.argsort(-probs)[:k]
            out = {"top_k": [{"label": lm.labels[i], "probability": float(probs[i])} for i in order],
                   "confidence": float(probs[order[0]])}
        if out["confidence"] < spec.abstain_below:
            out["abstained"] = True
            if lm.kind == "age":
                # Not necessarily the group with the most mass (module docstring): say what was compared.
                what = f"the estimate ({out['estimate']:.0f} years) falls in the age group {out['group']}, which"
            else:
                what = "the most likely answer"
            out["reason"] = (f"not confident: {what} has probability {out['confidence']:.0%}, "
                             f"below this app's threshold of {spec.abstain_below:.0%}. The photo may be out of "
                             "scope for this model (e.g. not the kind of image it was trained on)")
        return out

    def predict(self, image) -> dict:
        """Predictions for every configured model, with quality check and tone bucket.

        ``image``: a path or bytes of an upload (validated), a
        :class:`~skin.uploads.LoadedImage` or a PIL image. Raises
        :class:`~skin.uploads.UploadError` for unusable files and
        :class:`ModelUnavailable` when no configured model can be used.
        """
        from skin.quality import check_quality
        from skin.tone import estimate_tone

        loaded = self._as_loaded(image)
        img = loaded.image
        quality = check_quality(img)
        quality_json = _jsonable(quality)
        problems = quality_json.get("problems") or []
        status = self.status()
        if not any(s["available"] for s in status.values()):
            missing = "; ".join(s["problem"] for s in status.values())
            raise ModelUnavailable(f"no model is available: {missing}. To fix: {BUILD_HINT}")
        face_cache: dict = {}
        tasks: dict[str, dict] = {}
        for key, spec in self.config.models.items():
            entry: dict[str, Any] = {"task": spec.task, "title": spec.title, "model": spec.model,
                                     "input": spec.input, "threshold": spec.abstain_below,
                                     "abstained": False, "reason": None}
            tasks[key] = entry
            if not status[key]["available"]:
                entry.update(status="unavailable", abstained=True, reason=status[key]["problem"])
                continue
            if not quality_json.get("ok", True):
                msgs = "; ".join(str(p.get("message", p)) for p in problems) or "the photo failed the quality check"
                entry.update(status="abstain", abstained=True, reason=f"photo quality: {msgs}")
                continue
            view, reason = self._model_view(spec, img, face_cache)
            if view is None:
                entry.update(status="abstain", abstained=True, reason=reason)
                continue
            try:
                lm = self.model(key)
            except ModelUnavailable as e:
                entry.update(status="unavailable", abstained=True, reason=str(e))
                continue
            probs, _ = self._probs(lm, view)
            entry.update(self._read_out(lm, probs))
            entry["status"] = "abstain" if entry["abstained"] else "ok"
        face = face_cache.get("face")
        if face is not None:
            from skin.faces import crop_face

            tone = estimate_tone(crop_face(img, face))
            tone_source = "face"
        else:
            tone = estimate_tone(img, lesion_photo=True)
            tone_source = "photo (central lesion excluded)"
        result = {
            "disclaimer": "Not medical advice. A research demo; see a doctor about any skin concern.",
            "image": loaded.summary(),
            "quality": quality_json,
            "tips": [p.get("tip") for p in problems if isinstance(p, dict) and p.get("tip")],
            "tone": {**_jsonable(tone), "source": tone_source},
            "face": None if "face" not in face_cache else {"found": face is not None,
                                                            "box": _jsonable(face) if face is not None else None},
            "tasks": tasks,
        }
        return result

    # ---------------- explain ----------------
    def faithfulness(self) -> dict[str, dict]:
        """``{method: {"text", "score", ...}}`` from ``bench/results/explain.json`` (or "not measured")."""
        if self._faithfulness is None:
            self._faithfulness = read_faithfulness(self.config.explain_results)
        return self._faithfulness

    def method_choices(self) -> list[tuple[str, str]]:
        """(label shown in the picker, method) pairs, the label carrying the measured faithfulness."""
        from skin.explain import METHODS

        faith = self.faithfulness()
        names = {"integrated_gradients": "Integrated Gradients", "gradient_shap": "GradientShap",
                 "occlusion": "Occlusion", "saliency": "Saliency", "gradcam": "Grad-CAM"}
        return [(f"{names.get(m, m)} — faithfulness: {faith.get(m, {}).get('text', 'not measured')}", m)
                for m in METHODS]

    def labels(self, key: str) -> list[str]:
        """Class names of model ``key`` (loads it)."""
        return list(self.model(key).labels)

    def explain(self, image, key: str, method: str = "gradcam", target: str | int | None = None):
        """``(overlay PIL image, info dict)`` for model ``key``'s prediction on ``image``.

        ``target``: a class label or index of that model; ``None`` / ``""`` =
        the predicted class. The map is drawn over the model's own input.
        """
        from skin.explain import METHODS, explain, overlay

        if method not in METHODS:
            raise ValueError(f"unknown explanation method {method!r}; choose one of: {', '.join(METHODS)}")
        spec = self._spec(key)
        loaded = self._as_loaded(image)
        lm = self.model(key)
        view, reason = self._model_view(spec, loaded.image, {})
        if view is None:
            raise ValueError(f"cannot explain the {key} model on this photo: {reason}")
        target_idx = self._target_index(lm, target)
        probs, x, features = self._forward(lm, view)
        if target_idx is None:
            target_idx = int(np.argmax(probs))
        options = {"features": features} if method == "gradcam" and features is not None else {}
        with lm.lock:
            exp = explain(lm.model, x, target=target_idx, method=method, **options)
        label = lm.labels[exp.target]
        # blended at the model's own resolution, then shown at >= 384 px with a readable legend
        shown = model_input_image(x, lm.processor, min_side=0)
        picture = overlay(shown, exp.attribution, label=label, min_side=384)
        info = {
            "task": key, "method": method, "target": label, "target_index": int(exp.target),
            "target_probability": float(probs[exp.target]), "predicted": lm.labels[int(np.argmax(probs))],
            "seconds": round(float(exp.seconds), 3), "signed": bool(exp.signed),
            "faithfulness": self.faithfulness().get(method, {"text": "not measured"}),
            "input_size": list(x.shape[-2:]),
            "note": "heatmap over the exact picture the model read (after its resize/crop); "
                    "red = parts that raised the score of the target class most",
            "image_notes": loaded.notes,
        }
        return picture, info

    @staticmethod
    def _target_index(lm: LoadedModel, target) -> int | None:
        if target is None or (isinstance(target, str) and not target.strip()):
            return None
        if isinstance(target, str) and target in lm.labels:
            return lm.labels.index(target)
        try:
            idx = int(target)
        except (TypeError, ValueError):
            idx = -1
        if not 0 <= idx < len(lm.labels):
            shown = ", ".join(lm.labels[:12]) + (" …" if len(lm.labels) > 12 else "")
            raise ValueError(f"unknown target class {target!r} for the {lm.spec.key} model; use one of: {shown}")
        return idx

    # ---------------- fairness card ----------------
    def fairness(self, key: str, tone_bucket: str | None = None) -> dict:
        """The fairness card of model ``key``, highlighting ``tone_bucket`` (light/medium/dark)."""
        from skin.tasks import get_task
        from skin.tone import TONE_BUCKETS

        spec = self._spec(key)
        task = get_task(spec.task)
        bucket = (tone_bucket or "").strip().lower() or None
        if bucket is not None and bucket not in TONE_BUCKETS:
            raise ValueError(f"tone_bucket must be one of {', '.join(TONE_BUCKETS)} or empty, got {tone_bucket!r}")
        metric, metric_label, higher_better, gap_warn = CARD_METRIC[task.kind]
        ds_name, licence, ds_url = DATASETS.get(task.dataset, (task.dataset, "see source", None))
        card: dict[str, Any] = {
            "task": key, "task_name": spec.task, "title": spec.title, "model": spec.model, "dataset": ds_name,
            "dataset_licence": licence, "dataset_url": ds_url, "model_card": spec.card_url or self.config.model_card_url,
            "metric": metric, "metric_label": metric_label, "higher_is_better": higher_better,
            "user_bucket": bucket, "measured": False, "rows": [], "warnings": [], "other_groups": {},
            "overall": None, "tta": False,
        }
        problem = self.model_problem(key)
        report = None
        if problem is None:
            from skin.hub import load_report

            try:
                report = load_report(spec.model)
            except ValueError as e:
                problem = str(e)
        if report is None:
            card["warnings"].append(problem or "this model has no evaluation report, so its performance per skin "
                                               "tone is unknown")
            return card
        fairness = report.get("fairness") or {}
        tone = fairness.get(TONE_ATTRIBUTE)
        for attr, rep in fairness.items():
            if attr != TONE_ATTRIBUTE:
                card["other_groups"][attr] = [
                    {"group": g, **_metric_cell(e, metric)} for g, e in (rep.get("groups") or {}).items()
                ]
        card["tta"] = bool(report.get("tta"))
        test = report.get("test") or {}
        if isinstance(test.get(metric), (int, float)):
            card["overall"] = {"value": float(test[metric]), "n": test.get("n")}
        if not tone or not tone.get("groups"):
            card["warnings"].append(NO_TONE_LABELS.get(task.dataset, f"not measured for any skin tone: the "
                                                                     f"{ds_name} test set has no skin-tone labels"))
            return card
        card["measured"] = True
        groups = tone["groups"]
        min_n = tone.get("min_group_size", 30)
        for b in TONE_BUCKETS:
            e = groups.get(b)
            row = {"bucket": b, "is_user": b == bucket, "n": 0, "value": None, "ci_low": None, "ci_high": None,
                   "small": True}
            if e:
                row.update(_metric_cell(e, metric))
                row["small"] = bool(e.get("small", row["n"] < min_n))
            card["rows"].append(row)
        if bucket:
            mine = next(r for r in card["rows"] if r["bucket"] == bucket)
            if mine["n"] == 0 or mine["value"] is None:
                card["warnings"].append(f"not measured for {bucket} skin: the test set has no {bucket}-skin "
                                        "images, so nobody knows how well this model works for you")
            elif mine["small"]:
                card["warnings"].append(f"thin data for {bucket} skin: only {mine['n']} test images (fewer than "
                                        f"{min_n}), so the number below is very uncertain")
        gap = (tone.get("largest_gap") or {}).get(metric)
        if isinstance(gap, (int, float)) and gap > gap_warn:
            ends = (tone.get("largest_gap_groups") or {}).get(metric) or {}
            worst = ends.get("min" if higher_better else "max")
            card["warnings"].append(f"large gap between skin tones: {metric_label} differs by {gap:.2f} "
                                    f"(worst for {worst or 'one group'} skin; threshold {gap_warn})")
        absent = [r["bucket"] for r in card["rows"] if r["n"] == 0]
        if absent and not (bucket in absent):
            card["warnings"].append(f"not measured for {', '.join(absent)} skin (no test images)")
        return card


def _metric_cell(entry: dict, metric: str) -> dict:
    """``{"n", "value", "ci_low", "ci_high"}`` from either report shape.

    :func:`skin.fairness.fairness_report` writes ``metric: {"value", "ci_low",
    "ci_high"}``; flat ``metric``, ``metric_ci_low`` / ``ci_low`` is read too.
    """
    v = entry.get(metric)
    if isinstance(v, dict):
        value, lo, hi = v.get("value"), v.get("ci_low"), v.get("ci_high")
    else:
        value = v
        lo = entry.get(f"{metric}_ci_low", entry.get("ci_low"))
        hi = entry.get(f"{metric}_ci_high", entry.get("ci_high"))
    return {"n": int(entry.get("n") or 0), "value": _num(value), "ci_low": _num(lo), "ci_high": _num(hi)}


def _num(v):
    return float(v) if isinstance(v, (int, float)) and math.isfinite(float(v)) else None


def read_faithfulness(path: str | os.PathLike) -> dict[str, dict]:
    """Per-method faithfulness from the explanation benchmark's JSON.

    Looks for a mapping from method names to entries holding ``insertion_auc``
    / ``deletion_auc`` (or ``faithfulness``), anywhere in the file (the first
    such mapping wins: the benchmark's default model). Missing file or method
    → ``{"text": "not measured"}``.
    """
    from skin.explain import METHODS

    p = Path(path)
    out = {m: {"text": "not measured", "score": None} for m in METHODS}
    if not p.is_file():
        return out
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return out

    def find(node):
        """The first mapping holding method names as keys (or a list of {"method": ...} rows)."""
        if isinstance(node, dict):
            if any(k in METHODS and isinstance(v, dict) for k, v in node.items()):
                return node
            for v in node.values():
                r = find(v)
                if r:
                    return r
        elif isinstance(node, list):
            by_method = {v["method"]: v for v in node if isinstance(v, dict) and v.get("method") in METHODS}
            if by_method:
                return by_method
            for v in node:
                r = find(v)
                if r:
                    return r
        return None

    table = find(data) or {}
    entries = {m: table[m] for m in METHODS if isinstance(table.get(m), dict)}
    if "integrated_gradients" not in entries:
        # bench/bench_explain.py keys IG by its settings: ig/<rule>/<n_steps>/<baseline>/<size>;
        # the app runs skin.explain's defaults.
        from skin.explain import IG_METHOD, IG_N_STEPS

        # the app's defaults at the model's own input size (the largest size measured)
        prefix = f"ig/{IG_METHOD}/{IG_N_STEPS}/blur/"
        sizes = [k[len(prefix):] for k in table if k.startswith(prefix) and k[len(prefix):].isdigit()]
        default_ig = table.get(prefix + max(sizes, key=int)) if sizes else None
        if isinstance(default_ig, dict):
            entries["integrated_gradients"] = default_ig
    for m, e in entries.items():
        flat = dict(e)
        for sub in ("faithfulness", "mean", "scores", "deletion_insertion"):
            if isinstance(flat.get(sub), dict):
                flat.update(flat[sub])
        ins = _num(flat.get("insertion_auc", flat.get("insertion")))
        dele = _num(flat.get("deletion_auc", flat.get("deletion")))
        score = _num(flat.get("faithfulness"))
        if score is None and ins is not None and dele is not None:
            score = ins - dele
        if score is None:
            continue
        text = f"{score:+.2f} (insertion − deletion AUC"
        text += f"; ins {ins:.2f}, del {dele:.2f})" if ins is not None and dele is not None else ")"
        out[m] = {"text": text, "score": score, "insertion_auc": ins, "deletion_auc": dele,
                  "seconds": _num(flat.get("seconds"))}
    return out


# --------------------------------------------------------------------------- #
# Markdown rendering (the UI shows these; the API returns the dicts)
# --------------------------------------------------------------------------- #


def _fmt2(v) -> str:
    return "–" if v is None else f"{v:.2f}"


def _pct(v) -> str:
    return "–" if v is None else f"{v:.0%}"


def predictions_markdown(result: dict) -> str:
    parts = []
    for key, t in result["tasks"].items():
        head = f"### {t['title']}"
        if t.get("status") == "unavailable":
            parts.append(f"{head}\n⚠️ Not available: {t['reason']}")
            continue
        if t.get("abstained") and not t.get("top_k"):
            parts.append(f"{head}\n**No answer** — {t['reason']}")
            continue
        lines = [head]
        if t.get("abstained"):
            lines.append(f"**No confident answer** — {t['reason']}. For transparency, the model's "
                         "(unreliable) top guesses were:")
        elif "estimate" in t:
            lines.append(f"**Estimated age: {t['estimate']:.0f} years** — age group **{t['group']}** "
                         f"(probability {_pct(t['group_probability'])})")
        lines.append("\n| | probability |\n|---|---|")
        lines += [f"| {r['label']} | {_pct(r['probability'])} |" for r in t.get("top_k", [])]
        lines.append("\n<sub>Probabilities are calibrated: of all answers given with 80 %, about 80 % were right "
                     "on the test set.</sub>")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def quality_markdown(result: dict) -> str:
    q = result.get("quality") or {}
    lines = []
    if q.get("ok", True):
        lines.append("✅ **Photo quality: OK**")
    else:
        lines.append("❌ **Photo quality problems** — the app does not answer on this photo:")
    for p in q.get("problems") or []:
        if isinstance(p, dict):
            tip = f" — *tip: {p['tip']}*" if p.get("tip") else ""
            lines.append(f"- {p.get('message', p.get('code'))}{tip}")
    notes = (result.get("image") or {}).get("notes") or []
    if notes:
        lines.append("\n**About your file:** " + "; ".join(notes) + ".")
    return "\n".join(lines)


def examples_markdown(configured: list[ExamplePhoto], available: list[ExamplePhoto]) -> str:
    """Licence notes of the example photos, or why there are none."""
    if available:
        return "Example photos (not stored in this app; read from the datasets): " + "; ".join(
            f"*{e.caption}* — {e.licence}" for e in available) + "."
    if configured:
        return ("No example photos on this machine: they are read from the datasets' folders at run time "
                f"(e.g. `{configured[0].path}`), because their licences do not allow shipping them with the app.")
    return ""


def fairness_markdown(card: dict) -> str:
    bucket = card.get("user_bucket")
    lines = [f"### How well does this model work for your skin tone? — {card['title']}"]
    if bucket:
        lines.append(f"Your photo's estimated skin tone: **{bucket}** (ITA, three buckets: light > 41° ≥ medium > "
                     "10° ≥ dark; a rough estimate from a photo, not a measurement).")
    else:
        lines.append("Your skin tone could not be estimated from this photo (no skin found, or a greyscale photo).")
    for w in card.get("warnings", []):
        lines.append(f"\n> ⚠️ **{w}**")
    if card.get("measured"):
        better = "higher is better" if card["higher_is_better"] else "lower is better"
        lines.append(f"\n| skin tone | test images (n) | {card['metric_label']} ({better}) | 95 % CI |")
        lines.append("|---|---|---|---|")
        for r in card["rows"]:
            name = f"**▶ {r['bucket']} (you)**" if r["is_user"] else r["bucket"]
            val = "not measured" if r["value"] is None else f"{r['value']:.2f}"
            ci = "–" if r["ci_low"] is None else f"{r['ci_low']:.2f}–{r['ci_high']:.2f}"
            flag = " (thin data)" if r["small"] and r["n"] else ""
            lines.append(f"| {name} | {r['n']}{flag} | {val} | {ci} |")
    if card.get("overall"):
        o = card["overall"]
        lines.append(f"\nOverall on the test set: {card['metric_label']} **{o['value']:.2f}** (n = {o.get('n')}).")
    if card.get("tta") and (card.get("overall") or card.get("measured")):
        lines.append("These figures average each test photo with its mirror images (flip test-time augmentation); "
                     "the app predicts on your photo alone, which scores slightly lower.")
    if card.get("other_groups"):
        lines.append("\n<details><summary>Other groups measured</summary>\n")
        for attr, rows in card["other_groups"].items():
            cells = ", ".join(f"{r['group']}: {_fmt2(r['value'])} (n={r['n']})" for r in rows)
            lines.append(f"- **{attr}**: {cells}")
        lines.append("\n</details>")
    link = card.get("dataset_url")
    ds = f"[{card['dataset']}]({link})" if link else card["dataset"]
    lines.append(f"\n<sub>Training data: {ds} — licence: {card['dataset_licence']}. "
                 f"Model card: {card['model_card']}.</sub>")
    return "\n".join(lines)


__all__ = [
    "AppConfig",
    "DISCLAIMER",
    "ExamplePhoto",
    "LoadedModel",
    "ModelSpec",
    "ModelUnavailable",
    "SkinLensService",
    "UploadError",
    "examples_markdown",
    "fairness_markdown",
    "load_config",
    "model_input_image",
    "predictions_markdown",
    "quality_markdown",
    "read_faithfulness",
]

"""The app's configuration: the ``skinlens.yaml`` schema, its defaults and its validation.

``skinlens.yaml`` at the repository root, or the file named by the environment
variable ``SKINLENS_CONFIG``::

    models:
      condition: {task: condition_ham10000, model: "default:condition", input: closeup}
      clinical:  {task: condition_dermnet,   model: "default:clinical",  input: closeup}
      age:       {task: age_utkface,        model: "default:age",       input: face}
    top_k: 3
    abstain_below: 0.5
    max_upload_mb: 20

Each model answers only the photo types it was trained on (``photo_types:``,
a list drawn from ``dermoscopy``, ``clinical``, ``face``; default: by its
task's dataset, :data:`DATASET_PHOTO_TYPES`); the photo-type gate
(``phototype:``, a folder, default ``models/phototype``; ``phototype: off``
turns it off) decides which type an upload is (:mod:`skin.phototype`).

``model`` is anything :func:`skin.hub.load_classifier` takes: a checkpoint
folder (relative paths are read from the config file's folder), a Hub id, or an
embedded default. A mistake in the file is a ``ValueError`` naming the key and
what it accepts, raised when the file is read, not on the first request.

Two settings come from the environment instead, because they belong to the
machine the app runs on rather than to the app: ``HF_HUB_OFFLINE`` (the app
never downloads unless it is set to a false value such as ``0``) and
``SKINLENS_PREDICTION_CACHE`` (how many predictions to keep; ``0`` turns the
cache off, as the benchmarks do).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skin.uploads import MAX_PIXELS, MAX_UPLOAD_BYTES

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_ENV = "SKINLENS_CONFIG"
DEFAULT_CONFIG_PATH = REPO_ROOT / "skinlens.yaml"
CACHE_ENV = "SKINLENS_PREDICTION_CACHE"
#: Predictions kept by default (keyed by model and photo content; probabilities, no image).
PREDICTION_CACHE_SIZE = 64

#: What a model reads: the whole photo (a close-up of one spot) or the largest face, cropped.
INPUTS = ("closeup", "face")
#: A close-up model abstains on a photo where a face covers at least this share of the picture:
#: lesion close-ups show no face at all, while in a half-length portrait the face covers a few
#: percent (measured: models/README.md, "Measured for the app's abstention").
PORTRAIT_FACE_FRACTION = 0.02
#: Datasets of close-ups of one lesion: models trained on them refuse portraits unless configured otherwise.
CLOSEUP_ONLY_DATASETS = ("ham10000", "pad_ufes20")

#: The photo types (:data:`skin.phototype.SKIN_PHOTO_TYPES`) a model answers unless its entry says otherwise
#: (``photo_types:``), by the dataset its task was trained on. A dataset not listed: every type.
#: DermNet's model reads clinical photos only: it has no class for healthy skin, and on portraits (face
#: photos) it named a condition with confidence on 85 of 300 UTKFace faces (73 "psoriasis"), while the gate
#: called none of the 476 DermNet test photos a face, its facial conditions included
#: (bench/clinical_on_portraits.py, models/README.md). A visitor can still choose "clinical" for a selfie.
DATASET_PHOTO_TYPES = {
    "ham10000": ("dermoscopy",),
    "dermnet": ("clinical",),
    "pad_ufes20": ("clinical",),
    "scin": ("clinical", "face"),
    "kaggle": ("clinical", "dermoscopy"),
    "ddi": ("clinical",),
    "utkface": ("face",),
}
#: Values of ``phototype:`` that turn the gate off (YAML reads a bare ``off`` / ``no`` as false).
GATE_OFF = (None, False, "off", "none", "")
_UNSET = object()  # ``phototype:`` absent from the file: the default folder

DEFAULT_MODELS = {
    "condition": {"task": "condition_ham10000", "model": "default:condition", "input": "closeup",
                  "title": "Skin condition (7 HAM10000 lesion classes)"},
    "clinical": {"task": "condition_dermnet", "model": "default:clinical", "input": "closeup",
                 "title": "Skin condition, ordinary photo (11 DermNet groups)"},
    "age": {"task": "age_utkface", "model": "default:age", "input": "face", "title": "Apparent age"},
}


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
    #: the photo types this model answers (:mod:`skin.phototype`); others get an abstention naming the type
    photo_types: tuple[str, ...] = ()

    def accepts(self, photo_type: str | None) -> bool:
        """Whether this model answers a photo of ``photo_type`` (``None``: the gate is off, so yes)."""
        return photo_type is None or photo_type in self.photo_types


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
    model_card_url: str = "model_card.md"
    source: str = "built-in defaults"
    examples: list[ExamplePhoto] = field(default_factory=list)
    #: read models from local files only (no Hub downloads, no Hub requests)
    hub_offline: bool = True
    #: predictions kept by :class:`skin.service.cache.PredictionCache` (0 = none)
    prediction_cache: int = PREDICTION_CACHE_SIZE
    #: the photo-type model's folder (:mod:`skin.phototype`); ``None`` = the gate is off
    phototype: str | None = None

    def available_examples(self) -> list[ExamplePhoto]:
        """The example photos present on this machine."""
        return [e for e in self.examples if e.available]


def hub_offline_from_env() -> bool:
    """Whether the app stays offline: yes unless ``HF_HUB_OFFLINE`` is set to a false value.

    The app must not download anything a visitor did not ask for, so unset
    means offline here, unlike huggingface_hub's own default; a set value is
    read with huggingface_hub's own true values. Read when the config is
    loaded, not from ``huggingface_hub.constants.HF_HUB_OFFLINE``, which is
    fixed when huggingface_hub is imported and is False when unset.
    """
    from huggingface_hub.constants import ENV_VARS_TRUE_VALUES

    value = os.environ.get("HF_HUB_OFFLINE")
    return value is None or value.strip().upper() in ENV_VARS_TRUE_VALUES


def prediction_cache_from_env() -> int:
    """``SKINLENS_PREDICTION_CACHE`` (a count ≥ 0), else :data:`PREDICTION_CACHE_SIZE`."""
    value = os.environ.get(CACHE_ENV, "").strip()
    if not value:
        return PREDICTION_CACHE_SIZE
    if not value.isdigit():
        raise ValueError(f"{CACHE_ENV} must be a whole number of predictions (0 = no cache), got {value!r}")
    return int(value)


def _resolve_model_ref(ref: str, base: Path) -> str:
    """Relative folder paths are relative to the config file; Hub ids and defaults pass through."""
    if ref.startswith("default:"):
        return ref
    p = Path(ref).expanduser()
    if not p.is_absolute() and (base / p).exists():
        return str((base / p).resolve())
    return str(p) if p.exists() else ref


def _read_yaml(cfg_path: Path, explicit: bool, from_env: bool) -> dict[str, Any]:
    """The mapping in ``cfg_path``; ``{}`` when the default file is absent."""
    import yaml

    if not cfg_path.is_file():
        if explicit:
            raise ValueError(f"config file {cfg_path} not found (from {CONFIG_ENV if from_env else 'path'}); "
                             f"fix the path or unset {CONFIG_ENV} to use skinlens.yaml")
        return {}
    try:
        raw = yaml.safe_load(cfg_path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{cfg_path} is not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ValueError(f"{cfg_path} must hold a mapping (models:, top_k:, ...), got {type(raw).__name__}")
    return raw


def _model_spec(key: str, m: Any, default_threshold: float, base: Path, where: Path) -> ModelSpec:
    """One ``models.<key>`` entry, validated, with its defaults filled in."""
    from skin.tasks import TaskKind, get_task

    if not isinstance(m, dict) or "model" not in m or "task" not in m:
        raise ValueError(f"{where}: models.{key} needs 'task' (e.g. condition_ham10000) and 'model' "
                         "(a folder, Hub id or default:...)")
    task = get_task(str(m["task"]))
    inp = str(m.get("input", "face" if task.kind is TaskKind.AGE else "closeup"))
    if inp not in INPUTS:
        raise ValueError(f"{where}: models.{key}.input must be one of {INPUTS}, got {inp!r}")
    refuse = m.get("refuse_faces", inp == "closeup" and task.dataset in CLOSEUP_ONLY_DATASETS)
    if not isinstance(refuse, bool):
        raise ValueError(f"{where}: models.{key}.refuse_faces must be true or false, got {refuse!r}")
    if refuse and inp == "face":
        raise ValueError(f"{where}: models.{key} reads faces (input: face): drop refuse_faces")
    photo_types = _photo_types(m.get("photo_types"), task, inp, f"{where}: models.{key}.photo_types")
    thr = float(m.get("abstain_below", default_threshold))
    if not 0.0 <= thr < 1.0:
        raise ValueError(f"{where}: models.{key}.abstain_below must be in [0, 1), got {thr}")
    return ModelSpec(
        key=key, task=task.name, model=_resolve_model_ref(str(m["model"]), base), input=inp,
        title=str(m.get("title") or task.description), abstain_below=thr, card_url=m.get("card_url"),
        refuse_faces=refuse, photo_types=photo_types,
    )


def _photo_types(raw: Any, task, inp: str, where: str) -> tuple[str, ...]:
    """A model's ``photo_types``: the list given, else the default of its dataset (faces for face models)."""
    from skin.phototype import SKIN_PHOTO_TYPES

    if raw is None:
        if inp == "face":
            return ("face",)
        return DATASET_PHOTO_TYPES.get(task.dataset, SKIN_PHOTO_TYPES)
    values = [raw] if isinstance(raw, str) else raw
    if not isinstance(values, list) or not values or any(v not in SKIN_PHOTO_TYPES for v in values):
        raise ValueError(f"{where} must be a list drawn from {', '.join(SKIN_PHOTO_TYPES)} (the photo types the "
                         f"model answers, e.g. [clinical, face]); got {raw!r}. Leave it out for the default of "
                         "the task's dataset")
    return tuple(dict.fromkeys(values))


def _phototype_folder(raw: Any, base: Path, where: Path) -> str | None:
    """The photo-type model folder (relative to the config file), or ``None`` when turned off."""
    from skin.phototype import default_dir

    if raw is _UNSET:
        return str(default_dir())
    if raw in GATE_OFF or (isinstance(raw, str) and raw.strip().lower() in GATE_OFF):
        return None
    if not isinstance(raw, str):
        raise ValueError(f"{where}: phototype must be a folder (e.g. models/phototype) or off, got {raw!r}")
    path = Path(raw).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())



def _examples(raw: Any, base: Path, where: Path) -> list[ExamplePhoto]:
    """The ``examples:`` list; each photo needs a path and a licence."""
    if not isinstance(raw, list):
        raise ValueError(f"{where}: 'examples' must be a list of {{path:, caption:, licence:}}")
    examples = []
    for i, e in enumerate(raw):
        if not isinstance(e, dict) or not e.get("path") or not e.get("licence"):
            raise ValueError(f"{where}: examples[{i}] needs 'path' and 'licence' (and a 'caption'): an "
                             "example photo is shown with its licence")
        path = Path(str(e["path"]))
        examples.append(ExamplePhoto(path=str(path if path.is_absolute() else base / path),
                                     caption=str(e.get("caption") or path.name), licence=str(e["licence"])))
    return examples


def load_config(path: str | os.PathLike | None = None) -> AppConfig:
    """Read the app configuration: ``path``, else ``$SKINLENS_CONFIG``, else ``skinlens.yaml``.

    A missing default file gives the built-in defaults; a missing file that
    was asked for explicitly is an error.
    """
    explicit = path or os.environ.get(CONFIG_ENV)
    cfg_path = Path(explicit) if explicit else DEFAULT_CONFIG_PATH
    raw = _read_yaml(cfg_path, explicit=bool(explicit), from_env=not path)
    base = cfg_path.resolve().parent
    default_threshold = float(raw.get("abstain_below", 0.5))
    models_raw = raw.get("models", DEFAULT_MODELS)
    if not isinstance(models_raw, dict) or not models_raw:
        raise ValueError(f"{cfg_path}: 'models' must map a name to {{task:, model:, input:}}")
    models = {str(key): _model_spec(str(key), m, default_threshold, base, cfg_path) for key, m in models_raw.items()}
    examples = _examples(raw.get("examples") or [], base, cfg_path)
    top_k = int(raw.get("top_k", 3))
    if top_k < 1:
        raise ValueError(f"{cfg_path}: top_k must be ≥ 1, got {top_k}")
    return AppConfig(
        models=models,
        top_k=top_k,
        max_upload_bytes=int(float(raw.get("max_upload_mb", MAX_UPLOAD_BYTES / 2**20)) * 2**20),
        max_pixels=int(raw.get("max_pixels", MAX_PIXELS)),
        model_card_url=str(raw.get("model_card_url", "model_card.md")),
        source=str(cfg_path) if cfg_path.is_file() else "built-in defaults",
        examples=examples,
        hub_offline=hub_offline_from_env(),
        prediction_cache=prediction_cache_from_env(),
        phototype=_phototype_folder(raw.get("phototype", _UNSET), base, cfg_path),
    )

"""One registry of tasks, and the domain facts each task carries.

A task knows its dataset, its kind, its labels, how to read its target from a
dataset row, its headline metric (what the model card, the app's fairness
card, the fairness figures and ``train.py``'s checkpoint selection all rank
by), which columns the fairness report groups by, and which classes are
malignant. ``train.py``, ``skin.evaluate``, ``skin.hub`` and the app all look
tasks up here; nothing else defines these facts.

Kinds (:class:`TaskKind`):

* ``classification``: softmax over ``labels``; target = the ``label`` column.
* ``ordinal``: graded target (AI-Hub grades); also reports MAE and P-Recall.
* ``age``: "regression via classification" (DEX, Rothe et al. 2015): softmax
  over whole years 0..100 (100 = "100+"), the estimate is the expectation of
  that distribution. Chosen over a single regression output because it keeps
  the exported checkpoint an ordinary image classifier that
  ``pipeline("image-classification")`` and calibration both understand; MAE is
  computed on the expected age and the age groups (:data:`AGE_BINS`) are read
  off it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from dataset_scripts.dermnet_groupings import CLINICAL as DERMNET_CLINICAL
from dataset_scripts.dermnet_groupings import MALIGNANT_FOLDERS as DERMNET_MALIGNANT_FOLDERS


class TaskKind(str, Enum):
    """What a task predicts; a ``str`` so that reports keep writing ``"age"``."""

    CLASSIFICATION = "classification"
    ORDINAL = "ordinal"
    AGE = "age"

    def __str__(self) -> str:
        return self.value


AGE_MAX = 100
#: Labels of the age model: one class per whole year, the last one open-ended.
AGE_LABELS = [str(a) for a in range(AGE_MAX)] + [f"{AGE_MAX}+"]
#: Lower edges of the age groups 0-24, 25-49, 50-74, 75-99, 100+ (the original
#: age project's five groups; the UTKFace builder's ``age_group`` column too).
AGE_BINS = (0, 25, 50, 75, 100)


def age_group_names(bins=AGE_BINS) -> list[str]:
    """``(0, 25, 50)`` → ``["0-24", "25-49", "50+"]``."""
    names = [f"{lo}-{hi - 1}" for lo, hi in zip(bins[:-1], bins[1:])]
    return names + [f"{bins[-1]}+"]


def age_to_group(age, bins=AGE_BINS):
    """Index of the age group of each age: the last lower edge in ``bins`` ≤ age.

    A scalar gives an ``int``, an array an int array. Ages below the first
    edge (a regressor's −1 for a newborn) count in the first group; NaN is an
    error.
    """
    b = np.asarray(bins, dtype=np.float64)
    if b.ndim != 1 or b.size < 1 or np.any(np.diff(b) <= 0):
        raise ValueError(f"bins must be strictly increasing lower edges, e.g. {AGE_BINS}; got {bins!r}")
    a = np.asarray(age, dtype=np.float64)
    if np.any(np.isnan(a)):
        raise ValueError("age contains NaN")
    g = np.maximum(np.searchsorted(b, a, side="right") - 1, 0)
    return int(g) if g.ndim == 0 else g.astype(np.int64)


def completed_years(age: float) -> int:
    """An age estimate as the app states it: whole years completed (74.6 → 74).

    Counted the way :func:`age_to_group` counts (an age belongs to the group
    whose lower edge it has reached), so a stated age always lies in the group
    stated beside it; rounding would show 74.6 as "75" in the group 50-74.
    """
    return max(int(np.floor(float(age))), 0)


def label_ages(labels) -> np.ndarray:
    """The age of each class of an age model (``"0"``, ..., ``"100+"`` → 0.0 .. 100.0)."""
    try:
        return np.asarray([float(str(lbl).rstrip("+")) for lbl in labels])
    except ValueError as e:
        raise ValueError(f"age model labels must be ages ('0', ..., '{AGE_MAX}+'), got {list(labels)[:3]}...") from e


@dataclass(frozen=True)
class HeadlineMetric:
    """The one number a task is ranked and compared by."""

    #: key in the metric dicts and the fairness report (``"balanced_accuracy"``)
    name: str
    #: words for people (``"balanced accuracy"``)
    label: str
    greater_is_better: bool
    #: a gap between groups above this is called large (in the metric's unit)
    large_gap: float


#: Headline metric per kind. Balanced accuracy, not accuracy, for classes and
#: grades: the datasets are imbalanced (HAM10000 is two-thirds naevi).
HEADLINE_METRICS = {
    TaskKind.CLASSIFICATION: HeadlineMetric("balanced_accuracy", "balanced accuracy", True, 0.10),
    TaskKind.ORDINAL: HeadlineMetric("balanced_accuracy", "balanced accuracy", True, 0.10),
    TaskKind.AGE: HeadlineMetric("mae", "mean absolute error (years)", False, 3.0),
}


@dataclass(frozen=True)
class Task:
    name: str
    dataset: str
    kind: TaskKind
    description: str
    #: columns of the dataset used as fairness groups, when present (every builder has
    #: ``tone_bucket_estimated``, the tone estimated from the pixels: dataset_scripts/_base.py)
    sensitive: tuple[str, ...] = ("tone_bucket", "tone_bucket_estimated")
    #: label names of the malignant classes (fairness FNR / FPR, DDI audit)
    malignant: tuple[str, ...] = ()
    #: builder kwargs (e.g. the AI-Hub grade) passed to skin.data.load
    data_config: dict = field(default_factory=dict)
    #: labels fixed by the task (age); otherwise read from the dataset
    fixed_labels: tuple[str, ...] = ()
    #: human-readable name of each class id, where the ids are not readable themselves (shown by the app)
    label_names: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "kind", TaskKind(self.kind))

    @property
    def metric(self) -> HeadlineMetric:
        return HEADLINE_METRICS[self.kind]

    @property
    def ordinal(self) -> bool:
        return self.kind in (TaskKind.ORDINAL, TaskKind.AGE)

    @property
    def upright(self) -> bool:
        """Whether the images have an up (faces): no vertical flips in augmentation or TTA."""
        return self.dataset in ("utkface", "aihub")

    @property
    def age_bins(self) -> tuple[int, ...]:
        """Lower edges of the age groups this task reports (the same for every task)."""
        return AGE_BINS

    def labels(self, features=None) -> list[str]:
        if self.fixed_labels:
            return list(self.fixed_labels)
        if features is None or not hasattr(features.get("label"), "names"):
            raise ValueError(f"task {self.name}: the dataset has no ClassLabel 'label' column")
        return list(features["label"].names)

    def malignant_indices(self, labels) -> list[int]:
        """Indices of this task's malignant classes among ``labels``."""
        return indices_of(labels, self.malignant)

    def target(self, row: dict) -> int:
        """The class index a training row is supervised with."""
        if self.kind is TaskKind.AGE:
            return int(min(max(round(row["age"]), 0), AGE_MAX))
        return int(row["label"])

    def targets(self, ds) -> np.ndarray:
        if self.kind is TaskKind.AGE:
            return np.clip(np.round(np.asarray(ds["age"], dtype=float)), 0, AGE_MAX).astype(int)
        return np.asarray(ds["label"], dtype=int)


_CONDITION = "skin-condition classification"
_CLS, _AGE = TaskKind.CLASSIFICATION, TaskKind.AGE
TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task("condition_ham10000", "ham10000", _CLS, f"{_CONDITION}: 7 HAM10000 dermoscopy classes",
             sensitive=("sex", "age_group", "site", "tone_bucket_estimated"), malignant=("akiec", "bcc", "mel"),
             label_names={"akiec": "Actinic keratosis / Bowen's disease", "bcc": "Basal cell carcinoma",
                          "bkl": "Benign keratosis (seborrhoeic keratosis, sun spot)", "df": "Dermatofibroma",
                          "mel": "Melanoma", "nv": "Melanocytic naevus (mole)",
                          "vasc": "Vascular lesion (angioma, haemorrhage)"}),
        Task("condition_pad_ufes20", "pad_ufes20", _CLS, f"{_CONDITION}: 6 PAD-UFES-20 diagnoses",
             sensitive=("tone_bucket", "tone_bucket_estimated", "sex"), malignant=("BCC", "MEL", "SCC"),
             label_names={"ACK": "Actinic keratosis", "BCC": "Basal cell carcinoma", "MEL": "Melanoma",
                          "NEV": "Melanocytic naevus (mole)", "SCC": "Squamous cell carcinoma",
                          "SEK": "Seborrhoeic keratosis"}),
        Task("condition_scin", "scin", _CLS, f"{_CONDITION}: SCIN top dermatologist label",
             sensitive=("tone_bucket", "tone_bucket_estimated", "sex", "age_group")),
        Task("condition_kaggle", "kaggle", _CLS, f"{_CONDITION}: the Kaggle 10-class set",
             sensitive=("tone_bucket_estimated",), malignant=("Melanoma", "Basal Cell Carcinoma (BCC)")),
        Task("condition_dermnet", "dermnet", _CLS, f"{_CONDITION}: {len(DERMNET_CLINICAL)} groups of DermNet "
             "clinical photos", sensitive=("tone_bucket_estimated",),
             malignant=tuple(c for c, spec in DERMNET_CLINICAL.items() if spec.malignant),
             label_names={c: spec.name for c, spec in DERMNET_CLINICAL.items()}),
        Task("condition_dermnet_folders", "dermnet", _CLS, "the clinical grouping's DermNet folders as "
             "classes, on its split (sum a folder model's probabilities into the grouping's classes)",
             sensitive=("tone_bucket_estimated",), data_config={"folder_labels": True},
             malignant=DERMNET_MALIGNANT_FOLDERS),
        Task("malignancy_ddi", "ddi", _CLS, "benign vs malignant on DDI (audit set)",
             sensitive=("tone_bucket", "tone_bucket_estimated"), malignant=("malignant",)),
        Task("age_utkface", "utkface", _AGE, "age in years (DEX expectation) and the five age groups",
             sensitive=("gender", "race", "age_group", "tone_bucket_estimated"), fixed_labels=tuple(AGE_LABELS)),
    ]
}
for _grade in ("forehead_wrinkle", "forehead_pigmentation", "glabellus_wrinkle", "l_perocular_wrinkle",
               "l_cheek_pore", "l_cheek_pigmentation", "lip_dryness", "chin_sagging",
               "oil", "hydration", "wrinkle", "pigmentation", "sensitivity"):
    TASKS[f"aihub_{_grade}"] = Task(
        f"aihub_{_grade}", "aihub", TaskKind.ORDINAL, f"AI-Hub dermatologist grade: {_grade}",
        sensitive=("gender", "age_group", "tone_bucket_estimated"), data_config={"task": _grade},
    )

#: Every label name some task calls malignant: how a model trained on any of
#: these datasets is audited for malignancy on DDI.
MALIGNANT_LABELS = frozenset(name for t in TASKS.values() for name in t.malignant)


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def indices_of(labels, names) -> list[int]:
    """Indices of the ``labels`` that are among ``names``, in label order."""
    names = set(names)
    return [i for i, label in enumerate(labels) if label in names]


def malignant_indices(labels) -> list[int]:
    """Indices of ``labels`` that any task calls malignant (a model audited on DDI)."""
    return indices_of(labels, MALIGNANT_LABELS)


def malignant_probability(probs, labels, malignant) -> float | None:
    """The summed probability in ``probs`` (one row, over ``labels``) of the classes named in ``malignant``
    (a task's :attr:`Task.malignant`), or ``None`` when ``labels`` has none of them: the app shows it under a
    condition answer and the history keeps it as a score."""
    idx = indices_of(labels, malignant)
    return float(np.asarray(probs, dtype=np.float64)[idx].sum()) if idx else None

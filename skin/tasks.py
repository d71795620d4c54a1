"""One registry of tasks: which dataset, which target, which metrics.

A task knows its labels, how to read its target from a dataset row, whether it
is ordinal, which columns the fairness report groups by, and which classes are
malignant (for the false-negative / false-positive rates). ``train.py``,
``skin.evaluate`` and the app all look tasks up here.

Kinds:

* ``classification``: softmax over ``labels``; target = the ``label`` column.
* ``ordinal``: graded target (AI-Hub grades); also reports MAE and P-Recall.
* ``age``: "regression via classification" (DEX, Rothe et al. 2015): softmax
  over whole years 0..100 (100 = "100+"), the estimate is the expectation of
  that distribution. Chosen over a single regression output because it keeps
  the exported checkpoint an ordinary image classifier that
  ``pipeline("image-classification")`` and calibration both understand; MAE is
  computed on the expected age and the five age groups are read off it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

AGE_MAX = 100
AGE_LABELS = [str(a) for a in range(AGE_MAX)] + [f"{AGE_MAX}+"]
AGE_BINS = (0, 25, 50, 75, 100)  # the original age project's five groups


@dataclass(frozen=True)
class Task:
    name: str
    dataset: str
    kind: str  # classification | ordinal | age
    description: str
    #: columns of the dataset used as fairness groups, when present
    sensitive: tuple[str, ...] = ("tone_bucket",)
    #: label names of the malignant classes (fairness FNR / FPR, DDI audit)
    malignant: tuple[str, ...] = ()
    #: builder kwargs (e.g. the AI-Hub grade) passed to skin.data.load
    data_config: dict = field(default_factory=dict)
    #: labels fixed by the task (age); otherwise read from the dataset
    fixed_labels: tuple[str, ...] = ()

    @property
    def ordinal(self) -> bool:
        return self.kind in ("ordinal", "age")

    @property
    def upright(self) -> bool:
        """Whether the images have an up (faces): no vertical flips in augmentation or TTA."""
        return self.dataset in ("utkface", "aihub")

    def labels(self, features=None) -> list[str]:
        if self.fixed_labels:
            return list(self.fixed_labels)
        if features is None or not hasattr(features.get("label"), "names"):
            raise ValueError(f"task {self.name}: the dataset has no ClassLabel 'label' column")
        return list(features["label"].names)

    def target(self, row: dict) -> int:
        """The class index a training row is supervised with."""
        if self.kind == "age":
            return int(min(max(round(row["age"]), 0), AGE_MAX))
        return int(row["label"])

    def targets(self, ds) -> np.ndarray:
        if self.kind == "age":
            return np.clip(np.round(np.asarray(ds["age"], dtype=float)), 0, AGE_MAX).astype(int)
        return np.asarray(ds["label"], dtype=int)


_CONDITION = "skin-condition classification"
TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task("condition_ham10000", "ham10000", "classification", f"{_CONDITION}: 7 HAM10000 dermoscopy classes",
             sensitive=("sex", "age_group", "site"), malignant=("akiec", "bcc", "mel")),
        Task("condition_pad_ufes20", "pad_ufes20", "classification", f"{_CONDITION}: 6 PAD-UFES-20 diagnoses",
             sensitive=("tone_bucket", "sex"), malignant=("BCC", "MEL", "SCC")),
        Task("condition_scin", "scin", "classification", f"{_CONDITION}: SCIN top dermatologist label",
             sensitive=("tone_bucket", "sex", "age_group")),
        Task("condition_kaggle", "kaggle", "classification", f"{_CONDITION}: the Kaggle 10-class set",
             sensitive=(), malignant=("Melanoma", "Basal Cell Carcinoma (BCC)")),
        Task("malignancy_ddi", "ddi", "classification", "benign vs malignant on DDI (audit set)",
             sensitive=("tone_bucket",), malignant=("malignant",)),
        Task("age_utkface", "utkface", "age", "age in years (DEX expectation) and the five age groups",
             sensitive=("gender", "race", "label"), fixed_labels=tuple(AGE_LABELS)),
    ]
}
for _grade in ("forehead_wrinkle", "forehead_pigmentation", "glabellus_wrinkle", "l_perocular_wrinkle",
               "l_cheek_pore", "l_cheek_pigmentation", "lip_dryness", "chin_sagging",
               "oil", "hydration", "wrinkle", "pigmentation", "sensitivity"):
    TASKS[f"aihub_{_grade}"] = Task(
        f"aihub_{_grade}", "aihub", "ordinal", f"AI-Hub dermatologist grade: {_grade}",
        sensitive=("gender", "age_group"), data_config={"task": _grade},
    )


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def age_group_names(bins=AGE_BINS) -> list[str]:
    names = [f"{lo}-{hi - 1}" for lo, hi in zip(bins[:-1], bins[1:])]
    return names + [f"{bins[-1]}+"]


def age_to_group(age, bins=AGE_BINS) -> np.ndarray:
    """Index of the age group of each age (``bins`` are lower edges)."""
    return np.searchsorted(np.asarray(bins), np.asarray(age, dtype=float), side="right") - 1

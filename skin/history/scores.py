"""The scores a history entry keeps, and for each which direction is better.

A score is named ``<model key>:<what>`` (the model key of ``skinlens.yaml``):

* ``<key>:<class>``: the calibrated probability of one class. No direction:
  a lower probability of, say, seborrhoeic keratosis is not better skin when
  the probability went to another class; such a score can only have
  ``changed`` (or not).
* ``<key>:malignant``: the summed probability of the task's malignant classes
  (:attr:`skin.tasks.Task.malignant`). Lower is better: less of the model's
  belief on a cancer class is the one reading of this number everyone shares.
* ``<key>:age``: the apparent-age estimate in years (DEX expectation). Lower
  is better: a face that looks younger is what the skin-care services this
  feature comes from call an improvement. It is a cosmetic reading; the
  verdict says "apparent age", never health.

Each definition also carries a noise floor: the smallest standard deviation
assumed for one measurement, so that a photo whose variations happened to
score identically (a saturated probability) does not make every later change
look real. The floors are the measurement's resolution, not a fitted figure:
1 percentage point of probability, half a year of age.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SEPARATOR = ":"
MALIGNANT = "malignant"
AGE = "age"
#: Which way a score should move: ``"higher"``, ``"lower"``, or ``None`` (no better direction).
DIRECTIONS = ("higher", "lower", None)
PROBABILITY_FLOOR = 0.01
AGE_FLOOR_YEARS = 0.5


@dataclass(frozen=True)
class ScoreDef:
    """One score: its name, which direction is better (``None``: none is), its noise floor and unit."""

    name: str
    better: str | None
    noise_floor: float
    unit: str = "probability"

    def __post_init__(self):
        if self.better not in DIRECTIONS:
            raise ValueError(f"score {self.name}: better must be one of {DIRECTIONS}, got {self.better!r}")


def score_name(key: str, what: str) -> str:
    return f"{key}{SEPARATOR}{what}"


def score_model(name: str) -> str:
    """The model key of a score (the inverse of :func:`score_name` for its first part)."""
    return name.split(SEPARATOR, 1)[0]


def score_definition(name: str) -> ScoreDef:
    """The definition of a score from its name (see the module docstring)."""
    what = name.rsplit(SEPARATOR, 1)[-1]
    if what == AGE:
        return ScoreDef(name, "lower", AGE_FLOOR_YEARS, unit="years")
    if what == MALIGNANT:
        return ScoreDef(name, "lower", PROBABILITY_FLOOR)
    return ScoreDef(name, None, PROBABILITY_FLOOR)


def model_scores(key: str, labels: Sequence[str], probs: np.ndarray, *, age: bool,
                 malignant: Sequence[str] = ()) -> dict[str, float]:
    """The scores of one model's softmax ``probs`` over ``labels``.

    Age models give one score, the estimate; classifiers one per class, plus
    ``malignant`` when the task names malignant classes present in ``labels``.
    """
    from skin.tasks import malignant_probability

    probs = np.asarray(probs, dtype=np.float64)
    if age:
        from skin.metrics import expected_age
        from skin.tasks import label_ages

        return {score_name(key, AGE): float(expected_age(probs[None], label_ages(labels))[0])}
    out = {score_name(key, label): float(p) for label, p in zip(labels, probs, strict=True)}
    cancer = malignant_probability(probs, labels, malignant)
    if cancer is not None:
        out[score_name(key, MALIGNANT)] = cancer
    return out


"""From a model's probabilities to the answer shown: the top answers, the age estimate, and abstention.

The exported models are calibrated (temperature folded into the classifier),
so the top probability is an honest estimate of being right, and the app
answers only when it reaches the model's ``abstain_below`` (by default 0.5:
more likely right than wrong). Below it the answer is withheld but the
guesses are still listed, marked unreliable.

For age the model gives one probability per year (DEX); the estimate is the
expectation of that distribution, shown with its age group. What is compared
with the threshold is the probability of *the estimate's group* (the summed
probability of its years), not of one year: a single year out of 101 is rarely
above 0.5 even when the estimate is good. The group shown is the estimate's,
so the age and its group agree, but another group can hold more probability
mass (an estimate close to a group boundary); the estimate's group then holds
under half, the model abstains at the default threshold, and the reason names
the group that was compared instead of calling it the most likely.

A condition model whose task names malignant classes also gives their summed
probability (``malignant``). The answer is one class, and a model can spread
its belief over several cancer classes and still answer a benign one, as it
did for many of the cancers among its test photos (the reports' ``fnr``); the
sum, measured as a binary probability on the same photos, is calibrated there
(bench/malignant_sum.py), so it is shown as one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from skin.tasks import completed_years, indices_of, malignant_probability


#: How the reason for a low-confidence abstention starts (the page's heading already says it, and drops it).
NOT_CONFIDENT = "not confident: "
#: Why a condition model's abstention is not an invitation to try again with the same photo: turned or
#: re-saved, a third (clinical) to a half (dermoscopy) of the withheld photos get an answer, which is then
#: right under half the time although stated at the threshold or above (bench/robustness.py, "gained").
SAME_PHOTO_AGAIN = ("Turning the photo or sending it again until an answer comes would not make that answer "
                    "reliable; a new photo, closer and in better light, might")


def read_out(probs: np.ndarray, labels: list[str], *, age: bool, top_k: int, abstain_below: float,
             names: Mapping[str, str] | None = None, malignant: Sequence[str] = ()) -> dict:
    """``{"top_k", "confidence", ("estimate", "group", "group_probability"), ("malignant"),
    ("abstained", "reason")}``.

    ``probs``: the softmax over ``labels``; ``age``: whether the labels are
    ages (``"0"`` … ``"100+"``), read out as an estimate and its age group;
    ``names``: the task's human-readable class names, added to each answer as
    ``name`` (its ``label`` stays the model's class id); ``malignant``: the
    task's malignant class labels: where any is among ``labels``, ``malignant``
    gives their summed ``probability`` and their ``classes`` (readable names).
    """
    names = names or {}
    out = _age_read_out(probs, labels, top_k) if age else _class_read_out(probs, labels, top_k, names)
    cancer = None if age else malignant_probability(probs, labels, malignant)
    if cancer is not None:
        out["malignant"] = {"probability": cancer,
                            "classes": [names.get(labels[i], labels[i]) for i in indices_of(labels, malignant)]}
    if out["confidence"] < abstain_below:
        out["abstained"] = True
        if age:
            what = (f"the estimate ({completed_years(out['estimate'])} years) falls in the age group "
                    f"{out['group']}, which")
        else:
            what = "the most likely answer"
        out["reason"] = (f"{NOT_CONFIDENT}{what} has probability {out['confidence']:.0%}, "
                         f"below this app's threshold of {abstain_below:.0%}. The photo may be out of "
                         "scope for this model (e.g. not the kind of image it was trained on)"
                         + ("" if age else f". {SAME_PHOTO_AGAIN}"))
    return out


def _class_read_out(probs: np.ndarray, labels: list[str], k: int, names: Mapping[str, str]) -> dict:
    order = np.argsort(-probs)[:k]
    rows = [{"label": labels[i], "probability": float(probs[i])} for i in order]
    for row in rows:
        if row["label"] in names:
            row["name"] = names[row["label"]]
    return {"top_k": rows,
            "confidence": float(probs[order[0]])}


def _age_read_out(probs: np.ndarray, labels: list[str], k: int) -> dict:
    """The DEX estimate, its age group, and the ``k`` groups holding the most probability."""
    from skin.metrics import expected_age
    from skin.tasks import age_group_names, age_to_group, label_ages

    ages = label_ages(labels)
    estimate = float(expected_age(probs[None], ages)[0])
    names = age_group_names()
    group_p = np.bincount(age_to_group(ages), weights=probs, minlength=len(names))
    g = int(age_to_group(estimate))
    order = np.argsort(-group_p)[:k]
    return {"estimate": round(estimate, 1), "group": names[g], "group_probability": float(group_p[g]),
            "top_k": [{"label": names[i], "probability": float(group_p[i])} for i in order],
            "confidence": float(group_p[g])}


def target_index(labels: list[str], model_key: str, target, names: Mapping[str, str] | None = None) -> int | None:
    """The class index Explain should explain: ``target`` is a label or an index of ``labels``, or a class's
    readable name from ``names`` (label → name, as the answers show it; case and surrounding spaces do not
    matter); ``None`` or blank = the predicted class (``None`` returned). Anything else is a ``ValueError``
    listing the labels."""
    if target is None or (isinstance(target, str) and not target.strip()):
        return None
    if isinstance(target, str) and target in labels:
        return labels.index(target)
    if isinstance(target, str):
        wanted = target.strip().casefold()
        for i, label in enumerate(labels):
            if wanted in (label.casefold(), (names or {}).get(label, label).casefold()):
                return i
    try:
        idx = int(target)
    except (TypeError, ValueError):
        idx = -1
    if not 0 <= idx < len(labels):
        shown = ", ".join(labels[:12]) + (" …" if len(labels) > 12 else "")
        raise ValueError(f"unknown target class {target!r} for the {model_key} model; use one of: {shown}")
    return idx


#: The ``target`` Explain reports when it explained the age estimate rather than one class.
ESTIMATE = "estimate"


@dataclass(frozen=True)
class ExplainTarget:
    """What an explanation attributes: output ``index`` of the model's logits, or of ``readout`` over
    them (the age estimate), with the ``label`` and readable ``name`` it is reported under and the
    probability of that class (``None`` for the estimate)."""

    index: int
    label: str
    name: str
    probability: float | None
    readout: Any = None

    @property
    def legend(self) -> str:
        """The name under the heatmap's colour bar (short: the estimate's years are in the answer)."""
        return "age estimate" if self.readout is not None else self.name

    @property
    def raised(self) -> str:
        """What red means on the map."""
        return "raised the estimate most" if self.readout is not None else \
            "raised the score of the target class most"


def explain_target(labels: list[str], probs: np.ndarray, index: int | None, names: Mapping[str, str], *,
                   age: bool) -> ExplainTarget:
    """The :class:`ExplainTarget` for a chosen class ``index`` (from :func:`target_index`) or, with
    ``None``, for the answer the app gave: the predicted class, or for an age model the estimate itself
    (the expectation over its years, :class:`skin.explain.ExpectedValue`), since the app states that
    number and no single year holds more than a few per cent of the probability."""
    if index is None and age:
        from skin.explain import ExpectedValue
        from skin.tasks import label_ages

        estimate = _age_read_out(probs, labels, 1)["estimate"]
        return ExplainTarget(0, ESTIMATE, f"Age estimate: {completed_years(estimate)} years", None,
                             ExpectedValue(label_ages(labels), "age estimate"))
    index = int(np.argmax(probs)) if index is None else int(index)
    return ExplainTarget(index, labels[index], names.get(labels[index], labels[index]), float(probs[index]))

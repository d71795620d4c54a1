"""skin.service.readout: probabilities to the answer shown, and when to withhold it."""

from __future__ import annotations

import numpy as np
import pytest

from skin.metrics import expected_age
from skin.service.readout import SAME_PHOTO_AGAIN, read_out
from skin.tasks import AGE_LABELS, age_group_names, age_to_group, completed_years
from tests.app_helpers import HAM_LABELS


def test_top_k_in_order_and_confidence():
    probs = np.array([0.05, 0.1, 0.6, 0.05, 0.1, 0.05, 0.05])
    out = read_out(probs, HAM_LABELS, age=False, top_k=3, abstain_below=0.5)
    assert [r["label"] for r in out["top_k"]][0] == "bkl" and len(out["top_k"]) == 3
    assert out["confidence"] == pytest.approx(0.6) and "abstained" not in out


def test_answers_carry_the_tasks_readable_class_names():
    from skin.tasks import get_task

    names = get_task("condition_dermnet").label_names
    labels = list(names)
    probs = np.eye(len(labels))[labels.index("acne_rosacea")] * 0.9 + 0.1 / len(labels)
    out = read_out(probs, labels, age=False, top_k=2, abstain_below=0.5, names=names)
    assert out["top_k"][0] == {"label": "acne_rosacea", "name": "Acne & rosacea", "probability": pytest.approx(
        0.9 + 0.1 / len(labels))}
    assert all(r["name"] == names[r["label"]] for r in out["top_k"])
    assert "name" not in read_out(probs, labels, age=False, top_k=2, abstain_below=0.5)["top_k"][0]


def test_cancer_classes_summed_with_their_readable_names():
    from skin.tasks import get_task

    task = get_task("condition_ham10000")
    probs = np.array([0.2, 0.15, 0.05, 0.2, 0.1, 0.25, 0.05])  # HAM_LABELS: akiec, bcc, bkl, df, mel, nv, vasc
    out = read_out(probs, HAM_LABELS, age=False, top_k=2, abstain_below=0.5, names=task.label_names,
                   malignant=task.malignant)
    assert out["top_k"][0]["label"] == "nv" and out["abstained"]  # the answer is benign and unsure ...
    assert out["malignant"]["probability"] == pytest.approx(0.45)  # ... while the cancer classes hold 45 %
    assert out["malignant"]["classes"] == [task.label_names[c] for c in ("akiec", "bcc", "mel")]
    # no sum without malignant classes among the labels, or for an age model
    assert "malignant" not in read_out(probs, HAM_LABELS, age=False, top_k=2, abstain_below=0.5)
    assert "malignant" not in read_out(probs, HAM_LABELS, age=False, top_k=2, abstain_below=0.5,
                                       malignant=("MEL",))
    ages = np.full(len(AGE_LABELS), 1 / len(AGE_LABELS))
    assert "malignant" not in read_out(ages, AGE_LABELS, age=True, top_k=2, abstain_below=0.5,
                                       malignant=task.malignant)


def test_low_confidence_abstains_but_lists_the_guesses():
    probs = np.full(7, 1 / 7)
    out = read_out(probs, HAM_LABELS, age=False, top_k=3, abstain_below=0.5)
    assert out["abstained"] and len(out["top_k"]) == 3
    assert out["reason"].startswith("not confident: the most likely answer has probability 14%, below this "
                                    "app's threshold of 50%")
    # a condition model's abstention says why the same photo again would not help (bench/robustness.py)
    assert out["reason"].endswith(f"trained on). {SAME_PHOTO_AGAIN}")


def test_age_abstention_does_not_claim_what_was_not_measured_for_age():
    probs = np.zeros(101)
    probs[[10, 60]] = 0.5
    out = read_out(probs, AGE_LABELS, age=True, top_k=3, abstain_below=0.6)
    assert out["abstained"] and SAME_PHOTO_AGAIN not in out["reason"]


def test_age_readout_is_dex_expectation():
    probs = np.zeros(101)
    probs[[30, 40]] = 0.5
    out = read_out(probs, AGE_LABELS, age=True, top_k=3, abstain_below=0.5)
    assert out["estimate"] == pytest.approx(float(expected_age(probs[None], np.arange(101.0))[0]))
    assert out["group"] == "25-49" and out["group_probability"] == pytest.approx(1.0)
    assert "abstained" not in out


def test_age_abstention_names_the_estimates_group_not_the_most_likely():
    """The group shown is the estimate's; when another group holds more mass, the reason must not call
    the shown group the most likely one."""
    probs = np.zeros(101)
    probs[[10, 30, 60]] = [0.45, 0.2, 0.35]  # estimate 31.5 years: group 25-49 (0.2); 0-24 holds 0.45
    out = read_out(probs, AGE_LABELS, age=True, top_k=3, abstain_below=0.5)
    assert out["group"] == "25-49" and out["top_k"][0]["label"] == "0-24"
    assert out["abstained"] and "most likely" not in out["reason"]
    assert "the estimate (31 years) falls in the age group 25-49, which has probability 20%" in out["reason"]


def test_stated_age_lies_in_the_stated_group():
    """An estimate just under a group's edge (74.6) is stated as 74 years in 50-74, never as "75 years" in 50-74."""
    probs = np.zeros(101)
    probs[[70, 80]] = [0.54, 0.46]  # estimate 74.6 years
    out = read_out(probs, AGE_LABELS, age=True, top_k=3, abstain_below=0.6)
    assert out["estimate"] == pytest.approx(74.6) and out["group"] == "50-74"
    assert "the estimate (74 years) falls in the age group 50-74" in out["reason"]
    names = age_group_names()
    for estimate in np.linspace(0, 100.9, 1010):
        assert names[age_to_group(completed_years(estimate))] == names[age_to_group(estimate)]


def test_age_labels_must_be_ages():
    with pytest.raises(ValueError, match="age model labels must be ages"):
        read_out(np.full(7, 1 / 7), HAM_LABELS, age=True, top_k=3, abstain_below=0.5)


def test_explain_target_by_label_index_or_readable_name():
    """The class to explain may be named as the answers show it ("Melanoma"), in any case, with stray spaces."""
    from skin.service.readout import target_index

    labels = ["akiec", "bcc", "mel", "nv"]
    names = {"mel": "Melanoma", "nv": "Melanocytic naevus (mole)"}
    assert target_index(labels, "condition", None) is None and target_index(labels, "condition", " ") is None
    assert target_index(labels, "condition", "mel") == 2 and target_index(labels, "condition", 3) == 3
    assert target_index(labels, "condition", "Melanoma", names) == 2
    assert target_index(labels, "condition", "  MEL ", names) == 2
    assert target_index(labels, "condition", "melanocytic naevus (mole)", names) == 3
    with pytest.raises(ValueError, match="unknown target class 'melanomas'.*use one of: akiec, bcc, mel, nv"):
        target_index(labels, "condition", "melanomas", names)

"""skin.tasks: the task registry and the facts it owns (kinds, headline metrics, age groups, malignant classes)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from skin.tasks import (
    AGE_BINS,
    AGE_LABELS,
    MALIGNANT_LABELS,
    TASKS,
    TaskKind,
    age_group_names,
    age_to_group,
    get_task,
    label_ages,
    malignant_indices,
)


def test_task_kind_is_an_enum_that_still_reads_as_its_string():
    task = get_task("age_utkface")
    assert task.kind is TaskKind.AGE
    assert task.kind == "age" and str(task.kind) == "age" and f"{task.kind}" == "age"
    assert json.dumps({"kind": task.kind}) == '{"kind": "age"}'
    assert TaskKind("ordinal") is TaskKind.ORDINAL
    assert all(isinstance(t.kind, TaskKind) for t in TASKS.values())


def test_headline_metric_per_kind():
    cond, age, grade = get_task("condition_ham10000"), get_task("age_utkface"), get_task("aihub_oil")
    assert (cond.metric.name, cond.metric.greater_is_better) == ("balanced_accuracy", True)
    assert (age.metric.name, age.metric.greater_is_better, age.metric.large_gap) == ("mae", False, 3.0)
    assert grade.kind is TaskKind.ORDINAL and grade.metric.name == "balanced_accuracy"
    assert "years" in age.metric.label


def test_age_groups_defined_once():
    assert age_group_names() == ["0-24", "25-49", "50-74", "75-99", "100+"]
    assert age_group_names((0, 25, 50)) == ["0-24", "25-49", "50+"]
    assert get_task("age_utkface").age_bins == AGE_BINS
    np.testing.assert_array_equal(age_to_group([0, 24, 24.9, 25, 74, 75, 99, 100, 116]), [0, 0, 0, 1, 2, 3, 3, 4, 4])
    assert age_to_group(30) == 1 and isinstance(age_to_group(30), int)
    assert age_to_group(-1.0) == 0  # a regressor's estimate below the first edge counts in the first group
    with pytest.raises(ValueError, match="NaN"):
        age_to_group([1.0, float("nan")])
    with pytest.raises(ValueError, match="increasing"):
        age_to_group(3, bins=(0, 50, 25))


def test_label_ages():
    np.testing.assert_array_equal(label_ages(AGE_LABELS), np.arange(101))
    with pytest.raises(ValueError, match="ages"):
        label_ages(["mel", "nv"])


def test_malignant_classes_live_in_the_task():
    ham = get_task("condition_ham10000")
    assert ham.malignant_indices(["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]) == [0, 1, 4]
    assert get_task("condition_scin").malignant_indices(["mel"]) == []
    assert {"mel", "BCC", "Melanoma", "malignant"} <= MALIGNANT_LABELS
    assert malignant_indices(["ACK", "BCC", "MEL", "NEV", "SCC", "SEK"]) == [1, 2, 4]


@pytest.mark.parametrize("task_name,builder", [("condition_ham10000", "ham10000"),
                                               ("condition_pad_ufes20", "pad_ufes20")])
def test_readable_names_cover_exactly_the_builders_classes(task_name, builder):
    """A class id the app shows by name has a name, and no name is written for a class the builder lacks."""
    import importlib

    task = get_task(task_name)
    classes = importlib.import_module(f"dataset_scripts.{builder}").CLASSES
    assert set(task.label_names) == set(classes)
    assert all(name and name != cls for cls, name in task.label_names.items())


def test_targets():
    from datasets import Dataset

    ds = Dataset.from_dict({"age": [0.4, 33.6, 130.0], "label": [0, 1, 2]})
    np.testing.assert_array_equal(get_task("age_utkface").targets(ds), [0, 34, 100])
    assert get_task("age_utkface").target({"age": 130}) == 100
    np.testing.assert_array_equal(get_task("condition_ham10000").targets(ds), [0, 1, 2])


def test_unknown_task_names_the_choices():
    with pytest.raises(ValueError, match="condition_ham10000"):
        get_task("nope")

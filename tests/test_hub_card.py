"""The model card rendered from the real embedded reports: its fairness table shows numbers with their CIs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from skin.model_card import CI_NOTES, render_model_card
from skin.tasks import get_task

MODELS = Path(__file__).resolve().parents[1] / "models"
NUMBER = re.compile(r"^-?\d+\.\d{3}$")


def _fairness_rows(card_text: str) -> list[list[str]]:
    section = card_text.split("## Fairness", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in rows[2:]]  # past header and rule


@pytest.mark.parametrize("name", ["condition", "clinical", "age"])
def test_card_fairness_table_from_the_real_report(name):
    report = json.loads((MODELS / name / "report.json").read_text())
    text = str(render_model_card(report))
    metric = get_task(report["task"]).metric
    assert f"| {metric.label} | 95 % CI |" in text
    rows = _fairness_rows(text)
    expected = [(attr, group, entry) for attr, table in report["fairness"].items()
                for group, entry in table["groups"].items()]
    assert len(rows) == len(expected) > 0
    assert "{" not in "\n".join("|".join(r) for r in rows)
    for (attr, group, entry), (c_attr, c_group, c_n, c_value, c_ci, c_small) in zip(expected, rows):
        assert (c_attr, c_group, c_n) == (attr, group, str(entry["n"]))
        cell = entry[metric.name]
        assert NUMBER.match(c_value) and float(c_value) == pytest.approx(cell["value"], abs=5e-4)
        if cell["ci_low"] is not None and cell["ci_high"] is not None:
            low, high = c_ci.split("–")
            assert NUMBER.match(low) and NUMBER.match(high), c_ci
            assert float(low) == pytest.approx(cell["ci_low"], abs=5e-4)
            assert float(high) == pytest.approx(cell["ci_high"], abs=5e-4)
        else:
            assert c_ci == "n/a"
        assert c_small == ("small" if entry["small"] else "")
    assert "n/a–n/a" not in text
    resampled = {t.get("ci_resampling", "images") for t in report["fairness"].values()}
    assert CI_NOTES["clusters" if "clusters" in resampled else "images"] in text


def test_card_states_how_often_its_intervals_held_or_that_nobody_checked():
    from skin.ci_coverage import NOT_CHECKED

    report = json.loads((MODELS / "clinical" / "report.json").read_text())
    fairness = str(render_model_card(report)).split("## Fairness", 1)[1].split("\n## ", 1)[0]
    assert NOT_CHECKED in fairness  # a run of train.py: nobody measured it
    line = "How far to trust the intervals: measured."
    fairness = str(render_model_card(report, ci_coverage=line)).split("## Fairness", 1)[1].split("\n## ", 1)[0]
    assert line in fairness and NOT_CHECKED not in fairness
    assert fairness.index(line) > fairness.rindex("| tone_bucket_estimated |")  # under the table
    gap = "Part of the gap between tones is the test photos' ages: measured."
    fairness = str(render_model_card(report, age_mix=gap)).split("## Fairness", 1)[1].split("\n## ", 1)[0]
    assert fairness.index(gap) > fairness.rindex("| tone_bucket_estimated |")


def test_card_test_metrics_and_calibration_from_the_real_report():
    report = json.loads((MODELS / "condition" / "report.json").read_text())
    text = str(render_model_card(report))
    assert f"| balanced_accuracy | {report['test']['balanced_accuracy']:.3f} |" in text
    assert f"Temperature {report['calibration']['temperature']:.3f}" in text
    assert "Not medical advice" in text and "n = 1211" in text


@pytest.mark.parametrize("name, licence", [
    ("condition", {"license": "cc-by-nc-sa-4.0"}),
    ("clinical", {"license": "other", "license_link": "https://dermnetnz.org/"}),
    ("age", {"license": "other", "license_link": "https://susanqq.github.io/UTKFace/"}),
])
def test_card_licence_is_the_training_data_builders(name, licence):
    """The card's licence metadata and terms come from the dataset's builder, the one place they are written."""
    from huggingface_hub import ModelCard

    from skin.data import dataset_info

    report = json.loads((MODELS / name / "report.json").read_text())
    card = ModelCard(str(render_model_card(report)))
    meta = card.data.to_dict()
    assert {k: meta.get(k) for k in licence} == licence
    if licence["license"] == "other":
        assert meta["license_name"].endswith("-terms") and meta["license_name"] == meta["license_name"].lower()
    terms = dataset_info(report["dataset"]).license
    assert f"The training data's terms apply to this model: {terms}" in card.text
    assert "HAM10000 and UTKFace" not in card.text and "github.com/)" not in card.text


@pytest.mark.parametrize("name", ["condition", "clinical"])
def test_card_classes_table_names_each_label_with_its_test_scores(name):
    report = json.loads((MODELS / name / "report.json").read_text())
    task = get_task(report["task"])
    text = str(render_model_card(report))
    section = text.split("## Classes", 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines()
            if line.startswith("| `")]
    assert [r[0].strip("`") for r in rows] == report["labels"]
    for label, readable, malignant, n, precision, recall in rows:
        label = label.strip("`")
        scores = report["test"]["per_class"][label]
        assert readable == task.label_names[label] and (malignant == "yes") == (label in task.malignant)
        assert int(n) == scores["support"] and float(recall) == pytest.approx(scores["recall"], abs=5e-4)
        assert float(precision) == pytest.approx(scores["precision"], abs=5e-4)


@pytest.mark.parametrize("name", ["condition", "clinical", "age"])
def test_card_reproduce_command_has_no_local_paths(name):
    report = json.loads((MODELS / name / "report.json").read_text())
    text = str(render_model_card(report))
    command = text.split("## Reproduce", 1)[1].split("```", 2)[1]
    assert command.strip().startswith("python train.py --task ")
    assert not re.search(r"\s/\S", command), command  # no absolute path: /work/..., /tmp/...
    assert "--output_dir" not in command and "--dataset_cache_dir" not in command
    assert f"--task {report['task']}" in command


def test_a_class_without_test_photos_shows_no_scores():
    report = json.loads((MODELS / "clinical" / "report.json").read_text())
    report["test"]["per_class"]["melanoma"] = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    text = str(render_model_card(report))
    assert "| `melanoma` | Melanoma | yes | 0 | n/a | n/a |" in text


def test_card_reproduce_section_names_the_commit_and_versions_or_says_it_predates_them():
    report = json.loads((MODELS / "clinical" / "report.json").read_text())
    reproduce = str(render_model_card(report)).split("## Reproduce", 1)[1]
    assert "predates the record of its commit and library versions" in reproduce  # embedded before the record
    env = {"skinlens_commit": "c5424a9" + "0" * 33, "uncommitted_changes": False, "python": "3.11.7",
           "packages": {"torch": "2.14.1", "transformers": "5.23.0"}}
    reproduce = str(render_model_card({**report, "environment": env})).split("## Reproduce", 1)[1]
    assert ("Trained with SkinLens commit `c5424a900000`, Python 3.11.7, torch 2.14.1, transformers 5.23.0."
            in reproduce)

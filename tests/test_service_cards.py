"""skin.service.cards: the fairness card from a typed run report, including the committed models' reports."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from skin.reports import RunReport
from skin.service.cards import NO_TONE_LABELS, fairness_card, parse_bucket
from skin.service.config import ModelSpec
from skin.tasks import get_task
from tests.app_helpers import condition_report as _condition_report

MODELS = Path(__file__).resolve().parents[1] / "models"
CONDITION = ModelSpec(key="condition", task="condition_ham10000", model="cond", title="Skin condition (test)")


@functools.cache
def _report_json() -> str:
    return json.dumps(_condition_report())  # bootstraps once per module


def condition_report() -> dict:
    """A fresh copy of the test model's report (the tests edit it)."""
    return json.loads(_report_json())


def _card(report: dict | None, bucket: str | None = None, spec: ModelSpec = CONDITION, problem: str | None = None):
    typed = None if report is None else RunReport.from_dict(report)
    return fairness_card(spec, get_task(spec.task), typed, bucket=bucket, problem=problem,
                         model_card_url="model_card.md")


def _tone(report: dict) -> dict:
    return report["fairness"]["tone_bucket"]


def test_rows_per_tone_with_the_visitors_bucket_highlighted():
    report = condition_report()
    card = _card(report, "dark")
    assert card["measured"] is True and card["metric"] == "balanced_accuracy" and card["higher_is_better"]
    rows = {r["bucket"]: r for r in card["rows"]}
    assert [r["bucket"] for r in card["rows"]] == ["light", "medium", "dark"]
    assert rows["dark"]["is_user"] and rows["dark"]["n"] == 10 and rows["dark"]["small"]
    assert not rows["light"]["is_user"] and not rows["light"]["small"]
    light = _tone(report)["groups"]["light"]["balanced_accuracy"]
    assert (rows["light"]["value"], rows["light"]["ci_low"], rows["light"]["ci_high"]) == (
        light["value"], light["ci_low"], light["ci_high"])
    assert card["overall"] == {"value": 0.42, "n": 160}
    assert card["dataset"] == "HAM10000" and "CC BY-NC-SA" in card["dataset_licence"]
    assert any("thin data for dark skin" in w and "fewer than 30" in w for w in card["warnings"])


def test_a_bucket_without_test_images_is_named():
    report = condition_report()
    del _tone(report)["groups"]["medium"]
    mine = _card(report, "medium")
    assert any(w.startswith("not measured for medium skin: the test set has no medium-skin images")
               for w in mine["warnings"])
    other = _card(report, "light")
    assert "not measured for medium skin (no test images)" in other["warnings"]
    assert {r["bucket"]: r["value"] for r in other["rows"]}["medium"] is None


def test_a_large_gap_between_tones_is_a_warning_naming_the_worst_group():
    report = condition_report()
    groups = _tone(report)["groups"]
    light = groups["light"]["balanced_accuracy"]["value"]
    groups["medium"]["balanced_accuracy"]["value"] = light - 0.25
    groups["medium"]["small"] = False
    card = _card(report)
    assert ("large gap between skin tones: balanced accuracy differs by 0.25 (worst for medium skin; "
            "threshold 0.1)") in card["warnings"]
    groups["medium"]["balanced_accuracy"]["value"] = light - 0.05
    assert not any("large gap" in w for w in _card(report)["warnings"])


def test_the_gap_ignores_unknown_tone_and_thin_buckets():
    """Images whose tone is unknown are not a skin tone; a thin bucket's value is too uncertain to call a gap."""
    report = condition_report()
    groups = _tone(report)["groups"]
    light = groups["light"]["balanced_accuracy"]["value"]
    groups["unknown"] = {**groups["light"], "balanced_accuracy": {"value": light - 0.4, "ci_low": None,
                                                                  "ci_high": None}}
    groups["dark"]["balanced_accuracy"]["value"] = light - 0.4  # n = 10: thin
    groups["medium"]["balanced_accuracy"]["value"] = light
    assert not any("large gap" in w for w in _card(report)["warnings"])


def test_no_tone_labels_says_so_per_dataset():
    report = condition_report()
    report["fairness"] = {"sex": report["fairness"]["tone_bucket"]}
    card = _card(report, "medium")
    assert not card["measured"] and card["rows"] == []
    assert card["warnings"] == [NO_TONE_LABELS["ham10000"]]
    assert [r["group"] for r in card["other_groups"]["sex"]] == ["light", "medium", "dark"]


def test_no_report_or_a_problem_is_the_only_warning():
    assert _card(None)["warnings"] == ["this model has no evaluation report, so its performance per skin "
                                       "tone is unknown"]
    card = _card(None, problem="model 'condition' is missing")
    assert card["warnings"] == ["model 'condition' is missing"] and not card["measured"]


@pytest.mark.parametrize("value, bucket", [(None, None), ("", None), (" Dark", "dark"), ("light", "light")])
def test_parse_bucket(value, bucket):
    assert parse_bucket(value) == bucket


def test_parse_bucket_refuses_anything_else():
    with pytest.raises(ValueError, match="tone_bucket must be one of light, medium, dark"):
        parse_bucket("olive")


@pytest.mark.parametrize("name, task, dataset", [("condition", "condition_ham10000", "HAM10000"),
                                                 ("age", "age_utkface", "UTKFace"),
                                                 ("clinical", "condition_dermnet", "DermNet NZ clinical photos")])
def test_card_from_the_committed_report(name, task, dataset):
    """The embedded models' real reports: no tone labels, so rows by estimated tone with the caveat first;
    every other group with numbers and CIs."""
    path = MODELS / name / "report.json"
    report = RunReport.read(path)
    spec = ModelSpec(key=name, task=task, model=f"default:{name}", title=name)
    card = fairness_card(spec, get_task(task), report, bucket="medium", problem=None, model_card_url="m.md")
    metric = get_task(task).metric
    assert card["dataset"] == dataset and card["metric"] == metric.name
    assert card["measured"] is True and card["tone_source"] == "estimated"
    assert card["warnings"][0].startswith("measured by skin tone estimated from each test photo's skin pixels")
    assert card["tone_agreement"].startswith("The estimated skin-tone bucket")
    estimated = report.fairness["tone_bucket_estimated"]
    assert [r["bucket"] for r in card["rows"]] == ["light", "medium", "dark"]
    for row in card["rows"]:
        assert row["n"] == estimated.groups[row["bucket"]].n
        assert row["ci_low"] <= row["value"] <= row["ci_high"]
    assert next(r for r in card["rows"] if r["is_user"])["bucket"] == "medium"
    served = report.calibration["by_group"]["tone_bucket_estimated"]
    for row in card["rows"]:  # the served answers' confidence and accuracy on each bucket's test photos
        assert row["confidence"]["n"] == served[row["bucket"]]["n"]
        assert 0 < row["confidence"]["mean_confidence"] <= 1 and 0 <= row["confidence"]["accuracy"] <= 1
    assert card["overall"]["value"] == pytest.approx(report.test[metric.name])
    assert set(card["other_groups"]) == set(report.fairness) - {"tone_bucket_estimated"}
    # each group is named for what it is: the age model's age groups are "age_group", not the builder's "label"
    assert set(card["other_groups"]) <= {"sex", "gender", "race", "age_group", "site"}
    for attr, rows in card["other_groups"].items():
        for row in rows:
            expected = report.fairness[attr].groups[row["group"]]
            assert row["n"] == expected.n and row["small"] is bool(expected.small)
            if row["value"] is not None and expected[metric.name].has_ci:
                assert row["ci_low"] <= row["value"] <= row["ci_high"]
        assert any(row["value"] is not None for row in rows), attr


def test_missed_cancers_per_tone_from_the_reports_fnr():
    report = condition_report()
    card = _card(report, "medium")
    missed = card["missed_cancers"]
    assert [r["bucket"] for r in missed["rows"]] == ["light", "medium", "dark"]
    for r in missed["rows"]:
        fnr = _tone(report)["groups"][r["bucket"]]["fnr"]
        assert (r["value"], r["ci_low"], r["ci_high"]) == (fnr["value"], fnr["ci_low"], fnr["ci_high"])
        assert r["is_user"] == (r["bucket"] == "medium")
    assert missed["overall"]["value"] == _tone(report)["overall"]["fnr"]["value"]
    # a task without malignant classes (no fnr in its report) has none
    for table in report["fairness"].values():
        for row in (*table["groups"].values(), table["overall"]):
            row.pop("fnr", None)
    assert _card(report, "medium")["missed_cancers"] is None


def test_the_committed_condition_models_cards_give_missed_cancers_per_tone():
    for key, task in (("condition", "condition_ham10000"), ("clinical", "condition_dermnet")):
        report = RunReport.from_dict(json.loads((MODELS / key / "report.json").read_text()))
        spec = ModelSpec(key=key, task=task, model=str(MODELS / key), title=key)
        missed = fairness_card(spec, get_task(task), report, bucket=None, problem=None,
                               model_card_url="m.md")["missed_cancers"]
        assert [r["bucket"] for r in missed["rows"]] == ["light", "medium", "dark"]
        assert all(0 <= r["value"] <= 1 for r in missed["rows"]) and 0 < missed["overall"]["value"] < 1

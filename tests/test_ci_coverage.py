"""skin.ci_coverage: the measured coverage of the fairness tables' intervals, recorded per model and stated on cards."""

from __future__ import annotations

import json

import pytest

from skin.ci_coverage import (
    CI_COVERAGE_PATH,
    NOT_CHECKED,
    CICoverage,
    coverage_sentence,
    read_ci_coverage,
    record_ci_coverage,
)


def _entry(model: str = "default:clinical", low: float = 0.82) -> CICoverage:
    return CICoverage(task="condition_dermnet", model=model, trials=400, nominal=0.95,
                      coverage={"accuracy": {"overall": 0.912, "light": 0.925, "medium": 0.94, "dark": 0.907},
                                "balanced_accuracy": {"overall": 0.858, "light": low, "medium": 0.907,
                                                      "dark": 0.922}})


def test_recorded_per_model_and_read_back(tmp_path):
    path = tmp_path / "ci_coverage.json"
    assert read_ci_coverage(path) == {}
    record_ci_coverage(_entry(), path)
    record_ci_coverage(_entry("default:condition"), path)
    record_ci_coverage(_entry(low=0.8), path)  # a new measurement replaces its model's entry, keeps the others
    entries = read_ci_coverage(path)
    assert sorted(entries) == ["default:clinical", "default:condition"]
    assert entries["default:clinical"] == _entry(low=0.8)


def test_the_sentence_states_the_range_over_groups_per_metric(tmp_path):
    path = tmp_path / "ci_coverage.json"
    record_ci_coverage(_entry(), path)
    line = coverage_sentence("default:clinical", path)
    assert "400 test sets" in line and "its 95% intervals" in line
    assert "91%–94% of the time for accuracy and 82%–92% of the time for balanced accuracy" in line
    assert coverage_sentence("my-own-model", path) == NOT_CHECKED
    age = CICoverage(task="age_utkface", model="default:age", trials=400, nominal=0.95,
                     coverage={"mae": {"overall": 0.93, "dark": 0.95}, "group_accuracy": {"overall": 0.94}})
    assert "93%–95% of the time for mean absolute error and 94% of the time for age-group accuracy" in \
        age.sentence()


def test_a_file_of_another_schema_names_the_command_that_rewrites_it(tmp_path):
    path = tmp_path / "ci_coverage.json"
    path.write_text(json.dumps({"schema_version": 0, "models": {}}))
    with pytest.raises(ValueError, match="fairness_ci_coverage.py --record"):
        read_ci_coverage(path)
    path.write_text(json.dumps({"schema_version": 1, "models": {"m": {"task": "t"}}}))
    with pytest.raises(ValueError, match="lacks model, trials, nominal, coverage"):
        read_ci_coverage(path)


def test_the_committed_record_covers_the_three_shipped_models_and_their_cards_state_it():
    from skin.reports import RunReport
    from skin.service.cards import fairness_card
    from skin.service.config import ModelSpec
    from skin.tasks import get_task

    entries = read_ci_coverage(CI_COVERAGE_PATH)
    assert {"default:clinical", "default:condition", "default:age"} <= set(entries)
    for model, entry in entries.items():
        assert entry.trials >= 200 and entry.nominal == pytest.approx(0.95)
        checked = {"mae", "group_accuracy"} if entry.task == "age_utkface" else {"accuracy", "balanced_accuracy"}
        assert set(entry.coverage) == checked
        assert set(next(iter(entry.coverage.values()))) == {"overall", "light", "medium", "dark"}
        assert all(0.5 < c <= 1 for groups in entry.coverage.values() for c in groups.values())
    models = CI_COVERAGE_PATH.parents[1] / "models"
    report = RunReport.from_dict(json.loads((models / "clinical" / "report.json").read_text()))
    for ref, expected in (("default:clinical", entries["default:clinical"].sentence()), ("elsewhere", NOT_CHECKED)):
        spec = ModelSpec(key="clinical", task="condition_dermnet", model=ref, title="clinical")
        card = fairness_card(spec, get_task(spec.task), report, bucket=None, problem=None, model_card_url="m.md")
        assert card["ci_coverage"] == expected

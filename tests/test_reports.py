"""skin.reports: typed reports read the committed report.json files back unchanged, and one JSON encoder."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np
import pytest

from skin.reports import (
    AUCRow,
    EvalReport,
    FairnessReport,
    GroupMetrics,
    MalignancyAudit,
    MetricCI,
    RunReport,
    SplitReport,
    dump_json,
    to_jsonable,
)
from skin.tasks import TaskKind

MODELS = Path(__file__).resolve().parents[1] / "models"
REPORTS = [MODELS / "condition" / "report.json", MODELS / "age" / "report.json"]


@pytest.mark.parametrize("path", REPORTS, ids=lambda p: p.parent.name)
def test_committed_reports_round_trip_exactly(path):
    raw = path.read_text()
    report = RunReport.read(path)
    assert isinstance(report.kind, TaskKind) and isinstance(report.fairness, FairnessReport)
    assert json.dumps(report.to_dict(), indent=2) == json.dumps(json.loads(raw), indent=2)  # same keys, same order
    table = next(iter(report.fairness.values()))
    row = next(iter(table.groups.values()))
    metric = report.kind is TaskKind.AGE and "mae" or "balanced_accuracy"
    assert row[metric].has_ci and row[metric].ci_low <= row[metric].value <= row[metric].ci_high
    assert table.overall.small is None and table.overall.n == report.test["n"]


def test_metric_ci_reads_nested_bare_and_non_finite_values():
    assert MetricCI.from_dict({"value": 0.5, "ci_low": 0.4, "ci_high": 0.6}).has_ci
    assert MetricCI.from_dict(0.5) == MetricCI(0.5, None, None)
    assert MetricCI(np.float64("nan"), np.float32(0.25), math.inf).to_dict() == {
        "value": None, "ci_low": 0.25, "ci_high": None}


def test_group_row_reads_the_flat_layout_too():
    flat = {"n": 12, "small": True, "mae": 3.5, "mae_ci_low": 3.0, "mae_ci_high": 4.0}
    row = GroupMetrics.from_dict(flat)
    assert row.small is True and row["mae"] == MetricCI(3.5, 3.0, 4.0) and list(row.metrics) == ["mae"]
    assert row.to_dict() == {"n": 12, "small": True, "mae": {"value": 3.5, "ci_low": 3.0, "ci_high": 4.0}}


def test_eval_report_layouts():
    split = SplitReport({"n": 3, "accuracy": 1.0})
    out = EvalReport("m", "ham10000", "test", 3, True, result=split, skipped={"truncated JPEG": 2}).to_dict()
    assert out == {"model": "m", "dataset": "ham10000", "split": "test", "n": 3, "tta": True, "accuracy": 1.0,
                   "n_skipped": 2, "skipped": {"truncated JPEG": 2}}
    back = EvalReport.from_dict(out)
    assert back.result == split and back.skipped == {"truncated JPEG": 2}
    audit = MalignancyAudit(AUCRow(4, 2, MetricCI(0.75, 0.5, 1.0)), {"I-II": AUCRow(4, 2, MetricCI(0.75, 0.5, 1.0))},
                            n_boot=10)
    out = EvalReport("m", "ddi", "all", 4, malignancy=audit).to_dict()
    assert out["malignancy_auc"] == {"value": 0.75, "ci_low": 0.5, "ci_high": 1.0} and out["n_malignant"] == 2
    assert out["malignancy_by_fst"]["I-II"] == {"n": 4, "n_malignant": 2, "malignancy_auc": out["malignancy_auc"]}
    assert EvalReport.from_dict(json.loads(json.dumps(out))).malignancy == audit
    assert "malignancy_by_tone_estimated" not in out  # a set without the estimated tone: no empty table
    toned = MalignancyAudit(audit.overall, {"unknown": audit.overall}, n_boot=10,
                            by_tone_estimated={"dark": AUCRow(4, 2, MetricCI(0.75, 0.5, 1.0))})
    out = EvalReport("m", "ham10000", "all", 4, malignancy=toned).to_dict()
    assert out["malignancy_by_tone_estimated"]["dark"]["n"] == 4
    assert EvalReport.from_dict(json.loads(json.dumps(out))).malignancy == toned


class _Colour(Enum):
    RED = "red"


@dataclass
class _Box:
    left: int
    scores: np.ndarray


def test_to_jsonable_is_the_one_encoder(tmp_path):
    torch = pytest.importorskip("torch")
    obj = {1: np.int64(3), "f": np.float32(0.5), "nan": float("nan"), "b": np.bool_(True), "arr": np.arange(3),
           "t": torch.tensor([1.5]), "e": _Colour.RED, "k": TaskKind.AGE, "p": Path("a/b"), "tup": (1, None),
           "box": _Box(2, np.array([0.1])), "ci": MetricCI(0.5)}
    assert to_jsonable(obj) == {"1": 3, "f": 0.5, "nan": None, "b": True, "arr": [0, 1, 2], "t": [1.5], "e": "red",
                                "k": "age", "p": "a/b", "tup": [1, None], "box": {"left": 2, "scores": [0.1]},
                                "ci": {"value": 0.5, "ci_low": None, "ci_high": None}}
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        to_jsonable(object())
    dump_json({"x": np.float64("inf")}, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text()) == {"x": None}

"""The HOG + SVM / MLP baseline reports in train.py's format on the same split."""

from __future__ import annotations

import json

import pytest

from tests.layouts import make_ham10000


@pytest.mark.parametrize("classifier", ["svm", "mlp"])
def test_baseline_report_has_train_py_format(classifier, tmp_path):
    from skin.baseline import run

    ham = make_ham10000(tmp_path).data_dir
    report = run("condition_ham10000", str(ham), classifier, str(tmp_path / "run"), str(tmp_path / "cache"),
                 size=32, n_boot=10)
    saved = json.loads((tmp_path / "run" / "report.json").read_text())
    assert saved["backbone"] == f"hog32+{classifier}" and saved["mode"] == "classical"
    for key in ("task", "dataset", "labels", "splits", "test", "calibration", "fairness"):
        assert key in saved
    assert {"accuracy", "balanced_accuracy", "macro_f1"} <= set(saved["test"])
    assert saved["splits"] == report["splits"]


def test_baseline_rejects_age_and_unknown_classifier(tmp_path, capsys):
    from skin.baseline import main, make_classifier

    with pytest.raises(ValueError, match="--classifier must be"):
        make_classifier("forest")
    assert main(["--task", "age_utkface", "--data-dir", str(tmp_path)]) == 2
    assert "age uses the deep models" in capsys.readouterr().err

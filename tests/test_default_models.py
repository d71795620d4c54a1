"""The embedded default models: rebuilt offline, identical to their export, and
``skin.evaluate`` reproduces their stored report on the real data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


def _need(name):
    if not (MODELS / name / "adapter").is_dir():
        pytest.skip(f"embedded model models/{name} not built yet (see models/README.md)")


@pytest.mark.parametrize("name", ["condition", "clinical", "age"])
def test_default_model_rebuilds_offline_and_exports_for_pipeline(name, tmp_path):
    _need(name)
    import torch
    from PIL import Image
    from transformers import pipeline

    from skin.hub import export, load_classifier, load_report

    report = load_report(f"default:{name}")
    model, processor = load_classifier(f"default:{name}")
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    assert labels == report["labels"]
    written = export(f"default:{name}", str(tmp_path / "out"))
    assert {"merged", "adapter", "card"} <= set(written)
    image = Image.new("RGB", (200, 150), (190, 140, 120))
    with torch.no_grad():
        ours = torch.softmax(model(pixel_values=processor(image, return_tensors="pt")["pixel_values"]).logits, 1)[0]
    out = pipeline("image-classification", model=written["merged"])(image, top_k=len(labels))
    theirs = {o["label"]: o["score"] for o in out}
    assert all(abs(theirs[lab] - float(ours[i])) < 1e-4 for i, lab in enumerate(labels))
    card = Path(written["card"]).read_text()
    assert "Not medical advice" in card and "Fairness" in card


def _evaluate_default(name: str, dataset: str, data_dir, tmp_path) -> tuple[dict, dict]:
    """``(skin.evaluate --json on the test split, the model's stored report)`` for ``default:<name>``."""
    _need(name)
    report = json.loads((MODELS / name / "report.json").read_text())
    res = subprocess.run(
        [sys.executable, "-m", "skin.evaluate", "--model", f"default:{name}", "--dataset", dataset,
         "--data-dir", str(data_dir), "--split", "test", "--json", "--n-boot", "20",
         "--cache-dir", str(tmp_path / "cache"), *(["--tta"] if report.get("tta") else [])],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=1500,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout)
    assert got["n"] == report["test"]["n"]
    return got, report


@pytest.mark.slow
@pytest.mark.needs_shared_data
def test_evaluate_cli_reproduces_condition_report(shared_data, tmp_path):
    got, report = _evaluate_default("condition", "ham10000", shared_data / "ham10000", tmp_path)
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "ece"):
        assert key in got
    # Same flips as the stored report (--tta); LoRA weights are stored exactly.
    assert got["tta"] == report["tta"]
    assert abs(got["accuracy"] - report["test"]["accuracy"]) < 0.002
    assert abs(got["balanced_accuracy"] - report["test"]["balanced_accuracy"]) < 0.002
    assert "sex" in got["fairness"] and got["fairness"]["sex"]["groups"]["male"]["n"] > 100


@pytest.mark.slow
@pytest.mark.needs_shared_data
def test_evaluate_cli_reproduces_age_report(shared_data, tmp_path):
    """The embedded age model (its trained stages stored as float16) reproduces its report's test MAE
    (with the report's horizontal-flip TTA)."""
    got, report = _evaluate_default("age", "utkface", shared_data / "utkface", tmp_path)
    assert abs(got["mae"] - report["test"]["mae"]) < 0.05
    assert abs(got["group_accuracy"] - report["test"]["group_accuracy"]) < 0.01


@pytest.mark.slow
@pytest.mark.needs_shared_data
def test_evaluate_cli_reproduces_clinical_report(shared_data, tmp_path):
    """The embedded clinical model (its trained stages stored as float16) reproduces its report's test
    figures on the leak-free DermNet split, and the folders its grouping lacks are counted."""
    got, report = _evaluate_default("clinical", "dermnet", shared_data / "dermnet", tmp_path)
    assert abs(got["accuracy"] - report["test"]["accuracy"]) < 0.01
    assert abs(got["balanced_accuracy"] - report["test"]["balanced_accuracy"]) < 0.01
    assert got["skipped"]["condition not in the clinical grouping"] > 0
    assert set(got["fairness"]["tone_bucket_estimated"]["groups"]) >= {"light", "medium", "dark"}

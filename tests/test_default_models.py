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

    from skin.age_mix import age_mix_sentence
    from skin.ci_coverage import coverage_sentence
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
    assert coverage_sentence(f"default:{name}") in card  # measured coverage of its intervals, or "not checked"
    assert (age_mix_sentence(f"default:{name}") or "") in card  # the age model: how much of its tone gap is age
    _card_code_reads_the_output_as_the_app_does(card, written["merged"], model, processor, labels, tmp_path)


def _card_code_reads_the_output_as_the_app_does(card, merged, model, processor, labels, tmp_path):
    """The card's "Using the model" code, run as a developer would (the model and photo filled in),
    gives the app's age estimate (DEX) or malignant probability for the same photo."""
    import torch
    from PIL import Image

    from skin.metrics import expected_age
    from skin.tasks import label_ages, malignant_indices

    code = card.split("## Using the model", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (240, 180), (170, 120, 95)).save(photo)
    space = {}
    exec(code.replace('"MODEL"', repr(str(merged))).replace('"photo.jpg"', repr(str(photo))), space)
    with Image.open(photo) as im, torch.no_grad():
        pixels = processor(im.convert("RGB"), return_tensors="pt")["pixel_values"]
        probs = torch.softmax(model(pixel_values=pixels).logits, 1)[0].numpy()
    assert {s["label"] for s in space["scores"]} == set(labels)
    if "age" in space:
        assert abs(space["age"] - float(expected_age(probs[None], label_ages(labels))[0])) < 1e-2
    else:
        assert abs(space["malignant"] - float(probs[malignant_indices(labels)].sum())) < 1e-4


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

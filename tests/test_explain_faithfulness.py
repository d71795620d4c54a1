"""skin.explain.faithfulness: deletion / insertion, the randomisation check and the
faithfulness file stored beside each model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from skin.explain import METHODS, make_baseline
from skin.explain.faithfulness import (
    FAITHFULNESS_FILE,
    FaithfulnessReport,
    MethodFaithfulness,
    deletion_insertion,
    faithfulness_score,
    faithfulness_summary,
    load_faithfulness,
    map_correlation,
    randomization_check,
    randomize_weights,
    write_faithfulness,
)
from tests.bench_scripts import load_bench
from tests.explain_models import LeftHalfNet, lesion_image, tiny_convnext, tiny_effnet

REPO = Path(__file__).resolve().parents[1]


def test_deletion_insertion_curves():
    torch.manual_seed(1)
    model = LeftHalfNet().eval()
    x = torch.randn(1, 3, 24, 24)
    attribution = np.random.default_rng(0).random((12, 12))  # resized to 24 x 24
    scores = deletion_insertion(model, x, attribution, target=0, steps=8, baseline="blur")
    assert len(scores.deletion) == len(scores.insertion) == 9
    assert scores.fraction[0] == 0 and scores.fraction[-1] == 1
    with torch.no_grad():
        p_image = model(pixel_values=x).logits.softmax(-1)[0, 0].item()
        p_base = model(pixel_values=make_baseline(x, "blur")).logits.softmax(-1)[0, 0].item()
    assert scores.deletion[0] == pytest.approx(p_image, abs=1e-5)
    assert scores.deletion[-1] == pytest.approx(p_base, abs=1e-5)
    assert scores.insertion[0] == pytest.approx(p_base, abs=1e-5)
    assert scores.insertion[-1] == pytest.approx(p_image, abs=1e-5)
    assert 0 <= scores.deletion_auc <= 1 and 0 <= scores.insertion_auc <= 1
    assert scores.deletion_auc == pytest.approx(np.trapezoid(scores.deletion, scores.fraction))
    assert faithfulness_score(scores) == pytest.approx(scores.insertion_auc - scores.deletion_auc)
    with pytest.raises(ValueError, match="baseline"):
        deletion_insertion(model, x, attribution, 0, baseline="black")
    with pytest.raises(ValueError, match="out of range"):
        deletion_insertion(model, x, attribution, 3)


def test_randomize_weights_copies_and_cascades():
    model = tiny_convnext()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    full = randomize_weights(model)
    head = randomize_weights(model, cascade=1)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"original changed: {k}"
    patch = "convnext.embeddings.patch_embeddings.weight"
    assert not torch.equal(full.state_dict()[patch], before[patch])
    assert torch.equal(head.state_dict()[patch], before[patch])
    assert not torch.equal(head.state_dict()["classifier.weight"], before["classifier.weight"])


@pytest.mark.parametrize("method", ["gradcam", "saliency", "integrated_gradients"])
def test_randomization_sanity_check(method):
    """Adebayo et al. 2018: maps must change when the weights are randomised."""
    model = tiny_effnet()
    x = lesion_image(96)
    options = {"n_steps": 8} if method == "integrated_gradients" else {}
    rho = randomization_check(model, x, method, **options)
    assert -1.0 <= rho <= 1.0
    assert abs(rho) < 0.6, rho


def test_map_correlation_is_spearman_and_zero_for_a_constant_map():
    rng = np.random.default_rng(0)
    a = rng.random((8, 8))
    assert map_correlation(a, a ** 3) == pytest.approx(1.0)  # a monotone transform ranks alike
    assert map_correlation(a, -a) == pytest.approx(-1.0)
    assert map_correlation(a, np.zeros((8, 8))) == 0.0


def test_faithfulness_file_round_trip(tmp_path):
    report = FaithfulnessReport(
        model="default:condition", n_images=3, images=["a.jpg", "b.jpg", "c.jpg"], input_size=[160, 160],
        methods={"gradcam": MethodFaithfulness.of([0.2, 0.3, 0.1], [0.6, 0.5, 0.7]),
                 "saliency": MethodFaithfulness.of([0.4], [0.4])},
    )
    g = report.methods["gradcam"]
    assert g.score.value == pytest.approx(0.4) and g.deletion.value == pytest.approx(0.2)
    assert g.score.ci_low <= g.score.value <= g.score.ci_high
    assert report.methods["saliency"].score.ci_low is None  # one image: no interval
    path = write_faithfulness(tmp_path, report)
    assert path == tmp_path / FAITHFULNESS_FILE
    assert json.loads(path.read_text())["schema_version"] == 1
    assert load_faithfulness(tmp_path) == report
    assert load_faithfulness(tmp_path / "elsewhere") is None
    shown = faithfulness_summary(report)
    assert set(shown) == set(METHODS)
    assert shown["gradcam"]["text"] == "+0.40 (insertion − deletion AUC; ins 0.60, del 0.20)"
    assert shown["gradcam"]["score"] == pytest.approx(0.4) and shown["gradcam"]["n_images"] == 3
    assert shown["occlusion"] == {"text": "not measured", "score": None}
    assert faithfulness_summary(None)["gradcam"]["text"] == "not measured"
    with pytest.raises(ValueError, match="deletion AUCs"):
        MethodFaithfulness.of([0.1], [0.2, 0.3])


def test_a_faithfulness_file_of_the_age_estimate_says_so_in_years(tmp_path):
    """Measured on the age estimate (the curves in years), the file records it and the app's text says it."""
    report = FaithfulnessReport(model="default:age", n_images=2, target="age estimate", unit="years",
                                methods={"gradcam": MethodFaithfulness.of([30.0, 32.0], [35.0, 36.0])})
    write_faithfulness(tmp_path, report)
    assert load_faithfulness(tmp_path) == report
    assert faithfulness_summary(report)["gradcam"]["text"] == (
        "+4.50 years (insertion − deletion AUC of the age estimate; ins 35.50, del 31.00)")


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(schema_version=0), "schema_version"),
    (lambda d: d.update(n_images=0), "n_images"),
    (lambda d: d["methods"].update(lime=d["methods"]["gradcam"]), "unknown method"),
    (lambda d: d["methods"]["gradcam"]["score"].update(value=None), "finite value"),
    (lambda d: d["methods"]["gradcam"]["score"].update(ci_low=0.9, ci_high=0.1), "ci_low"),
    (lambda d: d["methods"]["gradcam"]["deletion"].pop("ci_high"), "ci_low"),
])
def test_a_broken_faithfulness_file_is_refused(tmp_path, change, message):
    report = FaithfulnessReport(model="m", n_images=2,
                                methods={"gradcam": MethodFaithfulness.of([0.2, 0.3], [0.6, 0.5])})
    data = report.to_dict()
    change(data)
    (tmp_path / FAITHFULNESS_FILE).write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message):
        load_faithfulness(tmp_path)
    (tmp_path / FAITHFULNESS_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_faithfulness(tmp_path)


@pytest.mark.parametrize("name", ["condition", "age", "clinical"])
def test_embedded_models_carry_a_faithfulness_file(name):
    report = load_faithfulness(REPO / "models" / name)
    assert report is not None and report.model == f"default:{name}"
    assert set(report.methods) == set(METHODS)
    # measured on the model's own test split, at least 100 photos, by the script that says how
    assert report.n_images >= 100 and len(set(report.images)) == report.n_images
    assert "bench_faithfulness.py" in report.measured_with and "--cache-dir" not in report.measured_with
    for m in report.methods.values():
        assert m.score.value == pytest.approx(m.insertion.value - m.deletion.value)
    # measured on what the app explains by default: the age model's estimate, the others' predicted class
    assert (report.target, report.unit) == (("age estimate", "years") if name == "age" else
                                            ("predicted class", "probability"))


def test_the_app_shows_each_model_s_own_measurement():
    """The service reads the file beside each configured model; the picker shows the chosen model's (the
    first one's until another is chosen), and the UI swaps the picker when the model changes."""
    from skin.service import SkinLensService, load_config

    service = SkinLensService(load_config(REPO / "skinlens.yaml"))
    for name in ("condition", "age", "clinical"):
        assert service.faithfulness(name) == faithfulness_summary(load_faithfulness(REPO / "models" / name))
    first = next(iter(service.config.models))
    assert service.method_choices() == service.method_choices(first)
    for key in service.config.models:
        shown = {method: label for label, method in service.method_choices(key)}
        assert list(shown) == list(METHODS)
        for method, label in shown.items():
            assert label == f"{METHODS[method].label} — faithfulness: {service.faithfulness(key)[method]['text']}"
    assert service.method_choices("age") != service.method_choices("condition")

    from app import Handlers

    targets, picker = Handlers(service).ui_targets("age", "saliency")
    assert picker.value == "saliency" and [c[1] for c in picker.choices] == list(METHODS)
    from app import ESTIMATE, PREDICTED

    assert targets.choices[0] == (ESTIMATE, PREDICTED) and targets.value == PREDICTED  # the age model's answer
    assert Handlers(service).ui_targets("condition", "saliency")[0].choices[0] == (PREDICTED, PREDICTED)
    assert picker.choices == [tuple(c) for c in service.method_choices("age")]


def test_the_recorded_command_leaves_out_the_local_cache_folder():
    bench = load_bench("bench_faithfulness")
    argv = ["--model", "default:age", "--cache-dir", "/tmp/x", "--images", "100", "--cache-dir=/tmp/y"]
    assert bench.portable(argv) == ["--model", "default:age", "--images", "100"]

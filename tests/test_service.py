"""skin.service without the UI: predict, explain, fairness card (uploads: tests/test_uploads.py)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.app_helpers import HAM_LABELS, make_app_models
from tests.bad_uploads import skin_photo


def _jpeg(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


# --------------------------------------------------------------------------- service
@pytest.fixture(scope="module")
def app_config(tmp_path_factory):
    return make_app_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def service(app_config):
    from skin.service import SkinLensService, load_config

    return SkinLensService(load_config(app_config))


def test_warm_up_runs_every_model_and_the_face_detector(app_config, monkeypatch):
    """Warm-up reaches the models even though its flat synthetic photo fails the quality check."""
    import torch

    from skin.service import SkinLensService, load_config

    svc = SkinLensService(load_config(app_config))
    faces, forwards = [], []
    monkeypatch.setattr(SkinLensService, "_face", lambda self, image: faces.append(image.size))
    original = torch.nn.Module.__call__

    def counting(module, *args, **kwargs):
        if any(module is lm.model for lm in svc._models.values()):
            forwards.append(type(module).__name__)
        return original(module, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "__call__", counting)
    svc.warm_up()
    assert set(svc._models) == set(svc.config.models)
    assert len(forwards) == len(svc.config.models)
    assert faces == [(320, 320)]


def test_config_defaults_and_env(monkeypatch, tmp_path, app_config):
    from skin.service import load_config

    monkeypatch.setenv("SKINLENS_CONFIG", str(app_config))
    cfg = load_config()
    assert set(cfg.models) == {"condition", "age"}
    assert cfg.models["condition"].model.endswith("cond")
    assert cfg.max_upload_bytes == 2**20
    monkeypatch.setenv("SKINLENS_CONFIG", str(tmp_path / "absent.yaml"))
    with pytest.raises(ValueError, match="not found"):
        load_config()
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  x: {task: nope, model: a/b}\n")
    with pytest.raises(ValueError, match="unknown task"):
        load_config(bad)


def test_refuse_faces_defaults_by_dataset_and_is_checked(tmp_path):
    """Models of close-up-only datasets (HAM10000, PAD-UFES-20) refuse portraits by default; SCIN and
    Kaggle photos may show a face, so theirs answer; the key is a boolean and meaningless for face input."""
    from skin.service import load_config

    cfg = tmp_path / "c.yaml"
    cfg.write_text("models:\n  ham: {task: condition_ham10000, model: a/b}\n  scin: {task: condition_scin, model: a/b}\n"
                   "  pad: {task: condition_pad_ufes20, model: a/b, refuse_faces: false}\n")
    models = load_config(cfg).models
    assert (models["ham"].refuse_faces, models["scin"].refuse_faces, models["pad"].refuse_faces) == (True, False, False)
    for bad, message in [("{task: condition_scin, model: a/b, refuse_faces: sometimes}", "must be true or false"),
                         ("{task: age_utkface, model: a/b, input: face, refuse_faces: true}", "drop refuse_faces")]:
        cfg.write_text(f"models:\n  x: {bad}\n")
        with pytest.raises(ValueError, match=message):
            load_config(cfg)


def test_example_photos_are_read_from_configured_paths_with_licences(tmp_path):
    from skin.service import examples_markdown, load_config

    skin_photo().save(tmp_path / "here.png")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("examples:\n"
                   "  - {path: here.png, caption: A lesion, licence: CC BY 4.0}\n"
                   "  - {path: ../absent/none.png, caption: Gone, licence: CC BY-NC 4.0}\n")
    config = load_config(cfg)
    assert [e.caption for e in config.examples] == ["A lesion", "Gone"]
    assert [e.path for e in config.available_examples()] == [str(tmp_path / "here.png")]
    text = examples_markdown(config.examples, config.available_examples())
    assert "A lesion" in text and "CC BY 4.0" in text and "Gone" not in text
    assert "do not allow shipping" in examples_markdown(config.examples, [])
    cfg.write_text("examples:\n  - {path: here.png}\n")
    with pytest.raises(ValueError, match="licence"):
        load_config(cfg)


def test_repo_config_parses():
    from skin.service import DEFAULT_CONFIG_PATH, load_config

    cfg = load_config(DEFAULT_CONFIG_PATH)
    assert cfg.models["condition"].model == "default:condition"
    assert cfg.models["age"].input == "face"
    assert cfg.models["condition"].abstain_below == 0.5
    assert cfg.models["condition"].refuse_faces and not cfg.models["age"].refuse_faces
    assert len(cfg.examples) >= 3 and all(e.licence for e in cfg.examples)
    assert all("/shared/data/" in e.path for e in cfg.examples)  # read at run time, never shipped


def test_predict_condition(service):
    res = service.predict(_jpeg(skin_photo()))
    json.dumps(res)  # JSON-serialisable as the API returns it
    cond = res["tasks"]["condition"]
    assert cond["status"] == "ok"
    assert len(cond["top_k"]) == 3
    assert {r["label"] for r in cond["top_k"]} <= set(HAM_LABELS)
    probs = [r["probability"] for r in cond["top_k"]]
    assert probs == sorted(probs, reverse=True) and 0 < probs[0] <= 1
    assert res["quality"]["ok"] is True
    assert res["tone"]["bucket"] in ("light", "medium", "dark")
    assert "Not medical advice" in res["disclaimer"]


def test_predict_is_the_same_model_as_a_pipeline(service, app_config):
    """The app's probabilities are the exported checkpoint's, as transformers.pipeline reads them."""
    from transformers import pipeline

    im = skin_photo()
    res = service.predict(im)
    pipe = pipeline("image-classification", model=str(app_config.parent / "cond"), top_k=3)
    ref = pipe(im)
    got = res["tasks"]["condition"]["top_k"]
    assert [r["label"] for r in got] == [r["label"] for r in ref]
    np.testing.assert_allclose([r["probability"] for r in got], [r["score"] for r in ref], atol=1e-4)


def test_predict_no_face_abstains_for_age(service):
    pytest.importorskip("skin.faces", reason="skin/faces.py (face detection) is not in the tree yet")
    res = service.predict(_jpeg(skin_photo()))
    age = res["tasks"]["age"]
    assert age["abstained"] and "no face" in age["reason"]
    assert res["face"]["found"] is False


def test_close_up_model_refuses_a_portrait_and_says_what_to_do(service, monkeypatch):
    """A face filling >= PORTRAIT_FACE_FRACTION of the photo: the HAM10000 (close-up) model abstains
    with the fix, its explanation is refused the same way, the face model still answers, and with
    ``refuse_faces: false`` the condition model answers too."""
    from dataclasses import replace

    from skimage import data

    portrait = Image.fromarray(data.astronaut())  # a half-length portrait: the face fills 3.5 % of it
    res = service.predict(_jpeg(portrait))
    condition, age = res["tasks"]["condition"], res["tasks"]["age"]
    assert condition["abstained"] and condition["status"] == "abstain" and "top_k" not in condition
    assert "a face fills 4% of this photo" in condition["reason"] and "crop the photo to the spot" in condition["reason"]
    assert res["face"]["found"] is True and "no face" not in (age["reason"] or "")
    with pytest.raises(ValueError, match="cannot explain the condition model on this photo: a face fills"):
        service.explain(_jpeg(portrait), "condition", "saliency")
    lesion = service.predict(_jpeg(skin_photo()))  # no face: the close-up model answers
    assert lesion["face"]["found"] is False and lesion["tasks"]["condition"]["status"] == "ok"
    monkeypatch.setitem(service.config.models, "condition",
                        replace(service.config.models["condition"], refuse_faces=False))
    assert "a face fills" not in (service.predict(_jpeg(portrait))["tasks"]["condition"]["reason"] or "")


def test_age_readout_is_dex_expectation(service):
    from skin.metrics import expected_age

    lm = service.model("age")
    probs = np.zeros(101)
    probs[[30, 40]] = 0.5
    out = service._read_out(lm, probs)
    assert out["estimate"] == pytest.approx(float(expected_age(probs[None], np.arange(101.0))[0]))
    assert out["group"] == "25-49" and out["group_probability"] == pytest.approx(1.0)


def test_age_abstention_names_the_estimates_group_not_the_most_likely(service):
    """The group shown is the estimate's; when another group holds more mass, the reason must not call
    the shown group the most likely one."""
    from dataclasses import replace

    lm = service.model("age")
    lm = replace(lm, spec=replace(lm.spec, abstain_below=0.5))
    probs = np.zeros(101)
    probs[[10, 30, 60]] = [0.45, 0.2, 0.35]  # estimate 31.5 years: group 25-49 (0.2); 0-24 holds 0.45
    out = service._read_out(lm, probs)
    assert out["group"] == "25-49" and out["top_k"][0]["label"] == "0-24"
    assert out["abstained"] and "most likely" not in out["reason"]
    assert "the estimate (32 years) falls in the age group 25-49, which has probability 20%" in out["reason"]


def test_quality_failure_abstains_every_task(service):
    dark = Image.fromarray((np.asarray(skin_photo()) * 0.08).astype(np.uint8))
    res = service.predict(dark)
    assert res["quality"]["ok"] is False
    assert res["tips"]
    for t in res["tasks"].values():
        assert t["abstained"] and t["reason"].startswith("photo quality")


def test_low_confidence_abstains(app_config, tmp_path):
    from skin.service import SkinLensService, load_config

    cfg = tmp_path / "strict.yaml"
    cfg.write_text(app_config.read_text().replace("abstain_below: 0.0", "abstain_below: 0.99")
                   .replace("model: cond", f"model: {app_config.parent / 'cond'}")
                   .replace("model: age", f"model: {app_config.parent / 'age'}"))
    res = SkinLensService(load_config(cfg)).predict(skin_photo())
    cond = res["tasks"]["condition"]
    assert cond["abstained"] and "not confident" in cond["reason"] and "99%" in cond["reason"]
    assert cond["top_k"], "the unreliable guesses are still listed for transparency"


def test_missing_default_model_is_named_with_the_fix(tmp_path, monkeypatch):
    import skin.hub
    from skin.service import ModelUnavailable, SkinLensService, load_config

    monkeypatch.setattr(skin.hub, "MODELS_DIR", tmp_path / "no-models")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("models:\n  condition: {task: condition_ham10000, model: 'default:condition'}\n")
    svc = SkinLensService(load_config(cfg))
    assert svc.status()["condition"]["available"] is False
    assert "README.md" in svc.notice() and "default:condition" in svc.notice()
    with pytest.raises(ModelUnavailable, match="README.md"):
        svc.predict(skin_photo())
    card = svc.fairness("condition", "light")
    assert card["measured"] is False and card["warnings"]


def test_folder_without_safetensors_is_refused(tmp_path):
    from skin.service import SkinLensService, load_config

    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "config.json").write_text("{}")
    (tmp_path / "pickled" / "pytorch_model.bin").write_bytes(b"\x80\x04")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("models:\n  condition: {task: condition_ham10000, model: pickled}\n")
    problem = SkinLensService(load_config(cfg)).status()["condition"]["problem"]
    assert "safetensors" in problem


@pytest.mark.parametrize("method", ["gradcam", "integrated_gradients", "gradient_shap", "occlusion", "saliency"])
def test_explain_every_method(service, method):
    picture, info = service.explain(skin_photo(), "condition", method)
    assert picture.mode == "RGB" and min(picture.size) >= 384
    assert info["method"] == method and info["target"] == info["predicted"]
    assert info["input_size"] == [64, 64]
    assert "text" in info["faithfulness"]
    json.dumps(info)


def test_gradcam_after_predict_reuses_the_forward_pass(service):
    """Grad-CAM right after Predict on the same photo runs no second forward pass."""
    im = skin_photo(seed=11)
    service.predict(im)
    lm = service.model("condition")
    calls = []
    handle = lm.model.register_forward_hook(lambda *_: calls.append(1))
    try:
        _, info = service.explain(im, "condition", "gradcam")
    finally:
        handle.remove()
    assert calls == []
    assert info["target"] == info["predicted"]


def test_explain_user_target_and_errors(service):
    _, info = service.explain(skin_photo(), "condition", "saliency", "mel")
    assert info["target"] == "mel" and info["target_index"] == HAM_LABELS.index("mel")
    with pytest.raises(ValueError, match="unknown target class"):
        service.explain(skin_photo(), "condition", "saliency", "melanoma-ish")
    with pytest.raises(ValueError, match="unknown explanation method"):
        service.explain(skin_photo(), "condition", "lime")
    with pytest.raises(ValueError, match="unknown task"):
        service.explain(skin_photo(), "hair", "saliency")


def test_explanation_is_on_the_model_that_predicted(service):
    """Explain's target probability is predict's probability: same model, same input."""
    im = skin_photo(seed=5)
    res = service.predict(im)
    top = res["tasks"]["condition"]["top_k"][0]
    _, info = service.explain(im, "condition", "saliency")
    assert info["target"] == top["label"]
    assert info["target_probability"] == pytest.approx(top["probability"], abs=1e-5)


def test_fairness_card_highlights_user_bucket_and_warns(service):
    from skin.service import fairness_markdown

    card = service.fairness("condition", "dark")
    assert card["measured"] is True
    rows = {r["bucket"]: r for r in card["rows"]}
    assert rows["dark"]["is_user"] and rows["dark"]["n"] == 10 and rows["dark"]["small"]
    assert rows["light"]["n"] == 110 and rows["light"]["ci_low"] <= rows["light"]["value"] <= rows["light"]["ci_high"]
    assert any("thin data for dark skin" in w for w in card["warnings"])
    md = fairness_markdown(card)
    assert "▶ dark (you)" in md and "95 % CI" in md and "CC BY-NC-SA" in md
    assert ("test-time augmentation" in md) is card["tta"]  # says when the figures used flip TTA
    assert "test-time augmentation" in fairness_markdown({**card, "tta": True})
    with pytest.raises(ValueError, match="tone_bucket"):
        service.fairness("condition", "olive")


def test_fairness_card_without_tone_labels_says_so(service, monkeypatch):
    import skin.hub

    monkeypatch.setattr(skin.hub, "load_report", lambda ref: {"fairness": {"sex": {"groups": {}}}, "test": {}})
    card = service.fairness("condition", "medium")
    assert not card["measured"]
    assert any("HAM10000" in w and "light skin" in w for w in card["warnings"])


def test_read_faithfulness(tmp_path):
    from skin.service import read_faithfulness

    assert read_faithfulness(tmp_path / "none.json")["gradcam"]["text"] == "not measured"
    p = tmp_path / "explain.json"
    p.write_text(json.dumps({"models": {"efficientnet_lite0": {"methods": {
        "gradcam": {"insertion_auc": 0.6, "deletion_auc": 0.2},
        "saliency": {"faithfulness": {"insertion_auc": 0.4, "deletion_auc": 0.3}}}}}}))
    f = read_faithfulness(p)
    assert f["gradcam"]["score"] == pytest.approx(0.4) and "+0.40" in f["gradcam"]["text"]
    assert f["saliency"]["score"] == pytest.approx(0.1)
    assert f["occlusion"]["text"] == "not measured"


def test_markdown_renders(service):
    from skin.service import predictions_markdown, quality_markdown

    res = service.predict(skin_photo())
    md = predictions_markdown(res)
    assert "Skin condition (test)" in md and "%" in md
    assert "Photo quality" in quality_markdown(res)


def test_read_faithfulness_bench_explain_layout(tmp_path):
    """The layout bench/bench_explain.py writes: summary[method] / summary['ig/<rule>/<steps>/...']."""
    from skin.explain import IG_METHOD, IG_N_STEPS
    from skin.service import read_faithfulness

    p = tmp_path / "explain.json"
    p.write_text(json.dumps({"summary": {
        "gradcam": {"seconds": 0.1, "deletion": 0.2, "insertion": 0.7, "faithfulness": 0.5},
        f"ig/{IG_METHOD}/{IG_N_STEPS}/blur/224": {"seconds": 0.8, "deletion": 0.1, "insertion": 0.5,
                                                   "faithfulness": 0.4}}}))
    f = read_faithfulness(p)
    assert f["gradcam"]["score"] == pytest.approx(0.5) and f["gradcam"]["insertion_auc"] == pytest.approx(0.7)
    assert f["integrated_gradients"]["score"] == pytest.approx(0.4)
    assert f["saliency"]["text"] == "not measured"

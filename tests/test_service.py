"""skin.service.service without the UI: load, predict, abstain, explain, status, the card through the service.

Two tiny real checkpoints (:mod:`tests.app_helpers`) stand in for the models;
uploads are tested in tests/test_uploads.py, the configuration, the card, the
read-out and the Markdown in their own files.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

import skin.faces
from skin.explain import METHODS
from skin.service import ModelUnavailable, SkinLensService, load_config
from tests.app_helpers import HAM_LABELS, condition_report, make_app_models
from tests.bad_uploads import skin_photo


def _jpeg(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def app_config(tmp_path_factory):
    return make_app_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def service(app_config):
    return SkinLensService(load_config(app_config))


def test_warm_up_runs_every_model_and_the_face_detector(app_config, monkeypatch):
    """Warm-up reaches the models even though its flat synthetic photo fails the quality check."""
    import torch

    svc = SkinLensService(load_config(app_config))
    faces, forwards = [], []
    monkeypatch.setattr(skin.faces, "largest_face", lambda image, **_: faces.append(image.size))
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


def test_warm_up_readies_what_a_first_request_needs_first(app_config, monkeypatch):
    """The face detector before any model, then each model loaded *and run* before the next is loaded: a
    request arriving during warm-up does not wait behind models loaded ahead of the one it needs."""
    import torch

    svc = SkinLensService(load_config(app_config))
    events = []
    monkeypatch.setattr(skin.faces, "largest_face", lambda image, **_: events.append("face"))
    load = SkinLensService.model

    def loading(self, key):
        lm = load(self, key)
        if ("load", key) not in events:
            events.append(("load", key))
        return lm

    monkeypatch.setattr(SkinLensService, "model", loading)
    original = torch.nn.Module.__call__

    def counting(module, *args, **kwargs):
        for key, lm in svc._models.items():
            if module is lm.model:
                events.append(("run", key))
        return original(module, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "__call__", counting)
    svc.warm_up()
    keys = list(svc.config.models)
    assert events == ["face", *(e for key in keys for e in (("load", key), ("run", key)))]


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
    assert "a face fills 4% of this photo" in condition["reason"]
    assert "crop the photo to the spot" in condition["reason"]
    assert res["face"]["found"] is True and "no face" not in (age["reason"] or "")
    with pytest.raises(ValueError, match="cannot explain the condition model on this photo: a face fills"):
        service.explain(_jpeg(portrait), "condition", "saliency")
    lesion = service.predict(_jpeg(skin_photo()))  # no face: the close-up model answers
    assert lesion["face"]["found"] is False and lesion["tasks"]["condition"]["status"] == "ok"
    monkeypatch.setitem(service.config.models, "condition",
                        replace(service.config.models["condition"], refuse_faces=False))
    assert "a face fills" not in (service.predict(_jpeg(portrait))["tasks"]["condition"]["reason"] or "")


def test_quality_failure_abstains_every_task(service):
    dark = Image.fromarray((np.asarray(skin_photo()) * 0.08).astype(np.uint8))
    res = service.predict(dark)
    assert res["quality"]["ok"] is False
    assert res["tips"]
    for t in res["tasks"].values():
        assert t["abstained"] and t["reason"].startswith("photo quality")


def test_low_confidence_abstains(app_config, tmp_path):
    cfg = tmp_path / "strict.yaml"
    cfg.write_text(app_config.read_text().replace("abstain_below: 0.0", "abstain_below: 0.99")
                   .replace("model: cond", f"model: {app_config.parent / 'cond'}")
                   .replace("model: age", f"model: {app_config.parent / 'age'}"))
    svc = SkinLensService(load_config(cfg))
    res = svc.predict(skin_photo())
    cond = res["tasks"]["condition"]
    assert cond["abstained"] and "not confident" in cond["reason"] and "99%" in cond["reason"]
    assert cond["top_k"], "the unreliable guesses are still listed for transparency"
    # the history still scores an abstaining model: a score is missing only where the model did not read the photo
    assert {"condition:malignant", f"condition:{cond['top_k'][0]['label']}"} <= set(svc.scores(skin_photo()))


def test_missing_default_model_is_named_with_the_fix(tmp_path, monkeypatch):
    import skin.hub
    monkeypatch.setattr(skin.hub, "MODELS_DIR", tmp_path / "no-models")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("models:\n  condition: {task: condition_ham10000, model: 'default:condition'}\n")
    svc = SkinLensService(load_config(cfg))
    assert svc.status()["condition"]["available"] is False
    from app_markdown import notice_markdown  # the page's notice
    notice = notice_markdown(svc.status(), svc.gate())
    assert "README.md" in notice and "default:condition" in notice
    with pytest.raises(ModelUnavailable, match="README.md"):
        svc.predict(skin_photo())
    card = svc.fairness("condition", "light")
    assert card["measured"] is False and card["warnings"]


def test_folder_without_safetensors_is_refused(tmp_path):
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "config.json").write_text("{}")
    (tmp_path / "pickled" / "pytorch_model.bin").write_bytes(b"\x80\x04")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("models:\n  condition: {task: condition_ham10000, model: pickled}\n")
    problem = SkinLensService(load_config(cfg)).status()["condition"]["problem"]
    assert "safetensors" in problem


@pytest.mark.parametrize("method", list(METHODS))
def test_explain_every_method(service, method):
    picture, info = service.explain(skin_photo(), "condition", method)
    assert picture.mode == "RGB" and min(picture.size) >= 384
    assert info["method"] == method and info["target"] == info["predicted"]
    assert info["input_size"] == [64, 64]
    assert info["faithfulness"] == service.faithfulness("condition")[method]  # the model's own file, if any
    assert info["signed"] == METHODS[method].signed
    json.dumps(info)


def test_gradcam_after_predict_reuses_the_forward_pass(service, monkeypatch):
    """Grad-CAM right after Predict on the same photo runs no second forward pass, and no second face
    detection (the close-up model needs the face to refuse portraits; detecting costs a forward pass)."""
    im = skin_photo(seed=11)
    service.predict(im)
    lm = service.model("condition")
    calls = []
    monkeypatch.setattr(skin.faces, "largest_face", lambda image, **_: calls.append("face"))
    handle = lm.model.register_forward_hook(lambda *_: calls.append("model"))
    try:
        _, info = service.explain(im, "condition", "gradcam")
    finally:
        handle.remove()
    assert calls == []
    assert info["target"] == info["predicted"]


def test_a_black_and_white_photo_withholds_the_condition_answer_but_not_the_face_models(service):
    """Colour is much of what a skin condition model reads, and none saw a black-and-white photo: it
    abstains with the tip. The age model was trained on UTKFace, black-and-white portraits among them:
    the missing colour is no reason for it to abstain."""
    grey = skin_photo(seed=4).convert("L").convert("RGB")
    res = service.predict(_jpeg(grey))
    assert [p["code"] for p in res["quality"]["problems"]] == ["no_colour"]
    assert res["tasks"]["condition"]["reason"].startswith("photo quality: The photo is black and white")
    assert not (res["tasks"]["age"]["reason"] or "").startswith("photo quality")


def test_explain_user_target_and_errors(service):
    _, info = service.explain(skin_photo(), "condition", "saliency", "mel")
    assert info["target"] == "mel" and info["target_index"] == HAM_LABELS.index("mel")
    assert info["target_name"] == "Melanoma"  # the readable name, as in the answers and on the heatmap
    choices = service.label_choices("condition")
    assert [label for _, label in choices] == HAM_LABELS and ("Melanoma", "mel") in choices
    assert service.label_choices("age")[:2] == [("0", "0"), ("1", "1")]  # ages have no other name
    with pytest.raises(ValueError, match="unknown target class"):
        service.explain(skin_photo(), "condition", "saliency", "melanoma-ish")
    with pytest.raises(ValueError, match="unknown explanation method"):
        service.explain(skin_photo(), "condition", "lime")
    with pytest.raises(ValueError, match="unknown task"):
        service.explain(skin_photo(), "hair", "saliency")


def test_the_age_explanation_explains_the_estimate_the_app_states(service):
    """The age model's answer is its estimate (the expectation over its years), so that is what Explain
    explains by default, not the logit of one year holding a few per cent; a year can still be picked."""
    from skimage import data

    from skin.tasks import completed_years

    portrait = _jpeg(Image.fromarray(data.astronaut()))
    age = service.predict(portrait)["tasks"]["age"]
    for method in ("gradcam", "integrated_gradients"):
        _, info = service.explain(portrait, "age", method)
        assert info["target"] == "estimate" and info["target_index"] is None and info["target_probability"] is None
        assert info["target_name"] == f"Age estimate: {completed_years(age['estimate'])} years"
        assert "raised the estimate" in info["note"]
        json.dumps(info)
    _, year = service.explain(portrait, "age", "saliency", "34")
    assert year["target"] == "34" and year["target_index"] == 34 and 0 <= year["target_probability"] <= 1


def test_explanation_is_on_the_model_that_predicted(service):
    """Explain's target probability is predict's probability: same model, same input."""
    im = skin_photo(seed=5)
    res = service.predict(im)
    top = res["tasks"]["condition"]["top_k"][0]
    _, info = service.explain(im, "condition", "saliency")
    assert info["target"] == top["label"]
    assert info["target_probability"] == pytest.approx(top["probability"], abs=1e-5)


def test_prediction_cache_can_be_turned_off(app_config, monkeypatch):
    """SKINLENS_PREDICTION_CACHE=0 (the benchmarks): every request runs the model."""
    monkeypatch.setenv("SKINLENS_PREDICTION_CACHE", "0")
    svc = SkinLensService(load_config(app_config))
    first = svc.predict(skin_photo(seed=3))
    assert len(svc.cache) == 0
    assert svc.predict(skin_photo(seed=3))["tasks"]["condition"]["top_k"] == first["tasks"]["condition"]["top_k"]


def test_hub_model_missing_from_the_cache_is_named_when_offline(tmp_path):
    """Offline (the app's default), a Hub id that is not cached is reported with the fix; it is not fetched."""
    from dataclasses import replace

    cfg = tmp_path / "c.yaml"
    cfg.write_text("models:\n  condition: {task: condition_ham10000, model: nobody-here/no-such-model}\n")
    config = load_config(cfg)
    problem = SkinLensService(replace(config, hub_offline=True)).status()["condition"]["problem"]
    assert "not in the local cache" in problem and "HF_HUB_OFFLINE=0" in problem
    assert SkinLensService(replace(config, hub_offline=False)).status()["condition"]["available"]


def test_fairness_card_through_the_service(service):
    """The card of a configured model, from the report stored beside it (the card itself: test_service_cards.py)."""
    card = service.fairness("condition", "Dark ")
    assert card["measured"] and card["user_bucket"] == "dark" and card["task"] == "condition"
    assert card["dataset"] == "HAM10000" and card["model"] == service.config.models["condition"].model
    with pytest.raises(ValueError, match="tone_bucket"):
        service.fairness("condition", "olive")
    with pytest.raises(ValueError, match="unknown task"):
        service.fairness("hair")


def test_unreadable_report_is_a_warning_on_the_card(tmp_path):
    """A report.json that is not a run report does not break the card: it says so."""
    (tmp_path / "cond").mkdir()
    (tmp_path / "cond" / "model.safetensors").write_bytes(b"")  # looks usable; the card never loads it
    report = condition_report()
    del report["labels"]
    (tmp_path / "cond" / "report.json").write_text(json.dumps(report))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("models:\n  condition: {task: condition_ham10000, model: cond}\n")
    card = SkinLensService(load_config(cfg)).fairness("condition", "light")
    assert not card["measured"] and "report.json cannot be read" in card["warnings"][0]

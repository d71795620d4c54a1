"""The shipped photo-type gate in the service and in the running app (``models/phototype``).

* Real photos of each type (``../shared/data``; skipped when absent) are sorted
  into their type, and each task answers or abstains exactly as its
  ``photo_types`` say.
* The out-of-scope corpus (generated pictures of held-out seeds and the package
  photographs held out of training) goes through ``python app.py`` via
  ``gradio_client``: each gets the out-of-scope answer from every task, and the
  server keeps serving. The forced photo type works through the same API.

The models behind the gate are the tiny random-weight checkpoints of
:mod:`tests.app_helpers` (what is tested is the routing, not their answers),
with a third entry reading ordinary photos and faces like ``default:clinical``.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from skin.phototype import PHOTO_TYPES, default_dir
from skin.phototype_corpus import GENERATORS, TEST_SEED_BASE, TEST_SOURCES, _real
from tests.app_helpers import RunningApp, make_app_models

pytestmark = pytest.mark.skipif(not (default_dir() / "model.safetensors").is_file(),
                                reason="models/phototype not built (python -m skin.phototype train ...)")
OOS_MESSAGE = "this does not look like a photo of skin"
#: Held-out package photographs the measured model gets wrong, listed in models/README.md
#: ("Photo type"): stained tissue under a microscope is read as an ordinary photo of skin.
KNOWN_MISSES = ("skimage.immunohistochemistry",)


def routed_away(task: dict) -> bool:
    """Whether a task abstained because of the photo type (not quality, confidence or a missing face)."""
    return (task["reason"] or "").startswith(("this looks like", "you chose", OOS_MESSAGE))


@pytest.fixture(scope="module")
def gate_config(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gate")
    cfg = make_app_models(root, phototype=str(default_dir()))
    cfg.write_text(cfg.read_text().replace(
        "models:\n", "models:\n  clinical: {task: condition_ham10000, model: cond, photo_types: [clinical, face], "
                     "title: 'Ordinary photo (test)'}\n", 1))
    return cfg


def _real_photos(root: Path, n: int) -> dict[str, list[Path]]:
    """``n`` photos per skin type, picked by a fixed stride through each folder (no file chosen by hand)."""
    def stride(paths: list[Path], k: int) -> list[Path]:
        return paths[:: max(1, len(paths) // k)][:k]

    folders = sorted(p for p in (root / "dermnet" / "images").iterdir() if p.is_dir())
    dermnet = [min(f.glob("*.jpg")) for f in stride(folders, n) if any(f.glob("*.jpg"))]
    pad = sorted((root / "pad_ufes20" / "images").glob("*.png"))
    return {"dermoscopy": stride(sorted((root / "ham10000" / "images").glob("*.jpg")), n),
            "face": stride(sorted((root / "utkface" / "UTKFace").glob("*.jpg")), n),
            "clinical": dermnet[: n - n // 4] + stride(pad, n // 4)}


@pytest.mark.needs_shared_data
def test_real_photos_are_routed_by_their_type(gate_config, shared_data):
    """The gate alone on 12 photos per type (fast); the whole prediction on 2 per type, whose tasks
    answer or abstain exactly as their ``photo_types`` say."""
    from PIL import Image

    from skin.service import SkinLensService, load_config

    service = SkinLensService(load_config(gate_config))
    assert service.gate()["on"]
    for expected, paths in _real_photos(shared_data, 12).items():
        assert len(paths) == 12, expected
        labels = []
        for path in paths:
            with Image.open(path) as im:
                labels.append(service.photo_type(im.convert("RGB")).label)
        assert labels.count(expected) >= 10, f"{expected}: detected {labels}"
        for path in paths[:2]:
            res = service.predict(str(path))
            kind = res["photo_type"]
            assert kind["label"] in PHOTO_TYPES and not kind["overridden"] and kind["gate"] == "on"
            assert abs(sum(kind["probabilities"].values()) - 1) < 1e-3
            for key, task in res["tasks"].items():
                accepts = kind["label"] in service.config.models[key].photo_types
                assert routed_away(task) == (not accepts), f"{path.name}: {key} {task}"


@pytest.mark.needs_shared_data
def test_a_detected_close_up_skips_the_portrait_check_but_a_chosen_one_does_not(gate_config, shared_data,
                                                                               monkeypatch):
    """A photo the gate calls a dermatoscope close-up reaches the close-up model without the face detector
    (the gate itself rules portraits out: models/phototype/report.json, ``all_held_out``), for Predict and
    for Explain after it; when the user chooses the type, the portrait check still runs."""
    import skin.faces
    from skin.service import SkinLensService, load_config

    service = SkinLensService(load_config(gate_config))
    photo = _real_photos(shared_data, 4)["dermoscopy"][0]
    calls = []
    detect = skin.faces.largest_face
    monkeypatch.setattr(skin.faces, "largest_face", lambda image, **kw: calls.append(1) or detect(image, **kw))
    res = service.predict(str(photo))
    assert res["photo_type"]["label"] == "dermoscopy" and res["face"] is None
    assert res["tasks"]["condition"]["status"] in ("ok", "abstain") and not routed_away(res["tasks"]["condition"])
    service.explain(str(photo), "condition", "gradcam")
    assert calls == []
    service.cache.clear()
    forced = service.predict(str(photo), photo_type="dermoscopy")
    assert forced["photo_type"]["overridden"] and forced["face"] is not None and calls == [1]


def test_package_portraits_are_face_photos(gate_config):
    """Real portraits with a background (not UTKFace's tight crops): the face detector's rule makes them
    face photos, which the age model answers."""
    import matplotlib
    import skimage.data
    from PIL import Image

    from skin.service import SkinLensService, load_config

    service = SkinLensService(load_config(gate_config))
    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    with Image.open(hopper) as im:
        portraits = [Image.fromarray(skimage.data.astronaut()), im.convert("RGB")]
    for photo in portraits:
        res = service.predict(photo)
        assert res["photo_type"]["label"] == "face", res["photo_type"]
        assert not routed_away(res["tasks"]["age"]) and routed_away(res["tasks"]["condition"])


def test_explain_refuses_a_model_that_does_not_read_the_photo(gate_config):
    """Explain follows Predict's routing: the close-up model's answer on a portrait was withheld, so no
    heatmap of it either (it showed that withheld answer, e.g. a lesion class for an acne photo); the
    refusal names the models that read the photo, which explain it, and a chosen type is honoured."""
    import skimage.data
    from PIL import Image

    from skin.service import SkinLensService, load_config

    service = SkinLensService(load_config(gate_config))
    portrait = Image.fromarray(skimage.data.astronaut())
    for predicted_first in (False, True):  # the type Predict read it as, or detected by Explain itself
        service.cache.clear()
        if predicted_first:
            service.predict(portrait)
        with pytest.raises(ValueError, match=r"no explanation: this looks like a face photo .*answers only: "
                                             r"dermatoscope close-up.*models that read it: Ordinary photo \(test\), "):
            service.explain(portrait, "condition", "gradcam")
        _, info = service.explain(portrait, "age", "gradcam")
        assert info["task"] == "age"
    with pytest.raises(ValueError, match="you chose the photo type 'dermatoscope close-up'"):
        service.explain(portrait, "age", "gradcam", photo_type="dermoscopy")
    with pytest.raises(ValueError, match="unknown photo_type 'selfie'"):
        service.explain(portrait, "age", "gradcam", photo_type="selfie")


def test_history_scores_only_what_the_app_would_answer(gate_config, tmp_path):
    """The history is scored under Predict's routing: a portrait keeps the age scores, not the close-up
    model's (whose answer Predict withholds), and a picture no model reads is not saved at all."""
    import skimage.data
    from PIL import Image

    from skin.history.store import HistoryStore
    from skin.service import SkinLensService, load_config
    from skin.service.history import HistoryService

    service = SkinLensService(load_config(gate_config))
    history = HistoryService(service, HistoryStore(f"sqlite:///{tmp_path / 'h.sqlite'}"))
    portrait, rocket = tmp_path / "astronaut.jpg", tmp_path / "rocket.jpg"
    Image.fromarray(skimage.data.astronaut()).save(portrait, quality=90)
    Image.fromarray(skimage.data.rocket()).save(rocket, quality=90)
    entry = history.analyse(str(portrait))
    assert {name.split(":")[0] for name in entry.scores} == {"age"}
    assert set(entry.noise) == set(entry.scores)
    assert service.predict(str(rocket))["photo_type"]["label"] == "out_of_scope"
    with pytest.raises(ValueError, match="nothing to keep: no model reads this photo .this does not look like"):
        history.save("ann", str(rocket))
    assert history.entries("ann")["entries"] == []
    # a type the user chose is honoured, as in Predict: the close-up model reads it then
    history.save("ann", str(rocket), photo_type="dermoscopy")
    (saved,) = history.entries("ann")["entries"]
    assert {name.split(":")[0] for name in saved["scores"]} == {"condition"}


def _out_of_scope_corpus(out: Path) -> list[Path]:
    """Generated pictures (test seeds) and the held-out package photographs, whole, as files."""
    paths = []
    for name, make in GENERATORS.items():
        for k in range(2):
            p = out / f"{name}-{k}.png"
            make(random.Random(TEST_SEED_BASE + 500 + k)).convert("RGB").save(p)
            paths.append(p)
    for name in TEST_SOURCES:
        if name not in KNOWN_MISSES:
            p = out / f"{name}.jpg"
            _real(name).save(p, quality=90)
            paths.append(p)
    return paths


@pytest.mark.slow
def test_out_of_scope_corpus_and_override_through_the_app(gate_config, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    corpus = _out_of_scope_corpus(tmp_path)
    with RunningApp(gate_config, tmp_path) as app:
        for path in corpus:
            res = app.client.predict(handle_file(str(path)), api_name="/predict")
            kind = res["photo_type"]
            assert kind["label"] == "out_of_scope", f"{path.name}: {kind}"
            assert kind["message"].startswith(OOS_MESSAGE)
            for key, task in res["tasks"].items():
                assert task["abstained"] and task["reason"].startswith(OOS_MESSAGE), f"{path.name}: {key} {task}"
        # the user says what it is: the models for that type answer, the others say why not
        forced = app.client.predict(handle_file(str(corpus[0])), "dermoscopy", api_name="/predict")
        assert forced["photo_type"]["overridden"] and forced["photo_type"]["detected"] == "out_of_scope"
        assert not routed_away(forced["tasks"]["condition"]) and forced["tasks"]["condition"]["status"] != "unavailable"
        assert forced["tasks"]["clinical"]["reason"].startswith("you chose the photo type 'dermatoscope close-up'")
        with pytest.raises(AppError, match="unknown photo_type 'selfie'.*dermoscopy, clinical, face, out_of_scope"):
            app.client.predict(handle_file(str(corpus[0])), "selfie", api_name="/predict")
        # no heatmap of an answer the app withheld; a chosen type is honoured by /explain too
        with pytest.raises(AppError, match="no explanation: this does not look like a photo of skin"):
            app.client.predict(handle_file(str(corpus[0])), "condition", "gradcam", "", api_name="/explain")
        _, info = app.client.predict(handle_file(str(corpus[0])), "condition", "gradcam", "", "dermoscopy",
                                     api_name="/explain")
        assert info["task"] == "condition"
        # and the server keeps serving
        again = app.client.predict(handle_file(str(corpus[-1])), "auto", api_name="/predict")
        assert again["photo_type"]["label"] == "out_of_scope"
        # the refusals above are the users' doing: no traceback in the server's log for them
        assert "Traceback" not in app.log.read_text()

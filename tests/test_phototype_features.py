"""The photo-type gate on features of one of the app's own models (:mod:`skin.phototype_features`).

On the tiny random-weight EfficientNet-Lite0 checkpoints of :mod:`tests.app_helpers`: the stage pools are
the stage outputs pooled, the service runs the model once for the gate and the prediction with the features
the gate was fitted on, and a gate whose model has changed is refused with the command that refits it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skin.phototype import PHOTO_TYPES, PhotoTypeClassifier, PhotoTypeGate
from skin.phototype_features import STAGES, ModelFeatures, concat, pooled_stages, weights_sha256
from skin.service import SkinLensService, load_config
from tests.app_helpers import make_app_models
from tests.bad_uploads import skin_photo


def _gate(ref: str, d: int, **changes) -> PhotoTypeClassifier:
    """A gate on ``ref``'s features that calls every photo a dermatoscope close-up."""
    fields = dict(coef=np.zeros((len(PHOTO_TYPES), d)), intercept=np.array([4.0, 0.0, 0.0, 0.0]),
                  mean=np.zeros(d), scale=np.ones(d), features_of=ref, features_stages=STAGES,
                  features_sha256=weights_sha256(ref))
    return PhotoTypeClassifier(**{**fields, **changes})


@pytest.fixture(scope="module")
def gated(tmp_path_factory):
    root = tmp_path_factory.mktemp("gated")
    cfg = make_app_models(root)
    ref = load_config(cfg).models["condition"].model
    d = ModelFeatures(ref).features([skin_photo()]).shape[1]
    _gate(ref, d).save(root / "gate")
    cfg.write_text(cfg.read_text().replace("phototype: off", f"phototype: {root / 'gate'}"))
    return cfg, ref, d


def test_stage_pools_are_the_stage_outputs_pooled(gated):
    _, ref, d = gated
    features = ModelFeatures(ref)
    body = features.model.timm_model
    x = features.processor(images=[skin_photo(seed=2)], return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        h = body.bn1(body.conv_stem(x))
        expected = []
        for i, block in enumerate(body.blocks):
            h = block(h)
            if i in STAGES:
                expected.append(h.mean(dim=(2, 3)).numpy())
        with pooled_stages(features.model, STAGES) as store:
            features.model(pixel_values=x)
    np.testing.assert_allclose(concat(store, STAGES), np.concatenate(expected, 1), rtol=1e-5, atol=1e-6)
    assert concat(store, STAGES).shape == (1, d)


@pytest.mark.parametrize("cache", ["64", "0"])
def test_one_forward_pass_serves_the_gate_and_the_prediction(gated, cache, monkeypatch):
    """The gate reads the condition model's stages off the pass that then answers: one forward pass for
    both, also with the prediction cache off (``SKINLENS_PREDICTION_CACHE=0``: the request keeps its own
    passes), and the gate sees the numbers it was fitted on (:class:`ModelFeatures` on the same photo)."""
    cfg, ref, _ = gated
    monkeypatch.setenv("SKINLENS_PREDICTION_CACHE", cache)
    service = SkinLensService(load_config(cfg))
    lm = service.model("condition")
    photo = skin_photo(seed=4)
    calls = []
    handle = lm.model.register_forward_hook(lambda *_: calls.append(1))
    try:
        res = service.predict(photo)
    finally:
        handle.remove()
    assert res["photo_type"]["label"] == "dermoscopy" and res["tasks"]["condition"]["status"] in ("ok", "abstain")
    assert calls == [1]
    shared = service._forward(lm, photo.convert("RGB")).gate_features
    np.testing.assert_allclose(shared, ModelFeatures(ref).features([photo]), rtol=1e-5, atol=1e-6)


def test_a_gate_whose_model_changed_is_refused_with_the_fix(gated, tmp_path):
    _, ref, d = gated
    _gate(ref, d, features_sha256="0" * 64).save(tmp_path / "stale")
    with pytest.raises(ValueError, match="whose weights have changed since; refit it: python -m skin.phototype"):
        PhotoTypeGate(tmp_path / "stale")
    back = PhotoTypeClassifier.load(tmp_path / "stale")
    assert back.features_of == ref and back.features_stages == STAGES


def test_a_model_without_the_stages_is_refused(tmp_path):
    with pytest.raises(ValueError, match="neither an embedded model"):
        weights_sha256(str(tmp_path))
    with pytest.raises(ValueError, match="fit the gate on the ImageNet backbone"):
        with pooled_stages(torch.nn.Linear(2, 2), STAGES):
            pass

"""skin.explain.gradcam: layer discovery per architecture, and Grad-CAM from a recorded feature map."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skin.explain import explain, find_gradcam_layer
from skin.features import capture_features
from tests.explain_models import LeftHalfNet, build_models, lesion_image


@pytest.fixture(scope="module")
def models():
    return build_models()


def test_gradcam_finds_the_last_feature_layer(models):
    expected = {
        "effnet": ("timm_model.bn2", "map"),
        "vit": ("vit.layers.1.layernorm_before", "tokens"),
        "swin": ("swin.layernorm", "tokens"),
        "convnext": ("convnext.encoder.stages.1", "map"),
    }
    for arch, (name, kind) in expected.items():
        model, size = models[arch]
        module, found_kind, _ = find_gradcam_layer(model)
        assert dict(model.named_modules())[name] is module, arch
        assert found_kind == kind, arch
        e = explain(model, lesion_image(size), method="gradcam")
        assert e.info["layer"] == name
    assert explain(models["vit"][0], lesion_image(32), method="gradcam").info["grid"] == (4, 4)


def test_unknown_architecture_asks_for_a_layer():
    with pytest.raises(ValueError, match="pass layer="):
        find_gradcam_layer(LeftHalfNet())
    model = LeftHalfNet().eval()
    e = explain(model, torch.randn(1, 3, 16, 16), target=0, method="gradcam", layer="features")
    assert e.info["layer"] == "features" and e.info["grid"] == (16, 16)


def test_gradcam_from_recorded_features_equals_captum_layer_gradcam(models):
    """The app's shortcut (feature map recorded in predict's forward, gradient
    through the head only) gives Captum's LayerGradCam map, for every class."""
    model, size = models["effnet"]
    x = lesion_image(size, seed=3)
    with torch.inference_mode(), capture_features(model) as store:
        model(pixel_values=x)
    for target in range(3):
        full = explain(model, x, target=target, method="gradcam")
        fast = explain(model, x, target=target, method="gradcam", features=store["features"])
        assert fast.info["from_features"] and fast.info["layer"] == full.info["layer"]
        np.testing.assert_allclose(fast.attribution, full.attribution, rtol=1e-4, atol=1e-6)
    vit, _ = models["vit"]
    with pytest.raises(ValueError, match="timm CNNs only"):
        explain(vit, lesion_image(32), method="gradcam", features=torch.zeros(1, 4, 2, 2))
    with pytest.raises(ValueError, match="either layer= or features="):
        explain(model, x, method="gradcam", features=store["features"], layer="timm_model.bn2")

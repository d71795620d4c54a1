"""skin.inference: BatchNorm folding and channels-last keep the function the model computes."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from skin.explain import explain, find_gradcam_layer  # noqa: E402
from skin.inference import FoldedNormAct, fold_batchnorm, prepare_for_inference  # noqa: E402


def _effnet_with_trained_bn(num_labels: int = 3) -> nn.Module:
    """TimmWrapper around a random EfficientNet-Lite0 whose BatchNorms hold
    non-trivial statistics and affine weights, as after training (fresh ones are
    the identity, which any folding would reproduce)."""
    import timm
    from transformers import TimmWrapperConfig, TimmWrapperForImageClassification

    torch.manual_seed(0)
    model = TimmWrapperForImageClassification(
        TimmWrapperConfig(architecture="efficientnet_lite0", num_labels=num_labels))
    model.timm_model.load_state_dict(
        timm.create_model("efficientnet_lite0", pretrained=False, num_classes=num_labels).state_dict())
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


def _logits(model, x):
    with torch.no_grad():
        return model(pixel_values=x).logits


def test_prepared_model_computes_the_same_function():
    model = _effnet_with_trained_bn()
    x = torch.randn(2, 3, 96, 96)
    before = _logits(model, x)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    prepared = prepare_for_inference(model)
    assert prepared is model
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert sum(isinstance(m, FoldedNormAct) for m in model.modules()) == n_bn
    assert not any(p.requires_grad for p in model.parameters())
    assert model.timm_model.conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(_logits(model, x), before, atol=1e-4, rtol=1e-4)


def test_explanations_run_on_the_prepared_model():
    """Grad-CAM still finds the layer before pooling (the folded bn2), and IG
    and Grad-CAM give the maps of the unprepared model: same function, same
    explanation."""
    import copy

    import numpy as np

    original = _effnet_with_trained_bn()
    model = prepare_for_inference(copy.deepcopy(original))
    layer, kind, _ = find_gradcam_layer(model)
    assert isinstance(layer, FoldedNormAct) and kind == "map"
    x = torch.randn(1, 3, 64, 64)
    a = explain(original, x, method="gradcam", target=1).attribution
    b = explain(model, x, method="gradcam", target=1).attribution
    assert b.shape == (64, 64)
    np.testing.assert_allclose(b, a, atol=1e-3 * np.abs(a).max(), rtol=0)
    # IG integrates gradients along a path through ReLU6 kinks: folding BatchNorm changes float rounding, so
    # at a few path points a unit lands on the other side of a kink. On an AMX CPU 0.5 % of the pixels moved
    # by up to 0.34 % of the map's maximum. The maps agree pixel by pixel almost everywhere, nowhere far off,
    # and in total.
    a = explain(original, x, method="integrated_gradients", target=1).attribution
    ig = explain(model, x, method="integrated_gradients", target=1)
    b = ig.attribution
    diff = np.abs(b - a) / np.abs(a).max()
    assert b.shape == (64, 64) and np.quantile(diff, 0.99) < 1e-3 and diff.max() < 1e-2
    # totals: positive and negative attributions cancel (|sum| is under 1 % of the L1 mass), so the
    # totals are compared on the scale of that mass
    assert abs(float(b.sum()) - float(a.sum())) < 1e-3 * float(np.abs(a).sum())
    # the score gap now comes from Captum's own forward passes: check it against the model
    from skin.explain import make_baseline

    base = make_baseline(x, "blur")
    with torch.no_grad():
        expected = (model(pixel_values=x).logits - model(pixel_values=base).logits)[0, ig.target].item()
    assert ig.info["score_gap"] == pytest.approx(expected, abs=1e-4)


class _OutOfOrder(nn.Module):
    """Registers conv before bn but normalises *before* convolving: folding by
    registration order would be wrong, so prepare_for_inference must notice."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(3)
        self.head = nn.Linear(3, 2)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-1, 1)
            self.bn.running_var.uniform_(0.5, 2)

    def forward(self, x):
        return self.head(self.conv(self.bn(x)).mean(dim=(2, 3)))


class _Holder(nn.Module):
    def __init__(self):
        super().__init__()
        self.timm_model = _OutOfOrder()

    def forward(self, pixel_values):
        from types import SimpleNamespace

        return SimpleNamespace(logits=self.timm_model(pixel_values))


def test_folding_that_would_change_the_logits_is_refused():
    torch.manual_seed(0)
    model = _Holder().eval()
    x = torch.randn(1, 3, 32, 32)
    before = _logits(model, x)
    assert fold_batchnorm(_OutOfOrder().eval()) == 1  # the naive folding does happen ...
    prepare_for_inference(model)
    assert isinstance(model.timm_model.bn, nn.BatchNorm2d)  # ... but is not kept
    torch.testing.assert_close(_logits(model, x), before)


def test_non_timm_models_are_left_as_they_are():
    from transformers import ViTConfig, ViTForImageClassification

    cfg = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                    image_size=32, patch_size=8, num_labels=3)
    model = ViTForImageClassification(cfg)
    x = torch.randn(1, 3, 32, 32)
    before = _logits(model.eval(), x)
    prepare_for_inference(model)
    assert not model.training
    torch.testing.assert_close(_logits(model, x), before)

"""Tests for skin.explain on tiny models (random init, built from configs offline)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from skin.explain import (  # noqa: E402
    METHODS,
    Explanation,
    deletion_insertion,
    explain,
    faithfulness_score,
    find_gradcam_layer,
    make_baseline,
    normalize_attribution,
    overlay,
    randomization_check,
    randomize_weights,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MEAN = torch.tensor((0.485, 0.456, 0.406)).view(3, 1, 1)
STD = torch.tensor((0.229, 0.224, 0.225)).view(3, 1, 1)


# --------------------------------------------------------------------------- models


def _tiny_effnet(num_labels: int = 3) -> nn.Module:
    """transformers' TimmWrapper around a random-init timm EfficientNet-Lite0.

    The wrapper's own init (normal, std 0.02 everywhere) makes activations vanish
    through 16 blocks, so the timm model's default initialisation is loaded
    into it: a random but well-scaled CNN, as after training.
    """
    import timm
    from transformers import TimmWrapperConfig, TimmWrapperForImageClassification

    torch.manual_seed(0)
    model = TimmWrapperForImageClassification(
        TimmWrapperConfig(architecture="efficientnet_lite0", num_labels=num_labels)
    )
    reference = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=num_labels)
    model.timm_model.load_state_dict(reference.state_dict())
    return model.eval()


def _tiny_vit() -> nn.Module:
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    cfg = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                    image_size=32, patch_size=8, num_labels=3)
    return ViTForImageClassification(cfg).eval()


def _tiny_swin() -> nn.Module:
    from transformers import SwinConfig, SwinForImageClassification

    torch.manual_seed(0)
    cfg = SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2],
                     window_size=4, num_labels=3)
    return SwinForImageClassification(cfg).eval()


def _tiny_convnext() -> nn.Module:
    from transformers import ConvNextConfig, ConvNextForImageClassification

    torch.manual_seed(0)
    cfg = ConvNextConfig(num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3, image_size=32)
    return ConvNextForImageClassification(cfg).eval()


class _LeftMask(nn.Module):
    def forward(self, h):
        mask = torch.zeros_like(h[:1, :1])
        mask[..., : h.shape[-1] // 2] = 1.0
        return h * mask


class LeftHalfNet(nn.Module):
    """Only the left half of the image reaches the logits (by construction).

    ``features`` = fixed 3x3 filters, ReLU, then the right half of the feature
    map is zeroed; the head global-average-pools it. Class 0's logit is the
    mean filter response on the left, classes 1 and 2 are constant, so texture
    on the left raises p(class 0) and nothing on the right changes anything.
    ``features`` is the layer before global pooling, where Grad-CAM reads.
    """

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        conv = nn.Conv2d(3, 8, 3, padding=1)
        self.features = nn.Sequential(conv, nn.ReLU(), _LeftMask())
        self.head = nn.Linear(8, 3)
        with torch.no_grad():
            conv.weight.copy_(torch.randn(8, 3, 3, 3, generator=g) * 0.5)
            conv.bias.zero_()
            self.head.weight.zero_()
            self.head.weight[0] = 2.0
            self.head.bias.copy_(torch.tensor([-1.0, 0.0, 0.0]))

    def forward(self, pixel_values):
        from transformers.modeling_outputs import ImageClassifierOutput

        pooled = self.features(pixel_values).mean(dim=(2, 3))
        return ImageClassifierOutput(logits=self.head(pooled))


ARCHS = {
    "effnet": (_tiny_effnet, 64),
    "vit": (_tiny_vit, 32),
    "swin": (_tiny_swin, 32),
    "convnext": (_tiny_convnext, 32),
}


@pytest.fixture(scope="module")
def models():
    return {name: (build(), size) for name, (build, size) in ARCHS.items()}


def _lesion_image(size: int, seed: int = 0) -> torch.Tensor:
    """A smooth synthetic dermoscopy-like image (dark blob on skin tone),
    normalised with ImageNet mean/std: shape (1, 3, size, size)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    blob = torch.exp(-((xx + 0.2) ** 2 + (yy - 0.1) ** 2) / 0.15)
    skin = torch.tensor((0.85, 0.65, 0.55)).view(3, 1, 1)
    lesion = torch.tensor((0.35, 0.2, 0.15)).view(3, 1, 1)
    img = skin * (1 - blob) + lesion * blob + 0.03 * torch.randn(3, size, size, generator=g)
    return ((img.clamp(0, 1) - MEAN) / STD).unsqueeze(0)


# --------------------------------------------------------------------------- contract


def _cheap(method: str, size: int) -> dict:
    """Fewer evaluations for the shape/contract test (the defaults are
    exercised by the completeness, left-half and randomisation tests)."""
    return {
        "integrated_gradients": {"n_steps": 4},
        "gradient_shap": {"n_samples": 4},
        "occlusion": {"window": size // 2, "stride": size // 4},
    }.get(method, {})


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("method", METHODS)
def test_every_method_returns_finite_map_at_input_resolution(models, arch, method):
    model, size = models[arch]
    x = _lesion_image(size)
    e = explain(model, x, method=method, **_cheap(method, size))
    assert isinstance(e, Explanation)
    assert e.attribution.shape == (size, size)
    assert e.attribution.dtype == np.float32
    assert np.isfinite(e.attribution).all()
    assert e.method == method
    with torch.no_grad():
        assert e.target == int(model(pixel_values=x).logits.argmax())
    assert e.signed == (method in ("integrated_gradients", "gradient_shap", "occlusion"))
    if not e.signed:
        assert (e.attribution >= 0).all()
    assert e.seconds >= 0
    assert float(np.abs(e.attribution).sum()) > 0


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
        e = explain(model, _lesion_image(size), method="gradcam")
        assert e.info["layer"] == name
    assert explain(models["vit"][0], _lesion_image(32), method="gradcam").info["grid"] == (4, 4)


def test_gradcam_on_peft_wrapped_model(models):
    peft = pytest.importorskip("peft")
    vit = _tiny_vit()
    wrapped = peft.get_peft_model(vit, peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    x = _lesion_image(32)
    for method in ("gradcam", "integrated_gradients"):
        e = explain(wrapped, x, method=method)
        assert e.attribution.shape == (32, 32) and np.isfinite(e.attribution).all()


def test_explicit_target_and_options(models):
    model, size = models["effnet"]
    x = _lesion_image(size)[0]  # (3, H, W) is accepted too
    e = explain(model, x, target=2, method="occlusion", window=16, stride=16)
    assert e.target == 2 and e.info["window"] == 16
    e = explain(model, x, target=1, method="gradcam", layer="timm_model.conv_head")
    assert e.info["layer"] == "timm_model.conv_head"


def test_bad_calls_raise_value_error(models):
    model, size = models["effnet"]
    x = _lesion_image(size)
    with pytest.raises(ValueError, match="unknown method"):
        explain(model, x, method="lime")
    with pytest.raises(ValueError, match="n_stepz"):
        explain(model, x, method="integrated_gradients", n_stepz=4)
    with pytest.raises(ValueError, match="one image"):
        explain(model, x.repeat(2, 1, 1, 1))
    with pytest.raises(ValueError, match="out of range"):
        explain(model, x, target=3)
    with pytest.raises(ValueError, match="pass layer="):
        find_gradcam_layer(LeftHalfNet())
    with pytest.raises(ValueError, match="unknown baseline"):
        make_baseline(x, "grey")


def test_explain_restores_training_mode(models):
    model, size = models["vit"]
    model.train()
    try:
        explain(model, _lesion_image(size), method="saliency")
        assert model.training
    finally:
        model.eval()


# --------------------------------------------------------------------------- faithfulness


def test_integrated_gradients_completeness_on_cnn(models):
    """Sundararajan et al.'s completeness axiom: sum(attr) = f(x) - f(baseline).

    The default n_steps is chosen for the 1 s latency target (see
    bench/bench_explain.py): on ReLU6 CNNs the integrand has kinks, so
    Gauss-Legendre converges slowly and a few-step estimate is within ~15 %;
    32 steps bring it under 5 %. Both are checked, and the error is reported
    in ``info`` so callers can see it.
    """
    model, size = models["effnet"]
    x = _lesion_image(size)
    base = make_baseline(x, "blur")
    with torch.no_grad():
        logits_x, logits_b = model(pixel_values=x).logits[0], model(pixel_values=base).logits[0]
    for n_steps, tolerance in ((None, 0.15), (32, 0.05)):
        options = {} if n_steps is None else {"n_steps": n_steps}
        e = explain(model, x, method="integrated_gradients", **options)
        gap = float(logits_x[e.target] - logits_b[e.target])
        assert abs(gap) > 1e-3
        error = abs(float(e.attribution.astype(np.float64).sum()) - gap) / abs(gap)
        assert error < tolerance, (n_steps, error)
        assert e.info["completeness_error"] == pytest.approx(error, rel=0.05, abs=1e-3)


@pytest.mark.parametrize("method", METHODS)
def test_left_half_model_attributions_are_on_the_left(method):
    torch.manual_seed(1)
    model = LeftHalfNet().eval()
    x = torch.randn(1, 3, 32, 32)
    options = {"layer": model.features} if method == "gradcam" else {}
    e = explain(model, x, target=0, method=method, **options)
    positive = normalize_attribution(e.attribution, sign="absolute", clip_percentile=100)
    left_share = positive[:, :16].sum() / positive.sum()
    assert left_share > 0.8, left_share
    scores = deletion_insertion(model, x, e.attribution, target=0, steps=16, baseline="zero")
    assert scores["deletion_auc"] < scores["insertion_auc"], scores
    assert faithfulness_score(scores) > 0


def test_deletion_insertion_curves():
    torch.manual_seed(1)
    model = LeftHalfNet().eval()
    x = torch.randn(1, 3, 24, 24)
    attribution = np.random.default_rng(0).random((12, 12))  # resized to 24 x 24
    scores = deletion_insertion(model, x, attribution, target=0, steps=8, baseline="blur")
    curves = scores["curves"]
    assert len(curves["deletion"]) == len(curves["insertion"]) == 9
    assert curves["fraction"][0] == 0 and curves["fraction"][-1] == 1
    with torch.no_grad():
        p_image = model(pixel_values=x).logits.softmax(-1)[0, 0].item()
        p_base = model(pixel_values=make_baseline(x, "blur")).logits.softmax(-1)[0, 0].item()
    assert curves["deletion"][0] == pytest.approx(p_image, abs=1e-5)
    assert curves["deletion"][-1] == pytest.approx(p_base, abs=1e-5)
    assert curves["insertion"][0] == pytest.approx(p_base, abs=1e-5)
    assert curves["insertion"][-1] == pytest.approx(p_image, abs=1e-5)
    assert 0 <= scores["deletion_auc"] <= 1 and 0 <= scores["insertion_auc"] <= 1
    assert faithfulness_score(scores) == pytest.approx(scores["insertion_auc"] - scores["deletion_auc"])
    with pytest.raises(ValueError, match="baseline"):
        deletion_insertion(model, x, attribution, 0, baseline="black")
    with pytest.raises(ValueError):
        faithfulness_score({"deletion_auc": 0.1})


# --------------------------------------------------------------------------- sanity


def test_randomize_weights_copies_and_cascades(models):
    model, _ = models["convnext"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    full = randomize_weights(model)
    head = randomize_weights(model, cascade=1)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"original changed: {k}"
    assert not torch.equal(full.state_dict()["convnext.embeddings.patch_embeddings.weight"],
                           before["convnext.embeddings.patch_embeddings.weight"])
    assert torch.equal(head.state_dict()["convnext.embeddings.patch_embeddings.weight"],
                       before["convnext.embeddings.patch_embeddings.weight"])
    assert not torch.equal(head.state_dict()["classifier.weight"], before["classifier.weight"])


@pytest.mark.parametrize("method", ["gradcam", "saliency", "integrated_gradients"])
def test_randomization_sanity_check(method):
    """Adebayo et al. 2018: maps must change when the weights are randomised."""
    model = _tiny_effnet()
    x = _lesion_image(96)
    options = {"n_steps": 8} if method == "integrated_gradients" else {}
    rho = randomization_check(model, x, method, **options)
    assert -1.0 <= rho <= 1.0
    assert abs(rho) < 0.6, rho


# --------------------------------------------------------------------------- display


def test_normalize_attribution():
    a = np.array([[-2.0, 0.0], [1.0, 3.0]])
    pos = normalize_attribution(a, clip_percentile=100)
    np.testing.assert_allclose(pos, [[0, 0], [1 / 3, 1]])
    np.testing.assert_allclose(normalize_attribution(a, sign="absolute", clip_percentile=100), [[2 / 3, 0], [1 / 3, 1]])
    allv = normalize_attribution(a, sign="all", clip_percentile=100)
    assert allv.min() == 0 and allv.max() == 1
    assert (normalize_attribution(np.zeros((3, 3))) == 0).all()
    clipped = normalize_attribution(np.arange(100.0).reshape(10, 10), clip_percentile=90)
    assert clipped.max() == 1 and (clipped == 1).sum() > 1
    with pytest.raises(ValueError, match="sign"):
        normalize_attribution(a, sign="negative")


def test_overlay_returns_rgb_of_photo_size():
    from PIL import Image

    photo = Image.fromarray(np.full((90, 120, 3), 200, np.uint8), "RGB")
    attribution = np.zeros((32, 32), np.float32)
    attribution[8:16, 4:12] = 1.0
    out = overlay(photo, attribution, label="melanoma")
    assert out.mode == "RGB" and out.size == photo.size
    assert np.asarray(out).std() > 0
    plain = overlay(photo.convert("L"), attribution, alpha=0.3, cmap="viridis", legend=False)
    assert plain.mode == "RGB" and plain.size == photo.size
    with pytest.raises(ValueError, match="colormap"):
        overlay(photo, attribution, cmap="not-a-map")
    with pytest.raises(ValueError, match="H x W"):
        overlay(photo, np.zeros((3, 32, 32)))


def test_overlay_colours_are_the_colormap_s():
    """The 256-entry colour table draws what matplotlib's colormap draws (to quantisation)."""
    from matplotlib import colormaps
    from PIL import Image

    photo = Image.new("RGB", (64, 48), (0, 0, 0))
    ramp = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (48, 1))
    out = np.asarray(overlay(photo, ramp, alpha=1.0, legend=False, cmap="viridis"), np.float32)
    heat = normalize_attribution(ramp)
    heat = np.asarray(Image.fromarray(heat, mode="F").resize((64, 48), Image.BILINEAR))
    expected = colormaps["viridis"](np.clip(heat, 0, 1))[..., :3] * 255
    assert np.abs(out - expected).max() <= 1.0


@pytest.mark.needs_shared_data
def test_overlay_on_real_ham10000_photo(models):
    from PIL import Image

    images = SHARED / "ham10000" / "images"
    if not images.is_dir():
        pytest.skip(f"shared data not found at {images}")
    photo = Image.open(sorted(images.glob("*.jpg"))[0]).convert("RGB")
    model, size = models["effnet"]
    x = ((torch.from_numpy(np.asarray(photo.resize((size, size)), np.float32) / 255).permute(2, 0, 1) - MEAN) / STD)
    e = explain(model, x, method="gradcam")
    out = overlay(photo, e.attribution, label="nv")
    assert out.size == photo.size and out.mode == "RGB"


def test_gradcam_from_recorded_features_equals_captum_layer_gradcam(models):
    """The app's shortcut (feature map recorded in predict's forward, gradient
    through the head only) gives Captum's LayerGradCam map, for every class."""
    from skin.explain import capture_features, head_of

    model, size = models["effnet"]
    x = _lesion_image(size, seed=3)
    with torch.inference_mode(), capture_features(model) as store:
        model(pixel_values=x)
    assert store["features"].shape[1] == 1280
    for target in range(3):
        full = explain(model, x, target=target, method="gradcam")
        fast = explain(model, x, target=target, method="gradcam", features=store["features"])
        assert fast.info["from_features"] and fast.info["layer"] == full.info["layer"]
        np.testing.assert_allclose(fast.attribution, full.attribution, rtol=1e-4, atol=1e-6)
    vit, _ = models["vit"]
    assert head_of(vit) is None
    with capture_features(vit) as store:
        with torch.no_grad():
            vit(pixel_values=_lesion_image(32))
    assert store == {}
    with pytest.raises(ValueError, match="timm CNNs only"):
        explain(vit, _lesion_image(32), method="gradcam", features=torch.zeros(1, 4, 2, 2))
    with pytest.raises(ValueError, match="either layer= or features="):
        explain(model, x, method="gradcam", features=store.get("features", torch.zeros(1, 1280, 2, 2)),
                layer="timm_model.bn2")

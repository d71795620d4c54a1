"""skin.explain.methods: the method table, explain()'s contract and the methods' properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skin.explain import METHODS, Explanation, explain, make_baseline
from skin.explain.display import normalize_attribution
from skin.explain.faithfulness import deletion_insertion, faithfulness_score
from tests.explain_models import ARCHS, LeftHalfNet, build_models, lesion_image, tiny_vit

SIGNED = ("integrated_gradients", "gradient_shap", "occlusion")


@pytest.fixture(scope="module")
def models():
    return build_models()


def test_method_table():
    assert list(METHODS) == ["integrated_gradients", "gradient_shap", "occlusion", "saliency", "gradcam"]
    for name, m in METHODS.items():
        assert m.name == name and m.label and m.reference and callable(m.attribute)
        assert m.signed == (name in SIGNED)
    assert METHODS["gradcam"].label == "Grad-CAM"
    assert METHODS["gradcam"].options == ("layer", "features")
    assert "n_steps" in METHODS["integrated_gradients"].options
    assert METHODS["saliency"].options == ()
    with pytest.raises(TypeError):
        METHODS["lime"] = METHODS["saliency"]  # one table, read-only


def _cheap(method: str, size: int) -> dict:
    """Fewer evaluations for the shape/contract test (the defaults are
    exercised by the completeness, left-half and randomisation tests)."""
    return {
        "integrated_gradients": {"n_steps": 4},
        "gradient_shap": {"n_samples": 4},
        "occlusion": {"window": size // 2, "stride": size // 4},
    }.get(method, {})


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_returns_finite_map_at_input_resolution(models, arch, method):
    model, size = models[arch]
    x = lesion_image(size)
    e = explain(model, x, method=method, **_cheap(method, size))
    assert isinstance(e, Explanation)
    assert e.attribution.shape == (size, size)
    assert e.attribution.dtype == np.float32
    assert np.isfinite(e.attribution).all()
    assert e.method == method
    with torch.no_grad():
        assert e.target == int(model(pixel_values=x).logits.argmax())
    assert e.signed == (method in SIGNED)
    if not e.signed:
        assert (e.attribution >= 0).all()
    assert e.seconds >= 0
    assert float(np.abs(e.attribution).sum()) > 0


def test_methods_on_peft_wrapped_model():
    peft = pytest.importorskip("peft")
    wrapped = peft.get_peft_model(tiny_vit(), peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    x = lesion_image(32)
    for method in ("gradcam", "integrated_gradients"):
        e = explain(wrapped, x, method=method)
        assert e.attribution.shape == (32, 32) and np.isfinite(e.attribution).all()


def test_explicit_target_and_options(models):
    model, size = models["effnet"]
    x = lesion_image(size)[0]  # (3, H, W) is accepted too
    e = explain(model, x, target=2, method="occlusion", window=16, stride=16)
    assert e.target == 2 and e.info["window"] == 16
    e = explain(model, x, target=1, method="gradcam", layer="timm_model.conv_head")
    assert e.info["layer"] == "timm_model.conv_head"


def test_bad_calls_raise_value_error(models):
    model, size = models["effnet"]
    x = lesion_image(size)
    with pytest.raises(ValueError, match="unknown method"):
        explain(model, x, method="lime")
    with pytest.raises(ValueError, match="n_stepz"):
        explain(model, x, method="integrated_gradients", n_stepz=4)
    with pytest.raises(ValueError, match="one image"):
        explain(model, x.repeat(2, 1, 1, 1))
    with pytest.raises(ValueError, match="out of range"):
        explain(model, x, target=3)
    with pytest.raises(ValueError, match="unknown baseline"):
        make_baseline(x, "grey")


def test_explain_restores_training_mode(models):
    model, size = models["vit"]
    model.train()
    try:
        explain(model, lesion_image(size), method="saliency")
        assert model.training
    finally:
        model.eval()


def test_integrated_gradients_completeness_on_cnn(models):
    """Sundararajan et al.'s completeness axiom: sum(attr) = f(x) - f(baseline).

    The default n_steps is chosen for the latency target (see
    bench/bench_explain.py): on ReLU6 CNNs the integrand has kinks, so
    Gauss-Legendre converges slowly and a few-step estimate is within ~15 %;
    32 steps bring it under 5 %. Both are checked, and the error is reported
    in ``info`` so callers can see it.
    """
    model, size = models["effnet"]
    x = lesion_image(size)
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
        assert e.info["score_gap"] == pytest.approx(gap, rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("method", list(METHODS))
def test_left_half_model_attributions_are_on_the_left(method):
    """A model that only sees the left half: every method puts its mass there, and the map
    is faithful by deletion / insertion."""
    torch.manual_seed(1)
    model = LeftHalfNet().eval()
    x = torch.randn(1, 3, 32, 32)
    options = {"layer": model.features} if method == "gradcam" else {}
    e = explain(model, x, target=0, method=method, **options)
    positive = normalize_attribution(e.attribution, sign="absolute", clip_percentile=100)
    left_share = positive[:, :16].sum() / positive.sum()
    assert left_share > 0.8, left_share
    scores = deletion_insertion(model, x, e.attribution, target=0, steps=16, baseline="zero")
    assert scores.deletion_auc < scores.insertion_auc, scores
    assert faithfulness_score(scores) > 0

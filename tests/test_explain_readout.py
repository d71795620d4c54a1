"""Explaining a readout over the logits (the age estimate) instead of one class: the quantity
explained is the app's answer, and the methods keep their properties on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skin.explain import METHODS, ExpectedValue, explain, make_baseline
from skin.explain.faithfulness import deletion_insertion
from skin.features import capture_features
from skin.metrics import expected_age
from tests.explain_models import lesion_image, tiny_effnet

AGES = np.array([5.0, 30.0, 70.0])


@pytest.fixture(scope="module")
def model():
    return tiny_effnet(num_labels=len(AGES))


def _estimate(model, x, readout) -> float:
    with torch.no_grad():
        return float(readout(model(pixel_values=x).logits)[0, 0])


def test_expected_value_is_the_apps_age_estimate(model):
    readout = ExpectedValue(AGES, "age estimate")
    x = lesion_image(64)
    with torch.no_grad():
        logits = model(pixel_values=x).logits
    probs = logits.softmax(-1).numpy()
    assert readout(logits).shape == (1, 1)
    assert float(readout(logits)[0, 0]) == pytest.approx(float(expected_age(probs, AGES)[0]), rel=1e-5)
    with pytest.raises(ValueError, match="3 values but the model 4 classes"):
        readout(torch.zeros(1, 4))


def test_integrated_gradients_on_the_estimate_is_complete_in_years(model):
    """The map sums to the estimate minus the blurred photo's estimate (completeness, now in years).

    The random model's estimate moves by only about 0.005 years between the photo and its blur: the class
    logits shift together and the softmax cancels most of it, so the kinks of the ReLU6 integrand are large
    against the gap. 32 Gauss-Legendre steps left a completeness error of 5.05 % in float64, and float32 rounding
    put it on either side of 5 % with the thread count (a CI failure). A converged rule (256 trapezoid steps,
    0.03 % in both precisions) makes this a check of the readout; the default rule's quadrature error is
    checked on a class logit's well-conditioned gap (tests/test_explain_methods.py)."""
    readout = ExpectedValue(AGES)
    x = lesion_image(64, seed=1)
    gap = _estimate(model, x, readout) - _estimate(model, make_baseline(x, "blur"), readout)
    assert abs(gap) > 1e-3
    e = explain(model, x, method="integrated_gradients", readout=readout, n_steps=256,
                integration="riemann_trapezoid")
    assert e.target == 0
    error = abs(float(e.attribution.astype(np.float64).sum()) - gap) / abs(gap)
    assert error < 0.05
    assert e.info["completeness_error"] == pytest.approx(error, rel=0.05, abs=1e-3)
    assert e.info["score_gap"] == pytest.approx(gap, rel=1e-4, abs=1e-5)


def test_every_method_explains_the_estimate_and_not_a_class(model):
    readout = ExpectedValue(AGES)
    x = lesion_image(64, seed=2)
    for method in METHODS:
        options = {"window": 32, "stride": 16} if method == "occlusion" else {}
        on_estimate = explain(model, x, method=method, readout=readout, **options)
        assert on_estimate.target == 0 and np.isfinite(on_estimate.attribution).all()
        if method != "occlusion":  # a class's map is another map
            on_class = explain(model, x, target=0, method=method, **options)
            assert not np.allclose(on_estimate.attribution, on_class.attribution)
    with pytest.raises(ValueError, match="out of range"):
        explain(model, x, target=1, method="saliency", readout=readout)


def test_gradcam_from_recorded_features_equals_captum_on_the_estimate(model):
    """The app's Grad-CAM shortcut (head-only backward) applies the readout as Captum's full pass does."""
    readout = ExpectedValue(AGES)
    x = lesion_image(64, seed=3)
    with torch.inference_mode(), capture_features(model) as store:
        model(pixel_values=x)
    full = explain(model, x, method="gradcam", readout=readout)
    fast = explain(model, x, method="gradcam", readout=readout, features=store["features"])
    assert fast.info["from_features"]
    np.testing.assert_allclose(fast.attribution, full.attribution, rtol=1e-4, atol=1e-6)


def test_deletion_insertion_follows_the_estimate_in_years(model):
    readout = ExpectedValue(AGES)
    x = lesion_image(64, seed=4)
    e = explain(model, x, method="saliency", readout=readout)
    di = deletion_insertion(model, x, e.attribution, 0, steps=4, readout=readout)
    start, end = _estimate(model, x, readout), _estimate(model, make_baseline(x, "blur"), readout)
    assert di.deletion[0] == pytest.approx(start, rel=1e-4) and di.deletion[-1] == pytest.approx(end, rel=1e-4)
    assert di.insertion[0] == pytest.approx(end, rel=1e-4) and di.insertion[-1] == pytest.approx(start, rel=1e-4)
    assert min(AGES) <= min(di.deletion + di.insertion) and max(di.deletion + di.insertion) <= max(AGES)

"""Explanations of an image classifier's prediction: one call, five methods.

``explain(model, pixel_values, target=None, method="gradcam")`` attributes the
model's score for ``target`` (the predicted class when ``None``) to the input
pixels and returns an :class:`Explanation` holding an ``H x W`` map at the
resolution of ``pixel_values``.

Where each part lives:

* :mod:`skin.explain.methods`: the attribution methods and :data:`METHODS`, the
  one table of them (name, label, signed or not, function), and :func:`explain`.
* :mod:`skin.explain.gradcam`: Grad-CAM and the discovery of the layer it reads.
* :mod:`skin.explain.baselines`: the reference inputs (blur, zero, black).
* :mod:`skin.explain.display`: :func:`normalize_attribution` and :func:`overlay`
  (the heatmap over the photo, with its legend).
* :mod:`skin.explain.faithfulness`: deletion / insertion, the randomisation
  sanity check, and the ``faithfulness.json`` file stored beside each model.
* :mod:`skin.explain.common`: the model as a function, input checks, result types.

The feature map the prediction path records for Grad-CAM is captured by
:mod:`skin.features`, part of inference rather than of explanations.
"""

from skin.explain.baselines import gaussian_blur, make_baseline, model_mean_std
from skin.explain.common import Attribution, ExpectedValue, Explanation, ModelForward
from skin.explain.display import normalize_attribution, overlay
from skin.explain.faithfulness import (
    DeletionInsertion,
    FaithfulnessReport,
    deletion_insertion,
    faithfulness_score,
    faithfulness_summary,
    load_faithfulness,
    map_correlation,
    randomization_check,
    randomize_weights,
)
from skin.explain.gradcam import find_gradcam_layer
from skin.explain.methods import IG_METHOD, IG_N_STEPS, METHODS, Method, explain, get_method

__all__ = [
    "IG_METHOD",
    "IG_N_STEPS",
    "METHODS",
    "Attribution",
    "DeletionInsertion",
    "ExpectedValue",
    "Explanation",
    "FaithfulnessReport",
    "Method",
    "ModelForward",
    "deletion_insertion",
    "explain",
    "faithfulness_score",
    "faithfulness_summary",
    "find_gradcam_layer",
    "gaussian_blur",
    "get_method",
    "load_faithfulness",
    "make_baseline",
    "map_correlation",
    "model_mean_std",
    "normalize_attribution",
    "overlay",
    "randomization_check",
    "randomize_weights",
]

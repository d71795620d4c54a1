"""The attribution methods, one function each behind one call shape, and the one table of them.

Every method is ``fn(model, forward, x, target, **options) -> Attribution``:
``forward`` is the model as a function of one ``(1, 3, H, W)`` tensor
(:class:`~skin.explain.common.ModelForward`), ``target`` a class index, and the
keyword-only parameters are the method's options. :data:`METHODS` maps each
method's name to a :class:`Method` (name, label shown to people, whether its
map is signed, function); the service, the app and the benchmarks read names,
labels and signedness from it. :func:`explain` is the one entry point.

Deliberate choices, stated once:

* **Target score**: attributions explain the *logit* of the target class (the
  quantity whose completeness IG guarantees), not the softmax probability; or,
  given a ``readout`` over the logits, its output (the age model's estimate,
  :class:`~skin.explain.common.ExpectedValue`, explained in years).
* **Baselines** live in the model's normalised input space; the default is a
  blur of the image itself (see :mod:`skin.explain.baselines` for why).
* **Channel reduction**: IG and GradientShap maps are the *sum over RGB* of the
  per-channel attribution (signed; for IG this keeps completeness: the map
  still sums to ``f(x) - f(baseline)``); occlusion's window spans all channels,
  so its map is their common value. Saliency takes the max of ``|gradient|``
  over channels (Simonyan et al.). Grad-CAM is ReLU'd.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from skin.explain.baselines import make_baseline, model_mean_std
from skin.explain.common import Attribution, Explanation, ModelForward, as_batch, check_target, eval_mode
from skin.explain.gradcam import gradcam

# Integrated Gradients defaults, chosen with bench/bench_explain.py (figures in bench/README.md):
# the fewest Gauss-Legendre steps whose completeness error and deletion / insertion AUCs stay
# those of the 50-step map, run in batches small enough to stay in a CPU's cache.
IG_N_STEPS = 16
IG_METHOD = "gausslegendre"
IG_MAX_BATCH = 8


def _baseline_name(baseline: str | float | torch.Tensor) -> str:
    return baseline if isinstance(baseline, str) else "custom"


def integrated_gradients(
    model, forward, x, target, *,
    n_steps: int = IG_N_STEPS,
    integration: str = IG_METHOD,
    internal_batch_size: int | None = None,
    baseline: str | float | torch.Tensor = "blur",
    input_size: int | None = None,
    image_mean: tuple[float, ...] | None = None,
    image_std: tuple[float, ...] | None = None,
    blur_sigma: float | None = None,
) -> Attribution:
    """Integrated Gradients (Sundararajan et al. 2017).

    ``integration``: Captum's ``"gausslegendre"`` (default; exact for
    polynomial paths of degree ``2 n - 1``, so far fewer steps than the
    Riemann rules for the same completeness error) or ``"riemann_trapezoid"``
    etc. ``internal_batch_size`` (default: ``min(n_steps, IG_MAX_BATCH)``)
    bounds memory and keeps CPU batches in cache. ``input_size`` runs IG on the
    image resized to that side length and upsamples the map: cheaper, but it
    explains the model *at that resolution* (off by default).
    ``info["completeness_error"]`` is ``|sum(attr) - (f(x) - f(b))|`` relative
    to ``|f(x) - f(b)|`` (Captum's convergence delta).
    """
    import captum.attr as ca

    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    h, w = x.shape[-2:]
    xi = x
    if input_size is not None and input_size != min(h, w):
        scale = input_size / min(h, w)
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        xi = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    image_mean, image_std = model_mean_std(model, image_mean, image_std)
    base = make_baseline(xi, baseline, image_mean=image_mean, image_std=image_std, blur_sigma=blur_sigma)
    attr, delta = ca.IntegratedGradients(forward).attribute(
        xi, baselines=base, target=target, n_steps=n_steps, method=integration,
        internal_batch_size=internal_batch_size or min(n_steps, IG_MAX_BATCH),
        return_convergence_delta=True,
    )
    # Captum's delta is sum(attr) - (f(x) - f(b)), from the forward passes it ran
    # at both ends of the path: the score gap needs no extra forward pass.
    gap = float(attr.sum().item() - delta.item())
    amap = attr.sum(dim=1, keepdim=True)
    if amap.shape[-2:] != x.shape[-2:]:
        # Area-preserving upsampling: each low-res attribution is spread over
        # the pixels it covers, so the map still sums to f(x) - f(b).
        amap = F.interpolate(amap, size=(h, w), mode="bilinear", align_corners=False)
        amap = amap * (xi.shape[-2] * xi.shape[-1]) / (h * w)
    info = {
        "convergence_delta": float(delta.item()),
        "score_gap": gap,
        "completeness_error": abs(float(delta.item())) / max(abs(gap), 1e-12),
        "n_steps": n_steps,
        "integration": integration,
        "baseline": _baseline_name(baseline),
        "input_size": tuple(xi.shape[-2:]),
    }
    return Attribution(amap[0, 0], raw=attr, info=info)


def gradient_shap(
    model, forward, x, target, *,
    n_samples: int = 16,
    stdevs: float = 0.1,
    baselines: tuple[str, ...] = ("blur", "zero", "black"),
    image_mean: tuple[float, ...] | None = None,
    image_std: tuple[float, ...] | None = None,
    blur_sigma: float | None = None,
    seed: int = 0,
) -> Attribution:
    """GradientShap (Lundberg & Lee 2017): expected gradients over a baseline
    distribution, here the three reference images ``("blur", "zero", "black")``
    so no single baseline's blind spot dominates; ``n_samples`` random points
    (baseline, path position) with Gaussian input noise ``stdevs`` (normalised
    units, ~0.02 in [0, 1] pixels). Seeded for reproducible maps."""
    import captum.attr as ca

    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    image_mean, image_std = model_mean_std(model, image_mean, image_std)
    dist = torch.cat([make_baseline(x, b, image_mean=image_mean, image_std=image_std, blur_sigma=blur_sigma)
                      for b in baselines])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        attr = ca.GradientShap(forward).attribute(
            x, baselines=dist, n_samples=n_samples, stdevs=stdevs, target=target
        )
    info = {"n_samples": n_samples, "stdevs": stdevs, "baselines": list(baselines)}
    return Attribution(attr.sum(dim=1)[0], raw=attr, info=info)


def occlusion(
    model, forward, x, target, *,
    window: int | None = None,
    stride: int | None = None,
    baseline: str | float | torch.Tensor = "blur",
    perturbations_per_eval: int = 16,
    image_mean: tuple[float, ...] | None = None,
    image_std: tuple[float, ...] | None = None,
    blur_sigma: float | None = None,
) -> Attribution:
    """Occlusion (Zeiler & Fergus 2014): the drop of the target logit when a
    square patch is replaced by the baseline, averaged over the windows
    covering each pixel. ``window`` defaults to 1/7 of the short side (32 px at
    224) and ``stride`` to half the window, i.e. 13 x 13 = 169 perturbations at
    any resolution, evaluated ``perturbations_per_eval`` at a time."""
    import captum.attr as ca

    h, w = x.shape[-2:]
    window = window or max(2, round(min(h, w) / 7))
    stride = stride or max(1, window // 2)
    if window > min(h, w) or stride < 1:
        raise ValueError(f"occlusion window {window} / stride {stride} do not fit a {h}x{w} image")
    image_mean, image_std = model_mean_std(model, image_mean, image_std)
    base = make_baseline(x, baseline, image_mean=image_mean, image_std=image_std, blur_sigma=blur_sigma)
    attr = ca.Occlusion(forward).attribute(
        x,
        sliding_window_shapes=(x.shape[1], window, window),
        strides=(x.shape[1], stride, stride),
        baselines=base,
        target=target,
        perturbations_per_eval=perturbations_per_eval,
    )
    # Every channel of a pixel gets the same value (the window spans all of
    # them); the mean over channels is that per-pixel logit drop.
    info = {"window": window, "stride": stride, "baseline": _baseline_name(baseline)}
    return Attribution(attr.mean(dim=1)[0], raw=attr, info=info)


def saliency(model, forward, x, target) -> Attribution:
    """Saliency (Simonyan et al. 2013): ``max_c |d logit / d x_c|``."""
    import captum.attr as ca

    attr = ca.Saliency(forward).attribute(x, target=target, abs=True)
    return Attribution(attr.amax(dim=1)[0], raw=attr)


@dataclass(frozen=True)
class Method:
    """One attribution method: its ``name`` (the API's ``method=``), the ``label`` people see,
    whether its maps are ``signed`` (negative = evidence against the target), the paper it
    follows, and the function that computes it."""

    name: str
    label: str
    signed: bool
    reference: str
    attribute: Callable[..., Attribution]

    @property
    def options(self) -> tuple[str, ...]:
        """The keyword options :func:`explain` accepts for this method."""
        params = inspect.signature(self.attribute).parameters.items()
        return tuple(n for n, p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


#: Every method, by name, in the order the app offers them.
METHODS: Mapping[str, Method] = MappingProxyType({m.name: m for m in (
    Method("integrated_gradients", "Integrated Gradients", True, "Sundararajan et al. 2017", integrated_gradients),
    Method("gradient_shap", "GradientShap", True, "Lundberg & Lee 2017", gradient_shap),
    Method("occlusion", "Occlusion", True, "Zeiler & Fergus 2014", occlusion),
    Method("saliency", "Saliency", False, "Simonyan et al. 2013", saliency),
    Method("gradcam", "Grad-CAM", False, "Selvaraju et al. 2017", gradcam),
)})


def get_method(name: str) -> Method:
    """The :class:`Method` called ``name``; ``ValueError`` naming the choices otherwise."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


def explain(
    model: nn.Module,
    pixel_values: torch.Tensor,
    target: int | None = None,
    method: str = "gradcam",
    readout: nn.Module | None = None,
    **options: Any,
) -> Explanation:
    """Attribute ``model``'s ``target`` logit for one image to its pixels.

    ``model`` is any transformers image classifier (``model(pixel_values=x).logits``:
    ViT, Swin, ConvNeXt, ``TimmWrapper`` around a timm CNN, or a peft-wrapped
    one), explained exactly as it predicts: no surrogate, no copy, eval mode
    for the duration of the call. ``pixel_values``: ``(3, H, W)`` or
    ``(1, 3, H, W)``, normalised exactly as the model expects. ``target``:
    class index; ``None`` = the predicted class. ``method``: a name in
    :data:`METHODS`. ``options`` go to the method (e.g. ``n_steps`` for IG,
    ``layer`` for Grad-CAM, ``baseline`` for IG / occlusion); an unknown option
    raises ``ValueError`` listing the valid ones. ``readout``: a module over the
    logits whose output ``target`` is explained instead of a logit
    (:class:`~skin.explain.common.ExpectedValue`: the age estimate; target 0).
    """
    spec = get_method(method)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for method {method!r}; valid options: {list(spec.options)}")
    x = as_batch(pixel_values)
    forward = ModelForward(model, readout)
    with eval_mode(model):
        num_labels = getattr(readout, "n_outputs", None) if readout is not None else \
            getattr(getattr(model, "config", None), "num_labels", None)
        if target is None or num_labels is None:
            # Only run a forward pass to choose (or range-check) the class when
            # the caller has not already: the app passes the target it predicted.
            with torch.no_grad():
                logits = forward(x)
            target = check_target(logits.shape[-1], target, logits)
        else:
            target = check_target(num_labels, target)
        start = time.perf_counter()
        res = spec.attribute(model, forward, x, target, **options)
        seconds = time.perf_counter() - start
    attr = res.attribution.detach().float().cpu().numpy().astype(np.float32)
    if attr.shape != tuple(x.shape[-2:]):  # pragma: no cover - method contract
        raise RuntimeError(f"{method} returned {attr.shape}, expected {tuple(x.shape[-2:])}")
    return Explanation(
        attribution=attr, method=method, target=target, signed=spec.signed, seconds=seconds,
        raw=None if res.raw is None else res.raw.detach().cpu(), info=res.info,
    )

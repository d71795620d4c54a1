"""Explanations of an image classifier's prediction: one call, five methods.

``explain(model, pixel_values, target=None, method="gradcam")`` attributes the
model's score for ``target`` (the predicted class when ``None``) to the input
pixels and returns an :class:`Explanation` holding an ``H x W`` map at the
resolution of ``pixel_values``. The model is any transformers image classifier
(``model(pixel_values=x).logits``: ViT, Swin, ConvNeXt, ``TimmWrapper`` around a
timm CNN, or a peft-wrapped one); it is explained exactly as it predicts: no
surrogate, no copy, eval mode for the duration of the call.

Methods (all through Captum, except the token-grid Grad-CAM of transformers):

==========================  ==============================================  ========
``integrated_gradients``    Sundararajan et al. 2017, Gauss-Legendre path    signed
``gradient_shap``           Lundberg & Lee 2017 (expected gradients)         signed
``occlusion``               Zeiler & Fergus 2014, sliding window             signed
``saliency``                Simonyan et al. 2013, |gradient| max over RGB    >= 0
``gradcam``                 Selvaraju et al. 2017, last feature map          >= 0
==========================  ==============================================  ========

Deliberate choices, stated once:

* **Target score**: attributions explain the *logit* of the target class (the
  quantity whose completeness IG guarantees), not the softmax probability.
* **Baselines** live in the model's *normalised* input space. The default for
  IG and occlusion is ``"blur"``: a Gaussian blur of the image itself
  (Sturmfels et al. 2020, "Visualizing the Impact of Feature Attribution
  Baselines"). A black baseline (``"black"``: pixel 0, i.e. ``-mean/std``) makes
  ``x - baseline`` small on dark pixels, so IG systematically under-attributes
  dark lesions and dark skin, which is the wrong bias for dermatology; the
  blurred baseline keeps local colour and removes structure, so the map answers
  "which structures drive the score". ``"zero"`` (0 in normalised space, the
  training-set mean colour) is the classic grey occluder.
* **Channel reduction**: IG, GradientShap and occlusion maps are the *sum over
  RGB* of the per-channel attribution (signed; for IG this keeps completeness:
  the map still sums to ``f(x) - f(baseline)``). Saliency takes the max of
  ``|gradient|`` over channels (Simonyan et al.). Grad-CAM is ReLU'd.
* **Grad-CAM layer** is found automatically: for timm CNNs the module just
  before global pooling (``bn2`` of EfficientNet / MobileNetV2), for HF
  ConvNeXt the last stage; for ViT-like models the token grid entering the last
  block (its first LayerNorm: the classifier reads only the CLS token of the
  final norm, so patch tokens there get no gradient), for Swin the final
  LayerNorm, which is already a grid. Tokens are weighted by their
  token-averaged gradients (Grad-CAM), CLS / register tokens dropped, reshaped
  to the patch grid and upsampled bilinearly. Pass ``layer=`` to override.

Faithfulness and sanity are measurable here too: :func:`deletion_insertion`
(Petsiuk et al. 2018, RISE) and :func:`randomization_check` (Adebayo et al.
2018, "Sanity Checks for Saliency Maps"). :func:`overlay` draws a map over the
photo the user sees, with a legend.
"""

from __future__ import annotations

import copy
import functools
import inspect
import math
import time
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

METHODS = ("integrated_gradients", "gradient_shap", "occlusion", "saliency", "gradcam")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Integrated Gradients defaults, chosen with bench/bench_explain.py on
# EfficientNet-Lite0 at 224 px, 5 HAM10000 images (bench/results/explain.json):
# 16 Gauss-Legendre steps in batches of 8 take ~0.75 s of single-thread CPU
# (an upper bound for an idle 2-core CPU; Captum's default call, 50 steps in
# one batch of 50, takes 4.5 s), with a median completeness error of 3.8 %
# (50 steps: 3.6 %), Spearman 0.99 with the 50-step map and the same deletion /
# insertion AUCs. Batches of 16+ images at 224 px are slower per image on CPU
# (cache-bound), hence the cap.
IG_N_STEPS = 16
IG_METHOD = "gausslegendre"
IG_MAX_BATCH = 8

_CAPTUM_HINT = "captum is required for explanations: pip install captum"


def _captum_attr():
    try:
        import captum.attr as captum_attr
    except ImportError as e:  # pragma: no cover - captum is a hard requirement
        raise ImportError(_CAPTUM_HINT) from e
    return captum_attr


# --------------------------------------------------------------------------- #
# Result type and the model as a plain function
# --------------------------------------------------------------------------- #


@dataclass
class Explanation:
    """One attribution map for one image.

    ``attribution`` is an ``H x W`` float32 array at the resolution of the
    ``pixel_values`` that were explained. ``signed`` says whether it holds
    negative values by construction (IG, GradientShap, occlusion: negative =
    evidence against ``target``) or is non-negative (saliency, Grad-CAM).
    ``raw`` is the method's output before channel reduction / upsampling.
    ``seconds`` is the wall time of the attribution itself (the prediction used
    to pick ``target`` is not counted). ``info`` holds method details (e.g. IG's
    completeness error, the Grad-CAM layer name).
    """

    attribution: np.ndarray
    method: str
    target: int
    signed: bool
    seconds: float
    raw: torch.Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)


class ModelForward:
    """``forward(x) -> logits`` around a transformers image classifier.

    Calls ``model(pixel_values=x)`` when the model's ``forward`` takes
    ``pixel_values`` (or ``**kwargs``, as peft wrappers do), ``model(x)``
    otherwise, and returns ``.logits`` when the output has them.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        params = inspect.signature(model.forward).parameters
        self._keyword = "pixel_values" in params or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
        )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=x) if self._keyword else self.model(x)
        if hasattr(out, "logits"):
            return out.logits
        if isinstance(out, (tuple, list)):
            return out[0]
        return out


@contextmanager
def _eval_mode(model: nn.Module):
    """Eval mode (no dropout, frozen BN statistics) for the call, then restore."""
    was_training = model.training
    if was_training:  # toggling walks every submodule: skip it for a model already in eval mode
        model.eval()
    try:
        with torch.enable_grad():
            yield
    finally:
        if was_training:
            model.train(True)


def _as_batch(pixel_values: torch.Tensor) -> torch.Tensor:
    if not torch.is_tensor(pixel_values):
        raise ValueError(
            f"pixel_values must be a torch.Tensor, got {type(pixel_values).__name__}; "
            "run the model's image processor with return_tensors='pt'"
        )
    x = pixel_values.unsqueeze(0) if pixel_values.ndim == 3 else pixel_values
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(
            f"pixel_values must be one image shaped (3, H, W) or (1, 3, H, W), got "
            f"{tuple(pixel_values.shape)}; explain images one at a time"
        )
    return x.detach().float()


def _check_target(logits: torch.Tensor, target: int | None) -> int:
    n = logits.shape[-1]
    if target is None:
        return int(logits[0].argmax())
    target = int(target)
    if not 0 <= target < n:
        raise ValueError(f"target {target} is out of range for a model with {n} classes")
    return target


# --------------------------------------------------------------------------- #
# Baselines
# --------------------------------------------------------------------------- #


def gaussian_blur(x: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """Separable Gaussian blur with reflect padding; ``sigma`` defaults to ``H / 32``
    (7 px at 224 px: lesion texture and borders gone, local colour kept)."""
    h, w = x.shape[-2:]
    sigma = float(sigma) if sigma is not None else max(1.0, min(h, w) / 32.0)
    radius = min(int(math.ceil(3 * sigma)), (min(h, w) - 1))
    if radius < 1:
        return x.clone()
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    y = F.pad(x, (radius, radius, 0, 0), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    y = F.pad(y, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def make_baseline(
    pixel_values: torch.Tensor,
    kind: str | float | torch.Tensor = "blur",
    *,
    image_mean: tuple[float, ...] = IMAGENET_MEAN,
    image_std: tuple[float, ...] = IMAGENET_STD,
    blur_sigma: float | None = None,
) -> torch.Tensor:
    """A reference input in the model's normalised space, shaped like ``pixel_values``.

    ``"blur"``: Gaussian blur of the image (see :func:`gaussian_blur`).
    ``"zero"``: 0 in normalised space, i.e. the training-set mean colour.
    ``"black"``: pixel value 0, i.e. ``-image_mean / image_std`` (pass the
    model's own processor mean/std). A float or tensor is used as given.
    """
    x = pixel_values
    if torch.is_tensor(kind):
        return kind.to(x).expand_as(x).clone()
    if isinstance(kind, (int, float)):
        return torch.full_like(x, float(kind))
    if kind == "blur":
        return gaussian_blur(x, blur_sigma)
    if kind == "zero":
        return torch.zeros_like(x)
    if kind == "black":
        if len(image_mean) != x.shape[1] or len(image_std) != x.shape[1]:
            raise ValueError(
                f"image_mean/image_std have {len(image_mean)}/{len(image_std)} values for "
                f"{x.shape[1]} channels; pass the model's processor image_mean/image_std"
            )
        mean = torch.tensor(image_mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(image_std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (-mean / std).expand_as(x).clone()
    raise ValueError(f"unknown baseline {kind!r}; use 'blur', 'zero', 'black', a float or a tensor")


def _mean_std(model: nn.Module, image_mean, image_std) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The normalisation the model was trained with, for the ``"black"`` baseline.

    Explicit values win; otherwise the timm ``pretrained_cfg`` that
    ``TimmWrapper`` models carry in their config (or a bare timm model
    carries itself); otherwise ImageNet mean/std. HF models keep mean/std in
    their image processor, not the model: pass ``image_mean`` / ``image_std``.
    """
    if image_mean is not None and image_std is not None:
        return tuple(image_mean), tuple(image_std)
    m = _unwrap(model)
    for cfg in (
        getattr(getattr(m, "config", None), "pretrained_cfg", None),
        getattr(getattr(m, "timm_model", m), "pretrained_cfg", None),
    ):
        if isinstance(cfg, Mapping) and cfg.get("mean") and cfg.get("std"):
            return (
                tuple(image_mean or cfg["mean"]),
                tuple(image_std or cfg["std"]),
            )
    return tuple(image_mean or IMAGENET_MEAN), tuple(image_std or IMAGENET_STD)


# --------------------------------------------------------------------------- #
# Registry
# --------------------------------------------------------------------------- #


@dataclass
class _Result:
    attribution: torch.Tensor  # (H, W)
    signed: bool
    raw: torch.Tensor | None
    info: dict[str, Any] = field(default_factory=dict)


_EXPLAINERS: dict[str, Callable[..., _Result]] = {}


def register_explainer(name: str):
    """Register ``fn(model, forward, x, target, **options) -> _Result`` as a method."""

    def deco(fn):
        _EXPLAINERS[name] = fn
        return fn

    return deco


def _options_of(fn) -> list[str]:
    return [
        n
        for n, p in inspect.signature(fn).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]


def explain(
    model: nn.Module,
    pixel_values: torch.Tensor,
    target: int | None = None,
    method: str = "gradcam",
    **options: Any,
) -> Explanation:
    """Attribute ``model``'s ``target`` logit for one image to its pixels.

    ``pixel_values``: ``(3, H, W)`` or ``(1, 3, H, W)``, normalised exactly as
    the model expects. ``target``: class index; ``None`` = the predicted class.
    ``method``: one of :data:`METHODS`. ``options`` go to the method (e.g.
    ``n_steps`` for IG, ``layer`` for Grad-CAM, ``baseline`` for IG / occlusion);
    an unknown option raises ``ValueError`` listing the valid ones.
    """
    if method not in _EXPLAINERS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    fn = _EXPLAINERS[method]
    valid = _options_of(fn)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown option(s) {unknown} for method {method!r}; valid options: {valid}"
        )
    x = _as_batch(pixel_values)
    forward = ModelForward(model)
    with _eval_mode(model):
        num_labels = getattr(getattr(model, "config", None), "num_labels", None)
        if target is None or num_labels is None:
            # Only run a forward pass to choose (or range-check) the class when
            # the caller has not already: the app passes the target it predicted.
            with torch.no_grad():
                logits = forward(x)
            target = _check_target(logits, target)
        else:
            target = _check_target(torch.empty(1, num_labels), target)
        start = time.perf_counter()
        res = fn(model, forward, x, target, **options)
        seconds = time.perf_counter() - start
    attr = res.attribution.detach().float().cpu().numpy().astype(np.float32)
    if attr.shape != tuple(x.shape[-2:]):  # pragma: no cover - explainer contract
        raise RuntimeError(f"{method} returned {attr.shape}, expected {tuple(x.shape[-2:])}")
    return Explanation(
        attribution=attr,
        method=method,
        target=target,
        signed=res.signed,
        seconds=seconds,
        raw=None if res.raw is None else res.raw.detach().cpu(),
        info=res.info,
    )


# --------------------------------------------------------------------------- #
# Methods
# --------------------------------------------------------------------------- #


@register_explainer("integrated_gradients")
def _integrated_gradients(
    model,
    forward,
    x,
    target,
    *,
    n_steps: int = IG_N_STEPS,
    integration: str = IG_METHOD,
    internal_batch_size: int | None = None,
    baseline: str | float | torch.Tensor = "blur",
    input_size: int | None = None,
    image_mean: tuple[float, ...] | None = None,
    image_std: tuple[float, ...] | None = None,
    blur_sigma: float | None = None,
) -> _Result:
    """Integrated Gradients (Sundararajan et al. 2017).

    ``integration``: Captum's ``"gausslegendre"`` (default; exact for
    polynomial paths of degree ``2 n - 1``, so far fewer steps than the
    Riemann rules for the same completeness error) or ``"riemann_trapezoid"``
    etc. ``internal_batch_size`` (default: ``min(n_steps, 8)``) bounds memory
    and keeps CPU batches in cache. ``input_size`` runs IG on the image resized to that side length and
    upsamples the map: cheaper, but it explains the model *at that resolution*
    (off by default; the bench measures what it costs in faithfulness).
    ``info["completeness_error"]`` is ``|sum(attr) - (f(x) - f(b))|`` relative
    to ``|f(x) - f(b)|`` (Captum's convergence delta).
    """
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    ca = _captum_attr()
    h, w = x.shape[-2:]
    xi = x
    if input_size is not None and input_size != min(h, w):
        scale = input_size / min(h, w)
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        xi = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    image_mean, image_std = _mean_std(model, image_mean, image_std)
    base = make_baseline(
        xi, baseline, image_mean=image_mean, image_std=image_std, blur_sigma=blur_sigma
    )
    ig = ca.IntegratedGradients(forward)
    attr, delta = ig.attribute(
        xi,
        baselines=base,
        target=target,
        n_steps=n_steps,
        method=integration,
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
    d = float(delta.abs().item())
    return _Result(
        amap[0, 0],
        signed=True,
        raw=attr,
        info={
            "convergence_delta": float(delta.item()),
            "score_gap": gap,
            "completeness_error": d / max(abs(gap), 1e-12),
            "n_steps": n_steps,
            "integration": integration,
            "baseline": baseline if isinstance(baseline, str) else "custom",
            "input_size": tuple(xi.shape[-2:]),
        },
    )


@register_explainer("gradient_shap")
def _gradient_shap(
    model,
    forward,
    x,
    target,
    *,
    n_samples: int = 16,
    stdevs: float = 0.1,
    baselines: tuple[str, ...] = ("blur", "zero", "black"),
    image_mean: tuple[float, ...] | None = None,
    image_std: tuple[float, ...] | None = None,
    blur_sigma: float | None = None,
    seed: int = 0,
) -> _Result:
    """GradientShap (Lundberg & Lee 2017): expected gradients over a baseline
    distribution, here the three reference images ``("blur", "zero", "black")``
    so no single baseline's blind spot dominates; ``n_samples`` random points
    (baseline, path position) with Gaussian input noise ``stdevs`` (normalised
    units, ~0.02 in [0, 1] pixels). Seeded for reproducible maps."""
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    ca = _captum_attr()
    image_mean, image_std = _mean_std(model, image_mean, image_std)
    dist = torch.cat(
        [
            make_baseline(x, b, image_mean=image_mean, image_std=image_std, blur_sigma=blur_sigma)
            for b in baselines
        ]
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        attr = ca.GradientShap(forward).attribute(
            x, baselines=dist, n_samples=n_samples, stdevs=stdevs, target=target
        )
    return _Result(
        attr.sum(dim=1)[0],
        signed=True,
        raw=attr,
        info={"n_samples": n_samples, "stdevs": stdevs, "baselines": list(baselines)},
    )


@register_explainer("occlusion")
def _occlusion(
    model,
    forward,
    x,
    target,
    *,
    window: int | None = None,
    stride: int | None = None,
    baseline: str | float | torch.Tensor = "blur",
    perturbations_per_eval: int = 16,
    image_mean: tuple[float, ...] | None = None,
    image_std: tuple[float, ...] | None = None,
    blur_sigma: float | None = None,
) -> _Result:
    """Occlusion (Zeiler & Fergus 2014): the drop of the target logit when a
    square patch is replaced by the baseline, averaged over the windows
    covering each pixel. ``window`` defaults to 1/7 of the short side (32 px at
    224) and ``stride`` to half the window, i.e. 13 x 13 = 169 perturbations at
    any resolution, evaluated ``perturbations_per_eval`` at a time."""
    ca = _captum_attr()
    h, w = x.shape[-2:]
    window = window or max(2, round(min(h, w) / 7))
    stride = stride or max(1, window // 2)
    if window > min(h, w) or stride < 1:
        raise ValueError(f"occlusion window {window} / stride {stride} do not fit a {h}x{w} image")
    image_mean, image_std = _mean_std(model, image_mean, image_std)
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
    return _Result(
        attr.mean(dim=1)[0],
        signed=True,
        raw=attr,
        info={
            "window": window,
            "stride": stride,
            "baseline": baseline if isinstance(baseline, str) else "custom",
        },
    )


@register_explainer("saliency")
def _saliency(model, forward, x, target) -> _Result:
    """Saliency (Simonyan et al. 2013): ``max_c |d logit / d x_c|``."""
    ca = _captum_attr()
    attr = ca.Saliency(forward).attribute(x, target=target, abs=True)
    return _Result(attr.amax(dim=1)[0], signed=False, raw=attr)


# ----- Grad-CAM --------------------------------------------------------------


def _unwrap(model: nn.Module) -> nn.Module:
    """The classifier inside peft / TimmWrapper wrappers (for layer lookup only)."""
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model


_SWIN_LIKE = {"swin", "swinv2", "donut-swin", "maskformer-swin"}


def _is_timm(m: nn.Module) -> bool:
    return type(m).__module__.startswith("timm.") and hasattr(m, "forward_features")


def _module_name(root: nn.Module, module: nn.Module) -> str:
    for name, m in root.named_modules():
        if m is module:
            return name
    raise ValueError("layer is not a submodule of the model; pass a module of this model or its dotted name")


def find_gradcam_layer(model: nn.Module) -> tuple[nn.Module, str, int | None]:
    """Find the feature layer Grad-CAM reads, as ``(module, kind, patch)``.

    ``kind`` is ``"map"`` (output ``(B, C, h, w)``) or ``"tokens"`` (output
    ``(B, N, C)``); ``patch`` is the token grid's stride in pixels when known.
    Raises ``ValueError`` for an architecture it does not know: pass ``layer=``.
    """
    m = _unwrap(model)
    if hasattr(m, "timm_model"):  # transformers' TimmWrapperForImageClassification
        m = m.timm_model
    if _is_timm(m):
        names = [n for n, _ in m.named_children()]
        if "global_pool" in names and names.index("global_pool") > 0:
            return getattr(m, names[names.index("global_pool") - 1]), "map", None
        info = getattr(m, "feature_info", None)
        if info:
            return m.get_submodule(info[-1]["module"]), "map", None
        raise ValueError(f"cannot find the last feature map of timm model {type(m).__name__}; pass layer=")
    config = getattr(m, "config", None)
    model_type = getattr(config, "model_type", "")
    base = getattr(m, "base_model", m)
    if model_type.startswith("convnext") and hasattr(base, "encoder"):
        return base.encoder.stages[-1], "map", None
    if model_type in _SWIN_LIKE and hasattr(base, "layernorm"):
        patch = getattr(config, "patch_size", None)
        depths = getattr(config, "depths", None)
        stride = patch * 2 ** (len(depths) - 1) if patch and depths else None
        return base.layernorm, "tokens", stride
    # ViT-like: the last ModuleList of transformer blocks; its last block's
    # first LayerNorm sees all tokens, and gradients reach the patch tokens
    # through that block's attention.
    blocks = [
        mod
        for name, mod in base.named_modules()
        if isinstance(mod, nn.ModuleList)
        and len(mod)
        and name.rsplit(".", 1)[-1] in ("layer", "layers", "blocks")
    ]
    if blocks and config is not None and hasattr(config, "patch_size"):
        for child in blocks[-1][-1].modules():
            if isinstance(child, nn.LayerNorm):
                return child, "tokens", getattr(config, "patch_size", None)
    raise ValueError(
        f"cannot find a Grad-CAM layer for {type(m).__name__} (model_type={model_type!r}); "
        "pass layer=<module or dotted name> (a conv feature map or a token sequence)"
    )


def _token_grid(n: int, h: int, w: int, stride: int | None) -> tuple[int, int, int]:
    """``(prefix, gh, gw)``: how many leading tokens (CLS, registers) to drop and
    the patch grid the rest form, for an ``h x w`` input."""
    if stride:
        gh, gw = math.ceil(h / stride), math.ceil(w / stride)
        if 0 <= n - gh * gw <= 16:
            return n - gh * gw, gh, gw
    for prefix in range(0, 17):
        k = n - prefix
        if k < 1:
            break
        gh = max(1, round(math.sqrt(k * h / w)))
        if k % gh == 0 and abs(gh / (k // gh) - h / w) <= 0.25 * h / w:
            return prefix, gh, k // gh
    raise ValueError(f"cannot arrange {n} tokens as a patch grid for a {h}x{w} input; pass layer=")


def _token_gradcam(forward, layer, x, target, stride) -> tuple[torch.Tensor, tuple[int, int]]:
    store: dict[str, torch.Tensor] = {}

    def hook(_module, _inputs, output):
        store["act"] = output[0] if isinstance(output, (tuple, list)) else output

    handle = layer.register_forward_hook(hook)
    try:
        x = x.clone().requires_grad_(True)
        score = forward(x)[0, target]
        act = store["act"]
        (grad,) = torch.autograd.grad(score, act)
    finally:
        handle.remove()
    if act.ndim != 3:
        raise ValueError(f"token Grad-CAM expects a (B, N, C) layer output, got {tuple(act.shape)}")
    prefix, gh, gw = _token_grid(act.shape[1], *x.shape[-2:], stride)
    a, g = act[:, prefix:].detach(), grad[:, prefix:]
    weights = g.mean(dim=1, keepdim=True)  # (B, 1, C): Grad-CAM's pooled gradients
    cam = F.relu((weights * a).sum(dim=-1))  # (B, N)
    return cam.view(1, 1, gh, gw), (gh, gw)


def head_of(model: nn.Module):
    """``head(feature_map) -> logits`` for a timm CNN (its ``forward_head``:
    global pooling and the classifier), or ``None`` for other architectures.

    The head is all that lies between :func:`find_gradcam_layer`'s feature map
    and the logits, so the gradient Grad-CAM needs can be taken through it
    alone (see ``features=`` of the ``gradcam`` method)."""
    m = _unwrap(model)
    body = getattr(m, "timm_model", m)
    if not _is_timm(body) or not hasattr(body, "forward_head"):
        return None
    return body.forward_head


def capture_features(model: nn.Module):
    """Context manager that records the Grad-CAM feature map of ``model``'s next
    forward pass (timm CNNs): ``with capture_features(m) as store: m(x)`` then
    ``store.get("features")``. Nothing is recorded for other architectures."""
    store: dict[str, torch.Tensor] = {}

    @contextmanager
    def ctx():
        handle = None
        if head_of(model) is not None:
            module, kind, _ = find_gradcam_layer(model)
            if kind == "map":
                def hook(_module, _inputs, output) -> None:
                    store["features"] = output.detach()

                handle = module.register_forward_hook(hook)
        try:
            yield store
        finally:
            if handle is not None:
                handle.remove()

    return ctx()


_layer_names: "weakref.WeakKeyDictionary[nn.Module, str]" = weakref.WeakKeyDictionary()


def _gradcam_from_features(model, features: torch.Tensor, target: int) -> torch.Tensor:
    """Grad-CAM from a recorded feature map: the gradient of the ``target`` logit
    with respect to the map is taken through the model's head only."""
    head = head_of(model)
    if head is None:
        raise ValueError("features= works for timm CNNs only (a head that maps the feature map to logits); "
                         "leave it out for this model")
    a = features.detach().float().clone().requires_grad_(True)
    score = head(a)[0, target]
    (grad,) = torch.autograd.grad(score, a)
    weights = grad.mean(dim=(2, 3), keepdim=True)  # alpha_k: pooled gradients
    return F.relu((weights * a.detach()).sum(dim=1, keepdim=True))


@register_explainer("gradcam")
def _gradcam(model, forward, x, target, *, layer: nn.Module | str | None = None,
             features: torch.Tensor | None = None) -> _Result:
    """Grad-CAM (Selvaraju et al. 2017) on the last feature map (CNNs, via
    Captum's ``LayerGradCam``) or the last token grid (ViT / Swin), ReLU'd and
    upsampled bilinearly to the input size (``LayerAttribution.interpolate``).

    ``features``: the last feature map of the forward pass that made the
    prediction (recorded with :func:`capture_features`), for timm CNNs.
    Deliberate shortcut: the gradient of the class score with respect to that
    map depends only on the layers after it (pooling and classifier), so
    Grad-CAM then costs a backward pass through the head alone instead of a
    second forward and a full backward; the map is the same (tested against
    Captum's ``LayerGradCam``).
    """
    ca = _captum_attr()
    if features is not None:
        if layer is not None:
            raise ValueError("pass either layer= or features=, not both")
        cam = _gradcam_from_features(model, features, target)
        up = ca.LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")
        name = _layer_names.get(model)
        if name is None:  # walking every module costs ~2 ms: once per model
            name = _layer_names[model] = _module_name(model, find_gradcam_layer(model)[0])
        return _Result(F.relu(up)[0, 0], signed=False, raw=cam,
                       info={"layer": name, "grid": tuple(cam.shape[-2:]), "from_features": True})
    stride = None
    if layer is None:
        module, kind, stride = find_gradcam_layer(model)
    else:
        module = model.get_submodule(layer) if isinstance(layer, str) else layer
        kind = None
    name = _module_name(model, module)
    if kind is None:  # user-given layer: look at its output to decide
        probe: dict[str, int] = {}

        def record_ndim(_module, _inputs, output) -> None:  # must return None
            probe["ndim"] = (output[0] if isinstance(output, (tuple, list)) else output).ndim

        handle = module.register_forward_hook(record_ndim)
        try:
            with torch.no_grad():
                forward(x)
        finally:
            handle.remove()
        kind = "map" if probe.get("ndim") == 4 else "tokens"
    if kind == "map":
        cam = ca.LayerGradCam(forward, module).attribute(x, target=target, relu_attributions=True)
        grid = tuple(cam.shape[-2:])
    else:
        cam, grid = _token_gradcam(forward, module, x, target, stride)
    up = ca.LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")
    return _Result(F.relu(up)[0, 0], signed=False, raw=cam, info={"layer": name, "grid": grid})


# --------------------------------------------------------------------------- #
# Display
# --------------------------------------------------------------------------- #


def normalize_attribution(
    attribution: np.ndarray, *, sign: str = "positive", clip_percentile: float = 99.0
) -> np.ndarray:
    """Map an attribution to ``[0, 1]`` for display.

    ``sign``: ``"positive"`` keeps evidence *for* the target (negative values
    become 0; the default, matching the legend "contribution to <label>"),
    ``"absolute"`` shows magnitude regardless of sign, ``"all"`` min-max
    scales the signed map (0.5 is not zero then). Values are divided by the
    ``clip_percentile``-th percentile and clipped, so a few extreme pixels
    (common in gradient maps) do not wash the rest out.
    """
    a = np.nan_to_num(np.asarray(attribution, dtype=np.float32))
    if sign == "positive":
        a = np.maximum(a, 0)
    elif sign == "absolute":
        a = np.abs(a)
    elif sign == "all":
        a = a - a.min()
    else:
        raise ValueError(f"unknown sign {sign!r}; use 'positive', 'absolute' or 'all'")
    if not 0 < clip_percentile <= 100:
        raise ValueError(f"clip_percentile must be in (0, 100], got {clip_percentile}")
    top = float(np.percentile(a, clip_percentile)) if a.size else 0.0
    if top <= 0:
        top = float(a.max()) if a.size else 0.0
    if top <= 0:
        return np.zeros_like(a)
    return np.clip(a / top, 0.0, 1.0)


def overlay(
    image,
    attribution: np.ndarray,
    alpha: float = 0.45,
    cmap: str = "jet",
    *,
    label: str | None = None,
    legend: bool = True,
    sign: str = "positive",
    min_side: int | None = None,
):
    """Draw ``attribution`` as a heatmap over ``image`` (the photo the user sees).

    The map is normalised (:func:`normalize_attribution`), resized bilinearly
    to the image's size, coloured with the matplotlib colormap ``cmap`` and
    alpha-blended; a legend bar "low -> high contribution to <label>" is drawn
    along the bottom edge. Returns an RGB image of the same size as ``image``,
    or, with ``min_side``, the blend upscaled (bilinear) so its short side is
    at least ``min_side`` before the legend is drawn: a small model input (e.g.
    192 px) is then blended at its own resolution and shown large enough to
    read the legend.

    The map is stretched to the whole image, so ``image`` must show what the
    model saw: if the processor centre-cropped the photo (timm / HF processors
    usually do), pass the cropped photo, not the original.
    """
    from PIL import Image

    try:
        from matplotlib import colormaps
    except ImportError as e:  # pragma: no cover - matplotlib ships with the project
        raise ImportError("overlay needs matplotlib: pip install matplotlib") from e
    if not isinstance(image, Image.Image):
        raise ValueError(f"image must be a PIL.Image, got {type(image).__name__}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    a = np.asarray(attribution, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"attribution must be an H x W array, got shape {a.shape}")
    if cmap not in colormaps:
        raise ValueError(f"unknown matplotlib colormap {cmap!r}")
    photo = image.convert("RGB")
    width, height = photo.size
    heat = normalize_attribution(a, sign=sign)
    heat = np.asarray(Image.fromarray(heat, mode="F").resize((width, height), Image.BILINEAR))
    # The colormap's own 256-entry table, indexed as matplotlib indexes it (floor(x * 256)), and an
    # integer alpha blend: the same picture as colours(heat) blended in floats, several times faster.
    index = np.minimum((np.clip(heat, 0.0, 1.0) * 256.0).astype(np.int32), 255)
    rgb = _colour_table(cmap)[index]
    a8 = int(round(alpha * 256))
    blended = (np.asarray(photo, dtype=np.uint16) * (256 - a8) + rgb * a8 + 128) >> 8
    out = Image.fromarray(blended.astype(np.uint8), "RGB")
    if min_side and min(width, height) < min_side:
        scale = min_side / min(width, height)
        out = out.resize((round(width * scale), round(height * scale)), Image.Resampling.BILINEAR)
    if legend and out.width >= 32 and out.height >= 24:
        _draw_legend(out, cmap, label)
    return out


@functools.lru_cache(maxsize=8)
def _colour_table(cmap: str) -> np.ndarray:
    """``(256, 3)`` uint16 RGB (0..255) of matplotlib colormap ``cmap`` (its entries, by index)."""
    from matplotlib import colormaps

    colours = colormaps[cmap].resampled(256)
    return np.round(colours(np.arange(256))[:, :3] * 255.0).astype(np.uint16)


@functools.lru_cache(maxsize=16)
def _legend_font(font_px: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=font_px)
    except (TypeError, OSError):  # Pillow without FreeType: fixed bitmap font
        return ImageFont.load_default()


def _draw_legend(img, cmap: str, label: str | None) -> None:
    """Paste the legend strip "low [colour bar] high contribution to <label>" along the bottom."""
    strip = _legend_strip(img.width, img.height, cmap, label)
    img.paste(strip, (0, img.height - strip.height))


@functools.lru_cache(maxsize=64)
def _legend_strip(width: int, height: int, cmap: str, label: str | None):
    """The legend strip for an image of this size (cached: the same few are drawn again and again)."""
    from PIL import Image, ImageDraw

    font_px = max(8, min(height // 18, width // 28))
    font = _legend_font(font_px)
    pad = max(2, font_px // 3)
    strip_h = font_px + 2 * pad
    strip = Image.new("RGB", (width, strip_h), (0, 0, 0))
    draw = ImageDraw.Draw(strip)
    left_txt, right_txt = "low", "high"
    tail = f"contribution to {label}" if label else "contribution"
    x = pad
    draw.text((x, pad), left_txt, fill=(255, 255, 255), font=font)
    x += int(draw.textlength(left_txt, font=font)) + pad
    bar_w = max(16, width // 4)
    ramp = _colour_table(cmap)[np.linspace(0, 255, bar_w).astype(np.int32)].astype(np.uint8)
    bar = np.repeat(ramp[None], max(1, strip_h - 2 * pad), axis=0)
    strip.paste(Image.fromarray(bar, "RGB"), (x, pad))
    x += bar_w + pad
    draw.text((x, pad), f"{right_txt} {tail}", fill=(255, 255, 255), font=font)
    return strip


# --------------------------------------------------------------------------- #
# Faithfulness (RISE deletion / insertion) and sanity (randomisation)
# --------------------------------------------------------------------------- #


def _pixel_order(attribution: torch.Tensor, seed: int) -> torch.Tensor:
    """Rank of every pixel by decreasing attribution, ties broken at random
    (seeded), so flat regions of a map are not removed in raster order."""
    flat = attribution.flatten().double()
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(flat.numel(), generator=g)
    order = perm[torch.argsort(flat[perm], descending=True, stable=True)]
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel())
    return rank


def deletion_insertion(
    model: nn.Module,
    pixel_values: torch.Tensor,
    attribution: np.ndarray | torch.Tensor,
    target: int,
    steps: int = 20,
    baseline: str = "blur",
    *,
    batch_size: int | None = None,
    seed: int = 0,
    blur_sigma: float | None = None,
) -> dict[str, Any]:
    """Deletion and insertion curves and AUCs (Petsiuk et al. 2018, RISE).

    Pixels (all channels together) are taken in order of decreasing
    attribution, ``1/steps`` of the image at a time. *Deletion* replaces them
    with the baseline starting from the image; *insertion* puts them back
    starting from the baseline. Each curve is the softmax probability of
    ``target`` at ``steps + 1`` points; the AUC is its trapezoidal mean over
    the fraction of pixels in ``[0, 1]``. Lower deletion and higher insertion
    AUC mean a more faithful map. ``baseline``: ``"blur"`` (the RISE insertion
    canvas, used for both curves here, so removing a pixel never adds an
    out-of-distribution edge) or ``"zero"`` (normalised zero, the mean colour).
    Forward passes run ``batch_size`` images at a time (default: one curve).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if baseline not in ("blur", "zero"):
        raise ValueError(f"baseline must be 'blur' or 'zero', got {baseline!r}")
    x = _as_batch(pixel_values)
    h, w = x.shape[-2:]
    a = torch.as_tensor(np.asarray(attribution, dtype=np.float32))
    if a.ndim != 2:
        raise ValueError(f"attribution must be an H x W map, got shape {tuple(a.shape)}")
    if tuple(a.shape) != (h, w):
        a = F.interpolate(a[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    rank = _pixel_order(a, seed).view(1, 1, h, w).to(x.device)
    counts = torch.tensor([round(k * h * w / steps) for k in range(steps + 1)], device=x.device)
    masks = rank < counts.view(-1, 1, 1, 1)  # (steps + 1, 1, H, W)
    base = make_baseline(x, baseline, blur_sigma=blur_sigma)
    forward = ModelForward(model)
    bs = batch_size or steps + 1

    def curve(images: torch.Tensor) -> list[float]:
        probs = []
        with torch.no_grad():
            for i in range(0, images.shape[0], bs):
                probs.append(forward(images[i : i + bs]).float().softmax(-1)[:, target])
        return torch.cat(probs).cpu().tolist()

    with _eval_mode(model):
        with torch.no_grad():
            target = _check_target(forward(x), int(target))
        deletion = curve(torch.where(masks, base, x))
        insertion = curve(torch.where(masks, x, base))
    frac = [k / steps for k in range(steps + 1)]
    return {
        "deletion_auc": float(np.trapezoid(deletion, frac)),
        "insertion_auc": float(np.trapezoid(insertion, frac)),
        "curves": {"fraction": frac, "deletion": deletion, "insertion": insertion},
    }


def faithfulness_score(scores: Mapping[str, Any]) -> float:
    """One number from :func:`deletion_insertion`: insertion AUC - deletion AUC
    (in ``[-1, 1]``; higher = more faithful)."""
    if "insertion_auc" not in scores or "deletion_auc" not in scores:
        raise ValueError("faithfulness_score expects the dict returned by deletion_insertion")
    return float(scores["insertion_auc"]) - float(scores["deletion_auc"])


def _parametrised_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]


def randomize_weights(model: nn.Module, cascade: int | None = None, seed: int = 2018) -> nn.Module:
    """A copy of ``model`` with re-initialised weights (Adebayo et al. 2018).

    ``cascade=None`` re-initialises every module (full randomisation);
    ``cascade=k`` only the last ``k`` parametrised modules in registration
    order (the classifier first, then down the network: cascading
    randomisation). Modules with ``reset_parameters`` use their own default
    initialiser; other parameters (position embeddings, CLS tokens, layer
    scales) get ``N(0, 0.02)``. The original is untouched.
    """
    clone = copy.deepcopy(model)
    modules = _parametrised_modules(clone)
    if cascade is not None:
        if cascade < 1:
            raise ValueError(f"cascade must be >= 1 (modules to randomise), got {cascade}")
        modules = modules[-cascade:]
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for m in modules:
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
            else:
                for p in m.parameters(recurse=False):
                    p.normal_(0.0, 0.02)
    return clone


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import rankdata

    ra, rb = rankdata(a.ravel()), rankdata(b.ravel())
    if ra.std() == 0 or rb.std() == 0:
        return 0.0  # a constant map ranks nothing: no agreement to measure
    return float(np.corrcoef(ra, rb)[0, 1])


def randomization_check(
    model: nn.Module,
    pixel_values: torch.Tensor,
    method: str = "gradcam",
    target: int | None = None,
    *,
    cascade: int | None = None,
    absolute: bool = True,
    seed: int = 2018,
    **options: Any,
) -> float:
    """Model-parameter randomisation test (Adebayo et al. 2018).

    Spearman rank correlation between the map of ``model`` and of a copy with
    randomised weights (:func:`randomize_weights`), same image and target.
    A method *passes* when the correlation is low (the map depends on what the
    model learned, not only on the image); Adebayo et al. show gradient x
    input style maps can stay correlated. ``absolute`` compares ``|map|``
    (their default for signed methods). A constant map (e.g. Grad-CAM of a
    random model that is ReLU'd to all zeros) counts as 0 correlation.
    """
    x = _as_batch(pixel_values)
    original = explain(model, x, target, method, **options)
    layer = options.get("layer")
    random_model = randomize_weights(model, cascade=cascade, seed=seed)
    if isinstance(layer, nn.Module):  # point the option at the copy's module
        options = {**options, "layer": random_model.get_submodule(_module_name(model, layer))}
    randomized = explain(random_model, x, original.target, method, **options)
    a, b = original.attribution, randomized.attribution
    if absolute:
        a, b = np.abs(a), np.abs(b)
    return _spearman(a, b)


__all__ = [
    "METHODS",
    "Explanation",
    "ModelForward",
    "deletion_insertion",
    "explain",
    "faithfulness_score",
    "capture_features",
    "find_gradcam_layer",
    "head_of",
    "gaussian_blur",
    "make_baseline",
    "normalize_attribution",
    "overlay",
    "randomization_check",
    "randomize_weights",
    "register_explainer",
]

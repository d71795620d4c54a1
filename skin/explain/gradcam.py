"""Grad-CAM (Selvaraju et al. 2017) and the discovery of the layer it reads.

The layer is found automatically: for timm CNNs the module just before global
pooling (``bn2`` of EfficientNet / MobileNetV2), for HF ConvNeXt the last
stage; for ViT-like models the token grid entering the last block (its first
LayerNorm: the classifier reads only the CLS token of the final norm, so patch
tokens there get no gradient), for Swin the final LayerNorm, which is already a
grid. Tokens are weighted by their token-averaged gradients, CLS / register
tokens dropped, reshaped to the patch grid and upsampled bilinearly. Pass
``layer=`` to override.
"""

from __future__ import annotations

import math
import weakref

import torch
import torch.nn.functional as F
from torch import nn

from skin.explain.common import Attribution, module_name
from skin.features import head_of, timm_body, timm_feature_layer, unwrap

_SWIN_LIKE = {"swin", "swinv2", "donut-swin", "maskformer-swin"}


def find_gradcam_layer(model: nn.Module) -> tuple[nn.Module, str, int | None]:
    """Find the feature layer Grad-CAM reads, as ``(module, kind, patch)``.

    ``kind`` is ``"map"`` (output ``(B, C, h, w)``) or ``"tokens"`` (output
    ``(B, N, C)``); ``patch`` is the token grid's stride in pixels when known.
    Raises ``ValueError`` for an architecture it does not know: pass ``layer=``.
    """
    body = timm_body(model)
    if body is not None:
        return timm_feature_layer(body), "map", None
    m = unwrap(model)
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
        mod for name, mod in base.named_modules()
        if isinstance(mod, nn.ModuleList) and len(mod) and name.rsplit(".", 1)[-1] in ("layer", "layers", "blocks")
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


def _token_gradcam(forward, layer, x, target, stride) -> torch.Tensor:
    """Grad-CAM over a token sequence ``(B, N, C)``: a ``(1, 1, gh, gw)`` map."""
    store: dict[str, torch.Tensor] = {}

    def hook(_module, _inputs, output) -> None:
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
    return cam.view(1, 1, gh, gw)


def _output_kind(forward, module: nn.Module, x: torch.Tensor) -> str:
    """``"map"`` or ``"tokens"`` for a layer the caller named, from the rank of its output."""
    probe: dict[str, int] = {}

    def record_ndim(_module, _inputs, output) -> None:
        probe["ndim"] = (output[0] if isinstance(output, (tuple, list)) else output).ndim

    handle = module.register_forward_hook(record_ndim)
    try:
        with torch.no_grad():
            forward(x)
    finally:
        handle.remove()
    return "map" if probe.get("ndim") == 4 else "tokens"


def _gradcam_from_features(model, features: torch.Tensor, target: int, readout=None) -> torch.Tensor:
    """Grad-CAM from a recorded feature map: the gradient of the ``target`` logit (or output of
    ``readout`` over the logits) with respect to the map is taken through the model's head only."""
    head = head_of(model)
    if head is None:
        raise ValueError("features= works for timm CNNs only (a head that maps the feature map to logits); "
                         "leave it out for this model")
    a = features.detach().float().clone().requires_grad_(True)
    logits = head(a)
    score = (logits if readout is None else readout(logits))[0, target]
    (grad,) = torch.autograd.grad(score, a)
    weights = grad.mean(dim=(2, 3), keepdim=True)  # alpha_k: pooled gradients
    return F.relu((weights * a.detach()).sum(dim=1, keepdim=True))


# The Grad-CAM layer's name per model, for the features= path (walking every module is not free).
_layer_names: "weakref.WeakKeyDictionary[nn.Module, str]" = weakref.WeakKeyDictionary()


def gradcam(model, forward, x, target, *, layer: nn.Module | str | None = None,
            features: torch.Tensor | None = None) -> Attribution:
    """Grad-CAM on the last feature map (CNNs, via Captum's ``LayerGradCam``) or
    the last token grid (ViT / Swin), ReLU'd and upsampled bilinearly to the
    input size (``LayerAttribution.interpolate``).

    ``features``: the last feature map of the forward pass that made the
    prediction (recorded with :func:`skin.features.capture_features`), for timm
    CNNs. Deliberate shortcut: the gradient of the class score with respect to
    that map depends only on the layers after it (pooling and classifier), so
    Grad-CAM then costs a backward pass through the head alone instead of a
    second forward and a full backward; the map is the same (tested against
    Captum's ``LayerGradCam``).
    """
    import captum.attr as ca

    info: dict = {}
    if features is not None:
        if layer is not None:
            raise ValueError("pass either layer= or features=, not both")
        cam = _gradcam_from_features(model, features, target, getattr(forward, "readout", None))
        name = _layer_names.get(model)
        if name is None:
            name = _layer_names[model] = module_name(model, find_gradcam_layer(model)[0])
        info["from_features"] = True
    else:
        stride = None
        if layer is None:
            module, kind, stride = find_gradcam_layer(model)
            name = module_name(model, module)
        else:
            module = model.get_submodule(layer) if isinstance(layer, str) else layer
            name = module_name(model, module)
            kind = _output_kind(forward, module, x)
        if kind == "map":
            cam = ca.LayerGradCam(forward, module).attribute(x, target=target, relu_attributions=True)
        else:
            cam = _token_gradcam(forward, module, x, target, stride)
    up = ca.LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")
    return Attribution(F.relu(up)[0, 0], raw=cam, info={"layer": name, "grid": tuple(cam.shape[-2:]), **info})

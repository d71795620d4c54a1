"""The feature map a prediction records for Grad-CAM, and the head that turns it into logits.

The app predicts a photo and then often explains the same photo with Grad-CAM.
For a timm CNN, Grad-CAM reads the feature map that enters global pooling;
:func:`capture_features` records it during the prediction's own forward pass,
and :func:`head_of` is the function from that map to the logits, so Grad-CAM
then needs only a backward pass through the head (``features=`` of
``skin.explain``'s ``gradcam`` method) instead of a second forward and a full
backward pass. This is part of the prediction path, so it lives beside
:mod:`skin.inference` and imports nothing from :mod:`skin.explain`.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The classifier inside a peft wrapper (for module lookup only; the wrapper is what runs)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def timm_body(model: nn.Module) -> nn.Module | None:
    """The timm CNN of ``model`` (itself, or the ``timm_model`` of transformers' ``TimmWrapper``,
    peft-wrapped or not), or ``None`` for other architectures."""
    m = unwrap(model)
    m = getattr(m, "timm_model", m)
    is_timm = type(m).__module__.startswith("timm.") and hasattr(m, "forward_features")
    return m if is_timm else None


def timm_feature_layer(body: nn.Module) -> nn.Module:
    """The module whose output is the last feature map of timm CNN ``body``: the child just before
    ``global_pool`` (``bn2`` of EfficientNet / MobileNetV2), else the last ``feature_info`` entry."""
    names = [n for n, _ in body.named_children()]
    if "global_pool" in names and names.index("global_pool") > 0:
        return getattr(body, names[names.index("global_pool") - 1])
    info = getattr(body, "feature_info", None)
    if info:
        return body.get_submodule(info[-1]["module"])
    raise ValueError(f"cannot find the last feature map of timm model {type(body).__name__}; pass layer=")


def head_of(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``head(feature_map) -> logits`` for a timm CNN (its ``forward_head``: global pooling and the
    classifier), or ``None`` for other architectures: everything between the recorded feature map
    and the logits, so a gradient with respect to the map can be taken through it alone."""
    body = timm_body(model)
    if body is None or not hasattr(body, "forward_head"):
        return None
    return body.forward_head


@contextmanager
def capture_features(model: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Record the last feature map of ``model``'s forward passes inside the block (timm CNNs):
    ``with capture_features(m) as store: m(x)``, then ``store.get("features")`` (detached).
    Nothing is recorded for other architectures, whose Grad-CAM runs its own forward pass."""
    store: dict[str, torch.Tensor] = {}
    handle = None
    if head_of(model) is not None:
        def record(_module, _inputs, output) -> None:  # a forward hook must return None
            store["features"] = output.detach()

        handle = timm_feature_layer(timm_body(model)).register_forward_hook(record)
    try:
        yield store
    finally:
        if handle is not None:
            handle.remove()


__all__ = ["capture_features", "head_of", "timm_body", "timm_feature_layer", "unwrap"]

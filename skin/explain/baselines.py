"""Reference inputs ("baselines") for Integrated Gradients, GradientShap, occlusion and the
deletion / insertion curves, in the model's *normalised* input space.

The default is ``"blur"``: a Gaussian blur of the image itself (Sturmfels et al.
2020, "Visualizing the Impact of Feature Attribution Baselines"). A black
baseline (``"black"``: pixel 0, i.e. ``-mean/std``) makes ``x - baseline`` small
on dark pixels, so IG systematically under-attributes dark lesions and dark
skin, the wrong bias for dermatology; the blurred image keeps local colour and
removes structure, so a map answers "which structures drive the score".
``"zero"`` (0 in normalised space, the training-set mean colour) is the
classic grey occluder.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from skin.features import unwrap
from skin.images import IMAGENET_MEAN, IMAGENET_STD


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
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
    blur_sigma: float | None = None,
) -> torch.Tensor:
    """A reference input in the model's normalised space, shaped like ``pixel_values``.

    ``"blur"``: Gaussian blur of the image (see :func:`gaussian_blur`).
    ``"zero"``: 0 in normalised space, i.e. the training-set mean colour.
    ``"black"``: pixel value 0, i.e. ``-image_mean / image_std`` (pass the
    model's own processor mean/std; ImageNet's by default). A float or tensor
    is used as given.
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
        image_mean, image_std = image_mean or IMAGENET_MEAN, image_std or IMAGENET_STD
        if len(image_mean) != x.shape[1] or len(image_std) != x.shape[1]:
            raise ValueError(
                f"image_mean/image_std have {len(image_mean)}/{len(image_std)} values for "
                f"{x.shape[1]} channels; pass the model's processor image_mean/image_std"
            )
        mean = torch.tensor(image_mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(image_std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (-mean / std).expand_as(x).clone()
    raise ValueError(f"unknown baseline {kind!r}; use 'blur', 'zero', 'black', a float or a tensor")


def model_mean_std(
    model: nn.Module, image_mean: Sequence[float] | None = None, image_std: Sequence[float] | None = None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The normalisation ``model`` was trained with, for the ``"black"`` baseline.

    Explicit values win; otherwise the timm ``pretrained_cfg`` that
    ``TimmWrapper`` models carry in their config (or a bare timm model
    carries itself); otherwise ImageNet mean/std. HF models keep mean/std in
    their image processor, not the model: pass ``image_mean`` / ``image_std``.
    """
    if image_mean is not None and image_std is not None:
        return tuple(image_mean), tuple(image_std)
    m = unwrap(model)
    for cfg in (
        getattr(getattr(m, "config", None), "pretrained_cfg", None),
        getattr(getattr(m, "timm_model", m), "pretrained_cfg", None),
    ):
        if isinstance(cfg, Mapping) and cfg.get("mean") and cfg.get("std"):
            return tuple(image_mean or cfg["mean"]), tuple(image_std or cfg["std"])
    return tuple(image_mean or IMAGENET_MEAN), tuple(image_std or IMAGENET_STD)

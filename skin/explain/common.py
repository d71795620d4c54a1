"""What every attribution method shares: the model as a plain function, the checks on
its input and target, eval mode for the call, and the result types."""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn


@dataclass
class Attribution:
    """What a method returns to :func:`skin.explain.explain`: ``attribution`` is an ``H x W``
    map at the input's resolution, ``raw`` the method's output before channel reduction or
    upsampling, ``info`` method details (IG's completeness error, the Grad-CAM layer, ...)."""

    attribution: torch.Tensor
    raw: torch.Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Explanation:
    """One attribution map for one image.

    ``attribution`` is an ``H x W`` float32 array at the resolution of the
    ``pixel_values`` that were explained. ``signed`` says whether it holds
    negative values by construction (IG, GradientShap, occlusion: negative =
    evidence against ``target``) or is non-negative (saliency, Grad-CAM).
    ``raw`` is the method's output before channel reduction / upsampling.
    ``seconds`` is the wall time of the attribution itself (the prediction used
    to pick ``target`` is not counted). ``info`` holds method details.
    """

    attribution: np.ndarray
    method: str
    target: int
    signed: bool
    seconds: float
    raw: torch.Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)


class ExpectedValue(nn.Module):
    """Logits → ``(N, 1)``: the expected value ``sum_k softmax(logits)_k * values_k``.

    The age model's answer is this expectation over its one-year classes (DEX), not
    any one class: explaining output 0 of this readout explains the number the app
    states, where a class logit would explain one year that holds a few per cent of
    the probability. Differentiable, so every method of :data:`~skin.explain.METHODS`
    attributes it as it attributes a logit (IG's completeness then holds in the
    values' unit: the map sums to the estimate minus the baseline's estimate).
    """

    n_outputs = 1

    def __init__(self, values, name: str = "expected value"):
        super().__init__()
        self.register_buffer("values", torch.as_tensor(np.asarray(values, dtype=np.float32)))
        self.name = name

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        if logits.shape[-1] != self.values.numel():
            raise ValueError(f"the readout has {self.values.numel()} values but the model {logits.shape[-1]} classes")
        return (logits.float().softmax(-1) @ self.values)[:, None]


class ModelForward:
    """``forward(x) -> logits`` around a transformers image classifier.

    Calls ``model(pixel_values=x)`` when the model's ``forward`` takes
    ``pixel_values`` (or ``**kwargs``, as peft wrappers do), ``model(x)``
    otherwise, and returns ``.logits`` when the output has them: Captum
    attributes a plain function of one tensor. ``readout`` (e.g.
    :class:`ExpectedValue`) maps the logits to the outputs explained instead.
    """

    def __init__(self, model: nn.Module, readout: nn.Module | None = None):
        self.model = model
        self.readout = readout
        params = inspect.signature(model.forward).parameters
        self._keyword = "pixel_values" in params or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
        )

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=x) if self._keyword else self.model(x)
        if hasattr(out, "logits"):
            return out.logits
        if isinstance(out, (tuple, list)):
            return out[0]
        return out

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.logits(x)
        return logits if self.readout is None else self.readout(logits)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode (no dropout, frozen BatchNorm statistics) with gradients on for the call, then
    the model's own mode again: a model is explained exactly as it predicts."""
    was_training = model.training
    if was_training:  # toggling walks every submodule: skip it for a model already in eval mode
        model.eval()
    try:
        with torch.enable_grad():
            yield
    finally:
        if was_training:
            model.train(True)


def as_batch(pixel_values: torch.Tensor) -> torch.Tensor:
    """One image as a detached float ``(1, 3, H, W)`` batch; anything else raises ``ValueError``."""
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


def check_target(n_classes: int, target: int | None, logits: torch.Tensor | None = None) -> int:
    """``target`` as an index checked against ``n_classes``; ``None`` = the argmax of ``logits``."""
    if target is None:
        if logits is None:
            raise ValueError("target=None needs the logits to pick the predicted class")
        return int(logits[0].argmax())
    target = int(target)
    if not 0 <= target < n_classes:
        raise ValueError(f"target {target} is out of range for a model with {n_classes} classes")
    return target


def module_name(root: nn.Module, module: nn.Module) -> str:
    """The dotted name of ``module`` inside ``root``."""
    for name, m in root.named_modules():
        if m is module:
            return name
    raise ValueError("layer is not a submodule of the model; pass a module of this model or its dotted name")

"""Make a loaded classifier cheaper to run, without changing the function it computes.

:func:`prepare_for_inference` is what the app applies once to each model it
loads; every prediction *and* every explanation then runs on that same
prepared model (explanations never see a different network from the one that
predicted). Two CPU optimisations, for timm CNN bodies only:

* **BatchNorm folding** (:func:`fold_batchnorm`): in eval mode a BatchNorm is an
  affine map per channel, so it is folded into the weights and bias of the
  convolution it follows, and the BatchNorm module is replaced by what came
  after the normalisation (timm's ``BatchNormAct2d`` keeps its activation).
  This removes a memory-bound pass over every feature map, forward and, for
  gradient explanations, backward.
* **channels-last memory format**, which oneDNN's depthwise and 1x1
  convolutions run much faster on CPU.

Measured on the default EfficientNet-Lite0 condition model (1 thread, 160 px,
``bench/bench_app.py``): see bench/README.md. Logits stay within float32
rounding of the unprepared model; :func:`prepare_for_inference` checks that on
a random input and keeps the model unfolded if it does not hold.
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn
from torch.nn.utils import fuse_conv_bn_eval

logger = logging.getLogger(__name__)

# Largest |logit difference| accepted between the folded and the original model on a
# random input: far above float32 rounding, far below a wrong fold (tests/test_inference.py).
FOLD_TOLERANCE = 1e-3


class FoldedNormAct(nn.Module):
    """What is left of a BatchNorm (+ activation) once the normalisation is folded
    into the preceding convolution: timm ``BatchNormAct2d``'s dropout and
    activation, or nothing for a plain ``BatchNorm2d``."""

    def __init__(self, bn: nn.BatchNorm2d):
        super().__init__()
        self.drop = getattr(bn, "drop", None) or nn.Identity()
        self.act = getattr(bn, "act", None) or nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(x))


def _timm_holder(model: nn.Module) -> nn.Module | None:
    """The module holding a timm CNN as ``.timm_model`` (transformers' TimmWrapper), or None."""
    for m in model.modules():
        if isinstance(getattr(m, "timm_model", None), nn.Module):
            return m
    return None


@torch.no_grad()
def fold_batchnorm(body: nn.Module) -> int:
    """Fold each eval-mode BatchNorm into the convolution registered just before
    it in the same parent module (timm's ``conv_* -> bn*`` pairs), in place.

    The arithmetic is ``torch.nn.utils.fuse_conv_bn_eval``; what is timm-specific
    is finding the pairs and keeping what ``BatchNormAct2d`` does after the
    normalisation (:class:`FoldedNormAct`). Returns how many were folded. Only
    sound for models whose children are registered in execution order, as timm's
    CNN blocks are; callers check the result (:func:`prepare_for_inference` does).
    """
    if any(m.training for m in body.modules()):
        raise ValueError("fold_batchnorm folds running statistics: put the model in eval mode first")
    folded = 0
    for parent in list(body.modules()):
        conv_name = None
        for name, child in list(parent.named_children()):
            conv = getattr(parent, conv_name) if conv_name else None
            if isinstance(child, nn.Conv2d):
                conv_name = name
            elif (isinstance(child, nn.BatchNorm2d) and conv is not None and child.track_running_stats
                  and child.running_var is not None and conv.out_channels == child.num_features):
                setattr(parent, conv_name, fuse_conv_bn_eval(conv, child))
                setattr(parent, name, FoldedNormAct(child))
                folded += 1
                conv_name = None
            elif next(child.parameters(), None) is not None or len(list(child.children())):
                conv_name = None  # something with weights in between: not a conv -> bn pair
    return folded


@torch.no_grad()
def prepare_for_inference(model: nn.Module, input_size: int = 64) -> nn.Module:
    """Eval mode, no parameter gradients, BatchNorm folded and channels-last
    (timm CNN bodies); returns ``model``. Other architectures are only put in
    eval mode with frozen parameters. The folding is checked on a random
    ``input_size`` image: if the logits move by more than
    :data:`FOLD_TOLERANCE`, the original weights are kept.
    """
    model.eval()
    model.requires_grad_(False)
    holder = _timm_holder(model)
    if holder is None:
        return model
    body = holder.timm_model
    x = torch.randn(1, 3, input_size, input_size, generator=torch.Generator().manual_seed(0))
    folded = copy.deepcopy(body)
    if fold_batchnorm(folded):
        diff = (folded(x) - body(x)).abs().max().item()
        if diff <= FOLD_TOLERANCE:
            holder.timm_model = body = folded
        else:
            logger.warning("BatchNorm folding changed the logits by %.2g; keeping the unfolded model", diff)
    body.to(memory_format=torch.channels_last)
    return model


def load_for_inference(ref: str, *, local_files_only: bool = False):
    """``(model, processor, labels)``: the classifier ``ref`` names (an embedded default, a folder or a Hub
    id; :func:`skin.hub.load_classifier`) made ready by :func:`prepare_for_inference`, and its class names
    in index order, as the app, ``skin.evaluate`` and the benchmarks all read one."""
    from skin.hub import load_classifier

    model, processor = load_classifier(ref, local_files_only=local_files_only)
    model = prepare_for_inference(model)
    return model, processor, [model.config.id2label[i] for i in range(model.config.num_labels)]

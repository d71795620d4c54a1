"""Classification losses for imbalanced and ordinal skin labels.

:func:`make_loss` builds every loss as a :class:`ClassificationLoss`, called as
``loss(logits, labels, reduction="mean") -> tensor``. The per-sample criterion
inside it is torch's own where torch has one, and a small timm-style module
where it does not:

* ``ce``: softmax cross-entropy (``torch.nn.CrossEntropyLoss``).
* ``label_smoothing``: cross-entropy against ``(1 - eps) * onehot + eps / C``
  (Szegedy et al., CVPR 2016), i.e. ``CrossEntropyLoss(label_smoothing=eps)``:
  the true class also gets ``eps / C``.
* ``focal``: softmax focal loss ``-(1 - p_y)^gamma * log p_y`` (Lin et al., ICCV
  2017), without the alpha term (:class:`FocalLoss`).
* ``cb_ce`` / ``cb_focal``: the class-balanced versions (Cui et al., CVPR 2019):
  each sample's loss is multiplied by ``w_y``, with
  ``w_c = (1 - beta) / (1 - beta^n_c)`` (the inverse effective number of
  samples) normalised so that ``sum_c w_c = C`` (``CrossEntropyLoss(weight=w)``
  and ``FocalLoss(weight=w)``). Following Cui et al.'s reference code, the
  weighted losses are averaged over the samples (divided by the batch size, not
  by the sum of the weights, which is what torch's own ``"mean"`` would do).
  Deliberate choice: we use the softmax focal loss, where Cui et al. report a
  sigmoid variant.
* ``masked_label_smoothing``: for ordinal grades (severity 0..C-1). The
  smoothing mass ``eps`` goes only to the adjacent grades ``y - 1`` and ``y + 1``
  (never to distant grades), split equally between the neighbours that exist;
  an edge grade (0 or C-1) gives all of ``eps`` to its single neighbour. The
  true grade keeps ``1 - eps`` (:class:`OrdinalLabelSmoothing`).

Labels equal to ``ignore_index`` (-100, as in torch and transformers) are
skipped: they contribute nothing, and ``"mean"`` divides by the number of
labelled samples.

Soft targets: the losses of :data:`SOFT_TARGET_LOSSES` also take ``(N, C)``
class probabilities in place of integer labels, the targets MixUp and CutMix
make (:func:`skin.training.batch_mix`). That is torch's own
``CrossEntropyLoss`` with probability targets (class weights and label
smoothing apply to them as to integer labels); against a mixture
``lam * onehot(a) + (1 - lam) * onehot(b)`` it equals
``lam * loss(a) + (1 - lam) * loss(b)``, the loss of Zhang et al. (ICLR 2018).
The focal and ordinal losses are not linear in the target and take integer
labels only.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: Every loss :func:`make_loss` builds (``train.py --loss`` offers these).
LOSS_NAMES = ("ce", "label_smoothing", "focal", "cb_ce", "cb_focal", "masked_label_smoothing")
#: The losses that also take class probabilities as targets (MixUp / CutMix).
SOFT_TARGET_LOSSES = ("ce", "label_smoothing", "cb_ce")
IGNORE_INDEX = -100
_REDUCTIONS = ("mean", "sum", "none")

LossFn = Callable[..., torch.Tensor]


def class_balanced_weights(counts: Sequence[int], beta: float = 0.999) -> torch.Tensor:
    """Class weights from the effective number of samples (Cui et al., CVPR 2019).

    ``w_c = (1 - beta) / (1 - beta ** n_c)``, normalised to sum to the number of
    classes. ``beta = 0`` gives equal weights; ``beta -> 1`` approaches inverse
    class frequency.
    """
    counts_t = torch.as_tensor(list(counts), dtype=torch.float64)
    if counts_t.ndim != 1 or counts_t.numel() == 0:
        raise ValueError("class_counts must be a non-empty list with one count per class")
    if not 0.0 <= float(beta) < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta} (typical: 0.9, 0.99, 0.999, 0.9999)")
    empty = [i for i, n in enumerate(counts_t.tolist()) if n <= 0]
    if empty:
        raise ValueError(
            f"class_counts has no training samples for class index(es) {empty}; every class needs at "
            "least one (drop or merge the empty classes, or use a loss without class weights)"
        )
    effective_num = 1.0 - torch.pow(torch.tensor(float(beta), dtype=torch.float64), counts_t)
    weights = (1.0 - float(beta)) / effective_num
    weights = weights / weights.sum() * counts_t.numel()
    return weights.to(torch.float32)


def ordinal_smoothing_targets(labels: torch.Tensor, num_classes: int, epsilon: float) -> torch.Tensor:
    """Soft targets of ``masked_label_smoothing`` (see the module docstring)."""
    if num_classes < 2:
        raise ValueError("masked_label_smoothing needs at least 2 ordinal grades")
    labels = labels.long()
    targets = torch.zeros(labels.shape[0], num_classes, dtype=torch.float32, device=labels.device)
    rows = torch.arange(labels.shape[0], device=labels.device)
    has_lower = labels > 0
    has_upper = labels < num_classes - 1
    share = epsilon / (has_lower.float() + has_upper.float())
    targets[rows, labels] = 1.0 - epsilon
    targets[rows[has_lower], labels[has_lower] - 1] += share[has_lower]
    targets[rows[has_upper], labels[has_upper] + 1] += share[has_upper]
    return targets


class FocalLoss(nn.Module):
    """Per-sample softmax focal loss ``-w_y (1 - p_y)^gamma log p_y`` (0 where ignored).

    ``weight`` (one per class, optional) makes it the class-balanced focal loss;
    ``gamma = 0`` without weights is plain cross-entropy.
    """

    def __init__(self, gamma: float = 2.0, weight: torch.Tensor | None = None, ignore_index: int = IGNORE_INDEX):
        super().__init__()
        self.gamma = float(gamma)
        self.ignore_index = ignore_index
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        nll = F.cross_entropy(logits, labels, ignore_index=self.ignore_index, reduction="none")
        loss = (1.0 - torch.exp(-nll)).clamp_min(0.0).pow(self.gamma) * nll
        if self.weight is not None:
            valid = labels != self.ignore_index
            loss = self.weight[torch.where(valid, labels, torch.zeros_like(labels))] * loss
        return loss


class OrdinalLabelSmoothing(nn.Module):
    """Per-sample cross-entropy against :func:`ordinal_smoothing_targets` (0 where ignored)."""

    def __init__(self, num_classes: int, epsilon: float = 0.1, ignore_index: int = IGNORE_INDEX):
        super().__init__()
        self.num_classes = int(num_classes)
        self.epsilon = float(epsilon)
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        valid = labels != self.ignore_index
        safe = torch.where(valid, labels, torch.zeros_like(labels))
        targets = ordinal_smoothing_targets(safe, self.num_classes, self.epsilon).to(logits.device)
        return torch.where(valid, F.cross_entropy(logits, targets, reduction="none"), 0.0)


class ClassificationLoss(nn.Module):
    """A per-sample ``criterion`` with input checks and SkinLens's reduction.

    ``forward(logits, labels, reduction="mean")``: ``logits`` of shape ``(N, C)``,
    integer ``labels`` of shape ``(N,)`` or, for :data:`SOFT_TARGET_LOSSES`,
    class probabilities of shape ``(N, C)``; ``reduction`` is ``"mean"`` (over
    labelled samples), ``"sum"`` or ``"none"`` (per sample, 0 where ignored).
    Logits are cast to float32 first (mixed-precision training).
    """

    def __init__(self, name: str, criterion: nn.Module, num_classes: int, ignore_index: int = IGNORE_INDEX):
        super().__init__()
        self.name = name
        self.criterion = criterion
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index

    def extra_repr(self) -> str:
        return f"name={self.name!r}, num_classes={self.num_classes}"

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        if logits.ndim != 2 or logits.shape[-1] != self.num_classes:
            raise ValueError(f"logits must have shape (N, {self.num_classes}), got {tuple(logits.shape)}")
        if labels.is_floating_point() and labels.ndim == 2:
            return self._soft(logits, labels, reduction)
        labels = labels.reshape(-1).long().to(logits.device)
        if labels.shape[0] != logits.shape[0]:
            raise ValueError(f"{labels.shape[0]} labels for {logits.shape[0]} rows of logits")
        valid = labels != self.ignore_index
        if bool((valid & ((labels < 0) | (labels >= self.num_classes))).any()):
            raise ValueError(f"labels must be in [0, {self.num_classes}) or {self.ignore_index}")
        self.criterion.to(logits.device)  # class weights follow the logits (Trainer never moves this module)
        per_sample = self.criterion(logits.float(), labels)
        if reduction == "none":
            return per_sample
        total = per_sample.sum()
        return total if reduction == "sum" else total / valid.sum().clamp_min(1)

    def _soft(self, logits: torch.Tensor, probs: torch.Tensor, reduction: str) -> torch.Tensor:
        """The loss against class probabilities ``probs`` (N, C): every row counts."""
        if self.name not in SOFT_TARGET_LOSSES:
            raise ValueError(f"loss {self.name!r} takes integer labels only; soft targets (MixUp / CutMix) need "
                             f"one of {SOFT_TARGET_LOSSES}")
        if probs.shape != logits.shape:
            raise ValueError(f"soft targets must have the logits' shape {tuple(logits.shape)}, "
                             f"got {tuple(probs.shape)}")
        self.criterion.to(logits.device)
        per_sample = self.criterion(logits.float(), probs.float().to(logits.device))
        if reduction == "none":
            return per_sample
        return per_sample.sum() if reduction == "sum" else per_sample.mean()


def make_loss(
    name: str,
    *,
    num_classes: int,
    class_counts: Sequence[int] | None = None,
    label_smoothing: float = 0.1,
    gamma: float = 2.0,
    beta: float = 0.999,
    ignore_index: int = IGNORE_INDEX,
) -> ClassificationLoss:
    """Build the loss ``name`` (one of :data:`LOSS_NAMES`) as a :class:`ClassificationLoss`.

    ``class_counts`` (training samples per class) is required by ``cb_ce`` /
    ``cb_focal``; ``label_smoothing`` is ``eps`` of both smoothing losses,
    ``gamma`` the focal exponent and ``beta`` that of the class-balanced weights.
    """
    if name not in LOSS_NAMES:
        raise ValueError(f"Unknown loss {name!r}; choose one of {LOSS_NAMES}")
    if int(num_classes) < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    num_classes = int(num_classes)
    if not 0.0 <= float(label_smoothing) < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if float(gamma) < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")

    weights = None
    if name.startswith("cb_"):
        if class_counts is None:
            raise ValueError(f"loss {name!r} needs class_counts (training samples per class)")
        if len(class_counts) != num_classes:
            raise ValueError(f"class_counts has {len(class_counts)} entries but num_classes is {num_classes}")
        weights = class_balanced_weights(class_counts, beta)

    if name in ("focal", "cb_focal"):
        criterion = FocalLoss(gamma, weight=weights, ignore_index=ignore_index)
    elif name == "masked_label_smoothing":
        criterion = OrdinalLabelSmoothing(num_classes, label_smoothing, ignore_index=ignore_index)
    else:  # ce, label_smoothing, cb_ce
        criterion = nn.CrossEntropyLoss(
            weight=weights, ignore_index=ignore_index, reduction="none",
            label_smoothing=float(label_smoothing) if name == "label_smoothing" else 0.0,
        )
    return ClassificationLoss(name, criterion, num_classes, ignore_index)


def trainer_loss(loss_fn: LossFn) -> Callable[..., torch.Tensor]:
    """Adapt ``loss_fn`` to ``transformers.Trainer(compute_loss_func=...)``.

    Trainer calls ``compute_loss_func(outputs, labels, num_items_in_batch=...)``
    and, when such a function is given, does not divide the loss by the number
    of gradient-accumulation steps itself. So when ``num_items_in_batch`` (the
    labelled samples in the whole accumulated batch) is given we return the
    summed loss divided by it; otherwise the per-batch mean.
    """

    def compute_loss(outputs, labels, num_items_in_batch=None):
        if labels is None:
            raise ValueError("compute_loss_func got labels=None: the dataset must provide a 'labels' column")
        if isinstance(outputs, dict) or hasattr(outputs, "logits"):
            logits = outputs["logits"]
        else:
            logits = outputs[0]
        if num_items_in_batch is None:
            return loss_fn(logits, labels, reduction="mean")
        if isinstance(num_items_in_batch, torch.Tensor):
            num_items_in_batch = num_items_in_batch.to(logits.device)
        return loss_fn(logits, labels, reduction="sum") / num_items_in_batch

    return compute_loss


__all__ = [
    "IGNORE_INDEX",
    "LOSS_NAMES",
    "SOFT_TARGET_LOSSES",
    "ClassificationLoss",
    "FocalLoss",
    "OrdinalLabelSmoothing",
    "class_balanced_weights",
    "make_loss",
    "ordinal_smoothing_targets",
    "trainer_loss",
]

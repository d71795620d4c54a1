"""Classification losses for imbalanced and ordinal skin labels.

Every loss is a function ``loss(logits, labels, reduction="mean") -> tensor``
built by :func:`make_loss`:

* ``ce``: softmax cross-entropy.
* ``label_smoothing``: cross-entropy against ``(1 - eps) * onehot + eps / C``
  (Szegedy et al., CVPR 2016; the torch convention, the true class also gets
  ``eps / C``).
* ``focal``: softmax focal loss ``-(1 - p_y)^gamma * log p_y`` (Lin et al., ICCV
  2017), without the alpha term.
* ``cb_ce`` / ``cb_focal``: the class-balanced versions (Cui et al., CVPR 2019):
  each sample's loss is multiplied by ``w_y``, with
  ``w_c = (1 - beta) / (1 - beta^n_c)`` (the inverse effective number of
  samples) normalised so that ``sum_c w_c = C``. Following Cui et al.'s
  reference code, the weighted losses are averaged over the samples (divided by
  the batch size, not by the sum of the weights). Deliberate choice: we use the
  softmax focal loss, where Cui et al. report a sigmoid variant.
* ``masked_label_smoothing``: for ordinal grades (severity 0..C-1). The
  smoothing mass ``eps`` goes only to the adjacent grades ``y - 1`` and ``y + 1``
  (never to distant grades), split equally between the neighbours that exist;
  an edge grade (0 or C-1) gives all of ``eps`` to its single neighbour. The
  true grade keeps ``1 - eps``.

Labels equal to ``ignore_index`` (-100, as in torch and transformers) are
skipped: they contribute nothing, and ``"mean"`` divides by the number of
labelled samples.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

LOSS_NAMES = ("ce", "label_smoothing", "focal", "cb_ce", "cb_focal", "masked_label_smoothing")
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


def _reduce(per_sample: torch.Tensor, valid: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return per_sample
    total = per_sample[valid].sum()
    if reduction == "sum":
        return total
    return total / valid.sum().clamp_min(1)


def make_loss(
    name: str,
    *,
    num_classes: int,
    class_counts: Sequence[int] | None = None,
    label_smoothing: float = 0.1,
    gamma: float = 2.0,
    beta: float = 0.999,
    ignore_index: int = IGNORE_INDEX,
) -> LossFn:
    """Build the loss ``name`` (one of :data:`LOSS_NAMES`).

    Returns ``loss(logits, labels, reduction="mean")``: ``logits`` of shape
    ``(N, C)``, integer ``labels`` of shape ``(N,)``; ``reduction`` is ``"mean"``
    (over labelled samples), ``"sum"`` or ``"none"`` (per-sample, 0 where
    ignored). ``class_counts`` (training samples per class) is required by
    ``cb_ce`` / ``cb_focal``.
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
    focal = name in ("focal", "cb_focal")
    eps = float(label_smoothing)

    def loss(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        if logits.ndim != 2 or logits.shape[-1] != num_classes:
            raise ValueError(f"logits must have shape (N, {num_classes}), got {tuple(logits.shape)}")
        labels = labels.reshape(-1).long().to(logits.device)
        if labels.shape[0] != logits.shape[0]:
            raise ValueError(f"{labels.shape[0]} labels for {logits.shape[0]} rows of logits")
        valid = labels != ignore_index
        safe = torch.where(valid, labels, torch.zeros_like(labels))
        if bool(((safe < 0) | (safe >= num_classes)).any()):
            raise ValueError(f"labels must be in [0, {num_classes}) or {ignore_index}")
        log_probs = F.log_softmax(logits.float(), dim=-1)
        log_p_true = log_probs.gather(1, safe[:, None]).squeeze(1)

        if name == "label_smoothing":
            targets = torch.full_like(log_probs, eps / num_classes)
            targets.scatter_add_(1, safe[:, None], torch.full_like(log_p_true[:, None], 1.0 - eps))
            per_sample = -(targets * log_probs).sum(-1)
        elif name == "masked_label_smoothing":
            targets = ordinal_smoothing_targets(safe, num_classes, eps).to(log_probs.device)
            per_sample = -(targets * log_probs).sum(-1)
        else:
            per_sample = -log_p_true
            if focal:
                per_sample = (1.0 - log_p_true.exp()).clamp_min(0.0).pow(float(gamma)) * per_sample
            if weights is not None:
                per_sample = weights.to(log_probs.device)[safe] * per_sample
        per_sample = torch.where(valid, per_sample, torch.zeros_like(per_sample))
        return _reduce(per_sample, valid, reduction)

    loss.__name__ = f"{name}_loss"
    loss.__doc__ = f"{name} loss built by skin.losses.make_loss."
    return loss


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
    "class_balanced_weights",
    "make_loss",
    "ordinal_smoothing_targets",
    "trainer_loss",
]

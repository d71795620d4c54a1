"""Temperature scaling and expected calibration error.

Guo et al. (2017), "On Calibration of Modern Neural Networks": a network's
softmax confidence is often higher than its accuracy; dividing the logits by a
single temperature T > 0 fitted on held-out data (minimum negative
log-likelihood) fixes most of that without changing any prediction (argmax is
invariant to T).

Deliberate choices:

* :func:`fit_temperature` minimises the NLL over ``log T`` with SciPy's bounded
  Brent method (``minimize_scalar(method="bounded")``) on
  ``T ∈ [0.05, 20]``. The NLL is a smooth, one-dimensional function of
  ``log T``; a bounded scalar search needs no learning rate, no random
  initialisation and gives the same T on every run and platform, which LBFGS
  on a torch parameter does not guarantee.
* :func:`expected_calibration_error` is the ECE of Guo et al. §2: top-label
  confidence in ``n_bins`` *equal-width* bins ``((m−1)/M, m/M]`` and
  ``ECE = Σ_m |B_m|/n · |acc(B_m) − conf(B_m)|``. (Equal-mass bins or
  class-wise ECE give different numbers; do not compare across definitions.)

Everything is numpy and scipy; no torch is needed here.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import scipy.special

from skin.reports import to_jsonable

T_BOUNDS = (0.05, 20.0)
"""Search range for the temperature."""
DEFAULT_N_BINS = 15
"""Number of equal-width confidence bins (Guo et al. use 15)."""


def _check_logits(logits, labels=None, name: str = "logits") -> tuple[np.ndarray, np.ndarray | None]:
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_classes ≥ 2), got shape {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError(f"{name} contain NaN or inf")
    if labels is None:
        return z, None
    return z, _check_labels(labels, len(z), z.shape[1], name)


def _check_labels(labels, n_rows: int, n_classes: int, name: str = "logits") -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != n_rows:
        raise ValueError(f"labels must be 1-D with one entry per row of {name} ({n_rows}), got shape {y.shape}")
    if y.size and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"labels must be integer class indices in [0, {n_classes})")
    return y.astype(np.int64)


def softmax(logits, T: float = 1.0) -> np.ndarray:
    """``softmax(logits / T)`` over the last axis, in float64 (``scipy.special.softmax``)."""
    if not T > 0:
        raise ValueError(f"temperature T must be > 0, got {T}")
    return scipy.special.softmax(np.asarray(logits, dtype=np.float64) / T, axis=-1)


def nll(logits, labels, T: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / T)``."""
    z, y = _check_logits(logits, labels)
    if not len(y):
        raise ValueError("nll needs at least one sample")
    return float(-scipy.special.log_softmax(z / T, axis=1)[np.arange(len(y)), y].mean())


def group_probs(probs, class_groups) -> np.ndarray:
    """(n, G) probabilities of groups of classes: each class's probability summed into its group
    (``class_groups[c]`` is class c's group index, e.g. the age group of each single-year class)."""
    g = np.asarray(class_groups, dtype=np.int64)
    return np.asarray(probs, dtype=np.float64) @ np.eye(int(g.max()) + 1)[g]


def _group_log_softmax(z: np.ndarray, class_groups: np.ndarray) -> np.ndarray:
    """log of :func:`group_probs` of ``softmax(z)``, computed stably (logsumexp within each group)."""
    logp = scipy.special.log_softmax(z, axis=1)
    return np.stack([scipy.special.logsumexp(logp[:, class_groups == g], axis=1)
                     for g in range(int(class_groups.max()) + 1)], axis=1)


def fit_temperature(logits, labels, bounds: tuple[float, float] = T_BOUNDS, class_groups=None) -> float:
    """The temperature T > 0 minimising validation NLL of ``softmax(logits / T)``.

    Args:
        logits: (n, C) validation logits (not probabilities).
        labels: (n,) integer classes, or group indices with ``class_groups``.
        bounds: search range for T.
        class_groups: optional (C,) group index of each class: the NLL is then that of the
            groups' summed probabilities (the age model is calibrated on the five age groups the
            app answers and abstains on, not on 101 single years).

    Returns:
        T as a python float. ``T > 1`` means the model was over-confident.
    """
    from scipy.optimize import minimize_scalar

    z, _ = _check_logits(logits)
    groups = None if class_groups is None else np.asarray(class_groups, dtype=np.int64)
    if groups is not None and groups.shape != (z.shape[1],):
        raise ValueError(f"class_groups must give one group per class ({z.shape[1]}), got shape {groups.shape}")
    y = _check_labels(labels, len(z), z.shape[1] if groups is None else int(groups.max()) + 1)
    if len(y) == 0:
        raise ValueError("fit_temperature needs at least one validation sample")
    lo, hi = bounds
    if not 0 < lo < hi:
        raise ValueError(f"bounds must satisfy 0 < low < high, got {bounds}")
    rows = np.arange(len(y))

    def objective(log_t: float) -> float:
        scaled = z / math.exp(log_t)
        logp = scipy.special.log_softmax(scaled, axis=1) if groups is None else _group_log_softmax(scaled, groups)
        return float(-logp[rows, y].mean())

    res = minimize_scalar(
        objective, bounds=(math.log(lo), math.log(hi)), method="bounded", options={"xatol": 1e-6}
    )
    t = math.exp(float(res.x))
    # A bounded search can stop inside the bracket when T=1 is no worse: never
    # return a temperature that raises validation NLL above the untouched model.
    return t if objective(math.log(t)) <= objective(0.0) else 1.0


def _confidence_bins(probs, labels, n_bins: int):
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probs must be 2-D (n_samples, n_classes), got shape {p.shape}")
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != len(p):
        raise ValueError(f"labels must be 1-D with one entry per row of probs ({len(p)}), got shape {y.shape}")
    if not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    # Bin m (0-based) holds confidences in (edges[m], edges[m+1]]; 0 goes to
    # bin 0. Comparing with the same edges that reliability_curve reports
    # (not ceil(conf * M)) keeps 0.8 in (11/15, 12/15] despite rounding.
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins)
    conf_sum = np.bincount(idx, weights=conf, minlength=n_bins)
    acc_sum = np.bincount(idx, weights=correct, minlength=n_bins)
    return counts, conf_sum, acc_sum


def expected_calibration_error(probs, labels, n_bins: int = DEFAULT_N_BINS) -> float:
    """Top-label ECE with equal-width confidence bins (Guo et al., 2017).

    ``ECE = Σ_m |B_m|/n · |acc(B_m) − conf(B_m)|`` with ``B_m`` the samples
    whose max probability lies in ``((m−1)/M, m/M]``. NaN for no samples.
    """
    counts, conf_sum, acc_sum = _confidence_bins(probs, labels, n_bins)
    n = counts.sum()
    if n == 0:
        return math.nan
    return float(np.abs(acc_sum - conf_sum).sum() / n)


def reliability_curve(probs, labels, n_bins: int = DEFAULT_N_BINS) -> dict:
    """Per-bin data for a reliability diagram (same bins as the ECE).

    Returns ``bin_edges`` (M+1), ``bin_centers``, ``confidence`` (mean
    confidence per bin, ``None`` if empty), ``accuracy`` (per bin, ``None`` if
    empty), ``counts`` and ``ece``; JSON-serialisable.
    """
    counts, conf_sum, acc_sum = _confidence_bins(probs, labels, n_bins)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = conf_sum / counts
        acc = acc_sum / counts
    n = counts.sum()
    return {
        "n_bins": int(n_bins),
        "bin_edges": [float(e) for e in edges],
        "bin_centers": [float(c) for c in (edges[:-1] + edges[1:]) / 2],
        "confidence": [to_jsonable(c) for c in conf],
        "accuracy": [to_jsonable(a) for a in acc],
        "counts": [int(c) for c in counts],
        "ece": to_jsonable(np.abs(acc_sum - conf_sum).sum() / n) if n else None,
    }


SELECTIVE_THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(0, 20))
"""Abstention thresholds the coverage / risk table is read at (0.00 .. 0.95)."""


def coverage_risk(probs, labels, thresholds=SELECTIVE_THRESHOLDS) -> list[dict]:
    """Selective prediction: for each threshold, the share of answers kept (top probability at least
    the threshold: ``coverage``) and how often the kept answers are right (``accuracy``; ``None``
    when none is kept). The app abstains below its threshold, so this is what each choice costs."""
    p = np.asarray(probs, dtype=np.float64)
    conf, right = p.max(axis=1), p.argmax(axis=1) == np.asarray(labels)
    rows = []
    for t in thresholds:
        kept = conf >= t
        rows.append({"threshold": float(t), "coverage": float(kept.mean()) if len(p) else None,
                     "accuracy": float(right[kept].mean()) if kept.any() else None, "n_kept": int(kept.sum())})
    return rows


#: Confidence bins of the per-group reliability tables: groups hold tens to hundreds of test photos, too few
#: for :data:`DEFAULT_N_BINS` bins to say anything per bin.
GROUP_N_BINS = 5


def reliability_by_group(probs, labels, groups, n_bins: int = GROUP_N_BINS) -> dict[str, dict]:
    """The reliability table of each group (``groups``: one name per row, ``None`` = unknown, skipped):
    ``{group: {n, mean_confidence, accuracy, ece, reliability}}``, groups in first-seen order. It says
    whether "answers given with 80 % were right about 80 % of the time" holds for, say, dark skin too."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels)
    g = np.asarray([None if v is None else str(v) for v in groups], dtype=object)
    if len(g) != len(p) or len(y) != len(p):
        raise ValueError(f"probs ({len(p)} rows), labels ({len(y)}) and groups ({len(g)}) must have one entry per row")
    out = {}
    for name in dict.fromkeys(v for v in g if v is not None):
        mask = g == name
        curve = reliability_curve(p[mask], y[mask], n_bins)
        out[name] = {"n": int(mask.sum()), "mean_confidence": float(p[mask].max(axis=1).mean()),
                     "accuracy": float((p[mask].argmax(axis=1) == y[mask]).mean()), "ece": curve["ece"],
                     "reliability": curve}
    return out


def calibration_summary(
    val_logits, val_labels, test_logits, test_labels, n_bins: int = DEFAULT_N_BINS, class_groups=None,
    test_groups: Mapping[str, Sequence] | None = None,
) -> dict:
    """Fit T on validation, report test calibration before and after.

    Returns ``temperature``, ``ece_before`` / ``ece_after`` (test ECE at T=1 /
    fitted T), ``nll_before`` / ``nll_after`` (test NLL), ``n_bins`` and the
    test ``reliability_before`` / ``reliability_after`` curves (for
    :func:`skin.plots.plot_reliability`). With ``class_groups`` (see
    :func:`fit_temperature`) the labels are group indices and every figure is
    that of the groups' summed probabilities (``"over": "groups"``). ``test_groups``
    (``{attribute: one group name per test row}``, e.g. the estimated tone bucket) adds
    ``by_group``: :func:`reliability_by_group` of the calibrated test probabilities per attribute.
    """
    t = fit_temperature(val_logits, val_labels, class_groups=class_groups)
    z, _ = _check_logits(test_logits, name="test_logits")
    n_out = z.shape[1] if class_groups is None else int(np.max(class_groups)) + 1
    y = _check_labels(test_labels, len(z), n_out, name="test_logits")
    if not len(y):
        raise ValueError("calibration_summary needs at least one test sample")
    if class_groups is None:
        before, after = softmax(z), softmax(z, t)
        nll_before, nll_after = nll(z, y), nll(z, y, t)
    else:
        groups = np.asarray(class_groups, dtype=np.int64)
        before, after = group_probs(softmax(z), groups), group_probs(softmax(z, t), groups)
        rows = np.arange(len(y))
        nll_before = float(-_group_log_softmax(z, groups)[rows, y].mean())
        nll_after = float(-_group_log_softmax(z / t, groups)[rows, y].mean())
    curve_before = reliability_curve(before, y, n_bins)
    curve_after = reliability_curve(after, y, n_bins)
    return {
        "temperature": float(t),
        "over": "classes" if class_groups is None else "groups",
        "ece_before": curve_before["ece"],
        "ece_after": curve_after["ece"],
        "nll_before": to_jsonable(nll_before),
        "nll_after": to_jsonable(nll_after),
        "n_bins": int(n_bins),
        "reliability_before": curve_before,
        "reliability_after": curve_after,
        "coverage_risk": coverage_risk(after, y),
        **({"by_group": {attr: reliability_by_group(after, y, names) for attr, names in test_groups.items()}}
           if test_groups else {}),
    }

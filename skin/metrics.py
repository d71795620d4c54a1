"""Task metrics as plain, JSON-ready dicts.

Every function takes numpy-compatible arrays and returns python ``float`` /
``int`` / ``list`` / ``dict`` values only, with undefined quantities (an AUC on
a single class, a recall of an empty class) written as ``None`` rather than
``NaN`` (through :func:`skin.reports.to_jsonable`).

* :func:`classification_metrics`: accuracy, balanced accuracy, macro F1,
  one-vs-rest macro ROC-AUC, confusion matrix and per-class scores
  (scikit-learn).
* :func:`ordinal_metrics`: MAE, exact and adjacent (±1 grade) accuracy and a
  penalty recall (P-Recall) for graded skin conditions (wrinkles, pigmentation,
  pores: the AI-Hub skin-condition grades).
* :func:`age_metrics`, :func:`expected_age`: age regression read out DEX-style
  (Rothe et al., 2015, "DEX: Deep EXpectation of apparent age from a single
  image") and scored by MAE and age-group accuracy (groups:
  :func:`skin.tasks.age_to_group`).
* :func:`malignancy_auc`: malignant-vs-benign ROC-AUC with a bootstrap
  interval, as the DDI audit (Daneshjou et al., 2022, "Disparities in
  dermatology AI performance on a diverse, curated clinical image set")
  reports it; :func:`bootstrap_ci` is the percentile bootstrap behind it.

The small numpy functions :func:`accuracy`, :func:`balanced_accuracy`,
:func:`macro_f1` and :func:`binary_auc` are used only inside bootstrap loops
(fairlearn's in :mod:`skin.fairness`, :func:`bootstrap_ci`): they give
scikit-learn's results (tests/test_metrics.py checks it) without its input
validation, which would dominate hundreds of resamples × groups × metrics.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from skin.reports import CI_QUANTILES, MetricCI, to_jsonable
from skin.tasks import AGE_BINS, age_to_group

# P-Recall weights (see :func:`ordinal_metrics`).
P_RECALL_EXACT_WEIGHT = 1.0
"""Credit for a prediction on the true grade."""
P_RECALL_ADJACENT_WEIGHT = 0.5
"""Partial credit for a prediction one grade away from the truth."""
P_RECALL_DISTANT_WEIGHT = -0.5
"""Penalty per grade beyond the first for a prediction ≥ 2 grades away
(2 grades away → -0.5, 3 → -1.0, ...)."""

# --------------------------------------------------------------------------- #
# Input checks
# --------------------------------------------------------------------------- #
def _as_labels(y_true, name: str = "y_true") -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one integer class per sample), got shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise ValueError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    return y.astype(np.int64, copy=False)


def _as_probs(probs, n: int | None = None, name: str = "probs") -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_classes), got shape {p.shape}")
    if n is not None and p.shape[0] != n:
        raise ValueError(f"{name} has {p.shape[0]} rows but y_true has {n} samples")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{name} contains NaN or inf; pass softmax probabilities")
    return p


def _check_range(y: np.ndarray, n_classes: int, name: str = "y_true") -> None:
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(
            f"{name} values must be class indices in [0, {n_classes}), got range [{y.min()}, {y.max()}]"
        )


# --------------------------------------------------------------------------- #
# Fast numpy metrics for bootstrap loops (scikit-learn-equivalent)
# --------------------------------------------------------------------------- #
def accuracy(y_true, y_pred) -> float:
    """Fraction of exact matches; NaN on empty input."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean(y_true == y_pred)) if y_true.size else math.nan


def balanced_accuracy(y_true, y_pred) -> float:
    """Mean recall over the classes present in ``y_true`` (= scikit-learn's
    ``balanced_accuracy_score`` with ``adjusted=False``)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if not y_true.size:
        return math.nan
    classes = np.unique(y_true)
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in classes]))


def macro_f1(y_true, y_pred) -> float:
    """Unweighted mean F1 over the classes present in ``y_true`` or ``y_pred``
    (scikit-learn's ``f1_score(average="macro", zero_division=0)`` default
    label set: a class that is only ever predicted counts, with F1 = 0)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if not y_true.size:
        return math.nan
    classes = np.union1d(y_true, y_pred)
    f1s = []
    for c in classes:
        t, p = y_true == c, y_pred == c
        tp = np.sum(t & p)
        denom = np.sum(t) + np.sum(p)
        f1s.append(2.0 * tp / denom if denom else 0.0)
    return float(np.mean(f1s))


def binary_auc(y_true, score) -> float:
    """ROC-AUC of a binary problem by the Mann-Whitney U statistic (ties count
    one half, as in scikit-learn); NaN when only one class is present."""
    from scipy.stats import rankdata

    y = np.asarray(y_true).astype(bool)
    s = np.asarray(score, dtype=np.float64)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def ovr_macro_auc(y_true, probs) -> float:
    """One-vs-rest ROC-AUC (scikit-learn) averaged over the classes present in ``y_true``.

    Classes absent from ``y_true`` are skipped (their AUC is undefined, where
    ``roc_auc_score(multi_class="ovr")`` would raise); NaN when fewer than two
    classes are present.
    """
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y_true)
    p = np.asarray(probs, dtype=np.float64)
    classes = np.unique(y)
    if classes.size < 2:
        return math.nan
    return float(np.mean([roc_auc_score(y == c, p[:, c]) for c in classes]))


# --------------------------------------------------------------------------- #
# Classification
# --------------------------------------------------------------------------- #
def classification_metrics(y_true, probs, labels: Sequence[str] | None = None) -> dict:
    """Standard multi-class metrics from class probabilities.

    Args:
        y_true: (n,) integer class indices.
        probs: (n, C) class probabilities (softmax outputs); the prediction is
            their argmax.
        labels: C class names, in index order (default ``"0"``..``"C-1"``).

    Returns:
        ``n``, ``accuracy``, ``balanced_accuracy`` (mean recall over the classes
        present in ``y_true``), ``macro_f1`` (over classes in ``y_true`` or the
        predictions, scikit-learn's default), ``roc_auc`` (one-vs-rest, macro
        over the classes present in ``y_true``; ``None`` when fewer than two
        are), ``confusion_matrix`` (C × C list of lists, rows = true class,
        columns = predicted, all classes in label order) and ``per_class``
        ``{label: {precision, recall, f1, support}}`` (precision / recall of a
        class with no predictions / no samples are 0, scikit-learn's
        ``zero_division=0``).
    """
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    y = _as_labels(y_true)
    p = _as_probs(probs, n=len(y))
    n_classes = p.shape[1]
    if labels is None:
        labels = [str(i) for i in range(n_classes)]
    labels = [str(x) for x in labels]
    if len(labels) != n_classes:
        raise ValueError(f"labels has {len(labels)} names but probs has {n_classes} columns")
    _check_range(y, n_classes)
    if len(y) == 0:
        raise ValueError("classification_metrics needs at least one sample")
    pred = p.argmax(axis=1)
    idx = list(range(n_classes))
    prec, rec, f1, support = precision_recall_fscore_support(
        y, pred, labels=idx, zero_division=0
    )
    with warnings.catch_warnings():  # classes absent from y_true (or y_pred) are expected here, not news
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true")
        warnings.filterwarnings("ignore", "A single label was found")
        balanced = balanced_accuracy_score(y, pred)
    return to_jsonable({
        "n": len(y),
        "accuracy": accuracy_score(y, pred),
        "balanced_accuracy": balanced,
        "macro_f1": f1_score(y, pred, average="macro", zero_division=0),
        "roc_auc": ovr_macro_auc(y, p),
        "confusion_matrix": confusion_matrix(y, pred, labels=idx),
        "per_class": {
            name: {"precision": prec[i], "recall": rec[i], "f1": f1[i], "support": support[i]}
            for i, name in enumerate(labels)
        },
    })


# --------------------------------------------------------------------------- #
# Ordinal grades
# --------------------------------------------------------------------------- #
def _p_recall_weights(dist: np.ndarray, exact: float, adjacent: float, distant: float) -> np.ndarray:
    return np.where(dist == 0, exact, np.where(dist == 1, adjacent, distant * (dist - 1)))


def p_recall(y_true, y_pred, *, exact_weight: float = P_RECALL_EXACT_WEIGHT,
             adjacent_weight: float = P_RECALL_ADJACENT_WEIGHT,
             distant_weight: float = P_RECALL_DISTANT_WEIGHT) -> tuple[float, dict[int, float]]:
    """Penalty recall: (clipped macro value, unclipped per-class values).

    See :func:`ordinal_metrics` for the definition.
    """
    y = _as_labels(y_true)
    pr = _as_labels(y_pred, "y_pred")
    if len(y) != len(pr):
        raise ValueError(f"y_true ({len(y)}) and y_pred ({len(pr)}) differ in length")
    if not len(y):
        return math.nan, {}
    w = _p_recall_weights(np.abs(pr - y), exact_weight, adjacent_weight, distant_weight)
    per_class = {int(c): float(np.mean(w[y == c])) for c in np.unique(y)}
    value = float(np.clip(np.mean(list(per_class.values())), 0.0, 1.0))
    return value, per_class


def ordinal_metrics(y_true, y_pred, *, exact_weight: float = P_RECALL_EXACT_WEIGHT,
                    adjacent_weight: float = P_RECALL_ADJACENT_WEIGHT,
                    distant_weight: float = P_RECALL_DISTANT_WEIGHT) -> dict:
    """Metrics for ordered grades (0 = none ... K = severe).

    Args:
        y_true: (n,) integer grades.
        y_pred: (n,) integer predicted grades, or (n, K+1) grade probabilities
            (their argmax is the prediction).

    Returns:
        ``n``, ``mae`` (mean absolute grade error), ``accuracy`` (exact grade),
        ``adjacent_accuracy`` (|error| ≤ 1), ``p_recall`` and
        ``p_recall_per_class`` ``{grade: value}`` (unclipped).

    **P-Recall.** The Korean XAI skin-diagnosis service built on AI-Hub's
    skin-condition data describes a "penalty recall": per true grade, exact
    predictions count fully, predictions one grade off count partially and
    predictions further off are penalised; the per-grade recalls are averaged
    and the result is kept within [0, 1]. No official formula is published
    with the data, so this function *reproduces that description*, not an
    official implementation. Our definition:

        w(d) = exact_weight                    if d = 0
             = adjacent_weight                 if d = 1
             = distant_weight · (d − 1)        if d ≥ 2     (d = |pred − true|)
        P-Recall = clip( mean over grades c present in y_true of
                         mean_{i : y_i = c} w(d_i),  0, 1 )

    with defaults 1.0 / 0.5 / −0.5 (module constants ``P_RECALL_*``), so a
    prediction two grades off costs half a hit and three grades off a full
    hit. Per-grade values (``p_recall_per_class``) are reported unclipped so a
    badly wrong grade stays visible.
    """
    y = _as_labels(y_true)
    pred = np.asarray(y_pred)
    if pred.ndim == 2:
        pred = _as_probs(pred, n=len(y), name="y_pred").argmax(axis=1)
    pred = _as_labels(pred, "y_pred")
    if len(pred) != len(y):
        raise ValueError(f"y_true ({len(y)}) and y_pred ({len(pred)}) differ in length")
    if not len(y):
        raise ValueError("ordinal_metrics needs at least one sample")
    err = np.abs(pred - y)
    value, per_class = p_recall(y, pred, exact_weight=exact_weight, adjacent_weight=adjacent_weight,
                                distant_weight=distant_weight)
    return to_jsonable({
        "n": len(y),
        "mae": err.mean(),
        "accuracy": np.mean(err == 0),
        "adjacent_accuracy": np.mean(err <= 1),
        "p_recall": value,
        "p_recall_per_class": per_class,
    })


# --------------------------------------------------------------------------- #
# Age
# --------------------------------------------------------------------------- #
def expected_age(probs, ages) -> np.ndarray:
    """DEX read-out: the expectation of age under a per-age softmax.

    Rothe et al. (2015) train a classifier over integer ages (0..100) and
    predict ``sum_k p_k · age_k``, which beats both the argmax and a plain
    regression head. Rows of ``probs`` are renormalised to sum to 1.

    Args:
        probs: (n, A) probabilities over the A ages.
        ages: (A,) the age of each column.
    """
    p = _as_probs(probs)
    a = np.asarray(ages, dtype=np.float64)
    if a.ndim != 1 or a.size != p.shape[1]:
        raise ValueError(f"ages must be 1-D with one age per probs column ({p.shape[1]}), got shape {a.shape}")
    s = p.sum(axis=1, keepdims=True)
    if np.any(s <= 0):
        raise ValueError("every probs row must have a positive sum")
    return (p / s) @ a


def age_metrics(age_true, age_pred, bins: Sequence[float] = AGE_BINS) -> dict:
    """``mae`` (years), ``group_accuracy`` (predicted age falls in the true
    age's group, :func:`skin.tasks.age_to_group`) and ``n``.

    Predicted ages below the first bin edge (a regressor may predict −1 for a
    newborn) count in the first group.
    """
    t = np.asarray(age_true, dtype=np.float64)
    p = np.asarray(age_pred, dtype=np.float64)
    if t.ndim != 1 or p.shape != t.shape:
        raise ValueError(f"age_true and age_pred must be 1-D of equal length, got {t.shape} and {p.shape}")
    if not t.size:
        raise ValueError("age_metrics needs at least one sample")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(p))):
        raise ValueError("ages contain NaN or inf")
    hits = age_to_group(t, bins) == age_to_group(p, bins)
    if np.any(t < bins[0]):
        raise ValueError(f"true age {t.min()} is below the first bin edge {bins[0]}")
    return to_jsonable({"n": t.size, "mae": np.mean(np.abs(p - t)), "group_accuracy": np.mean(hits)})


# --------------------------------------------------------------------------- #
# Bootstrap intervals and the malignancy audit
# --------------------------------------------------------------------------- #
def group_members(groups) -> list[np.ndarray]:
    """The row indices of each group id, groups in sorted id order (the units the cluster bootstrap draws)."""
    groups = np.asarray(groups)
    order = np.argsort(groups, kind="stable")
    _, starts = np.unique(groups[order], return_index=True)
    return np.split(order, starts[1:])


def bootstrap_indices(n: int, n_boot: int, random_state: int = 0, *, groups=None) -> Iterator[np.ndarray]:
    """``n_boot`` bootstrap resamples of ``n`` rows, as row indices.

    Rows are drawn with replacement; with ``groups`` (one id per row) whole
    groups are drawn with replacement instead, as many as there are groups,
    and each brings all its rows (the cluster bootstrap).
    """
    rng = np.random.default_rng(random_state)
    if groups is None:
        yield from rng.integers(0, n, size=(n_boot, n))
        return
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(f"groups must hold one id per row ({n}), got shape {groups.shape}")
    members = group_members(groups)
    for _ in range(n_boot):
        yield np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])


def bootstrap_ci(statistic: Callable[..., float], *arrays, n_boot: int = 200, random_state: int = 0,
                 quantiles: Sequence[float] = CI_QUANTILES, groups=None) -> MetricCI:
    """``statistic(*arrays)`` and its percentile bootstrap interval.

    Rows are resampled with replacement ``n_boot`` times (all arrays alike,
    seeded by ``random_state``); resamples where the statistic is undefined
    (NaN, e.g. an AUC of a resample holding one class) are skipped, as in
    fairlearn's intervals. ``n_boot=0`` gives the value without an interval.

    ``groups`` (one id per row) resamples whole groups instead, the cluster
    bootstrap: rows of one group (a patient, a lesion, a chain of
    near-duplicate photos) are not independent, and resampling them one by one
    makes the interval too narrow when groups are large.
    """
    arrays = [np.asarray(a) for a in arrays]
    value = statistic(*arrays)
    if not n_boot:
        return MetricCI(value)
    resamples = bootstrap_indices(len(arrays[0]), n_boot, random_state, groups=groups)
    stats = np.array([statistic(*(a[idx] for a in arrays)) for idx in resamples])
    if np.all(np.isnan(stats)):
        return MetricCI(value)
    low, high = np.nanquantile(stats, quantiles)
    return MetricCI(value, low, high)


def balanced_accuracy_gain(y_true, probs_a, probs_b, *, n_boot: int = 200, random_state: int = 0) -> MetricCI:
    """Balanced accuracy of ``probs_b``'s answers minus ``probs_a``'s on the same rows, with a paired
    bootstrap interval (both models' answers on a row resampled together)."""
    def diff(y, a, b):
        return balanced_accuracy(y, b.argmax(1)) - balanced_accuracy(y, a.argmax(1))

    return bootstrap_ci(diff, y_true, probs_a, probs_b, n_boot=n_boot, random_state=random_state)


def malignancy_auc(y_true_malignant, score, *, n_boot: int = 200, random_state: int = 0,
                   groups=None) -> MetricCI:
    """Malignant-vs-benign ROC-AUC of a score (scikit-learn) with its bootstrap interval.

    ``value`` is ``None`` when only one of the two classes is present. The
    interval resamples the images given, or with ``groups`` whole groups (a
    patient, a lesion), as :func:`bootstrap_ci` (call it once per Fitzpatrick
    group for the per-group intervals of the DDI audit).
    """
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y_true_malignant)
    s = np.asarray(score, dtype=np.float64)
    if y.ndim != 1 or s.shape != y.shape:
        raise ValueError(f"y_true_malignant and score must be 1-D of equal length, got {y.shape} and {s.shape}")
    if y.dtype != bool:
        if not np.all(np.isin(y, [0, 1])):
            raise ValueError("y_true_malignant must be boolean (or 0/1)")
        y = y.astype(bool)
    if not np.all(np.isfinite(s)):
        raise ValueError("score contains NaN or inf")
    if y.all() or not y.any():
        return MetricCI(None)
    ci = bootstrap_ci(binary_auc, y, s, n_boot=n_boot, random_state=random_state, groups=groups)
    return MetricCI(roc_auc_score(y, s), ci.ci_low, ci.ci_high)

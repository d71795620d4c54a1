"""Disaggregated performance: how well the model works for each group.

:func:`fairness_report` splits the test set by each sensitive attribute (skin
tone bucket, sex, age group, race, ...) and reports, per group, the task's
metrics with bootstrap confidence intervals, the calibration error and, for
skin-lesion models, the malignant miss rate. Groups and intervals come from
fairlearn's :class:`~fairlearn.metrics.MetricFrame` (Weerts et al., 2023,
"Fairlearn: Assessing and Improving Fairness of AI Systems"), not from
hand-written loops.

Deliberate choices:

* **Confidence intervals** are fairlearn's percentile bootstrap
  (``n_boot`` resamples of the *whole* test set with replacement,
  ``ci_quantiles=[0.025, 0.975]``, seeded by ``random_state``). A group's size
  varies between resamples, which is the honest uncertainty of a group
  estimate from one test set; resamples in which a group is absent (or a
  metric is undefined, e.g. a miss rate without malignant cases) are ignored
  (``nanquantile``). With ``clusters`` (a dataset's ``group_id``: a lesion, a
  patient, a chain of near-duplicate photos) whole clusters are resampled
  instead, by :func:`skin.metrics.bootstrap_indices`, one MetricFrame per
  resample: photos of one cluster are not independent, and on DermNet's held-out
  splits resampling photos gave intervals 1.4-2.2x too narrow
  (``bench/clinical_split_spread.py``). Each table records which
  (``ci_resampling``). Percentile intervals are kept although balanced
  accuracy's are lopsided (a resample can drop a class with few clusters):
  ``bench/fairness_ci_coverage.py`` measures their coverage by a double
  bootstrap on real predictions, against the basic, BCa and class-stratified
  intervals, none of which covered better overall; each checked model's
  coverage is recorded in :mod:`skin.ci_coverage`, and its cards state it.
* **Small groups** (``n < min_group_size``) are reported and flagged
  ``"small": true`` but excluded from ``largest_gap``: a gap driven by a group
  of five images is noise, not evidence.
* **largest_gap** of a metric = max − min of the group point estimates over
  groups with ``n ≥ min_group_size`` and a defined value; ``None`` when fewer
  than two such groups exist. Whether the gap is good or bad depends on the
  metric (higher accuracy is better, higher MAE / ECE / FNR is worse);
  ``largest_gap_groups`` names the groups at the two ends.
* **Missing attribute values** (``None``, NaN, empty string) form the group
  ``"unknown"``; all group names are strings.
* **Malignancy** (``malignant_classes`` given, classification only): a sample
  is malignant when its true class is one of ``malignant_classes``, predicted
  malignant when the argmax is; ``fnr`` = missed malignant / malignant,
  ``fpr`` = benign flagged malignant / benign, and ``malignant_auc`` = ROC-AUC
  of the summed malignant probability (the DDI audit's metric).
* **Per-group ECE** uses the 15 equal-width bins of
  :func:`skin.calibration.expected_calibration_error`; ECE is biased upwards
  on small samples, so compare it across groups of similar size only.

Cost: every metric is computed on every group of every resample; with
``n_boot=200`` expect a few seconds per attribute per thousand test samples
(fairlearn's image bootstrap), and more with ``clusters`` (one MetricFrame per
resample, built in Python): ``refresh-fairness`` re-measured the condition
model's four tables on 1,211 test images in 87 s, its inference included.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from functools import partial

import numpy as np

from skin.calibration import expected_calibration_error
from skin.metrics import (
    _as_labels,
    _as_probs,
    _check_range,
    accuracy,
    balanced_accuracy,
    binary_auc,
    expected_age,
    macro_f1,
)
from skin.reports import CI_QUANTILES, FairnessReport, FairnessTable, Gap, GroupMetrics, MetricCI
from skin.tasks import AGE_BINS, TaskKind, age_to_group

UNKNOWN = "unknown"
_KNOWN_ORDERS = (("light", "medium", "dark"), ("male", "female"))


# --------------------------------------------------------------------------- #
# Per-group metric functions: f(y_true, y_pred) -> float (NaN when undefined).
# MetricFrame slices y_true / y_pred per group and np.stack's them back, so a
# 2-D ``y_pred`` (probabilities) arrives as an (n_group, C) array.
# --------------------------------------------------------------------------- #
def _top1(y_pred: np.ndarray) -> np.ndarray:
    return y_pred.argmax(axis=1) if y_pred.ndim == 2 else y_pred


def _accuracy(y_true, y_pred) -> float:
    return accuracy(y_true, _top1(y_pred))


def _balanced_accuracy(y_true, y_pred) -> float:
    return balanced_accuracy(y_true, _top1(y_pred))


def _macro_f1(y_true, y_pred) -> float:
    return macro_f1(y_true, _top1(y_pred))


def _grade_mae(y_true, y_pred) -> float:
    return float(np.mean(np.abs(_top1(y_pred) - y_true))) if len(y_true) else math.nan


def _ece(y_true, y_pred) -> float:
    return expected_calibration_error(y_pred, y_true)


def _is_malignant(classes: np.ndarray, malignant: np.ndarray) -> np.ndarray:
    return np.isin(classes, malignant)


def _fnr(y_true, y_pred, malignant) -> float:
    t = _is_malignant(y_true, malignant)
    if not t.any():
        return math.nan
    return float(np.mean(~_is_malignant(y_pred.argmax(axis=1)[t], malignant)))


def _fpr(y_true, y_pred, malignant) -> float:
    t = _is_malignant(y_true, malignant)
    if t.all():
        return math.nan
    return float(np.mean(_is_malignant(y_pred.argmax(axis=1)[~t], malignant)))


def _malignant_auc(y_true, y_pred, malignant) -> float:
    return binary_auc(_is_malignant(y_true, malignant), y_pred[:, malignant].sum(axis=1))


def _age_mae(y_true, y_pred) -> float:
    return float(np.mean(np.abs(y_pred - y_true))) if len(y_true) else math.nan


def _age_group_accuracy(y_true, y_pred, bins) -> float:
    if not len(y_true):
        return math.nan
    return float(np.mean(age_to_group(y_true, bins) == age_to_group(y_pred, bins)))


# --------------------------------------------------------------------------- #
# Input handling
# --------------------------------------------------------------------------- #
def _is_missing(v) -> bool:
    import pandas as pd

    if v is None:
        return True
    if isinstance(v, str):
        return v.strip() == ""
    return bool(np.ndim(v) == 0 and pd.isna(v))  # NaN, pd.NA, NaT


def _group_values(values, n: int, attr: str) -> np.ndarray:
    """Sensitive values as strings, missing ones as ``"unknown"``."""
    vals = list(values.tolist() if hasattr(values, "tolist") else values)
    if len(vals) != n:
        raise ValueError(f"sensitive[{attr!r}] has {len(vals)} values but there are {n} samples")
    out = []
    for v in vals:
        if _is_missing(v):
            out.append(UNKNOWN)
        elif isinstance(v, float) and v.is_integer():
            out.append(str(int(v)))  # 1.0 (a pandas int column with NaNs) → "1"
        else:
            out.append(str(v))
    return np.asarray(out, dtype=object)


def _order_key(g: str):
    if g == UNKNOWN:
        return (3, 0, "")
    for order in _KNOWN_ORDERS:
        if g in order:
            return (0, order.index(g), "")
    try:
        return (1, float(g.split("-")[0].rstrip("+")), g)  # "25-49", "100+", "3"
    except ValueError:
        return (2, 0, g)


def _metric_functions(kind: TaskKind, y_pred: np.ndarray, malignant_classes, age_bins) -> dict:
    if kind is TaskKind.CLASSIFICATION:
        fns = {
            "accuracy": _accuracy,
            "balanced_accuracy": _balanced_accuracy,
            "macro_f1": _macro_f1,
            "ece": _ece,
        }
        if malignant_classes:
            mal = np.asarray(sorted({int(c) for c in malignant_classes}), dtype=np.int64)
            fns.update(
                fnr=partial(_fnr, malignant=mal),
                fpr=partial(_fpr, malignant=mal),
                malignant_auc=partial(_malignant_auc, malignant=mal),
            )
        return fns
    if kind is TaskKind.ORDINAL:
        fns = {"accuracy": _accuracy, "balanced_accuracy": _balanced_accuracy, "mae": _grade_mae}
        if y_pred.ndim == 2:
            fns["ece"] = _ece
        return fns
    return {"mae": _age_mae, "group_accuracy": partial(_age_group_accuracy, bins=np.asarray(age_bins, float))}


def _prepare(kind: TaskKind, y_true, probs, labels, malignant_classes, ages):
    """Validated (y_true, y_pred) arrays for MetricFrame."""
    if kind is TaskKind.CLASSIFICATION:
        y = _as_labels(y_true)
        p = _as_probs(probs, n=len(y))
        _check_range(y, p.shape[1])
        if labels is not None and len(labels) != p.shape[1]:
            raise ValueError(f"labels has {len(labels)} names but probs has {p.shape[1]} columns")
        if malignant_classes:
            bad = [c for c in malignant_classes if not 0 <= int(c) < p.shape[1]]
            if bad:
                raise ValueError(f"malignant_classes {bad} out of range for {p.shape[1]} classes")
        return y, p
    if malignant_classes:
        raise ValueError("malignant_classes applies to kind='classification' only")
    if kind is TaskKind.ORDINAL:
        y = _as_labels(y_true)
        p = np.asarray(probs)
        if p.ndim == 2:
            p = _as_probs(p, n=len(y))
            _check_range(y, p.shape[1])
        else:
            p = _as_labels(p, "probs (predicted grades)")
            if len(p) != len(y):
                raise ValueError(f"probs ({len(p)}) and y_true ({len(y)}) differ in length")
        return y, p
    # age
    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim == 2:
        if ages is None:
            raise ValueError("age probs are 2-D: pass ages= (the age of each column) to read them out")
        p = expected_age(p, ages)
    if y.ndim != 1 or p.shape != y.shape:
        raise ValueError(f"age y_true and predictions must be 1-D of equal length, got {y.shape} and {p.shape}")
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(p))):
        raise ValueError("ages contain NaN or inf")
    return y, p


def _table(attr: str, frames, counts, metrics, n: int, n_boot: int, min_group_size: int,
           ci_resampling: str) -> FairnessTable:
    """One attribute's :class:`FairnessTable` from ``(by_group, overall, (lo_g, hi_g), (lo_o, hi_o))``."""
    by_group, overall, (lo_g, hi_g), (lo_o, hi_o) = frames
    groups = {}
    for g in sorted((str(g) for g in by_group.index), key=_order_key):
        n_g = int(counts[g])
        cells = {m: MetricCI(by_group.loc[g, m], lo_g.loc[g, m], hi_g.loc[g, m]) for m in metrics}
        groups[g] = GroupMetrics(n=n_g, metrics=cells, small=n_g < min_group_size)
    gaps = {}
    for m in metrics:
        vals = {g: row[m].value for g, row in groups.items() if not row.small and row[m].value is not None}
        if len(vals) < 2:
            gaps[m] = None
            continue
        g_min, g_max = min(vals, key=vals.get), max(vals, key=vals.get)
        gaps[m] = Gap(vals[g_max] - vals[g_min], g_min, g_max)
    return FairnessTable(
        attribute=attr,
        groups=groups,
        overall=GroupMetrics(n=n, metrics={m: MetricCI(overall[m], lo_o[m], hi_o[m]) for m in metrics}),
        gaps=gaps,
        min_group_size=int(min_group_size),
        n_boot=int(n_boot),
        ci_quantiles=CI_QUANTILES if n_boot else None,
        ci_resampling=ci_resampling if n_boot else None,
    )


def _checked_arguments(kind, sensitive, n_boot, min_group_size) -> tuple[TaskKind, int]:
    """Validate fairness_report's options, returning (kind, n_boot) normalised, so bad calls fail before any work."""
    try:
        kind = TaskKind(kind)
    except ValueError:
        raise ValueError(f"kind must be one of {[k.value for k in TaskKind]}, got {kind!r}") from None
    if not isinstance(sensitive, Mapping) or not sensitive:
        raise ValueError("sensitive must be a non-empty dict {attribute name: values per sample}")
    if n_boot is None:
        n_boot = 0
    if not isinstance(n_boot, (int, np.integer)) or isinstance(n_boot, bool) or n_boot < 0:
        raise ValueError(f"n_boot must be an integer ≥ 0 (0 = no confidence intervals), got {n_boot!r}")
    if min_group_size < 0:
        raise ValueError(f"min_group_size must be ≥ 0, got {min_group_size}")
    return kind, n_boot


def _bootstrap_options(n_boot: int, random_state: int) -> dict:
    """MetricFrame's bootstrap keyword arguments ({} when n_boot is 0, so no intervals are computed)."""
    return (
        {"n_boot": int(n_boot), "ci_quantiles": list(CI_QUANTILES), "random_state": int(random_state)}
        if n_boot
        else {}
    )


def _frames(mf, n_boot: int):
    """``(by_group, overall, (lo_g, hi_g), (lo_o, hi_o))`` of a MetricFrame (intervals NaN without a bootstrap)."""
    by_group, overall = mf.by_group, mf.overall
    if n_boot:
        return by_group, overall, mf.by_group_ci, mf.overall_ci
    return by_group, overall, (by_group * math.nan,) * 2, (overall * math.nan,) * 2


def _resample_stats(metrics: dict, y: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, index: list,
                    resamples: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Each resample's metrics by group, ``(resamples, groups in index order, metrics)`` (NaN for a group the
    resample lacks), and overall, ``(resamples, metrics)``.

    The same metric calls on the same rows as ``MetricFrame(...).by_group`` / ``.overall`` of each resample
    (tests/test_fairness.py checks the two agree), without building a MetricFrame per resample: fairlearn
    re-stacks 2-D predictions row by row for every group and metric, which made the per-resample
    MetricFrames an order of magnitude slower than these calls (``bench/bench_fairness.py``)."""
    fns = list(metrics.values())
    stats_g = np.full((len(resamples), len(index), len(fns)), np.nan)
    stats_o = np.empty((len(resamples), len(fns)))
    for r, idx in enumerate(resamples):
        yb, pb, gb = y[idx], y_pred[idx], groups[idx]
        stats_o[r] = [fn(yb, pb) for fn in fns]
        for i, g in enumerate(index):
            mask = gb == g
            if mask.any():
                stats_g[r, i] = [fn(yb[mask], pb[mask]) for fn in fns]
    return stats_g, stats_o


def _cluster_frames(metrics, y, y_pred, attr: str, groups: np.ndarray, resamples: list[np.ndarray]):
    """Like :func:`_frames`, with percentile intervals over the given resamples (whole clusters).

    fairlearn's own bootstrap resamples rows one by one; here each resample's metrics are
    computed on the rows of the clusters drawn (:func:`_resample_stats`), and a group absent
    from a resample is NaN there."""
    import pandas as pd
    from fairlearn.metrics import MetricFrame

    mf = MetricFrame(metrics=metrics, y_true=y, y_pred=y_pred, sensitive_features={attr: groups})
    by_group, overall = mf.by_group, mf.overall
    stats_g, stats_o = _resample_stats(metrics, y, y_pred, groups, list(by_group.index), resamples)
    q_g = np.nanquantile(stats_g, CI_QUANTILES, axis=0)
    q_o = np.nanquantile(stats_o, CI_QUANTILES, axis=0)
    lo_g, hi_g = (pd.DataFrame(q, index=by_group.index, columns=by_group.columns) for q in q_g)
    lo_o, hi_o = (pd.Series(q, index=overall.index) for q in q_o)
    return by_group, overall, (lo_g, hi_g), (lo_o, hi_o)


def _attribute_table(attr, values, y, y_pred, metrics, bootstrap, n_boot: int, min_group_size: int,
                     resamples: list[np.ndarray] | None) -> FairnessTable:
    """Group the samples by one attribute and bootstrap the metrics into that attribute's table: fairlearn's
    MetricFrame bootstrap over images, or over the given cluster ``resamples``."""
    import pandas as pd
    from fairlearn.metrics import MetricFrame

    if not isinstance(attr, str) or not attr:
        raise ValueError(f"sensitive attribute names must be non-empty strings, got {attr!r}")
    groups = _group_values(values, len(y), attr)
    with warnings.catch_warnings():
        # All-NaN bootstrap slices (a group absent from a resample, a miss
        # rate without malignant cases) are expected and ignored.
        warnings.simplefilter("ignore", RuntimeWarning)
        if resamples is not None:
            frames = _cluster_frames(metrics, y, y_pred, attr, np.asarray(groups, dtype=object), resamples)
        else:
            mf = MetricFrame(metrics=metrics, y_true=y, y_pred=y_pred, sensitive_features={attr: groups}, **bootstrap)
            frames = _frames(mf, n_boot)
        return _table(attr, frames, pd.Series(groups).value_counts(), metrics, len(y), n_boot, min_group_size,
                      "images" if resamples is None else "clusters")


# --------------------------------------------------------------------------- #
# Public API
# --------------------------------------------------------------------------- #
def fairness_report(
    y_true,
    probs,
    sensitive: Mapping[str, Sequence],
    *,
    kind: TaskKind | str = TaskKind.CLASSIFICATION,
    labels: Sequence[str] | None = None,
    malignant_classes: Sequence[int] | None = None,
    n_boot: int | None = 200,
    min_group_size: int = 30,
    random_state: int = 0,
    ages: Sequence[float] | None = None,
    age_bins: Sequence[float] = AGE_BINS,
    clusters: Sequence | None = None,
) -> FairnessReport:
    """Per-group metrics with bootstrap CIs for each sensitive attribute.

    Args:
        y_true: (n,) true classes / grades (int), or true ages (``kind="age"``).
        probs: ``classification``: (n, C) class probabilities. ``ordinal``:
            (n, K) grade probabilities or (n,) predicted grades (no ECE then).
            ``age``: (n,) predicted ages, or (n, A) per-age probabilities read
            out with :func:`skin.metrics.expected_age` over ``ages``.
        sensitive: ``{attribute: values}``, e.g. ``{"tone_bucket": [...],
            "sex": [...]}``; one value per sample, ``None``/NaN = unknown.
        kind: the task's :class:`~skin.tasks.TaskKind` (or its name).
        labels: class names (checked against ``probs``; kept for the caller).
        malignant_classes: class indices counted as malignant (adds ``fnr``,
            ``fpr``, ``malignant_auc``; classification only).
        n_boot: bootstrap resamples for the CIs (fairlearn ``n_boot``); 0 (or
            ``None``) skips the bootstrap and leaves the intervals ``None``.
        min_group_size: groups smaller than this are flagged ``small`` and
            left out of the largest gap.
        random_state: seed of the bootstrap.
        ages: the age of each column of 2-D age ``probs``.
        age_bins: lower edges of the age groups for ``group_accuracy``.
        clusters: one id per sample of the unit the samples were drawn in (a
            lesion, a patient, a chain of near-duplicate photos: a dataset's
            ``group_id``). The intervals then resample whole clusters, the same
            resamples for every attribute; without it fairlearn resamples
            images, which is too narrow when clusters are large.

    Returns:
        A :class:`~skin.reports.FairnessReport`: one
        :class:`~skin.reports.FairnessTable` per attribute (groups in a
        stable order: known orders such as light / medium / dark first, then
        numeric ranges, then names, ``"unknown"`` last). Metrics:
        classification → accuracy, balanced_accuracy, macro_f1, ece (+ fnr,
        fpr, malignant_auc); ordinal → accuracy, balanced_accuracy, mae
        (+ ece with probabilities); age → mae, group_accuracy.
    """
    kind, n_boot = _checked_arguments(kind, sensitive, n_boot, min_group_size)
    y, y_pred = _prepare(kind, y_true, probs, labels, malignant_classes, ages)
    if len(y) == 0:
        raise ValueError("fairness_report needs at least one sample")
    metrics = _metric_functions(kind, y_pred, malignant_classes, age_bins)
    bootstrap = _bootstrap_options(n_boot, random_state)
    resamples = None
    if clusters is not None and n_boot:
        from skin.metrics import bootstrap_indices

        if len(clusters) != len(y):
            raise ValueError(f"clusters has {len(clusters)} ids for {len(y)} samples: pass one per sample")
        resamples = list(bootstrap_indices(len(y), n_boot, random_state, groups=np.asarray(clusters, dtype=str)))
    tables = {}
    for attr, values in sensitive.items():
        tables[attr] = _attribute_table(attr, values, y, y_pred, metrics, bootstrap, n_boot, min_group_size,
                                        resamples)
    return FairnessReport(tables)

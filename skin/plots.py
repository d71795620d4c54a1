"""Report figures as PNG files (matplotlib, Agg backend: no display needed).

Each function takes what :mod:`skin.metrics`, :mod:`skin.calibration`,
:mod:`skin.fairness` (a typed :class:`~skin.reports.FairnessTable`) or a
transformers ``Trainer``'s ``state.log_history`` produce, writes one PNG
(creating parent folders) and returns its path as a string. matplotlib is
imported inside the functions, so importing this module costs little.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from skin.reports import FairnessTable, MetricCI

_DPI = 120
_BEFORE_COLOR = "#d62728"
_AFTER_COLOR = "#1f77b4"


def _pyplot():
    try:
        import matplotlib
    except ImportError as e:  # pragma: no cover - matplotlib is in requirements
        raise ImportError("skin.plots needs matplotlib: pip install matplotlib") from e
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png_path(path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"plots are written as PNG; give a path ending in .png, got {str(path)!r}")
    return path


def _save(fig, path: Path) -> str:
    plt = _pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return str(path)


def _num(x) -> float:
    return math.nan if x is None else float(x)


def plot_confusion_matrix(cm, labels: Sequence[str], path, normalize: bool = True, title: str | None = None) -> str:
    """Confusion matrix heat map (rows = true, columns = predicted).

    Colours are row-normalised (recall per true class) when ``normalize`` so
    rare classes stay readable; every cell is annotated with its count (and
    the row fraction when normalised).
    """
    path = _png_path(path)
    plt = _pyplot()
    cm = np.asarray(cm, dtype=np.float64)
    labels = [str(x) for x in labels]
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(labels):
        raise ValueError(f"cm must be square with one row per label ({len(labels)}), got shape {cm.shape}")
    k = len(labels)
    rows = cm.sum(axis=1, keepdims=True)
    shown = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0) if normalize else cm
    size = max(4.0, 0.6 * k + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else max(cm.max(), 1))
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class" if normalize else "count")
    ax.set_xticks(range(k), labels, rotation=45, ha="right")
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = (1 if normalize else max(cm.max(), 1)) / 2
    fontsize = 9 if k <= 10 else 7 if k <= 20 else 5
    for i in range(k):
        for j in range(k):
            text = f"{int(cm[i, j])}" + (f"\n{shown[i, j]:.0%}" if normalize and rows[i, 0] > 0 else "")
            ax.text(j, i, text, ha="center", va="center", fontsize=fontsize,
                    color="white" if shown[i, j] > threshold else "black")
    ax.set_title(title or f"Confusion matrix (n={int(cm.sum())})")
    return _save(fig, path)


def plot_reliability(curve_before: Mapping, curve_after: Mapping | None, path, title: str | None = None) -> str:
    """Reliability diagram: accuracy vs mean confidence per bin, before and
    after temperature scaling (curves from
    :func:`skin.calibration.reliability_curve`), with the diagonal of perfect
    calibration, ECE in the legend and the bin counts underneath."""
    path = _png_path(path)
    plt = _pyplot()
    fig, (ax, ax_n) = plt.subplots(
        2, 1, figsize=(5.5, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
    curves = [("before", curve_before, _BEFORE_COLOR), ("after T", curve_after, _AFTER_COLOR)]
    width = None
    for k, (name, curve, color) in enumerate(c for c in curves if c[1] is not None):
        conf = np.array([_num(c) for c in curve["confidence"]])
        acc = np.array([_num(a) for a in curve["accuracy"]])
        ok = ~np.isnan(conf) & ~np.isnan(acc)
        ece = curve.get("ece")
        label = name + (f" (ECE {ece:.3f})" if ece is not None else "")
        ax.plot(conf[ok], acc[ok], marker="o", color=color, label=label)
        edges = np.asarray(curve["bin_edges"], dtype=np.float64)
        width = np.diff(edges)
        centers = (edges[:-1] + edges[1:]) / 2
        ax_n.bar(centers + (k - 0.5) * width * 0.4, curve["counts"], width=width * 0.4,
                 color=color, alpha=0.8, label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(title or "Reliability diagram (test set)")
    ax.legend(loc="upper left", fontsize=9)
    ax.grid(alpha=0.3)
    ax_n.set_xlabel("confidence (max softmax probability)")
    ax_n.set_ylabel("samples")
    ax_n.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def plot_fairness(table: FairnessTable | Mapping, metric: str, path, title: str | None = None) -> str:
    """Bar per group of one metric of a :class:`~skin.reports.FairnessTable`
    (one attribute of :func:`skin.fairness.fairness_report`, or its dict),
    with its bootstrap CI as error bars, ``n`` written on each bar, small
    groups hatched and the overall value as a dashed line."""
    path = _png_path(path)
    if not isinstance(table, FairnessTable):
        table = FairnessTable.from_dict("", table)
    if not table.groups:
        raise ValueError("table must be one attribute of fairness_report(), with groups")
    known = table.metric_names or list(next(iter(table.groups.values())).metrics)
    if metric not in known:
        raise ValueError(f"metric {metric!r} not in the report; choose one of {known}")
    plt = _pyplot()
    names = list(table.groups)
    cells = [table.groups[g].get(metric) or MetricCI(None) for g in names]
    vals, lo, hi = (np.array([_num(getattr(c, k)) for c in cells]) for k in ("value", "ci_low", "ci_high"))
    err = np.nan_to_num(np.vstack([np.clip(vals - lo, 0, None), np.clip(hi - vals, 0, None)]))
    fig, ax = plt.subplots(figsize=(max(4.5, 1.1 * len(names) + 2), 4.2))
    x = np.arange(len(names))
    bars = ax.bar(x, np.nan_to_num(vals), yerr=err, capsize=4, color="#4c72b0", edgecolor="black", lw=0.8)
    for bar, g in zip(bars, names):
        if table.groups[g].small:
            bar.set_hatch("//")
            bar.set_facecolor("#a6b8d8")
    top = float(np.nanmax(np.concatenate([hi, vals, [0.0]]))) if np.any(~np.isnan(vals)) else 1.0
    for xi, g, v, h in zip(x, names, vals, hi):
        y_text = (h if not np.isnan(h) else (v if not np.isnan(v) else 0.0)) + 0.02 * max(top, 1e-9)
        label = f"n={table.groups[g].n}" + ("" if not np.isnan(v) else " (n/a)")
        ax.text(xi, y_text, label, ha="center", va="bottom", fontsize=8)
    overall = table.overall.get(metric)
    if overall is not None and overall.value is not None:
        ax.axhline(overall.value, ls="--", color="grey", lw=1, label=f"overall {overall.value:.3f}")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.set_xticks(x, names, rotation=30 if len(names) > 4 else 0, ha="right" if len(names) > 4 else "center")
    ax.set_ylim(0, top * 1.18 if top > 0 else 1)
    ax.set_ylabel(metric)
    gap = table.gaps.get(metric)
    subtitle = f"largest gap {gap.value:.3f}" if gap is not None else "largest gap n/a"
    ax.set_title(title or f"{metric} by group ({subtitle})\n95% bootstrap CI; hatched = small group (n < "
                 f"{table.min_group_size}), excluded from the gap", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


_NOT_METRICS = {"eval_loss", "eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "epoch"}


def plot_training_curves(history: Sequence[Mapping], path, metric: str | None = None, title: str | None = None) -> str:
    """Training loss, evaluation loss and one evaluation metric vs step.

    ``history`` is a transformers ``Trainer``'s ``state.log_history``: dicts
    with ``step`` and either ``loss`` (training logs) or ``eval_*`` keys
    (evaluation logs). ``metric`` (e.g. ``"eval_balanced_accuracy"``) defaults
    to the first ``eval_*`` key that is not loss / runtime / throughput; it is
    drawn on a second y-axis.
    """
    path = _png_path(path)
    plt = _pyplot()
    history = list(history)
    train = [(h["step"], h["loss"]) for h in history if "loss" in h and "step" in h]
    evals = [h for h in history if "eval_loss" in h and "step" in h]
    if metric is None:
        for h in history:
            cand = [k for k in h if k.startswith("eval_") and k not in _NOT_METRICS
                    and isinstance(h[k], (int, float))]
            if cand:
                metric = cand[0]
                break
    metric_pts = [(h["step"], h[metric]) for h in history if metric and metric in h and "step" in h]
    if not train and not evals and not metric_pts:
        raise ValueError("history has no 'loss' or 'eval_*' entries with a 'step'; pass trainer.state.log_history")
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    if train:
        s, v = zip(*train)
        ax.plot(s, v, color="#1f77b4", lw=1.2, label="train loss")
    if evals:
        ax.plot([h["step"] for h in evals], [h["eval_loss"] for h in evals], color="#ff7f0e",
                marker="o", lw=1.5, label="eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    handles, names = ax.get_legend_handles_labels()
    if metric_pts:
        ax2 = ax.twinx()
        s, v = zip(*metric_pts)
        line = ax2.plot(s, v, color="#2ca02c", marker="s", lw=1.5, label=metric)
        ax2.set_ylabel(metric)
        handles, names = handles + line, names + [metric]
    ax.legend(handles, names, fontsize=8, loc="best")
    ax.set_title(title or "Training curves")
    fig.tight_layout()
    return _save(fig, path)

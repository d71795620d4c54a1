"""The history tab's trend plot: one small panel per score, each point with its uncertainty.

A matplotlib ``Figure`` built without pyplot (no global figure registry, safe
across the app's worker threads, no display), which ``gr.Plot`` renders as a
PNG in the page: nothing is fetched from a CDN, so it draws offline. The
error bars are the ``± K · σ`` of :class:`skin.history.trends.TrendSeries`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime

from skin.history.trends import TrendSeries
from skin.history.verdict import K

#: Panels per row of the figure.
COLUMNS = 3
#: Inches per panel (width, height).
PANEL_SIZE = (4.0, 2.6)


def trend_figure(trends: Mapping[str, TrendSeries]):
    """A ``matplotlib.figure.Figure`` with one panel per score of ``trends`` (a single note when empty)."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure

    names = list(trends)
    rows = max(1, math.ceil(len(names) / COLUMNS))
    cols = min(COLUMNS, max(1, len(names)))
    fig = Figure(figsize=(PANEL_SIZE[0] * cols, PANEL_SIZE[1] * rows), layout="constrained")
    if not names:
        ax = fig.add_subplot()
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no saved analyses yet: analyse a photo, then save it", ha="center", va="center")
        return fig
    for i, name in enumerate(names):
        series = trends[name]
        ax = fig.add_subplot(rows, cols, i + 1)
        times = [datetime.fromisoformat(t) for t in series.times]
        ax.errorbar(times, series.values, yerr=series.errors, fmt="o-", capsize=3, markersize=4, linewidth=1)
        better = f" ({series.better} is better)" if series.better else ""
        ax.set_title(f"{name}{better}", fontsize=9)
        locator = AutoDateLocator(maxticks=4)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
        ax.tick_params(labelsize=7)
        ax.xaxis.get_offset_text().set_fontsize(7)
        ax.grid(alpha=0.3)
    fig.suptitle(f"Scores over time (bars: ± {K} × the score's own test-retest noise)", fontsize=10)
    return fig

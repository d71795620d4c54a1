"""The history tab's data: the table of entries and one trend series per score.

Each point of a trend carries its uncertainty, ``K · σ`` of that entry's
test-retest noise (:mod:`skin.history.verdict`): the band within which the
score would move were the same skin photographed again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from skin.history.scores import score_definition
from skin.history.store import Entry
from skin.history.verdict import K, measurement_sd


@dataclass(frozen=True)
class TrendSeries:
    """One score over time, oldest first: ISO times, values and ± uncertainty (``K · σ``)."""

    score: str
    better: str | None
    times: list[str]
    values: list[float]
    errors: list[float]


@dataclass(frozen=True)
class HistoryTab:
    """What the history tab shows: ``rows`` (newest first) and ``trends`` per score."""

    rows: list[dict]
    trends: dict[str, TrendSeries]


#: The table's columns (scores are in the trends, not the table).
TABLE_COLUMNS = ("id", "saved_at", "note", "photo_type", "tone_bucket", "quality_flags", "has_photo")


def history_tab(entries: Sequence[Entry]) -> HistoryTab:
    """The table and trends of ``entries`` as :meth:`skin.history.store.HistoryStore.list` returns them."""
    rows = [{c: v for c, v in e.to_dict().items() if c in TABLE_COLUMNS} for e in entries]
    trends: dict[str, TrendSeries] = {}
    specs = {}
    for e in reversed(entries):
        when = e.saved_at.isoformat()
        for name, value in e.scores.items():
            if name not in trends:
                specs[name] = score_definition(name)
                trends[name] = TrendSeries(name, specs[name].better, [], [], [])
            series = trends[name]
            series.times.append(when)
            series.values.append(value)
            series.errors.append(K * measurement_sd(e.noise.get(name), specs[name]))
    return HistoryTab(rows, dict(sorted(trends.items())))

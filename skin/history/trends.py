"""The history tab's data: the table of entries and one trend series per score.

Each point of a trend carries its uncertainty, ``K · σ`` of that entry's
test-retest noise (:mod:`skin.history.verdict`): the band within which the
score would move were the same skin photographed again.
"""

from __future__ import annotations

import math
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


def history_tab(entries: Sequence[Entry]) -> HistoryTab:
    """The table and trends of ``entries`` as :meth:`skin.history.store.HistoryStore.list` returns them."""
    times = [e.saved_at.isoformat() for e in entries]
    rows = [{"id": e.id, "saved_at": when, "note": e.note, "photo_type": e.photo_type,
             "tone_bucket": e.tone_bucket, "quality_flags": list(e.quality_flags), "has_photo": e.has_photo}
            for e, when in zip(entries, times, strict=True)]
    oldest_first = list(zip(reversed(times), [e.scores for e in reversed(entries)],
                            [e.noise for e in reversed(entries)], strict=True))
    trends = {}
    # one pass per score over the entries (a comprehension each): a 1,000-entry tab is read on every page load
    for name in sorted({name for e in entries for name in e.scores}):
        spec = score_definition(name)
        points = [(when, scores[name], noise.get(name, math.nan))
                  for when, scores, noise in oldest_first if name in scores]
        when, values, sd = (list(column) for column in zip(*points, strict=True))
        errors = K * measurement_sd(sd, spec)
        trends[name] = TrendSeries(name, spec.better, when, values, errors.tolist())
    return HistoryTab(rows, trends)

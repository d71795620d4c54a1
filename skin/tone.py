"""Skin tone: one coarse three-bucket scale shared by every label source.

Fitzpatrick skin types (FST I-VI), the Monk Skin Tone scale (MST 1-10) and the
Individual Typology Angle (ITA°, see :func:`ita_bucket`) all map onto
``TONE_BUCKETS = ("light", "medium", "dark")`` so that fairness reports from any
dataset, and the app's estimate for a user's photo, speak the same buckets:

* FST I-II → light, III-IV → medium, V-VI → dark (the grouping DDI publishes).
* MST 1-3 → light, 4-6 → medium, 7-10 → dark (MST 1-3 correspond to FST I-II,
  4-6 to III-IV and 7-10 to V-VI in the scale's published comparisons).
"""

from __future__ import annotations

TONE_BUCKETS = ("light", "medium", "dark")


def bucket_from_fitzpatrick(fst: int | None) -> str | None:
    """FST 1-6 → bucket; ``None`` (unknown) → ``None``."""
    if fst is None:
        return None
    fst = int(fst)
    if not 1 <= fst <= 6:
        raise ValueError(f"Fitzpatrick type must be 1-6, got {fst}")
    return TONE_BUCKETS[(fst - 1) // 2]


def bucket_from_monk(mst: int | None) -> str | None:
    """Monk 1-10 → bucket; ``None`` (unknown) → ``None``."""
    if mst is None:
        return None
    mst = int(mst)
    if not 1 <= mst <= 10:
        raise ValueError(f"Monk skin tone must be 1-10, got {mst}")
    return "light" if mst <= 3 else "medium" if mst <= 6 else "dark"

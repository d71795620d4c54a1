"""How much of an age model's error gap between skin tones is the tone buckets' ages, where that was measured.

An age model's card gives its mean absolute error (MAE) per estimated tone
bucket. Age error grows with age, and the buckets of a test set need not hold
the same ages (UTKFace's light bucket is younger than its dark one), so a raw
gap mixes the model's gap with the age mix. ``bench/age_tone_gap.py
--record`` measures the MAE each bucket would have with the whole test set's
age mix (direct standardisation over ten-year bands) and writes that model's
entry in ``skin/age_mix.json``, under its reference (``default:age``). The
app's fairness card (and ``/fairness``) and the Hub card ``python -m skin.hub
export`` writes state it under the table; a model without an entry gets no
sentence.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from skin.records import RecordFile

AGE_MIX_PATH = Path(__file__).with_name("age_mix.json")
AGE_MIX_SCHEMA = 1
TONES = ("light", "medium", "dark")


@dataclass(frozen=True)
class AgeMixRecord:
    """One age model's MAE per tone bucket as tested (``raw_mae``) and with the whole test set's age mix
    (``standardised_mae``), and the dark − light gap of each with its 95 % interval (``[low, high]``)."""

    task: str
    model: str
    #: how the age mix was held equal, in words ("ten-year bands")
    strata: str
    #: the upper edge of the youngest age group (25 for :data:`skin.tasks.AGE_BINS`)
    young_below: int
    #: tone bucket → share of its test photos in the youngest age group
    young_share: dict[str, float]
    raw_mae: dict[str, float]
    standardised_mae: dict[str, float]
    raw_gap: dict[str, float | list[float]]
    standardised_gap: dict[str, float | list[float]]

    def sentence(self) -> str:
        """One paragraph for a card: the age mix of the buckets, the standardised MAEs and the gap before and
        after."""
        std = ", ".join(f"{t} {self.standardised_mae[t]:.2f}" for t in TONES if t in self.standardised_mae)
        young = " and ".join(f"{self.young_share[t]:.0%} of the {t} bucket" for t in ("light", "dark"))
        low, high = self.standardised_gap["ci"]
        return (f"Part of the gap between tones is the test photos' ages: error grows with age, and {young} are "
                f"under {self.young_below}. With every bucket given the whole test set's age mix ({self.strata}), "
                f"the MAE is {std} years: dark − light {self.standardised_gap['value']:.2f} years (95 % interval "
                f"{low:.2f}–{high:.2f}) instead of {self.raw_gap['value']:.2f}. The rest is not explained by age.")


RECORDS = RecordFile(AGE_MIX_PATH, AgeMixRecord, AGE_MIX_SCHEMA, "bench/age_tone_gap.py --record", "age-mix")


def read_age_mix(path=AGE_MIX_PATH) -> dict[str, AgeMixRecord]:
    """Every recorded model's :class:`AgeMixRecord`, by model reference (``{}`` when the file does not exist)."""
    return RECORDS.at(path).read()


def record_age_mix(entry: AgeMixRecord, path=AGE_MIX_PATH) -> None:
    """Write ``entry`` as its model's record, keeping the other models'."""
    RECORDS.at(path).record(entry)


def age_mix_sentence(model: str, path=AGE_MIX_PATH) -> str | None:
    """The card's paragraph for model ``model`` (its reference in ``skinlens.yaml``), or ``None`` where it
    was not measured."""
    entry = RECORDS.at(path).get(model)
    return None if entry is None else entry.sentence()

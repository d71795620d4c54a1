"""Verdicts on constructed entries and series whose answers are known, and the retest-noise measurement."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from skin.history.scores import ScoreDef, model_scores, score_definition, score_model, score_name
from skin.history.verdict import (
    CHANGED,
    DETERIORATED,
    IMPROVED,
    K,
    NO_CHANGE,
    NOT_COMPARABLE,
    TONE_READING,
    compare,
    retest_noise,
    trend_change,
    variations,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
MEL, MALIGNANT, AGE = "condition:mel", "condition:malignant", "age:age"


@dataclass(frozen=True)
class E:
    scores: dict
    noise: dict = field(default_factory=dict)
    days: float = 0
    photo_type: str = "closeup"
    tone_bucket: str | None = "medium"
    quality_flags: tuple = ()
    models: dict = field(default_factory=lambda: {"condition": "v1", "age": "v1"})

    @property
    def saved_at(self):
        return T0 + timedelta(days=self.days)


def pair(before: dict, after: dict, sigma: float = 0.01, **after_kw) -> tuple[E, E]:
    return (E(before, {k: sigma for k in before}),
            E(after, {k: sigma for k in after}, days=after_kw.pop("days", 30), **after_kw))


def test_score_directions():
    assert score_definition(MALIGNANT).better == "lower"
    assert score_definition(AGE).better == "lower" and score_definition(AGE).unit == "years"
    assert score_definition(MEL).better is None
    with pytest.raises(ValueError, match="better"):
        ScoreDef("x", "sideways", 0.01)


def test_a_score_names_its_model():
    assert score_model(score_name("clinical", "bcc_scc")) == "clinical" and score_model(AGE) == "age"


def test_model_scores_name_each_class_and_the_malignant_sum():
    scores = model_scores("condition", ["mel", "nv", "bcc"], np.array([0.2, 0.5, 0.3]), age=False,
                          malignant=("mel", "bcc", "akiec"))
    assert scores == pytest.approx({"condition:mel": 0.2, "condition:nv": 0.5, "condition:bcc": 0.3,
                                    MALIGNANT: 0.5})
    probs = np.zeros(101)
    probs[[30, 40]] = 0.5
    assert model_scores("age", [str(a) for a in range(100)] + ["100+"], probs, age=True) == \
        pytest.approx({AGE: 35.0})


def test_identical_entries_are_no_meaningful_change():
    result = compare(pair({MEL: 0.3, MALIGNANT: 0.4, AGE: 35.0}, {MEL: 0.3, MALIGNANT: 0.4, AGE: 35.0}))
    assert result.comparable and {v.verdict for v in result.verdicts.values()} == {NO_CHANGE}


def test_changes_beyond_the_noise_have_a_direction():
    a, b = pair({MALIGNANT: 0.5, MEL: 0.3, AGE: 40.0}, {MALIGNANT: 0.2, MEL: 0.5, AGE: 34.0}, sigma=0.02)
    v = compare([b, a]).verdicts  # any order: sorted by time
    assert v[MALIGNANT].verdict == IMPROVED and v[MALIGNANT].change == pytest.approx(-0.3)
    assert v[MALIGNANT].noise == pytest.approx(K * math.sqrt(2) * 0.02)
    assert v[MEL].verdict == CHANGED and "no better direction" in v[MEL].reason
    assert v[AGE].verdict == IMPROVED  # σ 0.02 is below the age floor: 0.5 years is used
    assert v[AGE].noise == pytest.approx(K * math.sqrt(2) * 0.5)
    assert compare(pair({MALIGNANT: 0.2}, {MALIGNANT: 0.5})).verdicts[MALIGNANT].verdict == DETERIORATED


def test_a_change_within_the_noise_does_not_count():
    # noise = 1.96 * sqrt(2) * 0.05 = 0.139: a change of 0.13 is inside, 0.15 outside
    assert compare(pair({MALIGNANT: 0.30}, {MALIGNANT: 0.43}, 0.05)).verdicts[MALIGNANT].verdict == NO_CHANGE
    assert compare(pair({MALIGNANT: 0.30}, {MALIGNANT: 0.45}, 0.05)).verdicts[MALIGNANT].verdict == DETERIORATED


def test_zero_or_missing_noise_uses_the_floor():
    a, b = pair({MALIGNANT: 0.30}, {MALIGNANT: 0.33}, sigma=0.0)
    v = compare([a, b]).verdicts[MALIGNANT]
    assert v.noise == pytest.approx(K * math.sqrt(2) * 0.01) and v.verdict == DETERIORATED
    v = compare([E({MALIGNANT: 0.3}), E({MALIGNANT: 0.31}, days=1)]).verdicts[MALIGNANT]
    assert v.verdict == NO_CHANGE


@pytest.mark.parametrize("after, reason", [
    ({"photo_type": "face"}, "different photo type"),
    ({"tone_bucket": "dark"}, "different skin-tone estimate"),
    ({"quality_flags": ("too_dark",)}, "one side only (too_dark)"),
])
def test_photo_differences_are_not_comparable(after, reason):
    result = compare(pair({MALIGNANT: 0.5}, {MALIGNANT: 0.1}, **after))
    assert not result.comparable and reason in result.reason
    v = result.verdicts[MALIGNANT]
    assert v.verdict == NOT_COMPARABLE and reason in v.reason and v.change == pytest.approx(-0.4)


def test_tone_buckets_read_two_ways_are_not_held_against_each_other():
    """A bucket that moved when the app changed how it reads the tone (``tone:reading`` in ``models``;
    none in an entry saved before it was kept) is no evidence of other light: the pair is compared,
    with a note. Read the same way, a moved bucket still makes the pair not comparable."""
    read = {"condition": "v1", TONE_READING: "t2"}
    old = E({MALIGNANT: 0.5}, {MALIGNANT: 0.01}, tone_bucket="medium")
    new = E({MALIGNANT: 0.1}, {MALIGNANT: 0.01}, days=30, tone_bucket="light", models=read)
    result = compare([old, new])
    assert result.comparable and result.reason == ""
    assert result.note.startswith("skin-tone estimates not compared (light vs medium)")
    assert result.verdicts[MALIGNANT].verdict == IMPROVED
    assert compare([old, replace(new, tone_bucket="medium")]).note == ""  # same bucket: nothing to say
    same_reading = compare([replace(old, models=read), new])
    assert not same_reading.comparable and "different skin-tone estimate" in same_reading.reason
    assert same_reading.note == ""
    assert compare([old, new]).to_dict()["note"] == result.note


def test_the_same_flag_on_both_sides_is_comparable():
    result = compare(pair({MALIGNANT: 0.5}, {MALIGNANT: 0.5}, quality_flags=("glare",)))
    assert not result.comparable  # first side has none
    a, b = E({MALIGNANT: 0.5}, quality_flags=("glare",)), E({MALIGNANT: 0.5}, days=3, quality_flags=("glare",))
    assert compare([a, b]).comparable


def test_a_score_missing_on_one_side_is_not_comparable_alone():
    result = compare(pair({MALIGNANT: 0.5, AGE: 30.0}, {MALIGNANT: 0.5}))
    assert result.comparable and result.verdicts[MALIGNANT].verdict == NO_CHANGE
    # an abstaining model is still scored (tests/test_service.py): a missing score means the model did not read it
    assert result.verdicts[AGE].verdict == NOT_COMPARABLE and "did not read" in result.verdicts[AGE].reason
    assert "abstained" not in result.verdicts[AGE].reason


def test_scores_of_an_updated_model_are_not_comparable_but_the_other_model_s_are():
    """A model update (new weights, another input framing) moves its scores by itself."""
    before = E({MALIGNANT: 0.2, AGE: 30.0}, {MALIGNANT: 0.01, AGE: 1.0})
    after = E({MALIGNANT: 0.6, AGE: 30.0}, {MALIGNANT: 0.01, AGE: 1.0}, days=30,
              models={"condition": "v1", "age": "v2"})
    result = compare([before, after])
    assert result.comparable and result.verdicts[MALIGNANT].verdict == DETERIORATED
    assert result.verdicts[AGE].verdict == NOT_COMPARABLE
    assert "2 versions of its model" in result.verdicts[AGE].reason


def test_an_entry_without_recorded_versions_is_compared_with_a_note():
    old = E({MALIGNANT: 0.2}, {MALIGNANT: 0.01}, models={})
    new = E({MALIGNANT: 0.6}, {MALIGNANT: 0.01}, days=30)
    verdict = compare([old, new]).verdicts[MALIGNANT]
    assert verdict.verdict == DETERIORATED
    assert verdict.reason.startswith("1 of 2 entries were saved before model versions were kept")


def test_a_pair_is_the_two_point_case_of_the_series_rule():
    change, sd = trend_change(np.array([0.0, 9.0]), np.array([0.2, 0.5]), np.array([0.03, 0.04]))
    assert change == pytest.approx(0.3) and sd == pytest.approx(0.05)


def test_series_trend_against_its_noise():
    rng = np.random.default_rng(0)
    days = np.arange(8) * 7.0
    steady_decline = 0.6 - 0.04 * days / 7 + rng.normal(0, 0.01, days.size)
    flat = 0.4 + np.array([1, -1] * 4) * 0.02  # alternating by its own σ: no trend
    series = [E({MALIGNANT: float(m), MEL: float(f)}, {MALIGNANT: 0.01, MEL: 0.02}, days=float(d))
              for d, m, f in zip(days, steady_decline, flat, strict=True)]
    v = compare(series).verdicts
    assert v[MALIGNANT].verdict == IMPROVED and v[MALIGNANT].change == pytest.approx(-0.28, abs=0.03)
    assert v[MEL].verdict == NO_CHANGE
    # the trend of 8 points is surer than a pair of its ends
    assert v[MALIGNANT].noise < K * math.sqrt(2) * 0.01
    series[3] = E({MALIGNANT: 0.5}, {MALIGNANT: 0.01}, days=21, tone_bucket="light")
    assert not compare(series).comparable


def test_retest_noise_measures_the_spread_over_variations():
    from PIL import Image

    rng = np.random.default_rng(1)
    photo = Image.fromarray(rng.integers(60, 200, (120, 160, 3), dtype=np.uint8))
    kinds = variations(photo)
    assert len(kinds) == 5 and all(v.mode == "RGB" for v in kinds)
    assert kinds[0].size == kinds[1].size == (160 - 2 * 6, 120 - 2 * 5)

    def brightness(image):
        return {"x:brightness": float(np.asarray(image).mean()) / 255, "x:constant": 0.5}

    noise = retest_noise(brightness, photo)
    values = [brightness(photo)["x:brightness"]] + [brightness(v)["x:brightness"] for v in kinds]
    assert noise["x:brightness"] == pytest.approx(np.std(values, ddof=1)) and noise["x:brightness"] > 0.005
    assert noise["x:constant"] == 0.0
    assert retest_noise(brightness, photo, first={"x:brightness": 0.0})["x:brightness"] > noise["x:brightness"]


def test_comparison_as_the_api_answers_it():
    d = compare(pair({MALIGNANT: 0.5}, {MALIGNANT: 0.1})).to_dict()
    assert d["comparable"] is True
    assert set(d["verdicts"][MALIGNANT]) == {"verdict", "change", "noise", "reason"}


def test_the_tone_reading_version_follows_what_the_reading_depends_on(monkeypatch):
    """The fingerprint a history entry keeps of the app's tone reading changes with the face framing and
    with skin.tone's settings, and only then."""
    import skin.faces
    import skin.tone
    from skin.service.views import tone_version

    base = tone_version()
    assert len(base) == 12 and tone_version() == base
    for module, name, value in ((skin.tone, "ITA_LIGHT_MIN", 40.0), (skin.tone, "CR_RANGE", (130, 173)),
                                (skin.tone, "LESION_CENTER_RADIUS", 0.3), (skin.faces, "CHIP_SIDE", 1.3)):
        with monkeypatch.context() as m:
            m.setattr(module, name, value)
            assert tone_version() != base, name
    assert tone_version() == base

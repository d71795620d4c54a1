"""app_markdown: the service's dicts drawn as the Markdown the page shows."""

from __future__ import annotations

import pytest

from app_markdown import examples_markdown, fairness_markdown, predictions_markdown, quality_markdown
from skin.reports import RunReport
from skin.service.cards import fairness_card
from skin.service.config import ExamplePhoto, ModelSpec
from skin.tasks import get_task
from tests.app_helpers import condition_report

RESULT = {
    "tasks": {
        "condition": {"title": "Skin condition (test)", "status": "ok", "abstained": False,
                      "top_k": [{"label": "nv", "probability": 0.81}, {"label": "mel", "probability": 0.12}]},
        "age": {"title": "Apparent age (test)", "status": "ok", "abstained": False, "estimate": 31.6,
                "group": "25-49", "group_probability": 0.7, "top_k": [{"label": "25-49", "probability": 0.7}]},
    },
    "quality": {"ok": True, "problems": []},
    "image": {"notes": []},
}


@pytest.fixture(scope="module")
def card():
    spec = ModelSpec(key="condition", task="condition_ham10000", model="cond", title="Skin condition (test)")
    return fairness_card(spec, get_task(spec.task), RunReport.from_dict(condition_report()), bucket="dark",
                         problem=None, model_card_url="model_card.md")


def test_predictions_answers():
    md = predictions_markdown(RESULT)
    assert "### Skin condition (test)" in md and "| nv | 81% |" in md
    assert "**Estimated age: 31 years** — age group **25-49** (probability 70%)" in md  # 31.6: years completed
    assert "Probabilities are calibrated" in md
    # a condition model always picks a condition: said once, under its own answer, not under the age
    condition, age = md.split("### Apparent age (test)")
    assert "it has no answer for healthy skin" in condition and "healthy" not in age


def test_predictions_show_a_class_name_where_the_task_has_one():
    result = {"tasks": {"clinical": {"title": "Clinical", "top_k": [
        {"label": "acne_rosacea", "name": "Acne & rosacea", "probability": 0.7}]}}}
    md = predictions_markdown(result)
    assert "| Acne & rosacea | 70% |" in md and "acne_rosacea" not in md


def test_predictions_abstained_unavailable_and_no_answer():
    tasks = {
        "a": {"title": "A", "abstained": True, "reason": "not confident: the most likely …", "top_k": [{"label": "x",
                                                                                        "probability": 0.3}]},
        "b": {"title": "B", "status": "unavailable", "abstained": True, "reason": "model 'b' is missing"},
        "c": {"title": "C", "status": "abstain", "abstained": True, "reason": "no face found: …"},
    }
    md = predictions_markdown({"tasks": tasks})
    assert "**No confident answer** — the most likely …" in md and "| x | 30% |" in md  # said once, not twice
    assert "### B\n⚠️ Not available: model 'b' is missing" in md
    assert "### C\n**No answer** — no face found: …" in md


def test_quality_problems_with_tips_and_file_notes():
    assert quality_markdown(RESULT).startswith("✅ **Photo quality: OK**")
    bad = {"quality": {"ok": False, "problems": [{"code": "too_dark", "message": "too dark", "tip": "use daylight"}]},
           "image": {"notes": ["converted from CMYK"]}}
    md = quality_markdown(bad)
    assert "❌ **Photo quality problems**" in md and "- too dark — *tip: use daylight*" in md
    assert "**About your file:** converted from CMYK." in md


def test_examples_with_licences_or_why_none(tmp_path):
    here = ExamplePhoto(str(tmp_path / "here.png"), "A lesion", "CC BY 4.0")
    gone = ExamplePhoto(str(tmp_path / "gone.png"), "Gone", "CC BY-NC 4.0")
    text = examples_markdown([here, gone], [here])
    assert "A lesion" in text and "CC BY 4.0" in text and "Gone" not in text
    assert "do not allow shipping" in examples_markdown([here, gone], []) and str(tmp_path) in examples_markdown(
        [here, gone], [])
    assert examples_markdown([], []) == ""


def test_fairness_card_table(card):
    md = fairness_markdown(card)
    assert ("Your photo's estimated skin tone: **dark** (ITA, three buckets: light > 41° ≥ medium > 10° ≥ dark;"
            in md)
    assert "| skin tone | test images (n) | balanced accuracy (higher is better) | 95 % CI |" in md
    assert "**▶ dark (you)** | 10 (thin data) |" in md
    light = next(r for r in card["rows"] if r["bucket"] == "light")
    assert f"| light | 110 | {light['value']:.2f} | {light['ci_low']:.2f}–{light['ci_high']:.2f} |" in md
    assert "> ⚠️ **thin data for dark skin" in md
    assert "Overall on the test set: balanced accuracy **0.42** (n = 160)." in md
    assert "[HAM10000](https://doi.org/10.7910/DVN/DBW86T) — licence: CC BY-NC-SA" in md


def test_fairness_card_confidence_note_is_below_the_table_not_a_row_of_it(card):
    """The note under the confidence column was written straight after the last row, so Markdown made it a
    sixth row (a long note squeezed into the first column: on a phone, a column of single words)."""
    rows = [{**r, "confidence": {"mean_confidence": 0.8, "accuracy": 0.75}} for r in card["rows"]]
    md = fairness_markdown({**card, "rows": rows})
    table_end = md.index("\n<sub>Confidence as the app answers")
    assert md[:table_end].rstrip().endswith("80% → 75% |") and md[table_end - 1] == "\n"  # a blank line first


def test_fairness_card_tta_other_groups_and_unknown_tone(card):
    assert ("test-time augmentation" in fairness_markdown(card)) is card["tta"]
    assert "test-time augmentation" in fairness_markdown({**card, "tta": True})
    other = {**card, "user_bucket": None, "measured": False,
             "other_groups": {"sex": [{"group": "male", "value": 0.5, "n": 12}, {"group": "female", "value": None,
                                                                                 "n": 0}]}}
    md = fairness_markdown(other)
    assert "could not be estimated" in md and "| skin tone |" not in md
    assert "- **sex**: male: 0.50 (n=12), female: – (n=0)" in md
    md = fairness_markdown({**other, "other_groups": {"age_group": [{"group": "0-24", "value": 3.5, "n": 592}]}})
    assert "- **age group**: 0-24: 3.50 (n=592)" in md  # a column name read as words
    md = fairness_markdown({**other, "other_groups": {"site": [
        {"group": "back", "value": 0.68, "ci_low": 0.6, "ci_high": 0.75, "n": 287, "small": False},
        {"group": "acral", "value": 1.0, "ci_low": None, "ci_high": None, "n": 1, "small": True}]}})
    assert "- **site**: back: 0.68 [0.60–0.75] (n=287), acral: 1.00 (n=1, *thin data*)" in md  # one photo: flagged


def test_every_refusal_reads_as_a_sentence():
    """A model that refuses a photo of another type, a quality refusal that already ends in a full stop, and an
    unavailable model: each reason closed by exactly one full stop (the routing reason ended "... yourself")."""
    from skin.phototype import PhotoType
    from skin.service.config import ModelSpec
    from skin.service.routing import routing_reason

    spec = ModelSpec(key="condition", task="condition_ham10000", model="default:condition", title="Condition")
    refusal = routing_reason(spec, PhotoType("clinical", {"clinical": 0.57}))
    md = predictions_markdown({"tasks": {
        "a": {"title": "A", "status": "abstain", "abstained": True, "reason": refusal},
        "b": {"title": "B", "status": "abstain", "abstained": True, "reason": "photo quality: Too dark."},
        "c": {"title": "C", "status": "unavailable", "abstained": True, "reason": "models/x has no report"}}})
    assert "Choose the photo type yourself.\n" in md + "\n" and "photo quality: Too dark.\n" in md
    assert md.rstrip().endswith("models/x has no report.") and ".." not in md


def test_out_of_scope_answer_ends_in_one_full_stop():
    """The routing message is a clause; the Markdown closes it (it read "... photo type yourself.." once)."""
    from skin.phototype import OUT_OF_SCOPE, PhotoType
    from skin.service.routing import out_of_scope_message

    kind = PhotoType(OUT_OF_SCOPE, {OUT_OF_SCOPE: 0.92})
    md = predictions_markdown({"photo_type": {"label": OUT_OF_SCOPE, "probability": 0.92,
                                              "message": out_of_scope_message(kind)}, "tasks": {}})
    assert md.endswith("Choose the photo type yourself.") and ".." not in md
    # a photo too dark to recognise: the answer points at the photo's own problem and its tips
    dark = predictions_markdown({"photo_type": {"label": OUT_OF_SCOPE, "probability": 0.92,
                                                "message": out_of_scope_message(kind)},
                                 "quality": {"ok": False, "problems": [{"code": "too_dark", "message":
                                             "The photo is too dark to see the skin's colour and texture."}]},
                                 "tasks": {}})
    assert dark.endswith("yourself. The photo itself may be why: The photo is too dark to see the skin's colour "
                         "and texture. Try the tips below, then analyse again.")


def test_cancer_classes_sum_under_the_answer_and_unreliable_when_abstained():
    task = {"title": "Clinical", "top_k": [{"label": "naevus", "name": "Naevus", "probability": 0.55}],
            "malignant": {"probability": 0.4, "classes": ["Basal / squamous cell carcinoma", "Melanoma"]}}
    md = predictions_markdown({"tasks": {"clinical": task}})
    line = next(x for x in md.split("\n") if "Cancer classes together" in x)
    assert "**Cancer classes together: 40%** (Basal / squamous cell carcinoma, Melanoma)" in line
    assert "unreliable" not in line and "seen by a doctor" in line
    assert md.index("| Naevus | 55% |") < md.index("Cancer classes together")  # under the answer
    abstained = {**task, "abstained": True, "reason": "not confident: …"}
    assert "as unreliable as the guesses above" in predictions_markdown({"tasks": {"clinical": abstained}})
    assert "Cancer classes" not in predictions_markdown(RESULT)  # none given: none shown


def test_fairness_card_missed_cancers_line(card):
    md = fairness_markdown(card)
    line = next(x for x in md.split("\n") if "Cancers the single answer missed" in x)
    dark = next(r for r in card["missed_cancers"]["rows"] if r["bucket"] == "dark")
    assert f"**▶ dark (you)** {dark['value']:.0%}" in line and "overall" in line
    assert "Cancers the single answer missed" not in fairness_markdown({**card, "missed_cancers": None})


def test_fairness_card_says_how_far_to_trust_its_intervals(card):
    md = fairness_markdown({**card, "ci_coverage": "How far to trust the intervals: …"})
    assert "<sub>How far to trust the intervals: …</sub>" in md
    assert md.index("| **▶ dark (you)**") < md.index("How far to trust")  # under the table
    assert "How far to trust" not in fairness_markdown({**card, "ci_coverage": None})


def test_fairness_card_says_how_much_of_the_gap_is_the_age_mix(card):
    md = fairness_markdown({**card, "age_mix": "Part of the gap between tones is the test photos' ages: …"})
    assert "<sub>Part of the gap between tones is the test photos' ages: …</sub>" in md
    assert md.index("| **▶ dark (you)**") < md.index("Part of the gap")  # under the table
    assert "Part of the gap" not in fairness_markdown({**card, "age_mix": None})

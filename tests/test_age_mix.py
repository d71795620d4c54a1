"""skin.age_mix: how much of an age model's MAE gap between tones is the test photos' ages, recorded per model
and stated on its cards."""

from __future__ import annotations

import json

import pytest

from skin.age_mix import AGE_MIX_PATH, AgeMixRecord, age_mix_sentence, read_age_mix, record_age_mix
from tests.bench_scripts import load_bench


def _entry(model: str = "default:age", gap: float = 1.28) -> AgeMixRecord:
    return AgeMixRecord(task="age_utkface", model=model, strata="ten-year bands", young_below=25,
                        young_share={"light": 0.45, "medium": 0.31, "dark": 0.19},
                        raw_mae={"light": 3.89, "medium": 4.88, "dark": 5.81},
                        standardised_mae={"light": 4.37, "medium": 4.93, "dark": 5.66},
                        raw_gap={"value": 1.93, "ci": [1.38, 2.54]},
                        standardised_gap={"value": gap, "ci": [0.67, 2.01]})


def test_record_round_trip_keeps_other_models(tmp_path):
    path = tmp_path / "age_mix.json"
    assert read_age_mix(path) == {}
    record_age_mix(_entry(), path)
    record_age_mix(_entry("my-age-model"), path)
    record_age_mix(_entry(gap=1.5), path)  # a new measurement replaces its model's entry
    entries = read_age_mix(path)
    assert set(entries) == {"default:age", "my-age-model"} and entries["default:age"].standardised_gap["value"] == 1.5


def test_sentence_gives_the_age_mix_the_standardised_maes_and_both_gaps(tmp_path):
    path = tmp_path / "age_mix.json"
    record_age_mix(_entry(), path)
    line = age_mix_sentence("default:age", path)
    assert "45% of the light bucket and 19% of the dark bucket are under 25" in line
    assert "light 4.37, medium 4.93, dark 5.66 years" in line
    assert "dark − light 1.28 years (95 % interval 0.67–2.01) instead of 1.93" in line
    assert age_mix_sentence("a-model-nobody-measured", path) is None


def test_a_record_of_another_schema_or_missing_fields_names_the_command(tmp_path):
    path = tmp_path / "age_mix.json"
    path.write_text(json.dumps({"schema_version": 0, "models": {}}))
    with pytest.raises(ValueError, match="age_tone_gap.py --record"):
        read_age_mix(path)
    path.write_text(json.dumps({"schema_version": 1, "models": {"m": {"task": "t", "model": "m"}}}))
    with pytest.raises(ValueError, match="lacks strata"):
        read_age_mix(path)


def test_bench_record_reads_the_ten_year_bands_of_its_result():
    """bench/age_tone_gap.py --record: the entry holds the bench's ten-year-band figures, the youngest group's
    edge from the task's age bins."""
    from skin.tasks import get_task

    bench = load_bench("age_tone_gap")
    tones = {t: {"raw_mae": r, "standardised_mae": 0.0, "standardised_mae_bands": s, "age_mix": [y, 0.5, 0.5 - y]}
             for t, r, s, y in (("light", 3.0, 3.5, 0.4), ("medium", 4.0, 4.0, 0.3), ("dark", 5.0, 4.5, 0.2))}
    gap = {"raw_mae": {"value": 2.0, "ci": [1.0, 3.0]}, "standardised_mae": {"value": 0.0, "ci": [0, 0]},
           "standardised_mae_bands": {"value": 1.0, "ci": [0.2, 1.8]}}
    entry = bench.age_mix_record({"model": "default:age", "tones": tones, "gaps": {"dark-light": gap}},
                                 get_task("age_utkface"))
    assert entry.young_below == 25 and entry.young_share == {"light": 0.4, "medium": 0.3, "dark": 0.2}
    assert entry.standardised_mae == {"light": 3.5, "medium": 4.0, "dark": 4.5}
    assert entry.standardised_gap == {"value": 1.0, "ci": [0.2, 1.8]} and entry.raw_gap["value"] == 2.0


def test_the_committed_record_matches_the_bench_result_and_the_age_card_states_it():
    from skin.reports import RunReport
    from skin.service.cards import fairness_card
    from skin.service.config import ModelSpec
    from skin.tasks import get_task

    root = AGE_MIX_PATH.parents[1]
    entry = read_age_mix(AGE_MIX_PATH)["default:age"]
    result = json.loads((root / "bench" / "results" / "age_tone_gap.json").read_text())
    assert entry.standardised_gap["value"] == pytest.approx(result["gaps"]["dark-light"]["standardised_mae_bands"]
                                                            ["value"])
    report = json.loads((root / "models" / "age" / "report.json").read_text())
    for t, mae in entry.raw_mae.items():  # the raw MAEs are the card's own
        assert mae == pytest.approx(report["fairness"]["tone_bucket_estimated"]["groups"][t]["mae"]["value"], abs=0.01)
    report = RunReport.from_dict(report)
    for ref, expected in (("default:age", entry.sentence()), ("elsewhere", None)):
        spec = ModelSpec(key="age", task="age_utkface", model=ref, title="age", input="face")
        card = fairness_card(spec, get_task(spec.task), report, bucket="dark", problem=None, model_card_url="m.md")
        assert card["age_mix"] == expected

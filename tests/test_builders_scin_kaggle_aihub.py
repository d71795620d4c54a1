"""SCIN, Kaggle skin-diseases and AI-Hub 71645 builders on tiny copies of their layouts.

The fixtures (``tests/fixtures_layouts.py``) write the publishers' exact file
names, CSV columns and JSON keys with 16x16 / 64x48 images; each dataset is
prepared once per module and checked through ``skin.data.load`` / ``info`` /
``main`` as a user would call them.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

from fixtures_layouts import (  # noqa: E402
    KAGGLE_FOLDERS,
    KAGGLE_PER_CLASS,
    SCIN_CASE_IDS,
    make_aihub,
    make_kaggle,
    make_scin,
)

from dataset_scripts.aihub import GRADE_MAPPING_PRESETS, as_reading, normalize_grade_mapping  # noqa: E402
from dataset_scripts.kaggle_skin_diseases import CLASSES as KAGGLE_CLASSES  # noqa: E402
from dataset_scripts.kaggle_skin_diseases import parse_class_folder  # noqa: E402
from dataset_scripts.scin import dermatologist_fitzpatrick, parse_fitzpatrick, parse_weighted_label  # noqa: E402
from skin import data as skin_data  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _rows(dsd) -> list[dict]:
    return [row for ds in dsd.values() for row in ds]


def _assert_no_group_leak(dsd) -> None:
    seen: dict[str, str] = {}
    for split, ds in dsd.items():
        for group in set(ds["group_id"]):
            assert seen.setdefault(group, split) == split, f"group {group} in {seen[group]} and {split}"


def _skip_reasons(skipped) -> dict[str, str]:
    return {os.path.basename(s["path"]): s["reason"] for s in skipped}


def _assert_skips(skipped, expected: dict[str, str]) -> None:
    reasons = _skip_reasons(skipped)
    for name, fragment in expected.items():
        assert name in reasons, f"{name} not reported as skipped"
        assert fragment in reasons[name], f"{name}: {reasons[name]!r} lacks {fragment!r}"


def _decode(image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image
    return Image.open(io.BytesIO(image["bytes"]) if image.get("bytes") else image["path"])


# -- SCIN ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scin(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scin")
    layout = make_scin(tmp)
    cache = str(tmp / "cache")
    summary = skin_data.info("scin", str(layout.data_dir), cache_dir=cache)
    dsd = skin_data.load("scin", str(layout.data_dir), cache_dir=cache)
    return layout, summary, dsd, tmp


def test_scin_info_counts_classes_and_skips(scin):
    layout, summary, dsd, _ = scin
    assert summary["classes"] == ["Acne", "Eczema", "Psoriasis", "Tinea"]
    assert sum(summary["splits"].values()) == layout.n_good
    assert all(summary["splits"][s] > 0 for s in ("train", "validation", "test"))
    assert sum(summary["class_counts"].values()) == layout.n_good
    _assert_skips(summary["skipped"], layout.skipped)
    # the unlabelled case yields one skip entry per image path, nothing for empty slots
    assert sum("no dermatologist label" in s["reason"] for s in summary["skipped"]) == 1
    assert set(summary["tone_buckets"]) <= {"light", "medium", "dark", "unknown"}


def test_scin_rows_keep_case_ids_and_groups(scin):
    layout, _, dsd, _ = scin
    rows = _rows(dsd)
    assert {r["group_id"] for r in rows} == {r["case_id"] for r in rows}
    assert all(r["group_id"] == r["case_id"] for r in rows)
    assert len({r["group_id"] for r in rows}) == layout.n_groups
    ids = {r["case_id"] for r in rows}
    assert "-8813617245231396417" in ids  # exactly as written, not a float
    assert "-9007199254740993" not in ids  # the unlabelled case
    assert ids <= set(SCIN_CASE_IDS)
    _assert_no_group_leak(dsd)


def test_scin_labels_weights_and_tones(scin):
    _, _, dsd, _ = scin
    names = dsd["train"].features["label"].names
    by_case: dict[str, list[dict]] = {}
    for r in _rows(dsd):
        by_case.setdefault(r["case_id"], []).append(r)
    c0 = by_case[SCIN_CASE_IDS[0]][0]
    assert names[c0["label"]] == "Eczema"
    assert json.loads(c0["condition_weights"]) == {"Eczema": 0.69, "Psoriasis": 0.31}
    assert c0["condition_weight"] == pytest.approx(0.69)
    # self FST1; dermatologists FST1, FST2 and an ungradable FST6 → lower median 1
    assert (c0["fitzpatrick_self"], c0["fitzpatrick_dermatologist"], c0["fitzpatrick"]) == (1, 1, 1)
    assert (c0["monk"], c0["monk_us"], c0["monk_india"]) == (1, 1, 4)
    assert (c0["tone_bucket"], c0["tone_source"]) == ("light", "dermatologist_fitzpatrick")
    assert c0["sex"] == "FEMALE" and "leg" in c0["body_parts"] and c0["race_ethnicity"] == ["white"]
    c1 = by_case[SCIN_CASE_IDS[1]][0]  # derm 2, 3, 6 all gradable → 3; no US Monk → India
    assert (c1["fitzpatrick_dermatologist"], c1["tone_bucket"]) == (3, "medium")
    assert (c1["monk_us"], c1["monk"]) == (None, 5)
    c2 = by_case[SCIN_CASE_IDS[2]][0]  # tie 0.5 / 0.5: the first listed wins
    assert names[c2["label"]] == "Tinea"
    c4 = by_case[SCIN_CASE_IDS[4]]  # bare image name in the CSV; no dermatologist FST
    assert len(c4) == 2
    assert (c4[0]["fitzpatrick_dermatologist"], c4[0]["fitzpatrick_self"], c4[0]["fitzpatrick"]) == (None, 5, 5)
    assert (c4[0]["fitzpatrick_source"], c4[0]["tone_source"], c4[0]["tone_bucket"]) == ("self", "monk_us", "medium")
    c5 = by_case[SCIN_CASE_IDS[5]]  # image_2_path empty: slots 1 and 3 only
    assert sorted(r["image_slot"] for r in c5) == [1, 3]
    assert {r["shot_type"] for r in c5} == {"CLOSE_UP", "AT_DISTANCE"}
    c6 = by_case[SCIN_CASE_IDS[6]][0]  # NONE_SELECTED self-report
    assert c6["fitzpatrick_self"] is None


def test_scin_rare_conditions_become_other(scin):
    layout, _, _, tmp = scin
    summary = skin_data.info("scin", str(layout.data_dir), cache_dir=str(tmp / "cache"), min_cases_per_class=4)
    assert summary["classes"] == ["Other", "Tinea"]
    assert sum(summary["class_counts"].values()) == layout.n_good


def test_scin_accepts_the_dataset_folder_itself(scin):
    layout, _, _, tmp = scin
    summary = skin_data.info("scin", str(layout.data_dir / "dataset"), cache_dir=str(tmp / "cache"))
    assert sum(summary["splits"].values()) == layout.n_good


def test_scin_parsers():
    assert parse_weighted_label("{'Eczema': 0.69, 'Psoriasis': 0.31}") == {"Eczema": 0.69, "Psoriasis": 0.31}
    assert parse_weighted_label("") == {}
    assert parse_weighted_label("__import__('os')") is None  # never evaluated
    assert parse_weighted_label("['Eczema']") is None
    assert [parse_fitzpatrick(x) for x in ("FST1", "FST6", "NONE_SELECTED", "NONE_IDENTIFIED", "", "7")] == [
        1, 6, None, None, None, None,
    ]  # fmt: skip
    row = {f"dermatologist_fitzpatrick_skin_type_label_{i}": v for i, v in zip((1, 2, 3), ("FST2", "FST5", "FST6"))}
    assert dermatologist_fitzpatrick(row) == 5
    row["dermatologist_gradable_for_fitzpatrick_skin_type_3"] = "NO"
    assert dermatologist_fitzpatrick(row) == 2


# -- Kaggle ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def kaggle(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kaggle")
    layout = make_kaggle(tmp)
    cache = str(tmp / "cache")
    summary = skin_data.info("kaggle", str(layout.data_dir), cache_dir=cache)
    dsd = skin_data.load("kaggle", str(layout.data_dir), cache_dir=cache)
    return layout, summary, dsd, tmp


def test_kaggle_classes_in_folder_number_order(kaggle):
    layout, summary, dsd, _ = kaggle
    assert summary["classes"] == KAGGLE_CLASSES
    assert summary["classes"][0] == "Eczema" and summary["classes"][9] == "Warts Molluscum and other Viral Infections"
    assert summary["classes"][1] == "Melanoma" and summary["classes"][2] == "Atopic Dermatitis"
    assert list(summary["class_counts"].values()) == KAGGLE_PER_CLASS
    assert sum(summary["splits"].values()) == layout.n_good
    assert all(summary["splits"][s] > 0 for s in ("train", "validation", "test"))
    _assert_skips(summary["skipped"], layout.skipped)
    assert ".DS_Store" not in _skip_reasons(summary["skipped"])


def test_kaggle_groups_are_file_stems(kaggle):
    layout, _, dsd, _ = kaggle
    rows = _rows(dsd)
    assert all(r["group_id"] == os.path.splitext(r["file_name"])[0] for r in rows)
    assert all(r["class_folder"] == KAGGLE_FOLDERS[r["label"]] for r in rows)
    assert all(r["file_name"].startswith(f"{r['label']}_") for r in rows)
    _assert_no_group_leak(dsd)


def test_kaggle_accepts_img_classes_itself(kaggle):
    layout, _, _, tmp = kaggle
    summary = skin_data.info("kaggle", str(layout.data_dir / "IMG_CLASSES"), cache_dir=str(tmp / "cache"))
    assert list(summary["class_counts"].values()) == KAGGLE_PER_CLASS


def test_kaggle_folder_names():
    parsed = [parse_class_folder(f) for f in KAGGLE_FOLDERS]
    assert parsed == [(i + 1, name) for i, name in enumerate(KAGGLE_CLASSES)]
    assert parse_class_folder("IMG_CLASSES") is None


# -- AI-Hub ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def aihub(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("aihub")
    layout = make_aihub(tmp)
    cache = str(tmp / "cache")
    summary = skin_data.info("aihub", str(layout.data_dir), cache_dir=cache)
    dsd = skin_data.load("aihub", str(layout.data_dir), cache_dir=cache)
    return layout, summary, dsd, tmp


def test_aihub_forehead_wrinkle_default(aihub):
    layout, summary, dsd, _ = aihub
    assert summary["classes"] == [str(g) for g in range(7)]
    assert sum(summary["splits"].values()) == layout.n_good
    assert all(summary["splits"][s] > 0 for s in ("train", "validation", "test"))
    _assert_skips(summary["skipped"], layout.skipped)
    rows = _rows(dsd)
    names = dsd["train"].features["label"].names
    assert {r["group_id"]: int(names[r["label"]]) for r in rows} == layout.extra["forehead_grades"]
    assert all(r["grade"] == int(names[r["label"]]) for r in rows)
    assert all(r["facepart"] == 1 and r["l_perocular_wrinkle"] is None for r in rows)
    _assert_no_group_leak(dsd)


def test_aihub_crops_to_bbox_and_counts_missing(aihub):
    layout, _, dsd, _ = aihub
    rows = _rows(dsd)
    missing = [r for r in rows if r["bbox_missing"]]
    assert [r["group_id"] for r in missing] == [layout.extra["bbox_missing_subject"]]
    assert _decode(missing[0]["image"]).size == layout.extra["image_size"]
    assert missing[0]["bbox"] is None
    cropped = next(r for r in rows if not r["bbox_missing"])
    assert _decode(cropped["image"]).size == layout.extra["crop_size"]


def test_aihub_er_reading_is_none(aihub):
    layout, _, dsd, _ = aihub
    by_subject = {r["group_id"]: r for r in _rows(dsd)}
    assert by_subject[layout.extra["er_subject"]]["eq_forehead_moisture"] is None
    assert by_subject["0001"]["eq_forehead_moisture"] == pytest.approx(50.0)
    assert by_subject["0001"]["eq_forehead_elasticity_R2"] == pytest.approx(0.653)
    assert by_subject["0001"]["eq_l_cheek_pore"] is None
    assert by_subject["0001"]["forehead_pigmentation"] == 0
    assert as_reading("Er") is None and as_reading("1.5") == 1.5


def test_aihub_bbox_missing_count_on_builder(aihub):
    layout, _, _, tmp = aihub
    builder = skin_data.get_builder("aihub", str(layout.data_dir), cache_dir=str(tmp / "cache"))
    builder.scan()
    assert builder.bbox_missing_count == 1


def test_aihub_grade_mapping_preset(aihub):
    layout, _, _, tmp = aihub
    cache = str(tmp / "cache")
    dsd = skin_data.load("aihub", str(layout.data_dir), cache_dir=cache, grade_mapping="forehead_aging_4")
    names = dsd["train"].features["label"].names
    assert names == ["1", "2", "3", "4"]
    preset = GRADE_MAPPING_PRESETS["forehead_aging_4"]
    assert preset == {0: 1, 1: 1, 2: 2, 3: 2, 4: 2, 5: 3, 6: 4}
    for r in _rows(dsd):
        assert int(names[r["label"]]) == preset[r["grade"]]


def test_aihub_grade_mapping_validation():
    assert normalize_grade_mapping({"0": "1", 1: 1}) == {0: 1, 1: 1}
    with pytest.raises(ValueError, match="forehead_aging_4"):
        normalize_grade_mapping("no_such_preset")


def test_aihub_other_region_task(aihub):
    layout, _, _, tmp = aihub
    summary = skin_data.info("aihub", str(layout.data_dir), cache_dir=str(tmp / "cache"), task="l_perocular_wrinkle")
    assert sum(summary["splits"].values()) == len(layout.extra["perocular_grades"])
    assert any(s["reason"] == "no l_perocular_wrinkle grade" for s in summary["skipped"])


def test_aihub_attribute_task_absent_is_explained(aihub):
    layout, _, _, tmp = aihub
    with pytest.raises(ValueError, match="region grades"):
        skin_data.info("aihub", str(layout.data_dir), cache_dir=str(tmp / "cache"), task="oil")


def test_aihub_attribute_task_when_present(tmp_path):
    layout = make_aihub(tmp_path, with_attributes=True)
    summary = skin_data.info("aihub", str(layout.data_dir), cache_dir=str(tmp_path / "cache"), task="oil")
    assert summary["classes"] == ["0", "1", "2", "3", "4"]
    # one whole-face JSON per subject with a usable image (the left-eye JSONs count the same subjects)
    assert sum(summary["splits"].values()) == len(layout.extra["perocular_grades"])
    assert any(s["reason"] == "no oil grade" for s in summary["skipped"])


# -- errors and CLI -----------------------------------------------------------------
@pytest.mark.parametrize(
    "name, layout_words",
    [("scin", "dataset/scin_cases.csv"), ("kaggle", "IMG_CLASSES"), ("aihub", "label/{equ}/{subject}")],
)
def test_cli_bad_data_dir_names_layout(tmp_path, capsys, name, layout_words):
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "readme.txt").write_text("not a dataset")
    for data_dir in (wrong, tmp_path / "absent"):
        code = skin_data.main(["info", name, "--data-dir", str(data_dir), "--cache-dir", str(tmp_path / "cache")])
        assert code == 2
        assert layout_words in capsys.readouterr().err


def test_cli_info_with_config(aihub, capsys):
    layout, _, _, tmp = aihub
    argv = ["info", "aihub", "--data-dir", str(layout.data_dir), "--cache-dir", str(tmp / "cache")]
    assert skin_data.main(argv + ["--config", "grade_mapping=forehead_aging_4"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["classes"] == ["1", "2", "3", "4"]


def test_cli_info_kaggle(kaggle, capsys):
    layout, _, _, tmp = kaggle
    argv = ["info", "kaggle", "--data-dir", str(layout.data_dir), "--cache-dir", str(tmp / "cache")]
    assert skin_data.main(argv) == 0
    assert json.loads(capsys.readouterr().out)["classes"] == KAGGLE_CLASSES


def test_fixture_images_are_small(scin, kaggle, aihub):
    for layout in (scin[0], kaggle[0], aihub[0]):
        sizes = [p.stat().st_size for p in Path(layout.data_dir).rglob("*") if p.suffix in (".jpg", ".png")]
        assert sizes and max(sizes) < 20_000

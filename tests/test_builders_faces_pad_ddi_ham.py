"""Builders for UTKFace, PAD-UFES-20, DDI and HAM10000 on tiny copies of their layouts.

Each builder is run through ``skin.data.load`` / ``skin.data.info`` on a fixture
from ``tests/layouts.py`` (real folder and column names, synthetic 16x16
images, one corrupt file each); the ``needs_shared_data`` tests run them on the
real subsets in ``../shared/data``.
"""

from __future__ import annotations

import os

import datasets
import pytest
from PIL import Image

import layouts
from dataset_scripts import ddi as ddi_mod
from dataset_scripts import pad_ufes20 as pad_mod
from dataset_scripts import utkface as utk_mod
from skin import data

MAKERS = {
    "ham10000": layouts.make_ham10000,
    "utkface": layouts.make_utkface,
    "pad_ufes20": layouts.make_pad_ufes20,
    "ddi": layouts.make_ddi,
}

pytestmark = pytest.mark.filterwarnings("ignore:The least populated class:UserWarning")


def _rows(dsd) -> list[dict]:
    """All rows of all splits, without decoding images, each with its split name."""
    out = []
    for split, ds in dsd.items():
        for row in ds.cast_column("image", datasets.Image(decode=False)):
            row["split"] = split
            out.append(row)
    return out


def _by_file(rows) -> dict[str, dict]:
    return {os.path.basename(r["image"]["path"]): r for r in rows}


def _assert_skipped(skipped, expected: dict[str, str]):
    for fragment, reason in expected.items():
        hits = [s for s in skipped if fragment in s["path"] and reason in s["reason"]]
        assert hits, f"expected {fragment!r} skipped for {reason!r}, got {skipped}"


@pytest.fixture(params=sorted(MAKERS))
def prepared(request, tmp_path):
    name = request.param
    layout = MAKERS[name](tmp_path)
    cache = str(tmp_path / "cache")
    dsd = data.load(name, layout.data_dir, cache_dir=cache)
    summary = data.info(name, layout.data_dir, cache_dir=cache)
    return name, layout, dsd, summary


# -- what every builder must do ---------------------------------------------------
def test_splits_groups_and_skips(prepared):
    name, layout, dsd, summary = prepared
    assert set(dsd) == {"train", "validation", "test"}, f"{name}: every split needs rows"
    assert all(ds.num_rows > 0 for ds in dsd.values())
    rows = _rows(dsd)
    assert len(rows) == layout.n_good
    split_of_group: dict[str, set] = {}
    for r in rows:
        split_of_group.setdefault(r["group_id"], set()).add(r["split"])
    assert len(split_of_group) == layout.n_groups
    leaking = {g: s for g, s in split_of_group.items() if len(s) > 1}
    assert not leaking, f"{name}: groups in two splits: {leaking}"
    _assert_skipped(summary["skipped"], layout.skipped)
    assert len(summary["skipped"]) == len(layout.skipped)
    assert summary["splits"] == {k: ds.num_rows for k, ds in dsd.items()}
    assert sum(summary["class_counts"].values()) == layout.n_good


def test_features_and_images_decode(prepared):
    name, layout, dsd, _ = prepared
    features = dsd["train"].features
    assert isinstance(features["label"], datasets.ClassLabel)
    assert features["group_id"] == datasets.Value("string")
    assert isinstance(features["image"], datasets.Image)
    for ds in dsd.values():
        assert ds.features == features
    im = dsd["test"][0]["image"]
    assert isinstance(im, Image.Image) and im.size == (layouts.SIDE, layouts.SIDE)
    has_tone = name in ("pad_ufes20", "ddi")
    assert all((k in features) == has_tone for k in ("fitzpatrick", "monk", "tone_bucket"))


def test_same_split_on_rerun(prepared, tmp_path):
    name, layout, dsd, _ = prepared
    again = data.load(name, layout.data_dir, cache_dir=str(tmp_path / "cache2"))
    first = {r["group_id"]: r["split"] for r in _rows(dsd)}
    second = {r["group_id"]: r["split"] for r in _rows(again)}
    assert first == second


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_wrong_folder_names_the_layout(name, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    cls = data.builder_class(name)
    with pytest.raises(ValueError, match="Expected") as err:
        data.load(name, empty, cache_dir=str(tmp_path / "cache"))
    assert cls.LAYOUT in str(err.value)


# -- HAM10000 -----------------------------------------------------------------------
def test_ham10000_columns(tmp_path):
    layout = layouts.make_ham10000(tmp_path)
    dsd = data.load("ham10000", layout.data_dir, cache_dir=str(tmp_path / "cache"))
    features = dsd["train"].features
    assert features["label"].names == ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    rows = _by_file(_rows(dsd))
    for lesion, image_id, dx, dx_type, age, sex, site in layout.extra["rows"]:
        row = rows.get(f"{image_id}.jpg")
        if row is None:
            continue  # the truncated one
        assert row["group_id"] == lesion and row["image_id"] == image_id
        assert features["label"].int2str(row["label"]) == dx
        assert row["malignant"] == (dx in {"akiec", "bcc", "mel"})
        assert row["age"] == (float(age) if age else None)
        assert row["dx_type"] == dx_type and row["sex"] == sex and row["site"] == site
    for lesion, images in layout.extra["lesion_images"].items():
        splits = {rows[f"{i}.jpg"]["split"] for i in images if f"{i}.jpg" in rows}
        assert len(splits) <= 1, f"lesion {lesion} split across {splits}"


# -- UTKFace --------------------------------------------------------------------------
def test_utkface_parse_name():
    fields, reason = utk_mod.parse_name("26_1_2_20170116174525125.jpg.chip.jpg")
    assert reason is None
    assert fields == {"stem": "26_1_2_20170116174525125", "age": 26, "gender": 1, "race": 2,
                      "datetime": "20170116174525125"}  # fmt: skip
    for bad, why in [
        ("39_1_20170116174525125.jpg.chip.jpg", "3 fields"),
        ("1_0_0_2_20170116174525125.jpg.chip.jpg", "5 fields"),
        ("26_1_5_20170116174525125.jpg.chip.jpg", "race 5"),
        ("26_3_2_20170116174525125.jpg.chip.jpg", "gender 3"),
        ("200_1_2_20170116174525125.jpg.chip.jpg", "age 200"),
        ("26_1__20170116174525125.jpg.chip.jpg", "not a number"),
        ("26_1_2_20170116174525125.jpg", "not a UTKFace file name"),
    ]:
        fields, reason = utk_mod.parse_name(bad)
        assert fields is None and why in reason, (bad, reason)


def test_utkface_age_groups():
    bins = utk_mod.AGE_BINS  # the builder's groups are skin.tasks' groups
    assert utk_mod.age_group_names(bins) == ["0-24", "25-49", "50-74", "75-99", "100+"]
    names = utk_mod.age_group_names(bins)
    assert [names[utk_mod.age_to_group(a, bins)] for a in (0, 24, 25, 49, 50, 99, 100, 116)] == [
        "0-24", "0-24", "25-49", "25-49", "50-74", "75-99", "100+", "100+"]  # fmt: skip


def test_utkface_labels_from_names(tmp_path):
    layout = layouts.make_utkface(tmp_path)
    dsd = data.load("utkface", layout.data_dir, cache_dir=str(tmp_path / "cache"))
    features = dsd["train"].features
    assert features["label"].names == ["0-24", "25-49", "50-74", "75-99", "100+"]
    assert features["age_group"].names == features["label"].names
    assert features["gender"].names == ["male", "female"]
    assert features["race"].names == ["White", "Black", "Asian", "Indian", "Others"]
    rows = _by_file(_rows(dsd))
    assert sorted(rows) == sorted(layout.extra["good"])
    for file, row in rows.items():
        age, gender, race, stamp = file[: -len(".jpg.chip.jpg")].split("_")
        assert (row["age"], row["gender"], row["race"], row["datetime"]) == (int(age), int(gender), int(race), stamp)
        assert row["label"] == row["age_group"]
        group = features["label"].int2str(row["label"])
        lo = int(group.split("-")[0].rstrip("+"))
        assert int(age) >= lo


def test_utkface_byte_copies_share_a_group(tmp_path):
    layout = layouts.make_utkface(tmp_path)
    original, copy = layout.extra["duplicate"]
    rows = _by_file(_rows(data.load("utkface", layout.data_dir, cache_dir=str(tmp_path / "c1"))))
    assert rows[original]["group_id"] == rows[copy]["group_id"]
    assert rows[original]["split"] == rows[copy]["split"]
    # the group id is the file stem up to the datetime: the first name in sorted order wins
    assert rows[copy]["group_id"] == min(original, copy)[: -len(".jpg.chip.jpg")]
    rows = _by_file(
        _rows(data.load("utkface", layout.data_dir, cache_dir=str(tmp_path / "c2"), group_duplicates=False))
    )
    assert rows[copy]["group_id"] == copy[: -len(".jpg.chip.jpg")]
    assert rows[original]["group_id"] != rows[copy]["group_id"]


def test_utkface_accepts_the_utkface_folder_itself(tmp_path):
    layout = layouts.make_utkface(tmp_path)
    outer = data.info("utkface", layout.data_dir, cache_dir=str(tmp_path / "c1"))
    inner = data.info("utkface", layout.data_dir / "UTKFace", cache_dir=str(tmp_path / "c2"))
    assert outer["splits"] == inner["splits"] and outer["class_counts"] == inner["class_counts"]
    assert len(outer["skipped"]) == len(inner["skipped"])


def test_utkface_custom_age_bins(tmp_path):
    layout = layouts.make_utkface(tmp_path)
    summary = data.info("utkface", layout.data_dir, cache_dir=str(tmp_path / "cache"), age_bins=[0, 18, 65])
    assert summary["classes"] == ["0-17", "18-64", "65+"]
    ages = layout.extra["ages"]
    assert summary["class_counts"] == {
        "0-17": sum(a < 18 for a in ages),
        "18-64": sum(18 <= a < 65 for a in ages),
        "65+": sum(a >= 65 for a in ages),
    }
    # ages below the first edge are skipped with the reason, not forced into a group
    summary = data.info("utkface", layout.data_dir, cache_dir=str(tmp_path / "cache2"), age_bins=[5, 50])
    assert sum(summary["class_counts"].values()) == sum(a >= 5 for a in ages)
    assert sum("below the first age bin" in s["reason"] for s in summary["skipped"]) == sum(a < 5 for a in ages)


@pytest.mark.parametrize("bins", [[], [25, 0], [0, 0, 10], "0,25", [0, 2.5], [-1, 10]])
def test_utkface_rejects_bad_age_bins(bins, tmp_path):
    layout = layouts.make_utkface(tmp_path)
    with pytest.raises(ValueError, match="age_bins"):
        data.load("utkface", layout.data_dir, cache_dir=str(tmp_path / "cache"), age_bins=bins)


# -- PAD-UFES-20 ------------------------------------------------------------------------
def test_pad_parse_fitzpatrick():
    assert [pad_mod.parse_fitzpatrick(t) for t in ("3.0", "1", "6.0", "", None, "0.0", "7.0", "2.5", "nan", "x")] == [
        3, 1, 6, None, None, None, None, None, None, None]  # fmt: skip


def test_pad_ufes20_columns(tmp_path):
    layout = layouts.make_pad_ufes20(tmp_path)
    dsd = data.load("pad_ufes20", layout.data_dir, cache_dir=str(tmp_path / "cache"))
    features = dsd["train"].features
    assert features["label"].names == ["ACK", "BCC", "MEL", "NEV", "SCC", "SEK"]
    rows = _by_file(_rows(dsd))
    columns = layouts.PAD_COLUMNS
    kept = [dict(zip(columns, r)) for r in layout.extra["kept"]]
    assert sorted(rows) == sorted(r["img_id"] for r in kept)
    n_unknown = 0
    for meta in kept:
        row = rows[meta["img_id"]]
        dx = meta["diagnostic"]
        assert features["label"].int2str(row["label"]) == dx
        assert row["malignant"] == (dx in {"BCC", "MEL", "SCC"})
        assert row["group_id"] == meta["patient_id"] and row["lesion_id"] == meta["lesion_id"]
        fst = int(float(meta["fitspatrick"])) if meta["fitspatrick"] else None
        n_unknown += fst is None
        assert row["fitzpatrick"] == fst and row["monk"] is None
        assert row["tone_bucket"] == (None if fst is None else ["light", "medium", "dark"][(fst - 1) // 2])
        assert row["age"] == float(meta["age"])
        assert row["sex"] == (meta["gender"].lower() or None)
        assert row["site"] == meta["region"].lower()
    assert n_unknown > 0, "the fixture must have empty fitspatrick values"
    # a patient's two lesions stay together
    by_patient: dict[str, set] = {}
    for row in rows.values():
        by_patient.setdefault(row["group_id"], set()).add(row["split"])
    assert all(len(s) == 1 for s in by_patient.values())


def test_pad_ufes20_missing_images_are_one_summary_entry(tmp_path):
    layout = layouts.make_pad_ufes20(tmp_path)
    summary = data.info("pad_ufes20", layout.data_dir, cache_dir=str(tmp_path / "cache"))
    missing = layout.extra["missing"]
    assert not any(m in s["path"] for s in summary["skipped"] for m in missing)
    entries = [s for s in summary["skipped"] if "no image file" in s["reason"]]
    assert len(entries) == 1 and f"({len(missing)} rows;" in entries[0]["reason"]
    assert entries[0]["images"] == len(missing)  # reports count every row, not one entry
    assert entries[0]["path"].rstrip("/\\").endswith("images")
    counts = data.skipped_images(summary["skipped"])
    assert counts["metadata rows with no image file"] == len(missing)


def test_pad_ufes20_counts_unlisted_images(tmp_path):
    layout = layouts.make_pad_ufes20(tmp_path)
    layouts.write_image(layout.data_dir / "images" / "PAT_999_9999_1.png", seed=1)
    summary = data.info("pad_ufes20", layout.data_dir, cache_dir=str(tmp_path / "cache"))
    entries = [s for s in summary["skipped"] if s["reason"].startswith("image files not listed")]
    assert len(entries) == 1 and entries[0]["images"] == 1 and "(1 of them)" in entries[0]["reason"]


# -- DDI ----------------------------------------------------------------------------------
def test_ddi_parsers():
    assert ddi_mod.parse_skin_tone("12") == ("I-II", "light")
    assert ddi_mod.parse_skin_tone("34.0") == ("III-IV", "medium")
    assert ddi_mod.parse_skin_tone(" 56 ") == ("V-VI", "dark")
    assert ddi_mod.parse_skin_tone("78") is None and ddi_mod.parse_skin_tone("") is None
    assert [ddi_mod.parse_bool(t) for t in ("TRUE", "True", "true", "FALSE", "false", "", "1")] == [
        True, True, True, False, False, None, None]  # fmt: skip


@pytest.mark.parametrize("index_column", [False, True])
def test_ddi_columns(index_column, tmp_path):
    layout = layouts.make_ddi(tmp_path, index_column=index_column)
    dsd = data.load("ddi", layout.data_dir, cache_dir=str(tmp_path / "cache"))
    features = dsd["train"].features
    assert features["label"].names == ["benign", "malignant"]
    rows = _by_file(_rows(dsd))
    assert len(rows) == layout.n_good
    pairs = {"12": ("I-II", "light"), "34": ("III-IV", "medium"), "56": ("V-VI", "dark")}
    for ddi_id, file, tone, malignant, disease in layout.extra["kept"]:
        row = rows[file]
        is_malignant = malignant.lower() == "true"
        assert row["malignant"] is is_malignant
        assert features["label"].int2str(row["label"]) == ("malignant" if is_malignant else "benign")
        assert row["disease"] == disease
        assert row["group_id"] == ddi_id == row["ddi_id"]
        assert (row["fst_group"], row["tone_bucket"]) == pairs[tone]
        assert row["fitzpatrick"] is None and row["monk"] is None
    # stratified by label x tone: every split has every tone
    for split in dsd:
        assert {r["tone_bucket"] for r in rows.values() if r["split"] == split} == {"light", "medium", "dark"}


# -- the real subsets in ../shared/data ----------------------------------------------------
@pytest.mark.needs_shared_data
def test_real_ham10000(shared_data, tmp_path):
    summary = data.info("ham10000", shared_data / "ham10000", cache_dir=str(tmp_path / "cache"))
    assert sum(summary["splits"].values()) == 8473
    assert summary["classes"] == ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    assert all(summary["class_counts"][c] > 0 for c in summary["classes"])
    assert summary["skipped"] == []
    assert min(summary["splits"].values()) > 1000


@pytest.mark.needs_shared_data
def test_real_utkface(shared_data, tmp_path):
    folder = shared_data / "utkface" / "UTKFace"
    n_files = len(os.listdir(folder))
    assert n_files == 14109
    builder = data.get_builder("utkface", shared_data / "utkface", cache_dir=str(tmp_path / "cache"))
    builder.download_and_prepare()  # a fresh cache: the builder records what it skipped
    dsd, skipped = builder.as_dataset(), builder.skipped
    # Recorded on the shared subset: 3 names with a field missing, nothing else.
    assert [os.path.basename(s["path"]) for s in skipped] == [
        "39_1_20170116174525125.jpg.chip.jpg",
        "61_1_20170109142408075.jpg.chip.jpg",
        "61_1_20170109150557335.jpg.chip.jpg",
    ]
    assert all("3 fields, expected 4" in s["reason"] for s in skipped)
    assert sum(ds.num_rows for ds in dsd.values()) == n_files - len(skipped) == 14106
    # byte-identical copies under two names share a group, hence a split
    split_of = {}
    for split, ds in dsd.items():
        for g in ds["group_id"]:
            split_of.setdefault(g, set()).add(split)
    assert all(len(s) == 1 for s in split_of.values())
    # recorded: 136 contents occur under 277 names (pairs and a few triples), so 141 fewer groups
    assert len(split_of) == 14106 - 141


@pytest.mark.needs_shared_data
def test_real_pad_ufes20(shared_data, tmp_path):
    summary = data.info("pad_ufes20", shared_data / "pad_ufes20", cache_dir=str(tmp_path / "cache"))
    assert sum(summary["splits"].values()) == 37
    assert summary["classes"] == ["ACK", "BCC", "MEL", "NEV", "SCC", "SEK"]
    assert len(summary["skipped"]) == 1
    assert summary["skipped"][0]["reason"].startswith("metadata rows with no image file (2261 rows;")
    assert summary["skipped"][0]["images"] == 2261
    assert summary["tone_buckets"]["unknown"] == 8  # empty fitspatrick in the subset


@pytest.mark.parametrize(
    "name,maker,csv_name",
    [("pad_ufes20", layouts.make_pad_ufes20, "metadata.csv"), ("ddi", layouts.make_ddi, "ddi_metadata.csv")],
)
def test_csv_without_the_columns_is_refused(name, maker, csv_name, tmp_path):
    layout = maker(tmp_path)
    (layout.data_dir / csv_name).write_text("id,file\n1,a.png\n")
    with pytest.raises(ValueError, match="lacks column"):
        data.load(name, layout.data_dir, cache_dir=str(tmp_path / "cache"))

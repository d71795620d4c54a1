"""DermNet builder: grouping tables, near-duplicate clusters and leak-free splits.

On the fixture (``layouts.make_dermnet``: photo-like JPEGs in DermNet's
layout with a cropped + recoloured copy, a byte copy in another folder,
consecutive numbers and bad files) and, when ``../shared/data`` is present, on
the real folder, where every pair the hash rule finds (recomputed here) and
every pair of neighbouring numbers must lie in one split.
"""

from __future__ import annotations

import json
import os
import re

import datasets
import imagehash
import numpy as np
import pytest
from PIL import Image

import layouts
from dataset_scripts import dermnet
from dataset_scripts import dermnet_groupings as groupings
from dataset_scripts.kaggle_skin_diseases import CLASSES as KAGGLE_CLASSES
from skin import data
from skin import near_duplicates as nd

pytestmark = pytest.mark.filterwarnings("ignore:The least populated class:UserWarning")


# -- the grouping tables ---------------------------------------------------------------
def test_fine_has_the_64_folders_and_clinical_covers_all_but_three():
    assert len(groupings.FOLDERS) == 64 == len(groupings.FINE)
    covered = set(groupings.folder_classes("clinical"))
    assert set(groupings.FOLDERS) - covered == {"Alopecia areata", "Keratosis pilaris", "Urticaria"}


@pytest.mark.parametrize("grouping", sorted(groupings.GROUPINGS))
def test_every_grouping_is_one_consistent_table(grouping):
    table = groupings.GROUPINGS[grouping]
    seen = []
    for cls, spec in table.items():
        assert isinstance(spec.malignant, bool) and spec.name, cls
        assert set(spec.folders) <= set(groupings.FOLDERS), cls
        seen += spec.folders
    assert len(seen) == len(set(seen)), "a folder is in two classes"
    # a folder's malignancy never changes with the grouping
    clinical = groupings.folder_classes("clinical")
    for cls, spec in table.items():
        for folder in spec.folders:
            if folder in clinical:
                assert spec.malignant == groupings.CLINICAL[clinical[folder]].malignant, (grouping, folder)


def test_clinical_classes_are_snake_case_and_flag_the_cancers():
    assert len(groupings.CLINICAL) >= 10
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", c) for c in groupings.CLINICAL)
    assert {c for c, spec in groupings.CLINICAL.items() if spec.malignant} == {"bcc_scc", "melanoma"}
    assert groupings.DEFAULT_GROUPING == "clinical" == dermnet.DermNet.DEFAULT_CONFIG_NAME


def test_kaggle10_names_are_the_kaggle_builders():
    assert list(groupings.KAGGLE10) == KAGGLE_CLASSES
    assert all(spec.name == cls for cls, spec in groupings.KAGGLE10.items())


# -- hashing ---------------------------------------------------------------------------
def test_batch_phash_is_imagehash_phash(tmp_path):
    """The batched pHash agrees with ``imagehash.phash`` on every view (Pillow rounds its resize to 8 bits)."""
    diffs = []
    for seed in range(8):
        thumb = nd.thumbnail(layouts.write_skin_photo(tmp_path / f"{seed}.jpg", seed, size=(256, 192)))
        ours = nd.phash_views(thumb[None])[0]
        image = Image.fromarray(thumb)
        for box, h in zip(nd.view_boxes(), ours):
            ref = int(str(imagehash.phash(image.crop(box))), 16)
            diffs.append(int(np.bitwise_count(np.uint64(ref) ^ h)))
    assert max(diffs) <= 4 and np.mean(diffs) < 1


@pytest.mark.parametrize(
    "name,parsed",
    [("scabies-013.jpg", ("scabies-", 13, "")), ("2384-small.jpg", ("", 2384, "-small")),
     ("acne-face-1-27.jpg", ("acne-face-1-", 27, "")), ("Hidrad5.JPG", ("hidrad", 5, "")),
     ("big-melanoma.jpg", None)],
)  # fmt: skip
def test_name_number(name, parsed):
    assert nd.name_number(name) == parsed


def test_neighbour_pairs_stay_in_their_folder():
    folders = ["A", "A", "A", "B", "A"]
    names = ["x-9.jpg", "x-10.jpg", "x-12.jpg", "x-11.jpg", "y-11.jpg"]
    assert nd.neighbour_pairs(folders, names).tolist() == [[0, 1]]


# -- the builder on the fixture -----------------------------------------------------------
@pytest.fixture(scope="module")
def fixture_layout(tmp_path_factory):
    return layouts.make_dermnet(tmp_path_factory.mktemp("dermnet"))


@pytest.fixture(scope="module")
def prepared(fixture_layout, tmp_path_factory):
    """The default (clinical) grouping, prepared once: ``(builder, DatasetDict, rows by relative path)``."""
    builder = data.get_builder("dermnet", fixture_layout.data_dir, cache_dir=str(tmp_path_factory.mktemp("cache")))
    builder.download_and_prepare()
    dsd = builder.as_dataset()
    return builder, dsd, _rows_by_path(dsd, fixture_layout.data_dir)


def _rows_by_path(dsd, data_dir) -> dict[str, dict]:
    rows = {}
    base = os.path.join(str(data_dir), "images")
    for split, ds in dsd.items():
        for row in ds.cast_column("image", datasets.Image(decode=False)):
            rows[os.path.relpath(row["image"]["path"], base)] = {**row, "split": split}
    return rows


def test_fixture_rows_columns_and_skips(fixture_layout, prepared):
    builder, dsd, rows = prepared
    assert builder.config.name == "clinical"
    assert len(rows) == fixture_layout.n_good
    assert len({r["group_id"] for r in rows.values()}) == fixture_layout.n_groups
    features = next(iter(dsd.values())).features
    assert features["label"].names == list(groupings.CLINICAL)
    row = rows["Basal cell carcinoma/bcc1.jpg"]
    assert features["label"].int2str(row["label"]) == "bcc_scc" and row["malignant"] is True
    assert row["condition"] == "Basal cell carcinoma"
    assert row["fitzpatrick"] is None and row["monk"] is None and row["tone_bucket"] is None
    assert re.fullmatch(r"[0-9a-f]{16}", row["phash"]) and len(row["phash_crops"]) == len(nd.CROP_ANCHORS)
    assert rows["Vitiligo/vitiligo-02.jpg"]["malignant"] is False
    reasons = {os.path.basename(os.path.normpath(s["path"])): s["reason"] for s in builder.skipped}
    assert set(reasons) == set(fixture_layout.skipped)
    for name, fragment in fixture_layout.skipped.items():
        assert fragment in reasons[name], (name, reasons[name])
    assert "(1 images)" in reasons["Urticaria"]


def test_fixture_copies_and_neighbours_share_a_group_and_a_split(fixture_layout, prepared):
    _, _, rows = prepared
    pairs = [fixture_layout.extra["near_copy"], fixture_layout.extra["byte_copy"], *fixture_layout.extra["neighbours"]]
    for a, b in pairs:
        assert rows[a]["group_id"] == rows[b]["group_id"], (a, b)
        assert rows[a]["split"] == rows[b]["split"], (a, b)
    # the group id is the first member in sorted order
    assert rows["Acne vulgaris/143.jpg"]["group_id"] == "Acne vulgaris/141.jpg"
    splits_of_group = {}
    for r in rows.values():
        splits_of_group.setdefault(r["group_id"], set()).add(r["split"])
    assert all(len(s) == 1 for s in splits_of_group.values())
    assert {r["split"] for r in rows.values()} == {"train", "validation", "test"}


def test_fixture_report(fixture_layout, prepared):
    builder, _, _ = prepared
    report = builder.near_duplicates
    assert report.images == fixture_layout.extra["n_images"]  # every readable image, any grouping
    assert report.pairs == {"phash": 2, "neighbour_numbers": 3}
    assert report.merged_by_rule == {"phash": 2, "neighbour_numbers": 3}
    assert report.merged == 5 and report.largest == 4 and report.phash_threshold == nd.PHASH_THRESHOLD


def test_fixture_other_groupings(fixture_layout, tmp_path):
    for grouping, n_classes in (("fine", 64), ("kaggle10", 10)):
        dsd = data.load("dermnet", fixture_layout.data_dir, cache_dir=str(tmp_path / grouping), config_name=grouping)
        names = next(iter(dsd.values())).features["label"].names
        assert len(names) == n_classes
        rows = _rows_by_path(dsd, fixture_layout.data_dir)
        to_class = groupings.folder_classes(grouping)
        for path, row in rows.items():
            assert names[row["label"]] == to_class[row["condition"]]
            assert row["malignant"] == groupings.GROUPINGS[grouping][to_class[row["condition"]]].malignant
    # kaggle10 leaves out acne, impetigo, actinic keratosis, vitiligo, urticaria (and BKL has no folder)
    assert "Acne vulgaris/141.jpg" not in rows and "Atopic dermatitis/acne-copy.jpg" in rows


def test_folder_labels_keep_the_groupings_photos_and_splits(fixture_layout, prepared, tmp_path):
    """``folder_labels``: each photo labelled with its folder, in the same split as under its grouping,
    and the task that trains on it names the malignant folders."""
    from skin.tasks import get_task

    task = get_task("condition_dermnet_folders")
    dsd = data.load("dermnet", fixture_layout.data_dir, cache_dir=str(tmp_path), **task.data_config)
    names = task.labels(next(iter(dsd.values())).features)
    assert names == sorted(groupings.folder_classes("clinical"))
    rows, clinical = _rows_by_path(dsd, fixture_layout.data_dir), prepared[2]
    assert rows.keys() == clinical.keys()
    for path, row in rows.items():
        assert names[row["label"]] == row["condition"] == clinical[path]["condition"]
        assert row["split"] == clinical[path]["split"], path
    malignant = {f for f, c in groupings.folder_classes("clinical").items() if groupings.CLINICAL[c].malignant}
    assert set(task.malignant) == malignant and "Melanoma" in malignant and "Basal cell carcinoma" in malignant



@pytest.mark.parametrize("config_name", [None, "fine"])
@pytest.mark.parametrize("key", ["folder_labels", "neighbour_numbers"])
def test_bad_option_values_are_refused_with_a_predefined_grouping(fixture_layout, tmp_path, key, config_name):
    """``datasets`` sets options given with a predefined config by ``setattr``: the builder still checks them."""
    named = {"config_name": config_name} if config_name else {}
    with pytest.raises(ValueError, match=f"{key} must be true or false, got 'no'"):
        data.get_builder("dermnet", fixture_layout.data_dir, cache_dir=str(tmp_path), **named, **{key: "no"})


def test_neighbour_numbers_can_be_switched_off(fixture_layout, tmp_path):
    builder = data.get_builder(
        "dermnet", fixture_layout.data_dir, cache_dir=str(tmp_path), neighbour_numbers=False
    )
    builder.download_and_prepare()
    rows = _rows_by_path(builder.as_dataset(), fixture_layout.data_dir)
    assert rows["Impetigo/impetigo6.jpg"]["group_id"] != rows["Impetigo/impetigo7.jpg"]["group_id"]
    a, b = fixture_layout.extra["near_copy"]
    assert rows[a]["group_id"] == rows[b]["group_id"]
    assert "neighbour_numbers" not in builder.near_duplicates.pairs


def test_info_cli_reports_clusters_and_unknown_grouping_exits_2(fixture_layout, tmp_path, capsys):
    argv = ["info", "dermnet", "--data-dir", str(fixture_layout.data_dir), "--cache-dir", str(tmp_path)]
    assert data.main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["near_duplicates"]["merged"] == 5
    assert summary["skipped_by_reason"]["condition not in the clinical grouping"] == 1
    assert data.main(argv) == 0  # from the cache: the folder is scanned again for the report
    assert json.loads(capsys.readouterr().out)["near_duplicates"] == summary["near_duplicates"]
    assert data.main(argv + ["--config", "config_name=fine"]) == 0
    assert len(json.loads(capsys.readouterr().out)["classes"]) == 64
    assert data.main(argv + ["--config", "config_name=coarse"]) == 2
    err = capsys.readouterr().err
    assert "'coarse' not found" in err and "clinical" in err


def test_wrong_folder_names_the_layout(tmp_path, capsys):
    code = data.main(["info", "dermnet", "--data-dir", str(tmp_path), "--cache-dir", str(tmp_path / "c")])
    assert code == 2 and "images/<Condition name>" in capsys.readouterr().err


# -- the real folder ------------------------------------------------------------------------
@pytest.mark.needs_shared_data
def test_real_dermnet_no_near_duplicate_pair_straddles_splits(shared_data, tmp_path):
    folder = shared_data / "dermnet"
    builder = data.get_builder("dermnet", folder, cache_dir=str(tmp_path / "cache"))
    builder.download_and_prepare()
    dsd = builder.as_dataset()
    rows = _rows_by_path(dsd, folder)
    assert len(rows) == 3146 - 47 - 37 - 29  # Alopecia areata, Keratosis pilaris, Urticaria left out
    assert sorted(os.path.basename(os.path.normpath(s["path"])) for s in builder.skipped) == [
        "Alopecia areata", "Keratosis pilaris", "Urticaria"]  # fmt: skip
    # every class in every split
    for split, ds in dsd.items():
        assert set(ds["label"]) == set(range(len(groupings.CLINICAL))), split
    # the rule, recomputed here from the files: hash pairs and neighbouring numbers
    paths = sorted(rows)
    hashes = nd.hash_files([folder / "images" / p for p in paths])
    assert nd.to_hex(hashes[:, 0]) == [rows[p]["phash"] for p in paths]  # the cached column
    pairs = np.concatenate([nd.hash_pairs(hashes), nd.neighbour_pairs(*zip(*(p.split("/") for p in paths)))])
    assert len(pairs) > 2000
    straddling = [(paths[i], paths[j]) for i, j in pairs if rows[paths[i]]["split"] != rows[paths[j]]["split"]]
    assert straddling == []
    report = builder.near_duplicates
    assert report.images == 3146 and report.merged > 2000  # recorded: 2375 of 3146 merged

"""``python -m skin.data info | export`` on tiny fixture layouts.

``info`` must print JSON with the documented keys, a wrong ``--data-dir`` must
exit with status 2 and name the expected layout, and ``export`` must write
Parquet that ``datasets.load_dataset("parquet", data_dir=out)`` reads back with
the same features, the same rows and decodable images.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
from PIL import Image

import layouts
from skin import data

REPO_ROOT = Path(__file__).resolve().parents[1]
INFO_KEYS = {"splits", "classes", "class_counts", "tone_buckets", "skipped"}

pytestmark = pytest.mark.filterwarnings("ignore:The least populated class:UserWarning")


def _run_main(argv, capsys) -> tuple[int, str, str]:
    code = data.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_info_prints_json(tmp_path, capsys):
    layout = layouts.make_pad_ufes20(tmp_path)
    code, out, err = _run_main(
        ["info", "pad_ufes20", "--data-dir", layout.data_dir, "--cache-dir", tmp_path / "cache"], capsys
    )
    assert code == 0, err
    summary = json.loads(out)
    assert INFO_KEYS <= set(summary)
    assert set(summary["splits"]) == {"train", "validation", "test"}
    assert sum(summary["splits"].values()) == layout.n_good
    assert summary["classes"] == ["ACK", "BCC", "MEL", "NEV", "SCC", "SEK"]
    assert sum(summary["class_counts"].values()) == layout.n_good
    assert set(summary["tone_buckets"]) <= {"light", "medium", "dark", "unknown"}
    assert sum(summary["tone_buckets"].values()) == layout.n_good
    # an entry standing for many files or metadata rows counts them under "images"
    assert all({"path", "reason"} <= set(s) <= {"path", "reason", "images"} for s in summary["skipped"])
    assert sum(s.get("images", 1) for s in summary["skipped"]) == len(layout.extra["missing"]) + 1  # + a truncated PNG


def test_info_without_tone_labels(tmp_path, capsys):
    layout = layouts.make_ham10000(tmp_path)
    code, out, err = _run_main(
        ["info", "ham10000", "--data-dir", layout.data_dir, "--cache-dir", tmp_path / "cache"], capsys
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["tone_buckets"] is None
    assert [os.path.basename(s["path"]) for s in summary["skipped"]] == list(layout.skipped)
    # the estimated tone exists for every builder (noise images: mostly no skin, "unknown")
    assert set(summary["tone_buckets_estimated"]) <= {"light", "medium", "dark", "unknown"}
    assert sum(summary["tone_buckets_estimated"].values()) == layout.n_good


def test_info_config_option(tmp_path, capsys):
    layout = layouts.make_utkface(tmp_path)
    argv = ["info", "utkface", "--data-dir", layout.data_dir, "--cache-dir", tmp_path / "cache"]
    code, out, err = _run_main(argv + ["--config", "age_bins=[0, 18, 65]"], capsys)
    assert code == 0, err
    assert json.loads(out)["classes"] == ["0-17", "18-64", "65+"]
    code, out, err = _run_main(argv + ["--config", "age_bins=[65, 18]"], capsys)
    assert code == 2 and "age_bins" in err


@pytest.mark.parametrize("name", ["ham10000", "utkface", "pad_ufes20", "ddi"])
def test_bad_data_dir_exits_2_naming_the_layout(name, tmp_path, capsys):
    cls = data.builder_class(name)
    missing = tmp_path / "nowhere"
    code, out, err = _run_main(["info", name, "--data-dir", missing, "--cache-dir", tmp_path / "cache"], capsys)
    assert code == 2
    assert err.startswith("error:") and cls.LAYOUT in err and "does not exist" in err
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "something.txt").write_text("not a dataset")
    code, out, err = _run_main(["info", name, "--data-dir", wrong, "--cache-dir", tmp_path / "cache"], capsys)
    assert code == 2 and cls.LAYOUT in err
    assert out == ""


def test_subprocess_info(tmp_path):
    """One real ``python -m skin.data`` process: the module runs and exits cleanly."""
    layout = layouts.make_ddi(tmp_path)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "-m", "skin.data", "info", "ddi", "--data-dir", str(layout.data_dir),
         "--cache-dir", str(tmp_path / "cache")],  # fmt: skip
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert INFO_KEYS <= set(summary)
    assert summary["classes"] == ["benign", "malignant"]
    assert summary["tone_buckets"] == {"dark": 10, "light": 9, "medium": 10}

    proc = subprocess.run(
        [sys.executable, "-m", "skin.data", "info", "ddi", "--data-dir", str(tmp_path / "nowhere")],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2 and "ddi_metadata.csv" in proc.stderr


@pytest.mark.parametrize("name", ["pad_ufes20", "utkface"])
def test_export_round_trip(name, tmp_path, capsys):
    layout = {"pad_ufes20": layouts.make_pad_ufes20, "utkface": layouts.make_utkface}[name](tmp_path)
    out_dir = tmp_path / "parquet"
    cache = str(tmp_path / "cache")
    code, out, err = _run_main(
        ["export", name, "--data-dir", layout.data_dir, "--cache-dir", cache, "--out", out_dir], capsys
    )
    assert code == 0, err
    written = json.loads(out)["written"]
    assert sorted(os.path.basename(p) for p in written) == [
        f"{s}-00000-of-00001.parquet" for s in ("test", "train", "validation")
    ]
    original = data.load(name, layout.data_dir, cache_dir=cache)
    back = datasets.load_dataset("parquet", data_dir=str(out_dir), cache_dir=str(tmp_path / "cache_parquet"))
    assert set(back) == set(original)
    for split in original:
        assert back[split].features == original[split].features
        assert back[split].num_rows == original[split].num_rows
        plain = [c for c in original[split].column_names if c != "image"]
        assert back[split].select_columns(plain).to_list() == original[split].select_columns(plain).to_list()
        for a, b in zip(back[split]["image"], original[split]["image"]):
            assert isinstance(a, Image.Image) and a.size == b.size
            assert a.convert("RGB").tobytes() == b.convert("RGB").tobytes()
    # embedded, not paths: the export survives the source folder
    assert back["train"].cast_column("image", datasets.Image(decode=False))[0]["image"]["bytes"]
    shutil.rmtree(layout.data_dir)
    again = datasets.load_dataset("parquet", data_dir=str(out_dir), cache_dir=str(tmp_path / "cache_parquet2"))
    assert again["test"][0]["image"].size == (layouts.SIDE, layouts.SIDE)


def test_export_refuses_a_folder_holding_other_files(tmp_path, capsys):
    """``load_dataset("parquet", data_dir=OUT)`` and ``--push_to_hub`` take in whatever the folder holds (here a
    model export: its card and weights would be pushed into the dataset repository): such a folder is refused
    before any work; a folder an earlier export wrote is overwritten."""
    layout = layouts.make_pad_ufes20(tmp_path)
    out_dir = tmp_path / "parquet"
    (out_dir / "merged").mkdir(parents=True)
    (out_dir / "README.md").write_text("# a model card\n")
    args = ["export", "pad_ufes20", "--data-dir", layout.data_dir, "--cache-dir", tmp_path / "cache",
            "--out", out_dir]
    code, out, err = _run_main(args, capsys)
    assert code == 2 and "holds other files (README.md, merged)" in err and "new or empty folder" in err
    assert sorted(os.listdir(out_dir)) == ["README.md", "merged"]  # nothing written
    shutil.rmtree(out_dir / "merged")
    (out_dir / "README.md").unlink()
    assert _run_main(args, capsys)[0] == 0
    assert _run_main(args, capsys)[0] == 0  # again over its own shards


def test_info_reports_skips_on_a_cache_hit_too(tmp_path):
    """The second call finds the prepared cache and must still list the skipped files."""
    from skin.data import info

    from tests.layouts import make_ham10000

    layout = make_ham10000(tmp_path)
    first = info("ham10000", str(layout.data_dir), cache_dir=str(tmp_path / "cache"))
    second = info("ham10000", str(layout.data_dir), cache_dir=str(tmp_path / "cache"))
    assert first["skipped"] and first["skipped"] == second["skipped"]
    assert first["splits"] == second["splits"]


def test_a_changed_data_folder_is_prepared_again(tmp_path):
    """datasets keys its cache on the config (the folder's name): a file added or
    removed under the same folder must not be served from the stale cache."""
    from tests.layouts import make_utkface, utk_name, write_image

    layout = make_utkface(tmp_path)
    cache = str(tmp_path / "cache")
    n = sum(len(s) for s in data.load("utkface", str(layout.data_dir), cache_dir=cache).values())
    assert n == layout.n_good
    write_image(layout.data_dir / "UTKFace" / utk_name(41, 0, 1, "20170120000000001"), seed=999)
    grown = data.load("utkface", str(layout.data_dir), cache_dir=cache)
    assert sum(len(s) for s in grown.values()) == n + 1
    (layout.data_dir / "UTKFace" / layout.extra["good"][3]).unlink()
    shrunk = data.load("utkface", str(layout.data_dir), cache_dir=cache)
    assert sum(len(s) for s in shrunk.values()) == n
    # unchanged folder: the same cache folder is reused, nothing is prepared again
    again = data.get_builder("utkface", str(layout.data_dir), cache_dir=cache)
    assert os.path.isdir(again.cache_dir)


# --------------------------------------------------------------------------- dataset sources
@pytest.mark.parametrize("name", sorted(data.BUILDERS))
def test_every_builder_declares_its_source(name):
    source = data.dataset_info(name)
    assert source.title and source.license and source.homepage.startswith("https://")
    if source.citation:
        assert source.citation.lstrip().startswith("@") and source.citation.count("{") == source.citation.count("}")


def test_every_task_dataset_has_a_source():
    from skin.tasks import TASKS

    for task in TASKS.values():
        assert data.dataset_info(task.dataset).license, task.name


def test_dataset_info_reads_no_data_and_matches_the_prepared_datasetinfo(tmp_path):
    source = data.dataset_info("ham10000")  # no --data-dir anywhere
    assert "CC BY-NC-SA 4.0" in source.license and source.title == "HAM10000"
    layout = layouts.make_ham10000(tmp_path)
    builder = data.get_builder("ham10000", layout.data_dir, cache_dir=str(tmp_path / "cache"))
    info = builder.info
    assert (info.license, info.homepage, info.citation) == (source.license, source.homepage, source.citation)
    assert info.description.startswith("HAM10000")
    with pytest.raises(ValueError, match="unknown dataset"):
        data.dataset_info("imagenet")

"""Cost and coverage of the skin tone every builder estimates (``dataset_scripts/_base.py``).

For each dataset (default ``ham10000`` and ``utkface``; any registered builder
with ``--datasets``), on its real folder in ``../shared/data``:

* **Preparation time**, each run into a fresh cache directory, after one
  untimed warm-up of each contender, alternating, ``--repeats`` times, median:

  - ``ours``: ``skin.data.get_builder(name, ...)`` + ``download_and_prepare()``,
    the builder as shipped (the estimated tone included);
  - ``ours_without_tone``: the same with ``SkinImageBuilder.estimated_tone``
    replaced by a stub that returns ``None`` for both columns, i.e. what the
    builder cost before the tone was added;
  - ``imagefolder`` (``data_dir=``, split names inferred) and
    ``imagefolder_one_glob`` (one ``data_files`` pattern: imagefolder at its
    cheapest), on a temporary tree of per-label symlinks made from our own scan
    (not timed), as ``bench_builders.py`` does for HAM10000.

  ``tone_ms_per_image`` = (ours - ours_without_tone) / rows.
* **Agreement with the app's size**: on ``--sample`` images, the builders'
  estimate (a work copy of ``TONE_WORK_SIDE`` px, JPEGs decoded small) against
  ``skin.tone.estimate_tone`` at the app's ``WORK_SIDE``: share with the same
  bucket, median and 95th percentile of |ITA difference|.
* **Coverage** on the prepared dataset (the warm-up's, all splits): share of
  images with an estimate and the estimated bucket counts (and the labelled
  ``tone_bucket`` counts where the dataset has labels).

Prints a summary and writes ``bench/results/tone_<dataset>.json``. Usage::

    python bench/bench_tone.py [--datasets ham10000 utkface] [--repeats 3] [--sample 300]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

for _k, _v in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
}.items():
    os.environ.setdefault(_k, _v)

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
SHARED = REPO_ROOT.parent / "shared" / "data"


@contextlib.contextmanager
def tone_stubbed():
    """``estimated_tone`` returns ``None`` for both columns while inside (the builder's cost without it)."""
    from dataset_scripts._base import ESTIMATED_TONE_FEATURES, SkinImageBuilder

    real = SkinImageBuilder.estimated_tone
    SkinImageBuilder.estimated_tone = lambda self, image: dict.fromkeys(ESTIMATED_TONE_FEATURES)
    try:
        yield
    finally:
        SkinImageBuilder.estimated_tone = real


def prepare_ours(name: str, data_dir: Path, cache: Path):
    from skin.data import get_builder

    builder = get_builder(name, str(data_dir), cache_dir=str(cache))
    builder.download_and_prepare()
    return builder


def run_ours(name: str, data_dir: Path, cache: Path) -> int:
    return sum(s.num_examples for s in prepare_ours(name, data_dir, cache).info.splits.values())


def run_ours_without_tone(name: str, data_dir: Path, cache: Path) -> int:
    with tone_stubbed():
        return run_ours(name, data_dir, cache)


def run_imagefolder(folder: Path, cache: Path) -> int:
    import datasets

    builder = datasets.load_dataset_builder("imagefolder", data_dir=str(folder), cache_dir=str(cache))
    builder.download_and_prepare()
    return sum(s.num_examples for s in builder.info.splits.values())


def run_imagefolder_one_glob(folder: Path, cache: Path) -> int:
    import datasets

    builder = datasets.load_dataset_builder(
        "imagefolder", data_files={"train": str(folder / "*" / "*")}, cache_dir=str(cache)
    )
    builder.download_and_prepare()
    return sum(s.num_examples for s in builder.info.splits.values())


def make_imagefolder(builder, dest: Path) -> list[str]:
    """``dest/<label>/<file>`` symlinks to the images our builder keeps; returns their paths."""
    by_split, _ = builder.split_records()
    paths = []
    for rec in (r for recs in by_split.values() for r in recs):
        folder = dest / str(rec["label"])
        folder.mkdir(parents=True, exist_ok=True)
        link = folder / os.path.basename(rec["image"])
        if link.exists() or link.is_symlink():  # the same file name in two source folders
            link = folder / f"{len(paths)}_{link.name}"
        os.symlink(rec["image"], link)
        paths.append(rec["image"])
    return paths


def app_agreement(builder, paths: list[str], sample: int) -> dict:
    """The builders' estimate against the app's (``estimate_tone`` at its own work size) on a sample."""
    import numpy as np
    from PIL import Image

    from skin.tone import estimate_tone

    rng = np.random.default_rng(0)
    chosen = [paths[i] for i in sorted(rng.choice(len(paths), size=min(sample, len(paths)), replace=False))]
    same, diffs = 0, []
    for path in chosen:
        ours = builder.estimated_tone(path)
        with Image.open(path) as im:
            app = estimate_tone(im, lesion_photo=builder.LESION_PHOTOS)
        same += ours["tone_bucket_estimated"] == app["bucket"]
        if ours["ita_estimated"] is not None and app["ita"] is not None:
            diffs.append(abs(ours["ita_estimated"] - app["ita"]))
    return {
        "n": len(chosen),
        "same_bucket": same / len(chosen),
        "abs_ita_diff_median": float(np.median(diffs)) if diffs else None,
        "abs_ita_diff_p95": float(np.percentile(diffs, 95)) if diffs else None,
    }


def coverage(builder) -> dict:
    dsd = builder.as_dataset()
    est, labelled = Counter(), Counter()
    for ds in dsd.values():
        est.update(b or "none" for b in ds["tone_bucket_estimated"])
        if "tone_bucket" in ds.column_names:
            labelled.update(b or "unknown" for b in ds["tone_bucket"])
    n = sum(est.values())
    out = {"n": n, "with_estimate": (n - est.get("none", 0)) / n,
           "estimated_buckets": {k: est.get(k, 0) for k in ("light", "medium", "dark", "none")}}
    if labelled:
        out["labelled_buckets"] = dict(sorted(labelled.items()))
    return out


def bench_dataset(name: str, data_dir: Path, repeats: int, sample: int) -> dict:
    from skin.data import get_builder

    work = Path(tempfile.mkdtemp(prefix=f"skin_bench_tone_{name}_"))
    try:
        caches = iter(range(10**6))

        def fresh() -> Path:
            return work / f"cache{next(caches)}"

        paths = make_imagefolder(get_builder(name, str(data_dir), cache_dir=str(fresh())), work / "imagefolder")
        contenders = {
            "ours": lambda c: run_ours(name, data_dir, c),
            "ours_without_tone": lambda c: run_ours_without_tone(name, data_dir, c),
            "imagefolder": lambda c: run_imagefolder(work / "imagefolder", c),
            "imagefolder_one_glob": lambda c: run_imagefolder_one_glob(work / "imagefolder", c),
        }
        warm = prepare_ours(name, data_dir, fresh())  # warm-up of ours, kept for the coverage
        for key, fn in contenders.items():
            if key != "ours":
                fn(fresh())
        times, rows = {k: [] for k in contenders}, {}
        for _ in range(repeats):
            for key, fn in contenders.items():
                cache = fresh()
                t0 = time.perf_counter()
                rows[key] = fn(cache)
                times[key].append(time.perf_counter() - t0)
                shutil.rmtree(cache, ignore_errors=True)
        cover = coverage(warm)
        agree = app_agreement(warm, paths, sample)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    n = rows["ours"]
    return {
        "dataset": name, "data_dir": str(data_dir), "rows": rows, "repeats": repeats, "seconds": times,
        "median_s": med, "images_per_s": {k: rows[k] / v for k, v in med.items()},
        "tone_ms_per_image": 1e3 * (med["ours"] - med["ours_without_tone"]) / n,
        "ratio_ours_over_imagefolder": med["ours"] / med["imagefolder"],
        "ratio_ours_over_imagefolder_one_glob": med["ours"] / med["imagefolder_one_glob"],
        "ratio_ours_without_tone_over_imagefolder": med["ours_without_tone"] / med["imagefolder"],
        "app_agreement": agree, "coverage": cover,
    }


def main(argv: list[str] | None = None) -> int:
    import datasets

    from dataset_scripts._base import TONE_WORK_SIDE
    from skin.data import BUILDERS
    from skin.tone import WORK_SIDE

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["ham10000", "utkface"], choices=sorted(BUILDERS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sample", type=int, default=300, help="images compared with the app's estimate")
    parser.add_argument("--out-dir", default=str(REPO_ROOT / "bench" / "results"))
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.sample < 1:
        print("error: --repeats and --sample must be at least 1", file=sys.stderr)
        return 2
    for name in args.datasets:
        data_dir = SHARED / name
        if not data_dir.is_dir():
            print(f"error: {data_dir} not found", file=sys.stderr)
            return 2
        load_before = os.getloadavg()
        result = bench_dataset(name, data_dir, args.repeats, args.sample)
        result["work_side"] = {"builders": TONE_WORK_SIDE, "app": WORK_SIDE}
        result["env"] = {"python": platform.python_version(), "datasets": datasets.__version__,
                         "cpus": os.cpu_count(), "machine": platform.machine(),
                         "loadavg_1min_before_after": [load_before[0], os.getloadavg()[0]]}
        print(f"\n{name}: {result['rows']['ours']} images")
        for k, v in result["median_s"].items():
            runs = ", ".join(f"{t:.2f}" for t in result["seconds"][k])
            print(f"  {k:<22} {v:>8.2f} s  {result['images_per_s'][k]:>7.0f} img/s  runs {runs}")
        print(f"  tone {result['tone_ms_per_image']:.2f} ms/image; ours/imagefolder "
              f"{result['ratio_ours_over_imagefolder']:.2f}, ours/imagefolder_one_glob "
              f"{result['ratio_ours_over_imagefolder_one_glob']:.2f}")
        print(f"  vs the app's size: {result['app_agreement']}")
        print(f"  coverage: {result['coverage']}")
        out = Path(args.out_dir) / f"tone_{name}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"  wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

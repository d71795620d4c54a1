"""Preparation throughput: our HAM10000 (or DermNet) builder against ``datasets``' own ``imagefolder``.

Both prepare the same real HAM10000 images (``../shared/data/ham10000``, 8,473
JPEGs) into a fresh cache directory, storing image *paths* (neither embeds
bytes), so the difference is what our builder adds: reading the CSV, checking
every file (``skin.images.image_file_problem``), the grouped stratified split
and nine columns instead of two. ``imagefolder`` reads the same files through a
temporary folder of per-class symlinks ``<dx>/ISIC_x.jpg`` made outside the
repository; making it is not timed.

Timed, per repeat, each in a fresh cache dir:

* ours: ``skin.data.get_builder("ham10000", ...)`` + ``download_and_prepare()``
* imagefolder: ``datasets.load_dataset_builder("imagefolder", data_dir=...)``
  (which globs the files) + ``download_and_prepare()``, i.e. what
  ``load_dataset("imagefolder", data_dir=...)`` does before memory-mapping;
* imagefolder_one_glob: the same with ``data_files={"train": "<dir>/*/*.jpg"}``,
  which skips the split-name inference (imagefolder at its cheapest).

They alternate (ours, imagefolder, imagefolder_one_glob, ours, ...) after one untimed warm-up of
each (imports, OS file cache), ``--repeats`` times (default 3); the median is
reported. A one-off breakdown of our builder's phases (scan / file check /
split) says where its time goes. Writes ``bench/results/builders.json``.

``--dataset dermnet`` times the DermNet builder (``../shared/data/dermnet``,
3,146 JPEGs, default config ``clinical``) the same way: its folder
``images/<Condition>/`` already is an imagefolder, so imagefolder reads it
directly. Ours there also hashes every image and clusters near-duplicates
(``skin.near_duplicates``); its breakdown is listing / decoding + hashing /
pairs + clusters / split / the tone estimate the base class adds to every
example of every builder. Writes ``bench/results/builders_dermnet.json``.

Usage::

    python bench/bench_builders.py [--data-dir ../shared/data/ham10000] [--repeats 3] [--profile]
    python bench/bench_builders.py --dataset dermnet [--data-dir ../shared/data/dermnet]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

for _k, _v in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
}.items():
    os.environ.setdefault(_k, _v)

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

TARGET_RATIO = 1.25


def make_imagefolder(ham_dir: Path, dest: Path) -> int:
    """``dest/<dx>/<image_id>.jpg`` symlinks to the real files; returns how many."""
    n = 0
    with open(ham_dir / "HAM10000_metadata.csv", newline="") as f:
        for row in csv.DictReader(f):
            src = ham_dir / "images" / f"{row['image_id']}.jpg"
            if not src.is_file():
                continue
            (dest / row["dx"]).mkdir(parents=True, exist_ok=True)
            os.symlink(src, dest / row["dx"] / src.name)
            n += 1
    return n


def run_ours(ham_dir: Path, cache: Path, name: str = "ham10000") -> int:
    from skin.data import get_builder

    builder = get_builder(name, str(ham_dir), cache_dir=str(cache))
    builder.download_and_prepare()
    return sum(s.num_examples for s in builder.info.splits.values())


def run_imagefolder(folder: Path, cache: Path) -> int:
    """As ``load_dataset("imagefolder", data_dir=folder)`` does it: split names are inferred."""
    import datasets

    builder = datasets.load_dataset_builder("imagefolder", data_dir=str(folder), cache_dir=str(cache))
    builder.download_and_prepare()
    return sum(s.num_examples for s in builder.info.splits.values())


def run_imagefolder_one_glob(folder: Path, cache: Path) -> int:
    """``imagefolder`` told its files by one pattern, skipping the split-name inference.

    With ``data_dir`` alone, ``datasets`` tries ~66 split-name patterns, each a
    walk of the whole tree (most of its time here); this is imagefolder at its
    cheapest, for a stricter comparison.
    """
    import datasets

    builder = datasets.load_dataset_builder(
        "imagefolder", data_files={"train": str(folder / "*" / "*.jpg")}, cache_dir=str(cache)
    )
    builder.download_and_prepare()
    return sum(s.num_examples for s in builder.info.splits.values())


def breakdown(ham_dir: Path, cache: Path) -> dict:
    """Seconds spent in each phase of our builder, measured once, outside the timed runs."""
    from skin.data import get_builder
    from skin.images import image_file_problem
    from skin.splits import grouped_split

    builder = get_builder("ham10000", str(ham_dir), cache_dir=str(cache))
    t0 = time.perf_counter()
    records, _ = builder.scan()
    t1 = time.perf_counter()
    good = [r for r in records if image_file_problem(r["image"]) is None]
    t2 = time.perf_counter()
    grouped_split([builder.stratify_key(r) for r in good], [r["group_id"] for r in good])
    t3 = time.perf_counter()
    return {"scan_csv_s": t1 - t0, "file_check_s": t2 - t1, "grouped_split_s": t3 - t2}


def breakdown_dermnet(data_dir: Path, cache: Path) -> dict:
    """Seconds per phase of the DermNet builder's scan + split, measured once outside the timed runs."""
    from dataset_scripts.dermnet import folder_classes
    from skin import near_duplicates
    from skin.data import get_builder
    from skin.splits import grouped_split

    builder = get_builder("dermnet", str(data_dir), cache_dir=str(cache))
    t0 = time.perf_counter()
    files, _ = builder._files()
    t1 = time.perf_counter()
    hashes = near_duplicates.hash_files([data_dir / "images" / folder / name for folder, name in files])
    t2 = time.perf_counter()
    pairs = near_duplicates.hash_pairs(hashes), near_duplicates.neighbour_pairs(*zip(*files))
    labels = near_duplicates.cluster_labels(len(files), *pairs)
    t3 = time.perf_counter()
    to_class = folder_classes(builder.config.name)
    kept = [i for i, (folder, _) in enumerate(files) if folder in to_class]
    grouped_split([to_class[files[i][0]] for i in kept], [str(labels[i]) for i in kept])
    t4 = time.perf_counter()
    for i in kept:  # what the base class adds to every example of every builder
        builder.estimated_tone(str(data_dir / "images" / files[i][0] / files[i][1]))
    t5 = time.perf_counter()
    return {"list_files_s": t1 - t0, "decode_and_hash_s": t2 - t1, "pairs_and_clusters_s": t3 - t2,
            "grouped_split_s": t4 - t3, "base_estimated_tone_s": t5 - t4}  # fmt: skip


def timed(fn, *args) -> tuple[float, int]:
    t0 = time.perf_counter()
    n = fn(*args)
    return time.perf_counter() - t0, n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=("ham10000", "dermnet"), default="ham10000")
    parser.add_argument("--data-dir", default=None, help="default: ../shared/data/<dataset>")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None, help="default: bench/results/builders[_dermnet].json")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of one run of ours")
    args = parser.parse_args(argv)
    dermnet = args.dataset == "dermnet"
    ham_dir = Path(args.data_dir or REPO_ROOT.parent / "shared" / "data" / args.dataset).resolve()
    args.out = args.out or str(REPO_ROOT / "bench" / "results" / f"builders{'_dermnet' if dermnet else ''}.json")
    if dermnet and not (ham_dir / "images").is_dir():
        print(f"error: {ham_dir} is not DermNet (images/<Condition name>/*.jpg)", file=sys.stderr)
        return 2
    if not dermnet and (not (ham_dir / "HAM10000_metadata.csv").is_file() or not (ham_dir / "images").is_dir()):
        print(f"error: {ham_dir} is not HAM10000 (HAM10000_metadata.csv and images/ISIC_*.jpg)", file=sys.stderr)
        return 2
    if args.repeats < 1:
        print("error: --repeats must be at least 1", file=sys.stderr)
        return 2

    import datasets

    work = Path(tempfile.mkdtemp(prefix="skin_bench_builders_"))
    try:
        if dermnet:  # images/<Condition>/*.jpg is an imagefolder as it is
            folder = ham_dir / "images"
            n_files = sum(1 for p in folder.glob("*/*") if p.is_file())
        else:
            folder = work / "imagefolder"
            n_files = make_imagefolder(ham_dir, folder)
        caches = iter(range(10**6))

        def fresh() -> Path:
            return work / f"cache{next(caches)}"

        contenders = (
            ("ours", lambda src, cache: run_ours(src, cache, args.dataset), ham_dir),
            ("imagefolder", run_imagefolder, folder),
            ("imagefolder_one_glob", run_imagefolder_one_glob, folder),
        )
        # warm-up: imports, sklearn, the OS file cache; not timed
        for _, fn, src in contenders:
            fn(src, fresh())

        times = {name: [] for name, _, _ in contenders}
        rows = {}
        for _ in range(args.repeats):
            for name, fn, src in contenders:
                cache = fresh()
                seconds, rows[name] = timed(fn, src, cache)
                times[name].append(seconds)
                shutil.rmtree(cache, ignore_errors=True)
        phases = (breakdown_dermnet if dermnet else breakdown)(ham_dir, fresh())
        if args.profile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.runcall(run_ours, ham_dir, fresh(), args.dataset)
            pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["ours"] / med["imagefolder"]
    ratio_one_glob = med["ours"] / med["imagefolder_one_glob"]
    result = {
        "benchmark": f"prepare {'DermNet' if dermnet else 'HAM10000'} (download_and_prepare into a fresh cache)",
        "data_dir": str(ham_dir),
        "n_files": n_files,
        "rows": rows,
        "repeats": args.repeats,
        "seconds": times,
        "median_s": med,
        "images_per_s": {k: rows[k] / v for k, v in med.items()},
        "ratio_ours_over_imagefolder": ratio,
        "ratio_ours_over_imagefolder_one_glob": ratio_one_glob,
        "target_ratio": TARGET_RATIO,
        "within_target": ratio <= TARGET_RATIO,
        "ours_phases_s": phases,
        "env": {
            "python": platform.python_version(),
            "datasets": datasets.__version__,
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
        },
    }
    print(f"{'builder':<22} {'median s':>9} {'images/s':>9}  runs (s)")
    for k in times:
        runs = ", ".join(f"{t:.2f}" for t in times[k])
        print(f"{k:<22} {med[k]:>9.2f} {result['images_per_s'][k]:>9.0f}  {runs}")
    verdict = "met" if ratio <= TARGET_RATIO else "MISSED"
    print(f"ratio ours/imagefolder = {ratio:.2f} (target <= {TARGET_RATIO}: {verdict})")
    print(f"ratio ours/imagefolder_one_glob = {ratio_one_glob:.2f}")
    print("our phases (s): " + ", ".join(f"{k} {v:.2f}" for k, v in phases.items()))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

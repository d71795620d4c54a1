"""Datasets: one registry of builders, loading, ``info``, Parquet ``export`` and each dataset's source.

The builders live in ``dataset_scripts/`` (one ``GeneratorBasedBuilder`` per
dataset); current ``datasets`` no longer runs loading scripts, so they are
instantiated here directly::

    from skin.data import load
    dsd = load("ham10000", data_dir="../shared/data/ham10000")

Command line::

    python -m skin.data info ham10000 --data-dir ../shared/data/ham10000
    python -m skin.data info aihub --data-dir DIR --task forehead_wrinkle
    python -m skin.data info dermnet --data-dir ../shared/data/dermnet --config config_name=fine
    python -m skin.data export ham10000 --data-dir DIR --out DIR [--push-to-hub REPO]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass

from skin.paths import make_output_dir

BUILDERS = {
    "scin": "dataset_scripts.scin:Scin",
    "kaggle": "dataset_scripts.kaggle_skin_diseases:KaggleSkinDiseases",
    "utkface": "dataset_scripts.utkface:UTKFace",
    "aihub": "dataset_scripts.aihub:AIHubSkin",
    "ham10000": "dataset_scripts.ham10000:Ham10000",
    "pad_ufes20": "dataset_scripts.pad_ufes20:PadUfes20",
    "ddi": "dataset_scripts.ddi:DDI",
    "dermnet": "dataset_scripts.dermnet:DermNet",
}


def builder_class(name: str):
    if name not in BUILDERS:
        raise ValueError(f"unknown dataset {name!r}: choose one of {', '.join(BUILDERS)}")
    module, cls = BUILDERS[name].split(":")
    return getattr(importlib.import_module(module), cls)


@dataclass(frozen=True)
class DatasetSource:
    """Where a dataset comes from and on what terms, as its builder declares them."""

    title: str
    license: str
    homepage: str
    citation: str = ""
    #: the Hub licence identifier of a model trained on the data (``"other"``: see ``license``)
    hub_license: str = "other"


def dataset_info(name: str) -> DatasetSource:
    """Title, licence, homepage and citation of dataset ``name``.

    Read from the builder class, the one place they are written (its ``_info``
    passes the same values to ``datasets.DatasetInfo``), without preparing or
    reading any data: the app's fairness card and the model card show them.
    """
    cls = builder_class(name)
    return DatasetSource(title=cls.TITLE, license=cls.LICENSE, homepage=cls.HOMEPAGE, citation=cls.CITATION,
                         hub_license=cls.HUB_LICENSE)


def data_fingerprint(data_dir: str) -> str:
    """A hash of every file under ``data_dir``: relative path, size and mtime.

    ``datasets`` keys its cache on the builder config, which holds the folder's
    *name* only: without this, images added, removed or replaced and edits to a
    metadata CSV would be served silently from the stale cache. Only ``stat``
    is read (0.4 s for UTKFace's 14k files here), never the file contents.
    """
    import hashlib

    digest = hashlib.sha1()
    for top, dirs, files in os.walk(data_dir):
        dirs.sort()
        for fname in sorted(files):
            path = os.path.join(top, fname)
            try:
                st = os.stat(path)
            except OSError:  # a broken link: the builder reports it, the fingerprint skips it
                continue
            digest.update(f"{os.path.relpath(path, data_dir)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def get_builder(name: str, data_dir: str, cache_dir: str | None = None, **config):
    """Instantiate the builder for ``name`` over ``data_dir`` (config as kwargs).

    The cache folder is keyed on :func:`data_fingerprint` too, so a changed
    folder is prepared again instead of being read from a stale cache.
    """
    if not data_dir:
        raise ValueError(f"{name}: pass --data-dir (the folder that holds the dataset as its publisher lays it out)")
    cls = builder_class(name)
    data_dir = os.path.abspath(os.fspath(data_dir))
    fingerprint = data_fingerprint(data_dir) if os.path.isdir(data_dir) else None
    return cls(data_dir=data_dir, cache_dir=cache_dir, hash=fingerprint, **config)


def load(name: str, data_dir: str, cache_dir: str | None = None, **config):
    """Prepare (cached) and return the ``DatasetDict`` with train/validation/test."""
    builder = get_builder(name, data_dir, cache_dir=cache_dir, **config)
    builder.download_and_prepare()
    return builder.as_dataset()


def info(name: str, data_dir: str, cache_dir: str | None = None, **config) -> dict:
    """Summary of a dataset as prepared: rows per split, classes, counts, skips."""
    builder = get_builder(name, data_dir, cache_dir=cache_dir, **config)
    builder.download_and_prepare()
    dsd = builder.as_dataset()
    skipped = skip_list(builder)
    features = next(iter(dsd.values())).features
    label = features.get("label")
    out = {
        "dataset": name,
        "data_dir": builder.config.data_dir,
        "splits": {split: ds.num_rows for split, ds in dsd.items()},
        "classes": list(label.names) if hasattr(label, "names") else None,
        "class_counts": None,
        "tone_buckets": None,
        "tone_buckets_estimated": None,
        "skipped": skipped,
        "skipped_by_reason": dict(Counter(_reason_kind(s["reason"]) for s in skipped).most_common()),
    }
    if hasattr(label, "names"):
        counts = Counter()
        for ds in dsd.values():
            counts.update(ds["label"])
        out["class_counts"] = {n: counts.get(i, 0) for i, n in enumerate(label.names)}
    for column, key in (("tone_bucket", "tone_buckets"), ("tone_bucket_estimated", "tone_buckets_estimated")):
        if column in features:
            tones = Counter()
            for ds in dsd.values():
                tones.update(b or "unknown" for b in ds[column])
            out[key] = dict(sorted(tones.items()))
    clusters = getattr(builder, "near_duplicates", None)  # builders that cluster near-duplicate images
    if clusters is not None:
        out["near_duplicates"] = clusters.to_dict()
    return out


def skip_list(builder) -> list[dict]:
    """Why files under the builder's folder were left out (``path``, ``reason``, and ``images`` for an
    entry that stands for many files or metadata rows, e.g. a whole folder).

    Preparing records the list on the builder; on a cache hit nothing was
    scanned, so the folder is scanned again (no rows are built) to report it anyway.
    """
    skipped = getattr(builder, "skipped", None)
    if skipped is None:
        _, skipped = builder.split_records()
    return skipped


def skipped_images(skipped: list[dict]) -> dict[str, int]:
    """Images left out per kind of reason; an entry with an ``images`` count counts that many."""
    counts = Counter()
    for entry in skipped:
        counts[_reason_kind(entry["reason"])] += int(entry.get("images", 1))
    return dict(counts.most_common())


def _reason_kind(reason: str) -> str:
    """Group skip reasons without their per-file details (for counts)."""
    return reason.split(" (")[0]


#: The file names :func:`export` writes (``train-00000-of-00001.parquet``); an ``--out`` folder may hold only these.
SHARD = re.compile(r"[A-Za-z0-9_]+-00000-of-00001\.parquet")


def export(name: str, data_dir: str, out: str, cache_dir: str | None = None, push_to_hub: str | None = None, **config):
    """Write Parquet shards (images embedded) that ``load_dataset("parquet")`` reads back.

    Files are named ``{split}-00000-of-00001.parquet`` so the split names are
    inferred; the ``datasets`` feature types travel in the Parquet schema.
    """
    from datasets.table import embed_table_storage

    make_output_dir(out, "--out")  # before the preparation, which can take minutes
    others = sorted(f for f in os.listdir(out) if not SHARD.fullmatch(f))
    if others:  # load_dataset("parquet", data_dir=OUT) and the push would take them in with the shards
        raise ValueError(f"the output folder {out!r} holds other files ({', '.join(others[:4])}"
                         f"{', …' if len(others) > 4 else ''}): pass --out a new or empty folder, or one an "
                         "earlier export wrote")
    dsd = load(name, data_dir, cache_dir=cache_dir, **config)
    written = []
    for split, ds in dsd.items():
        embedded = ds.with_format("arrow").map(embed_table_storage, batched=True, keep_in_memory=True)
        path = os.path.join(out, f"{split}-00000-of-00001.parquet")
        embedded.with_format(None).to_parquet(path)
        written.append(path)
    if push_to_hub:
        from huggingface_hub import HfApi

        HfApi().upload_folder(folder_path=out, repo_id=push_to_hub, repo_type="dataset",
                              allow_patterns=[os.path.basename(p) for p in written])
    return written


def _parse_config(pairs: list[str]) -> dict:
    import yaml

    config = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--config takes KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        config[key] = yaml.safe_load(value)
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skin.data", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for cmd in ("info", "export"):
        p = sub.add_parser(cmd)
        p.add_argument("name", choices=sorted(BUILDERS))
        p.add_argument("--data-dir", required=True, help="folder laid out as the dataset's publisher lays it out")
        p.add_argument("--cache-dir", default=None, help="datasets cache (default: HF_DATASETS_CACHE)")
        p.add_argument("--task", default=None, help="aihub: the graded target, e.g. forehead_wrinkle")
        p.add_argument("--config", action="append", default=[], metavar="KEY=VALUE", help="builder option")
        if cmd == "export":
            p.add_argument("--out", required=True)
            p.add_argument("--push-to-hub", default=None, metavar="REPO", help="also upload as a dataset repo")
    args = parser.parse_args(argv)
    try:
        config = _parse_config(args.config)
        if args.task:
            config["task"] = args.task
        if args.command == "info":
            print(json.dumps(info(args.name, args.data_dir, cache_dir=args.cache_dir, **config), indent=2))
        else:
            paths = export(args.name, args.data_dir, args.out, args.cache_dir, args.push_to_hub, **config)
            print(json.dumps({"written": paths}, indent=2))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

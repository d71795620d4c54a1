"""Does the clinical model diagnose healthy faces? Its answers on portraits, and what routing costs it.

The clinical model (DermNet) always names one of its conditions: it has no class for
healthy skin. This runs the app's own ``SkinLensService.predict`` (photo-type gate,
face crop, calibrated answer, abstention) on

* ``--faces`` random UTKFace **validation** portraits (faces with no skin condition
  labelled), and
* every photo of the DermNet **test** split (the clinical model's own held-out photos),

with the clinical model answering the photo types given by ``--with-types`` (the
routing before) and reports, per set, the detected photo types and how often the
clinical model answered (its top probability at or above the threshold), and what
share of its answers and of its correct answers fell on photos of each type: the
cost and the gain of leaving a type out of its ``photo_types``.

Writes ``bench/results/clinical_on_portraits.json`` and prints a summary.

    .venv/bin/python bench/clinical_on_portraits.py --utkface ../shared/data/utkface \\
        --dermnet ../shared/data/dermnet --cache-dir CACHE
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def as_upload(image) -> bytes:
    """A dataset image as the JPEG bytes a visitor would upload."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=92)
    return buf.getvalue()


def summarise(rows: list[dict]) -> dict:
    """Per photo type: photos, read by the clinical model, answered, answered correctly (where known)."""
    out = {}
    for kind in sorted({r["type"] for r in rows}):
        mine = [r for r in rows if r["type"] == kind]
        answered = [r for r in mine if r["answered"]]
        entry = {"n": len(mine), "read": sum(r["read"] for r in mine), "answered": len(answered),
                 "answers": dict(collections.Counter(r["label"] for r in answered).most_common())}
        if any("truth" in r for r in mine):
            entry["answered_right"] = sum(r["label"] == r["truth"] for r in answered)
        out[kind] = entry
    return out


def main() -> None:
    import torch

    from skin.data import load
    from skin.service import SkinLensService, load_config

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--utkface", required=True, help="UTKFace folder (../shared/data/utkface)")
    ap.add_argument("--dermnet", required=True, help="DermNet folder (../shared/data/dermnet)")
    ap.add_argument("--faces", type=int, default=300)
    ap.add_argument("--with-types", default="clinical,face", help="the clinical model's photo_types to measure")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "clinical_on_portraits.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["SKINLENS_PREDICTION_CACHE"] = "0"  # every photo through the models (set here, not on import)
    config = load_config(ROOT / "skinlens.yaml")
    spec = replace(config.models["clinical"], photo_types=tuple(args.with_types.split(",")))
    config.models["clinical"] = spec
    service = SkinLensService(config)
    started = time.perf_counter()

    def run(image, truth=None) -> dict:
        result = service.predict(as_upload(image))
        task = result["tasks"]["clinical"]
        top = (task.get("top_k") or [{}])[0]
        row = {"type": result["photo_type"]["label"], "read": bool(task.get("top_k")),
               "answered": bool(task.get("top_k")) and not task.get("abstained"), "label": top.get("label"),
               "probability": top.get("probability")}
        return row if truth is None else {**row, "truth": truth}

    faces = load("utkface", args.utkface, cache_dir=args.cache_dir)["validation"]
    order = np.random.default_rng(0).permutation(len(faces))[: args.faces]
    face_rows = [run(faces[int(i)]["image"]) for i in order]
    print(f"UTKFace portraits: {summarise(face_rows)}", flush=True)
    test = load("dermnet", args.dermnet, cache_dir=args.cache_dir)["test"]
    names = test.features["label"].names
    dermnet_rows = [run(row["image"], names[row["label"]]) for row in test]
    print(f"DermNet test photos: {summarise(dermnet_rows)}", flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "clinical_photo_types_measured": list(spec.photo_types), "threshold": spec.abstain_below,
        "utkface_validation_portraits": summarise(face_rows), "dermnet_test": summarise(dermnet_rows),
        "threads": torch.get_num_threads(), "wall_s": round(time.perf_counter() - started, 1),
        "per_photo": {"utkface": face_rows, "dermnet": dermnet_rows},
    }, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

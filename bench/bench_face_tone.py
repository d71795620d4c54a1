"""The skin-tone bucket the app gives a portrait, against the bucket its fairness card was measured in.

The age model's fairness card reports its performance per estimated tone
bucket of UTKFace's test chips: the builder estimates each chip's tone over the
whole chip (``dataset_scripts/utkface.py``, ``LESION_PHOTOS = False``). The app
finds the face in the user's photo and estimates the tone of a crop around it
(:func:`skin.service.views.photo_tone`), then shows the card's row for that
bucket. The two agree only if the crop shows what a chip shows. This script
pastes ``--n`` random UTKFace validation chips into larger pictures, finds the
face as the app does, and compares the bucket of each crop with the chip's own
(the ``tone_bucket_estimated`` the card was measured on):

* ``box + 0.2 margin``: the face box widened by 0.2 on every side
  (:func:`skin.faces.crop_face`);
* ``chip-shaped``: the square the age model reads, framed as the chips are
  (:func:`skin.faces.face_chip`).

A chip pasted into a picture has a surround that is not its own background, so
four are tried: grey, and three real photographs from ``skimage.data`` behind
it (coffee: brown and beige, a kitchen's colours; the cat Chelsea: orange fur;
the rocket: sky and a gantry), the chip placed in the middle.

Writes ``bench/results/face_tone.json`` and prints a table.

    .venv/bin/python bench/bench_face_tone.py --data-dir ../shared/data/utkface --cache-dir CACHE
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_face_crop import PAD  # noqa: E402  the same pasting geometry as the age model's crop bench
from bench.bench_face_crop import surrounds as plain_surrounds  # noqa: E402

BACKGROUNDS = ("coffee", "chelsea", "rocket")


def surrounds() -> dict:
    """``{name: chip -> picture}``: the chip in the middle of bench_face_crop's grey canvas, or of a
    real photograph resized to that canvas."""
    from PIL import Image
    from skimage import data

    def on(background):
        def paste(chip):
            picture = background.resize((chip.width + 2 * PAD, chip.height + 2 * PAD))
            picture.paste(chip, (PAD, PAD))
            return picture
        return paste

    out = {"grey": plain_surrounds()["grey"]}
    for name in BACKGROUNDS:
        out[name] = on(Image.fromarray(getattr(data, name)()).convert("RGB"))
    return out


def crops() -> dict:
    """``{name: (picture, face) -> crop}``: the framings compared."""
    from skin.faces import crop_face, face_chip

    return {"box + 0.2 margin": lambda picture, face: crop_face(picture, face, 0.2), "chip-shaped": face_chip}


def agreement(chip_buckets, crop_buckets) -> float:
    """Share of the photos whose crop lands in the chip's bucket (an empty estimate counts as a miss)."""
    chip_buckets, crop_buckets = np.asarray(chip_buckets, object), np.asarray(crop_buckets, object)
    return float(np.mean(chip_buckets == crop_buckets)) if len(chip_buckets) else float("nan")


def main(argv=None) -> int:
    from skin.data import load
    from skin.faces import largest_face
    from skin.tone import estimate_tone

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", required=True, help="UTKFace (../shared/data/utkface)")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--n", type=int, default=300, help="validation chips")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "face_tone.json"))
    args = ap.parse_args(argv)
    if not Path(args.data_dir).is_dir():
        raise SystemExit(f"--data-dir {args.data_dir} not found; see ../shared/data/README.md")
    started = time.perf_counter()
    val = load("utkface", args.data_dir, cache_dir=args.cache_dir)["validation"]
    order = np.random.default_rng(1).permutation(len(val))[: args.n]
    framings = crops()
    results = {}
    for name, surround in surrounds().items():
        chip_b, crop_b, ita_gap, missed = [], {c: [] for c in framings}, {c: [] for c in framings}, 0
        for i in order:
            row = val[int(i)]
            if row["tone_bucket_estimated"] is None:
                continue
            picture = surround(row["image"].convert("RGB"))
            face = largest_face(picture)
            if face is None:
                missed += 1
                continue
            chip_b.append(row["tone_bucket_estimated"])
            for c, crop in framings.items():
                tone = estimate_tone(crop(picture, face))
                crop_b[c].append(tone["bucket"])
                if tone["ita"] is not None:
                    ita_gap[c].append(abs(tone["ita"] - row["ita_estimated"]))
        results[name] = {
            "n": len(chip_b), "missed": missed,
            "same_bucket_as_chip": {c: round(agreement(chip_b, b), 3) for c, b in crop_b.items()},
            "median_abs_ita_difference_deg": {c: round(float(np.median(g)), 2) for c, g in ita_gap.items()},
            "chip_buckets": {b: chip_b.count(b) for b in ("light", "medium", "dark")},
        }
        print(f"{name}: {results[name]}", flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"dataset": "utkface", "split": "validation", "pad_px": PAD, "results": results,
                               "wall_s": round(time.perf_counter() - started, 1)}, indent=1) + "\n")
    print("\n| surround | n | " + " | ".join(f"{c}: same bucket / median ITA gap" for c in framings) + " |")
    print("|---|---:|" + "---|" * len(framings))
    for name, r in results.items():
        cells = " | ".join(f"{r['same_bucket_as_chip'][c]:.3f} / {r['median_abs_ita_difference_deg'][c]:.1f}°"
                           for c in framings)
        print(f"| {name} | {r['n']} | {cells} |")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

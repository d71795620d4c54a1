"""The face crop the age model reads in the app, against the crop it was trained on.

UTKFace's aligned and cropped "chips" are tight squares around the face. The app
finds the face with MTCNN (``skin.faces.largest_face``) and crops around its box.
This script

1. measures the chips' geometry against the detector's box on ``--train`` random
   UTKFace **training** chips, each on a grey canvas (so the box is not cut by the
   chip's edge): the chip's side over the box width, and how far the chip's centre
   lies below the box centre, in box heights. Their medians are
   ``skin.faces.CHIP_SIDE`` and ``CHIP_SHIFT``;
2. runs ``--val`` random **validation** chips through the served path (each pasted
   into a larger picture, the face found, the crop taken) and reports the age
   model's MAE and 5-group accuracy for the chip itself, the old crop (the box
   widened by 0.2 on every side) and the chip-shaped crop (:func:`skin.faces.face_chip`),
   with the paired difference's standard error. The surround of a pasted chip is
   not a real background, so three are tried: grey, the chip's edge pixels
   repeated, and the chip enlarged and blurred.

Writes ``bench/results/face_crop.json`` and prints a table.

    .venv/bin/python bench/bench_face_crop.py --data-dir ../shared/data/utkface --cache-dir CACHE
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

PAD = 100  # px of surround on every side of a 200 px chip


def surrounds():
    """``{name: chip -> picture}``: the chip pasted in the middle of a larger picture."""
    from PIL import Image, ImageFilter

    def grey(chip):
        im = Image.new("RGB", (chip.width + 2 * PAD, chip.height + 2 * PAD), (128, 128, 128))
        im.paste(chip, (PAD, PAD))
        return im

    def edge(chip):
        return Image.fromarray(np.pad(np.asarray(chip), ((PAD, PAD), (PAD, PAD), (0, 0)), mode="edge"))

    def blur(chip):
        big = chip.resize((chip.width + 2 * PAD, chip.height + 2 * PAD)).filter(ImageFilter.GaussianBlur(12))
        big.paste(chip, (PAD, PAD))
        return big

    return {"grey": grey, "edge": edge, "blur": blur}


def chip_geometry(train, n: int, seed: int) -> dict:
    """Chip side / box width and (chip centre - box centre) / box height on ``n`` training chips."""
    from skin.faces import largest_face

    grey = surrounds()["grey"]
    side, shift, missed = [], [], 0
    for i in np.random.default_rng(seed).permutation(len(train))[:n]:
        chip = train[int(i)]["image"].convert("RGB")
        face = largest_face(grey(chip))
        if face is None:
            missed += 1
            continue
        x1, y1, x2, y2 = face.box
        side.append(chip.width / face.width)
        shift.append((PAD + chip.height / 2 - (y1 + y2) / 2) / face.height)
    pct = lambda v: [round(float(q), 4) for q in np.percentile(v, [10, 50, 90])]  # noqa: E731
    return {"n": len(side), "missed": missed, "side_over_box_width_p10_50_90": pct(side),
            "centre_shift_over_box_height_p10_50_90": pct(shift)}


def main() -> None:
    import torch

    from skin.data import load
    from skin.faces import CHIP_SHIFT, CHIP_SIDE, crop_face, face_chip, largest_face
    from skin.inference import load_for_inference
    from skin.metrics import expected_age
    from skin.tasks import age_to_group, label_ages

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", required=True, help="UTKFace (../shared/data/utkface)")
    ap.add_argument("--model", default="default:age")
    ap.add_argument("--train", type=int, default=300, help="training chips measured for the geometry")
    ap.add_argument("--val", type=int, default=300, help="validation chips run through the served path")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "face_crop.json"))
    args = ap.parse_args()
    if not Path(args.data_dir).is_dir():
        raise SystemExit(f"--data-dir {args.data_dir} not found; see ../shared/data/README.md")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    ds = load("utkface", args.data_dir, cache_dir=args.cache_dir)
    geometry = chip_geometry(ds["train"], args.train, seed=0)
    print(f"chip geometry on {geometry['n']} training chips: {geometry}", flush=True)

    model, processor, labels = load_for_inference(args.model)
    ages = label_ages(labels)

    def estimate(picture) -> float:
        with torch.no_grad():
            logits = model(pixel_values=processor(picture, return_tensors="pt")["pixel_values"]).logits
        return float(expected_age(logits.float().softmax(-1).numpy(), ages)[0])

    crops = {"chip itself": None, "box + 0.2 margin (old)": lambda im, f: crop_face(im, f, 0.2),
             "chip-shaped (face_chip)": face_chip}
    val = ds["validation"]
    order = np.random.default_rng(1).permutation(len(val))[: args.val]
    results = {}
    for name, surround in surrounds().items():
        est, truth, missed = {c: [] for c in crops}, [], 0
        for i in order:
            row = val[int(i)]
            chip = row["image"].convert("RGB")
            picture = surround(chip)
            face = largest_face(picture)
            if face is None:
                missed += 1
                continue
            truth.append(float(row["age"]))
            for c, crop in crops.items():
                est[c].append(estimate(chip if crop is None else crop(picture, face)))
        truth_a = np.asarray(truth)
        errors = {c: np.abs(np.asarray(v) - truth_a) for c, v in est.items()}
        hits = {c: age_to_group(np.asarray(v)) == age_to_group(truth_a) for c, v in est.items()}
        gain = errors["box + 0.2 margin (old)"] - errors["chip-shaped (face_chip)"]
        results[name] = {
            "n": len(truth), "missed": missed,
            "mae": {c: round(float(e.mean()), 3) for c, e in errors.items()},
            "group_accuracy": {c: round(float(h.mean()), 3) for c, h in hits.items()},
            "mae_gain_of_face_chip": {"mean": round(float(gain.mean()), 3),
                                      "se": round(float(gain.std(ddof=1) / np.sqrt(len(gain))), 3)},
        }
        print(f"{name}: {results[name]}", flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "model": args.model, "dataset": "utkface", "pad_px": PAD, "threads": torch.get_num_threads(),
        "geometry_train": geometry, "constants": {"CHIP_SIDE": CHIP_SIDE, "CHIP_SHIFT": CHIP_SHIFT},
        "validation": results, "wall_s": round(time.perf_counter() - started, 1),
    }, indent=1))
    print(f"\n{'surround':8s} {'n':>4s} " + " ".join(f"{c:>26s}" for c in crops) + "   gain (se)")
    for name, r in results.items():
        cells = " ".join(f"{r['mae'][c]:>12.2f} / {r['group_accuracy'][c]:.3f}" for c in crops)
        g = r["mae_gain_of_face_chip"]
        print(f"{name:8s} {r['n']:4d} {cells}   {g['mean']:.2f} ({g['se']:.2f})")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

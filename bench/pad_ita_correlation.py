"""How well does photo ITA track dermatologist Fitzpatrick labels? (PAD-UFES-20)

Reads the PAD-UFES-20 smartphone photos in ``../shared/data/pad_ufes20`` (only
the rows of ``metadata.csv`` whose image is present, and of those only the ones
with a ``fitspatrick`` label — the column name is misspelled in the dataset),
estimates ITA with :func:`skin.tone.estimate_tone` (``lesion_photo=True``: the
photos are centred on the lesion) and reports:

* n, Spearman's rho and its p-value between ITA and FST (expected negative:
  darker type, lower angle);
* agreement of the ITA bucket with the FST bucket (light/medium/dark), overall
  and as a 3x3 table;
* the same figures with the whole-frame skin mask (``lesion_photo=False``), to
  show what excluding the lesion changes.

Prints a summary and writes ``bench/results/pad_ita.json``. Usage::

    python bench/pad_ita_correlation.py [--data ../shared/data/pad_ufes20]
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "pad_ufes20"
DEFAULT_OUT = ROOT / "bench" / "results" / "pad_ita.json"


def load_labelled(data_dir: Path):
    """(image path, FST int) for every present image with a Fitzpatrick label."""
    import pandas as pd

    meta = data_dir / "metadata.csv"
    if not meta.is_file():
        raise SystemExit(f"{meta} not found: pass --data pointing at the pad_ufes20 folder")
    df = pd.read_csv(meta)
    present = {p.name for p in (data_dir / "images").glob("*.png")}
    df = df[df["img_id"].isin(present)]
    n_present = len(df)
    df = df[df["fitspatrick"].notna()]
    rows = [(data_dir / "images" / r.img_id, int(r.fitspatrick)) for r in df.itertuples()]
    return rows, n_present


def evaluate(rows, *, lesion_photo: bool) -> dict:
    from PIL import Image
    from scipy.stats import spearmanr

    from skin.tone import TONE_BUCKETS, bucket_from_fitzpatrick, estimate_tone

    per_image = []
    for path, fst in rows:
        with Image.open(path) as im:
            tone = estimate_tone(im, lesion_photo=lesion_photo)
        per_image.append(
            {
                "image": path.name,
                "fst": fst,
                "ita": None if tone["ita"] is None else round(tone["ita"], 2),
                "chardon": tone["chardon"],
                "bucket_ita": tone["bucket"],
                "bucket_fst": bucket_from_fitzpatrick(fst),
                "skin_fraction": round(tone["skin_fraction"], 3),
            }
        )
    scored = [r for r in per_image if r["ita"] is not None]
    rho, p = spearmanr([r["ita"] for r in scored], [r["fst"] for r in scored])
    agree = sum(r["bucket_ita"] == r["bucket_fst"] for r in scored)
    table = {
        f: {i: sum(r["bucket_fst"] == f and r["bucket_ita"] == i for r in scored) for i in TONE_BUCKETS}
        for f in TONE_BUCKETS
    }
    return {
        "lesion_photo": lesion_photo,
        "n_labelled": len(per_image),
        "n": len(scored),
        "no_skin_found": len(per_image) - len(scored),
        "spearman_rho": None if math.isnan(rho) else round(float(rho), 4),
        "p_value": None if math.isnan(p) else float(p),
        "bucket_agreement": round(agree / len(scored), 4) if scored else None,
        "bucket_table_fst_rows_ita_cols": table,
        "per_image": per_image,
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    rows, n_present = load_labelled(args.data)
    if len(rows) < 3:
        raise SystemExit(f"only {len(rows)} labelled images under {args.data}: too few for a correlation")
    results = {
        "dataset": "PAD-UFES-20 (images present in shared/data)",
        "n_images_present": n_present,
        "main": evaluate(rows, lesion_photo=True),
        "whole_frame": evaluate(rows, lesion_photo=False),
    }
    for key in ("main", "whole_frame"):
        r = results[key]
        print(
            f"{key:12s} (lesion_photo={r['lesion_photo']}): n={r['n']} of {r['n_labelled']} labelled "
            f"({n_present} present), Spearman rho={r['spearman_rho']}, p={r['p_value']:.3g}, "
            f"bucket agreement={r['bucket_agreement']}"
        )
        print(f"{'':12s} FST bucket (rows) x ITA bucket (cols): {r['bucket_table_fst_rows_ita_cols']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(ROOT))
    main()

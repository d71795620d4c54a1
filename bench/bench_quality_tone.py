"""Does the photo-quality check treat dark skin fairly? How often each tip fires, per estimated tone bucket.

On clean photos (DermNet NZ clinical photos, UTKFace portraits, PAD-UFES-20
phone close-ups: photos published as usable), every tip the app shows is a
false alarm. This script runs the app's own :func:`skin.quality.check_quality`
and :func:`skin.tone.estimate_tone` (as the service calls it: the lesion centre
left out on close-ups, the whole frame on face chips) on a random sample of
each folder and prints, per dataset and pooled, how often each tip fires in
each estimated tone bucket, and the dark / light ratio of those rates.
Target: every tip fires on the dark bucket at most 1.5x as often as on the
light bucket (luminance and whole-image sharpness checks are known to penalise
dark skin and dark backgrounds). 0 / 0 counts as 1 ("both never"). Most tips
fire on a handful of clean photos, where a ratio of two counts of 0-2 says
little: each tip therefore also carries Fisher's exact test (one-sided: does
it fire *more* often on dark than on light?), and the summary says whether
the ratio target holds and, where it does not, whether the excess is more
than chance (p < 0.05).

    .venv/bin/python bench/bench_quality_tone.py [--data-root ../shared/data] [--per-dataset 800]

Writes ``bench/results/quality_tone.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from skin.reports import dump_json  # noqa: E402
from skin.quality import PROBLEM_CODES, check_quality  # noqa: E402
from skin.tone import TONE_BUCKETS, estimate_tone  # noqa: E402

TARGET_RATIO = 1.5
# dataset -> (glob under the data root, the photo is a lesion close-up: leave its centre out of the tone)
DATASETS = {
    "dermnet": ("dermnet/images/*/*.jpg", True),
    "utkface": ("utkface/UTKFace/*.jpg", False),
    "pad_ufes20": ("pad_ufes20/images/*.png", True),
}


def audit(paths: list[Path], lesion_photo: bool) -> list[dict]:
    """One row per photo: its estimated tone bucket and the tips the quality check fires."""
    from PIL import Image

    rows = []
    for path in paths:
        with Image.open(path) as im:
            img = im.convert("RGB")
        rows.append({"bucket": estimate_tone(img, lesion_photo=lesion_photo)["bucket"],
                     "codes": check_quality(img).codes})
    return rows


def rates(rows: list[dict]) -> dict:
    """Per bucket: n, how many photos fire each tip and the rate; per tip the dark / light ratio."""
    table = {}
    for bucket in TONE_BUCKETS:
        mine = [r for r in rows if r["bucket"] == bucket]
        fired = {code: sum(code in r["codes"] for r in mine) for code in PROBLEM_CODES}
        fired["any"] = sum(bool(r["codes"]) for r in mine)
        table[bucket] = {"n": len(mine), "fired": fired,
                         "rate": {c: (k / len(mine) if mine else None) for c, k in fired.items()}}
    from scipy.stats import fisher_exact

    ratios, p_dark_more = {}, {}
    for code in (*PROBLEM_CODES, "any"):
        n_l, n_d = table["light"]["n"], table["dark"]["n"]
        k_l, k_d = table["light"]["fired"][code], table["dark"]["fired"][code]
        p_dark_more[code] = (float(fisher_exact([[k_d, n_d - k_d], [k_l, n_l - k_l]], alternative="greater")[1])
                             if n_l and n_d else None)
        light, dark = table["light"]["rate"][code], table["dark"]["rate"][code]
        if light is None or dark is None:
            ratios[code] = None
        elif light == 0:
            ratios[code] = 1.0 if dark == 0 else float("inf")
        else:
            ratios[code] = dark / light
    missed = [c for c, r in ratios.items() if r is None or r > TARGET_RATIO]
    return {"buckets": table, "dark_over_light": ratios, "p_dark_more": p_dark_more,
            "met": not missed, "missed": missed,
            "missed_beyond_chance": [c for c in missed if p_dark_more[c] is not None and p_dark_more[c] < 0.05]}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--per-dataset", type=int, default=800, help="random photos per dataset (all if fewer)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "quality_tone.json"))
    args = ap.parse_args(argv)
    root = Path(args.data_root)
    if not root.is_dir():
        raise SystemExit(f"{root} not found: pass --data-root (see ../shared/data/README.md)")
    result = {"target_dark_over_light": TARGET_RATIO, "per_dataset": args.per_dataset, "seed": args.seed,
              "datasets": {}}
    pooled: list[dict] = []
    for name, (pattern, lesion_photo) in DATASETS.items():
        paths = sorted(root.glob(pattern))
        if not paths:
            print(f"{name}: no photos at {root / pattern}, skipped")
            continue
        paths = random.Random(args.seed).sample(paths, min(args.per_dataset, len(paths)))
        rows = audit(paths, lesion_photo)
        pooled += rows
        result["datasets"][name] = {"n": len(rows), **rates(rows)}
    result["pooled"] = {"n": len(pooled), **rates(pooled)}
    for name, r in [*result["datasets"].items(), ("pooled", result["pooled"])]:
        print(f"\n{name} (n {r['n']}): tip fires per bucket, % (n)")
        print("| tip | " + " | ".join(f"{b} (n {r['buckets'][b]['n']})" for b in TONE_BUCKETS)
              + " | dark / light | p (dark more) |")
        print("|---|" + "---:|" * (len(TONE_BUCKETS) + 2))
        for code in (*PROBLEM_CODES, "any"):
            cells = []
            for b in TONE_BUCKETS:
                rate = r["buckets"][b]["rate"][code]
                cells.append("n/a" if rate is None else f"{100 * rate:.1f} ({r['buckets'][b]['fired'][code]})")
            ratio = r["dark_over_light"][code]
            p = r["p_dark_more"][code]
            print(f"| {code} | " + " | ".join(cells) + f" | {'n/a' if ratio is None else f'{ratio:.2f}'} | "
                  f"{'n/a' if p is None else f'{p:.2f}'} |")
        print(f"target dark/light <= {TARGET_RATIO} for every tip: "
              + ("met" if r["met"] else f"NOT met for {', '.join(r['missed'])}; more than chance (p < 0.05) for: "
                 f"{', '.join(r['missed_beyond_chance']) or 'none'}"))
    dump_json(result, args.out)  # an infinite ratio (never on light, sometimes on dark) is written as null
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

"""How well does photo ITA track dermatologist Fitzpatrick labels? (PAD-UFES-20)

Prepares the PAD-UFES-20 smartphone photos in ``../shared/data/pad_ufes20``
through ``skin.data.load`` (only the rows of ``metadata.csv`` whose image is
present) and keeps the images that carry a Fitzpatrick label (the dataset's
misspelled ``fitspatrick`` column, the builder's ``fitzpatrick``). On those it
compares the tone every builder estimates (``ita_estimated`` and
``tone_bucket_estimated``, ``dataset_scripts/_base.py``) with the label:

* agreement: the share of images whose estimated bucket equals the Fitzpatrick
  bucket (I-II light, III-IV medium, V-VI dark), with a percentile bootstrap
  interval (``skin.metrics.bootstrap_ci``); Cohen's kappa (scikit-learn,
  unweighted); Spearman's rho between ITA and the type (negative when they
  agree); the 3x3 table; n.
* the same for the app's estimate of a photo (``skin.tone.estimate_tone`` at its
  own work size, ``lesion_photo=True``) and for the whole-frame skin mask
  (``lesion_photo=False``), to show what the builders' smaller work copy and
  excluding the lesion change.

Writes the small fixed-schema ``skin/tone_agreement.json`` (read at run time by
:func:`skin.tone.load_tone_agreement` for the model card and the app's fairness
card) and the full ``bench/results/pad_ita.json`` (per-image values). Usage::

    python bench/pad_ita_correlation.py [--data ../shared/data/pad_ufes20] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "pad_ufes20"
DEFAULT_OUT = ROOT / "bench" / "results" / "pad_ita.json"
N_BOOT = 2000


def labelled_rows(data_dir: Path, cache_dir: str | None) -> tuple[list[dict], int]:
    """``(rows with a Fitzpatrick label, images present)`` from the prepared dataset, all splits."""
    import datasets

    from skin.data import load

    dsd = load("pad_ufes20", str(data_dir), cache_dir=cache_dir)
    rows, n_present = [], 0
    for ds in dsd.values():
        n_present += ds.num_rows
        for r in ds.cast_column("image", datasets.Image(decode=False)):
            if r["fitzpatrick"] is not None:
                rows.append({"path": r["image"]["path"], "fst": r["fitzpatrick"], "ita": r["ita_estimated"],
                             "bucket": r["tone_bucket_estimated"]})
    rows.sort(key=lambda r: os.path.basename(r["path"]))
    return rows, n_present


def agreement(rows: list[dict], dataset: str):
    """:class:`skin.tone.ToneAgreement` of rows ``{"fst", "ita", "bucket"}`` (``ita`` None: no estimate)."""
    import numpy as np
    from scipy.stats import spearmanr
    from sklearn.metrics import cohen_kappa_score

    from skin.metrics import bootstrap_ci
    from skin.tone import TONE_BUCKETS, ToneAgreement, bucket_from_fitzpatrick

    scored = [r for r in rows if r["ita"] is not None]
    truth = np.array([bucket_from_fitzpatrick(r["fst"]) for r in scored], dtype=object)
    estimate = np.array([r["bucket"] for r in scored], dtype=object)
    equal = (truth == estimate).astype(float)
    ci = bootstrap_ci(np.mean, equal, n_boot=N_BOOT, random_state=0)
    kappa = cohen_kappa_score(truth, estimate, labels=list(TONE_BUCKETS)) if len(scored) > 1 else math.nan
    rho, p = spearmanr([r["ita"] for r in scored], [r["fst"] for r in scored]) if len(scored) > 2 else (math.nan,) * 2
    table = {f: {i: int(np.sum((truth == f) & (estimate == i))) for i in TONE_BUCKETS} for f in TONE_BUCKETS}
    return ToneAgreement(
        dataset=dataset, n=len(scored), n_labelled=len(rows), agreement=ci,
        cohen_kappa=_finite(kappa), spearman_rho=_finite(rho), spearman_p=_finite(p),
        confusion=table, n_boot=N_BOOT,
    )


def _finite(x) -> float | None:
    x = float(x)
    return round(x, 4) if math.isfinite(x) else None


def app_estimates(rows: list[dict], *, lesion_photo: bool) -> list[dict]:
    """The rows re-estimated as the app estimates a user's photo (``skin.tone.estimate_tone`` defaults)."""
    from PIL import Image

    from skin.tone import estimate_tone

    out = []
    for r in rows:
        with Image.open(r["path"]) as im:
            tone = estimate_tone(im, lesion_photo=lesion_photo)
        out.append({**r, "ita": tone["ita"], "bucket": tone["bucket"]})
    return out


def per_image(rows: list[dict]) -> list[dict]:
    from skin.tone import bucket_from_fitzpatrick

    return [{"image": os.path.basename(r["path"]), "fst": r["fst"], "bucket_fst": bucket_from_fitzpatrick(r["fst"]),
             "ita": None if r["ita"] is None else round(r["ita"], 2), "bucket_ita": r["bucket"]} for r in rows]


def main(argv=None) -> dict:
    from skin.reports import dump_json
    from skin.tone import TONE_AGREEMENT_PATH

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--cache-dir", default=None, help="datasets cache (default: HF_DATASETS_CACHE)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--agreement-out", type=Path, default=TONE_AGREEMENT_PATH)
    args = parser.parse_args(argv)

    rows, n_present = labelled_rows(args.data, args.cache_dir)
    if len(rows) < 3:
        raise SystemExit(f"only {len(rows)} images with a Fitzpatrick label under {args.data}: too few")
    variants = {
        "builders": rows,
        "app_lesion_photo": app_estimates(rows, lesion_photo=True),
        "app_whole_frame": app_estimates(rows, lesion_photo=False),
    }
    results = {"dataset": "PAD-UFES-20 (images present in shared/data)", "n_images_present": n_present}
    for key, variant in variants.items():
        a = agreement(variant, "PAD-UFES-20")
        results[key] = {**a.to_dict(), "per_image": per_image(variant)}
        ag = a.agreement
        print(f"{key:17s} n={a.n} of {a.n_labelled} labelled ({n_present} present): agreement {ag.value:.3f} "
              f"[{ag.ci_low:.3f}, {ag.ci_high:.3f}], kappa {a.cohen_kappa}, Spearman rho {a.spearman_rho} "
              f"(p {a.spearman_p}); FST rows x ITA cols {a.confusion}")
        if key == "builders":
            dump_json(a.to_dict(), args.agreement_out)
            print(f"wrote {args.agreement_out}: {a.sentence()}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()

"""Would correcting a photo's white balance first make the estimated skin tone track real skin tone better?

The estimated tone bucket (ITA from skin pixels, :func:`skin.tone.estimate_tone`) is what every fairness
table is grouped by, and it is rough: it matched the dermatologist's Fitzpatrick bucket for 41 % of 29
PAD-UFES-20 photos (Cohen's kappa 0.04), and 28 % of UTKFace's faces labelled White are estimated dark.
Uncontrolled light is the suspect: a warm or dim cast moves L* and b*, and ITA with them. This script
measures whether a colour-constancy step before the estimate helps, on the only tone-related labels here:

* **PAD-UFES-20**: the photos with a Fitzpatrick type (lesion close-ups, ``lesion_photo=True``):
  agreement with the Fitzpatrick bucket, Cohen's kappa, Spearman's rho between ITA and the type;
* **UTKFace** (validation split, face chips, whole frame): race is not skin tone, but on average the
  faces labelled Black are darker than those labelled White, so how well ITA ranks them (ROC-AUC of
  ITA for White against Black) and the share of each estimated dark are a proxy with thousands of
  photos.

Corrections (per image, before :func:`~skin.tone.estimate_tone`; each a few lines of numpy, as no
library here has them):

* ``none``: the shipped estimate;
* ``white_patch``: each channel divided by its 99th percentile (the brightest pixels taken as white,
  Land's retinex "max-RGB" made robust to a few clipped pixels);
* ``shades_of_gray``: Finlayson & Trezzi (2004): each channel scaled so that its Minkowski p-norm
  (p = 6) equals their mean (p = 1 is grey-world, which would remove the skin's own yellow from a
  photo that is mostly skin).

This is a measurement, not a change: the builders' cached tone columns, every report's tone table and
the coverage records are all computed with ``none``.

    python bench/tone_white_balance.py --pad ../shared/data/pad_ufes20 --utkface ../shared/data/utkface

Prints a table and writes ``bench/results/tone_white_balance.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from skin.reports import to_jsonable  # noqa: E402

WHITE_PATCH_PERCENTILE = 99.0
SHADES_OF_GRAY_P = 6.0


def white_patch(rgb: np.ndarray) -> np.ndarray:
    """Each channel divided by its 99th percentile, so that the brightest pixels become white."""
    x = rgb.astype(np.float64)
    top = np.percentile(x.reshape(-1, 3), WHITE_PATCH_PERCENTILE, axis=0)
    return np.clip(np.rint(x * (255.0 / np.maximum(top, 1.0))), 0, 255).astype(np.uint8)


def shades_of_gray(rgb: np.ndarray, p: float = SHADES_OF_GRAY_P) -> np.ndarray:
    """Each channel scaled so that its Minkowski p-norm equals the mean of the three (the illuminant
    estimate of Finlayson & Trezzi 2004), keeping the overall brightness."""
    x = rgb.astype(np.float64)
    norm = np.power(np.mean(np.power(x.reshape(-1, 3), p), axis=0), 1.0 / p)
    return np.clip(np.rint(x * (norm.mean() / np.maximum(norm, 1e-6))), 0, 255).astype(np.uint8)


CORRECTIONS = {"none": lambda rgb: rgb, "white_patch": white_patch, "shades_of_gray": shades_of_gray}


def estimates(paths, correction, *, lesion_photo: bool) -> list[dict]:
    """The app's tone estimate of each image after ``correction``."""
    from PIL import Image

    from skin.tone import estimate_tone

    out = []
    for path in paths:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
        out.append(estimate_tone(correction(rgb), lesion_photo=lesion_photo))
    return out


def pad_figures(fst: list[int], tones: list[dict]) -> dict:
    """Agreement with the Fitzpatrick bucket, Cohen's kappa and Spearman's rho (images with an estimate)."""
    from scipy.stats import spearmanr
    from sklearn.metrics import cohen_kappa_score

    from skin.tone import TONE_BUCKETS, bucket_from_fitzpatrick

    keep = [i for i, t in enumerate(tones) if t["ita"] is not None]
    truth = [bucket_from_fitzpatrick(fst[i]) for i in keep]
    est = [tones[i]["bucket"] for i in keep]
    rho = spearmanr([tones[i]["ita"] for i in keep], [fst[i] for i in keep])[0]
    return {"n": len(keep), "n_labelled": len(fst), "agreement": float(np.mean(np.equal(truth, est))),
            "cohen_kappa": float(cohen_kappa_score(truth, est, labels=list(TONE_BUCKETS))),
            "spearman_rho": float(rho)}


def utk_ita(tones: list[dict]) -> np.ndarray:
    return np.array([np.nan if t["ita"] is None else t["ita"] for t in tones])


def auc_gain(race: list[str], ita: np.ndarray, baseline: np.ndarray, n_boot: int = 1000) -> dict:
    """ROC-AUC (White above Black) of ``ita`` minus that of ``baseline`` on the same photos (both estimated),
    with a paired percentile bootstrap interval over photos."""
    from sklearn.metrics import roc_auc_score

    from skin.metrics import bootstrap_indices
    from skin.reports import CI_QUANTILES

    race = np.asarray(race)
    keep = np.flatnonzero(np.isin(race, ["White", "Black"]) & ~np.isnan(ita) & ~np.isnan(baseline))
    white = race[keep] == "White"

    def gain(i):
        return roc_auc_score(white[i], ita[keep][i]) - roc_auc_score(white[i], baseline[keep][i])

    draws = [gain(i) for i in bootstrap_indices(len(keep), n_boot, 0)]
    return {"value": float(gain(np.arange(len(keep)))), "ci": np.quantile(draws, CI_QUANTILES).tolist(),
            "n": int(len(keep)), "n_boot": n_boot}


def utk_figures(race: list[str], tones: list[dict]) -> dict:
    """ROC-AUC of ITA ranking White above Black, and each group's buckets (images with an estimate)."""
    from sklearn.metrics import roc_auc_score

    race = np.asarray(race)
    ita = utk_ita(tones)
    bucket = np.array([t["bucket"] or "none" for t in tones])
    pair = np.isin(race, ["White", "Black"]) & ~np.isnan(ita)
    out = {"n": int(len(race)), "no_estimate": float(np.mean(np.isnan(ita))),
           "auc_white_over_black": float(roc_auc_score(race[pair] == "White", ita[pair]))}
    for r in ("White", "Black", "Asian", "Indian"):
        m = (race == r) & ~np.isnan(ita)
        out[r] = {"n": int(m.sum()), **{b: float(np.mean(bucket[m] == b)) for b in ("light", "medium", "dark")},
                  "median_ita": float(np.median(ita[m]))}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pad", required=True, help="PAD-UFES-20 in its publisher's layout")
    parser.add_argument("--utkface", required=True, help="UTKFace in its publisher's layout")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "tone_white_balance.json"))
    args = parser.parse_args(argv)

    import datasets

    from skin.data import load

    start = time.perf_counter()
    pad = [r for ds in load("pad_ufes20", args.pad, cache_dir=args.cache_dir).values()
           for r in ds.cast_column("image", datasets.Image(decode=False)) if r["fitzpatrick"] is not None]
    utk = load("utkface", args.utkface, cache_dir=args.cache_dir)["validation"]
    race_names = utk.features["race"].names if hasattr(utk.features["race"], "names") else None
    race = [race_names[r] if race_names else r for r in utk["race"]]
    utk_paths = [r["path"] for r in utk.cast_column("image", datasets.Image(decode=False))["image"]]

    results, itas = {}, {}
    for name, correction in CORRECTIONS.items():
        utk_tones = estimates(utk_paths, correction, lesion_photo=False)
        itas[name] = utk_ita(utk_tones)
        results[name] = {
            "pad_ufes20": pad_figures([r["fitzpatrick"] for r in pad],
                                      estimates([r["image"]["path"] for r in pad], correction, lesion_photo=True)),
            "utkface_validation": utk_figures(race, utk_tones),
        }
        if name != "none":
            results[name]["utkface_validation"]["auc_gain_over_none"] = auc_gain(race, itas[name], itas["none"])
    wall = time.perf_counter() - start

    print(f"{'correction':16} {'PAD n':>5} {'agree':>6} {'kappa':>6} {'rho':>6} | {'UTK AUC W>B':>11} "
          f"{'White dark':>10} {'Black dark':>10} {'Black light':>11} {'no est.':>7}")
    for name, r in results.items():
        p, u = r["pad_ufes20"], r["utkface_validation"]
        print(f"{name:16} {p['n']:>5} {p['agreement']:>6.2f} {p['cohen_kappa']:>6.2f} {p['spearman_rho']:>6.2f} | "
              f"{u['auc_white_over_black']:>11.3f} {u['White']['dark']:>10.2f} {u['Black']['dark']:>10.2f} "
              f"{u['Black']['light']:>11.2f} {u['no_estimate']:>7.2f}"
              + ("" if "auc_gain_over_none" not in u else "   AUC gain {value:+.3f} ({ci[0]:+.3f} to {ci[1]:+.3f})"
                 .format(**u["auc_gain_over_none"])))
    out = {"pad_ufes20": "photos with a Fitzpatrick type, lesion close-ups (lesion_photo=True)",
           "utkface": "validation split face chips, whole frame; race is not tone (a proxy)",
           "white_patch_percentile": WHITE_PATCH_PERCENTILE, "shades_of_gray_p": SHADES_OF_GRAY_P,
           "results": results, "wall_s": wall}
    Path(args.out).write_text(json.dumps(to_jsonable(out), indent=1) + "\n")
    print(f"({wall:.0f} s) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Is the age model's MAE gap between skin tones the model's, or the test photos' age mix?

The age model's fairness card gives its mean absolute error per estimated
skin-tone bucket on UTKFace's test split, with the light and dark intervals
apart. Age error grows with age (a 70-year-old's apparent age spreads over
more years than a 5-year-old's), and UTKFace's tone buckets need not hold the
same mix of ages. A gap in raw MAE can therefore come from the age mix as much
as from the model. This script separates the two by direct standardisation, as
epidemiology compares rates of populations with different age structures:

* per tone bucket, the MAE within each of the five age groups
  (:data:`skin.tasks.AGE_BINS`) and the bucket's age mix;
* the **age-standardised MAE**: the bucket's MAEs per age band weighted by the
  whole test split's age mix (the MAE the bucket would have with everyone's
  age mix), over the bands every bucket has; with the five age groups as
  bands, and with ten-year bands (:data:`BANDS`), which also even out the mix
  within a group (0-24 holds babies, whose age is easy, and young adults);
* the training split's photos per tone bucket (whether a bucket was rare);
* the dark − light and medium − light gaps, raw and standardised, each with a
  95 % percentile bootstrap interval over whole clusters (UTKFace's
  near-duplicate chains, ``group_id``), as the reports resample.

Predictions are the report's (the served model, flip-averaged as the report's
``--tta true`` run; the first table row checks the raw MAEs against
``models/age/report.json``).

    python bench/age_tone_gap.py --data-dir ../shared/data/utkface --record

Prints a table and writes ``bench/results/age_tone_gap.json``; with
``--record``, also the model's entry in ``skin/age_mix.json``
(:mod:`skin.age_mix`), which its fairness cards state: the ten-year-band
standardisation and the dark − light gaps.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from skin.metrics import bootstrap_indices  # noqa: E402
from skin.reports import CI_QUANTILES, to_jsonable  # noqa: E402
from skin.tasks import age_group_names, age_to_group  # noqa: E402

TONES = ("light", "medium", "dark")
#: lower edges of the ten-year age bands of the finer standardisation (the last open-ended)
BANDS = tuple(range(0, 80, 10))
GAPS = (("dark", "light"), ("medium", "light"))
KINDS = ("raw_mae", "standardised_mae", "standardised_mae_bands")


def tone_figures(err: np.ndarray, age_group: np.ndarray, band: np.ndarray, tone: np.ndarray,
                 n_groups: int) -> dict:
    """Per tone bucket: n, raw MAE, MAE and age mix per age group, and the MAE standardised to the whole set's
    age mix by age group (``standardised_mae``) and by ten-year band (``standardised_mae_bands``), over the
    groups / bands that every bucket has (those left out are counted under ``strata_left_out``)."""
    masks = {t: tone == t for t in TONES}
    left_out = {}
    out = {t: {"n": int(m.sum()), "raw_mae": float(err[m].mean()),
               "mae_by_age_group": [float(err[m & (age_group == g)].mean()) if (m & (age_group == g)).any()
                                    else None for g in range(n_groups)],
               "age_mix": (np.bincount(age_group[m], minlength=n_groups) / m.sum()).tolist()}
           for t, m in masks.items()}
    for key, strata in (("standardised_mae", age_group), ("standardised_mae_bands", band)):
        common = [k for k in np.unique(strata) if all((m & (strata == k)).any() for m in masks.values())]
        weights = np.array([(strata == k).sum() for k in common], float)
        for t, m in masks.items():
            per = np.array([err[m & (strata == k)].mean() for k in common])
            out[t][key] = float(per @ weights / weights.sum())
        left_out[key] = int(len(np.unique(strata)) - len(common))
    return {"tones": out, "strata_left_out": left_out}


def gaps(fig: dict) -> dict:
    tones = fig["tones"]
    return {f"{a}-{b}": {kind: tones[a][kind] - tones[b][kind] for kind in KINDS} for a, b in GAPS}


def age_mix_record(out: dict, task):
    """The :class:`skin.age_mix.AgeMixRecord` of this script's result ``out``: ten-year bands, dark − light."""
    from skin.age_mix import AgeMixRecord

    tones, gap = out["tones"], out["gaps"]["dark-light"]
    return AgeMixRecord(
        task=task.name, model=out["model"], strata="ten-year bands", young_below=int(task.age_bins[1]),
        young_share={t: tones[t]["age_mix"][0] for t in TONES}, raw_mae={t: tones[t]["raw_mae"] for t in TONES},
        standardised_mae={t: tones[t]["standardised_mae_bands"] for t in TONES},
        raw_gap={"value": gap["raw_mae"]["value"], "ci": list(gap["raw_mae"]["ci"])},
        standardised_gap={"value": gap["standardised_mae_bands"]["value"],
                          "ci": list(gap["standardised_mae_bands"]["ci"])})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="default:age")
    parser.add_argument("--data-dir", required=True, help="UTKFace in its publisher's layout")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "age_tone_gap.json"))
    parser.add_argument("--record", action="store_true",
                        help="also write the model's entry in skin/age_mix.json, which its cards state")
    args = parser.parse_args(argv)

    import torch

    from skin.data import load
    from skin.evaluate import cluster_ids, predict_logits
    from skin.inference import load_for_inference
    from skin.metrics import expected_age
    from skin.tasks import get_task, label_ages

    torch.set_num_threads(args.threads)
    task = get_task("age_utkface")
    start = time.perf_counter()
    model, processor, labels = load_for_inference(args.model)
    dsd = load(task.dataset, args.data_dir, cache_dir=args.cache_dir, **task.data_config)
    ds = dsd["test"]
    # whether a bucket was rare in training (a sampler could rebalance that), or not
    train_tones = dict(Counter(str(t) for t in dsd["train"]["tone_bucket_estimated"]))
    with torch.no_grad():
        logits = predict_logits(model, processor, ds, tta=True, vflip=not task.upright)
    probs = torch.softmax(torch.from_numpy(logits), 1).numpy()
    age = np.asarray(task.targets(ds), dtype=float)
    err = np.abs(expected_age(probs, label_ages(labels)) - age)
    age_group = age_to_group(age, task.age_bins)
    tone = np.asarray([str(t) for t in ds["tone_bucket_estimated"]])
    n_groups = len(task.age_bins)
    band = age_to_group(age, BANDS)

    point = tone_figures(err, age_group, band, tone, n_groups)
    boot = [gaps(tone_figures(err[i], age_group[i], band[i], tone[i], n_groups))
            for i in bootstrap_indices(len(err), args.n_boot, 0, groups=cluster_ids(ds))]
    gap_out = {}
    for name, values in gaps(point).items():
        gap_out[name] = {kind: {"value": v, "ci": np.quantile([b[name][kind] for b in boot], CI_QUANTILES).tolist()}
                         for kind, v in values.items()}
    report = json.loads((ROOT / "models" / "age" / "report.json").read_text())
    reported = {t: report["fairness"]["tone_bucket_estimated"]["groups"][t]["mae"]["value"] for t in TONES}
    wall = time.perf_counter() - start

    names = age_group_names(task.age_bins)
    print(f"UTKFace test, {len(err)} photos, {args.model}; MAE in years ({wall:.0f} s)")
    print(f"{'tone':8} {'n':>5} {'raw':>6} {'report':>7} {'std.':>6} {'bands':>6}  "
          + " ".join(f"{n:>7}" for n in names)
          + "   age mix")
    for t in TONES:
        f = point["tones"][t]
        print(f"{t:8} {f['n']:>5} {f['raw_mae']:>6.2f} {reported[t]:>7.2f} {f['standardised_mae']:>6.2f} "
              f"{f['standardised_mae_bands']:>6.2f}  "
              + " ".join("    n/a" if v is None else f"{v:>7.2f}" for v in f["mae_by_age_group"]) + "   "
              + " ".join(f"{v:.2f}" for v in f["age_mix"]))
    overall_mix = np.bincount(age_group, minlength=n_groups) / len(age_group)
    print(f"{'all':8} {len(err):>5} {err.mean():>6.2f} {'':>7} {'':>6} {'':>6}  "
          + " ".join(f"{err[age_group == g].mean():>7.2f}" for g in range(n_groups)) + "   "
          + " ".join(f"{v:.2f}" for v in overall_mix))
    for name, g in gap_out.items():
        print(f"gap {name}: " + ", ".join(f"{kind} {g[kind]['value']:+.2f} ({g[kind]['ci'][0]:+.2f} to "
                                          f"{g[kind]['ci'][1]:+.2f})" for kind in KINDS))
    out = {"model": args.model, "dataset": "utkface test split", "n": int(len(err)), "tta": True,
           "age_groups": names, "bands": list(BANDS), "overall_age_mix": overall_mix.tolist(),
           "overall_mae_by_age_group": [float(err[age_group == g].mean()) for g in range(n_groups)],
           **point, "report_raw_mae": reported, "train_split_tone_counts": train_tones, "gaps": gap_out,
           "n_boot": args.n_boot,
           "ci_quantiles": list(CI_QUANTILES), "resampled": "clusters (group_id)", "wall_s": wall,
           "threads": args.threads}
    Path(args.out).write_text(json.dumps(to_jsonable(out), indent=1) + "\n")
    print(f"training split by estimated tone: {train_tones}\n-> {args.out}")
    if args.record:
        from skin.age_mix import AGE_MIX_PATH, record_age_mix

        record_age_mix(age_mix_record(out, task))
        print(f"-> {AGE_MIX_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

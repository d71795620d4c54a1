"""How much would more training photos help the clinical model? A learning curve.

The clinical model's recipe (models/README.md) trained on random subsets of its
training split (``train.py --max_train_samples N``: the same leak-free
validation and test splits, every other option unchanged) and on all of it.
Balanced accuracy and accuracy against the number of training photos, on a
log scale: the gain per doubling is the slope of an ordinary least-squares line
(``scipy.stats.linregress``, with its standard error), and the line is carried
on to the number of photos at which it would reach the clinical-photos issue's
targets (balanced accuracy 0.60, accuracy 0.65). A straight line on log n is the
usual shape of such curves over a range this narrow, and it flattens as data
grows, so the figure is a lower bound on the photos needed, not a forecast.

    python bench/clinical_learning_curve.py models/clinical/report.json \\
        bench/results/clinical_dermnet_lite0_partial7_224_train1040_report.json \\
        bench/results/clinical_dermnet_lite0_partial7_224_train1560_report.json

Prints a table and writes ``bench/results/clinical_learning_curve.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from skin.reports import RunReport, to_jsonable  # noqa: E402

#: The clinical-photos issue's targets on the leak-free test split.
TARGETS = {"balanced_accuracy": 0.60, "accuracy": 0.65}
SPLITS = ("validation", "test")


def fit(n_train: list[int], values: list[float], target: float) -> dict:
    """Least-squares line of ``values`` on log2(``n_train``): the gain per doubling (with its standard
    error) and the number of training photos at which the line reaches ``target``."""
    from scipy.stats import linregress

    line = linregress([math.log2(n) for n in n_train], values)
    reach = 2 ** ((target - line.intercept) / line.slope) if line.slope > 0 else None
    return {"gain_per_doubling": line.slope, "gain_per_doubling_se": line.stderr,
            "n_train_for_target": reach, "target": target}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("reports", nargs="+", help="report.json of runs of one recipe on different training sizes")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "clinical_learning_curve.json"))
    args = parser.parse_args(argv)
    if len(args.reports) < 2:
        parser.error("a learning curve needs at least two runs")
    runs = []
    for path in args.reports:
        report = RunReport.read(path)
        runs.append({"report": path, "n_train": int(report.splits["train"]),
                     **{split: {m: float(getattr(report, split)[m]) for m in TARGETS} for split in SPLITS}})
    runs.sort(key=lambda r: r["n_train"])
    if len({r["n_train"] for r in runs}) < 2:
        parser.error("the runs must differ in their number of training photos")
    n_train = [r["n_train"] for r in runs]
    fits = {split: {m: fit(n_train, [r[split][m] for r in runs], target) for m, target in TARGETS.items()}
            for split in SPLITS}

    print("| training photos | validation acc / bal acc | test acc / bal acc |")
    print("|---:|---|---|")
    for r in runs:
        v, t = r["validation"], r["test"]
        print(f"| {r['n_train']} | {v['accuracy']:.3f} / {v['balanced_accuracy']:.3f} | "
              f"{t['accuracy']:.3f} / {t['balanced_accuracy']:.3f} |")
    for split in SPLITS:
        for m, f in fits[split].items():
            reach = f["n_train_for_target"]
            where = f"{reach:,.0f} photos ({reach / n_train[-1]:.1f}x)" if reach else "never (no gain)"
            print(f"{split} {m}: {f['gain_per_doubling']:+.3f} per doubling (se {f['gain_per_doubling_se']:.3f}); "
                  f"the line reaches {f['target']:.2f} at {where}")
    Path(args.out).write_text(json.dumps(to_jsonable({"runs": runs, "fits": fits}), indent=1) + "\n",
                              encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

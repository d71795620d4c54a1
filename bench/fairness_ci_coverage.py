"""How often do the fairness tables' 95 % intervals hold the value they estimate?

Every report and fairness card gives each group's accuracy and balanced accuracy
with a percentile bootstrap interval that resamples whole clusters
(``skin.fairness.fairness_report(..., clusters=group_id)``). On DermNet's test
split the balanced-accuracy intervals are lopsided: the point estimate sits in
the lower third of the interval for the overall, light and medium rows,
because a resample can miss a class that has few clusters (the test split's
photos and clusters per class are in the JSON) and the recall of a class with
few clusters is a ratio of a few sums. A lopsided interval is not yet a wrong
one. This script measures the coverage.

A double bootstrap on real predictions: the clinical model's answers on
DermNet's validation and test splits together (953 photos, 291 clusters) stand
for the population, whose figures are then known. Each trial draws a test set
from it as the builder's split does (clusters whole, each class keeping its
share: half of each class's clusters, drawn with replacement, a cluster drawn
twice counting as two), computes the intervals exactly as the reports do, and
records whether each holds the population's figure, overall and for each
estimated skin-tone bucket. Coverage near 0.95 means the intervals can be read
as printed.

For comparison, each a known remedy for a lopsided bootstrap distribution:
the basic (reverse percentile) interval and BCa (Efron 1987: bias correction
from the share of resamples below the estimate, acceleration from a
delete-one-cluster jackknife), both from ``scipy.stats.bootstrap`` with the
clusters as its units, and a percentile interval over resamples stratified by
class (clusters drawn within their class, as the split stratifies).

    python bench/fairness_ci_coverage.py --data-dir ../shared/data/dermnet --trials 400 --record
    python bench/fairness_ci_coverage.py --model default:condition --task condition_ham10000 \
        --data-dir ../shared/data/ham10000 --trials 400 --no-scipy --record

    python bench/fairness_ci_coverage.py --model default:age --task age_utkface \
        --data-dir ../shared/data/utkface --trials 400 --no-scipy --record

The second line repeats the check on the dermoscopy model, whose clusters are
HAM10000's lesions (several photos of one lesion) and whose classes are far
less balanced. The third checks the age model's intervals (MAE and age-group
accuracy, from the expected age): its strata are the age groups the UTKFace
split stratifies by, its clusters UTKFace's near-duplicate chains.

Prints a table and writes ``bench/results/fairness_ci_coverage.json`` (``_ham10000.json`` for the
second); with ``--record``, also the model's entry in ``skin/ci_coverage.json``
(:mod:`skin.ci_coverage`), which its fairness cards state.
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

from skin.metrics import (  # noqa: E402
    accuracy, age_metrics, balanced_accuracy, bootstrap_indices, expected_age, group_members,
)
from skin.reports import CI_QUANTILES, to_jsonable  # noqa: E402
from skin.tasks import TaskKind, age_group_names, age_to_group  # noqa: E402

GROUPS = ("overall", "light", "medium", "dark")
CLASS_METRICS = {"accuracy": accuracy, "balanced_accuracy": balanced_accuracy}
#: the age reports' metrics, on the expected age (skin.metrics.age_metrics, as the reports compute them)
AGE_METRICS = {"mae": lambda y, p: age_metrics(y, p)["mae"],
               "group_accuracy": lambda y, p: age_metrics(y, p)["group_accuracy"]}
METHODS = ("percentile (shipped)", "basic", "BCa", "percentile, stratified by class")
SCIPY_METHODS = ("basic", "BCa")
#: nominal levels of the shipped percentile interval also measured (the same resamples, other quantiles), to find
#: the level whose coverage is 95 %
LEVELS = (0.90, 0.95, 0.975, 0.99)
LEVEL_METHODS = tuple(f"percentile at {level:.1%}" for level in LEVELS)
#: the tasks whose models this measures: on a dataset with clusters and estimated tone
CHECKED_TASKS = ("condition_dermnet", "condition_ham10000", "age_utkface")


def clusters_by_class(y: np.ndarray, clusters: np.ndarray) -> dict[int, list[np.ndarray]]:
    """Clusters grouped by their most common class (the split's strata: ``y`` holds class or age-group
    indices)."""
    strata: dict[int, list[np.ndarray]] = {}
    for rows in group_members(clusters):
        strata.setdefault(int(np.bincount(y[rows]).argmax()), []).append(rows)
    return strata


def group_mask(tone: np.ndarray, group: str) -> np.ndarray:
    """The rows of one of :data:`GROUPS` (``overall``: every row)."""
    return np.ones(len(tone), bool) if group == "overall" else tone == group


def draw_test_set(strata: dict[int, list[np.ndarray]], rng) -> tuple[np.ndarray, np.ndarray]:
    """Rows and fresh cluster ids of one test set: half of each class's clusters, drawn with replacement."""
    rows, ids = [], []
    for label, members in strata.items():
        for j, k in enumerate(rng.integers(0, len(members), max(1, len(members) // 2))):
            rows.append(members[k])
            ids += [f"{label}-{j}"] * len(members[k])
    return np.concatenate(rows), np.asarray(ids)


def library_intervals(metric, y, pred, in_group, members, n_boot: int, seed: int) -> dict:
    """The basic and BCa intervals of scipy.stats.bootstrap, clusters as the units it resamples (one bootstrap
    distribution for both; BCa's acceleration from scipy's delete-one-cluster jackknife)."""
    from scipy.stats import bootstrap

    def statistic(clusters):
        rows = np.concatenate([members[k] for k in clusters])
        keep = in_group[rows]
        return metric(y[rows][keep], pred[rows][keep]) if keep.any() else np.nan

    level = CI_QUANTILES[1] - CI_QUANTILES[0]
    data = (np.arange(len(members)),)
    bca = bootstrap(data, statistic, n_resamples=n_boot, vectorized=False, confidence_level=level, method="BCa",
                    rng=np.random.default_rng(seed))
    basic = bootstrap(data, statistic, n_resamples=0, vectorized=False, confidence_level=level, method="basic",
                      bootstrap_result=bca)
    return {"basic": tuple(basic.confidence_interval), "BCa": tuple(bca.confidence_interval)}


def intervals(metric, y, pred, in_group, resamples, stratified, members, seed: int, *,
              library: bool = True) -> tuple[float, dict]:
    """The group's estimate and its interval by each method (NaN resamples, where the group is absent, skipped);
    without ``library``, not scipy's basic and BCa (whose jackknife costs one evaluation per cluster)."""
    estimate = metric(y[in_group], pred[in_group])

    def values(draws):
        v = np.array([metric(y[i][in_group[i]], pred[i][in_group[i]]) if in_group[i].any() else np.nan
                      for i in draws])
        return v[~np.isnan(v)]

    shipped = values(resamples)
    return estimate, {
        "percentile (shipped)": tuple(np.quantile(shipped, CI_QUANTILES)),
        **(library_intervals(metric, y, pred, in_group, members, len(resamples), seed) if library else {}),
        "percentile, stratified by class": tuple(np.quantile(values(stratified), CI_QUANTILES)),
        **{name: tuple(np.quantile(shipped, ((1 - level) / 2, (1 + level) / 2)))
           for name, level in zip(LEVEL_METHODS, LEVELS)},
    }


def shipped_check(kind: TaskKind | str, y, probs, tone, ids, n_boot: int, seed: int, result: dict) -> None:
    """The percentile intervals computed here are the reports' own (fairness_report on the same draw; ``probs``:
    class probabilities, or predicted ages)."""
    from skin.fairness import fairness_report

    table = fairness_report(y, probs, {"tone": tone}, kind=kind, n_boot=n_boot, random_state=seed,
                            clusters=ids).tables["tone"]
    for group in GROUPS:
        row = table.overall if group == "overall" else table.groups.get(group)
        for name in result[group]:
            ours = result[group][name]["percentile (shipped)"]
            theirs = (row[name].ci_low, row[name].ci_high)
            if not np.allclose(ours, theirs):
                raise RuntimeError(f"{group} {name}: this script's percentile interval {ours} is not the "
                                   f"report's {theirs}; the measurement would not be of the shipped method")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="default:clinical")
    parser.add_argument("--task", default="condition_dermnet", choices=CHECKED_TASKS,
                        help="the model's task: its dataset, and the clusters its split keeps whole")
    parser.add_argument("--data-dir", required=True, help="the task's dataset in its publisher's layout")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--n-boot", type=int, default=200, help="resamples per interval (the reports use 200)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--record", action="store_true", help="also write the shipped interval's coverage as this "
                        "model's entry in skin/ci_coverage.json, which its fairness cards state")
    parser.add_argument("--no-scipy", action="store_true", help="leave out the basic and BCa intervals, whose "
                        "jackknife evaluates every cluster left out in turn (slow with HAM10000's lesions)")
    parser.add_argument("--out", default=None, help="default: bench/results/fairness_ci_coverage.json for "
                        "condition_dermnet, fairness_ci_coverage_<dataset>.json for another task")
    args = parser.parse_args(argv)

    import torch
    from datasets import concatenate_datasets

    from skin.data import load
    from skin.evaluate import cluster_ids, grouping_config, predict_logits
    from skin.inference import load_for_inference
    from skin.tasks import get_task, label_ages

    torch.set_num_threads(args.threads)
    task = get_task(args.task)
    name = "fairness_ci_coverage" + ("" if args.task == "condition_dermnet" else f"_{task.dataset}")
    out_path = Path(args.out or ROOT / "bench" / "results" / f"{name}.json")
    model, processor, labels = load_for_inference(args.model)
    dsd = load(task.dataset, args.data_dir, cache_dir=args.cache_dir,
               **{**task.data_config, **grouping_config(task.dataset, labels)})
    ds = concatenate_datasets([dsd["validation"], dsd["test"]])
    probs = torch.softmax(torch.from_numpy(predict_logits(model, processor, ds)), 1).numpy()
    y = np.asarray(task.targets(ds))
    if task.kind is TaskKind.AGE:  # the expected age (DEX), stratified by age group as the split is
        metrics, stratum_names = AGE_METRICS, age_group_names(task.age_bins)
        pred = expected_age(probs, label_ages(labels))
        probs = pred  # what fairness_report takes for an age task

        def stratum(targets):
            return age_to_group(targets, task.age_bins)
    else:
        metrics, pred, stratum_names, stratum = CLASS_METRICS, probs.argmax(1), labels, np.asarray
    tone = np.asarray([str(t) for t in ds["tone_bucket_estimated"]])
    strata = clusters_by_class(stratum(y), cluster_ids(ds))
    test_y = stratum(np.asarray(task.targets(dsd["test"])))
    test_clusters = {stratum_names[c]: {"photos": len(np.concatenate(m)), "clusters": len(m)}
                     for c, m in sorted(clusters_by_class(test_y, cluster_ids(dsd["test"])).items())}
    masks = {g: group_mask(tone, g) for g in GROUPS}
    population = {g: {name: fn(y[m], pred[m]) for name, fn in metrics.items()} | {"n": int(m.sum())}
                  for g, m in masks.items()}

    methods = tuple(m for m in METHODS if not (args.no_scipy and m in SCIPY_METHODS))
    hits = {(g, name, meth): 0 for g in GROUPS for name in metrics for meth in methods + LEVEL_METHODS}
    widths = {key: [] for key in hits}
    centre = {(g, name): [] for g in GROUPS for name in metrics}  # where the estimate sits in the shipped interval
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for trial in range(args.trials):
        rows, ids = draw_test_set(strata, rng)
        yt, pt, tt = y[rows], pred[rows], tone[rows]
        resamples = list(bootstrap_indices(len(yt), args.n_boot, trial, groups=ids))  # as fairness_report draws
        members = group_members(ids)
        by_class = clusters_by_class(stratum(yt), ids)
        srng = np.random.default_rng(10_000 + trial)
        stratified = [np.concatenate([ms[k] for ms in by_class.values() for k in srng.integers(0, len(ms), len(ms))])
                      for _ in range(args.n_boot)]
        result = {}
        for g in GROUPS:
            in_group = group_mask(tt, g)
            result[g] = {}
            for name, fn in metrics.items():
                est, ivs = intervals(fn, yt, pt, in_group, resamples, stratified, members, trial,
                                     library=not args.no_scipy)
                result[g][name] = ivs
                for meth, (lo, hi) in ivs.items():
                    hits[g, name, meth] += int(lo <= population[g][name] <= hi)
                    widths[g, name, meth].append(hi - lo)
                lo, hi = ivs["percentile (shipped)"]
                centre[g, name].append((est - lo) / (hi - lo) if hi > lo else 0.5)
        if trial == 0:
            shipped_check(task.kind, yt, probs[rows], tt, ids, args.n_boot, trial, result)
    wall = time.perf_counter() - start

    rows_out = []
    print(f"{args.trials} trials x {args.n_boot} resamples, {wall:.0f} s; coverage / mean width (nominal 0.95)")
    print(f"{'group':8} {'metric':18} {'population':>10} " + " ".join(f"{m[:24]:>26}" for m in methods))
    for g in GROUPS:
        for name in metrics:
            row = {"group": g, "metric": name, "population": population[g][name], "population_n": population[g]["n"],
                   "estimate_position_in_shipped_interval": float(np.median(centre[g, name]))}
            for meth in methods + LEVEL_METHODS:
                row[meth] = {"coverage": hits[g, name, meth] / args.trials,
                             "mean_width": float(np.mean(widths[g, name, meth]))}
            rows_out.append(row)
            print(f"{g:8} {name:18} {population[g][name]:>10.3f} "
                  + " ".join(f"{row[m]['coverage']:>17.3f} / {row[m]['mean_width']:.3f}" for m in methods)
                  + "   at " + ", ".join(f"{lv:.1%}: {row[m]['coverage']:.3f}" for lv, m in zip(LEVELS, LEVEL_METHODS)))
    se = float(np.sqrt(0.95 * 0.05 / args.trials))
    out = {"model": args.model, "task": args.task, "dataset": f"{task.dataset} (validation + test as the population)",
           "population_photos": int(len(y)), "population_clusters": int(sum(len(v) for v in strata.values())),
           "test_split_by_class": test_clusters, "trials": args.trials, "n_boot": args.n_boot,
           "ci_quantiles": list(CI_QUANTILES), "methods": list(methods + LEVEL_METHODS),
           "coverage_standard_error_at_0.95": se, "wall_s": wall, "threads": args.threads, "rows": rows_out}
    out_path.write_text(json.dumps(to_jsonable(out), indent=1) + "\n")
    if args.record:
        from skin.ci_coverage import CICoverage, record_ci_coverage

        shipped = {name: {r["group"]: r["percentile (shipped)"]["coverage"] for r in rows_out if r["metric"] == name}
                   for name in metrics}
        record_ci_coverage(CICoverage(task=args.task, model=args.model, trials=args.trials,
                                      nominal=CI_QUANTILES[1] - CI_QUANTILES[0], coverage=shipped))
    print(f"(one standard error of a coverage near 0.95: {se:.3f}) -> {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

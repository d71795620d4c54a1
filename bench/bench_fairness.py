"""The fairness tables' cluster bootstrap: one MetricFrame per resample against skin.fairness's loop, side by side.

On a real test split and the embedded model's real probabilities (``--model
default:condition`` on HAM10000 by default, predicted once, not timed), every
sensitive attribute of the task, the same resamples of whole clusters
(``group_id``): per attribute, the time of

* ``metric_frame``: a fairlearn ``MetricFrame`` built for each resample (what
  ``skin.fairness`` did before; kept here as the reference), and
* ``skin``: ``skin.fairness._resample_stats``, the same metric functions on the
  same rows without a MetricFrame,

alternating, ``--repeats`` times, median; and whether the two give equal numbers
(they must: the same calls on the same rows). Then the whole
``skin.evaluate.evaluate_split`` (the report ``train.py`` and ``skin.evaluate``
write) once. Writes ``bench/results/fairness.json``.

    .venv/bin/python bench/bench_fairness.py --data-dir ../shared/data/ham10000 --cache-dir CACHE
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def metric_frame_stats(metrics, y, y_pred, groups, index, resamples):
    """The reference: a MetricFrame of each resample, by group (reindexed: NaN where absent) and overall."""
    import numpy as np
    from fairlearn.metrics import MetricFrame

    stats_g, stats_o = [], []
    for idx in resamples:
        frame = MetricFrame(metrics=metrics, y_true=y[idx], y_pred=y_pred[idx], sensitive_features={"g": groups[idx]})
        stats_g.append(frame.by_group.reindex(index).to_numpy(dtype=float))
        stats_o.append(frame.overall.to_numpy(dtype=float))
    return np.stack(stats_g), np.stack(stats_o)


def main() -> None:
    import numpy as np
    import torch

    from skin.calibration import softmax
    from skin.data import load
    from skin.evaluate import cluster_ids, evaluate_split, predict_logits, sensitive_groups
    from skin.fairness import _group_values, _metric_functions, _prepare, _resample_stats
    from skin.hub import load_classifier
    from skin.metrics import bootstrap_indices
    from skin.tasks import get_task

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--task", default="condition_ham10000")
    ap.add_argument("--model", default="default:condition")
    ap.add_argument("--split", default="test")
    ap.add_argument("--n-boot", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "fairness.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    task = get_task(args.task)
    ds = load(task.dataset, args.data_dir, cache_dir=args.cache_dir, **task.data_config)[args.split]
    model, processor = load_classifier(args.model)
    labels = [model.config.id2label[i] for i in range(len(model.config.id2label))]
    probs = softmax(predict_logits(model, processor, ds), 1.0)  # load_classifier's model has its temperature folded in
    targets = task.targets(ds)
    malignant = task.malignant_indices(labels) if task.malignant else None
    y, y_pred = _prepare(task.kind, targets, probs, labels, malignant, None)
    metrics = _metric_functions(task.kind, y_pred, malignant, task.age_bins)
    resamples = list(bootstrap_indices(len(y), args.n_boot, 0, groups=cluster_ids(ds)))

    attributes = {}
    for attr, values in sensitive_groups(task, ds).items():
        groups = _group_values(values, len(y), attr)
        index = sorted(set(groups))
        times = {"metric_frame": [], "skin": []}
        for _ in range(args.repeats):
            started = time.perf_counter()
            ref = metric_frame_stats(metrics, y, y_pred, groups, index, resamples)
            times["metric_frame"].append(time.perf_counter() - started)
            started = time.perf_counter()
            ours = _resample_stats(metrics, y, y_pred, groups, index, resamples)
            times["skin"].append(time.perf_counter() - started)
        equal = all(np.array_equal(a, b, equal_nan=True) for a, b in zip(ref, ours))
        row = {"groups": len(index), **{k: round(statistics.median(v), 3) for k, v in times.items()},
               "equal": bool(equal)}
        row["speed_up"] = round(row["metric_frame"] / row["skin"], 1)
        attributes[attr] = row
        print(attr, row, flush=True)

    started = time.perf_counter()
    evaluate_split(task, probs, targets, labels, ds, n_boot=args.n_boot)
    whole = round(time.perf_counter() - started, 2)
    result = {"task": args.task, "model": args.model, "split": args.split, "rows": len(y),
              "clusters": len(set(cluster_ids(ds))), "n_boot": args.n_boot, "repeats": args.repeats,
              "threads": args.threads, "metrics": list(metrics), "seconds_per_attribute": attributes,
              "total_s": {k: round(sum(a[k] for a in attributes.values()), 2) for k in ("metric_frame", "skin")},
              "evaluate_split_s": whole}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("rows", "clusters", "total_s", "evaluate_split_s")}))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

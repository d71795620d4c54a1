"""Can a visitor read the condition models' summed malignant probability as a probability?

The app's answer is the most likely class. A model can spread its probability
over several malignant classes (melanoma 30 %, BCC 25 %) and still answer a
benign one (naevus 45 %): the reports' ``fnr`` (malignant photos whose top
answer is a benign class) is the share of cancers the top answer misses. The
summed probability of the malignant classes (the DDI audit's score,
:func:`skin.evaluate.malignancy_audit`) does not split its evidence so. Before
the app shows that sum, this script measures, on each model's own test split
and on PAD-UFES-20's clinical photos (never trained on), read as the app reads
a photo (alone, calibrated):

* how well it ranks cancers above benign spots (ROC-AUC);
* whether it is calibrated as a binary probability: the reliability curve of
  the sum (10 equal-width bins: mean sum against the share malignant) and its
  ECE (the same bins, weighted by count), with the Brier score;
* how many cancers the top answer misses, and how many the sum flags at a few
  thresholds (sensitivity, with the share of benign photos flagged).

    python bench/malignant_sum.py --ham10000 ../shared/data/ham10000 \\
        --dermnet ../shared/data/dermnet --pad-ufes20 ../shared/data/pad_ufes20

Prints a table and writes ``bench/results/malignant_sum.json``.
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

THRESHOLDS = (0.1, 0.2, 0.3, 0.5)
N_BINS = 10


def sum_figures(score: np.ndarray, truth: np.ndarray, top_malignant: np.ndarray) -> dict:
    """The figures of one (model, set): ranking, calibration of the sum, and what the top answer and
    thresholds on the sum catch."""
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import brier_score_loss, roc_auc_score

    frac_pos, mean_pred = calibration_curve(truth, score, n_bins=N_BINS, strategy="uniform")
    # the photos in each non-empty bin, binned as calibration_curve bins them (it does not return counts)
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, N_BINS + 1)[1:-1], score), minlength=N_BINS)
    counts = counts[counts > 0]
    ece = float(np.sum(counts * np.abs(frac_pos - mean_pred)) / len(score))
    benign = ~truth
    return {
        "n": int(len(score)), "n_malignant": int(truth.sum()),
        "roc_auc": float(roc_auc_score(truth, score)),
        "ece_of_sum": ece, "brier": float(brier_score_loss(truth, score)),
        "mean_sum": float(score.mean()), "share_malignant": float(truth.mean()),
        "reliability": [{"mean_sum": float(m), "share_malignant": float(f), "n": int(c)}
                        for m, f, c in zip(mean_pred, frac_pos, counts, strict=True)],
        "top_answer_misses": float(1 - top_malignant[truth].mean()),
        "top_answer_flags_benign": float(top_malignant[benign].mean()),
        "at_threshold": [{"threshold": t, "sensitivity": float((score[truth] >= t).mean()),
                          "benign_flagged": float((score[benign] >= t).mean())} for t in THRESHOLDS],
    }


def model_answers(model_ref: str, dataset: str, data_dir: str, split: str, cache_dir: str | None):
    """``(summed malignant probability, truth, whether the top answer is malignant)`` on one split."""
    import torch
    from datasets import concatenate_datasets

    from skin.data import load
    from skin.evaluate import grouping_config, predict_logits
    from skin.inference import load_for_inference
    from skin.tasks import TASKS, malignant_indices

    model, processor, labels = load_for_inference(model_ref)
    task = next(t for t in TASKS.values() if t.dataset == dataset)
    dsd = load(dataset, data_dir, cache_dir=cache_dir, **{**task.data_config, **grouping_config(dataset, labels)})
    ds = concatenate_datasets([dsd[s] for s in dsd]) if split == "all" else dsd[split]
    probs = torch.softmax(torch.from_numpy(predict_logits(model, processor, ds)), 1).numpy()
    idx = malignant_indices(labels)
    return probs[:, idx].sum(1), np.asarray(ds["malignant"], bool), np.isin(probs.argmax(1), idx)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ham10000", required=True)
    parser.add_argument("--dermnet", required=True)
    parser.add_argument("--pad-ufes20", required=True)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "malignant_sum.json"))
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    runs = [("default:condition", "ham10000", args.ham10000, "test"),
            ("default:clinical", "dermnet", args.dermnet, "test"),
            ("default:condition", "pad_ufes20", args.pad_ufes20, "all"),
            ("default:clinical", "pad_ufes20", args.pad_ufes20, "all")]
    rows = []
    start = time.perf_counter()
    for model_ref, dataset, data_dir, split in runs:
        score, truth, top = model_answers(model_ref, dataset, data_dir, split, args.cache_dir)
        rows.append({"model": model_ref, "dataset": dataset, "split": split, **sum_figures(score, truth, top)})
    print(f"{'model':18} {'set':16} {'n (mal.)':>10} {'AUC':>5} {'ECE':>5} {'Brier':>5} {'top misses':>10} "
          + " ".join(f"{'>=' + str(t):>11}" for t in THRESHOLDS))
    for r in rows:
        cells = " ".join(f"{a['sensitivity']:.2f}/{a['benign_flagged']:.2f}".rjust(11) for a in r["at_threshold"])
        print(f"{r['model']:18} {r['dataset'] + ' ' + r['split']:16} {r['n']:>5} ({r['n_malignant']:>3}) "
              f"{r['roc_auc']:.3f} {r['ece_of_sum']:.3f} {r['brier']:.3f} {r['top_answer_misses']:>10.2f} {cells}")
    print("(threshold cells: sensitivity / share of benign photos flagged)")
    out = {"what": __doc__.split("\n")[0], "served": "single view, calibrated, as the app predicts",
           "bins": N_BINS, "thresholds": THRESHOLDS, "wall_s": time.perf_counter() - start, "runs": rows}
    Path(args.out).write_text(json.dumps(to_jsonable(out), indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Classical baseline: HOG features + SVM or MLP, as the forehead-aging project did.

Same task registry, same grouped split and the same report format as
``train.py`` (``report.json`` with ``test``, ``calibration`` and ``fairness``),
so a deep model and its classical baseline compare line by line::

    python -m skin.baseline --task condition_ham10000 --data-dir ../shared/data/ham10000 --classifier svm

Features: Histogram of Oriented Gradients (Dalal & Triggs 2005) from
scikit-image on a grayscale image resized to ``--size`` (default 64 px; 9
orientations, 8x8-pixel cells, 2x2-cell blocks, L2-Hys), standardised. The SVM
is an RBF ``SVC`` with balanced class weights and Platt-scaled probabilities;
the MLP one hidden layer of 256 units with early stopping. Both come from
scikit-learn. Probabilities are then temperature-calibrated on validation like
the deep models (their log-probabilities act as logits).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from skin.tasks import TaskKind, get_task

CLASSIFIERS = ("svm", "mlp")


def hog_features(ds, size: int = 64) -> np.ndarray:
    """One HOG vector per row of ``ds`` (an ``image`` column)."""
    from skimage.feature import hog

    feats = []
    for start in range(0, len(ds), 256):
        for im in ds[start : start + 256]["image"]:
            gray = np.asarray(im.convert("L").resize((size, size)), dtype=np.float32) / 255.0
            feats.append(hog(gray, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2),
                             block_norm="L2-Hys", feature_vector=True))
    return np.stack(feats).astype(np.float32)


def make_classifier(name: str, seed: int = 0):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    if name == "svm":
        # Platt-scaled probabilities (what SVC(probability=True) did before scikit-learn 1.9 deprecated it).
        clf = CalibratedClassifierCV(SVC(kernel="rbf", C=1.0, class_weight="balanced", random_state=seed),
                                     method="sigmoid", ensemble=False)
    elif name == "mlp":
        clf = MLPClassifier(hidden_layer_sizes=(256,), early_stopping=True, max_iter=200, random_state=seed)
    else:
        raise ValueError(f"--classifier must be one of {', '.join(CLASSIFIERS)}, not {name!r}")
    return make_pipeline(StandardScaler(), clf)


def _full_probs(clf, X, n_classes: int) -> np.ndarray:
    """Probabilities over all classes (a class absent from training gets 0)."""
    probs = np.zeros((len(X), n_classes))
    probs[:, clf.classes_] = clf.predict_proba(X)
    return probs


def run(task_name: str, data_dir: str, classifier: str = "svm", out_dir: str | None = None,
        cache_dir: str | None = None, size: int = 64, n_boot: int = 200, seed: int = 0) -> dict:
    from skin.calibration import calibration_summary, softmax
    from skin.data import load
    from skin.evaluate import evaluate_split
    from skin.reports import dump_json

    task = get_task(task_name)
    if task.kind is TaskKind.AGE:
        raise ValueError("the HOG baseline is for classification and graded tasks; age uses the deep models")
    started = time.time()
    dsd = load(task.dataset, data_dir, cache_dir=cache_dir, **task.data_config)
    labels = task.labels(dsd["train"].features)
    X = {s: hog_features(dsd[s], size) for s in ("train", "validation", "test")}
    y = {s: task.targets(dsd[s]) for s in X}
    clf = make_classifier(classifier, seed).fit(X["train"], y["train"])
    eps = 1e-7
    logits = {s: np.log(_full_probs(clf, X[s], len(labels)) + eps) for s in ("validation", "test")}
    calib = calibration_summary(logits["validation"], y["validation"], logits["test"], y["test"])
    test = evaluate_split(task, softmax(logits["test"], calib["temperature"]), y["test"], labels, dsd["test"],
                          n_boot=n_boot)
    report = {
        "task": task.name, "kind": task.kind, "dataset": task.dataset, "labels": labels,
        "backbone": f"hog{size}+{classifier}", "mode": "classical",
        "trainable_parameters": None, "total_parameters": None,
        "splits": {s: len(d) for s, d in dsd.items()},
        "test": test.metrics,
        "calibration": {k: calib[k] for k in ("temperature", "ece_before", "ece_after")},
        "fairness": test.fairness.to_dict(),
        "wall_time_s": round(time.time() - started, 1),
        "command": "python -m skin.baseline " + " ".join(sys.argv[1:]),
    }
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        dump_json(report, os.path.join(out_dir, "report.json"))
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skin.baseline", description=__doc__.split("\n")[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--classifier", default="svm", choices=CLASSIFIERS)
    parser.add_argument("--size", type=int, default=64, help="HOG input side in pixels")
    parser.add_argument("--out", default=None, help="run folder (default: experiments/<task>-hog-<classifier>)")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--n-boot", type=int, default=200)
    args = parser.parse_args(argv)
    out = args.out or os.path.join("experiments", f"{args.task}-hog-{args.classifier}")
    try:
        report = run(args.task, args.data_dir, args.classifier, out, args.cache_dir, args.size, args.n_boot)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"run": out, "test": {k: v for k, v in report["test"].items() if not isinstance(v, (list, dict))},
                      "calibration": report["calibration"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

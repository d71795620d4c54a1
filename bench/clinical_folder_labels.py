"""Does training on DermNet's folders, then summing into the clinical classes, beat training on the classes?

Esteva et al. (Nature 2017) trained on 757 fine disease classes and summed
their probabilities into 3 or 9 coarse classes at inference ("inference class
partitioning"), which beat training on the coarse classes directly. Here the
fine classes are the clinical grouping's 61 DermNet folders (the builder's
``folder_labels=True``: the same photos in the same leak-free splits) and the
coarse ones are the grouping's 11 classes.

For each model on the clinical grouping's validation and test splits:
accuracy, balanced accuracy, macro-F1, one-vs-rest AUC, and ECE after a
temperature fitted on validation (for the folder model, on the summed class
probabilities: ``skin.calibration.fit_temperature`` with ``class_groups``, as
the age model is calibrated on its groups). The difference in balanced
accuracy gets a paired bootstrap 95 % interval (photos resampled together).

    python bench/clinical_folder_labels.py --folder-model RUN/merged --baseline default:clinical \\
        --data-dir ../shared/data/dermnet

Prints a table and writes ``bench/results/clinical_folder_labels.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from skin.metrics import balanced_accuracy_gain, classification_metrics  # noqa: E402
from skin.reports import to_jsonable  # noqa: E402

SPLITS = ("validation", "test")


def scores(y: np.ndarray, probs: np.ndarray, labels: list[str]) -> dict:
    from skin.calibration import expected_calibration_error

    m = classification_metrics(y, probs, labels)
    return {"accuracy": m["accuracy"], "balanced_accuracy": m["balanced_accuracy"], "macro_f1": m["macro_f1"],
            "auc": m["roc_auc"], "ece": expected_calibration_error(probs, y)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder-model", required=True, help="a model trained on condition_dermnet_folders")
    parser.add_argument("--baseline", default="default:clinical", help="a model trained on condition_dermnet")
    parser.add_argument("--data-dir", required=True, help="DermNet in its publisher's layout")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--tta", action="store_true", help="average each photo's logits with its flips")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "clinical_folder_labels.json"))
    args = parser.parse_args(argv)

    import torch

    from skin.calibration import fit_temperature, group_probs, softmax
    from skin.data import load
    from skin.evaluate import predict_logits
    from skin.inference import load_for_inference
    from skin.tasks import get_task
    from dataset_scripts.dermnet_groupings import folder_classes

    task = get_task("condition_dermnet")
    dsd = load(task.dataset, args.data_dir, cache_dir=args.cache_dir, **task.data_config)
    labels = task.labels(dsd["train"].features)
    y = {split: np.asarray(task.targets(dsd[split])) for split in SPLITS}

    logits = {}
    for role, ref in (("baseline", args.baseline), ("folders", args.folder_model)):
        model, processor, model_labels = load_for_inference(ref)
        if role == "baseline" and model_labels != labels:
            raise SystemExit(f"{ref}: classes {model_labels} are not the clinical grouping's {labels}")
        if role == "folders":
            to_class = folder_classes("clinical")
            unknown = sorted(set(model_labels) - set(to_class))
            if unknown:
                raise SystemExit(f"{ref}: {unknown} are not folders of the clinical grouping")
            class_groups = np.array([labels.index(to_class[f]) for f in model_labels])
        with torch.inference_mode():
            for split in SPLITS:
                logits[role, split] = predict_logits(model, processor, dsd[split], tta=args.tta)

    # temperatures on validation: the baseline's on its classes, the folder model's on the summed classes
    t_base = fit_temperature(logits["baseline", "validation"], y["validation"])
    t_fold = fit_temperature(logits["folders", "validation"], y["validation"], class_groups=class_groups)
    rows = []
    for split in SPLITS:
        p_base = softmax(logits["baseline", split], t_base)
        p_fold = group_probs(softmax(logits["folders", split], t_fold), class_groups)
        rows.append({"split": split, "model": args.baseline, "temperature": t_base, "n": len(y[split]),
                     **scores(y[split], p_base, labels)})
        ci = balanced_accuracy_gain(y[split], p_base, p_fold, n_boot=args.n_boot)
        rows.append({"split": split, "model": args.folder_model, "temperature": t_fold, "n": len(y[split]),
                     **scores(y[split], p_fold, labels), "balanced_accuracy_gain": to_jsonable(ci)})
    print(f"{'split':>10} {'acc':>6} {'bal':>6} {'F1':>6} {'AUC':>6} {'ECE':>6}  model")
    for r in rows:
        print(f"{r['split']:>10} {r['accuracy']:6.3f} {r['balanced_accuracy']:6.3f} {r['macro_f1']:6.3f} "
              f"{r['auc'] or float('nan'):6.3f} {r['ece']:6.3f}  {r['model']}")
        if "balanced_accuracy_gain" in r:
            print(f"{'':>10} balanced-accuracy gain over the baseline: {r['balanced_accuracy_gain']}")
    result = {"folder_model": args.folder_model, "baseline": args.baseline, "tta": args.tta, "labels": labels,
              "rows": rows, "measured_with": "python bench/clinical_folder_labels.py " + " ".join(sys.argv[1:])}
    Path(args.out).write_text(json.dumps(to_jsonable(result), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

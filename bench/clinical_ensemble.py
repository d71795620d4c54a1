"""Would two clinical models answer better than one?

Averages the softmax probabilities of two or more condition models on
DermNet's leak-free validation and test splits (the models' own grouping),
with and without flip test-time augmentation, and scores each model alone and
the average. Each model's probabilities are those it serves: an embedded
default with its fitted temperature, a run's ``merged`` folder without one
(temperature changes no model's own answer, only its weight in the average).
Validation is where a choice is made; the test rows show whether it carries
over. The gain of the average over the first model gets a paired
bootstrap interval (images resampled together).

    python bench/clinical_ensemble.py --models default:clinical \\
        experiments/condition_dermnet-efficientnet_lite2-partial/merged --data-dir ../shared/data/dermnet

Prints a table and writes ``bench/results/clinical_ensemble.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from skin.metrics import accuracy, balanced_accuracy, balanced_accuracy_gain  # noqa: E402
from skin.reports import to_jsonable  # noqa: E402

SPLITS = ("validation", "test")


def scores(y: np.ndarray, probs: np.ndarray) -> dict:
    pred = probs.argmax(1)
    return {"accuracy": accuracy(y, pred), "balanced_accuracy": balanced_accuracy(y, pred)}


def gain_ci(y: np.ndarray, first: np.ndarray, mean: np.ndarray, n_boot: int) -> dict:
    """Balanced accuracy of the average minus the first model's, with a paired bootstrap 95 % interval."""
    return to_jsonable(balanced_accuracy_gain(y, first, mean, n_boot=n_boot))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", required=True, help="two or more model refs (folders or defaults)")
    parser.add_argument("--data-dir", required=True, help="DermNet in its publisher's layout")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "clinical_ensemble.json"))
    args = parser.parse_args(argv)
    if len(args.models) < 2:
        parser.error("--models needs at least two models to average")

    import torch

    from skin.data import load
    from skin.evaluate import grouping_config, predict_logits
    from skin.inference import load_for_inference
    from skin.tasks import get_task

    task = get_task("condition_dermnet")
    probs: dict[tuple[str, str, bool], np.ndarray] = {}
    dsd, labels = None, None
    for ref in args.models:
        model, processor, model_labels = load_for_inference(ref)
        if dsd is None:
            labels = model_labels
            dsd = load(task.dataset, args.data_dir, cache_dir=args.cache_dir,
                       **{**task.data_config, **grouping_config(task.dataset, labels)})
        elif model_labels != labels:
            raise SystemExit(f"{ref}: classes {model_labels} differ from {args.models[0]}'s {labels}: "
                             "average only models of one grouping")
        for split in SPLITS:
            for tta in (False, True):
                logits = predict_logits(model, processor, dsd[split], tta=tta)
                probs[ref, split, tta] = torch.softmax(torch.from_numpy(logits), 1).numpy()

    rows = []
    for split in SPLITS:
        y = np.asarray(task.targets(dsd[split]))
        for tta in (False, True):
            members = [probs[ref, split, tta] for ref in args.models]
            mean = np.mean(members, axis=0)
            for ref, p in zip(args.models, members):
                rows.append({"split": split, "tta": tta, "model": ref, "n": len(y), **scores(y, p)})
            rows.append({"split": split, "tta": tta, "model": "average", "n": len(y), **scores(y, mean),
                         "balanced_accuracy_gain_over_first": gain_ci(y, members[0], mean, args.n_boot)})
    print(f"{'split':>10} {'tta':>5} {'accuracy':>9} {'bal. acc':>9}  model")
    for r in rows:
        print(f"{r['split']:>10} {r['tta']!s:>5} {r['accuracy']:9.3f} {r['balanced_accuracy']:9.3f}  {r['model']}")
    result = {"models": args.models, "labels": labels, "rows": rows,
              "measured_with": "python bench/clinical_ensemble.py --models " + " ".join(args.models)}
    Path(args.out).write_text(json.dumps(to_jsonable(result), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

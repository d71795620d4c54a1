"""Does the clinical model read DermNet's watermark?

Every DermNet photo carries the DermNet logo (and, in the second style, a
caption) in its lower-left corner (:data:`skin.near_duplicates.WATERMARK_BOX`).
A model that had learnt the logo's look per condition would lose accuracy when
that corner is hidden. Hiding any fifth of a photo costs some accuracy, so the
same-size box in the lower-right corner, where there is no logo, is hidden as
the control: the watermark matters only as far as hiding the logo costs more
than hiding the control box. Both boxes are filled with the photo's mean
colour; the figures are on the model's own leak-free test split.

    python bench/clinical_watermark.py --model default:clinical --data-dir ../shared/data/dermnet

Prints a table and writes ``bench/results/clinical_watermark.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from skin.near_duplicates import WATERMARK_BOX  # noqa: E402
from skin.reports import to_jsonable  # noqa: E402

#: The watermark box and its mirror image (lower-right): same size, no logo.
BOXES = {"none": None, "watermark": WATERMARK_BOX,
         "control": (1 - WATERMARK_BOX[2], WATERMARK_BOX[1], 1 - WATERMARK_BOX[0], WATERMARK_BOX[3])}


def hide(image: Image.Image, box) -> Image.Image:
    """``image`` with ``box`` (fractions left, top, right, bottom) filled with the photo's mean colour."""
    image = image.convert("RGB")
    if box is None:
        return image
    w, h = image.size
    fill = tuple(int(c) for c in np.asarray(image).reshape(-1, 3).mean(0))
    out = image.copy()
    ImageDraw.Draw(out).rectangle([box[0] * w, box[1] * h, box[2] * w - 1, box[3] * h - 1], fill=fill)
    return out


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % interval of ``mean(a) - mean(b)`` over images resampled together."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(n_boot, len(a)))
    diffs = a[idx].mean(1) - b[idx].mean(1)
    return float(np.quantile(diffs, 0.025)), float(np.quantile(diffs, 0.975))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="default:clinical")
    parser.add_argument("--data-dir", required=True, help="DermNet in its publisher's layout")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "clinical_watermark.json"))
    args = parser.parse_args(argv)

    from sklearn.metrics import balanced_accuracy_score

    from skin.data import load
    from skin.evaluate import predict_logits
    from skin.inference import load_for_inference
    from skin.tasks import get_task

    task = get_task("condition_dermnet")
    test = load(task.dataset, args.data_dir, cache_dir=args.cache_dir, **task.data_config)["test"]
    model, processor, _ = load_for_inference(args.model)
    y = np.asarray(test["label"])
    preds, rows = {}, {}
    for name, box in BOXES.items():
        variant = test.map(lambda ex, box=box: {"image": hide(ex["image"], box)}, desc=f"hide {name}")
        preds[name] = predict_logits(model, processor, variant).argmax(1)
        rows[name] = {"accuracy": float((preds[name] == y).mean()),
                      "balanced_accuracy": float(balanced_accuracy_score(y, preds[name])),
                      "changed_from_none": float((preds[name] != preds["none"]).mean())}
    right = {k: (v == y).astype(float) for k, v in preds.items()}
    gap = float(right["control"].mean() - right["watermark"].mean())
    result = {"model": args.model, "n": int(len(y)), "boxes": BOXES, "fill": "the photo's mean colour",
              "variants": rows,
              "accuracy_cost_of_hiding_the_watermark_beyond_the_control": {
                  "value": gap, "ci95": paired_bootstrap(right["control"], right["watermark"])}}
    print(f"{'hidden':>10} {'accuracy':>9} {'bal. acc':>9} {'changed':>8}")
    for name, r in rows.items():
        print(f"{name:>10} {r['accuracy']:9.3f} {r['balanced_accuracy']:9.3f} {r['changed_from_none']:8.3f}")
    ci = result["accuracy_cost_of_hiding_the_watermark_beyond_the_control"]["ci95"]
    print(f"accuracy(control) - accuracy(watermark) = {gap:+.3f} (95 % CI {ci[0]:+.3f} to {ci[1]:+.3f}), n={len(y)}")
    Path(args.out).write_text(json.dumps(to_jsonable(result), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

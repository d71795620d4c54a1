"""Does a condition model give the same answer to the same photo, turned or re-compressed?

A visitor's photo reaches the app re-encoded (a messaging app or a phone's
"save smaller" re-compresses it as JPEG) and in whatever orientation the
phone was held (the app applies the EXIF rotation, but a photo of a forearm
has no upright, and a dermatoscope close-up none at all). The photos the
models learnt from are one JPEG encoding each (DermNet's mostly with the body
part upright), and training augments with flips and rotations of up to 20
degrees only. This script asks an embedded condition model (``--task``:
``condition_dermnet``, the clinical model, by default; ``condition_ham10000``,
the dermoscopy model) about each photo of its own test split as delivered
and changed in one such way:

* ``jpeg_q90`` / ``jpeg_q70`` / ``jpeg_q50``: re-saved once as JPEG at that quality (Pillow);
* ``rot90`` / ``rot180`` / ``rot270``: turned by that many degrees;

and reports, per variant, accuracy and balanced accuracy on the model's own
leak-free test split, each against the photo as delivered with a paired
bootstrap interval over clusters (DermNet's near-duplicate chains,
HAM10000's lesions); the share of photos whose
answer changed; the malignant classes' summed probability (what Predict shows
under the answer): its ROC-AUC and mean absolute change; and ECE.

What a visitor meets is the served answer: the app answers only when the top
calibrated probability reaches the model's ``abstain_below`` in the app's
configuration (``skinlens.yaml``). So each variant also reports the share
answered and those answers' accuracy; of the photos answered as delivered,
the share whose changed copy gets another class as a confident answer
(``contradicted``) or an abstention (``withdrawn``); and of those withheld,
the share the changed copy gets answered (``gained``: a visitor turning the
phone until an answer comes) with those answers' accuracy.

The last two rows ask whether the app could answer independently of how the
phone was held: ``d4_mean`` serves the mean of the model's logits over the
eight turns and mirror images of the processed photo (test-time augmentation
over the square's symmetries), and ``d4_mean_rot90`` does so for the photos
turned by 90 degrees, its changes measured against ``d4_mean``.

    python bench/robustness.py --data-dir ../shared/data/dermnet
    python bench/robustness.py --task condition_ham10000 --data-dir ../shared/data/ham10000

Prints a table and writes ``bench/results/robustness_<dataset>.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from skin.reports import to_jsonable  # noqa: E402

#: the tasks measured, and the embedded model of each
DEFAULT_MODELS = {"condition_dermnet": "default:clinical", "condition_ham10000": "default:condition"}
#: variant name -> how the photo is changed (``None``: as delivered)
VARIANTS = {"none": None, "jpeg_q90": ("jpeg", 90), "jpeg_q70": ("jpeg", 70), "jpeg_q50": ("jpeg", 50),
            "rot90": ("rotate", 90), "rot180": ("rotate", 180), "rot270": ("rotate", 270)}


def change(image: Image.Image, how) -> Image.Image:
    """``image`` re-saved as JPEG at a quality (``("jpeg", q)``) or turned counter-clockwise (``("rotate", deg)``)."""
    image = image.convert("RGB")
    if how is None:
        return image
    kind, value = how
    if kind == "jpeg":
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=value)
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    if kind == "rotate":
        return image.rotate(value, expand=True)
    raise ValueError(f"unknown change {how!r}: use ('jpeg', quality) or ('rotate', degrees)")


def served(probs: np.ndarray, probs_delivered: np.ndarray, y: np.ndarray, threshold: float) -> dict:
    """What the app serves for the changed photos (``probs``) against the photos as delivered: the share
    answered (top probability >= ``threshold``), those answers' accuracy, and of the photos answered as
    delivered, the share answered with another class (``contradicted``) or not answered (``withdrawn``);
    of those withheld as delivered, the share the changed photo gets answered (``gained``: a visitor who
    turns the phone until an answer comes) and how often those answers are right."""
    pred, answered = probs.argmax(1), probs.max(1) >= threshold
    was = probs_delivered.max(1) >= threshold
    other = pred != probs_delivered.argmax(1)
    return {"answered": float(answered.mean()),
            "accuracy_of_answers": float((pred == y)[answered].mean()) if answered.any() else None,
            "contradicted": float((answered & other)[was].mean()) if was.any() else None,
            "withdrawn": float((~answered)[was].mean()) if was.any() else None,
            "gained": float(answered[~was].mean()) if (~was).any() else None,
            "accuracy_of_gained": float((pred == y)[answered & ~was].mean()) if (answered & ~was).any() else None}


def _num(value, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:{width}.3f}"


def _with_ci(m) -> str:
    """``+0.012 (-0.010 to +0.030)``: a paired change and its interval, 26 characters."""
    ci = "" if m.ci_low is None else f"({m.ci_low:+.3f} to {m.ci_high:+.3f})"
    return f"{m.value:+7.3f} {ci:>18}"


class DihedralMean:
    """A model whose logits are ``model``'s averaged over the 8 turns and mirror images of the processed
    photo, read like any model by :func:`skin.evaluate.predict_logits`."""

    def __init__(self, model):
        self.model = model
        self.config = getattr(model, "config", None)  # predict_logits reads num_labels for an empty set

    def eval(self):
        self.model.eval()
        return self

    def __call__(self, pixel_values):
        import torch

        views = [torch.rot90(v, k, dims=(-2, -1)) for v in (pixel_values, pixel_values.flip(-1)) for k in range(4)]
        return SimpleNamespace(logits=torch.stack([self.model(pixel_values=v).logits for v in views]).mean(0))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="condition_dermnet", choices=sorted(DEFAULT_MODELS))
    parser.add_argument("--model", default=None, help="default: the task's embedded model")
    parser.add_argument("--data-dir", required=True, help="the task's dataset in its publisher's layout")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--out", default=None, help="default: bench/results/robustness_<dataset>.json")
    args = parser.parse_args(argv)

    import torch

    from skin.calibration import expected_calibration_error
    from skin.data import load
    from skin.evaluate import predict_logits
    from skin.inference import load_for_inference
    from skin.metrics import balanced_accuracy, binary_auc, bootstrap_ci
    from skin.service.config import load_config
    from skin.tasks import get_task

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    task = get_task(args.task)
    args.model = args.model or DEFAULT_MODELS[task.name]
    out_path = Path(args.out or ROOT / "bench" / "results" / f"robustness_{task.dataset}.json")
    test = load(task.dataset, args.data_dir, cache_dir=args.cache_dir, **task.data_config)["test"]
    model, processor, labels = load_for_inference(args.model)
    names = test.features["label"].names
    y = np.asarray([labels.index(names[i]) for i in test["label"]])  # by name, whatever the two orders
    clusters = np.asarray(test["group_id"])
    malignant = np.asarray(test["malignant"], bool)
    mal_idx = task.malignant_indices(labels)
    threshold = next((m.abstain_below for m in load_config().models.values() if m.model == args.model), 0.5)
    probs = {}
    runs = [(name, how, model) for name, how in VARIANTS.items()]
    runs += [("d4_mean", None, DihedralMean(model)), ("d4_mean_rot90", ("rotate", 90), DihedralMean(model))]
    for name, how, reader in runs:
        variant = test.map(lambda ex, how=how: {"image": change(ex["image"], how)}, desc=name)
        with torch.inference_mode():
            logits = predict_logits(reader, processor, variant)
        probs[name] = torch.softmax(torch.from_numpy(logits), 1).numpy()

    rows = {}
    for name, p in probs.items():
        ref = probs["d4_mean"] if name == "d4_mean_rot90" else probs["none"]
        ref_pred, ref_right, ref_sum = ref.argmax(1), (ref.argmax(1) == y).astype(float), ref[:, mal_idx].sum(1)
        pred = p.argmax(1)
        right = (pred == y).astype(float)
        score = p[:, mal_idx].sum(1)
        rows[name] = {
            "change": VARIANTS.get(name, name), "against": "d4_mean" if ref is not probs["none"] else "none",
            "accuracy": float(right.mean()), "balanced_accuracy": balanced_accuracy(y, pred),
            "accuracy_change": bootstrap_ci(lambda a, b: float(a.mean() - b.mean()), right, ref_right,
                                            n_boot=args.n_boot, groups=clusters),
            "balanced_accuracy_change": bootstrap_ci(lambda t, a, b: balanced_accuracy(t, a) - balanced_accuracy(t, b),
                                                     y, pred, ref_pred, n_boot=args.n_boot, groups=clusters),
            "answer_changed": float((pred != ref_pred).mean()),
            "malignant_sum_auc": binary_auc(malignant, score),
            "malignant_sum_mean_abs_change": float(np.abs(score - ref_sum).mean()),
            **served(p, ref, y, threshold),
            "ece": expected_calibration_error(p, y)}
    result = {"model": args.model, "task": task.name, "split": "test", "n": int(len(y)),
              "n_clusters": int(len(set(clusters))),
              "n_malignant": int(malignant.sum()), "abstain_below": threshold,
              "n_answered_as_delivered": int((probs["none"].max(1) >= threshold).sum()), "variants": rows,
              "interval": f"95 % cluster bootstrap ({args.n_boot} resamples of clusters: group_id), paired",
              "threads": args.threads, "seconds": time.perf_counter() - start}
    header = (f"{'variant':>9} {'acc':>6} {'bal.acc':>7} {'acc change (95 % CI)':>26} "
              f"{'bal.acc change (95 % CI)':>26} {'changed':>8} {'mal.AUC':>7} {'|d sum|':>7} {'answered':>8} "
              f"{'acc.ans':>7} {'contra.':>7} {'withdrawn':>9} {'gained':>7} {'acc.gained':>10} {'ECE':>6}")
    print(header)
    for name, r in rows.items():
        print(f"{name:>9} {r['accuracy']:6.3f} {r['balanced_accuracy']:7.3f} {_with_ci(r['accuracy_change'])} "
              f"{_with_ci(r['balanced_accuracy_change'])} {r['answer_changed']:8.3f} {r['malignant_sum_auc']:7.3f} "
              f"{r['malignant_sum_mean_abs_change']:7.3f} {r['answered']:8.3f} {r['accuracy_of_answers']:7.3f} "
              f"{r['contradicted']:7.3f} {r['withdrawn']:9.3f} {r['gained']:7.3f} {_num(r['accuracy_of_gained'], 10)} "
              f"{r['ece']:6.3f}")
    print(f"n={len(y)} test photos ({result['n_clusters']} clusters, {result['n_malignant']} malignant), "
          f"{result['n_answered_as_delivered']} answered as delivered at {threshold}, {result['seconds']:.0f} s")
    out_path.write_text(json.dumps(to_jsonable(result), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

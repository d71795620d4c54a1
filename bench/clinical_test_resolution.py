"""Does the clinical model answer better when it reads the photo at a larger size than it learnt at?

Touvron et al. (NeurIPS 2019, "Fixing the train-test resolution discrepancy"):
training on random crops (here down to 35 % of the photo, resized to the
model's side) shows objects larger than a centre crop at the same side does at
test time, so a network trained that way often scores better when tested at a
larger side, without any training. This script predicts DermNet's leak-free
validation and test splits with the embedded model (or any clinical model) at
several input sides, the processor's resize and centre crop otherwise
unchanged, and scores each against the side the model was trained at, with a
paired bootstrap interval for the gain in balanced accuracy (images resampled
together). Validation is where a side would be chosen; test shows whether the
choice carries over. It also times one forward pass per side (batch of 32).

    python bench/clinical_test_resolution.py --data-dir ../shared/data/dermnet --sizes 192 224 256 288

Prints a table and writes ``bench/results/clinical_test_resolution.json``.
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

from skin.metrics import accuracy, balanced_accuracy, balanced_accuracy_gain  # noqa: E402
from skin.reports import to_jsonable  # noqa: E402

SPLITS = ("validation", "test")


def resized_processor(processor, side: int):
    """The same timm-wrapper processor (interpolation, normalisation, crop rule) at input side ``side``."""
    return type(processor)(pretrained_cfg={**processor.data_config, "input_size": (3, side, side)})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="default:clinical")
    parser.add_argument("--data-dir", required=True, help="DermNet in its publisher's layout")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[192, 224, 256, 288])
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "clinical_test_resolution.json"))
    args = parser.parse_args(argv)

    import torch

    from skin.data import load
    from skin.evaluate import grouping_config, predict_logits
    from skin.inference import load_for_inference
    from skin.tasks import get_task

    torch.set_num_threads(args.threads)
    task = get_task("condition_dermnet")
    model, processor, labels = load_for_inference(args.model)
    trained_side = int(processor.data_config["input_size"][-1])
    if trained_side not in args.sizes:
        args.sizes = sorted({*args.sizes, trained_side})
    dsd = load(task.dataset, args.data_dir, cache_dir=args.cache_dir,
               **{**task.data_config, **grouping_config(task.dataset, labels)})
    targets = {split: np.asarray(task.targets(dsd[split])) for split in SPLITS}

    probs: dict[tuple[int, str], np.ndarray] = {}
    forward_ms: dict[int, float] = {}
    for side in args.sizes:
        proc = resized_processor(processor, side)
        for split in SPLITS:
            logits = torch.from_numpy(predict_logits(model, proc, dsd[split]))
            probs[side, split] = torch.softmax(logits, 1).numpy()
        x = proc([im.convert("RGB") for im in dsd["test"][:32]["image"]], return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            model(pixel_values=x)  # warm-up
            times = []
            for _ in range(3):
                start = time.perf_counter()
                model(pixel_values=x)
                times.append(time.perf_counter() - start)
        forward_ms[side] = 1000 * float(np.median(times)) / len(x)

    rows = []
    for side in args.sizes:
        row = {"side": side, "forward_ms_per_image": round(forward_ms[side], 2)}
        for split in SPLITS:
            y, p = targets[split], probs[side, split]
            row[split] = {"n": len(y), "accuracy": accuracy(y, p.argmax(1)),
                          "balanced_accuracy": balanced_accuracy(y, p.argmax(1))}
            if side != trained_side:
                row[split]["balanced_accuracy_gain"] = to_jsonable(balanced_accuracy_gain(
                    y, probs[trained_side, split], p, n_boot=args.n_boot))
        rows.append(row)

    print(f"{args.model}, trained at {trained_side} px; DermNet leak-free splits "
          f"(validation {len(targets['validation'])}, test {len(targets['test'])} photos)")
    print("| side px | validation acc / bal acc | gain (95 % CI) | test acc / bal acc | gain (95 % CI) | ms / image |")
    print("|---:|---|---|---|---|---:|")
    for row in rows:
        cells = []
        for split in SPLITS:
            r = row[split]
            cells.append(f"{r['accuracy']:.3f} / {r['balanced_accuracy']:.3f}")
            g = r.get("balanced_accuracy_gain")
            cells.append(f"{g['value']:+.3f} ({g['ci_low']:+.3f} to {g['ci_high']:+.3f})" if g else "(trained side)")
        print(f"| {row['side']} | " + " | ".join(cells) + f" | {row['forward_ms_per_image']:.1f} |")
    out = {"model": args.model, "trained_side": trained_side, "n_boot": args.n_boot, "threads": args.threads,
           "rows": rows}
    Path(args.out).write_text(json.dumps(to_jsonable(out), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

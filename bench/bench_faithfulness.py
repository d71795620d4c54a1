"""Explanation faithfulness of a shipped model on its own test images: the file the app shows.

For ``--images`` photos of the model's **test split** (its task's dataset through
``skin.data``, the grouping the model was trained in; a seeded random draw, so no
photo is picked by its result), every method of ``skin.explain.METHODS`` is run
exactly as the app runs it (``explain(model, x, target, method)`` with the
defaults, the answer the app gives as target: the predicted class, or for an
age model the estimate itself (``ExpectedValue`` over its years, the curves
then in years), the model prepared by
``skin.inference`` as the service prepares it), and its map is scored by
deletion / insertion (Petsiuk et al. 2018; blur baseline, 20 steps).

Writes ``<model folder>/faithfulness.json`` (per method: deletion, insertion
and insertion - deletion, each a mean over images with a percentile-bootstrap
95 % interval) and the per-image figures to
``bench/results/faithfulness_<task>.json``, and prints a table.
``bench/bench_explain.py`` stays the place for latency and the IG settings sweep.

    .venv/bin/python bench/bench_faithfulness.py --model default:clinical \\
        --data-dir ../shared/data/dermnet --images 100 --cache-dir CACHE
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def model_task(ref: str) -> str:
    """The task name recorded in the model's ``report.json`` (``default:age`` -> ``age``)."""
    from bench_explain import model_dir

    folder = model_dir(ref)
    report = folder / "report.json" if folder else None
    if report is None or not report.is_file():
        raise SystemExit(f"{ref}: no report.json beside it; pass --task")
    return json.loads(report.read_text())["task"]


def portable(argv: list[str]) -> list[str]:
    """The command-line arguments without ``--cache-dir DIR``: a local folder that changes where the prepared
    dataset is kept, not what is measured, so it has no place in the command a report records."""
    from skin.commands import drop_options

    return drop_options(argv, ("--cache-dir",))


def main() -> None:
    import torch

    from bench_explain import load_model, model_dir
    from skin.data import load
    from skin.explain import METHODS, ExpectedValue, deletion_insertion, explain
    from skin.explain.faithfulness import FaithfulnessReport, MethodFaithfulness, write_faithfulness
    from skin.tasks import TaskKind, get_task, label_ages

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="default:condition, default:clinical, default:age or a folder")
    ap.add_argument("--data-dir", required=True, help="the task's dataset folder (../shared/data/<name>)")
    ap.add_argument("--task", help="the model's task (default: read from its report.json)")
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--out", help="per-image figures (default bench/results/faithfulness_<task>.json)")
    args = ap.parse_args()
    if args.images < 2:
        raise SystemExit("--images must be at least 2 (an interval needs two images)")
    if not Path(args.data_dir).is_dir():
        raise SystemExit(f"--data-dir {args.data_dir} not found; see ../shared/data/README.md")
    torch.set_num_threads(args.threads)
    task = get_task(args.task or model_task(args.model))
    test = load(task.dataset, args.data_dir, cache_dir=args.cache_dir, **task.data_config)["test"]
    order = np.random.default_rng(args.seed).permutation(len(test))[: args.images]
    model, processor = load_model(args.model)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    # the age model's answer is its estimate, and the app explains that (skin.service.readout.explain_target)
    readout = ExpectedValue(label_ages(labels), "age estimate") if task.kind is TaskKind.AGE else None
    size = int(processor(test[int(order[0])]["image"].convert("RGB"), return_tensors="pt")["pixel_values"].shape[-1])
    print(f"{args.model} ({task.name}): {len(order)} of {len(test)} test images of {task.dataset}, {size} px, "
          f"threads={torch.get_num_threads()}, load avg {os.getloadavg()}", flush=True)

    rows: dict[str, dict[str, list]] = {m: {"deletion": [], "insertion": [], "seconds": []} for m in METHODS}
    names, started = [], time.perf_counter()
    for n, i in enumerate(order):
        row = test[int(i)]
        x = processor(row["image"].convert("RGB"), return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            target = 0 if readout is not None else int(model(pixel_values=x).logits.argmax(-1))
        for method in METHODS:
            e = explain(model, x, target, method, readout=readout)
            di = deletion_insertion(model, x, e.attribution, target, readout=readout)
            for k, v in (("deletion", di.deletion_auc), ("insertion", di.insertion_auc), ("seconds", e.seconds)):
                rows[method][k].append(float(v))
        names.append(str(row.get("image_id") or row.get("file_name") or int(i)))
        if (n + 1) % 10 == 0:
            print(f"  {n + 1}/{len(order)} images, {time.perf_counter() - started:.0f} s", flush=True)

    command = " ".join(["python bench/bench_faithfulness.py", *portable(sys.argv[1:])])
    explained = {"target": "age estimate", "unit": "years"} if readout is not None else {}
    report = FaithfulnessReport(model=args.model, n_images=len(names), images=names, input_size=[size, size],
                                measured_with=command, **explained,
                                methods={m: MethodFaithfulness.of(r["deletion"], r["insertion"])
                                         for m, r in rows.items()})
    folder = model_dir(args.model)
    if folder is not None:
        print(f"wrote {write_faithfulness(folder, report)}")
    out = Path(args.out or ROOT / "bench" / "results" / f"faithfulness_{task.name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": args.model, "task": task.name, "dataset": task.dataset, "split": "test",
                               "test_indices": [int(i) for i in order], "images": names, "input_size": size,
                               "threads": torch.get_num_threads(), "load_avg_end": os.getloadavg(),
                               "wall_s": time.perf_counter() - started, "summary": report.to_dict()["methods"],
                               "per_image": rows}, indent=1))
    print(f"\n{'method':22s} {'deletion':>20s} {'insertion':>20s} {'ins - del':>20s} {'s/img':>6s}")
    for name, m in report.methods.items():
        cells = [f"{c.value:.3f} ({c.ci_low:.3f}-{c.ci_high:.3f})" for c in (m.deletion, m.insertion, m.score)]
        print(f"{name:22s} {cells[0]:>20s} {cells[1]:>20s} {cells[2]:>20s} "
              f"{float(np.median(rows[name]['seconds'])):6.2f}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

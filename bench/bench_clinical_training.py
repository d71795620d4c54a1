"""The clinical model's training cost on this CPU: images per second and wall time per epoch.

Two sources, printed as one table and written to ``bench/results/clinical_training.json``:

* **runs** (``--run-dir``, any number): what a finished ``train.py`` run on
  DermNet actually cost, read from its ``report.json`` (the Trainer's
  ``train_runtime``) and ``metrics.csv`` (evaluation time per epoch). These
  are the real figures of the real runs, but a run that shared the machine
  with other work is slower than the machine: say so with ``--shared``.
* **measured** (``--measure``): the same recipes (and the larger Lite1 / Lite2
  wheels at their native 240 / 260 px) timed here, one fresh
  subprocess each, alternating over ``--repeats`` rounds, same threads for
  all: ``--steps`` optimizer steps of batch 32 on real DermNet training images
  through train.py's own pipeline (``skin.data.load``, ``train_transform``
  with the clinical run's augmentation, ``collate``, label-smoothed
  cross-entropy, AdamW), with README.md's malloc settings. Data time
  (decode + augment) and step time are kept apart; images/s and seconds per
  epoch (2,080 training photos) follow from their sum.

    .venv/bin/python bench/bench_clinical_training.py --measure --data-dir ../shared/data/dermnet \
        --run-dir RUN [RUN ...]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# glibc malloc settings README.md (Training) recommends on a CPU: without them every step maps and unmaps its
# activation buffers, and a run spends half its CPU time in the kernel
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "8589934592"}
# (name, backbone, finetune mode, unfreeze_last, image size): the recipes the clinical runs used, and the
# larger Lite1 / Lite2 wheels at their native sizes (all stages unfrozen, as the embedded run)
RECIPES = {
    "partial6_192": ("efficientnet_lite0", "partial", 6, 192),
    "partial7_224": ("efficientnet_lite0", "partial", 7, 224),
    "full_224": ("efficientnet_lite0", "full", 0, 224),
    "lite1_partial7_240": ("efficientnet_lite1", "partial", 7, 240),
    "lite2_partial7_260": ("efficientnet_lite2", "partial", 7, 260),
}


def read_run(run_dir: str) -> dict:
    """Cost and headline figures of one finished run folder."""
    run = Path(run_dir)
    report = json.loads((run / "report.json").read_text())
    args = json.loads((run / "args.json").read_text()) if (run / "args.json").is_file() else {}
    epochs, eval_s = 0.0, []
    with open(run / "metrics.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("eval_runtime"):
                eval_s.append(float(row["eval_runtime"]))
            if row.get("epoch"):
                epochs = max(epochs, float(row["epoch"]))
    n_train = report["splits"]["train"]
    train_s = float(report["train_runtime_s"])
    test = report["test"]
    return {"run": run.name, "backbone": report["backbone"], "mode": report["mode"],
            "image_size": args.get("model", {}).get("image_size"),
            "unfreeze_last": args.get("model", {}).get("unfreeze_last"), "epochs": epochs, "train_images": n_train,
            "train_runtime_s": round(train_s, 1), "wall_time_s": round(float(report["wall_time_s"]), 1),
            "images_per_s": round(n_train * epochs / train_s, 2), "s_per_epoch": round(train_s / epochs, 1),
            "eval_s_per_epoch": round(statistics.median(eval_s), 1) if eval_s else None,
            "test_accuracy": test["accuracy"], "test_balanced_accuracy": test["balanced_accuracy"]}


def worker(recipe: str, data_dir: str, cache_dir: str | None, steps: int, threads: int) -> dict:
    import resource
    import time

    import numpy as np
    import torch

    from skin.data import load
    from skin.modeling import create_model, freeze_batchnorm, prepare_finetune
    from skin.modeling.state import FinetuneMode
    from skin.tasks import get_task
    from skin.training import Augment, attach_transforms, collate, processor_spec, train_transform

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    backbone, mode, unfreeze_last, size = RECIPES[recipe]
    task = get_task("condition_dermnet")
    dsd = load(task.dataset, data_dir, cache_dir=cache_dir, **task.data_config)
    labels = task.labels(dsd["train"].features)
    model, processor = create_model(backbone, labels, image_size=size)
    if FinetuneMode(mode).freezes_batchnorm:
        freeze_batchnorm(model)
    model, _ = prepare_finetune(model, mode, unfreeze_last=unfreeze_last or 2)
    model.train()
    aug = Augment(crop_scale_min=0.35, color_jitter=0.2)  # the clinical runs' augmentation
    ds = attach_transforms(dsd["train"].shuffle(seed=0), task, processor,
                           train_transform(processor_spec(processor), aug))
    loader = torch.utils.data.DataLoader(ds, batch_size=32, collate_fn=collate)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    data_s, step_s = [], []
    it = iter(loader)
    for i in range(steps + 1):
        t0 = time.perf_counter()
        batch = next(it)
        t1 = time.perf_counter()
        loss = loss_fn(model(pixel_values=batch["pixel_values"]).logits, batch["labels"])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        t2 = time.perf_counter()
        if i:  # the first step warms up allocators and oneDNN kernels
            data_s.append(t1 - t0)
            step_s.append(t2 - t1)
    return {"recipe": recipe, "backbone": backbone, "mode": mode, "unfreeze_last": unfreeze_last, "image_size": size,
            "batch": 32,
            "threads": threads, "data_s": float(np.median(data_s)), "step_s": float(np.median(step_s)),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def measure(args) -> list[dict]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.threads),
           **MALLOC_ENV}
    runs = []
    for _ in range(args.repeats):
        for recipe in args.recipes:
            cmd = [sys.executable, __file__, "--worker", recipe, "--data-dir", args.data_dir, "--steps",
                   str(args.steps), "--threads", str(args.threads)]
            if args.cache_dir:
                cmd += ["--cache-dir", args.cache_dir]
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"  {recipe:>13}: data {runs[-1]['data_s']:.2f} s + step {runs[-1]['step_s']:.2f} s per batch",
                  flush=True)
    table = []
    for recipe in args.recipes:
        mine = [r for r in runs if r["recipe"] == recipe]
        data_s = statistics.median(r["data_s"] for r in mine)
        step_s = statistics.median(r["step_s"] for r in mine)
        per_image = (data_s + step_s) / 32
        keys = ("recipe", "backbone", "mode", "unfreeze_last", "image_size", "batch", "threads")
        table.append({**{k: mine[0][k] for k in keys},
                      "data_s_per_batch": round(data_s, 3), "step_s_per_batch": round(step_s, 3),
                      "images_per_s": round(1 / per_image, 2), "s_per_epoch": round(args.train_images * per_image, 1),
                      "peak_rss_mb": round(statistics.median(r["peak_rss_mb"] for r in mine))})
    return table, runs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", nargs="*", default=[], help="finished train.py run folders on DermNet")
    parser.add_argument("--shared", action="store_true",
                        help="the runs shared this machine with other jobs (their figures are upper bounds)")
    parser.add_argument("--measure", action="store_true", help="also time the recipes here")
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "dermnet"))
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-images", type=int, default=2080, help="photos per epoch (the clinical split)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "clinical_training.json"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.data_dir, args.cache_dir, args.steps, args.threads)))
        return
    result = {"cpu_count": os.cpu_count(), "runs": [read_run(r) for r in args.run_dir],
              "runs_shared_machine": args.shared}
    if result["runs"]:
        print("| run | mode | px | epochs | images/s | s/epoch | eval s/epoch | test acc / bal. acc |")
        print("|---|---|---|---|---|---|---|---|")
        for r in result["runs"]:
            print(f"| {r['run']} | {r['mode']} | {r['image_size']} | {r['epochs']:g} | {r['images_per_s']} | "
                  f"{r['s_per_epoch']} | {r['eval_s_per_epoch']} | {r['test_accuracy']:.3f} / "
                  f"{r['test_balanced_accuracy']:.3f} |")
    if args.measure:
        result["measured"], result["measured_runs"] = measure(args)
        print(f"\n| recipe | px | threads | data s/batch | step s/batch | images/s | s/epoch ({args.train_images}) "
              "| peak RSS MB |")
        print("|---|---|---|---|---|---|---|---|")
        for r in result["measured"]:
            print(f"| {r['recipe']} | {r['image_size']} | {r['threads']} | {r['data_s_per_batch']} | "
                  f"{r['step_s_per_batch']} | {r['images_per_s']} | {r['s_per_epoch']} | {r['peak_rss_mb']} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

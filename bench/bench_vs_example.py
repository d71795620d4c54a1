"""train.py against the transformers image-classification example, side by side in one run.

Same backbone (one saved folder both load), same training and validation images,
same input size, epochs, learning rate, batch sizes, seed and thread count; each
run a fresh process, the sides interleaved (example, train.py, train.py with the
example's augmentation, then again) so that the machine's drift falls on all of
them alike. Per run: training images per second (images x epochs / Trainer's
training time, which includes the per-epoch evaluation and checkpoint, as
Trainer's own ``train_samples_per_second``), the process's wall time (train.py's
includes what the example does not do: test evaluation, calibration, the
fairness report, figures, the merged export), and validation accuracy and
balanced accuracy.

The third side, train.py with ``--crop_scale_min 0.08 --rotation 0
--color_jitter 0 --vflip false`` (the example's RandomResizedCrop and
horizontal flip only), splits the gap into what train.py's augmentation costs
and the rest. The data pipeline is also timed alone, per image, for each
training transform (decode, augmentation, tensor), in this process, train.py's
also with torchvision's own ``ColorJitter`` in place of
:class:`skin.training.ColorJitter` (whose hue step uses OpenCV).

Writes ``bench/results/vs_example.json`` and prints a table.

    .venv/bin/python bench/bench_vs_example.py --data-dir ../shared/data/ham10000 --cache-dir CACHE
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: train.py options that give it the example's augmentation (RandomResizedCrop's default scale, horizontal flips only).
EXAMPLE_AUGMENTATION = ["--crop_scale_min", "0.08", "--rotation", "0", "--color_jitter", "0", "--vflip", "false"]
SIDES = ("example", "train.py", "train.py, example's augmentation")


def prepare(args, work: Path) -> tuple[Path, Path, int, int]:
    """The imagefolder (links to the dataset's files) of exactly the images train.py will use, and the backbone."""
    import torch
    from datasets import Image

    from skin.data import load
    from skin.modeling import create_model
    from skin.tasks import get_task

    task = get_task(args.task)
    dsd = load(task.dataset, args.data_dir, cache_dir=args.cache_dir, **task.data_config)
    # the rows train.py's --max_train_samples / --max_eval_samples select
    train = dsd["train"].shuffle(seed=args.seed).select(range(min(args.train_samples, len(dsd["train"]))))
    validation = dsd["validation"].select(range(min(args.eval_samples, len(dsd["validation"]))))
    labels = task.labels(dsd["train"].features)
    folder = work / "imagefolder"
    for split, rows in (("train", train), ("validation", validation)):
        rows = rows.cast_column("image", Image(decode=False))
        for i, row in enumerate(rows):
            path = row["image"]["path"]
            if not path or not os.path.isfile(path):
                raise SystemExit(f"{task.dataset}: images are not stored as files; this benchmark links to them")
            target = folder / split / labels[task.target(row)]
            target.mkdir(parents=True, exist_ok=True)
            (target / f"{i:06d}{Path(path).suffix}").symlink_to(path)
    torch.manual_seed(args.seed)  # the new head's initial weights: the same in every run of this bench
    model, processor = create_model(args.model, labels, image_size=args.image_size)
    backbone = work / "backbone"
    model.save_pretrained(backbone)  # a timm model's processor settings travel in config.json
    if not getattr(processor, "data_config", None):
        processor.save_pretrained(backbone)
    return folder, backbone, len(train), len(validation)


def run_side(side: str, args, folder: Path, backbone: Path, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.threads),
           "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    common = ["--learning_rate", str(args.learning_rate), "--seed", str(args.seed)]
    if side == "example":
        cmd = [sys.executable, str(ROOT / "bench" / "example_recipe.py"), "--folder", str(folder), "--model",
               str(backbone), "--output_dir", str(out), "--epochs", str(args.epochs), "--threads", str(args.threads),
               "--cache_dir", str(out.parent / "imagefolder_cache"), *common]
    else:
        cmd = [sys.executable, str(ROOT / "train.py"), "--task", args.task, "--data_dir", args.data_dir,
               "--model_name_or_path", str(backbone), "--finetune_mode", "full", "--num_train_epochs",
               str(args.epochs), "--max_train_samples", str(args.train_samples), "--max_eval_samples",
               str(args.eval_samples), "--output_dir", str(out), "--per_device_train_batch_size", "32",
               "--per_device_eval_batch_size", "64", *common,
               *(["--dataset_cache_dir", args.cache_dir] if args.cache_dir else []),
               *(EXAMPLE_AUGMENTATION if side != "train.py" else [])]
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - started
    if proc.returncode:
        raise SystemExit(f"{side} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    if side == "example":
        got = json.loads(proc.stdout.strip().splitlines()[-1])
        runtime, acc, bacc = got["train_runtime_s"], got["validation_accuracy"], got["validation_balanced_accuracy"]
    else:
        report = json.loads((out / "report.json").read_text())
        runtime = report["train_runtime_s"]
        acc, bacc = report["validation"]["accuracy"], report["validation"]["balanced_accuracy"]
    return {"side": side, "train_runtime_s": round(runtime, 2), "wall_s": round(wall, 1),
            "train_images_per_s": round(args.train_samples * args.epochs / runtime, 3),
            "validation_accuracy": round(acc, 4), "validation_balanced_accuracy": round(bacc, 4)}


def pipeline_transforms(args, folder: Path, backbone: Path) -> dict:
    """``{name: transform}`` of each side's training transform (``None``: decode only), train.py's read by
    train.py itself, and train.py's defaults again with torchvision's ``ColorJitter`` (Pillow's hue)."""
    import torch
    from torchvision.transforms import (ColorJitter, Compose, Normalize, RandomHorizontalFlip, RandomResizedCrop,
                                        ToTensor)

    import train
    from skin.modeling import create_model
    from skin.training import ColorJitter as OpenCVHueColorJitter
    from skin.training import processor_spec, train_transform

    def augment(*options: str):  # train.py's augmentation for these options, read by train.py itself
        return train.parse_args(["--task", args.task, "--data_dir", args.data_dir, *options])[1].augment()

    torch.set_num_threads(args.threads)
    _, processor = create_model(str(backbone), [p.name for p in sorted((folder / "train").iterdir())])
    spec = processor_spec(processor)
    return {
        "decode only": None,
        "example": Compose([RandomResizedCrop(spec["size"]), RandomHorizontalFlip(), ToTensor(),
                            Normalize(spec["mean"], spec["std"])]),
        "train.py": train_transform(spec, augment()),
        "train.py with torchvision's ColorJitter (Pillow's hue)": Compose([
            ColorJitter(t.brightness, t.contrast, t.saturation, t.hue) if isinstance(t, OpenCVHueColorJitter) else t
            for t in train_transform(spec, augment()).transforms]),
        "train.py without colour jitter": train_transform(spec, augment("--color_jitter", "0")),
        "train.py, example's augmentation": train_transform(spec, augment(*EXAMPLE_AUGMENTATION)),
    }


def pipeline_costs(args, folder: Path, backbone: Path, n: int = 256, rounds: int = 5) -> dict:
    """Milliseconds per training image for decode + each side's training transform, in this process."""
    from PIL import Image

    transforms = pipeline_transforms(args, folder, backbone)
    paths = sorted((folder / "train").glob("*/*"))[:n]
    times: dict[str, list[float]] = {name: [] for name in transforms}
    for _ in range(rounds):  # interleaved rounds, the median kept: a busy moment hits one round of one transform
        for name, tf in transforms.items():
            started = time.perf_counter()
            for path in paths:
                image = Image.open(path).convert("RGB")
                if tf is not None:
                    tf(image)
            times[name].append((time.perf_counter() - started) / len(paths) * 1000)
    return {name: round(statistics.median(t), 3) for name, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", required=True, help="the task's dataset folder (../shared/data/ham10000)")
    ap.add_argument("--task", default="condition_ham10000")
    ap.add_argument("--model", default="efficientnet_lite0", help="backbone, saved once and loaded by both sides")
    ap.add_argument("--image-size", type=int, default=192)
    ap.add_argument("--train-samples", type=int, default=1024)
    ap.add_argument("--eval-samples", type=int, default=256)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--learning-rate", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache-dir", default=None, help="datasets cache folder")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "vs_example.json"))
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="vs_example_") as tmp:
        work = Path(tmp)
        folder, backbone, n_train, n_eval = prepare(args, work)
        args.train_samples = n_train
        costs = pipeline_costs(args, folder, backbone)
        print("data pipeline, ms per training image:", costs, flush=True)
        runs = []
        for repeat in range(args.repeats):
            for side in SIDES:
                row = {"repeat": repeat, **run_side(side, args, folder, backbone, work / f"run{repeat}_{len(runs)}")}
                print(row, flush=True)
                runs.append(row)

    summary = {}
    for side in SIDES:
        mine = [r for r in runs if r["side"] == side]
        summary[side] = {key: round(statistics.median(r[key] for r in mine), 4) for key in
                         ("train_images_per_s", "wall_s", "validation_accuracy", "validation_balanced_accuracy")}
    base = summary["example"]
    for side in SIDES:
        summary[side]["speed_vs_example"] = round(summary[side]["train_images_per_s"] / base["train_images_per_s"], 3)
        summary[side]["wall_vs_example"] = round(summary[side]["wall_s"] / base["wall_s"], 3)
    result = {"task": args.task, "backbone": args.model, "image_size": args.image_size, "train_images": n_train,
              "validation_images": n_eval, "epochs": args.epochs, "learning_rate": args.learning_rate,
              "threads": args.threads, "repeats": args.repeats, "summary (medians)": summary,
              "data_pipeline_ms_per_image": costs, "runs": runs}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"\n{'side':<36} {'img/s':>7} {'x example':>9} {'wall s':>7} {'x example':>9} {'val acc':>8} {'val bal':>8}")
    for side, s in summary.items():
        print(f"{side:<36} {s['train_images_per_s']:>7.2f} {s['speed_vs_example']:>9.3f} {s['wall_s']:>7.1f} "
              f"{s['wall_vs_example']:>9.3f} {s['validation_accuracy']:>8.3f} "
              f"{s['validation_balanced_accuracy']:>8.3f}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

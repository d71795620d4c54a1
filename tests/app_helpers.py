"""Tiny real checkpoints and an app configuration for the app / service tests.

``make_app_models(root)`` exports two EfficientNet-Lite0 classifiers at 64 px
with random (seeded) weights through :func:`skin.modeling.export_merged`, exactly
as training exports them: a 7-class HAM10000 condition model with an
evaluation report (fairness by tone bucket, from :func:`skin.fairness.
fairness_report` on synthetic predictions, with a thin ``dark`` group) and a
101-class DEX age model. It writes ``skinlens.yaml`` pointing at them and
returns its path. No weights are downloaded (``pretrained=False``). The photo-type gate is
off unless a folder is passed (``phototype=``).
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np

HAM_LABELS = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]


def free_port() -> int:
    """A free loopback port *below* Linux's ephemeral range (32768-60999).

    A port the kernel hands out for ``bind(0)`` comes from the range outgoing
    connections also use, so one may take it during the ~15 s the app needs
    to start, and the app then exits with "Cannot find empty port".
    """
    import random

    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _export(labels, out: Path, seed: int, temperature: float = 1.0) -> None:
    import torch

    from skin.modeling import classifier_layer, create_model, export_merged

    torch.manual_seed(seed)
    model, processor = create_model("efficientnet_lite0", labels, pretrained=False, image_size=64)
    head = classifier_layer(model)
    with torch.no_grad():
        head.weight.normal_(0, 0.05)
        head.bias.normal_(0, 0.5)
    export_merged(model, processor, out, temperature=temperature)


def condition_report(seed: int = 0) -> dict:
    """A report.json with the real fairness-report shape (tone buckets, one thin)."""
    from skin.fairness import fairness_report

    rng = np.random.default_rng(seed)
    n = 160
    y = rng.integers(0, len(HAM_LABELS), n)
    logits = rng.normal(0, 1, (n, len(HAM_LABELS)))
    logits[np.arange(n), y] += 1.5
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    tone = np.array(["light"] * 110 + ["medium"] * 40 + ["dark"] * 10, dtype=object)
    fairness = fairness_report(y, probs, {"tone_bucket": tone}, n_boot=20, labels=HAM_LABELS,
                               malignant_classes=[0, 1, 4]).to_dict()
    return {"task": "condition_ham10000", "dataset": "ham10000", "kind": "classification",
            "labels": HAM_LABELS, "backbone": "efficientnet_lite0", "mode": "full",
            "test": {"n": n, "balanced_accuracy": 0.42}, "fairness": fairness}


def make_app_models(root: Path, *, with_age: bool = True, threshold: float = 0.0, phototype: str | None = None) -> Path:
    """``phototype``: the photo-type model folder; ``None`` turns the gate off, because most tests send
    synthetic photos (which the real gate rightly calls out of scope) to models with random weights."""
    from skin.tasks import AGE_LABELS

    root = Path(root)
    _export(HAM_LABELS, root / "cond", seed=0, temperature=1.5)
    (root / "cond" / "report.json").write_text(json.dumps(condition_report()))
    lines = ["models:", "  condition: {task: condition_ham10000, model: cond, input: closeup, "
                        "title: 'Skin condition (test)'}"]
    if with_age:
        _export(AGE_LABELS, root / "age", seed=1)
        lines.append("  age: {task: age_utkface, model: age, input: face, title: 'Apparent age (test)'}")
    lines += [f"abstain_below: {threshold}", "top_k: 3", "max_upload_mb: 1", f"phototype: {phototype or 'off'}"]
    cfg = root / "skinlens.yaml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


class RunningApp:
    """``python app.py`` in a subprocess on a free loopback port (context manager).

    ``url``, ``client`` (a ``gradio_client.Client``), ``log`` (the server's
    output) and ``pid`` are set once the server answers.
    """

    def __init__(self, config: Path, workdir: Path, timeout: float = 180.0, auth: tuple[str, str] | None = None,
                 **env):
        self.config, self.workdir, self.timeout, self.extra_env = Path(config), Path(workdir), timeout, env
        self.auth = auth
        self.proc = None
        self.client = None

    def __enter__(self) -> "RunningApp":
        import os
        import subprocess
        import sys

        self.log = self.workdir / "app.log"
        for attempt in range(3):
            port = free_port()
            self.url = f"http://127.0.0.1:{port}/"
            env = dict(os.environ)
            env.update(HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", GRADIO_ANALYTICS_ENABLED="False",
                       GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port), PYTHONUNBUFFERED="1",
                       SKINLENS_CONFIG=str(self.config), GRADIO_TEMP_DIR=str(self.workdir / "gradio-tmp"),
                       **self.extra_env)
            with open(self.log, "w") as fh:
                self.proc = subprocess.Popen([sys.executable, "app.py"], cwd=REPO_ROOT, stdout=fh,
                                             stderr=subprocess.STDOUT, env=env)
            self.pid = self.proc.pid
            try:
                self.client = wait_for_app(self.url, self.timeout, self.proc, self.log, auth=self.auth)
                return self
            except RuntimeError:
                # the port was taken between free_port() and the app's bind: try another one
                if attempt == 2 or "Cannot find empty port" not in self.log.read_text():
                    self.__exit__(None, None, None)
                    raise
            except BaseException:
                self.__exit__(None, None, None)
                raise
        raise AssertionError("unreachable")

    def __exit__(self, *exc) -> None:
        import subprocess

        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)


REPO_ROOT = Path(__file__).resolve().parents[1]


def wait_for_app(url: str, timeout: float = 180.0, proc=None, log: Path | None = None,
                 auth: tuple[str, str] | None = None):
    """A ``gradio_client.Client`` once ``url`` answers (raises with the server log if it dies);
    ``auth``: (name, password) of an app that requires sign-in."""
    import time

    from gradio_client import Client

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"app exited with {proc.returncode}:\n{log.read_text() if log else ''}")
        try:
            return Client(url, verbose=False, download_files=False, auth=auth)
        except Exception as e:  # noqa: BLE001 - connection refused while the server starts
            last = e
            time.sleep(1.0)
    raise TimeoutError(f"app did not start in {timeout}s: {last}\n{log.read_text() if log else ''}")

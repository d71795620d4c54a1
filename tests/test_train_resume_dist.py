"""A killed run resumes from its last checkpoint; ``accelerate launch`` with two CPU processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.layouts import make_ham10000

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "OMP_NUM_THREADS": "1"}


def base_args(data_dir, out, *extra):
    return ["--task", "condition_ham10000", "--data_dir", str(data_dir), "--dataset_cache_dir", str(out / "cache"),
            "--output_dir", str(out / "run"), "--run_name", "t", "--model_name_or_path", "mobilenetv2_100",
            "--image_size", "32", "--finetune_mode", "lora", "--lora_r", "2", "--per_device_train_batch_size", "2",
            "--per_device_eval_batch_size", "8", "--n_boot", "10", "--use_cpu", "true", "--logging_steps", "1",
            *extra]


@pytest.mark.slow
def test_killed_run_resumes_from_last_checkpoint(tmp_path):
    data = make_ham10000(tmp_path / "data").data_dir
    steps = ["--max_steps", "40", "--save_strategy", "steps", "--save_steps", "3", "--eval_strategy", "no",
             "--load_best_model_at_end", "false", "--save_total_limit", "1"]
    # Slow each step down so the run is surely still going when we kill it.
    proc = subprocess.Popen([sys.executable, "train.py", *base_args(data, tmp_path, *steps)], cwd=ROOT, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    run = tmp_path / "run"
    deadline = time.time() + 600
    # A checkpoint is complete once its trainer_state.json, which Trainer writes last, parses: the file
    # exists, empty, while it is being written (a kill then left one such checkpoint and nothing else).
    while time.time() < deadline and not _complete_checkpoints(run):
        if proc.poll() is not None:
            pytest.fail(f"the run ended before its first checkpoint: {proc.stderr.read()[-2000:]}")
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "report.json").exists(), "the run finished before it was killed"
    # The kill may land in the middle of writing a checkpoint: resume from the last complete one.
    last, killed_at = max(_complete_checkpoints(run).items(), key=lambda kv: kv[1])
    assert 0 < killed_at < 40

    res = subprocess.run([sys.executable, "train.py", *base_args(data, tmp_path, *steps),
                          "--resume_from_checkpoint", str(last)], cwd=ROOT, env=ENV, capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    # Trainer's progress bar jumps straight to the checkpoint's step when it resumes.
    assert "| 1/40 [" not in res.stderr, "training restarted from step 0 instead of the checkpoint"
    assert f"| {killed_at + 1}/40 [" in res.stderr
    steps = [int(row["step"]) for row in _history(run) if row.get("loss") is not None]
    assert steps == sorted(set(steps)) and steps[-1] == 40
    assert json.loads((run / "report.json").read_text())["test"]["n"] > 0


def _complete_checkpoints(run: Path) -> dict[Path, int]:
    """``{checkpoint folder: global step}`` of the checkpoints whose trainer_state.json parses."""
    out = {}
    for state in run.glob("checkpoint-*/trainer_state.json"):
        try:
            out[state.parent] = json.loads(state.read_text())["global_step"]
        except (OSError, ValueError):  # still being written, or cut short by the kill
            continue
    return out


def test_an_incomplete_checkpoint_is_refused_with_the_fix(tmp_path):
    """A checkpoint a killed run was still saving (trainer_state.json empty) is named, not a JSON trace."""
    checkpoint = tmp_path / "run" / "checkpoint-6"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text("")
    data = make_ham10000(tmp_path / "data").data_dir
    res = subprocess.run([sys.executable, "train.py", *base_args(data, tmp_path), "--resume_from_checkpoint",
                          str(checkpoint)], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"--resume_from_checkpoint {checkpoint} is incomplete" in res.stderr
    assert "previous checkpoint-N folder" in res.stderr
    # the run folder given instead of a checkpoint: its checkpoints are listed
    res = subprocess.run([sys.executable, "train.py", *base_args(data, tmp_path), "--resume_from_checkpoint",
                          str(checkpoint.parent)], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "holds no trainer_state.json: pass one of a run's checkpoint-N folders (here: checkpoint-6)" in res.stderr


def _history(run):
    import csv

    with open(run / "metrics.csv") as f:
        return [{k: float(v) if v not in ("", None) else None for k, v in row.items()} for row in csv.DictReader(f)]


@pytest.mark.slow
def test_accelerate_launch_two_cpu_processes(tmp_path):
    data = make_ham10000(tmp_path / "data").data_dir
    # "--cpu" alone makes accelerate start ONE process; "--multi_gpu" on a machine without GPUs starts two
    # CPU processes that train.py's Trainer joins with the gloo backend.
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517",
           "train.py", *base_args(data, tmp_path, "--max_steps", "4", "--eval_strategy", "no",
                                  "--save_strategy", "no", "--load_best_model_at_end", "false")]
    res = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    # train.py destroys the gloo process group on every rank before exit (Trainer.end): left to interpreter
    # finalisation, rank 1 aborted about once in five runs with this message.
    assert "terminate called" not in res.stderr, res.stderr[-3000:]
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    args = json.loads((tmp_path / "run" / "args.json").read_text())
    assert report["test"]["n"] > 0
    assert report["world_size"] == 2, "training did not run in two processes"
    assert args["training"]["per_device_train_batch_size"] == 2
    assert (tmp_path / "run" / "merged" / "config.json").is_file()

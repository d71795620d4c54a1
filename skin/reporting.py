"""The run folder: report.json, metrics.csv, args, figures, merged/ and adapter/."""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import asdict

from skin.reports import RunReport, dump_json


def write_history(log_history: list[dict], path: str) -> None:
    keys = sorted({k for row in log_history for k in row})
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(log_history)


def write_run(run_dir, *, trainer, task, dsd, processor, labels, model_args, data_args, training_args,
              finetune_state, extra: dict) -> RunReport:
    """Evaluate the trained model, calibrate, draw the figures, export, and write ``report.json`` and the card."""
    model = trainer.model
    _write_log_and_args(run_dir, trainer, model_args, data_args, training_args)
    calib, val, test = _evaluate_calibrated(
        model, task, dsd, processor, labels, data_args, training_args)
    figures = _draw_figures(run_dir, trainer, task, labels, test, calib)

    from skin.modeling import export_calibrated

    exported = export_calibrated(model, processor, run_dir, state=finetune_state, temperature=calib["temperature"])
    report = RunReport(
        task=task.name,
        kind=task.kind,
        dataset=task.dataset,
        labels=labels,
        backbone=model_args.model_name_or_path,
        mode=model_args.finetune_mode,
        trainable_parameters=extra["trainable_parameters"],
        total_parameters=extra["total_parameters"],
        splits={s: len(d) for s, d in dsd.items()},
        validation=val.metrics,
        test=test.metrics,
        calibration=calib,
        fairness=test.fairness,
        tta=data_args.tta,
        world_size=training_args.world_size,
        train_runtime_s=extra.get("train_runtime_s"),
        wall_time_s=round(time.time() - extra["started"], 1),
        figures={k: os.path.relpath(v, run_dir) for k, v in figures.items()},
        exported={k: os.path.relpath(v, run_dir) for k, v in exported.items()},
        command=extra["command"],
        environment=extra.get("environment", {}),
    )
    dump_json(report, os.path.join(run_dir, "report.json"))
    from skin.model_card import write_model_card

    write_model_card(report, os.path.join(run_dir, "merged"))
    return report


def _write_log_and_args(run_dir, trainer, model_args, data_args, training_args) -> None:
    """Create ``figures/`` and write ``metrics.csv`` and ``args.json``, the run's record before any evaluation."""
    os.makedirs(os.path.join(run_dir, "figures"), exist_ok=True)
    write_history(trainer.state.log_history, os.path.join(run_dir, "metrics.csv"))
    with open(os.path.join(run_dir, "args.json"), "w") as f:
        json.dump({"model": asdict(model_args), "data": asdict(data_args), "training": training_args.to_dict()},
                  f, indent=2, default=str)


def _evaluate_calibrated(model, task, dsd, processor, labels, data_args, training_args):
    """Fit the temperature on validation (served mode) and evaluate both splits with it: (calib, val, test)."""
    from skin.calibration import softmax
    from skin.evaluate import evaluate_split, predict_logits, served_calibration

    bs = training_args.per_device_eval_batch_size
    # The temperature is that of the served inference (the photo alone); --tta only changes the test metrics.
    calib, val_logits, test_logits = served_calibration(model, processor, task, dsd, labels, batch_size=bs)
    if data_args.tta:
        flips = {"tta": True, "vflip": not task.upright}
        val_logits = predict_logits(model, processor, dsd["validation"], batch_size=bs, **flips)
        test_logits = predict_logits(model, processor, dsd["test"], batch_size=bs, **flips)
    val_y, test_y = task.targets(dsd["validation"]), task.targets(dsd["test"])
    T = calib["temperature"]
    test_probs = softmax(test_logits, T)
    test = evaluate_split(task, test_probs, test_y, labels, dsd["test"], n_boot=data_args.n_boot)
    val = evaluate_split(task, softmax(val_logits, T), val_y, labels, dsd["validation"], n_boot=0)
    return calib, val, test


def _draw_figures(run_dir, trainer, task, labels, test, calib) -> dict[str, str]:
    """Draw the run's PNG figures under ``figures/`` ({name: path}): confusion, reliability, fairness, curves."""
    from skin import plots

    figures = {}
    if "confusion_matrix" in test.metrics and len(labels) <= 30:
        figures["confusion_matrix"] = plots.plot_confusion_matrix(
            test.metrics["confusion_matrix"], labels, os.path.join(run_dir, "figures", "confusion_matrix.png"))
    # the served mode's test reliability (for age: over the age groups), before and after the temperature
    figures["reliability"] = plots.plot_reliability(
        calib["reliability_before"], calib["reliability_after"], os.path.join(run_dir, "figures", "reliability.png"))
    for attr, table in test.fairness.items():
        figures[f"fairness_{attr}"] = plots.plot_fairness(
            table, task.metric.name, os.path.join(run_dir, "figures", f"fairness_{attr}.png"))
    figures["training_curves"] = plots.plot_training_curves(
        trainer.state.log_history, os.path.join(run_dir, "figures", "training_curves.png"))
    return figures

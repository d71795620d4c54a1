"""Evaluate a model on a dataset: metrics, calibration, fairness, DDI audit.

Used by ``train.py`` at the end of a run and on its own::

    python -m skin.evaluate --model default:condition --dataset ddi --data-dir DIR --split all --json
    python -m skin.evaluate --model experiments/run/merged --dataset ham10000 --data-dir DIR

The model is any checkpoint ``pipeline("image-classification")`` loads (a
folder or a Hub id) or an embedded default (``default:condition``,
``default:age``). Its ``id2label`` must match the dataset's classes, except on
DDI, where a condition model is audited for malignancy: ROC-AUC of the summed
probability of the model's malignant classes, overall and per Fitzpatrick
group, each with a bootstrap interval (the audit of Daneshjou et al. 2022;
:func:`malignancy_audit`; also on any other dataset with a ``malignant``
column whose classes differ from the model's, e.g. PAD-UFES-20).

A dataset with several groupings (DermNet) is prepared in the grouping whose
classes are the model's, so any folder in DermNet's layout is scored in the
model's own classes; the report counts the images left out (folders the
grouping lacks, files that do not decode) under ``skipped``::

    python -m skin.evaluate --model default:clinical --dataset dermnet --data-dir DIR --split all --json
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from skin.reports import CI_QUANTILES, AUCRow, EvalReport, MalignancyAudit, SplitReport, to_jsonable
from skin.tasks import (
    TASKS,
    Task,
    TaskKind,
    age_group_names,
    age_to_group,
    get_task,
    label_ages,
    malignant_indices,
)


@torch.no_grad()
def predict_logits(model, processor, ds, *, batch_size: int = 64, tta: bool = False,
                   vflip: bool = True) -> np.ndarray:
    """Logits for every row of ``ds`` (an ``image`` column), as the pipeline sees them.

    ``tta`` averages the logits of the image and its horizontal flip, and with
    ``vflip`` also its vertical flip (lesions have no orientation; faces have
    one, so face tasks pass ``vflip=False``): a cheap test-time augmentation.
    """
    model.eval()
    out = []
    for start in range(0, len(ds), batch_size):
        images = [im.convert("RGB") for im in ds[start : start + batch_size]["image"]]
        x = processor(images, return_tensors="pt")["pixel_values"]
        logits = model(pixel_values=x).logits
        if tta:
            views = [logits, model(pixel_values=x.flip(-1)).logits]
            if vflip:
                views.append(model(pixel_values=x.flip(-2)).logits)
            logits = torch.stack(views).mean(0)
        out.append(logits.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.num_labels), dtype=np.float32)


def answer_groups(task: Task, labels) -> np.ndarray | None:
    """The group of each class that the app answers in: the age group of each single-year class of an
    age model (the app shows and abstains on the five groups), ``None`` (the classes themselves) otherwise."""
    return age_to_group(label_ages(labels), task.age_bins) if task.kind is TaskKind.AGE else None


def served_calibration(model, processor, task: Task, dsd, labels, *, batch_size: int = 64):
    """``(calibration, validation logits, test logits)`` of the inference the app serves: the photo alone.

    The temperature is fitted on validation logits without test-time flips, because the app predicts
    on the photo alone (a temperature fitted on flip-averaged logits, which are less spread, is too
    low for single views); for age over the five age groups (:func:`answer_groups`). The test
    calibration figures are those of the same served mode, overall and per estimated skin-tone bucket
    (``by_group``, when the test split has the tone column). The logits returned are single-view.
    """
    from skin.calibration import calibration_summary

    val = predict_logits(model, processor, dsd["validation"], batch_size=batch_size)
    test = predict_logits(model, processor, dsd["test"], batch_size=batch_size)
    y_val, y_test = task.targets(dsd["validation"]), task.targets(dsd["test"])
    groups = answer_groups(task, labels)
    if groups is not None:
        y_val, y_test = age_to_group(y_val, task.age_bins), age_to_group(y_test, task.age_bins)
    from skin.tone import ESTIMATED_TONE_COLUMN

    test_ds = dsd["test"]
    tone = ({ESTIMATED_TONE_COLUMN: _group_names(test_ds, ESTIMATED_TONE_COLUMN)}
            if ESTIMATED_TONE_COLUMN in test_ds.column_names else None)
    calib = calibration_summary(val, y_val, test, y_test, class_groups=groups, test_groups=tone)
    calib["served"] = "single view: the photo alone, as the app predicts"
    return calib, val, test


def task_metrics(task: Task, probs: np.ndarray, targets: np.ndarray, labels: list[str]) -> dict:
    """The task's metrics (flat, JSON-ready; see :mod:`skin.metrics`)."""
    from skin import metrics

    if task.kind is TaskKind.AGE:
        estimate = metrics.expected_age(probs, label_ages(labels))
        return metrics.age_metrics(targets.astype(float), estimate, bins=task.age_bins)
    m = metrics.classification_metrics(targets, probs, labels=labels)
    if task.kind is TaskKind.ORDINAL:
        m.update(metrics.ordinal_metrics(targets, probs.argmax(1)))
    return m


def sensitive_groups(task: Task, ds) -> dict[str, list]:
    """Group columns for the fairness report (age groups derived from ``age`` when asked for)."""
    groups = {}
    for col in task.sensitive:
        if col == "age_group" and "age" in ds.column_names:
            names = age_group_names(task.age_bins)
            groups[col] = [None if a is None or np.isnan(a) else names[age_to_group(a, task.age_bins)]
                           for a in ds["age"]]
        elif col in ds.column_names:
            groups[col] = _group_names(ds, col)
    return groups


def _group_names(ds, col: str) -> list:
    """Column ``col`` of ``ds`` as group names (a class label's name, not its index)."""
    feat = ds.features[col]
    return [feat.int2str(v) if hasattr(feat, "int2str") and v is not None else v for v in ds[col]]


def evaluate_split(task: Task, probs: np.ndarray, targets: np.ndarray, labels: list[str], ds,
                   n_boot: int = 200) -> SplitReport:
    """Metrics + per-group fairness for one split's calibrated probabilities."""
    from skin.calibration import expected_calibration_error
    from skin.fairness import fairness_report

    metrics = {"n": int(len(targets)), **task_metrics(task, probs, targets, labels)}
    if task.kind is not TaskKind.AGE:
        metrics["ece"] = float(expected_calibration_error(probs, targets, n_bins=15))
    groups = sensitive_groups(task, ds)
    if not groups:
        return SplitReport(metrics)
    # a task without malignant classes of its own (SCIN) still reports any class another task calls malignant
    malignant = task.malignant_indices(labels) if task.malignant else malignant_indices(labels)
    fairness = fairness_report(
        targets, probs, groups, kind=task.kind, labels=labels, malignant_classes=malignant or None, n_boot=n_boot,
        ages=label_ages(labels) if task.kind is TaskKind.AGE else None, age_bins=task.age_bins,
        clusters=cluster_ids(ds),
    )
    return SplitReport(metrics, fairness)


def cluster_ids(ds) -> np.ndarray | None:
    """Each row's ``group_id`` (the unit a builder keeps within one split: a lesion, a patient, a chain of
    near-duplicate photos), which the bootstrap intervals resample whole; ``None`` for a dataset without one."""
    return np.asarray(ds["group_id"], dtype=str) if "group_id" in ds.column_names else None


def fst_groups(ds) -> np.ndarray:
    """Each row's Fitzpatrick pair: DDI's ``fst_group``, else from ``fitzpatrick`` (``"unknown"`` when absent)."""
    from skin.tone import fst_pair

    if "fst_group" in ds.column_names:
        return np.asarray(ds["fst_group"])
    if "fitzpatrick" not in ds.column_names:  # HAM10000, DermNet: no tone labels
        return np.full(len(ds), "unknown")
    return np.asarray([fst_pair(f) or "unknown" for f in ds["fitzpatrick"]])


def shown_labels(labels: list[str], first: int = 6) -> str:
    """A label list for a message: the first few and the count (an age model has 101)."""
    return ", ".join(labels[:first]) + (f", … ({len(labels)} classes)" if len(labels) > first else "")


def malignancy_audit(probs: np.ndarray, model_labels: list[str], ds, n_boot: int = 200,
                     random_state: int = 0) -> MalignancyAudit:
    """Malignancy ROC-AUC overall and per Fitzpatrick group, each with a bootstrap interval.

    The DDI audit of Daneshjou et al. (2022), on any dataset with a
    ``malignant`` column (DDI, PAD-UFES-20, HAM10000, DermNet): the score is
    the summed probability of the model's malignant classes (any label a task
    in :mod:`skin.tasks` calls malignant); groups are Fitzpatrick pairs I-II /
    III-IV / V-VI (DDI's ``skin_tone`` 12 / 34 / 56, :func:`fst_groups`;
    ``unknown`` without labels) and the estimated tone buckets. Each
    interval is a percentile bootstrap over that set's own clusters (``group_id``: a
    patient, a lesion), or images where there are none (:func:`skin.metrics.malignancy_auc`,
    ``n_boot`` resamples).
    """
    from skin.metrics import malignancy_auc
    from skin.tone import ESTIMATED_TONE_COLUMN, TONE_BUCKETS

    idx = malignant_indices(model_labels)
    if not idx:
        raise ValueError(f"the model's classes ({shown_labels(model_labels)}) contain no malignant class: "
                         "no malignancy audit")
    score = probs[:, idx].sum(1)
    truth = np.asarray(ds["malignant"], dtype=bool)
    fst = fst_groups(ds)
    clusters = cluster_ids(ds)

    def row(mask) -> AUCRow:
        auc = malignancy_auc(truth[mask], score[mask], n_boot=n_boot, random_state=random_state,
                             groups=None if clusters is None else clusters[mask])
        return AUCRow(n=int(mask.sum()), n_malignant=int(truth[mask].sum()), auc=auc)

    by_fst = {str(g): row(fst == g) for g in sorted(set(fst))}
    by_tone = {}
    if ESTIMATED_TONE_COLUMN in ds.column_names:
        tone = np.asarray([g or "unknown" for g in _group_names(ds, ESTIMATED_TONE_COLUMN)], dtype=object)
        by_tone = {b: row(tone == b) for b in (*TONE_BUCKETS, "unknown") if (tone == b).any()}
    return MalignancyAudit(overall=row(np.ones(len(truth), bool)), by_fst=by_fst, n_boot=n_boot,
                           ci_quantiles=CI_QUANTILES if n_boot else None,
                           ci_resampling=(("images" if clusters is None else "clusters") if n_boot else None),
                           by_tone_estimated=by_tone)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skin.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True,
                        help="checkpoint folder, Hub id, or default:condition / default:age / default:clinical")
    parser.add_argument("--dataset", required=True,
                        help="scin, kaggle, utkface, aihub, ham10000, pad_ufes20, ddi, dermnet")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--task", default=None, help="task name (default: inferred from the dataset)")
    parser.add_argument("--split", default="test", choices=["train", "validation", "test", "all"])
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--n-boot", type=int, default=200)
    parser.add_argument("--tta", action="store_true",
                        help="average over flips (horizontal; vertical too unless the images are faces), "
                             "as train.py --tta does")
    parser.add_argument("--json", action="store_true", help="print the report as JSON only")
    args = parser.parse_args(argv)
    try:
        report = evaluate_model(args.model, args.dataset, args.data_dir, task_name=args.task, split=args.split,
                                cache_dir=args.cache_dir, batch_size=args.batch_size, n_boot=args.n_boot,
                                tta=args.tta)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(to_jsonable(report), indent=2, allow_nan=False))
    else:
        from skin.report_text import render

        print(render(report))
    return 0


def grouping_config(dataset: str, model_labels: list[str]) -> dict:
    """``{"config_name": ...}`` of the dataset's grouping whose classes are the model's, so that a
    model is scored in its own grouping (DermNet's ``clinical`` / ``fine`` / ``kaggle10``), with
    ``"folder_labels": True`` when the model's classes are a grouping's folders; ``{}`` when the
    dataset has one grouping or none matches (the task's default config is used)."""
    from skin.data import builder_class

    builder = builder_class(dataset)
    for folder_labels in (False, True):
        for name in getattr(builder, "GROUPINGS", None) or {}:
            if builder.label_names(name, folder_labels) == model_labels:
                return {"config_name": name, **({"folder_labels": True} if folder_labels else {})}
    return {}


def evaluate_model(model_ref: str, dataset: str, data_dir: str, *, task_name: str | None = None,
                   split: str = "test", cache_dir: str | None = None, batch_size: int = 64,
                   n_boot: int = 200, tta: bool = False) -> EvalReport:
    """Predict ``dataset``'s ``split`` with ``model_ref`` and score it (the DDI audit for a condition model on DDI)."""
    from datasets import concatenate_datasets

    from skin.data import get_builder, skip_list, skipped_images
    from skin.inference import load_for_inference

    if task_name:
        task = get_task(task_name)
    else:
        matches = [t for t in TASKS.values() if t.dataset == dataset]
        if not matches:
            raise ValueError(f"no task uses dataset {dataset!r}; pass --task")
        task = matches[0]
    model, processor, model_labels = load_for_inference(model_ref)  # BatchNorm folded: about 2x faster on CPU
    builder = get_builder(dataset, data_dir, cache_dir=cache_dir,
                          **{**task.data_config, **grouping_config(dataset, model_labels)})
    builder.download_and_prepare()
    dsd = builder.as_dataset()
    if split == "all":
        ds = concatenate_datasets([dsd[s] for s in dsd])
    elif split not in dsd:
        raise ValueError(f"{dataset} has no {split!r} split (it has {list(dsd)})")
    else:
        ds = dsd[split]
    labels = task.labels(ds.features)
    audit = labels != model_labels  # another grouping: only the malignancy audit compares them
    if audit and ("malignant" not in ds.column_names or not malignant_indices(model_labels)):
        raise ValueError(f"the model's classes ({shown_labels(model_labels)}) are not {dataset}'s "
                         f"({shown_labels(labels)}), and a malignancy audit needs a dataset with a 'malignant' "
                         "column (ddi, pad_ufes20, ham10000, dermnet) and a model with a malignant class: "
                         "evaluate the model on the dataset it was trained for")
    probs = torch.softmax(torch.from_numpy(predict_logits(model, processor, ds, batch_size=batch_size, tta=tta,
                                                         vflip=not task.upright)), 1).numpy()
    head = {"model": model_ref, "dataset": dataset, "split": split, "n": len(ds), "tta": tta,
            "skipped": skipped_images(skip_list(builder))}
    if audit:
        return EvalReport(**head, malignancy=malignancy_audit(probs, model_labels, ds, n_boot=n_boot))
    return EvalReport(**head, result=evaluate_split(task, probs, task.targets(ds), labels, ds, n_boot=n_boot))


if __name__ == "__main__":
    sys.exit(main())

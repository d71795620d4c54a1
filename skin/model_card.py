"""The model card published with a model: ``model_card.md`` filled from the run's report.

Everything on it comes from the report and from the facts written once elsewhere:
the dataset's title, licence and homepage from its builder (``skin.data.dataset_info``),
class names and malignant classes from the task (``skin.tasks``), the tone-estimate
agreement from ``skin.tone``. It is written for the developer who pulls the model
from the Hub: what each class is, how well it did per class and per group, how to
turn the pipeline's output into the app's answers, on what terms it may be used,
and the command that trained it (``skin.commands.portable_command``).
"""

from __future__ import annotations

import os
from pathlib import Path

from skin.commands import environment_sentence, portable_command

TEMPLATE = Path(__file__).resolve().parents[1] / "model_card.md"
#: Test metrics listed on the card (those the report has).
CARD_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "mae", "group_accuracy")
#: What the card says the fairness intervals resampled (``FairnessTable.ci_resampling``).
CI_NOTES = {
    "clusters": "they resample whole clusters of test images (the dataset's `group_id`: a lesion, a patient, "
                "a chain of near-duplicate photos), since photos of one cluster are not independent.",
    "images": "they resample single test images.",
}


def fmt(v) -> str:
    """A number for the card: three decimals for floats, ``n/a`` for a missing value."""
    return "n/a" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def fairness_rows(fairness, metric: str) -> list[str]:
    """Markdown rows ``| attribute | group | n | value | low–high | small |`` of ``metric`` for every group."""
    rows = []
    for attr, table in fairness.items():
        for group, row in table.groups.items():
            cell = row.get(metric)
            value = fmt(cell.value) if cell else "n/a"
            ci = f"{fmt(cell.ci_low)}–{fmt(cell.ci_high)}" if cell and cell.has_ci else "n/a"
            rows.append(f"| {attr} | {group} | {row.n} | {value} | {ci} | {'small' if row.small else ''} |")
    return rows


def ci_note(fairness) -> str:
    """The card's sentence on what the intervals resampled (clusters where any table did)."""
    ways = {table.ci_resampling for table in fairness.values()} & set(CI_NOTES)
    return CI_NOTES["clusters" if "clusters" in ways else "images"] if ways else "no intervals were computed."


def classes_section(report, task) -> str:
    """What each output label means, and how the test split scored it.

    A classifier gets a table (label, readable name, malignant, test n, precision, recall); the age
    model's one class per year gets one sentence.
    """
    from skin.tasks import TaskKind

    labels = list(report.labels)
    if report.kind is TaskKind.AGE:
        return (f"{len(labels)} classes, one per year of age: `{labels[0]}`, `{labels[1]}`, …, `{labels[-1]}` "
                "(the last one open-ended). The estimate is their expectation; see *Using the model*.")
    per_class = report.test.get("per_class") or {}
    rows = ["| label | class | malignant | test n | precision | recall |", "|---|---|---|---|---|---|"]
    for label in labels:
        scores = per_class.get(label, {})
        measured = scores.get("support", 0) > 0  # no test photo of the class: nothing to score, not 0.000
        rows.append(f"| `{label}` | {task.label_names.get(label, label)} | {'yes' if label in task.malignant else ''} "
                    f"| {scores.get('support', 'n/a')} | {fmt(scores.get('precision') if measured else None)} | "
                    f"{fmt(scores.get('recall') if measured else None)} |")
    return "\n".join(rows)


def usage_section(report, task) -> str:
    """A few lines of ``pipeline`` code that give the app's reading of the output."""
    from skin.tasks import TaskKind

    lines = ['from transformers import pipeline', '',
             'classify = pipeline("image-classification", model="MODEL")  # this repository or folder',
             'every_class = classify.model.config.num_labels  # top_k=None would mean the default, 5',
             'scores = classify("photo.jpg", top_k=every_class)  # calibrated probabilities']
    if report.kind is TaskKind.AGE:
        lines.append('age = sum(float(s["label"].rstrip("+")) * s["score"] for s in scores)  # expected age (DEX)')
    else:
        malignant = [label for label in report.labels if label in task.malignant]
        if malignant:
            lines.append(f'malignant = sum(s["score"] for s in scores if s["label"] in {tuple(malignant)!r})')
    return "```python\n" + "\n".join(lines) + "\n```"


def tone_coverage(report) -> str:
    """How many test photos fell in each estimated tone bucket (``""`` when the report has none)."""
    from skin.tone import ESTIMATED_TONE_COLUMN

    table = report.fairness.get(ESTIMATED_TONE_COLUMN)
    if not table or not table.groups:
        return ""
    counts = ", ".join(f"{group} {row.n}" for group, row in table.groups.items())
    return (f"- Test photos by estimated skin tone: {counts}. A bucket marked *small* in the fairness table "
            "is not measured reliably; the estimate itself is rough (see *Fairness*).")


def license_fields(source) -> dict:
    """The card's licence metadata: the Hub's identifier, or ``other`` with the terms' name and link."""
    if source.hub_license != "other":
        return {"license": source.hub_license}
    slug = "".join(c if c.isalnum() else "-" for c in source.title.lower()).strip("-")
    fields = {"license": "other", "license_name": f"{slug}-terms"}
    if source.homepage:
        fields["license_link"] = source.homepage
    return fields


def render_model_card(report, template: str | os.PathLike = TEMPLATE, *, ci_coverage: str | None = None,
                      age_mix: str | None = None):
    """A ``huggingface_hub.ModelCard`` from ``model_card.md`` and a run report
    (a :class:`~skin.reports.RunReport` or its ``report.json`` dict).

    ``ci_coverage``: the sentence on how often the fairness intervals held the true value
    (:func:`skin.ci_coverage.coverage_sentence` of the model); ``None``: the card says it was not checked.
    ``age_mix``: how much of an age model's gap between tones is the test photos' ages
    (:func:`skin.age_mix.age_mix_sentence`); ``None``: nothing is said.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    from skin.ci_coverage import NOT_CHECKED
    from skin.data import dataset_info
    from skin.reports import RunReport
    from skin.tasks import HEADLINE_METRICS, get_task
    from skin.tone import load_tone_agreement

    if not isinstance(report, RunReport):
        report = RunReport.from_dict(report)
    task = get_task(report.task)
    test = report.test_scalars
    metric_names = [m for m in CARD_METRICS if m in test]
    headline = HEADLINE_METRICS[report.kind]
    source = dataset_info(report.dataset)
    card_data = ModelCardData(
        **license_fields(source),
        library_name="transformers",
        pipeline_tag="image-classification",
        base_model=report.backbone if "/" in report.backbone else None,
        tags=["skinlens", "image-classification", "dermatology", "fairness", report.mode],
        model_name=f"skinlens-{report.task}",
        eval_results=[
            EvalResult(task_type="image-classification", dataset_type=report.dataset, dataset_name=source.title,
                       dataset_split="test", metric_type=m, metric_value=test[m])
            for m in metric_names
        ] or None,
    )
    calib = report.calibration
    limits = [tone_coverage(report)]
    if "race" in report.fairness:
        limits.append("- The dataset's `race` labels are not skin tone; the tone rows are the pixels' estimate.")
    return ModelCard.from_template(
        card_data,
        template_path=str(template),
        task=report.task,
        task_description=task.description,
        task_kind=report.kind.value,
        dataset_name=source.title,
        dataset_licence=source.license,
        dataset_link=source.homepage,
        backbone=report.backbone,
        mode=report.mode,
        classes=classes_section(report, task),
        usage=usage_section(report, task),
        metrics_table="\n".join(f"| {m} | {fmt(test[m])} |" for m in metric_names) or "| n/a | |",
        fairness_metric=headline.label,
        ci_note=ci_note(report.fairness),
        fairness_table="\n".join(fairness_rows(report.fairness, headline.name))
        or "| (no group labels in this dataset) | | | | | |",
        ci_coverage=ci_coverage or NOT_CHECKED,
        age_mix=age_mix or "",
        tone_agreement=load_tone_agreement().sentence(),
        data_limits="\n".join(line for line in limits if line),
        temperature=fmt(calib.get("temperature")),
        ece_before=fmt(calib.get("ece_before")),
        ece_after=fmt(calib.get("ece_after")),
        command=portable_command(report.command) if report.command else "(not recorded)",
        environment=environment_sentence(report.environment)
        or "The run predates the record of its commit and library versions.",
        n_test=report.test.get("n"),
    )


def write_model_card(report, out_dir: str, *, ci_coverage: str | None = None, age_mix: str | None = None) -> str:
    """Write the card of ``report`` (see :func:`render_model_card`) as ``out_dir/README.md``."""
    card = render_model_card(report, ci_coverage=ci_coverage, age_mix=age_mix)
    path = os.path.join(out_dir, "README.md")
    card.save(path)
    return path

"""The fairness card: how well a model works for each skin tone, read from its evaluation report.

It reads the typed report (:class:`skin.reports.RunReport`) and returns a
plain dict (the ``/fairness`` endpoint returns it as JSON and
``app_markdown.fairness_markdown`` draws it): the task's headline metric per
tone bucket with its bootstrap CI and n, the visitor's bucket highlighted, the
other groups the report measured, and warnings a person should read before
trusting the number: no skin-tone labels at all, no or few test images for
the visitor's tone, a large gap between tones.
"""

from __future__ import annotations

from typing import Any

from skin.age_mix import age_mix_sentence
from skin.ci_coverage import coverage_sentence
from skin.reports import FairnessTable, GroupMetrics, MetricCI, RunReport
from skin.tone import ESTIMATED_TONE_COLUMN

TONE_ATTRIBUTE = "tone_bucket"
#: The tone estimated from each test photo's skin pixels, which every report has: the card's rows when the
#: test set has no tone labels, with a caveat saying how rough the estimate is.
ESTIMATED_TONE_ATTRIBUTE = ESTIMATED_TONE_COLUMN
ESTIMATED_TONE_NOTE = ("measured by skin tone estimated from each test photo's skin pixels (ITA), not by labels "
                       "(the test set has none): treat the rows as a rough guide; how rough is stated on the card")
#: What the card says when a dataset has neither skin-tone labels nor estimates.
NO_TONE_LABELS = {
    "ham10000": "not measured for any skin tone: the training data (HAM10000) is almost all light skin and has "
                "no skin-tone labels. Expect the model to be less reliable on medium and dark skin.",
    "utkface": "not measured by skin tone: UTKFace labels race, not skin tone (per-race results are listed "
               "below). Race is not skin tone; treat them as a rough guide only.",
    "kaggle": "not measured for any skin tone: the Kaggle dataset has no skin-tone labels.",
    "aihub": "not measured by skin tone: the AI-Hub data are of Korean adults, with no skin-tone labels.",
}


def dataset_source(dataset: str) -> tuple[str, str, str | None]:
    """``(name, licence, homepage)`` of a dataset, as its builder declares them (:func:`skin.data.dataset_info`)."""
    from skin.data import dataset_info

    source = dataset_info(dataset)
    return source.title, source.license, source.homepage


def parse_bucket(tone_bucket: str | None) -> str | None:
    """The visitor's tone bucket, lower-cased; ``None`` for empty. Anything else is a ``ValueError``."""
    from skin.tone import TONE_BUCKETS

    bucket = (tone_bucket or "").strip().lower() or None
    if bucket is not None and bucket not in TONE_BUCKETS:
        raise ValueError(f"tone_bucket must be one of {', '.join(TONE_BUCKETS)} or empty, got {tone_bucket!r}")
    return bucket


def read_report(spec) -> tuple[RunReport | None, str | None]:
    """Model ``spec``'s evaluation report (:func:`skin.hub.load_report`) as a :class:`RunReport`, or ``None``
    with the reason it cannot be read (``None`` reason: the model simply has none)."""
    from skin.hub import load_report

    try:
        stored = load_report(spec.model)
    except ValueError as e:
        return None, str(e)
    try:
        return (None if stored is None else RunReport.from_dict(stored)), None
    except (KeyError, TypeError, ValueError) as e:
        return None, f"model '{spec.key}': its report.json cannot be read ({type(e).__name__}: {e})"


def fairness_card(spec, task, report: RunReport | None, *, bucket: str | None, problem: str | None,
                  model_card_url: str) -> dict:
    """The card of model ``spec`` (a :class:`~skin.service.config.ModelSpec`) for ``task``.

    ``report``: the model's evaluation report (``None`` when it has none);
    ``problem``: why the model or its report cannot be used, if so; ``bucket``:
    the visitor's tone bucket (see :func:`parse_bucket`).
    """
    from skin.tone import load_tone_agreement

    metric = task.metric
    ds_name, licence, ds_url = dataset_source(task.dataset)
    card: dict[str, Any] = {
        "task": spec.key, "task_name": spec.task, "title": spec.title, "model": spec.model, "dataset": ds_name,
        "dataset_licence": licence, "dataset_url": ds_url, "model_card": spec.card_url or model_card_url,
        "metric": metric.name, "metric_label": metric.label, "higher_is_better": metric.greater_is_better,
        "user_bucket": bucket, "measured": False, "rows": [], "warnings": [], "other_groups": {},
        "overall": None, "tta": False, "tone_agreement": load_tone_agreement().sentence(), "missed_cancers": None,
        "ci_coverage": None, "age_mix": None,
    }
    if report is None:
        card["warnings"].append(problem or "this model has no evaluation report, so its performance per skin "
                                           "tone is unknown")
        return card
    source, tone = _tone_table(report)
    for attr, table in report.fairness.items():
        if attr != source:
            card["other_groups"][attr] = [{"group": g, **_cell(row, metric.name)} for g, row in table.groups.items()]
    card["tta"] = bool(report.tta)
    if isinstance(report.test.get(metric.name), (int, float)):
        card["overall"] = {"value": float(report.test[metric.name]), "n": report.test.get("n")}
    card["tone_source"] = {TONE_ATTRIBUTE: "labels", ESTIMATED_TONE_ATTRIBUTE: "estimated"}.get(source)
    if tone is None:
        card["warnings"].append(NO_TONE_LABELS.get(task.dataset, f"not measured for any skin tone: the "
                                                                 f"{ds_name} test set has no skin-tone labels"))
        return card
    if source == ESTIMATED_TONE_ATTRIBUTE:
        card["warnings"].append(ESTIMATED_TONE_NOTE)
    card["measured"] = True
    card["rows"] = _tone_rows(tone, metric.name, bucket)
    if source == ESTIMATED_TONE_ATTRIBUTE:
        _add_served_confidence(card["rows"], report)
    card["warnings"] += _tone_warnings(card["rows"], tone, metric, bucket)
    card["missed_cancers"] = _missed_cancers(tone, bucket)
    card["ci_coverage"] = coverage_sentence(spec.model)
    card["age_mix"] = age_mix_sentence(spec.model)
    return card


def _missed_cancers(tone: FairnessTable, bucket: str | None) -> dict | None:
    """Per tone bucket, the share of the test photos of a malignant class whose top answer was a benign class
    (the report's ``fnr``, with its interval), and overall; ``None`` when the report has no such figure (a
    task without malignant classes). The answer is one class; these are the cancers it alone would miss."""
    from skin.tone import TONE_BUCKETS

    if tone.overall.get("fnr") is None:
        return None
    rows = [{"bucket": b, "is_user": b == bucket, **_cell(tone.groups[b], "fnr")}
            for b in TONE_BUCKETS if b in tone.groups]
    return {"rows": rows, "overall": _cell(tone.overall, "fnr")}


def _tone_table(report: RunReport) -> tuple[str | None, FairnessTable | None]:
    """The report's table by labelled skin tone, else by estimated tone: ``(attribute, table)``, or ``(None, None)``."""
    for attr in (TONE_ATTRIBUTE, ESTIMATED_TONE_ATTRIBUTE):
        table = report.fairness.get(attr)
        if table is not None and any(g in table.groups for g in ("light", "medium", "dark")):
            return attr, table
    return None, None


def _tone_rows(tone: FairnessTable, metric: str, bucket: str | None) -> list[dict]:
    """One row per tone bucket, in :data:`skin.tone.TONE_BUCKETS` order, unmeasured ones included."""
    from skin.tone import TONE_BUCKETS

    rows = []
    for b in TONE_BUCKETS:
        group = tone.groups.get(b)
        row = {"bucket": b, "is_user": b == bucket, "n": 0, "value": None, "ci_low": None, "ci_high": None,
               "small": True}
        if group is not None:
            row.update(_cell(group, metric))
            row["small"] = group.small if group.small is not None else row["n"] < tone.min_group_size
        rows.append(row)
    return rows


def _add_served_confidence(rows: list[dict], report: RunReport) -> None:
    """Give each row ``confidence``: how confident the served answers (the photo alone, calibrated) were on
    that bucket's test photos and how often they were right (``None`` when the report did not measure it),
    so that "answers given with 80 % were right about 80 % of the time" can be checked per tone."""
    served = (report.calibration.get("by_group") or {}).get(ESTIMATED_TONE_ATTRIBUTE) or {}
    for row in rows:
        c = served.get(row["bucket"])
        row["confidence"] = None if not c else {k: c[k] for k in ("n", "mean_confidence", "accuracy", "ece")}


def _tone_warnings(rows: list[dict], tone: FairnessTable, metric, bucket: str | None) -> list[str]:
    """What to read before trusting the rows: the visitor's bucket missing or thin, a large gap, absent buckets."""
    warnings = []
    if bucket:
        mine = next(r for r in rows if r["bucket"] == bucket)
        if mine["n"] == 0 or mine["value"] is None:
            warnings.append(f"not measured for {bucket} skin: the test set has no {bucket}-skin "
                            "images, so nobody knows how well this model works for you")
        elif mine["small"]:
            warnings.append(f"thin data for {bucket} skin: only {mine['n']} test images (fewer than "
                            f"{tone.min_group_size}), so the number below is very uncertain")
    # the gap between the buckets the card shows (measured, not thin), not the report's gap over every group,
    # which also counts images whose tone is unknown
    shown = [r for r in rows if r["value"] is not None and not r["small"]]
    if len(shown) >= 2:
        low, high = min(shown, key=lambda r: r["value"]), max(shown, key=lambda r: r["value"])
        gap, worst = high["value"] - low["value"], low if metric.greater_is_better else high
        if gap > metric.large_gap:
            warnings.append(f"large gap between skin tones: {metric.label} differs by {gap:.2f} "
                            f"(worst for {worst['bucket']} skin; threshold {metric.large_gap})")
    absent = [r["bucket"] for r in rows if r["n"] == 0]
    if absent and bucket not in absent:
        warnings.append(f"not measured for {', '.join(absent)} skin (no test images)")
    return warnings


def _cell(row: GroupMetrics, metric: str) -> dict:
    """``{"n", "value", "ci_low", "ci_high", "small"}`` of one group's ``metric`` (``None`` where not measured;
    ``small``: too few images for a reliable figure, as the report flagged it)."""
    ci = row.get(metric) or MetricCI(None)
    return {"n": row.n, "value": ci.value, "ci_low": ci.ci_low, "ci_high": ci.ci_high, "small": bool(row.small)}

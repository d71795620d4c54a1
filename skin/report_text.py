"""``python -m skin.evaluate``'s report as plain-text tables for a terminal (``--json`` gives the data).

Every figure of the report is shown, none cut off: the metrics, the images
skipped, the per-class scores, one table per fairness attribute (each metric
with its interval, small groups marked) and the malignancy audit.
"""

from __future__ import annotations

from skin.model_card import fmt as _num
from skin.reports import EvalReport, FairnessTable, MetricCI


def _cell(ci: MetricCI | None) -> str:
    """``0.474 [0.41, 0.53]``; the value alone without an interval."""
    if ci is None or ci.value is None:
        return "n/a"
    return f"{ci.value:.3f} [{ci.ci_low:.2f}, {ci.ci_high:.2f}]" if ci.has_ci else f"{ci.value:.3f}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Left-aligned columns separated by two spaces, a rule under the header."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def fairness_lines(table_: FairnessTable) -> list[str]:
    metrics = list(table_.overall.metrics)
    rows = [[group, str(row.n), *(_cell(row.get(m)) for m in metrics), "small" if row.small else ""]
            for group, row in table_.groups.items()]
    rows.append(["overall", str(table_.overall.n), *(_cell(table_.overall.get(m)) for m in metrics), ""])
    if table_.n_boot and table_.ci_quantiles:
        low, high = table_.ci_quantiles
        how = (f"value [{low * 100:g}-{high * 100:g} % interval over {table_.n_boot} resamples of "
               f"{table_.ci_resampling}]")
    else:
        how = "no intervals"
    return [f"fairness by {table_.attribute} ({how}; groups under {table_.min_group_size} marked small):",
            *table([table_.attribute, "n", *metrics, ""], rows)]


def render(report: EvalReport) -> str:
    lines = [f"{report.model} on {report.dataset} ({report.split} split): {report.n} images"
             + (", test-time flips" if report.tta else "")]
    for reason, count in report.skipped.items():
        lines.append(f"skipped {count}: {reason}")
    result = report.result
    if result is not None:
        flat = {k: v for k, v in result.metrics.items() if isinstance(v, (int, float)) and k != "n"}
        lines += ["", *table(["metric", "value"], [[k, _num(v)] for k, v in flat.items()])]
        per_class = result.metrics.get("per_class") or {}
        if per_class:
            rows = [[label, str(s.get("support", "")), _num(s.get("precision")), _num(s.get("recall")),
                     _num(s.get("f1"))] for label, s in per_class.items()]
            lines += ["", *table(["class", "n", "precision", "recall", "f1"], rows)]
        for attr_table in result.fairness.values():
            lines += ["", *fairness_lines(attr_table)]
    audit = report.malignancy
    if audit is not None:
        rows = [["all", str(audit.overall.n), str(audit.overall.n_malignant), _cell(audit.overall.auc)]]
        rows += [[f"Fitzpatrick {g}", str(r.n), str(r.n_malignant), _cell(r.auc)] for g, r in audit.by_fst.items()]
        rows += [[f"estimated tone {g}", str(r.n), str(r.n_malignant), _cell(r.auc)]
                 for g, r in audit.by_tone_estimated.items()]
        lines += ["", f"malignancy ROC-AUC of the summed malignant probability ({audit.n_boot} resamples of "
                      f"{audit.ci_resampling}):", *table(["group", "n", "malignant", "ROC-AUC [interval]"], rows)]
    return "\n".join(lines)

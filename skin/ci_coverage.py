"""How often a model's fairness-table intervals held the value they estimate, where that was measured.

Every report gives each group's metrics with a 95 % percentile bootstrap
interval over whole clusters (:func:`skin.fairness.fairness_report`). Whether
such an interval holds the true value 95 % of the time depends on the data:
how many clusters each class has, how large the group is.
``bench/fairness_ci_coverage.py --record`` measures it for one model by a
double bootstrap on the model's own held-out answers and writes that model's
entry in ``skin/ci_coverage.json``, under its reference (``default:clinical``:
a coverage belongs to the model whose answers were resampled, not to its
task). The app's fairness card (and ``/fairness``) states it under the table,
and so does the Hub card ``python -m skin.hub export`` writes for that model;
both say so where a model was not checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from skin.records import RecordFile

CI_COVERAGE_PATH = Path(__file__).with_name("ci_coverage.json")
CI_COVERAGE_SCHEMA = 1
#: What a card says for a model whose intervals were not checked.
NOT_CHECKED = "How often these intervals hold the true value has not been checked for this model."
#: How the sentence names a metric where its name with spaces would not say it plainly.
METRIC_WORDS = {"mae": "mean absolute error", "group_accuracy": "age-group accuracy"}


@dataclass(frozen=True)
class CICoverage:
    """One model's measured coverage: the share of ``trials`` simulated test sets in which the shipped
    ``nominal`` interval of each metric held the population's value, per group (overall and each tone
    bucket)."""

    task: str
    model: str
    trials: int
    nominal: float
    #: metric name → group → coverage
    coverage: dict[str, dict[str, float]]

    def sentence(self) -> str:
        """One line for a card: the range of coverage over the groups, per metric."""
        def span(values) -> str:
            low, high = f"{min(values):.0%}", f"{max(values):.0%}"
            return low if low == high else f"{low}–{high}"

        parts = [f"{span(g.values())} of the time for {METRIC_WORDS.get(metric, metric.replace('_', ' '))}"
                 for metric, g in self.coverage.items() if g]
        return (f"How far to trust the intervals: in {self.trials} test sets simulated from this model's own "
                f"held-out photos, its {self.nominal:.0%} intervals held the true value {' and '.join(parts)} "
                "(overall and per tone bucket).")


RECORDS = RecordFile(CI_COVERAGE_PATH, CICoverage, CI_COVERAGE_SCHEMA, "bench/fairness_ci_coverage.py --record",
                     "coverage")


def read_ci_coverage(path=CI_COVERAGE_PATH) -> dict[str, CICoverage]:
    """Every recorded model's :class:`CICoverage`, by model reference (``{}`` when the file does not exist)."""
    return RECORDS.at(path).read()


def record_ci_coverage(entry: CICoverage, path=CI_COVERAGE_PATH) -> None:
    """Write ``entry`` as its model's record, keeping the other models' (the file stays small and diffable)."""
    RECORDS.at(path).record(entry)


def coverage_sentence(model: str, path=CI_COVERAGE_PATH) -> str:
    """The card's line for model ``model`` (its reference in ``skinlens.yaml``): its measured coverage, or
    :data:`NOT_CHECKED`."""
    entry = RECORDS.at(path).get(model)
    return NOT_CHECKED if entry is None else entry.sentence()

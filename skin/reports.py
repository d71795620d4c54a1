"""Typed reports: what evaluation writes and what plots, model cards and the app read.

Results travel between modules as these dataclasses, not as nested dicts that
each reader parses its own way. Each has ``to_dict`` (the JSON layout of
``report.json`` and of ``python -m skin.evaluate --json``) and ``from_dict``
(which reads that layout back, including the committed ``models/*/report.json``).

* :class:`MetricCI`: a value with its bootstrap interval (``None`` where
  undefined or not computed).
* :class:`GroupMetrics`: one row of a fairness table: a group's size, its
  small-group flag and its metrics.
* :class:`FairnessTable`: one sensitive attribute: its groups, the overall
  row and the largest gap per metric; :class:`FairnessReport` maps attribute
  names to tables.
* :class:`MalignancyAudit`: malignant-vs-benign ROC-AUC overall and per
  Fitzpatrick group (the DDI audit).
* :class:`SplitReport` (one split's metrics and fairness), :class:`EvalReport`
  (``skin.evaluate``'s output) and :class:`RunReport` (a training run's
  ``report.json``).

:func:`to_jsonable` is the one JSON encoder: numpy scalars and arrays,
tensors, enums, paths and dataclasses become plain JSON values, and NaN / inf
become ``None`` so that every file is strict JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum
from pathlib import PurePath
from typing import Any

from skin.tasks import TaskKind

#: Quantiles of the percentile bootstrap intervals (a 95 % interval).
CI_QUANTILES = (0.025, 0.975)


# --------------------------------------------------------------------------- #
# The JSON encoder
# --------------------------------------------------------------------------- #
def to_jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON types: ``dict`` (string keys), ``list``, ``str``,
    ``int``, ``float``, ``bool``, ``None``.

    Objects with ``to_dict`` use it; other dataclasses become a dict of their
    fields; numpy / torch values go through ``tolist()``; enums become their
    value and paths a string; non-finite floats become ``None``. Anything else
    is a ``TypeError`` (no silent ``str()``).
    """
    if obj is None or isinstance(obj, (str, bool)):
        return obj.value if isinstance(obj, Enum) else obj
    if isinstance(obj, Enum):
        return to_jsonable(obj.value)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "to_dict") and not isinstance(obj, type):
        return to_jsonable(obj.to_dict())
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, PurePath):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy scalars and arrays, torch tensors
        return to_jsonable(obj.tolist())
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable; give it a to_dict()")


def dump_json(obj: Any, path, **kwargs) -> None:
    """Write ``obj`` (through :func:`to_jsonable`) as strict JSON, indented."""
    with open(path, "w") as f:
        json.dump(to_jsonable(obj), f, indent=2, allow_nan=False, **kwargs)


def _num(v) -> float | None:
    """A finite float or ``None`` (report values may be missing, ``None`` or NaN)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


# --------------------------------------------------------------------------- #
# A metric with its interval, and a group's row
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class MetricCI:
    """A metric's point estimate and bootstrap interval (``None`` = undefined / not computed)."""

    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None

    def __post_init__(self):
        for name in ("value", "ci_low", "ci_high"):
            object.__setattr__(self, name, _num(to_jsonable(getattr(self, name))))

    @property
    def has_ci(self) -> bool:
        return self.ci_low is not None and self.ci_high is not None

    def to_dict(self) -> dict:
        return {"value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high}

    @classmethod
    def from_dict(cls, d) -> MetricCI:
        """From ``{"value", "ci_low", "ci_high"}`` or a bare number (no interval)."""
        if isinstance(d, Mapping):
            return cls(d.get("value"), d.get("ci_low"), d.get("ci_high"))
        return cls(d)


_ROW_KEYS = ("n", "small", "n_malignant")


@dataclass(frozen=True)
class GroupMetrics:
    """One group's row: size, small-group flag (``None`` for an overall row) and metrics."""

    n: int
    metrics: dict[str, MetricCI]
    small: bool | None = None

    def __getitem__(self, metric: str) -> MetricCI:
        return self.metrics[metric]

    def get(self, metric: str) -> MetricCI | None:
        return self.metrics.get(metric)

    def to_dict(self) -> dict:
        head = {"n": int(self.n)} if self.small is None else {"n": int(self.n), "small": bool(self.small)}
        return {**head, **{m: ci.to_dict() for m, ci in self.metrics.items()}}

    @classmethod
    def from_dict(cls, d: Mapping) -> GroupMetrics:
        """Nested ``metric: {"value", "ci_low", "ci_high"}`` entries; flat ones
        (``metric``, ``metric_ci_low``, ``metric_ci_high``) are read too."""
        metrics = {}
        for key, v in d.items():
            if key in _ROW_KEYS or key.endswith(("_ci_low", "_ci_high")):
                continue
            if isinstance(v, Mapping):
                metrics[key] = MetricCI.from_dict(v)
            else:
                metrics[key] = MetricCI(v, d.get(f"{key}_ci_low"), d.get(f"{key}_ci_high"))
        small = d.get("small")
        return cls(n=int(d.get("n") or 0), metrics=metrics, small=None if small is None else bool(small))


@dataclass(frozen=True)
class Gap:
    """The largest difference of a metric between two (not small) groups."""

    value: float
    min_group: str
    max_group: str

    def worst(self, greater_is_better: bool) -> str:
        return self.min_group if greater_is_better else self.max_group


# --------------------------------------------------------------------------- #
# Fairness
# --------------------------------------------------------------------------- #
def _resampling_entry(ci_resampling: str | None) -> dict:
    """The ``ci_resampling`` entry of a table's JSON, written only where it is news: every report
    written before clusters could be resampled resampled images (or computed no interval)."""
    return {"ci_resampling": ci_resampling} if ci_resampling not in ("images", None) else {}


def _read_resampling(d: Mapping) -> str | None:
    """``ci_resampling`` of a table's JSON: as written, else images where intervals were computed."""
    return d.get("ci_resampling", "images" if d.get("n_boot") else None)


@dataclass(frozen=True)
class FairnessTable:
    """Per-group metrics for one sensitive attribute (see :func:`skin.fairness.fairness_report`)."""

    attribute: str
    groups: dict[str, GroupMetrics]
    overall: GroupMetrics
    gaps: dict[str, Gap | None]
    min_group_size: int
    n_boot: int
    ci_quantiles: tuple[float, float] | None = CI_QUANTILES
    #: what the bootstrap resampled: "images", "clusters" (the dataset's group ids), None without intervals
    ci_resampling: str | None = "images"

    @property
    def metric_names(self) -> list[str]:
        return list(self.overall.metrics)

    def to_dict(self) -> dict:
        return {
            "groups": {g: row.to_dict() for g, row in self.groups.items()},
            "overall": self.overall.to_dict(),
            "largest_gap": {m: None if gap is None else gap.value for m, gap in self.gaps.items()},
            "largest_gap_groups": {m: None if gap is None else {"min": gap.min_group, "max": gap.max_group}
                                   for m, gap in self.gaps.items()},
            "min_group_size": int(self.min_group_size),
            "n_boot": int(self.n_boot),
            "ci_quantiles": None if self.ci_quantiles is None else list(self.ci_quantiles),
            **_resampling_entry(self.ci_resampling),
        }

    @classmethod
    def from_dict(cls, attribute: str, d: Mapping) -> FairnessTable:
        values, ends = d.get("largest_gap") or {}, d.get("largest_gap_groups") or {}
        gaps = {}
        for m, v in values.items():
            e = ends.get(m)
            gaps[m] = Gap(float(v), str(e["min"]), str(e["max"])) if _num(v) is not None and e else None
        q = d.get("ci_quantiles")
        return cls(
            attribute=attribute,
            groups={str(g): GroupMetrics.from_dict(row) for g, row in (d.get("groups") or {}).items()},
            overall=GroupMetrics.from_dict(d.get("overall") or {}),
            gaps=gaps,
            min_group_size=int(d.get("min_group_size", 30)),
            n_boot=int(d.get("n_boot") or 0),
            ci_quantiles=None if q is None else (float(q[0]), float(q[1])),
            ci_resampling=_read_resampling(d),
        )


@dataclass(frozen=True)
class FairnessReport(Mapping):
    """``{attribute: FairnessTable}``, in the order the attributes were given."""

    tables: dict[str, FairnessTable] = field(default_factory=dict)

    def __getitem__(self, attribute: str) -> FairnessTable:
        return self.tables[attribute]

    def __iter__(self) -> Iterator[str]:
        return iter(self.tables)

    def __len__(self) -> int:
        return len(self.tables)

    def to_dict(self) -> dict:
        return {a: t.to_dict() for a, t in self.tables.items()}

    @classmethod
    def from_dict(cls, d: Mapping | None) -> FairnessReport:
        return cls({str(a): FairnessTable.from_dict(str(a), t) for a, t in (d or {}).items()})


# --------------------------------------------------------------------------- #
# DDI malignancy audit
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class AUCRow:
    """Malignant-vs-benign ROC-AUC of one set of images, with its interval."""

    n: int
    n_malignant: int
    auc: MetricCI

    def to_dict(self) -> dict:
        return {"n": int(self.n), "n_malignant": int(self.n_malignant), "malignancy_auc": self.auc.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping) -> AUCRow:
        return cls(int(d["n"]), int(d["n_malignant"]), MetricCI.from_dict(d["malignancy_auc"]))


@dataclass(frozen=True)
class MalignancyAudit:
    """The DDI audit: ROC-AUC of the summed malignant probability, overall, per Fitzpatrick group
    (``"unknown"`` where a set has no Fitzpatrick labels) and per estimated tone bucket (the tone
    every builder estimates from the pixels; empty for a set without it)."""

    overall: AUCRow
    by_fst: dict[str, AUCRow]
    n_boot: int
    ci_quantiles: tuple[float, float] | None = CI_QUANTILES
    #: what the bootstrap resampled (as :attr:`FairnessTable.ci_resampling`)
    ci_resampling: str | None = "images"
    by_tone_estimated: dict[str, AUCRow] = field(default_factory=dict)

    def to_dict(self) -> dict:
        tone = {"malignancy_by_tone_estimated": {g: row.to_dict() for g, row in self.by_tone_estimated.items()}}
        return {
            "malignancy_auc": self.overall.auc.to_dict(),
            "n_malignant": int(self.overall.n_malignant),
            "malignancy_by_fst": {g: row.to_dict() for g, row in self.by_fst.items()},
            **(tone if self.by_tone_estimated else {}),
            "n_boot": int(self.n_boot),
            "ci_quantiles": None if self.ci_quantiles is None else list(self.ci_quantiles),
            **_resampling_entry(self.ci_resampling),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> MalignancyAudit:
        by_fst = {str(g): AUCRow.from_dict(r) for g, r in d["malignancy_by_fst"].items()}
        by_tone = {str(g): AUCRow.from_dict(r) for g, r in (d.get("malignancy_by_tone_estimated") or {}).items()}
        n = sum(r.n for r in by_fst.values())
        q = d.get("ci_quantiles")
        return cls(AUCRow(int(d.get("n", n)), int(d["n_malignant"]), MetricCI.from_dict(d["malignancy_auc"])),
                   by_fst, int(d.get("n_boot") or 0), None if q is None else (float(q[0]), float(q[1])),
                   _read_resampling(d), by_tone)


# --------------------------------------------------------------------------- #
# Split, evaluation and run reports
# --------------------------------------------------------------------------- #
def scalar_metrics(metrics: Mapping) -> dict[str, float]:
    """The numeric top-level entries of a flat metrics dict (no ``n``, matrices or per-class tables)."""
    return {k: float(v) for k, v in metrics.items()
            if k != "n" and not isinstance(v, bool) and isinstance(v, (int, float))}


@dataclass(frozen=True)
class SplitReport:
    """One split's flat task metrics (``n``, accuracy, ..., ``ece``; see :mod:`skin.metrics`) and fairness."""

    metrics: dict[str, Any]
    fairness: FairnessReport = field(default_factory=FairnessReport)

    def to_dict(self) -> dict:
        out = dict(self.metrics)
        if self.fairness:
            out["fairness"] = self.fairness.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> SplitReport:
        return cls({k: v for k, v in d.items() if k != "fairness"}, FairnessReport.from_dict(d.get("fairness")))


@dataclass(frozen=True)
class EvalReport:
    """``python -m skin.evaluate``'s report: a model on one split of a dataset."""

    model: str
    dataset: str
    split: str
    n: int
    tta: bool = False
    result: SplitReport | None = None
    malignancy: MalignancyAudit | None = None
    #: images under the folder left out, per kind of reason (e.g. a condition the model's grouping lacks)
    skipped: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = {"model": self.model, "dataset": self.dataset, "split": self.split, "n": int(self.n), "tta": self.tta,
               "n_skipped": sum(self.skipped.values()), "skipped": dict(self.skipped)}
        if self.result is not None:
            out.update(self.result.to_dict())
        if self.malignancy is not None:
            out.update(self.malignancy.to_dict())
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> EvalReport:
        audit = MalignancyAudit.from_dict(d) if "malignancy_by_fst" in d else None
        rest = {k: v for k, v in d.items() if k not in ("model", "dataset", "split", "tta", "n_skipped", "skipped")}
        return cls(str(d["model"]), str(d["dataset"]), str(d["split"]), int(d["n"]), bool(d.get("tta")),
                   None if audit else SplitReport.from_dict(rest), audit,
                   {str(k): int(v) for k, v in d.get("skipped", {}).items()})


@dataclass
class RunReport:
    """A training run's ``report.json`` (also stored beside each embedded model).

    ``test`` / ``validation`` are flat metric dicts (see :class:`SplitReport`);
    ``calibration`` is :func:`skin.calibration.calibration_summary`'s dict.
    Keys this class does not know are kept in ``extra`` and written back.
    """

    task: str
    kind: TaskKind
    dataset: str
    labels: list[str]
    backbone: str
    mode: str
    trainable_parameters: int | None = None
    total_parameters: int | None = None
    splits: dict[str, int] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    test: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    fairness: FairnessReport = field(default_factory=FairnessReport)
    tta: bool = False
    world_size: int | None = None
    train_runtime_s: float | None = None
    wall_time_s: float | None = None
    figures: dict[str, str] = field(default_factory=dict)
    exported: dict[str, str] = field(default_factory=dict)
    command: str = ""
    #: :func:`skin.commands.run_environment`: commit and library versions ({} for runs that predate it)
    environment: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.kind = TaskKind(self.kind)

    @property
    def test_scalars(self) -> dict[str, float]:
        return scalar_metrics(self.test)

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        out["kind"] = self.kind.value
        out["fairness"] = self.fairness.to_dict()
        if not self.environment:  # a run that predates the record: its report.json stays as it was written
            del out["environment"]
        return to_jsonable({**out, **self.extra})

    @classmethod
    def from_dict(cls, d: Mapping) -> RunReport:
        known = {f.name for f in fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in d.items() if k in known}
        kwargs["fairness"] = FairnessReport.from_dict(d.get("fairness"))
        return cls(**kwargs, extra={k: v for k, v in d.items() if k not in known})

    @classmethod
    def read(cls, path) -> RunReport:
        with open(path) as f:
            return cls.from_dict(json.load(f))

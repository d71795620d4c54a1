"""How far an attribution map can be trusted, and the file that stores it beside each model.

Measures: :func:`deletion_insertion` (Petsiuk et al. 2018, RISE) and
:func:`randomization_check` (Adebayo et al. 2018, "Sanity Checks for Saliency
Maps"). ``bench/bench_explain.py`` runs them on a model and writes
``<model folder>/faithfulness.json`` (:data:`FAITHFULNESS_FILE`, schema
:data:`SCHEMA_VERSION`): per method, the deletion AUC, the insertion AUC and
their difference (:func:`faithfulness_score`), each the mean over the images
with a percentile-bootstrap interval over images (a
:class:`skin.reports.MetricCI`). The app reads that file with
:func:`load_faithfulness` and shows the score beside each method.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from skin.explain.baselines import make_baseline
from skin.explain.common import ModelForward, as_batch, check_target, eval_mode, module_name
from skin.explain.methods import METHODS, explain
from skin.reports import CI_QUANTILES, MetricCI, dump_json

FAITHFULNESS_FILE = "faithfulness.json"
SCHEMA_VERSION = 1
#: How deletion / insertion is measured unless asked otherwise (and recorded in the file).
DELETION_STEPS = 20
DELETION_BASELINE = "blur"


# --------------------------------------------------------------------------- deletion / insertion


@dataclass(frozen=True)
class DeletionInsertion:
    """Deletion and insertion curves (probability of the target, or the readout's output, at each
    ``fraction`` of pixels removed / restored) and their areas; lower deletion and higher insertion
    AUC = more faithful."""

    deletion_auc: float
    insertion_auc: float
    fraction: list[float]
    deletion: list[float]
    insertion: list[float]


def _pixel_order(attribution: torch.Tensor, seed: int) -> torch.Tensor:
    """Rank of every pixel by decreasing attribution, ties broken at random
    (seeded), so flat regions of a map are not removed in raster order."""
    flat = attribution.flatten().double()
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(flat.numel(), generator=g)
    order = perm[torch.argsort(flat[perm], descending=True, stable=True)]
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel())
    return rank


def deletion_insertion(
    model: nn.Module,
    pixel_values: torch.Tensor,
    attribution: np.ndarray | torch.Tensor,
    target: int,
    steps: int = DELETION_STEPS,
    baseline: str = DELETION_BASELINE,
    *,
    batch_size: int | None = None,
    seed: int = 0,
    blur_sigma: float | None = None,
    readout: nn.Module | None = None,
) -> DeletionInsertion:
    """Deletion and insertion curves and AUCs (Petsiuk et al. 2018, RISE).

    Pixels (all channels together) are taken in order of decreasing
    attribution, ``1/steps`` of the image at a time. *Deletion* replaces them
    with the baseline starting from the image; *insertion* puts them back
    starting from the baseline. Each curve is the softmax probability of
    ``target`` at ``steps + 1`` points; the AUC is its trapezoidal mean over
    the fraction of pixels in ``[0, 1]``. ``baseline``: ``"blur"`` (the RISE
    insertion canvas, used for both curves here, so removing a pixel never adds
    an out-of-distribution edge) or ``"zero"`` (normalised zero, the mean
    colour). Forward passes run ``batch_size`` images at a time (default: one curve).
    ``readout`` (as in :func:`~skin.explain.explain`): the curves follow its output
    ``target`` in its own unit (the age estimate in years) instead of a class probability.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if baseline not in ("blur", "zero"):
        raise ValueError(f"baseline must be 'blur' or 'zero', got {baseline!r}")
    x = as_batch(pixel_values)
    h, w = x.shape[-2:]
    a = torch.as_tensor(np.asarray(attribution, dtype=np.float32))
    if a.ndim != 2:
        raise ValueError(f"attribution must be an H x W map, got shape {tuple(a.shape)}")
    if tuple(a.shape) != (h, w):
        a = F.interpolate(a[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    rank = _pixel_order(a, seed).view(1, 1, h, w).to(x.device)
    counts = torch.tensor([round(k * h * w / steps) for k in range(steps + 1)], device=x.device)
    masks = rank < counts.view(-1, 1, 1, 1)  # (steps + 1, 1, H, W)
    base = make_baseline(x, baseline, blur_sigma=blur_sigma)
    forward = ModelForward(model, readout)
    bs = batch_size or steps + 1

    def score(out: torch.Tensor) -> torch.Tensor:
        return (out.float() if readout is not None else out.float().softmax(-1))[:, target]

    def curve(images: torch.Tensor) -> list[float]:
        return torch.cat([score(forward(images[i : i + bs])) for i in range(0, len(images), bs)]).cpu().tolist()

    with eval_mode(model), torch.no_grad():
        target = check_target(forward(x).shape[-1], int(target))
        deletion = curve(torch.where(masks, base, x))
        insertion = curve(torch.where(masks, x, base))
    frac = [k / steps for k in range(steps + 1)]
    return DeletionInsertion(
        deletion_auc=float(np.trapezoid(deletion, frac)), insertion_auc=float(np.trapezoid(insertion, frac)),
        fraction=frac, deletion=deletion, insertion=insertion,
    )


def faithfulness_score(result: DeletionInsertion) -> float:
    """One number from :func:`deletion_insertion`: insertion AUC - deletion AUC
    (in ``[-1, 1]``; higher = more faithful)."""
    return result.insertion_auc - result.deletion_auc


# --------------------------------------------------------------------------- randomisation


def randomize_weights(model: nn.Module, cascade: int | None = None, seed: int = 2018) -> nn.Module:
    """A copy of ``model`` with re-initialised weights (Adebayo et al. 2018).

    ``cascade=None`` re-initialises every module (full randomisation);
    ``cascade=k`` only the last ``k`` parametrised modules in registration
    order (the classifier first, then down the network: cascading
    randomisation). Modules with ``reset_parameters`` use their own default
    initialiser; other parameters (position embeddings, CLS tokens, layer
    scales) get ``N(0, 0.02)``. The original is untouched.
    """
    clone = copy.deepcopy(model)
    modules = [m for m in clone.modules() if next(m.parameters(recurse=False), None) is not None]
    if cascade is not None:
        if cascade < 1:
            raise ValueError(f"cascade must be >= 1 (modules to randomise), got {cascade}")
        modules = modules[-cascade:]
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for m in modules:
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
            else:
                for p in m.parameters(recurse=False):
                    p.normal_(0.0, 0.02)
    return clone


def map_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps, pixel by pixel; 0 when either is constant
    (a constant map ranks nothing, so there is no agreement to measure)."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)


def randomization_check(
    model: nn.Module,
    pixel_values: torch.Tensor,
    method: str = "gradcam",
    target: int | None = None,
    *,
    cascade: int | None = None,
    absolute: bool = True,
    seed: int = 2018,
    **options: Any,
) -> float:
    """Model-parameter randomisation test (Adebayo et al. 2018).

    Spearman rank correlation between the map of ``model`` and of a copy with
    randomised weights (:func:`randomize_weights`), same image and target.
    A method *passes* when the correlation is low (the map depends on what the
    model learned, not only on the image); Adebayo et al. show gradient x
    input style maps can stay correlated. ``absolute`` compares ``|map|``
    (their default for signed methods). A constant map (e.g. Grad-CAM of a
    random model that is ReLU'd to all zeros) counts as 0 correlation.
    """
    x = as_batch(pixel_values)
    original = explain(model, x, target, method, **options)
    layer = options.get("layer")
    random_model = randomize_weights(model, cascade=cascade, seed=seed)
    if isinstance(layer, nn.Module):  # point the option at the copy's module
        options = {**options, "layer": random_model.get_submodule(module_name(model, layer))}
    randomized = explain(random_model, x, original.target, method, **options)
    a, b = original.attribution, randomized.attribution
    if absolute:
        a, b = np.abs(a), np.abs(b)
    return map_correlation(a, b)


# --------------------------------------------------------------------------- the faithfulness file


def _mean_ci(values: Sequence[float], seed: int = 0) -> MetricCI:
    """Mean of per-image ``values`` with a percentile-bootstrap interval over images
    (no interval from a single image)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0 or not np.isfinite(v).all():
        raise ValueError(f"need finite per-image values, got {list(values)}")
    if v.size < 2:
        return MetricCI(float(v.mean()))
    from scipy.stats import bootstrap

    level = CI_QUANTILES[1] - CI_QUANTILES[0]
    ci = bootstrap((v,), np.mean, method="percentile", confidence_level=level,
                   rng=np.random.default_rng(seed)).confidence_interval
    return MetricCI(float(v.mean()), float(ci.low), float(ci.high))


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _metric(d: Any, where: str) -> MetricCI:
    """A ``{value, ci_low, ci_high}`` entry of the file, checked: a finite value, and either
    no interval or ``ci_low <= ci_high``."""
    if not isinstance(d, Mapping) or not _finite(d.get("value")):
        raise ValueError(f"{where} must be {{value, ci_low, ci_high}} with a finite value, got {d!r}")
    low, high = d.get("ci_low"), d.get("ci_high")
    if not ((low is None and high is None) or (_finite(low) and _finite(high) and low <= high)):
        raise ValueError(f"{where}: ci_low and ci_high must be numbers with ci_low <= ci_high (or both null), "
                         f"got {d!r}")
    return MetricCI.from_dict(d)


@dataclass(frozen=True)
class MethodFaithfulness:
    """Deletion AUC, insertion AUC and their difference (the score) for one method."""

    deletion: MetricCI
    insertion: MetricCI
    score: MetricCI

    @classmethod
    def of(cls, deletion: Sequence[float], insertion: Sequence[float]) -> "MethodFaithfulness":
        """Summarise one method's deletion and insertion AUCs, one of each per image
        (the score is their difference image by image)."""
        if len(deletion) != len(insertion):
            raise ValueError(f"{len(deletion)} deletion AUCs but {len(insertion)} insertion AUCs")
        return cls(
            deletion=_mean_ci(deletion),
            insertion=_mean_ci(insertion),
            score=_mean_ci(np.subtract(insertion, deletion)),
        )


@dataclass(frozen=True)
class FaithfulnessReport:
    """The content of ``<model folder>/faithfulness.json``: which model was measured, on which
    images and how, and :class:`MethodFaithfulness` per method name of :data:`METHODS`."""

    model: str
    n_images: int
    methods: dict[str, MethodFaithfulness]
    images: list[str] = field(default_factory=list)
    input_size: list[int] = field(default_factory=list)
    baseline: str = DELETION_BASELINE
    steps: int = DELETION_STEPS
    measured_with: str = ""
    #: what the maps explained and the curves followed: the predicted class's probability, or a
    #: readout's output (``"age estimate"``, in ``unit``: the AUCs are then in that unit)
    target: str = "predicted class"
    unit: str = "probability"

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, d: Any, where: str = "faithfulness file") -> "FaithfulnessReport":
        if not isinstance(d, Mapping) or d.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"{where}: schema_version must be {SCHEMA_VERSION}; re-run bench/bench_explain.py")
        n = d.get("n_images")
        methods = d.get("methods")
        if not isinstance(n, int) or n < 1 or not isinstance(methods, Mapping):
            raise ValueError(f"{where}: needs n_images >= 1 and a 'methods' mapping")
        unknown = sorted(set(methods) - set(METHODS))
        if unknown:
            raise ValueError(f"{where}: unknown method(s) {unknown}; known: {', '.join(METHODS)}")
        parsed = {}
        for name, m in methods.items():
            if not isinstance(m, Mapping):
                raise ValueError(f"{where}: methods.{name} must be a mapping")
            parsed[name] = MethodFaithfulness(
                *(_metric(m.get(k), f"{where}: methods.{name}.{k}") for k in ("deletion", "insertion", "score")))
        extra = {k: d[k] for k in ("images", "input_size", "baseline", "steps", "measured_with", "target", "unit")
                 if k in d}
        return cls(model=str(d.get("model", "")), n_images=n, methods=parsed, **extra)


def write_faithfulness(model_dir: str | Path, report: FaithfulnessReport) -> Path:
    """Write ``report`` to ``model_dir/faithfulness.json``; returns the path."""
    path = Path(model_dir) / FAITHFULNESS_FILE
    dump_json(report.to_dict(), path)
    return path


def load_faithfulness(model_dir: str | Path) -> FaithfulnessReport | None:
    """The faithfulness measured for the model in ``model_dir`` (``None``: never measured).
    A file that does not follow the schema raises ``ValueError`` naming the problem."""
    path = Path(model_dir) / FAITHFULNESS_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    return FaithfulnessReport.from_dict(data, str(path))


def model_faithfulness(ref: str) -> FaithfulnessReport | None:
    """The faithfulness file of model ``ref`` (an embedded ``default:<name>`` or a checkpoint folder)."""
    from skin.hub import DEFAULTS, default_dir

    return load_faithfulness(default_dir(ref) if ref in DEFAULTS else ref)


def faithfulness_summary(report: FaithfulnessReport | None) -> dict[str, dict[str, Any]]:
    """``{method: {"text", "score", ...}}`` for every method of :data:`METHODS`, as the app shows
    it beside the method picker and in an explanation's details; ``"not measured"`` without a figure."""
    out: dict[str, dict[str, Any]] = {m: {"text": "not measured", "score": None} for m in METHODS}
    for name, m in (report.methods if report else {}).items():
        s, ins, dele = m.score.value, m.insertion.value, m.deletion.value
        unit = "" if report.unit == "probability" else f" {report.unit}"
        of = "" if report.target == "predicted class" else f" of the {report.target}"
        out[name] = {
            "text": f"{s:+.2f}{unit} (insertion − deletion AUC{of}; ins {ins:.2f}, del {dele:.2f})",
            "score": s, "score_ci": [m.score.ci_low, m.score.ci_high], "insertion_auc": ins,
            "deletion_auc": dele, "n_images": report.n_images,
        }
    return out


def picker_choices(summary: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """(label, method) pairs for a method picker, each label carrying the method's measured faithfulness
    from :func:`faithfulness_summary`."""
    return [(f"{m.label} — faithfulness: {summary[name]['text']}", name) for name, m in METHODS.items()]

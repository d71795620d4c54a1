import json

import numpy as np
import pytest

from skin.fairness import fairness_report
from skin.reports import FairnessReport, FairnessTable, MetricCI
from skin.tasks import TaskKind

N_BOOT = 40  # small for speed; the default (200) is for real reports


def _classification_data(seed=0, n=700):
    """Four classes; the 'dark' group is deliberately much worse (weak logits)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    tone = rng.choice(["light", "medium", "dark"], n, p=[0.45, 0.4, 0.15]).astype(object)
    tone[:12] = "dark"
    tone[rng.choice(np.arange(12, n), 15, replace=False)] = None  # unknown tone
    sex = rng.choice(["female", "male"], n).astype(object)
    sex[:8] = np.nan
    site = np.array(["clinic_a"] * (n - 10) + ["clinic_b"] * 10)  # a small group
    z = rng.normal(size=(n, 4))
    z[np.arange(n), y] += np.where(tone == "dark", 0.1, 3.0)
    p = np.exp(z)
    p /= p.sum(1, keepdims=True)
    return y, p, {"tone_bucket": tone, "sex": sex, "site": site}


@pytest.fixture(scope="module")
def typed_report():
    y, p, sens = _classification_data()
    return fairness_report(y, p, sens, malignant_classes=[0, 1], n_boot=N_BOOT, min_group_size=30)


@pytest.fixture(scope="module")
def report(typed_report):
    """The JSON layout written to report.json."""
    return typed_report.to_dict()


def test_typed_report_and_its_json_layout_agree(typed_report, report):
    assert isinstance(typed_report, FairnessReport) and isinstance(typed_report["sex"], FairnessTable)
    light = typed_report["tone_bucket"].groups["light"]
    assert isinstance(light["accuracy"], MetricCI) and light.small is False
    assert light["accuracy"].to_dict() == report["tone_bucket"]["groups"]["light"]["accuracy"]
    gap = typed_report["tone_bucket"].gaps["accuracy"]
    assert gap.min_group == "dark" and gap.worst(greater_is_better=True) == "dark"
    assert FairnessReport.from_dict(report) == typed_report


def test_structure_and_json(report):
    assert set(report) == {"tone_bucket", "sex", "site"}
    tone = report["tone_bucket"]
    assert list(tone["groups"]) == ["light", "medium", "dark", "unknown"]
    assert tone["groups"]["unknown"]["n"] == 15
    assert sum(g["n"] for g in tone["groups"].values()) == 700
    assert "unknown" in report["sex"]["groups"] and report["sex"]["groups"]["unknown"]["n"] == 8
    for metric in ("accuracy", "balanced_accuracy", "macro_f1", "ece", "fnr", "fpr", "malignant_auc"):
        assert set(tone["groups"]["light"][metric]) == {"value", "ci_low", "ci_high"}
        assert metric in tone["largest_gap"] and metric in tone["overall"]
    text = json.dumps(report, allow_nan=False)
    assert json.loads(text) == report


def test_gap_detected_on_the_worse_group(report):
    tone = report["tone_bucket"]
    acc = {g: e["accuracy"]["value"] for g, e in tone["groups"].items()}
    assert acc["dark"] < acc["light"] - 0.3 and acc["dark"] < acc["medium"] - 0.3
    assert tone["largest_gap"]["accuracy"] > 0.3
    assert tone["largest_gap_groups"]["accuracy"]["min"] == "dark"
    assert tone["groups"]["dark"]["fnr"]["value"] > tone["groups"]["light"]["fnr"]["value"]
    assert tone["largest_gap_groups"]["fnr"]["max"] == "dark"
    # sex is unrelated to quality: its gap is much smaller than the tone gap
    assert report["sex"]["largest_gap"]["accuracy"] < 0.15


def test_cis_contain_the_point_estimate(report):
    for attr in report.values():
        for g, entry in attr["groups"].items():
            for metric in ("accuracy", "balanced_accuracy", "macro_f1", "fnr", "fpr"):
                m = entry[metric]
                if m["value"] is None or entry["small"]:
                    continue
                assert m["ci_low"] <= m["value"] <= m["ci_high"], (g, metric, m)


def test_small_groups_flagged_and_left_out_of_gap(report):
    site = report["site"]
    assert site["groups"]["clinic_b"]["small"] is True
    assert site["groups"]["clinic_a"]["small"] is False
    assert site["largest_gap"]["accuracy"] is None  # only one group is large enough
    tone = report["tone_bucket"]
    assert tone["groups"]["unknown"]["small"] is True
    assert "unknown" not in tone["largest_gap_groups"]["accuracy"].values()


def test_ordinal_task_with_grades_and_probs():
    rng = np.random.default_rng(3)
    n = 300
    y = rng.integers(0, 5, n)
    sex = rng.choice(["female", "male"], n)
    pred = np.clip(y + np.where(sex == "male", rng.integers(-2, 3, n), 0), 0, 4)
    out = fairness_report(y, pred, {"sex": sex}, kind="ordinal", n_boot=20).to_dict()
    groups = out["sex"]["groups"]
    assert groups["female"]["mae"]["value"] == 0 and groups["female"]["accuracy"]["value"] == 1
    assert out["sex"]["largest_gap"]["mae"] > 0.5
    assert "ece" not in groups["female"]
    assert groups["female"]["balanced_accuracy"]["value"] == 1
    out = fairness_report(y, np.eye(5)[pred], {"sex": sex}, kind="ordinal", n_boot=20).to_dict()
    assert "ece" in out["sex"]["groups"]["female"]
    json.dumps(out, allow_nan=False)


def test_age_task_with_ages_probabilities():
    rng = np.random.default_rng(4)
    n = 200
    age = rng.integers(1, 90, n).astype(float)
    race = rng.choice(["0", "1"], n)
    pred = age + np.where(race == "1", 20.0, 1.0)
    out = fairness_report(age, pred, {"race": race}, kind=TaskKind.AGE, n_boot=20).to_dict()
    g = out["race"]["groups"]
    assert g["0"]["mae"]["value"] == pytest.approx(1.0)
    assert g["1"]["mae"]["value"] == pytest.approx(20.0)
    assert out["race"]["largest_gap"]["mae"] == pytest.approx(19.0)
    assert g["0"]["group_accuracy"]["value"] > g["1"]["group_accuracy"]["value"]
    ages = np.arange(0, 111)
    probs = np.eye(111)[pred.astype(int)]
    out2 = fairness_report(age, probs, {"race": race}, kind=TaskKind.AGE, ages=ages, n_boot=20)
    assert out2["race"].groups["1"]["mae"].value == pytest.approx(20.0)
    with pytest.raises(ValueError, match="ages="):
        fairness_report(age, probs, {"race": race}, kind=TaskKind.AGE, n_boot=5)


def test_bootstrap_is_reproducible():
    y, p, sens = _classification_data(seed=5, n=200)
    a = fairness_report(y, p, {"sex": sens["sex"]}, n_boot=10, random_state=7)
    b = fairness_report(y, p, {"sex": sens["sex"]}, n_boot=10, random_state=7)
    assert a == b


def test_bad_input_raises():
    y, p, sens = _classification_data(n=50)
    with pytest.raises(ValueError, match="kind must be one of"):
        fairness_report(y, p, sens, kind="regression")
    with pytest.raises(ValueError, match="non-empty dict"):
        fairness_report(y, p, {})
    with pytest.raises(ValueError, match="values but there are"):
        fairness_report(y, p, {"sex": ["male"]})
    with pytest.raises(ValueError, match="out of range"):
        fairness_report(y, p, sens, malignant_classes=[7])
    with pytest.raises(ValueError, match="classification.* only"):
        fairness_report(y, p.argmax(1), sens, kind="ordinal", malignant_classes=[0])


def test_n_boot_zero_skips_the_bootstrap():
    y, p, sens = _classification_data(seed=6, n=150)
    out = fairness_report(y, p, {"tone_bucket": sens["tone_bucket"]}, n_boot=0).to_dict()
    light = out["tone_bucket"]["groups"]["light"]["accuracy"]
    assert light["value"] is not None and light["ci_low"] is None and light["ci_high"] is None
    assert out["tone_bucket"]["overall"]["accuracy"]["ci_low"] is None
    assert out["tone_bucket"]["ci_quantiles"] is None
    json.dumps(out, allow_nan=False)
    with pytest.raises(ValueError, match="n_boot"):
        fairness_report(y, p, sens, n_boot=-1)


def _cells(table: FairnessTable) -> dict:
    rows = {**table.groups, "overall": table.overall}
    return {(g, m): (c.value, c.ci_low, c.ci_high) for g, row in rows.items() for m, c in row.metrics.items()}


def test_cluster_intervals_of_copied_photos_are_those_of_the_originals():
    # every photo copied four times into its own cluster: resampling clusters is resampling the originals
    y, p, sens = _classification_data(seed=3, n=240)
    ids = np.array([f"{i:04d}" for i in range(len(y))])
    tone = sens["tone_bucket"]
    kw = {"malignant_classes": [0, 1], "n_boot": 30, "min_group_size": 10}
    originals = fairness_report(y, p, {"tone_bucket": tone}, clusters=ids, **kw)["tone_bucket"]
    copies = fairness_report(np.repeat(y, 4), np.repeat(p, 4, axis=0), {"tone_bucket": np.repeat(tone, 4)},
                             clusters=np.repeat(ids, 4), **kw)["tone_bucket"]
    assert originals.ci_resampling == copies.ci_resampling == "clusters"
    a, b = _cells(originals), _cells(copies)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == pytest.approx(b[key], nan_ok=True), key
    # fairlearn's bootstrap takes the four copies for four independent photos: narrower intervals
    naive = fairness_report(np.repeat(y, 4), np.repeat(p, 4, axis=0), {"tone_bucket": np.repeat(tone, 4)},
                            **kw)["tone_bucket"]
    assert naive.ci_resampling == "images"
    width = lambda t: t.overall["accuracy"].ci_high - t.overall["accuracy"].ci_low  # noqa: E731
    assert width(copies) > 1.5 * width(naive)


def test_cluster_resampling_is_recorded_and_read_back():
    y, p, sens = _classification_data(seed=4, n=120)
    clusters = np.arange(len(y)) // 3
    out = fairness_report(y, p, {"sex": sens["sex"]}, n_boot=10, clusters=clusters)
    assert out.to_dict()["sex"]["ci_resampling"] == "clusters"
    assert FairnessReport.from_dict(json.loads(json.dumps(out.to_dict()))) == out
    plain = fairness_report(y, p, {"sex": sens["sex"]}, n_boot=10).to_dict()["sex"]
    assert "ci_resampling" not in plain  # the layout reports had before clusters could be resampled
    assert FairnessTable.from_dict("sex", plain).ci_resampling == "images"
    assert fairness_report(y, p, {"sex": sens["sex"]}, n_boot=0, clusters=clusters)["sex"].ci_resampling is None
    with pytest.raises(ValueError, match="one per sample"):
        fairness_report(y, p, {"sex": sens["sex"]}, n_boot=10, clusters=clusters[:5])


@pytest.mark.parametrize("kind", ["classification", "ordinal", "age"])
def test_resample_metrics_equal_a_metric_frame_of_each_resample(kind):
    """The cluster bootstrap's hand-written loop (fast: no MetricFrame per resample) computes what a
    MetricFrame of each resample gives, a group missing from a resample included (NaN)."""
    from fairlearn.metrics import MetricFrame

    from skin.fairness import _metric_functions, _prepare, _resample_stats
    from skin.metrics import bootstrap_indices

    rng = np.random.default_rng(3)
    n, c = 120, 5
    if kind == "age":
        y_true, probs = rng.uniform(1, 90, n), rng.uniform(1, 90, n)
    else:
        y_true, probs = rng.integers(0, c, n), rng.dirichlet(np.ones(c), n)
    malignant = [1, 3] if kind == "classification" else None
    y, y_pred = _prepare(TaskKind(kind), y_true, probs, None, malignant, None)
    metrics = _metric_functions(TaskKind(kind), y_pred, malignant, (0, 18, 40, 60))
    groups = np.asarray(rng.choice(["light", "medium", "dark"], n, p=[0.6, 0.37, 0.03]), dtype=object)
    clusters = np.asarray([str(i // 3) for i in range(n)])
    resamples = list(bootstrap_indices(n, 40, 0, groups=clusters))
    index = sorted(set(groups))
    assert any(not (groups[idx] == "dark").any() for idx in resamples)  # a resample without the small group
    stats_g, stats_o = _resample_stats(metrics, y, y_pred, groups, index, resamples)
    for r, idx in enumerate(resamples):
        frame = MetricFrame(metrics=metrics, y_true=y[idx], y_pred=y_pred[idx], sensitive_features={"g": groups[idx]})
        np.testing.assert_array_equal(stats_g[r], frame.by_group.reindex(index).to_numpy(dtype=float))
        np.testing.assert_array_equal(stats_o[r], frame.overall.to_numpy(dtype=float))


def test_coverage_bench_draws_test_sets_as_the_split_does_and_measures_the_shipped_intervals():
    """bench/fairness_ci_coverage.py: a trial keeps half of each class's clusters (fresh ids, so a cluster drawn
    twice counts twice), its percentile intervals are fairness_report's own, and scipy's intervals over the
    clusters hold the estimate."""
    from tests.bench_scripts import load_bench

    bench = load_bench("fairness_ci_coverage")
    rng = np.random.default_rng(5)
    clusters = np.repeat(np.arange(40), 3).astype(str)  # 40 clusters of 3 photos, one class each
    y = np.repeat(np.arange(40) % 4, 3)
    strata = bench.clusters_by_class(y, clusters)
    assert sorted(len(m) for m in strata.values()) == [10, 10, 10, 10]
    rows, ids = bench.draw_test_set(strata, rng)
    assert len(np.unique(ids)) == 4 * 5 and len(rows) == 3 * 4 * 5
    assert all(len(set(y[rows][ids == i])) == 1 for i in np.unique(ids))
    assert np.bincount(y[rows]).tolist() == [15, 15, 15, 15]

    probs = rng.dirichlet(np.ones(4), len(rows))
    tone = rng.choice(["light", "medium", "dark"], len(rows))
    yt, pt = y[rows], probs.argmax(1)
    resamples = list(bench.bootstrap_indices(len(yt), 50, 0, groups=ids))
    members = bench.group_members(ids)
    result = {}
    for g in bench.GROUPS:
        in_group = bench.group_mask(tone, g)
        result[g] = {name: bench.intervals(fn, yt, pt, in_group, resamples, resamples, members, 0)[1]
                     for name, fn in bench.CLASS_METRICS.items()}
    bench.shipped_check("classification", yt, probs, tone, ids, 50, 0, result)  # raises when they differ
    for g in bench.GROUPS:  # the other nominal levels: the same resamples, nested intervals, 95 % the shipped one
        for ivs in result[g].values():
            assert ivs["percentile at 95.0%"] == pytest.approx(ivs["percentile (shipped)"])
            bounds = [ivs[m] for m in bench.LEVEL_METHODS]
            assert all(lo2 <= lo1 <= hi1 <= hi2 for (lo1, hi1), (lo2, hi2) in zip(bounds, bounds[1:]))
    result["overall"]["accuracy"]["percentile (shipped)"] = (0.0, 1.0)
    with pytest.raises(RuntimeError, match="not the report's"):
        bench.shipped_check("classification", yt, probs, tone, ids, 50, 0, result)

    ages = rng.integers(0, 90, len(rows))  # the age model's check: MAE and age-group accuracy of predicted ages
    guess = np.clip(ages + rng.normal(0, 6, len(rows)), 0, 100)
    result = {g: {name: bench.intervals(fn, ages, guess, bench.group_mask(tone, g), resamples, resamples, members,
                                        0, library=False)[1]
                  for name, fn in bench.AGE_METRICS.items()} for g in bench.GROUPS}
    bench.shipped_check("age", ages, guess, tone, ids, 50, 0, result)

    for g in bench.GROUPS:  # scipy's basic and BCa intervals, clusters as its units, hold the estimate
        in_group = bench.group_mask(tone, g)
        est = bench.accuracy(yt[in_group], pt[in_group])
        for lo, hi in bench.library_intervals(bench.accuracy, yt, pt, in_group, members, 200, 0).values():
            assert lo <= est <= hi and hi - lo < 0.6


def test_age_gap_bench_takes_out_a_gap_that_is_only_the_age_mix():
    """bench/age_tone_gap.py: when the error depends on age alone and the tone buckets differ only in their ages,
    the raw MAE gap is large and the age-standardised gap is nil; an error that does depend on tone survives."""
    from tests.bench_scripts import load_bench

    bench = load_bench("age_tone_gap")
    rng = np.random.default_rng(0)
    tone = np.repeat(["light", "medium", "dark"], 3000)
    age = np.concatenate([rng.uniform(0, 30, 3000), rng.uniform(0, 60, 3000), rng.uniform(20, 90, 3000)])
    age_group, band = bench.age_to_group(age), bench.age_to_group(age, bench.BANDS)
    err = 1 + age / 10  # the error grows with age, within a band as well
    fig = bench.tone_figures(err, age_group, band, tone, 5)
    gaps = bench.gaps(fig)["dark-light"]
    assert gaps["raw_mae"] > 3
    assert abs(gaps["standardised_mae_bands"]) < 0.5 < abs(gaps["standardised_mae"])  # finer bands: a finer match
    assert fig["strata_left_out"]["standardised_mae"] >= 1  # 75-99 has no light photo: left out, not weighted
    fig = bench.tone_figures(np.where(tone == "dark", 2.0, 1.0), age_group, band, tone, 5)  # the model's own gap
    assert bench.gaps(fig)["dark-light"]["standardised_mae_bands"] == pytest.approx(1.0)

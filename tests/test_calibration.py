import json

import numpy as np
import pytest

from skin import calibration as C


def _calibrated_logits(rng, n, n_classes=5, scale=2.0):
    """Logits whose softmax is the true label distribution (labels sampled from it)."""
    z = rng.normal(scale=scale, size=(n, n_classes))
    p = C.softmax(z)
    u = rng.random((n, 1))
    y = (p.cumsum(axis=1) < u).sum(axis=1).clip(max=n_classes - 1)
    return z, y


def test_softmax_rows_sum_to_one_and_temperature_flattens():
    z = np.array([[1.0, 2.0, 3.0], [1000.0, 0.0, -1000.0]])
    p = C.softmax(z)
    np.testing.assert_allclose(p.sum(1), 1)
    assert np.isfinite(p).all()
    assert C.softmax(z, T=10)[0].max() < p[0].max()
    with pytest.raises(ValueError, match="> 0"):
        C.softmax(z, T=0)


def test_overconfident_model_gets_t_about_3_and_lower_ece():
    rng = np.random.default_rng(0)
    val_z, val_y = _calibrated_logits(rng, 6000)
    test_z, test_y = _calibrated_logits(rng, 6000)
    t = C.fit_temperature(3 * val_z, val_y)
    assert t == pytest.approx(3.0, rel=0.1)
    assert C.fit_temperature(3 * val_z, val_y) == t  # deterministic
    out = C.calibration_summary(3 * val_z, val_y, 3 * test_z, test_y)
    assert out["temperature"] == pytest.approx(t)
    assert out["ece_after"] < out["ece_before"] / 3
    assert out["nll_after"] < out["nll_before"]
    json.dumps(out, allow_nan=False)


def test_calibrated_model_keeps_t_near_1():
    rng = np.random.default_rng(1)
    z, y = _calibrated_logits(rng, 6000)
    assert C.fit_temperature(z, y) == pytest.approx(1.0, abs=0.1)


def test_ece_perfectly_calibrated_is_about_zero():
    rng = np.random.default_rng(2)
    z, y = _calibrated_logits(rng, 20000)
    assert C.expected_calibration_error(C.softmax(z), y) < 0.015


def test_ece_hand_computed_four_samples():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.45, 0.55]])
    labels = np.array([0, 1, 1, 0])
    # confidences 0.9, 0.8, 0.7, 0.55; correct 1, 0, 1, 0. With 15 bins of
    # width 1/15 the samples land in bins 14, 12, 11, 9 (one each):
    # ECE = (|1-0.9| + |0-0.8| + |1-0.7| + |0-0.55|) / 4 = 1.75 / 4
    assert C.expected_calibration_error(probs, labels) == pytest.approx(0.4375)
    # With 2 bins: (0.5, 1] holds all four: |2/4 - (0.9+0.8+0.7+0.55)/4| = 0.2375
    assert C.expected_calibration_error(probs, labels, n_bins=2) == pytest.approx(0.2375)


def test_reliability_curve_shape_and_json():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.45, 0.55]])
    labels = np.array([0, 1, 1, 0])
    curve = C.reliability_curve(probs, labels, n_bins=10)
    assert len(curve["bin_edges"]) == 11 and len(curve["counts"]) == 10
    assert sum(curve["counts"]) == 4
    assert curve["confidence"][0] is None and curve["accuracy"][0] is None
    assert curve["accuracy"][8] == 1.0 and curve["confidence"][8] == pytest.approx(0.9)
    assert curve["ece"] == pytest.approx(C.expected_calibration_error(probs, labels, n_bins=10))
    json.dumps(curve, allow_nan=False)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="2-D"):
        C.fit_temperature(np.zeros(4), np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match="class indices"):
        C.fit_temperature(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="n_bins"):
        C.expected_calibration_error(np.eye(2), [0, 1], n_bins=0)


def test_confidence_on_a_bin_edge_goes_to_the_lower_bin():
    # 0.8 = 12/15 belongs to (11/15, 12/15], bin index 11 (float rounding must not move it).
    curve = C.reliability_curve(np.array([[0.8, 0.2]]), np.array([0]), n_bins=15)
    assert curve["counts"][11] == 1


def _hand_written_log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def test_scipy_softmax_equals_the_hand_written_one_it_replaced():
    rng = np.random.default_rng(3)
    z = rng.normal(scale=8.0, size=(500, 7))
    z[0] = [1000.0, 0.0, -1000.0, 5.0, 5.0, 5.0, 5.0]
    for t in (0.3, 1.0, 2.7):
        np.testing.assert_allclose(C.softmax(z, t), np.exp(_hand_written_log_softmax(z / t)), rtol=1e-12, atol=1e-300)
    y = rng.integers(0, 7, size=500)
    rows = np.arange(len(y))
    for t in (0.3, 1.0, 2.7):
        assert C.nll(z, y, t) == pytest.approx(float(-_hand_written_log_softmax(z / t)[rows, y].mean()), rel=1e-12)


def test_group_temperature_with_one_class_per_group_is_the_plain_one():
    rng = np.random.default_rng(2)
    z, y = _calibrated_logits(rng, 3000)
    assert C.fit_temperature(2 * z, y, class_groups=np.arange(5)) == pytest.approx(C.fit_temperature(2 * z, y))


def test_group_temperature_calibrates_the_groups_the_app_answers_in():
    """Logits over 20 fine classes (single years) whose groups of 5 (age groups) are over-confident
    by a factor 3: the temperature fitted on the groups' summed probabilities makes the *group*
    probabilities calibrated (their ECE drops), and calibration_summary reports it over the groups."""
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(4), 5)

    def sample(n):
        z = rng.normal(scale=2.0, size=(n, 20))
        p = C.softmax(z)
        y = (p.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1).clip(max=19)
        return 3 * z, groups[y]

    (vz, vy), (tz, ty) = sample(6000), sample(6000)
    np.testing.assert_allclose(C.group_probs(C.softmax(tz), groups).sum(1), 1)
    out = C.calibration_summary(vz, vy, tz, ty, class_groups=groups)
    assert out["over"] == "groups" and out["temperature"] == pytest.approx(3.0, rel=0.15)
    assert out["ece_after"] < out["ece_before"] / 2 and out["nll_after"] < out["nll_before"]
    assert sum(out["reliability_after"]["counts"]) == 6000
    with pytest.raises(ValueError, match="one group per class"):
        C.fit_temperature(vz, vy, class_groups=groups[:10])
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        C.fit_temperature(vz, vy + 4, class_groups=groups)


def test_coverage_risk_keeps_fewer_answers_and_more_right_ones_as_the_threshold_rises():
    rng = np.random.default_rng(4)
    z, y = _calibrated_logits(rng, 4000)
    rows = C.coverage_risk(C.softmax(z), y)
    assert rows[0]["threshold"] == 0 and rows[0]["coverage"] == 1.0 and rows[0]["n_kept"] == 4000
    coverage = [r["coverage"] for r in rows]
    assert coverage == sorted(coverage, reverse=True)
    kept = [r["accuracy"] for r in rows if r["n_kept"] >= 200]
    assert kept[-1] > kept[0] + 0.2  # calibrated: the confident answers are the right ones
    assert "coverage_risk" in C.calibration_summary(z, y, z, y)


def test_reliability_by_group_known_answers():
    """Two groups, hand-checkable: group a is always right at 0.9 confidence (accuracy 1, ECE 0.1), group b
    right half the time at 0.6 (ECE 0.1); rows whose group is unknown are left out."""
    probs = np.array([[0.9, 0.1], [0.1, 0.9], [0.6, 0.4], [0.6, 0.4], [0.5, 0.5]])
    labels = np.array([0, 1, 0, 1, 0])
    out = C.reliability_by_group(probs, labels, ["a", "a", "b", "b", None])
    assert list(out) == ["a", "b"]
    assert out["a"]["n"] == 2 and out["a"]["accuracy"] == 1.0
    assert out["a"]["mean_confidence"] == pytest.approx(0.9) and out["a"]["ece"] == pytest.approx(0.1)
    assert out["b"]["accuracy"] == 0.5 and out["b"]["ece"] == pytest.approx(0.1)
    assert out["b"]["reliability"]["n_bins"] == C.GROUP_N_BINS
    json.dumps(out)
    with pytest.raises(ValueError, match="one entry per row"):
        C.reliability_by_group(probs, labels, ["a"])


def test_calibration_summary_by_group_is_the_calibrated_reliability_of_each_group():
    rng = np.random.default_rng(5)
    z, y = _calibrated_logits(rng, 600)
    tone = np.where(np.arange(600) % 3 == 0, "dark", "light")
    summary = C.calibration_summary(z, y, z, y, test_groups={"tone_bucket_estimated": list(tone)})
    table = summary["by_group"]["tone_bucket_estimated"]
    assert table["dark"]["n"] == 200 and table["light"]["n"] == 400
    after = C.softmax(z, summary["temperature"])
    mask = tone == "dark"
    assert table["dark"]["accuracy"] == pytest.approx(float((after[mask].argmax(1) == y[mask]).mean()))
    assert "by_group" not in C.calibration_summary(z, y, z, y)

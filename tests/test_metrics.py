import json
import math

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

from skin import metrics as M


def _probs(rng, y, n_classes, strength=2.0):
    z = rng.normal(size=(len(y), n_classes))
    z[np.arange(len(y)), y] += strength
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def test_classification_metrics_values_and_json():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 300)
    p = _probs(rng, y, 4)
    out = M.classification_metrics(y, p, labels=["a", "b", "c", "d"])
    pred = p.argmax(1)
    assert out["n"] == 300
    assert out["accuracy"] == pytest.approx(np.mean(pred == y))
    assert out["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert out["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert out["roc_auc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"))
    cm = np.array(out["confusion_matrix"])
    assert cm.shape == (4, 4) and cm.sum() == 300 and np.trace(cm) == np.sum(pred == y)
    assert set(out["per_class"]) == {"a", "b", "c", "d"}
    assert sum(v["support"] for v in out["per_class"].values()) == 300
    json.dumps(out, allow_nan=False)


def test_classification_metrics_single_class_auc_none_and_absent_classes_in_cm():
    y = np.zeros(5, dtype=int)
    p = np.tile([0.7, 0.2, 0.1], (5, 1))
    out = M.classification_metrics(y, p)
    assert out["roc_auc"] is None
    assert np.array(out["confusion_matrix"]).shape == (3, 3)
    assert out["per_class"]["2"]["support"] == 0
    json.dumps(out, allow_nan=False)


def test_classification_metrics_rejects_bad_input():
    with pytest.raises(ValueError, match="labels has"):
        M.classification_metrics([0, 1], np.eye(2), labels=["x"])
    with pytest.raises(ValueError, match="class indices"):
        M.classification_metrics([0, 3], np.eye(2))
    with pytest.raises(ValueError, match="rows"):
        M.classification_metrics([0, 1, 1], np.eye(2))


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_fast_metrics_match_sklearn():
    rng = np.random.default_rng(1)
    for _ in range(5):
        y = rng.integers(0, 5, 80)
        pred = np.where(rng.random(80) < 0.6, y, rng.integers(0, 6, 80))
        assert M.balanced_accuracy(y, pred) == pytest.approx(balanced_accuracy_score(y, pred))
        assert M.macro_f1(y, pred) == pytest.approx(f1_score(y, pred, average="macro", zero_division=0))
        s = rng.random(80).round(1)  # ties
        assert M.binary_auc(y == 2, s) == pytest.approx(roc_auc_score(y == 2, s))
    assert math.isnan(M.binary_auc([1, 1], [0.2, 0.3]))


def test_ordinal_metrics_and_p_recall_hand_computed():
    y = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 3, 2, 0])
    out = M.ordinal_metrics(y, pred)
    assert out["mae"] == pytest.approx((0 + 1 + 0 + 2 + 0 + 2) / 6)
    assert out["accuracy"] == pytest.approx(3 / 6)
    assert out["adjacent_accuracy"] == pytest.approx(4 / 6)
    # grade 0: (1 + 0.5)/2, grade 1: (1 - 0.5)/2, grade 2: (1 - 0.5)/2
    assert out["p_recall_per_class"] == {"0": 0.75, "1": 0.25, "2": 0.25}
    assert out["p_recall"] == pytest.approx((0.75 + 0.25 + 0.25) / 3)
    json.dumps(out, allow_nan=False)


def test_p_recall_clipped_and_parametrised():
    y = np.array([0, 0, 4, 4])
    pred = np.array([4, 4, 0, 0])  # 4 grades off: -0.5 * 3 = -1.5 each
    value, per_class = M.p_recall(y, pred)
    assert per_class == {0: -1.5, 4: -1.5}
    assert value == 0.0
    value, _ = M.p_recall([0, 1], [1, 1], adjacent_weight=0.0)
    assert value == pytest.approx((0 + 1) / 2)
    assert M.p_recall([1, 2], [1, 2])[0] == 1.0


def test_ordinal_metrics_accepts_probabilities():
    y = np.array([0, 1, 2])
    out = M.ordinal_metrics(y, np.eye(3)[[0, 1, 1]])
    assert out["accuracy"] == pytest.approx(2 / 3)


def test_age_metrics():
    out = M.age_metrics([20, 30, 80], [26, 31, -2])  # -2 counts in the first group (0-24)
    assert out == {"n": 3, "mae": pytest.approx((6 + 1 + 82) / 3), "group_accuracy": pytest.approx(1 / 3)}
    assert M.age_metrics([20, 30], [-2, 26], bins=(0, 25))["group_accuracy"] == 1.0
    with pytest.raises(ValueError, match="below the first bin edge"):
        M.age_metrics([-1.0], [3.0])
    with pytest.raises(ValueError, match="increasing"):
        M.age_metrics([3.0], [3.0], bins=(10, 5))


def test_expected_age_dex():
    ages = np.arange(0, 101)
    probs = np.zeros((2, 101))
    probs[0, 30] = 1
    probs[1, [20, 40]] = 0.5
    np.testing.assert_allclose(M.expected_age(probs, ages), [30, 30])
    np.testing.assert_allclose(M.expected_age(probs * 3, ages), [30, 30])  # renormalised
    with pytest.raises(ValueError, match="one age per"):
        M.expected_age(probs, ages[:-1])


def test_malignancy_auc_with_bootstrap_interval():
    y = np.array([True, False, True, False])
    out = M.malignancy_auc(y, [0.9, 0.1, 0.4, 0.5], n_boot=0)
    assert (out.value, out.ci_low, out.ci_high) == (0.75, None, None)
    assert M.malignancy_auc([False, False], [0.1, 0.2]).value is None
    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.3
    s = y + rng.normal(0, 0.8, 300)
    ci = M.malignancy_auc(y, s, n_boot=200, random_state=1)
    assert ci.value == pytest.approx(roc_auc_score(y, s))
    assert ci.ci_low < ci.value < ci.ci_high and ci.ci_high - ci.ci_low < 0.2
    assert M.malignancy_auc(y, s, n_boot=200, random_state=1) == ci  # seeded
    perfect = M.malignancy_auc(y, y.astype(float), n_boot=50)
    assert (perfect.value, perfect.ci_low, perfect.ci_high) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="boolean"):
        M.malignancy_auc([0, 2], [0.1, 0.2])


def test_bootstrap_ci_is_a_percentile_interval_that_skips_undefined_resamples():
    ci = M.bootstrap_ci(np.mean, np.arange(100.0), n_boot=500, random_state=0)
    assert ci.value == 49.5 and 43 < ci.ci_low < 47 and 52 < ci.ci_high < 56
    # a statistic undefined on every resample: the value without an interval
    ci = M.bootstrap_ci(lambda a: 1.0 if len(set(a.tolist())) == 2 else math.nan, np.array([0, 1]), n_boot=0)
    assert ci.value == 1.0 and not ci.has_ci
    half = M.bootstrap_ci(M.binary_auc, np.array([True, False]), np.array([0.9, 0.1]), n_boot=50)
    assert (half.value, half.ci_low, half.ci_high) == (1.0, 1.0, 1.0)  # one-class resamples skipped


def test_cluster_bootstrap_of_copied_rows_is_the_row_bootstrap_of_the_originals():
    # every row copied five times into one group: resampling groups is resampling the original rows
    x = np.random.default_rng(1).normal(size=80)
    row = M.bootstrap_ci(np.mean, x, n_boot=400, random_state=3)
    copies = np.repeat(x, 5)
    cluster = M.bootstrap_ci(np.mean, copies, n_boot=400, random_state=3, groups=np.repeat(np.arange(80), 5))
    assert cluster.value == pytest.approx(row.value)
    assert cluster.ci_low == pytest.approx(row.ci_low) and cluster.ci_high == pytest.approx(row.ci_high)
    # resampled row by row, the copies look like 400 independent rows: an interval about sqrt(5) too narrow
    naive = M.bootstrap_ci(np.mean, copies, n_boot=400, random_state=3)
    ratio = (row.ci_high - row.ci_low) / (naive.ci_high - naive.ci_low)
    assert 1.8 < ratio < 2.7


def test_cluster_bootstrap_needs_one_group_per_row():
    with pytest.raises(ValueError, match="one id per row"):
        M.bootstrap_ci(np.mean, np.arange(4.0), groups=[0, 1])


def test_balanced_accuracy_gain_is_paired_and_signed():
    from skin.metrics import balanced_accuracy_gain

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 90)
    noise = rng.dirichlet(np.ones(3), 90)
    right = np.eye(3)[y] * 0.8 + noise * 0.2
    same = balanced_accuracy_gain(y, noise, noise, n_boot=50)
    assert (same.value, same.ci_low, same.ci_high) == (0, 0, 0)  # paired: identical answers never differ
    gain = balanced_accuracy_gain(y, noise, right, n_boot=50)
    assert gain.value == pytest.approx(1.0 - M.balanced_accuracy(y, noise.argmax(1)))
    assert 0 < gain.ci_low <= gain.value <= gain.ci_high
    assert balanced_accuracy_gain(y, right, noise, n_boot=0).value == pytest.approx(-gain.value)

import struct

import numpy as np
import pytest

from skin import plots
from skin.calibration import reliability_curve, softmax

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == PNG_MAGIC, "not a PNG file"
    return struct.unpack(">II", head[16:24])


def _check_png(path, min_side=200, max_side=4000):
    w, h = _png_size(path)
    assert min_side <= w <= max_side and min_side <= h <= max_side, (w, h)


def test_confusion_matrix_png(tmp_path):
    cm = [[50, 3, 2], [4, 30, 6], [0, 1, 0]]
    out = plots.plot_confusion_matrix(cm, ["nevus", "melanoma", "bcc"], tmp_path / "sub" / "cm.png")
    assert out == str(tmp_path / "sub" / "cm.png")
    _check_png(out)
    with pytest.raises(ValueError, match="square"):
        plots.plot_confusion_matrix([[1, 2]], ["a"], tmp_path / "bad.png")


def test_reliability_png(tmp_path):
    rng = np.random.default_rng(0)
    z = rng.normal(scale=2, size=(400, 4))
    y = rng.integers(0, 4, 400)
    before = reliability_curve(softmax(3 * z), y)
    after = reliability_curve(softmax(z), y)
    _check_png(plots.plot_reliability(before, after, tmp_path / "rel.png"))
    _check_png(plots.plot_reliability(before, None, tmp_path / "rel_one.png"))


def _fake_report():
    def m(v, lo, hi):
        return {"value": v, "ci_low": lo, "ci_high": hi}

    return {
        "groups": {
            "light": {"n": 400, "small": False, "accuracy": m(0.85, 0.81, 0.88)},
            "medium": {"n": 250, "small": False, "accuracy": m(0.8, 0.75, 0.85)},
            "dark": {"n": 12, "small": True, "accuracy": m(0.5, 0.25, 0.75)},
            "unknown": {"n": 3, "small": True, "accuracy": m(None, None, None)},
        },
        "overall": {"n": 665, "accuracy": m(0.82, 0.8, 0.84)},
        "largest_gap": {"accuracy": 0.05},
        "largest_gap_groups": {"accuracy": {"min": "medium", "max": "light"}},
    }


def test_fairness_png(tmp_path):
    _check_png(plots.plot_fairness(_fake_report(), "accuracy", tmp_path / "fair.png"))
    with pytest.raises(ValueError, match="choose one of"):
        plots.plot_fairness(_fake_report(), "mae", tmp_path / "x.png")


def test_fairness_png_from_real_report(tmp_path):
    from skin.fairness import fairness_report

    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 120)
    p = rng.dirichlet(np.ones(3), 120)
    tone = rng.choice(["light", "medium", "dark"], 120)
    rep = fairness_report(y, p, {"tone_bucket": tone}, n_boot=5, min_group_size=45)
    _check_png(plots.plot_fairness(rep["tone_bucket"], "ece", tmp_path / "ece.png"))


def test_training_curves_png(tmp_path):
    history = []
    for step in range(10, 110, 10):
        history.append({"loss": 2.0 / (1 + step / 30), "learning_rate": 1e-4, "epoch": step / 50, "step": step})
        if step % 50 == 0:
            history.append({"eval_loss": 1.5 / (1 + step / 50), "eval_balanced_accuracy": 0.4 + step / 500,
                            "eval_runtime": 1.2, "epoch": step / 50, "step": step})
    history.append({"train_runtime": 30.0, "train_loss": 0.9, "epoch": 2.0, "step": 100})
    _check_png(plots.plot_training_curves(history, tmp_path / "curves.png"))
    with pytest.raises(ValueError, match="log_history"):
        plots.plot_training_curves([{"epoch": 1}], tmp_path / "none.png")


def test_rejects_non_png_path(tmp_path):
    with pytest.raises(ValueError, match=".png"):
        plots.plot_confusion_matrix([[1]], ["a"], tmp_path / "cm.jpg")

"""The helpers of bench/bench_face_crop.py and bench/clinical_on_portraits.py, whose results set
skin.faces.CHIP_SIDE / CHIP_SHIFT and the clinical model's photo types."""

from __future__ import annotations

import numpy as np
from PIL import Image

from tests.bench_scripts import load_bench


def test_every_surround_keeps_the_chip_intact_in_the_middle():
    bench = load_bench("bench_face_crop")
    rng = np.random.default_rng(0)
    chip = Image.fromarray(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8))
    for name, surround in bench.surrounds().items():
        picture = surround(chip)
        assert picture.size == (200 + 2 * bench.PAD, 200 + 2 * bench.PAD), name
        middle = picture.crop((bench.PAD, bench.PAD, bench.PAD + 200, bench.PAD + 200))
        assert np.array_equal(np.asarray(middle), np.asarray(chip)), name


def test_portrait_summary_counts_answers_per_photo_type():
    bench = load_bench("clinical_on_portraits")
    rows = [
        {"type": "face", "read": True, "answered": True, "label": "psoriasis_lichen_planus"},
        {"type": "face", "read": True, "answered": False, "label": "acne_rosacea"},
        {"type": "clinical", "read": True, "answered": True, "label": "melanoma", "truth": "melanoma"},
        {"type": "clinical", "read": True, "answered": True, "label": "naevus", "truth": "melanoma"},
        {"type": "clinical", "read": False, "answered": False, "label": None, "truth": "naevus"},
    ]
    summary = bench.summarise(rows)
    assert summary["face"] == {"n": 2, "read": 2, "answered": 1, "answers": {"psoriasis_lichen_planus": 1}}
    assert summary["clinical"]["n"] == 3 and summary["clinical"]["answered"] == 2
    assert summary["clinical"]["answered_right"] == 1

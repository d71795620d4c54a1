"""skin.evaluate on fixtures: a condition model audited on DDI, and the CLI contract."""

from __future__ import annotations

import json

import pytest

from tests.layouts import make_ddi, make_ham10000

HAM_LABELS = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]


@pytest.fixture(scope="module")
def condition_dir(tmp_path_factory):
    from skin.modeling import create_model, export_merged

    model, processor = create_model("efficientnet_lite0", HAM_LABELS, image_size=32)
    return export_merged(model, processor, str(tmp_path_factory.mktemp("cond") / "merged"))


def test_ddi_audit_reports_malignancy_auc_overall_and_per_fst(condition_dir, tmp_path, capsys):
    from skin.evaluate import main

    ddi = make_ddi(tmp_path).data_dir
    rc = main(["--model", condition_dir, "--dataset", "ddi", "--data-dir", str(ddi), "--split", "all", "--json",
               "--cache-dir", str(tmp_path / "cache")])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] > 0
    assert "malignancy_auc" in report
    assert set(report["malignancy_by_fst"]) <= {"I-II", "III-IV", "V-VI"}
    for group in report["malignancy_by_fst"].values():
        assert group["n"] > 0 and "roc_auc" in group


def test_evaluate_cli_contract_on_ham_fixture(condition_dir, tmp_path, capsys):
    from skin.evaluate import main

    ham = make_ham10000(tmp_path).data_dir
    rc = main(["--model", condition_dir, "--dataset", "ham10000", "--data-dir", str(ham), "--split", "test",
               "--json", "--n-boot", "10", "--tta", "--cache-dir", str(tmp_path / "cache")])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("n", "accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "ece", "fairness"):
        assert key in report
    assert report["tta"] is True
    group = next(iter(report["fairness"]["sex"]["groups"].values()))
    assert "n" in group and "accuracy" in group


def test_evaluate_wrong_model_for_dataset_is_a_clear_error(condition_dir, tmp_path, capsys):
    from skin.evaluate import main

    from tests.layouts import make_utkface

    utk = make_utkface(tmp_path).data_dir
    rc = main(["--model", condition_dir, "--dataset", "utkface", "--data-dir", str(utk),
               "--cache-dir", str(tmp_path / "cache")])
    assert rc == 2
    assert "differ from utkface" in capsys.readouterr().err


class _CornerModel:
    """Logits = the first channel's top-left and bottom-left pixels: every flip changes them."""

    def eval(self):
        return self

    def __call__(self, pixel_values):
        from types import SimpleNamespace

        return SimpleNamespace(logits=pixel_values[:, 0, [0, -1], 0])


@pytest.mark.parametrize("vflip", [True, False])
def test_tta_averages_the_flips_the_task_allows(vflip):
    import numpy as np
    import torch
    from datasets import Dataset, Features, Image
    from PIL import Image as PILImage

    from skin.evaluate import predict_logits

    x = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4).expand(1, 3, 4, 4).contiguous()

    def processor(images, return_tensors):
        return {"pixel_values": x.expand(len(images), -1, -1, -1)}

    ds = Dataset.from_dict({"image": [PILImage.new("RGB", (4, 4))] * 2}, features=Features({"image": Image()}))
    plain = predict_logits(_CornerModel(), processor, ds)
    tta = predict_logits(_CornerModel(), processor, ds, tta=True, vflip=vflip)
    np.testing.assert_allclose(plain[0], [0, 12])  # top-left, bottom-left
    views = [[0, 12], [3, 15]] + ([[12, 0]] if vflip else [])  # + horizontal (+ vertical) flip
    np.testing.assert_allclose(tta, np.tile(np.mean(views, 0), (2, 1)), rtol=1e-6)


def test_face_tasks_are_upright():
    from skin.tasks import get_task

    assert get_task("age_utkface").upright and get_task("aihub_oil").upright
    assert not get_task("condition_ham10000").upright

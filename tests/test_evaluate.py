"""skin.evaluate on fixtures: a condition model audited on DDI, and the CLI contract."""

from __future__ import annotations

import json

import pytest

from tests.bench_scripts import load_bench
from tests.layouts import make_ddi, make_dermnet, make_ham10000, make_pad_ufes20

HAM_LABELS = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]


@pytest.fixture(scope="module")
def condition_dir(tmp_path_factory):
    from skin.modeling import create_model, export_merged

    model, processor = create_model("efficientnet_lite0", HAM_LABELS, image_size=32)
    return export_merged(model, processor, str(tmp_path_factory.mktemp("cond") / "merged"))


def test_malignancy_audit_reports_malignancy_auc_overall_and_per_fst(condition_dir, tmp_path, capsys):
    from skin.evaluate import main

    ddi = make_ddi(tmp_path).data_dir
    rc = main(["--model", condition_dir, "--dataset", "ddi", "--data-dir", str(ddi), "--split", "all", "--json",
               "--n-boot", "20", "--cache-dir", str(tmp_path / "cache")])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 29 and report["n_malignant"] == 9 and report["n_boot"] == 20
    assert set(report["malignancy_auc"]) == {"value", "ci_low", "ci_high"}
    assert set(report["malignancy_by_fst"]) == {"I-II", "III-IV", "V-VI"}
    for group in report["malignancy_by_fst"].values():
        assert group["n"] > 0 and group["n_malignant"] == 3
        assert set(group["malignancy_auc"]) == {"value", "ci_low", "ci_high"}


#: Malignant and benign scores per Fitzpatrick group, and the ROC-AUC they give.
#: III-IV: 0.8 beats all 7 benign scores, 0.6 beats 6, 0.3 beats 4: 17 of 21 pairs.
DDI_SCORES = {"I-II": ([0.9] * 3, [0.1] * 6, 1.0),
              "III-IV": ([0.8, 0.6, 0.3], [0.7, 0.5, 0.4, 0.2, 0.2, 0.1, 0.1], 17 / 21),
              "V-VI": ([0.1] * 3, [0.9] * 7, 0.0)}


def _ddi_probs(ds):
    """7-class HAM probabilities whose malignant mass (akiec + bcc + mel) is the DDI_SCORES score of each row."""
    import numpy as np

    queues = {g: (list(mal), list(ben)) for g, (mal, ben, _) in DDI_SCORES.items()}
    probs = np.zeros((len(ds), len(HAM_LABELS)))
    for i, (g, malignant) in enumerate(zip(ds["fst_group"], ds["malignant"])):
        score = queues[g][0 if malignant else 1].pop()
        probs[i, [0, 1, 4]] = score / 3  # akiec, bcc, mel
        probs[i, 5] = 1 - score  # nv
    assert not any(q for pair in queues.values() for q in pair)  # every score used once
    return probs


def test_malignancy_audit_known_answer(tmp_path, capsys, monkeypatch):
    """Through the CLI with a stand-in model whose malignant probabilities are fixed per image."""
    from types import SimpleNamespace

    import numpy as np
    from sklearn.metrics import roc_auc_score

    import skin.evaluate
    import skin.hub
    import skin.inference

    model = SimpleNamespace(config=SimpleNamespace(id2label=dict(enumerate(HAM_LABELS)), num_labels=7))
    monkeypatch.setattr(skin.hub, "load_classifier", lambda ref, **kw: (model, None))
    monkeypatch.setattr(skin.inference, "prepare_for_inference", lambda m: m)
    seen = {}

    def logits(model, processor, ds, **kwargs):
        seen["probs"], seen["ds"] = _ddi_probs(ds), ds
        return np.log(np.clip(seen["probs"], 1e-12, None))

    monkeypatch.setattr(skin.evaluate, "predict_logits", logits)
    ddi = make_ddi(tmp_path).data_dir
    rc = skin.evaluate.main(["--model", "stand-in", "--dataset", "ddi", "--data-dir", str(ddi), "--split", "all",
                             "--json", "--n-boot", "200", "--cache-dir", str(tmp_path / "cache")])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    by_fst = report["malignancy_by_fst"]
    for g, (mal, ben, auc) in DDI_SCORES.items():
        assert (by_fst[g]["n"], by_fst[g]["n_malignant"]) == (len(mal) + len(ben), len(mal))
        assert by_fst[g]["malignancy_auc"]["value"] == pytest.approx(auc)
    # separable groups: every resample (with both classes) gives the same AUC, so the interval is a point
    assert by_fst["I-II"]["malignancy_auc"]["ci_low"] == by_fst["I-II"]["malignancy_auc"]["ci_high"] == 1.0
    assert by_fst["V-VI"]["malignancy_auc"]["ci_low"] == by_fst["V-VI"]["malignancy_auc"]["ci_high"] == 0.0
    mixed = by_fst["III-IV"]["malignancy_auc"]
    assert 0.0 <= mixed["ci_low"] < 17 / 21 < mixed["ci_high"] <= 1.0
    overall = report["malignancy_auc"]
    truth = np.asarray(seen["ds"]["malignant"])
    assert overall["value"] == pytest.approx(roc_auc_score(truth, seen["probs"][:, [0, 1, 4]].sum(1)))
    assert overall["ci_low"] < overall["value"] < overall["ci_high"]
    assert report["n"] == 29 and report["n_malignant"] == 9 and report["n_boot"] == 200


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
    assert "n" in group and set(group["accuracy"]) == {"value", "ci_low", "ci_high"}

    # without --json: tables with every figure (the text was once a JSON dump cut at 4,000 characters)
    rc = main(["--model", condition_dir, "--dataset", "ham10000", "--data-dir", str(ham), "--split", "test",
               "--n-boot", "10", "--tta", "--cache-dir", str(tmp_path / "cache")])
    text = capsys.readouterr().out
    assert rc == 0 and "test-time flips" in text and not text.lstrip().startswith("{")
    lines = text.splitlines()
    for label in report["per_class"]:
        assert any(line.split()[:1] == [label] for line in lines), label
    for attribute, table in report["fairness"].items():
        assert f"fairness by {attribute} (value [2.5-97.5 % interval over 10 resamples" in text
        assert all(any(line.split()[:1] == [group] for line in lines) for group in table["groups"])
    assert sum(line.startswith("overall ") for line in lines) == len(report["fairness"])


def test_evaluate_wrong_model_for_dataset_is_a_clear_error(condition_dir, tmp_path, capsys):
    from skin.evaluate import main

    from tests.layouts import make_utkface

    utk = make_utkface(tmp_path).data_dir
    rc = main(["--model", condition_dir, "--dataset", "utkface", "--data-dir", str(utk),
               "--cache-dir", str(tmp_path / "cache")])
    assert rc == 2
    assert "are not utkface's (0, 1, 2, 3, 4, 5, … (101 classes))" in capsys.readouterr().err


def test_a_model_with_no_malignant_class_on_an_audit_set_is_refused_before_predicting(tmp_path, capsys,
                                                                                        monkeypatch):
    """The age model on DermNet: its 101 classes are not DermNet's and none is malignant, so there is no
    audit to run either; the message says so, briefly, before any image is predicted."""
    import skin.evaluate
    from skin.modeling import create_model, export_merged
    from skin.tasks import AGE_LABELS

    model, processor = create_model("efficientnet_lite0", AGE_LABELS, image_size=32)
    age_dir = export_merged(model, processor, str(tmp_path / "age"))
    monkeypatch.setattr(skin.evaluate, "predict_logits", lambda *a, **k: pytest.fail("predicted before refusing"))
    rc = skin.evaluate.main(["--model", age_dir, "--dataset", "dermnet", "--data-dir",
                             str(make_dermnet(tmp_path).data_dir), "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert rc == 2 and "(0, 1, 2, 3, 4, 5, … (101 classes))" in err and "'99'" not in err
    assert "evaluate the model on the dataset it was trained for" in err


@pytest.mark.parametrize("ref", ["/no/such/model", "./runs/missing", "experiments/run/merged"])
def test_a_missing_model_folder_is_named_as_a_folder_not_a_bad_hub_id(ref):
    from skin.hub import load_classifier

    with pytest.raises(ValueError, match=r"model folder .* not found \(a Hub id is owner/name\)"):
        load_classifier(ref)


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


def test_malignancy_audit_on_pad_ufes20_groups_by_fitzpatrick_pairs(tmp_path, capsys, monkeypatch):
    """A model whose classes differ from PAD-UFES-20's is audited for malignancy, grouped by FST pairs."""
    from types import SimpleNamespace

    import numpy as np

    import skin.evaluate
    import skin.hub
    import skin.inference
    from skin.tone import fst_pair

    model = SimpleNamespace(config=SimpleNamespace(id2label=dict(enumerate(HAM_LABELS)), num_labels=7))
    monkeypatch.setattr(skin.hub, "load_classifier", lambda ref, **kw: (model, None))
    monkeypatch.setattr(skin.inference, "prepare_for_inference", lambda m: m)

    def logits(model, processor, ds, **kwargs):
        # a perfect malignancy score: "mel" for malignant lesions, "nv" otherwise
        probs = np.full((len(ds), 7), 1e-6)
        probs[np.arange(len(ds)), [4 if m else 5 for m in ds["malignant"]]] = 1.0
        return np.log(probs)

    monkeypatch.setattr(skin.evaluate, "predict_logits", logits)
    pad = make_pad_ufes20(tmp_path).data_dir
    rc = skin.evaluate.main(["--model", "stand-in", "--dataset", "pad_ufes20", "--data-dir", str(pad), "--split",
                             "all", "--json", "--n-boot", "20", "--cache-dir", str(tmp_path / "cache")])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["malignancy_auc"]["value"] == 1.0
    by_fst = report["malignancy_by_fst"]
    assert set(by_fst) <= {"I-II", "III-IV", "V-VI", "unknown"} and "I-II" in by_fst
    assert sum(row["n"] for row in by_fst.values()) == report["n"]
    assert [fst_pair(f) for f in (1, 2, 3, 4, 5, 6, None)] == ["I-II", "I-II", "III-IV", "III-IV", "V-VI", "V-VI",
                                                               None]
    rc = skin.evaluate.main(["--model", "stand-in", "--dataset", "pad_ufes20", "--data-dir", str(pad), "--split",
                             "all", "--n-boot", "20", "--cache-dir", str(tmp_path / "cache")])
    text = capsys.readouterr().out
    assert rc == 0 and "malignancy ROC-AUC of the summed malignant probability (20 resamples" in text
    assert any(line.startswith("all ") and "1.000" in line for line in text.splitlines())
    assert all(f"Fitzpatrick {group}" in text for group in by_fst)


def test_malignancy_audit_on_a_set_without_fitzpatrick_labels_groups_by_estimated_tone(tmp_path, capsys,
                                                                                        monkeypatch):
    """The clinical model on HAM10000 (no Fitzpatrick column): it failed with "Column 'fitzpatrick' doesn't
    exist"; now one "unknown" Fitzpatrick row and a row per estimated tone bucket, covering every image."""
    from types import SimpleNamespace

    import numpy as np

    import skin.evaluate
    import skin.hub
    import skin.inference
    from skin.data import builder_class

    labels = builder_class("dermnet").label_names("clinical", False)
    model = SimpleNamespace(config=SimpleNamespace(id2label=dict(enumerate(labels)), num_labels=len(labels)))
    monkeypatch.setattr(skin.hub, "load_classifier", lambda ref, **kw: (model, None))
    monkeypatch.setattr(skin.inference, "prepare_for_inference", lambda m: m)

    def logits(model, processor, ds, **kwargs):
        probs = np.full((len(ds), len(labels)), 1e-6)
        probs[np.arange(len(ds)), [labels.index("melanoma" if m else "naevus") for m in ds["malignant"]]] = 1.0
        return np.log(probs)

    monkeypatch.setattr(skin.evaluate, "predict_logits", logits)
    ham = make_ham10000(tmp_path).data_dir
    rc = skin.evaluate.main(["--model", "stand-in", "--dataset", "ham10000", "--data-dir", str(ham), "--split",
                             "all", "--json", "--n-boot", "20", "--cache-dir", str(tmp_path / "cache")])
    assert rc == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert report["malignancy_auc"]["value"] == 1.0
    assert list(report["malignancy_by_fst"]) == ["unknown"]
    assert report["malignancy_by_fst"]["unknown"]["n"] == report["n"]
    by_tone = report["malignancy_by_tone_estimated"]
    assert set(by_tone) <= {"light", "medium", "dark", "unknown"}
    assert sum(row["n"] for row in by_tone.values()) == report["n"]


@pytest.mark.parametrize("grouping", ["clinical", "fine", "clinical folders"])
def test_dermnet_folder_is_scored_in_the_models_own_grouping_and_skips_are_counted(grouping, tmp_path, capsys,
                                                                                     monkeypatch):
    """``--dataset dermnet --split all`` on any folder in DermNet's layout: the grouping is the model's
    (its class names pick the builder config; a grouping's folders pick it with ``folder_labels``);
    folders the grouping lacks and bad files are counted."""
    from types import SimpleNamespace

    import numpy as np

    import skin.evaluate
    import skin.hub
    import skin.inference
    from dataset_scripts.dermnet import DermNet

    labels = DermNet.label_names(grouping.split()[0], folder_labels=grouping.endswith("folders"))
    model = SimpleNamespace(config=SimpleNamespace(id2label=dict(enumerate(labels)), num_labels=len(labels)))
    monkeypatch.setattr(skin.hub, "load_classifier", lambda ref, **kw: (model, None))
    monkeypatch.setattr(skin.inference, "prepare_for_inference", lambda m: m)

    def logits(model, processor, ds, **kwargs):  # right on every photo
        out = np.full((len(ds), len(labels)), -10.0)
        out[np.arange(len(ds)), ds["label"]] = 10.0
        return out

    monkeypatch.setattr(skin.evaluate, "predict_logits", logits)
    layout = make_dermnet(tmp_path)
    rc = skin.evaluate.main(["--model", "stand-in", "--dataset", "dermnet", "--data-dir", str(layout.data_dir),
                             "--split", "all", "--json", "--n-boot", "10", "--cache-dir", str(tmp_path / "cache")])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["accuracy"] == 1.0
    left_out = "condition not in the clinical grouping"
    if grouping.startswith("clinical"):
        assert report["n"] == layout.n_good  # Urticaria is not in the clinical grouping
        assert report["skipped"][left_out] == 1 and report["n_skipped"] == 3  # + a truncated JPEG, a text file
    else:
        assert report["n"] == layout.n_good + 1 and report["n_skipped"] == 2 and left_out not in report["skipped"]


def test_clinical_ensemble_average_of_a_model_with_itself_gains_nothing():
    import numpy as np

    bench = load_bench("clinical_ensemble")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 60)
    probs = rng.dirichlet(np.ones(4), 60)
    gain = bench.gain_ci(y, probs, (probs + probs) / 2, n_boot=50)
    assert gain["value"] == 0 and gain["ci_low"] == 0 and gain["ci_high"] == 0
    # a confident right model outvotes an unsure wrong one
    right = np.eye(4)[y] * 0.9 + 0.025
    unsure = np.full((60, 4), 0.25)
    assert bench.scores(y, (right + unsure) / 2) == {"accuracy": 1.0, "balanced_accuracy": 1.0}


def test_split_spread_separates_a_held_out_splits_largest_cluster():
    import numpy as np

    bench = load_bench("clinical_split_spread")
    assignment = np.array(["train"] * 4 + ["validation"] * 6 + ["test"] * 6)
    groups = np.array(["t"] * 4 + ["big"] * 4 + ["v1", "v2"] + ["big2"] * 3 + ["x", "y", "z"])
    y = np.zeros(16, int)
    pred = y.copy()
    pred[4:8] = 1  # validation's largest cluster all wrong, everything else right
    effect = bench.largest_cluster_effect(y, pred, assignment, groups)
    v, t = effect["validation"], effect["test"]
    assert (v["largest_cluster"], v["largest_cluster_n"], v["clusters"]) == ("big", 4, 3)
    assert v["accuracy_on_largest_cluster"] == 0 and v["accuracy"] == 2 / 6 and v["accuracy_without_it"] == 1
    assert t["accuracy"] == t["accuracy_without_it"] == 1 and t["largest_cluster_n"] == 3

    draws = [{"validation": {"accuracy": a, "balanced_accuracy": a}, "test": {"accuracy": b, "balanced_accuracy": b}}
             for a, b in [(0.5, 0.4), (0.4, 0.5), (0.45, 0.45), (0.5, 0.5), (0.6, 0.4)]]
    summary = bench.summarise(draws[0], draws)["accuracy"]
    assert summary["shipped_validation_minus_test"] == pytest.approx(0.1)
    assert summary["share_of_draws_with_a_gap_at_least_as_large"] == pytest.approx(2 / 5)
    assert summary["draws_validation_minus_test"]["mean"] == pytest.approx(0.04)


def test_clinical_test_resolution_changes_only_the_side():
    """The bench reads the photo at another side with the model's own resize, crop and normalisation:
    at the trained side it gives the very pixels the model's processor gives."""
    import numpy as np
    from PIL import Image
    from skimage import data

    from skin.modeling import create_model

    bench = load_bench("clinical_test_resolution")
    _, processor = create_model("efficientnet_lite0", ["a", "b"], pretrained=False)
    photo = Image.fromarray(data.astronaut()).resize((256, 192))
    same = bench.resized_processor(processor, 224)
    larger = bench.resized_processor(processor, 256)
    assert np.array_equal(same([photo], return_tensors="pt")["pixel_values"].numpy(),
                          processor([photo], return_tensors="pt")["pixel_values"].numpy())
    assert tuple(larger([photo], return_tensors="pt")["pixel_values"].shape) == (1, 3, 256, 256)
    kept = ("interpolation", "mean", "std", "crop_pct", "crop_mode")
    assert {k: larger.data_config[k] for k in kept} == {k: processor.data_config[k] for k in kept}


def test_clinical_learning_curve_fit_recovers_a_known_line():
    """Balanced accuracy rising 0.05 per doubling from 0.40 at 1,000 photos reaches 0.60 at 16,000."""
    bench = load_bench("clinical_learning_curve")
    n = [1000, 2000, 4000]
    f = bench.fit(n, [0.40, 0.45, 0.50], 0.60)
    assert f["gain_per_doubling"] == pytest.approx(0.05) and f["gain_per_doubling_se"] == pytest.approx(0, abs=1e-9)
    assert f["n_train_for_target"] == pytest.approx(16000)
    assert bench.fit(n, [0.45, 0.44, 0.43], 0.60)["n_train_for_target"] is None  # no gain: never


def test_malignant_sum_bench_measures_a_calibrated_sum_as_calibrated():
    """bench/malignant_sum.py: a sum drawn as the probability it claims has a small ECE and the sklearn
    reliability curve's bins; the same sum pushed towards 0 and 1 (a monotone map: the same
    ranking) has a large one; thresholds and the top answer's
    misses are counted on the right rows."""
    import numpy as np

    bench = load_bench("malignant_sum")
    rng = np.random.default_rng(0)
    score = rng.uniform(0, 1, 20_000)
    truth = rng.uniform(0, 1, score.size) < score
    top = score > 0.5
    honest = bench.sum_figures(score, truth, top)
    assert honest["ece_of_sum"] < 0.02 and 0.8 < honest["roc_auc"] < 0.9
    assert sum(b["n"] for b in honest["reliability"]) == score.size
    assert honest["top_answer_misses"] == pytest.approx(1 - top[truth].mean())
    at = {a["threshold"]: a for a in honest["at_threshold"]}
    assert at[0.5]["sensitivity"] == pytest.approx((score[truth] >= 0.5).mean())
    assert at[0.5]["benign_flagged"] == pytest.approx((score[~truth] >= 0.5).mean())
    overconfident = bench.sum_figures(1 / (1 + (1 / score - 1) ** 3), truth, top)
    assert overconfident["ece_of_sum"] > 0.1 and overconfident["roc_auc"] == pytest.approx(honest["roc_auc"])


def test_robustness_changes_and_served_answers():
    """bench/robustness.py: a photo turned four times is the photo again, a JPEG re-save keeps its
    size; the served figures count a confident other class as contradicted and a fall below the threshold
    as withdrawn, out of the photos answered as delivered."""
    import numpy as np
    from PIL import Image
    from skimage import data

    bench = load_bench("robustness")
    photo = Image.fromarray(data.astronaut()).resize((96, 64))
    turned = photo
    for _ in range(4):
        turned = bench.change(turned, ("rotate", 90))
    assert np.array_equal(np.asarray(turned), np.asarray(photo))
    assert bench.change(photo, ("rotate", 90)).size == (64, 96)
    resaved = bench.change(photo, ("jpeg", 50))
    assert resaved.size == photo.size and resaved.mode == "RGB"
    assert not np.array_equal(np.asarray(resaved), np.asarray(photo))
    with pytest.raises(ValueError, match="unknown change"):
        bench.change(photo, ("blur", 2))

    delivered = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.4, 0.6], [0.55, 0.45]])
    changed = np.array([[0.9, 0.1], [0.2, 0.8], [0.45, 0.55], [0.3, 0.7], [0.6, 0.4]])
    y = np.array([0, 1, 0, 1, 1])
    s = bench.served(changed, delivered, y, threshold=0.6)
    # answered as delivered: rows 0-3 (row 3 at exactly the threshold); changed photos answered: rows 0, 1, 3, 4
    assert s["answered"] == pytest.approx(4 / 5) and s["accuracy_of_answers"] == pytest.approx(3 / 4)
    assert s["contradicted"] == pytest.approx(1 / 4)  # row 1: class 0 -> class 1, both confident
    assert s["withdrawn"] == pytest.approx(1 / 4)  # row 2: 0.7 -> 0.55
    assert s["gained"] == 1 and s["accuracy_of_gained"] == 0  # row 4, withheld as delivered: 0.6, wrong
    assert bench.served(delivered, delivered, y, 0.6)["contradicted"] == 0


def test_robustness_d4_mean_does_not_depend_on_the_turn():
    """The mean over the square's eight symmetries of a processed photo is the same for the photo turned:
    the property the bench's ``d4_mean`` row measures on real photos. The corner model's logits change with
    every turn of one view."""
    import numpy as np
    from datasets import Dataset
    from PIL import Image
    from skimage import data

    from skin.evaluate import predict_logits
    from skin.modeling import create_model

    bench = load_bench("robustness")
    _, processor = create_model("efficientnet_lite0", ["a", "b"], pretrained=False)
    photo = Image.fromarray(data.astronaut()).resize((224, 224))
    ds = Dataset.from_dict({"image": [photo, bench.change(photo, ("rotate", 90))]})
    single = predict_logits(_CornerModel(), processor, ds)
    assert not np.allclose(single[0], single[1], atol=1e-3)
    d4 = predict_logits(bench.DihedralMean(_CornerModel()), processor, ds)
    np.testing.assert_allclose(d4[0], d4[1], atol=1e-4)

"""skin.modeling.export: temperature folding, the merged export, and the calibrated export / reload path."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from skin import modeling as M
from tests.modeling_helpers import (ALL_ARCHS, LABELS, build, hf_dirs, lora_trained, logits, pil,  # noqa: F401
                                    size, train_steps)


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_export_merged_pipeline_and_logits(arch, lora_trained, tmp_path):
    from transformers import AutoModelForImageClassification, pipeline

    _, model, processor, _, _ = lora_trained(arch)
    x = processor(pil(), return_tensors="pt")["pixel_values"]
    unmerged = logits(model, x)

    out = M.export_merged(model, processor, tmp_path / "merged")
    assert (tmp_path / "merged" / "model.safetensors").is_file()
    config = json.loads((tmp_path / "merged" / "config.json").read_text())
    assert "auto_map" not in config
    merged = AutoModelForImageClassification.from_pretrained(out)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    torch.testing.assert_close(logits(merged, x), unmerged, atol=1e-4, rtol=1e-4)
    # The caller's model is untouched (export works on a copy).
    assert any("lora_A" in n for n, _ in model.named_parameters())
    torch.testing.assert_close(logits(model, x), unmerged)

    classify = pipeline("image-classification", model=out)
    result = classify(pil(1, size=(70, 45)), top_k=3)
    assert {r["label"] for r in result} == set(LABELS)
    assert sum(r["score"] for r in result) == pytest.approx(1.0, abs=1e-4)

    out_t = M.export_merged(model, processor, tmp_path / "merged_t", temperature=2.0)
    scaled = AutoModelForImageClassification.from_pretrained(out_t)
    torch.testing.assert_close(logits(scaled, x).softmax(-1), (unmerged / 2.0).softmax(-1), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("arch", ["vit", "mobilenetv2_100"])
def test_fold_temperature(arch, hf_dirs, lora_trained):
    _, model, _ = build(arch, hf_dirs, pretrained=False)
    x = torch.randn(2, 3, size(arch), size(arch))
    before = logits(model, x)
    M.fold_temperature(model, 2.5)
    after = logits(model, x)
    torch.testing.assert_close(after, before / 2.5, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(after.softmax(-1), (before / 2.5).softmax(-1))
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="temperature"):
            M.fold_temperature(model, bad)

    peft_model = copy.deepcopy(lora_trained(arch)[1])
    before = logits(peft_model, x)
    wrapper = peft_model.get_base_model().get_submodule(M.head_module_names(peft_model)[0])
    assert M.classifier_layer(peft_model) is wrapper.modules_to_save["default"]
    M.fold_temperature(peft_model, 0.5)
    torch.testing.assert_close(logits(peft_model, x), before / 0.5, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("mode", ["lora", "partial", "full"])
def test_calibrated_export_reloads_to_the_merged_function(mode, hf_dirs, tmp_path):
    """train.py's exports (merged/ + adapter/ with calibration.json) and skin.hub's reload of the adapter
    give the same calibrated probabilities; a full fine-tuning run writes no adapter."""
    from transformers import AutoModelForImageClassification

    _, model, processor = build("efficientnet_lite0", hf_dirs)
    if mode != "full":
        M.freeze_batchnorm(model)
    model, state = M.prepare_finetune(model, mode, lora_r=4, unfreeze_last=1)
    train_steps(model, "efficientnet_lite0")
    x = processor(pil(4), return_tensors="pt")["pixel_values"]
    expected = (logits(model, x) / 1.7).softmax(-1)

    paths = M.export_calibrated(model, processor, tmp_path, state=state, temperature=1.7)
    merged = AutoModelForImageClassification.from_pretrained(paths["merged"])
    torch.testing.assert_close(logits(merged, x).softmax(-1), expected, atol=1e-5, rtol=1e-4)
    if mode == "full":
        assert set(paths) == {"merged"}
        return
    assert M.read_temperature(paths["adapter"]) == pytest.approx(1.7)
    reloaded, _ = M.load_calibrated(paths["adapter"])
    assert not any(p.requires_grad for p in reloaded.parameters())
    assert type(reloaded) is type(merged)  # LoRA merged away: a plain transformers classifier
    torch.testing.assert_close(logits(reloaded, x).softmax(-1), expected, atol=1e-5, rtol=1e-4)


def test_calibrated_leaves_the_model_as_it_was(lora_trained):
    _, model, processor, _, _ = lora_trained("efficientnet_lite0")
    x = processor(pil(5), return_tensors="pt")["pixel_values"]
    before = logits(model, x)
    deployable = M.calibrated(model, 3.0)
    torch.testing.assert_close(logits(deployable, x), before / 3.0, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(logits(model, x), before)
    assert M.read_temperature("/nonexistent") == 1.0

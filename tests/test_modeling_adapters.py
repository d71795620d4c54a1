"""skin.modeling.state and skin.modeling.adapters: FinetuneState in the adapter JSON, save / load adapters."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from skin import modeling as M
from skin.modeling import ADAPTER_STATE_FILE, FinetuneMode, FinetuneState
from tests.modeling_helpers import (ALL_ARCHS, build, hf_dirs, lora_trained, logits, pil,  # noqa: F401
                                    train_steps)

MODELS = Path(__file__).resolve().parents[1] / "models"


# --------------------------------------------------------------------- FinetuneState


def test_finetune_state_round_trips_through_save_and_load(tmp_path):
    state = FinetuneState(FinetuneMode.PARTIAL, "efficientnet_lite0", ["a", "b"], image_size=200, crop_pct=1.0,
                          unfrozen_modules=["timm_model.blocks.6", "timm_model.bn2"])
    path = state.save_pretrained(tmp_path)
    assert path == tmp_path / ADAPTER_STATE_FILE
    assert FinetuneState.from_pretrained(tmp_path) == state
    lora = FinetuneState("lora", "some/vit", ("x", "y", "z"))
    lora.save_pretrained(tmp_path / "lora")
    loaded = FinetuneState.from_pretrained(tmp_path / "lora")
    assert loaded == lora and loaded.mode is FinetuneMode.LORA
    assert FinetuneState.from_dict(lora.to_dict()) == lora
    with pytest.raises(ValueError, match="adapter"):
        FinetuneState("adapter", "x", ("a",))


@pytest.mark.parametrize("name", ["condition", "clinical", "age"])
def test_embedded_adapter_json_reads_as_a_state(name):
    """The adapters in models/ were written before FinetuneState; their JSON reads as the same state and
    writes back the same keys and values (an adapter without ``finetune_mode`` is LoRA)."""
    folder = MODELS / name / "adapter"
    if not folder.is_dir():
        pytest.skip(f"models/{name} not built")
    raw = json.loads((folder / ADAPTER_STATE_FILE).read_text())
    state = FinetuneState.from_pretrained(folder)
    assert state.mode is FinetuneMode(raw.get("finetune_mode", "lora"))
    assert (state.base_model, list(state.labels)) == (raw["base_model_name_or_path"], raw["labels"])
    assert (state.image_size, state.crop_pct) == (raw["image_size"], raw["crop_pct"])
    assert list(state.unfrozen_modules) == raw.get("unfrozen_modules", [])
    assert state.to_dict() == {**raw, "finetune_mode": state.mode.value}


# --------------------------------------------------------------------- LoRA adapters


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_adapter_roundtrip_identical_logits(arch, lora_trained, tmp_path):
    name, model, processor, state, _ = lora_trained(arch)
    x = processor(pil(2), return_tensors="pt")["pixel_values"]
    expected = logits(model, x)
    M.save_adapter(model, tmp_path / "adapter", state)
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    reloaded, reloaded_processor, reloaded_state = M.load_adapter(tmp_path / "adapter")
    assert reloaded_state == state
    assert reloaded.peft_config["default"].base_model_name_or_path == name
    torch.testing.assert_close(reloaded_processor(pil(2), return_tensors="pt")["pixel_values"], x)
    torch.testing.assert_close(logits(reloaded, x), expected, atol=1e-5, rtol=1e-5)
    # another input size: the timm CNNs take it; a Hub model's processor fixes it, so it is refused
    if name in M.list_wheel_models():
        _, resized, resized_state = M.load_adapter(tmp_path / "adapter", image_size=40)
        assert resized(pil(2), return_tensors="pt")["pixel_values"].shape[-2:] == (40, 40)
        assert resized_state == state.replace(image_size=40)
    else:
        with pytest.raises(ValueError, match="drop --image_size"):
            M.load_adapter(tmp_path / "adapter", image_size=40)


def test_loading_a_lora_adapter_leaves_no_deprecation_line_in_the_log(lora_trained, tmp_path):
    """peft reads transformers' deprecated ``is_gradient_checkpointing`` when it wraps a model; the server log
    of every LoRA model load showed that FutureWarning. skin.modeling silences that one message only."""
    _, model, _, state, _ = lora_trained("vit")
    M.save_adapter(model, tmp_path, state)
    with warnings.catch_warnings(record=True) as caught:
        M.load_adapter(tmp_path)
        warnings.warn("another FutureWarning still shows", FutureWarning)
    messages = [str(w.message) for w in caught if w.category is FutureWarning]
    assert messages == ["another FutureWarning still shows"]


def test_plain_peft_adapter_needs_labels(lora_trained, tmp_path):
    """A LoRA folder without skinlens_adapter.json names its base in peft's config; labels are passed."""
    name, model, _, state, _ = lora_trained("vit")
    M.save_adapter(model, tmp_path, state)
    (tmp_path / ADAPTER_STATE_FILE).unlink()
    with pytest.raises(ValueError, match="labels"):
        M.load_adapter(tmp_path)
    _, _, loaded = M.load_adapter(tmp_path, ["p", "q", "r"])
    assert (loaded.mode, loaded.base_model, loaded.labels) == (FinetuneMode.LORA, name, ("p", "q", "r"))


def test_save_adapter_refuses_a_state_of_another_mode(lora_trained, hf_dirs, tmp_path):
    _, model, _, state, _ = lora_trained("vit")
    with pytest.raises(ValueError, match="PeftModel"):
        M.save_adapter(model, tmp_path, state.replace(mode="partial"))
    _, full, _ = build("vit", hf_dirs)
    full, full_state = M.prepare_finetune(full, "full")
    with pytest.raises(ValueError, match="LoRA or partial"):
        M.save_adapter(full, tmp_path, full_state)


# --------------------------------------------------------------------- partial unfreezing


def test_partial_adapter_reloads_identically(hf_dirs, tmp_path):
    name, model, processor = build("efficientnet_lite0", hf_dirs)
    M.freeze_batchnorm(model)
    model, state = M.prepare_finetune(model, "partial", unfreeze_last=2)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    train_steps(model, "efficientnet_lite0")

    x = processor(pil(3), return_tensors="pt")["pixel_values"]
    expected = logits(model, x)
    M.save_adapter(model, tmp_path / "adapter", state)
    meta = json.loads((tmp_path / "adapter" / ADAPTER_STATE_FILE).read_text())
    assert meta["finetune_mode"] == "partial" and meta["unfrozen_modules"] == list(state.unfrozen_modules)
    saved = (tmp_path / "adapter" / M.PARTIAL_WEIGHTS_FILE).stat().st_size
    assert saved < 0.9 * sum(p.numel() for p in model.parameters()) * 4  # the trained modules only
    reloaded, _, reloaded_state = M.load_adapter(tmp_path / "adapter")
    assert reloaded_state == state
    assert not any(p.requires_grad for p in reloaded.parameters())
    torch.testing.assert_close(logits(reloaded, x), expected, atol=1e-5, rtol=1e-5)
    trainable_again, _, _ = M.load_adapter(tmp_path / "adapter", is_trainable=True)
    assert {n for n, p in trainable_again.named_parameters() if p.requires_grad} == trainable


def test_partial_adapter_of_another_backbone_is_refused(hf_dirs, tmp_path):
    _, other, _ = build("mobilenetv2_100", hf_dirs, pretrained=False)
    other, state = M.prepare_finetune(other, "partial", unfreeze_last=1)
    M.save_adapter(other, tmp_path / "mnv2", state)
    state.replace(base_model="efficientnet_lite0").save_pretrained(tmp_path / "mnv2")
    with pytest.raises(ValueError, match="does not fit"):
        M.load_adapter(tmp_path / "mnv2")

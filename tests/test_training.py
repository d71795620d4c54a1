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
from skin.training import AUTO_AUGMENTS, Augment, SkinTrainer, batch_mix, train_transform

SPEC = {"size": 32, "mean": [0.5] * 3, "std": [0.5] * 3}


@pytest.mark.parametrize("name", AUTO_AUGMENTS)
def test_every_auto_augment_makes_a_normalised_tensor(name):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8))
    x = train_transform(SPEC, Augment(auto_augment=name))(image)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32


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

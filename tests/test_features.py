"""skin.features: the feature map the prediction path records, and the head that reads it."""

from __future__ import annotations

import torch

from skin.features import capture_features, head_of, timm_body
from tests.explain_models import lesion_image, tiny_effnet, tiny_vit


def test_timm_cnn_records_its_last_feature_map_and_the_head_reads_it():
    model = tiny_effnet()
    x = lesion_image(64)
    with torch.inference_mode(), capture_features(model) as store:
        logits = model(pixel_values=x).logits
    assert timm_body(model) is model.timm_model
    assert store["features"].shape[:2] == (1, 1280) and not store["features"].requires_grad
    with torch.no_grad():
        torch.testing.assert_close(head_of(model)(store["features"]), logits)
    with torch.no_grad():  # the hook is gone after the block
        model(pixel_values=lesion_image(64, seed=1))
    torch.testing.assert_close(head_of(model)(store["features"]), logits)


def test_other_architectures_record_nothing():
    vit = tiny_vit()
    assert timm_body(vit) is None and head_of(vit) is None
    with torch.no_grad(), capture_features(vit) as store:
        vit(pixel_values=lesion_image(32))
    assert store == {}

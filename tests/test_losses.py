"""Tests for skin.losses against values worked out by hand with math.log / math.exp."""

import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest
import torch

from skin.losses import (
    LOSS_NAMES,
    SOFT_TARGET_LOSSES,
    ClassificationLoss,
    class_balanced_weights,
    make_loss,
    ordinal_smoothing_targets,
    trainer_loss,
)

# Two samples, three classes.
LOGITS = torch.tensor([[2.0, 1.0, 0.0], [0.5, 0.5, -1.0]])
LABELS = torch.tensor([0, 2])


def _log_probs_by_hand():
    s0 = math.exp(2.0) + math.exp(1.0) + math.exp(0.0)
    s1 = math.exp(0.5) + math.exp(0.5) + math.exp(-1.0)
    lp0 = [2.0 - math.log(s0), 1.0 - math.log(s0), 0.0 - math.log(s0)]
    lp1 = [0.5 - math.log(s1), 0.5 - math.log(s1), -1.0 - math.log(s1)]
    return lp0, lp1


def test_ce():
    lp0, lp1 = _log_probs_by_hand()
    expected = (-lp0[0] - lp1[2]) / 2
    loss = make_loss("ce", num_classes=3)
    assert float(loss(LOGITS, LABELS)) == pytest.approx(expected, rel=1e-6)
    assert float(loss(LOGITS, LABELS, reduction="sum")) == pytest.approx(2 * expected, rel=1e-6)
    per = loss(LOGITS, LABELS, reduction="none")
    assert per.tolist() == pytest.approx([-lp0[0], -lp1[2]], rel=1e-6)
    # Same as torch's cross-entropy.
    assert float(loss(LOGITS, LABELS)) == pytest.approx(float(torch.nn.functional.cross_entropy(LOGITS, LABELS)))


def test_label_smoothing():
    lp0, lp1 = _log_probs_by_hand()
    eps = 0.1
    on, off = 1 - eps + eps / 3, eps / 3
    l0 = -(on * lp0[0] + off * lp0[1] + off * lp0[2])
    l1 = -(off * lp1[0] + off * lp1[1] + on * lp1[2])
    loss = make_loss("label_smoothing", num_classes=3, label_smoothing=eps)
    assert float(loss(LOGITS, LABELS)) == pytest.approx((l0 + l1) / 2, rel=1e-6)
    torch_ls = torch.nn.functional.cross_entropy(LOGITS, LABELS, label_smoothing=eps)
    assert float(loss(LOGITS, LABELS)) == pytest.approx(float(torch_ls), rel=1e-6)


def test_focal():
    lp0, lp1 = _log_probs_by_hand()
    gamma = 2.0
    p0, p1 = math.exp(lp0[0]), math.exp(lp1[2])
    l0 = -((1 - p0) ** gamma) * math.log(p0)
    l1 = -((1 - p1) ** gamma) * math.log(p1)
    loss = make_loss("focal", num_classes=3, gamma=gamma)
    assert float(loss(LOGITS, LABELS)) == pytest.approx((l0 + l1) / 2, rel=1e-6)
    # gamma = 0 is plain cross-entropy.
    assert float(make_loss("focal", num_classes=3, gamma=0.0)(LOGITS, LABELS)) == pytest.approx(
        float(make_loss("ce", num_classes=3)(LOGITS, LABELS)), rel=1e-6
    )


def _cb_weights_by_hand(counts, beta):
    raw = [(1 - beta) / (1 - beta**n) for n in counts]
    return [w / sum(raw) * len(counts) for w in raw]


def test_class_balanced_weights():
    counts, beta = [100, 10, 1], 0.99
    expected = _cb_weights_by_hand(counts, beta)
    # e.g. class 2 (one sample): (1 - 0.99) / (1 - 0.99) = 1
    assert (1 - beta) / (1 - beta**1) == pytest.approx(1.0)
    weights = class_balanced_weights(counts, beta)
    assert weights.tolist() == pytest.approx(expected, rel=1e-6)
    assert float(weights.sum()) == pytest.approx(3.0)
    assert weights[2] > weights[1] > weights[0]
    assert class_balanced_weights([5, 50, 500], 0.0).tolist() == pytest.approx([1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="class index"):
        class_balanced_weights([3, 0, 2], 0.99)
    with pytest.raises(ValueError, match="beta"):
        class_balanced_weights([3, 1, 2], 1.0)


def test_cb_ce_and_cb_focal():
    lp0, lp1 = _log_probs_by_hand()
    counts, beta, gamma = [100, 10, 1], 0.99, 2.0
    w = _cb_weights_by_hand(counts, beta)
    cb_ce = make_loss("cb_ce", num_classes=3, class_counts=counts, beta=beta)
    expected = (w[0] * -lp0[0] + w[2] * -lp1[2]) / 2  # mean over samples (Cui et al.)
    assert float(cb_ce(LOGITS, LABELS)) == pytest.approx(expected, rel=1e-6)

    p0, p1 = math.exp(lp0[0]), math.exp(lp1[2])
    f0 = -((1 - p0) ** gamma) * math.log(p0)
    f1 = -((1 - p1) ** gamma) * math.log(p1)
    cb_focal = make_loss("cb_focal", num_classes=3, class_counts=counts, beta=beta, gamma=gamma)
    assert float(cb_focal(LOGITS, LABELS)) == pytest.approx((w[0] * f0 + w[2] * f1) / 2, rel=1e-6)

    with pytest.raises(ValueError, match="class_counts"):
        make_loss("cb_ce", num_classes=3)
    with pytest.raises(ValueError, match="entries"):
        make_loss("cb_ce", num_classes=3, class_counts=[1, 2])


def test_masked_label_smoothing_targets():
    eps = 0.2
    targets = ordinal_smoothing_targets(torch.tensor([0, 1, 2, 3]), 4, eps)
    # Edge grades give all of eps to their single neighbour; inner grades split it.
    expected = [
        [0.8, 0.2, 0.0, 0.0],
        [0.1, 0.8, 0.1, 0.0],
        [0.0, 0.1, 0.8, 0.1],
        [0.0, 0.0, 0.2, 0.8],
    ]
    assert targets.tolist() == [pytest.approx(row) for row in expected]
    assert targets.sum(-1).tolist() == pytest.approx([1.0] * 4)


def test_masked_label_smoothing_loss():
    logits = torch.tensor([[1.0, 0.0, -1.0, 0.5], [0.0, 2.0, 0.0, 0.0]])
    labels = torch.tensor([0, 1])
    s0 = math.exp(1.0) + math.exp(0.0) + math.exp(-1.0) + math.exp(0.5)
    s1 = math.exp(0.0) + math.exp(2.0) + math.exp(0.0) + math.exp(0.0)
    # sample 0 (edge grade 0): 0.8 on grade 0, 0.2 on grade 1
    l0 = -(0.8 * (1.0 - math.log(s0)) + 0.2 * (0.0 - math.log(s0)))
    # sample 1 (grade 1): 0.1 on grade 0, 0.8 on grade 1, 0.1 on grade 2
    l1 = -(0.1 * (0.0 - math.log(s1)) + 0.8 * (2.0 - math.log(s1)) + 0.1 * (0.0 - math.log(s1)))
    loss = make_loss("masked_label_smoothing", num_classes=4, label_smoothing=0.2)
    assert float(loss(logits, labels)) == pytest.approx((l0 + l1) / 2, rel=1e-6)


def test_ignore_index_and_validation():
    lp0, _ = _log_probs_by_hand()
    for name in LOSS_NAMES:
        loss = make_loss(name, num_classes=3, class_counts=[3, 2, 1])
        value = loss(LOGITS, torch.tensor([0, -100]))
        assert torch.isfinite(value)
        per = loss(LOGITS, torch.tensor([0, -100]), reduction="none")
        assert float(per[1]) == 0.0
        assert float(value) == pytest.approx(float(per[0]))
    assert float(make_loss("ce", num_classes=3)(LOGITS, torch.tensor([0, -100]))) == pytest.approx(-lp0[0])
    with pytest.raises(ValueError, match="Unknown loss"):
        make_loss("dice", num_classes=3)
    with pytest.raises(ValueError, match="labels must be in"):
        make_loss("ce", num_classes=3)(LOGITS, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="shape"):
        make_loss("ce", num_classes=4)(LOGITS, LABELS)


def test_losses_have_gradients():
    logits = LOGITS.clone().requires_grad_(True)
    for name in LOSS_NAMES:
        loss = make_loss(name, num_classes=3, class_counts=[5, 3, 1])
        (grad,) = torch.autograd.grad(loss(logits, LABELS), logits)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_trainer_loss_signature_and_scaling():
    from transformers.modeling_outputs import ImageClassifierOutput

    lp0, lp1 = _log_probs_by_hand()
    fn = trainer_loss(make_loss("ce", num_classes=3))
    outputs = ImageClassifierOutput(logits=LOGITS)
    assert float(fn(outputs, LABELS)) == pytest.approx((-lp0[0] - lp1[2]) / 2, rel=1e-6)
    # With gradient accumulation Trainer passes the labelled items of the whole
    # accumulated batch and does not rescale the loss itself: sum / items.
    value = fn(outputs, LABELS, num_items_in_batch=torch.tensor(4))
    assert float(value) == pytest.approx((-lp0[0] - lp1[2]) / 4, rel=1e-6)
    assert float(fn((LOGITS,), LABELS)) == pytest.approx((-lp0[0] - lp1[2]) / 2, rel=1e-6)
    with pytest.raises(ValueError, match="labels"):
        fn(outputs, None)


def test_trainer_calls_compute_loss_func(tmp_path):
    """A real Trainer step on a tiny ViT uses our function with its own call signature."""
    from transformers import Trainer, TrainingArguments, ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        image_size=32, patch_size=8, num_labels=3,
    )
    model = ViTForImageClassification(config)
    data = [{"pixel_values": torch.randn(3, 32, 32), "labels": i % 3} for i in range(8)]
    calls = []
    inner = trainer_loss(make_loss("cb_focal", num_classes=3, class_counts=[4, 2, 2]))

    def spy(outputs, labels, num_items_in_batch=None):
        calls.append(int(num_items_in_batch) if num_items_in_batch is not None else None)
        return inner(outputs, labels, num_items_in_batch=num_items_in_batch)

    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=2, gradient_accumulation_steps=2,
        max_steps=2, report_to="none", save_strategy="no", use_cpu=True, logging_steps=1,
        dataloader_num_workers=0,
    )
    trainer = Trainer(model=model, args=args, train_dataset=data, compute_loss_func=spy)
    result = trainer.train()
    assert calls == [4, 4, 4, 4]  # two micro-batches of 2 per optimizer step
    assert math.isfinite(result.training_loss) and result.training_loss > 0


@pytest.mark.parametrize("name", SOFT_TARGET_LOSSES)
def test_soft_targets_match_integer_labels_and_mix_linearly(name):
    """One-hot probabilities give the integer labels' loss; a MixUp target ``lam * a + (1 - lam) * b``
    gives ``lam * loss(a) + (1 - lam) * loss(b)`` per sample (Zhang et al.'s mixed loss)."""
    loss = make_loss(name, num_classes=3, class_counts=[5, 3, 1], label_smoothing=0.1)
    other = torch.tensor([1, 0])
    onehot = torch.nn.functional.one_hot(LABELS, 3).float()
    assert torch.allclose(loss(LOGITS, onehot, reduction="none"), loss(LOGITS, LABELS, reduction="none"))
    lam = 0.3
    mixed = lam * onehot + (1 - lam) * torch.nn.functional.one_hot(other, 3).float()
    expected = lam * loss(LOGITS, LABELS, reduction="none") + (1 - lam) * loss(LOGITS, other, reduction="none")
    assert torch.allclose(loss(LOGITS, mixed, reduction="none"), expected, atol=1e-6)
    assert float(loss(LOGITS, mixed)) == pytest.approx(float(expected.mean()), rel=1e-6)
    assert float(loss(LOGITS, mixed, reduction="sum")) == pytest.approx(float(expected.sum()), rel=1e-6)


@pytest.mark.parametrize("name", sorted(set(LOSS_NAMES) - set(SOFT_TARGET_LOSSES)))
def test_losses_without_soft_targets_refuse_them_by_name(name):
    loss = make_loss(name, num_classes=3, class_counts=[5, 3, 1])
    with pytest.raises(ValueError, match="integer labels only.*label_smoothing"):
        loss(LOGITS, torch.full((2, 3), 1 / 3))
    with pytest.raises(ValueError, match="shape"):
        make_loss("ce", num_classes=3)(LOGITS, torch.full((2, 4), 0.25))


def _hand_written_loss(name, logits, labels, *, num_classes, counts, eps, gamma, beta, reduction):
    """The hand-written losses that torch's cross_entropy replaced, kept as the reference."""
    valid = labels != -100
    safe = torch.where(valid, labels, torch.zeros_like(labels))
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    log_p_true = log_probs.gather(1, safe[:, None]).squeeze(1)
    if name == "label_smoothing":
        targets = torch.full_like(log_probs, eps / num_classes)
        targets.scatter_add_(1, safe[:, None], torch.full_like(log_p_true[:, None], 1.0 - eps))
        per_sample = -(targets * log_probs).sum(-1)
    elif name == "masked_label_smoothing":
        per_sample = -(ordinal_smoothing_targets(safe, num_classes, eps) * log_probs).sum(-1)
    else:
        per_sample = -log_p_true
        if "focal" in name:
            per_sample = (1.0 - log_p_true.exp()).clamp_min(0.0).pow(gamma) * per_sample
        if name.startswith("cb_"):
            per_sample = class_balanced_weights(counts, beta)[safe] * per_sample
    per_sample = torch.where(valid, per_sample, torch.zeros_like(per_sample))
    if reduction == "none":
        return per_sample
    total = per_sample[valid].sum()
    return total if reduction == "sum" else total / valid.sum().clamp_min(1)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_library_losses_equal_the_hand_written_ones(name):
    """torch's cross_entropy (weight=, label_smoothing=, ignore_index=) gives the old values."""
    gen = torch.Generator().manual_seed(0)
    num_classes, counts = 5, [40, 7, 3, 120, 1]
    logits = torch.randn(64, num_classes, generator=gen) * 4
    labels = torch.randint(0, num_classes, (64,), generator=gen)
    labels[::7] = -100
    kwargs = dict(eps=0.15, gamma=1.5, beta=0.99)
    loss = make_loss(name, num_classes=num_classes, class_counts=counts, label_smoothing=kwargs["eps"],
                     gamma=kwargs["gamma"], beta=kwargs["beta"])
    assert isinstance(loss, ClassificationLoss) and isinstance(loss, torch.nn.Module)
    for reduction in ("mean", "sum", "none"):
        old = _hand_written_loss(name, logits, labels, num_classes=num_classes, counts=counts,
                                 reduction=reduction, **kwargs)
        torch.testing.assert_close(loss(logits, labels, reduction=reduction), old, rtol=1e-6, atol=1e-6)
    # the gradients agree too
    a, b = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    loss(a, labels).backward()
    _hand_written_loss(name, b, labels, num_classes=num_classes, counts=counts, reduction="mean",
                       **kwargs).backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7)


def test_only_ignored_labels_give_zero_not_nan():
    for name in LOSS_NAMES:
        loss = make_loss(name, num_classes=3, class_counts=[3, 2, 1])
        assert float(loss(LOGITS, torch.tensor([-100, -100]))) == 0.0


def test_train_offers_the_loss_names_of_the_factory():
    import train

    assert train.LOSS_NAMES is LOSS_NAMES

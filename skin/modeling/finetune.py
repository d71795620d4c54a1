"""Fine-tuning modes (LoRA / head / full / partial), phased schedules and BatchNorm freezing.

Fine-tuning follows PEFT (Hu et al., 2021, "LoRA"): :func:`prepare_finetune`
adds LoRA adapters to the attention / pointwise projections and keeps the new
classifier fully trainable (``modules_to_save``). The other modes only choose
which parameters train. :func:`prepare_finetune` returns the model together
with its :class:`~skin.modeling.state.FinetuneState`, which the phase switch and
the adapter writer read instead of attributes stored on the module.
"""

from __future__ import annotations

from enum import Enum

import torch

from skin.modeling.factory import (batchnorm_module_names, head_module_names, is_peft_model, is_timm_wrapper,
                                   lora_target_modules, quiet_peft_wrap, unfrozen_module_names, unwrap)
from skin.modeling.state import FinetuneMode, FinetuneState
from skin.modeling.wheels import INSTALL_HINT


class Phase(str, Enum):
    """A step of a phased schedule (``--head_epochs``): the head alone, then all the mode allows."""

    HEAD = "head"
    ALL = "all"


def _parse(enum, value, what: str):
    try:
        return enum(value)
    except ValueError:
        raise ValueError(f"Unknown {what} {value!r}; choose one of {[m.value for m in enum]}") from None


def _add_lora(model, *, lora_r: int, lora_alpha: int, lora_dropout: float, target_modules, base_model):
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as err:  # pragma: no cover
        raise ImportError(f"LoRA needs peft; {INSTALL_HINT}") from err
    if lora_r < 1:
        raise ValueError(f"lora_r must be >= 1, got {lora_r}")
    if not 0 <= lora_dropout < 1:
        raise ValueError(f"lora_dropout must be in [0, 1), got {lora_dropout}")
    config = LoraConfig(
        r=lora_r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        target_modules=list(target_modules) if target_modules else lora_target_modules(model),
        modules_to_save=head_module_names(model) + batchnorm_module_names(model),
        bias="none",
    )
    with quiet_peft_wrap():
        model = get_peft_model(model, config)  # leaves only LoRA + modules_to_save trainable
    model.peft_config["default"].base_model_name_or_path = base_model
    return model


def prepare_finetune(
    model: torch.nn.Module,
    mode: FinetuneMode | str,
    *,
    lora_r: int = 8,
    lora_alpha: int = 16,
    lora_dropout: float = 0.0,
    target_modules: list[str] | None = None,
    base_model_name_or_path: str | None = None,
    unfreeze_last: int = 2,
) -> tuple[torch.nn.Module, FinetuneState]:
    """Make ``model`` ready for one fine-tuning mode; return it and its :class:`FinetuneState`.

    * ``lora``: ``peft.get_peft_model`` with LoRA on ``target_modules``
      (default :func:`~skin.modeling.factory.lora_target_modules`) and the
      classifier in ``modules_to_save`` (trained in full and saved with the
      adapter), together with any BatchNorm layers (see
      :func:`~skin.modeling.factory.batchnorm_module_names`).
    * ``head``: linear probe; everything but the classifier is frozen.
    * ``full``: every parameter trains.
    * ``partial``: partial unfreezing. The last ``unfreeze_last`` stages of the
      backbone (:func:`~skin.modeling.factory.unfrozen_module_names`) and the
      classifier train in full; everything below stays frozen with ImageNet
      BatchNorm statistics, so the backward pass stops at the first unfrozen
      stage (cheaper than LoRA on a CNN, where LoRA still back-propagates
      through every high-resolution stage). ``save_adapter`` then stores just
      those modules' weights and BatchNorm statistics (peft cannot: it refuses a
      config that adapts no module), and ``load_adapter`` puts them back on the
      wheel backbone.

    The state's base model is ``base_model_name_or_path``, by default the name
    ``create_model`` was given (``model.name_or_path``); it is what the adapter
    reloads from. Freezing does not stop BatchNorm running statistics from
    updating in ``train()`` mode: call :func:`freeze_batchnorm` first for that.
    """
    mode = _parse(FinetuneMode, mode, "fine-tuning mode")
    if mode in (FinetuneMode.LORA, FinetuneMode.PARTIAL) and is_peft_model(model):
        raise ValueError("model already has a PEFT adapter; call prepare_finetune on the base model")
    base_model = base_model_name_or_path or getattr(model, "name_or_path", None) or None
    unfrozen: list[str] = []
    if mode is FinetuneMode.LORA:
        model = _add_lora(model, lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                          target_modules=target_modules, base_model=base_model)
    elif mode is FinetuneMode.PARTIAL:
        unfrozen = unfrozen_module_names(model, unfreeze_last)
        unfreeze_batchnorm_in(model, unfrozen)
    state = FinetuneState.from_config(unwrap(model).config, mode, base_model, unfrozen)
    if mode is not FinetuneMode.LORA:
        set_trainable_phase(model, Phase.ALL, state)
    return model, state


def _head_params(model: torch.nn.Module):
    """(name, parameter) pairs of the classification head (peft: its trained copy)."""
    heads = head_module_names(model)
    if is_peft_model(model):
        return [(n, p) for n, p in model.named_parameters() if any(f"{h}.modules_to_save." in n for h in heads)]
    return [(n, p) for n, p in model.named_parameters() if any(n == h or n.startswith(h + ".") for h in heads)]


def set_trainable_phase(model: torch.nn.Module, phase: Phase | str,
                        state: FinetuneState | None = None) -> torch.nn.Module:
    """Switch between phases of a phased schedule (head first, then the rest).

    ``head``: only the classifier trains (for a PeftModel: the
    ``modules_to_save`` copy; the LoRA weights are frozen). ``all``: everything
    the fine-tuning mode allows trains (LoRA + head, head only, the unfrozen
    stages + head, or all weights). Without a ``state`` a PeftModel counts as
    ``lora`` and any other model as ``full``.
    """
    phase = _parse(Phase, phase, "phase")
    if state is not None:
        mode = state.mode
    else:
        mode = FinetuneMode.LORA if is_peft_model(model) else FinetuneMode.FULL
    model.requires_grad_(False)
    if phase is Phase.ALL and mode is FinetuneMode.FULL:
        model.requires_grad_(True)
    elif phase is Phase.ALL and mode is FinetuneMode.PARTIAL:
        for name in state.unfrozen_modules:
            unwrap(model).get_submodule(name).requires_grad_(True)
    elif phase is Phase.ALL and mode is FinetuneMode.LORA:
        for name, param in model.named_parameters():
            if "lora_" in name or ".modules_to_save." in name:
                param.requires_grad_(True)
    for _, param in _head_params(model):
        param.requires_grad_(True)
    return model


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts.

    A PeftModel counts itself (``get_nb_trainable_parameters``): its total
    includes the LoRA weights and the frozen original of the head next to its
    trainable copy.
    """
    if is_peft_model(model):
        return model.get_nb_trainable_parameters()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def freeze_batchnorm(model: torch.nn.Module) -> None:
    """Use ImageNet BatchNorm statistics, fixed, in LoRA / head-only / partial modes.

    Otherwise running statistics drift during training and are saved neither in
    the adapter nor restored on reload, so adapter + base would not reproduce
    the trained model. Only timm CNN bodies have BatchNorm; others are left alone.
    """
    body = getattr(model, "timm_model", None)
    if body is not None:
        from timm.layers import freeze_batch_norm_2d

        model.timm_model = freeze_batch_norm_2d(body)


def unfreeze_batchnorm(model: torch.nn.Module) -> None:
    """Turn timm's FrozenBatchNorm back into ordinary BatchNorm (same statistics), so an exported
    checkpoint holds the module types ``from_pretrained`` rebuilds."""
    body = getattr(model, "timm_model", None)
    if body is not None:
        from timm.layers import unfreeze_batch_norm_2d

        model.timm_model = unfreeze_batch_norm_2d(body)


def unfreeze_batchnorm_in(model: torch.nn.Module, names: list[str] | tuple[str, ...]) -> None:
    """Turn timm's FrozenBatchNorm back into trainable BatchNorm inside ``names`` (partial mode)."""
    base = unwrap(model)
    if not is_timm_wrapper(base):
        return
    from timm.layers import unfreeze_batch_norm_2d

    for name in names:
        module = base.get_submodule(name)
        new = unfreeze_batch_norm_2d(module)
        if new is not module:
            base.set_submodule(name, new)

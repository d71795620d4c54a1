"""The calibrated model: LoRA merged, BatchNorm restored, temperature folded; exported and reloaded.

One recipe, :func:`calibrated`, turns a fine-tuned model into the function the
app serves: a plain ``transformers`` classifier whose softmax is
temperature-scaled (Guo et al., ICML 2017) with no extra code at inference.
``train.py`` (through ``skin.reporting``) writes it with
:func:`export_calibrated` (``merged/`` plus, for LoRA and partial runs,
``adapter/`` with ``calibration.json``); ``skin.hub`` rebuilds the embedded
defaults from such an adapter folder with :func:`load_calibrated`. Both apply
the same steps in the same order, so an adapter reloads to the probabilities
of its merged export.
"""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path

import torch

from skin.modeling.adapters import load_adapter, save_adapter
from skin.modeling.factory import classifier_layer, is_peft_model
from skin.modeling.finetune import unfreeze_batchnorm
from skin.modeling.imports import transformers_attrs
from skin.modeling.state import FinetuneState

CALIBRATION_FILE = "calibration.json"  # {"temperature": T}, next to the adapter weights


@torch.no_grad()
def fold_temperature(model: torch.nn.Module, temperature: float) -> torch.nn.Module:
    """Divide the final layer's weight and bias by ``temperature`` in place.

    The logits become ``logits / T``, so ``softmax`` of the model equals
    temperature-scaled probabilities with no extra code at inference time.
    """
    temperature = float(temperature)
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    layer = classifier_layer(model)
    layer.weight.div_(temperature)
    if layer.bias is not None:
        layer.bias.div_(temperature)
    return model


def calibrated(model: torch.nn.Module, temperature: float = 1.0, *, inplace: bool = False) -> torch.nn.Module:
    """The deployable form of ``model``: LoRA merged (``merge_and_unload``), timm's frozen BatchNorm
    turned back into ordinary BatchNorm (same statistics), ``temperature`` folded into the classifier,
    eval mode, no trainable parameter.

    Works on a deep copy unless ``inplace``, so a model that keeps training or
    is evaluated further is left exactly as it was.
    """
    model = model if inplace else copy.deepcopy(model)
    if is_peft_model(model):
        model = model.merge_and_unload()
    unfreeze_batchnorm(model)
    if float(temperature) != 1.0:
        fold_temperature(model, temperature)
    model.eval()
    model.requires_grad_(False)
    return model


def export_merged(model: torch.nn.Module, processor, out_dir: str | os.PathLike, *,
                  temperature: float = 1.0) -> str:
    """Save :func:`calibrated` ``model`` as a self-contained checkpoint that ``pipeline`` loads offline.

    Weights are written as safetensors. For timm backbones the preprocessing is
    part of ``config.json`` (``pretrained_cfg``), as transformers stores it;
    other processors are saved with ``save_pretrained``.
    """
    (TimmWrapperImageProcessor,) = transformers_attrs("TimmWrapperImageProcessor")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    calibrated(model, temperature).save_pretrained(out, safe_serialization=True)
    if processor is not None and not isinstance(processor, TimmWrapperImageProcessor):
        processor.save_pretrained(out)
    return str(out)


def export_calibrated(model: torch.nn.Module, processor, run_dir: str | os.PathLike, *, state: FinetuneState,
                      temperature: float) -> dict[str, str]:
    """A run's exports: ``merged/`` (:func:`export_merged`) and, when the mode saves one,
    ``adapter/`` (:func:`~skin.modeling.adapters.save_adapter`) with its ``calibration.json``.

    Returns the written folders by name (``"merged"``, ``"adapter"``).
    """
    paths = {"merged": export_merged(model, processor, os.path.join(run_dir, "merged"), temperature=temperature)}
    if state.mode.saves_adapter:
        adapter_dir = save_adapter(model, os.path.join(run_dir, "adapter"), state)
        (Path(adapter_dir) / CALIBRATION_FILE).write_text(json.dumps({"temperature": float(temperature)}))
        paths["adapter"] = adapter_dir
    return paths


def read_temperature(adapter_dir: str | os.PathLike) -> float:
    """The temperature saved with an adapter, 1.0 (uncalibrated) when it has no ``calibration.json``."""
    path = Path(adapter_dir) / CALIBRATION_FILE
    return float(json.loads(path.read_text())["temperature"]) if path.is_file() else 1.0


def load_calibrated(adapter_dir: str | os.PathLike):
    """``(model, processor)``: the adapter on its rebuilt base, made :func:`calibrated` with its saved
    temperature; the same function as the ``merged/`` checkpoint exported beside it."""
    model, processor, _ = load_adapter(adapter_dir)
    return calibrated(model, read_temperature(adapter_dir), inplace=True), processor

"""What a fine-tuned model needs besides its weights, as one typed value saved with its adapter.

:class:`FinetuneState` records how a model was fine-tuned (the mode, the modules
partial unfreezing trains) and what rebuilds its base (the name given to
``create_model``, the labels, and for the timm CNNs the input size and crop).
``prepare_finetune`` returns it next to the model, ``set_trainable_phase`` and
``save_adapter`` take it, and ``load_adapter`` returns it, like a peft
``PeftConfig``: :meth:`FinetuneState.save_pretrained` and
:meth:`FinetuneState.from_pretrained` write and read the same JSON file,
``skinlens_adapter.json``, next to the adapter weights.

The file keeps the key names of the adapters embedded in ``models/*/adapter``;
those written before the mode was recorded are LoRA adapters (partial
unfreezing always wrote its mode), so a missing ``finetune_mode`` reads as
``"lora"``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

ADAPTER_STATE_FILE = "skinlens_adapter.json"


class FinetuneMode(str, Enum):
    """How a model is fine-tuned (``--finetune_mode``); a ``str`` so ``mode == "lora"`` still holds."""

    LORA = "lora"  # peft LoRA on the projections + trained head (and BatchNorm) as modules_to_save
    HEAD = "head"  # linear probe: only the classifier trains
    FULL = "full"  # every weight trains
    PARTIAL = "partial"  # the last stages of the backbone + the head train in full

    @property
    def saves_adapter(self) -> bool:
        """Whether the run writes an ``adapter/`` folder (small trained part + base name) besides ``merged/``."""
        return self in (FinetuneMode.LORA, FinetuneMode.PARTIAL)

    @property
    def freezes_batchnorm(self) -> bool:
        """Whether BatchNorm keeps its ImageNet statistics while training (all modes but ``full``)."""
        return self is not FinetuneMode.FULL


@dataclass(frozen=True)
class FinetuneState:
    """How a model was fine-tuned and what rebuilds its base; saved in the adapter's JSON."""

    mode: FinetuneMode
    base_model: str | None  # the name or path create_model was given (None: unknown, no adapter can be saved)
    labels: tuple[str, ...]
    image_size: int | None = None  # timm CNNs: input side in pixels (Hub models: their processor's)
    crop_pct: float | None = None  # timm CNNs: centre-crop fraction
    unfrozen_modules: tuple[str, ...] = field(default=())  # partial mode: modules trained besides the head

    def __post_init__(self):
        object.__setattr__(self, "mode", FinetuneMode(self.mode))
        object.__setattr__(self, "labels", tuple(str(label) for label in self.labels))
        object.__setattr__(self, "unfrozen_modules", tuple(self.unfrozen_modules))
        object.__setattr__(self, "base_model", str(self.base_model) if self.base_model else None)

    @classmethod
    def from_config(cls, config, mode: FinetuneMode | str, base_model: str | None,
                    unfrozen_modules: tuple[str, ...] | list[str] = ()) -> FinetuneState:
        """The state of a model whose transformers ``config`` holds the labels and (timm CNNs) the input size."""
        labels = [config.id2label[i] for i in range(config.num_labels)]
        pretrained_cfg = getattr(config, "pretrained_cfg", None)
        image_size = crop_pct = None
        if isinstance(pretrained_cfg, dict) and "input_size" in pretrained_cfg:
            image_size = int(pretrained_cfg["input_size"][-1])
            crop_pct = float(pretrained_cfg.get("crop_pct", 1.0))
        return cls(mode, base_model, labels, image_size, crop_pct, unfrozen_modules)

    def replace(self, **changes) -> FinetuneState:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"base_model_name_or_path": self.base_model, "labels": list(self.labels),
                                "finetune_mode": self.mode.value}
        if self.unfrozen_modules:
            meta["unfrozen_modules"] = list(self.unfrozen_modules)
        if self.image_size is not None:
            meta["image_size"] = self.image_size
        if self.crop_pct is not None:
            meta["crop_pct"] = self.crop_pct
        return meta

    @classmethod
    def from_dict(cls, meta: dict[str, Any]) -> FinetuneState:
        return cls(
            mode=meta.get("finetune_mode") or FinetuneMode.LORA,
            base_model=meta.get("base_model_name_or_path"),
            labels=meta.get("labels") or (),
            image_size=meta.get("image_size"),
            crop_pct=meta.get("crop_pct"),
            unfrozen_modules=meta.get("unfrozen_modules") or (),
        )

    def save_pretrained(self, out_dir: str | os.PathLike) -> Path:
        path = Path(out_dir) / ADAPTER_STATE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def from_pretrained(cls, adapter_dir: str | os.PathLike) -> FinetuneState:
        path = Path(adapter_dir) / ADAPTER_STATE_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{adapter_dir} has no {ADAPTER_STATE_FILE}: save the adapter with "
                                    "skin.modeling.save_adapter")
        return cls.from_dict(json.loads(path.read_text()))

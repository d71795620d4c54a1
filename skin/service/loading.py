"""One configured model, from its reference to a resident model ready for requests.

A reference is an embedded default (``default:condition``), a checkpoint
folder (safetensors only: pickles can run code) or a Hub id, read from the
local cache when the app is offline (:attr:`AppConfig.hub_offline`).
:func:`reference_problem` says what is wrong with one without loading
anything, so the app can start and name the fix; :func:`load_model` loads it.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skin.service.config import ModelSpec
from skin.tasks import TaskKind


@dataclass
class LoadedModel:
    """A resident model with its processor and labels; ``lock`` serialises its forward passes."""

    spec: ModelSpec
    model: Any
    processor: Any
    labels: list[str]
    kind: TaskKind
    lock: threading.Lock = field(default_factory=threading.Lock)

    def pixel_values(self, image):
        """The processor's tensor for one PIL image, ``(1, 3, H, W)``."""
        out = self.processor(images=image if image.mode == "RGB" else image.convert("RGB"), return_tensors="pt")
        return out["pixel_values"]


def reference_problem(spec: ModelSpec, *, hub_offline: bool) -> str | None:
    """Why ``spec.model`` cannot be loaded, checked without loading it (``None`` = looks usable)."""
    key, ref = spec.key, spec.model
    if ref.startswith("default:"):
        from skin.hub import default_dir

        try:
            default_dir(ref)
        except ValueError as e:
            return f"model '{key}' ({ref}) is not available: {e}"
        return None
    if os.path.isdir(ref):
        if not any(Path(ref).glob("*.safetensors")):
            return (f"model '{key}': {ref} has no *.safetensors weights (pickle checkpoints are refused): "
                    "re-export it with skin.models.export_merged")
        return None
    if "/" in ref and not ref.startswith((".", "/")):
        if hub_offline:
            from huggingface_hub import try_to_load_from_cache

            if not isinstance(try_to_load_from_cache(ref, "config.json"), str):
                return (f"model '{key}': Hub model {ref} is not in the local cache and the app does not "
                        "download: download it once (huggingface-cli download) or set HF_HUB_OFFLINE=0")
        return None
    return (f"model '{key}': {ref} is neither a folder, a Hub id (owner/name) nor an embedded default "
            "(default:condition, default:clinical, default:age)")


def load_model(spec: ModelSpec, *, hub_offline: bool) -> LoadedModel:
    """Model ``spec`` prepared for inference (BatchNorm folded, channels-last).

    Raises ``ValueError`` / ``OSError`` when the checkpoint cannot be read.
    Predictions and explanations both run on the one model returned.
    """
    from skin.inference import load_for_inference
    from skin.tasks import get_task, label_ages

    model, processor, labels = load_for_inference(spec.model, local_files_only=hub_offline)
    kind = get_task(spec.task).kind
    if kind is TaskKind.AGE:
        label_ages(labels)  # a model whose labels are not ages fails here, not on the first photo
    return LoadedModel(spec, model, processor, labels, kind)


def model_version(spec: ModelSpec) -> str:
    """A short fingerprint of what model ``spec`` scores a photo with: its reference, the content of its
    files (an embedded default's adapter, head and temperature; a checkpoint folder's files) and the
    framing of its input (a face model's crop geometry, :data:`skin.faces.CHIP_SIDE` / ``CHIP_SHIFT``).
    A history entry keeps it so that scores from an updated model are not read as a change of the skin.
    A Hub model is fingerprinted by its id alone (its files are not read for this)."""
    digest = hashlib.sha256(f"{spec.model}\0{spec.input}".encode())
    if spec.input == "face":
        from skin.faces import CHIP_SHIFT, CHIP_SIDE

        digest.update(f"\0chip {CHIP_SIDE} {CHIP_SHIFT}".encode())
    folder = None
    if spec.model.startswith("default:"):
        from skin.hub import default_dir

        folder = default_dir(spec.model) / "adapter"
    elif os.path.isdir(spec.model):
        folder = Path(spec.model)
    for path in sorted(folder.rglob("*")) if folder is not None else ():
        if path.is_file():
            digest.update(f"\0{path.relative_to(folder).as_posix()}\0".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:12]

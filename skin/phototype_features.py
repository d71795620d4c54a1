"""The photo-type gate's features read off one of the app's own models, so the gate costs no network of its own.

The gate (:mod:`skin.phototype`) is a logistic regression on pooled features.
Fitted on the ImageNet backbone's, it runs that backbone on every upload, a
second network before the model that answers. Fitted instead on features of a
model the app runs anyway (``default:condition``), it reads them off that
model's forward pass, which the prediction then reuses
(:meth:`skin.service.SkinLensService.photo_type`).

Which features: the global average pools of the outputs of several stages
(:data:`STAGES`: the last four of EfficientNet-Lite0's seven), concatenated.
Not the final 1280-channel map: fine-tuned to dermoscopy, it reads ordinary
photographs as skin, where the earlier, less specialised stages do not
(measured side by side in ``models/README.md``, "Photo type").

The gate is then tied to that model's weights: :func:`weights_sha256` is stored
with it, and a gate whose model has changed is refused with the command that
refits it.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

#: The stages (indices into a timm EfficientNet's ``blocks``) whose pooled outputs the gate reads.
STAGES = (3, 4, 5, 6)


@contextlib.contextmanager
def pooled_stages(model, stages: Sequence[int]) -> Iterator[dict[int, np.ndarray]]:
    """Record the global average pool of each stage's output during ``model``'s forward passes inside the
    block: ``with pooled_stages(m, STAGES) as store: m(x)``, then :func:`concat` ``(store, stages)``."""
    from skin.features import timm_body

    if not stages:  # a model the gate does not read
        yield {}
        return
    body = timm_body(model)
    blocks = getattr(body, "blocks", None)
    if blocks is None or max(stages) >= len(blocks):
        raise ValueError(f"photo-type features need a timm CNN with at least {max(stages) + 1} stages in "
                         f"'blocks'; {type(model).__name__} has none or fewer: fit the gate on the ImageNet "
                         "backbone instead (leave out --features-of)")
    store: dict[int, np.ndarray] = {}

    def hook(stage: int):
        def record(_module, _inputs, output) -> None:  # a forward hook must return None
            store[stage] = output.detach().float().mean(dim=(2, 3)).cpu().numpy()
        return record

    handles = [blocks[s].register_forward_hook(hook(s)) for s in stages]
    try:
        yield store
    finally:
        for h in handles:
            h.remove()


def concat(store: dict[int, np.ndarray], stages: Sequence[int]) -> np.ndarray:
    """``(n, features)``: the pooled stage outputs of :func:`pooled_stages`, in ``stages`` order."""
    return np.concatenate([store[s] for s in stages], axis=1)


def weights_sha256(ref: str) -> str:
    """SHA-256 over the ``*.safetensors`` files (sorted by path) of model ``ref``: an embedded default or a
    checkpoint folder. A ``ValueError`` names what can be referenced."""
    from skin.hub import DEFAULTS, default_dir

    folder = default_dir(ref) if ref in DEFAULTS else Path(ref)
    files = sorted(folder.rglob("*.safetensors")) if folder.is_dir() else []
    if not files:
        raise ValueError(f"photo-type features: {ref!r} is neither an embedded model ({', '.join(DEFAULTS)}) "
                         "nor a folder with *.safetensors weights")
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.relative_to(folder).as_posix().encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()


class ModelFeatures:
    """The gate's features from model ``ref`` loaded on its own (:func:`skin.hub.load_classifier`, prepared
    as the app prepares it): for fitting the gate, and for an app that does not run that model. Same
    ``features`` call as :class:`skin.phototype.Backbone`."""

    def __init__(self, ref: str, stages: Sequence[int] = STAGES):
        from skin.hub import load_classifier
        from skin.inference import prepare_for_inference

        model, self.processor = load_classifier(ref, local_files_only=True)
        self.model = prepare_for_inference(model)
        self.ref, self.stages, self.lock = ref, tuple(stages), threading.Lock()
        with pooled_stages(self.model, self.stages):  # refuses a model without the stages now, not later
            pass

    def features(self, images: list) -> np.ndarray:
        import torch

        rgb = [im if im.mode == "RGB" else im.convert("RGB") for im in images]
        x = self.processor(images=rgb, return_tensors="pt")["pixel_values"]
        with self.lock, torch.inference_mode(), pooled_stages(self.model, self.stages) as store:
            self.model(pixel_values=x)
        return concat(store, self.stages)

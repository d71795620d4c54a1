"""Everything the app does, without the UI: configuration, predict, explain, fairness card.

``app.py`` only lays out Gradio components and calls a :class:`SkinLensService`;
the same service answers the named API endpoints and the benchmarks, so what is
tested here is what the public gets.

* :mod:`~skin.service.config`: the ``skinlens.yaml`` schema and its validation.
* :mod:`~skin.service.service`: the orchestration (load, predict, abstain, explain, status).
* :mod:`~skin.service.loading`: one model, from its reference to a resident model.
* :mod:`~skin.service.views`: the picture each model reads (whole photo, face crop, or refusal).
* :mod:`~skin.service.readout`: probabilities to an answer (top answers, age estimate, abstention).
* :mod:`~skin.service.cache`: the last few forward passes, reused by Explain after Predict.
* :mod:`~skin.service.cards`: the fairness card, from a model's evaluation report.

The Markdown the UI shows is drawn beside ``app.py`` (``app_markdown``).
"""

from skin.service.cards import fairness_card
from skin.service.config import (
    DEFAULT_CONFIG_PATH,
    INPUTS,
    PORTRAIT_FACE_FRACTION,
    AppConfig,
    ExamplePhoto,
    ModelSpec,
    load_config,
)
from skin.service.loading import LoadedModel
from skin.service.service import DISCLAIMER, ModelUnavailable, SkinLensService
from skin.service.views import model_input_image
from skin.uploads import UploadError

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "DISCLAIMER",
    "INPUTS",
    "PORTRAIT_FACE_FRACTION",
    "AppConfig",
    "ExamplePhoto",
    "LoadedModel",
    "ModelSpec",
    "ModelUnavailable",
    "SkinLensService",
    "UploadError",
    "fairness_card",
    "load_config",
    "model_input_image",
]

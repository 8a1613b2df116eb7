"""One wrapper for the torchvision ImageNet classifiers used as feature extractors.

:class:`TorchvisionBackbone` holds what ``mobilenet_v2`` and ``resnet50`` share. The weights
file is resolved and hash-checked first (:func:`~qd_lib.encoders.base.resolve_weights`), then
loaded strictly into torchvision's architecture: exactly what torchvision's weights API does
with its hub-cache file, without its download fallback (a caller's checkpoint in torchvision's
layout goes the same way). The preprocessing is exactly the weight set's ``transforms()``
(resize the short side, centre crop, ImageNet mean/std); the output is one globally pooled
feature vector. A subclass names the builder, the weight sets and the part of the model it
keeps (:meth:`TorchvisionBackbone._feature_module`).
"""
from __future__ import annotations

import logging
from typing import ClassVar

import torch
import torch.nn.functional as F

from qd_lib.encoders.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Encoder,
    ImageNetPreprocess,
    checkpoint_key,
    load_checkpoint,
    load_strict,
    normalize,
)
from qd_lib.weights import WeightsFile

logger = logging.getLogger(__name__)


class TorchvisionBackbone(Encoder):
    """A torchvision classifier cut before its head, pooled to one vector per image.

    Subclasses set the class attributes and call :meth:`_build` from ``__init__``.

    Attributes
    ----------
    builder : callable
        torchvision's model function (``torchvision.models.resnet50``, ...).
    weights_enum : type
        Its weights enum (``torchvision.models.ResNet50_Weights``, ...).
    weight_sets : dict of str to WeightsFile
        The registered files by torchvision weight tag (``"IMAGENET1K_V1"``, ...).
    default_tag : str
        The tag whose cache key is the bare encoder name.
    title : str
        The model's name in messages (``"ResNet-50"``).
    head : str
        What the output is, appended to :attr:`preprocessing`.
    embedding_dim : int
        Size of the pooled vector.
    """

    builder: ClassVar = None
    weights_enum: ClassVar = None
    weight_sets: ClassVar[dict[str, WeightsFile]] = {}
    default_tag: ClassVar[str] = "IMAGENET1K_V1"
    title: ClassVar[str] = ""
    head: ClassVar[str] = ""
    embedding_dim: ClassVar[int] = 0

    def _build(self, tag: str, checkpoint, key_suffix: str = "") -> torch.nn.Module:
        """Load the model for weight set ``tag`` (or ``checkpoint``) and set the encoder's
        description; returns the full torchvision model."""
        spec = self.weight_sets[tag]
        api_weights = self.weights_enum[tag]
        with load_checkpoint(spec, checkpoint) as (path, record, state):
            # what torchvision's weights API does with the verified file, minus its download
            model = self.builder()
            load_strict(model, state, f"{self.title} checkpoint {path.name}")
        self.tag = tag
        self.weights_records = [record]
        self.outputs = {"embedding": self.embedding_dim}
        transforms = api_weights.transforms()
        self._preprocess = ImageNetPreprocess(transforms.resize_size[0], transforms.crop_size[0])
        self.input_policy = "center_crop_224"
        self.preprocessing = f"{self._preprocess.describe()}; {self.head}"
        self.key = checkpoint_key(self.name + key_suffix, checkpoint, record)
        return model

    def _feature_module(self) -> torch.nn.Module:
        """The kept part of the model, mapping a normalised batch to a (B, C, h, w) map."""
        raise NotImplementedError

    def options(self):
        return {"weights_tag": self.tag}

    def transform(self):
        return self._preprocess

    def _encode(self, inputs):
        x = normalize(inputs["image"], IMAGENET_MEAN, IMAGENET_STD)
        return {"embedding": F.adaptive_avg_pool2d(self._feature_module()(x), 1).flatten(1)}


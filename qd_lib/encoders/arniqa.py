"""``arniqa``: ARNIQA's quality embedding (ResNet-50 trunk, ``ARNIQA.pth``), 4096-d.

Loading (no torch.hub repository fetch, no ImageNet download): a plain torchvision
``resnet50()`` is cut to ``Sequential(*children[:-1])`` (conv1 … avgpool) and loaded with
``strict=True`` from ``ARNIQA.pth`` (in ``QD_WEIGHTS_DIR``) after stripping the ``model.``
prefix; the ``projector.*`` head (2048 → 2048 → 128, used only in training) is dropped.

Embedding: ``[l2n(f(full)), l2n(f(half))]`` where ``f`` is the 2048-d pooled trunk output and
``l2n`` L2 normalisation, so the vector has norm √2 for one view.

Input policies (``input_policy=``):

``whole_image`` (default; ARNIQA's hub model, pyiqa, torchmetrics)
    PIL RGB; if the short side exceeds ``max_short_side`` (1024) it is first resized to it
    (bicubic); half scale = PIL ``resize((w // 2, h // 2), BICUBIC)`` (the ARNIQA repository's
    PIL default); both → /255 → ImageNet mean/std → trunk. Images of a batch with different
    sizes are encoded in groups of equal size.
``five_crop`` (ARNIQA's ``test.py``)
    The centre and the four corner 224×224 crops (order: centre, top-left, bottom-left,
    top-right, bottom-right; zero padding where the image is smaller, like
    ``torchvision.transforms.functional.crop``) of the full image and of the half-scale image;
    the embedding is the mean over the five crops of the per-crop 4096-d vectors (the paper
    averages the linear regressor's outputs over crops, which equals regressing this mean).

Images whose short side is under 32 px are reported as too small.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torchvision
from PIL import Image

from qd_lib.encoders.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Encoder,
    Preprocess,
    checkpoint_key,
    crop_with_padding,
    l2_normalize,
    load_checkpoint,
    load_strict,
    normalize,
    pil_to_uint8,
    resize_short_side,
    strip_prefix,
)
from qd_lib.encoders.resnet50 import resnet50_trunk
from qd_lib.utils.errors import OfflineWeightsError
from qd_lib.utils.validation import check_option, check_scalar
from qd_lib.weights import ARNIQA

logger = logging.getLogger(__name__)

POLICIES = ("whole_image", "five_crop")


def five_crop_boxes(width: int, height: int, size: int) -> list[tuple[int, int]]:
    """(top, left) of ARNIQA's centre and corner crops, in ARNIQA's order."""
    cx, cy = width // 2, height // 2
    return [(cy - size // 2, cx - size // 2), (0, 0), (height - size, 0), (0, width - size),
            (height - size, width - size)]


@dataclass(eq=False)
class ARNIQAPreprocess(Preprocess):
    """ARNIQA's inputs of one image: both scales, whole or as five crops (see the module
    docstring)."""

    policy: str
    crop_size: int = 224
    max_short_side: int | None = 1024

    def apply(self, image):
        note = None
        if self.max_short_side and min(image.size) > self.max_short_side:
            note = f"downscaled from {image.size[0]}x{image.size[1]}"
            image = resize_short_side(image, self.max_short_side, Image.Resampling.BICUBIC)
        width, height = image.size
        half = image.resize((width // 2, height // 2), Image.Resampling.BICUBIC)
        if self.policy == "whole_image":
            return {"full": pil_to_uint8(image), "half": pil_to_uint8(half)}, note
        if min(half.size) < self.crop_size:
            note = f"zero-padded crops ({width}x{height} < 2x{self.crop_size})"
        crops = {}
        for name, img in (("full", image), ("half", half)):
            views = [crop_with_padding(img, top, left, self.crop_size)
                     for top, left in five_crop_boxes(*img.size, self.crop_size)]
            crops[name] = torch.stack([pil_to_uint8(v) for v in views])
        return crops, note

    def describe(self) -> str:
        resize = (f"short side > {self.max_short_side} resized to it (bicubic); "
                  if self.max_short_side else "")
        scales = f"PIL RGB; {resize}half scale = PIL resize (w//2, h//2) bicubic; "
        if self.policy == "whole_image":
            return scales + (f"whole images; /255; ImageNet mean {IMAGENET_MEAN} / std "
                             f"{IMAGENET_STD}")
        side = f"{self.crop_size}x{self.crop_size}"
        return scales + (f"five {side} crops (centre, TL, BL, TR, BR; zero padding) of each "
                         "scale; /255; ImageNet mean/std; mean over crops")


class ARNIQAEncoder(Encoder):
    """ARNIQA's 4096-d quality embedding.

    Parameters
    ----------
    input_policy : {"whole_image", "five_crop"}, default="whole_image"
        See the module docstring.
    checkpoint : path, optional
        Use this file instead of ``QD_WEIGHTS_DIR/ARNIQA.pth`` (same key layout).
    max_short_side : int or None, default=1024
        Larger images are resized first (``None``: never).
    crop_size : int, default=224
        Side of the five crops (``five_crop`` only; ARNIQA's value is 224).
    """

    name = "arniqa"

    def __init__(self, *, input_policy: str = "whole_image", checkpoint=None,
                 max_short_side: int | None = 1024, crop_size: int = 224):
        super().__init__(input_policy=input_policy, checkpoint=checkpoint,
                         max_short_side=max_short_side, crop_size=crop_size)
        check_option(input_policy, "input_policy", POLICIES)
        if max_short_side is not None:
            check_scalar(max_short_side, "max_short_side", int, min_val=64)
        check_scalar(crop_size, "crop_size", int, min_val=32)
        self.trunk = resnet50_trunk(torchvision.models.resnet50())
        with load_checkpoint(ARNIQA, checkpoint) as (path, record, state):
            trunk_state = strip_prefix(state, "model.")
            if not trunk_state:
                raise OfflineWeightsError(
                    f"ARNIQA checkpoint {path.name} has no 'model.'-prefixed keys (first keys: "
                    f"{list(state)[:5]}); expected ARNIQA's layout 'model.<i>.…' plus "
                    "'projector.…'.")
            load_strict(self.trunk, trunk_state, f"ARNIQA checkpoint {path.name} (model.*)")
        dropped = sorted(k for k in state if not k.startswith("model."))
        logger.debug("ARNIQA: dropped %d non-trunk keys (%s…)", len(dropped), dropped[:2])
        self.policy = input_policy
        self.max_short_side = max_short_side
        self.weights_records = [record]
        self.outputs = {"embedding": 4096}
        self.crop_size = crop_size
        self._preprocess = ARNIQAPreprocess(input_policy, crop_size, max_short_side)
        self.input_policy = input_policy
        self.preprocessing = (self._preprocess.describe() + "; ResNet-50 trunk; "
                              "[l2n(f_full), l2n(f_half)] (4096-d)")
        key = self.name if input_policy == "whole_image" else f"{self.name}_five_crop"
        if input_policy == "five_crop" and crop_size != 224:
            key += f"{crop_size}"
        self.key = checkpoint_key(key, checkpoint, record)

    def options(self):
        options = {"input_policy": self.policy, "max_short_side": self.max_short_side,
                   "half_scale_resampler": "PIL bicubic (w//2, h//2)"}
        if self.policy == "five_crop":
            options["crop_size"] = self.crop_size
        return options

    def transform(self):
        return self._preprocess

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return l2_normalize(self.trunk(normalize(x, IMAGENET_MEAN, IMAGENET_STD)).flatten(1))

    def _encode(self, inputs):
        full, half = inputs["full"], inputs["half"]
        if self.policy == "whole_image":
            return {"embedding": torch.cat([self._features(full), self._features(half)], dim=1)}
        b, k = full.shape[:2]
        f_full = self._features(self._move(full.flatten(0, 1))).view(b, k, -1)
        f_half = self._features(self._move(half.flatten(0, 1))).view(b, k, -1)
        return {"embedding": torch.cat([f_full, f_half], dim=2).mean(dim=1)}

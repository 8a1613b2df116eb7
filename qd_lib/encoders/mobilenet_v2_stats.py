"""``mobilenet_v2_stats``: multi-layer feature statistics of the offline MobileNet-V2, 976-d.

An offline *quality* embedding, stronger than the weight-free ``nss``: the global mean and
standard deviation of intermediate MobileNet-V2 feature maps at five resolutions. Such
first- and second-order statistics of CNN activations track distortion well (the idea behind
style statistics and deep-feature IQA such as DeepFL-IQA or the mean/std pooling of
HyperIQA-style multi-scale features): blur lowers the early layers' responses and their
spread, noise and compression artefacts raise or reshape them, colour and exposure changes
move the means. Averaging over positions discards most of the layout (what the content
encoder keeps), the standard deviations keep how strongly and how unevenly each filter fires.

Weights: the same verified torchvision ``mobilenet_v2-b0353104.pth`` (IMAGENET1K_V1) as the
``mobilenet_v2`` content encoder, loaded through :mod:`qd_lib.encoders.backbone` (offline,
hash-checked, strict). Blocks 0–17 of ``model.features`` are used; the 1×1 1280-channel head
conv (block 18) and the classifier are not.

Input policy ``whole_image``: PIL RGB at its native resolution (no resize, no crop) → /255 →
ImageNet mean/std; an image whose long side exceeds ``max_side`` (1024) is first resized so
that its long side is ``max_side`` (PIL bicubic, antialiased), to bound time and memory on
SPAQ-size photos. Why not ``mobilenet_v2``'s resize-256/centre-crop-224: distortion statistics
are resolution-sensitive. Resampling is itself a filter: upsampling the proxy's 192-px crops
to 256 adds interpolation blur and spreads noise and JPEG blocks over more pixels, and
downsampling hides them; both change exactly what the embedding should measure, and
differently for images of different sizes. At native resolution each layer sees the artefacts
at their true pixel scale (an 8×8 JPEG block is an 8×8 block), and cropping would throw away
image regions whose distortion may differ. Images of one batch with different sizes are
encoded in groups of equal size (:meth:`~qd_lib.encoders.base.Encoder.encode`). Images with a
short side under 32 px are reported as too small.

Output, in this order (:func:`feature_names`), for the tapped blocks
(block index: channels, stride) 1: 16, /2; 3: 24, /4; 6: 32, /8; 13: 96, /16; 17: 320, /32 —
the last block of each resolution stage (the inverted-residual outputs are linear
bottlenecks, so values can be negative) — the per-channel spatial mean, then the per-channel
spatial standard deviation (population, over all positions): 2 × (16 + 24 + 32 + 96 + 320) =
976 values. They are on the network's own scales; a per-dataset standardisation is left to the
consumer (the feature pipeline standardises embeddings).
"""
from __future__ import annotations

import logging

import torch
import torchvision

from qd_lib.encoders.backbone import TorchvisionBackbone
from qd_lib.encoders.base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocess,
    downscale_long_side,
    normalize,
    pil_to_uint8,
)
from qd_lib.utils.validation import check_scalar
from qd_lib.weights import MOBILENET_V2

logger = logging.getLogger(__name__)

# (block index in model.features, channels, stride): the last block of each resolution stage
TAPS: tuple[tuple[int, int, int], ...] = ((1, 16, 2), (3, 24, 4), (6, 32, 8), (13, 96, 16),
                                          (17, 320, 32))
DEFAULT_MAX_SIDE = 1024


def feature_names() -> list[str]:
    """Names of the 976 outputs in order: ``b<block>_mean_<c>`` then ``b<block>_std_<c>``."""
    names = []
    for block, channels, _ in TAPS:
        names += [f"b{block}_mean_{c}" for c in range(channels)]
        names += [f"b{block}_std_{c}" for c in range(channels)]
    return names


class WholeImagePreprocess(Preprocess):
    """The image at its native resolution, resized only when its long side exceeds
    ``max_side``; uint8 (3, H, W)."""

    def __init__(self, max_side: int | None = DEFAULT_MAX_SIDE, min_side: int = 32):
        self.max_side = max_side
        self.min_side = min_side

    def apply(self, image):
        image, note = downscale_long_side(image, self.max_side)
        return {"image": pil_to_uint8(image)}, note

    def describe(self) -> str:
        big = (f"long side > {self.max_side} resized to it (PIL bicubic); "
               if self.max_side else "")
        return (f"PIL RGB at native resolution; {big}no crop; /255; ImageNet mean "
                f"{IMAGENET_MEAN} / std {IMAGENET_STD}")


class MobileNetV2StatsEncoder(TorchvisionBackbone):
    """Mean and standard deviation of five MobileNet-V2 feature maps (976-d; see the module
    docstring).

    Parameters
    ----------
    max_side : int or None, default=1024
        Images whose long side is larger are resized first so their long side is
        ``max_side`` (``None``: never).
    checkpoint : path, optional
        A state dict in torchvision's MobileNet-V2 layout to use instead of the verified
        ``mobilenet_v2-b0353104.pth`` from the hub cache (recorded as unverified).
    """

    name = "mobilenet_v2_stats"
    builder = staticmethod(torchvision.models.mobilenet_v2)
    weights_enum = torchvision.models.MobileNet_V2_Weights
    weight_sets = {"IMAGENET1K_V1": MOBILENET_V2}
    title = "MobileNet-V2"
    head = ("per-channel spatial mean and standard deviation of blocks "
            + ", ".join(str(b) for b, _, _ in TAPS) + " of model.features (976-d)")
    embedding_dim = 2 * sum(c for _, c, _ in TAPS)

    def __init__(self, *, max_side: int | None = DEFAULT_MAX_SIDE, checkpoint=None):
        super().__init__(max_side=max_side, checkpoint=checkpoint)
        if max_side is not None:
            check_scalar(max_side, "max_side", int, min_val=64)
        suffix = "" if max_side == DEFAULT_MAX_SIDE else f"_m{max_side}"
        features = self._build("IMAGENET1K_V1", checkpoint, key_suffix=suffix).features
        self.features = features[:TAPS[-1][0] + 1]
        self.max_side = max_side
        self._preprocess = WholeImagePreprocess(max_side)
        self.input_policy = "whole_image"
        self.preprocessing = f"{self._preprocess.describe()}; {self.head}"

    def options(self):
        return {"weights_tag": self.tag, "max_side": self.max_side,
                "taps": [list(t) for t in TAPS], "statistics": ["mean", "std"]}

    def _encode(self, inputs):
        x = normalize(inputs["image"], IMAGENET_MEAN, IMAGENET_STD)
        taps = {block for block, _, _ in TAPS}
        parts = []
        for index, block in enumerate(self.features):
            x = block(x)
            if index in taps:
                flat = x.float().flatten(2)
                parts += [flat.mean(dim=2), flat.std(dim=2, correction=0)]
        return {"embedding": torch.cat(parts, dim=1)}

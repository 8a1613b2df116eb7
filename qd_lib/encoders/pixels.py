"""``pixels``: downsampled pixel statistics, a weight-free stand-in for tests and CI.

Not a learned encoder, and labelled so in every record (the ``pixels`` feature set). It exists
so that a selection can run in seconds on a machine without any weights, through the same
cached extraction as the real encoders.

Preprocessing: PIL RGB (as the dataset reader converts it), no crop. Two outputs, both computed
per image in the transform (on the CPU, one torch thread), so the result does not depend on
the number of loader workers:

``embedding`` (192)
    An 8×8 RGB thumbnail (PIL box filter), values in [0, 1]: a crude *content* description.
``stats`` (16)
    Local statistics of a 128×128 bilinear resize, values in [0, 1]: per-channel mean and
    standard deviation (6); on the luminance at full and half resolution, the Sobel gradient
    magnitude's mean and standard deviation and the mean absolute Laplacian (6); the mean and
    standard deviation of the 3×3 local standard deviation (2); the share of spectral energy
    at high frequencies (1); colourfulness (Hasler–Süsstrunk style) (1). A crude *quality*
    description: blur lowers the gradient energies, noise raises them, and so on.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from qd_lib.encoders.base import Encoder, Preprocess

THUMBNAIL_SIDE = 8
STATS_SIDE = 128
STAT_NAMES = ("mean_r", "mean_g", "mean_b", "std_r", "std_g", "std_b",
              "grad_mean", "grad_std", "laplace_mean",
              "grad_mean_half", "grad_std_half", "laplace_mean_half",
              "local_sd_mean", "local_sd_std", "high_frequency_share", "colourfulness")


def pixel_statistics(image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """(thumbnail, stats) of one RGB image, as float32 arrays of 192 and 16 values."""
    from scipy import ndimage

    rgb = image.convert("RGB")
    thumb = np.asarray(rgb.resize((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.BOX),
                       dtype=np.float32) / 255.0
    small = np.asarray(rgb.resize((STATS_SIDE, STATS_SIDE), Image.BILINEAR),
                       dtype=np.float64) / 255.0
    gray = small @ np.array([0.299, 0.587, 0.114])
    stats = [*small.mean(axis=(0, 1)), *small.std(axis=(0, 1))]
    for g in (gray, gray[::2, ::2]):
        magnitude = np.hypot(ndimage.sobel(g, axis=1), ndimage.sobel(g, axis=0))
        stats += [magnitude.mean(), magnitude.std(), np.abs(ndimage.laplace(g)).mean()]
    local_mean = ndimage.uniform_filter(gray, 3)
    local_sd = np.sqrt(np.maximum(ndimage.uniform_filter(gray ** 2, 3) - local_mean ** 2, 0))
    spectrum = np.abs(np.fft.rfft2(gray - gray.mean())) ** 2
    quarter = STATS_SIDE // 4
    high = spectrum[quarter:STATS_SIDE - quarter, quarter:].sum() / max(spectrum.sum(), 1e-12)
    rg = small[..., 0] - small[..., 1]
    yb = 0.5 * (small[..., 0] + small[..., 1]) - small[..., 2]
    colour = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
    stats += [local_sd.mean(), local_sd.std(), high, colour]
    return thumb.reshape(-1), np.asarray(stats, dtype=np.float32)


class PixelPreprocess(Preprocess):
    """Computes both outputs per image (they are cheap; the forward pass only stacks them)."""

    def apply(self, image):
        thumb, stats = pixel_statistics(image)
        return {"thumbnail": torch.from_numpy(thumb), "stats": torch.from_numpy(stats)}, None


class PixelStatsEncoder(Encoder):
    """Downsampled pixel statistics (see the module docstring); no weights, no options."""

    name = "pixels"
    supports_amp = False
    channels_last = False

    def __init__(self):
        super().__init__()
        self.outputs = {"embedding": 3 * THUMBNAIL_SIDE ** 2, "stats": len(STAT_NAMES)}
        self._preprocess = PixelPreprocess()
        self.input_policy = "whole_image"
        self.preprocessing = (f"PIL RGB; {THUMBNAIL_SIDE}x{THUMBNAIL_SIDE} box-filtered "
                              f"thumbnail (embedding) and {len(STAT_NAMES)} statistics of a "
                              f"{STATS_SIDE}x{STATS_SIDE} bilinear resize (stats); values "
                              "/255; not a learned encoder")

    def options(self):
        return {"stats": list(STAT_NAMES)}

    def transform(self):
        return self._preprocess

    def _encode(self, inputs):
        return {"embedding": inputs["thumbnail"].float(), "stats": inputs["stats"].float()}

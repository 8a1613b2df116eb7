"""``nss``: a weight-free natural-scene-statistics quality embedding (our own, vectorised).

The offline default *quality* encoder. It needs no weights: it measures how far an image's
local statistics depart from those of natural photographs, in the spirit of BRISQUE
(Mittal et al., 2012) and NIQE, plus a few global cues for distortions those miss.

Preprocessing: PIL RGB (greyscale, CMYK and 16-bit images converted by the dataset reader);
if the long side exceeds ``max_side`` (1024) it is resized to it (PIL bicubic, antialiased);
no crop, no normalisation (pixel values 0–255). Images with a short side under 32 px are
reported as too small. Each image's features depend on that image alone.

Where it runs: the statistics are computed per image inside the transform, on the CPU, with
one torch thread (:func:`single_thread`), so the extractor spreads images over one loader
worker per core. Hundreds of small tensor operations per image run far better this way than
as a multi-threaded batch on a busy machine, and the result does not depend on the number of
workers or threads. :meth:`NSSEncoder.features` computes whole batches on any device.

Features, per scale s = 0 … ``scales``−1 (scale 0 = the image, each next one a 2×2 average
pool of the previous luminance), on luminance Y = 0.299 R + 0.587 G + 0.114 B:

1. MSCN coefficients ``M = (Y − μ)/(σ + 1)``, μ and σ the local mean and standard deviation
   under a 7×7 Gaussian window (σ_w = 7/6, reflect padding). A zero-mean generalised Gaussian
   (GGD) fitted by moment matching: shape α, variance σ² (2).
2. Products of neighbouring MSCN coefficients in four orientations (horizontal, vertical and the
   two diagonals, all on the common (H−1)×(W−1) grid), each fitted with an asymmetric GGD
   (AGGD): shape α, mean η, left and right variances σ_l², σ_r² (16).
3. Local contrast ``log(1 + mean σ)`` (1) and gradient energy ``log(1e-4 + mean |∇Y/255|)``
   (Sobel) (1).

So 20 per scale. Then, once, on the full-resolution image (21):

- luminance mean and standard deviation (of Y/255), fractions of clipped dark (Y ≤ 2) and
  bright (Y ≥ 253) pixels (4);
- Sobel gradient magnitude of Y/255: ``log(1e-4 + ·)`` of its standard deviation, median and
  99th percentile; ``log(1 + ·)`` of the 10th percentile of the local σ (the noise floor of
  flat regions) (4);
- flat runs: the fractions of horizontally and vertically adjacent pixels with identical 8-bit
  RGB values (pixelation, quantisation, clipping) (2);
- noise level ``log(1 + σ_n)``, σ_n by Immerkær's Laplacian-difference estimator (1);
- JPEG-grid blockiness, horizontal and vertical: ``log((d_8 + ½)/(d_o + ½))`` with d_8 the
  mean absolute difference across columns (rows) at multiples of 8 and d_o elsewhere (2);
- colourfulness (Hasler–Süsstrunk, on RGB/255), mean and standard deviation of HSV saturation
  (3);
- GGD fits (α, σ²) of the MSCN coefficients of the opponent channels R−G and (R+G)/2−B (4);
- entropy (bits) of the 256-bin luminance histogram (1).

Dimension: ``20·scales + 21`` (81 for the default 3 scales); :func:`feature_names` lists them.
GGD/AGGD shapes come from a lookup table on α ∈ [0.2, 10] in steps of 0.001 (the classic
moment-ratio method). The values are on fixed, data-independent scales (logs of energies), so
a per-dataset standardisation is left to the consumer.
"""
from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from functools import cache

import torch
import torch.nn.functional as F

from qd_lib.encoders.base import Encoder, Preprocess, downscale_long_side, pil_to_uint8
from qd_lib.utils.validation import check_scalar

logger = logging.getLogger(__name__)

_ORIENTATIONS = ("h", "v", "d1", "d2")
_ALPHA_MIN, _ALPHA_MAX, _ALPHA_STEP = 0.2, 10.0, 0.001


def feature_names(scales: int = 3) -> list[str]:
    """Names of the NSS features in output order."""
    names = []
    for s in range(scales):
        names += [f"s{s}_mscn_alpha", f"s{s}_mscn_var"]
        for o in _ORIENTATIONS:
            names += [f"s{s}_{o}_alpha", f"s{s}_{o}_eta", f"s{s}_{o}_var_left",
                      f"s{s}_{o}_var_right"]
        names += [f"s{s}_log_contrast", f"s{s}_log_gradient"]
    names += ["lum_mean", "lum_std", "frac_dark", "frac_bright", "log_gradient_std",
              "log_gradient_p50", "log_gradient_p99", "log_contrast_p10", "flat_h", "flat_v",
              "log_noise", "blockiness_h", "blockiness_v", "colourfulness", "saturation_mean",
              "saturation_std", "rg_mscn_alpha", "rg_mscn_var", "yb_mscn_alpha", "yb_mscn_var",
              "lum_entropy"]
    return names


@cache
def _alpha_table(device_str: str) -> tuple[torch.Tensor, torch.Tensor]:
    """α grid (ascending) and the GGD moment ratio ρ(α) = Γ(1/α)Γ(3/α)/Γ(2/α)², which falls
    monotonically with α (computed in float64, stored as float32)."""
    alpha = torch.arange(_ALPHA_MIN, _ALPHA_MAX + _ALPHA_STEP / 2, _ALPHA_STEP,
                         dtype=torch.float64)
    rho = torch.exp(torch.lgamma(1 / alpha) + torch.lgamma(3 / alpha)
                    - 2 * torch.lgamma(2 / alpha))
    return alpha.float().to(device_str), rho.float().to(device_str)


def _lookup_alpha(ratio: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """α of the grid whose ρ(α) (or 1/ρ(α) with ``inverse``) is closest to ``ratio``."""
    alpha, rho = _alpha_table(str(ratio.device))
    if inverse:  # 1/ρ rises with α
        table, values = 1.0 / rho, ratio
    else:  # ρ falls with α: search the reversed (ascending) table
        table, values = rho.flip(0), ratio
    flat = values.reshape(-1).contiguous()
    hi = torch.searchsorted(table, flat).clamp(1, len(table) - 1)
    lo = hi - 1
    nearer_lo = (flat - table[lo]).abs() <= (table[hi] - flat).abs()
    index = torch.where(nearer_lo, lo, hi)
    if not inverse:
        index = len(table) - 1 - index
    return alpha[index].view_as(values)


def ggd_fit(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-mean GGD fit along the last axis of ``x``: shape α and variance σ²."""
    e2 = x.pow(2).mean(dim=-1)
    e1 = x.abs().mean(dim=-1)
    ratio = e2 / (e1.pow(2) + 1e-12)
    return _lookup_alpha(ratio), e2


def aggd_fit(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Asymmetric GGD fit along the last axis of ``x``: shape α, mean η, σ_l², σ_r²."""
    sq = x * x
    neg = x < 0
    n_neg = neg.sum(dim=-1).float()
    n_pos = (x > 0).sum(dim=-1).float()
    sq_neg = torch.where(neg, sq, 0.0).sum(dim=-1)
    var_left = sq_neg / n_neg.clamp_min(1.0)
    var_right = (sq.sum(dim=-1) - sq_neg) / n_pos.clamp_min(1.0)
    sl, sr = var_left.sqrt(), var_right.sqrt()
    gamma = sl / (sr + 1e-12)
    r_hat = x.abs().mean(dim=-1).pow(2) / (sq.mean(dim=-1) + 1e-12)
    big_r = r_hat * (gamma.pow(3) + 1) * (gamma + 1) / (gamma.pow(2) + 1).pow(2)
    alpha = _lookup_alpha(big_r, inverse=True)
    lg1, lg2, lg3 = torch.lgamma(1 / alpha), torch.lgamma(2 / alpha), torch.lgamma(3 / alpha)
    eta = (sr - sl) * torch.exp(0.5 * (lg1 - lg3)) * torch.exp(lg2 - lg1)
    return alpha, eta, var_left, var_right


@contextmanager
def single_thread():
    """Run torch on one intra-op thread for the duration (restored afterwards).

    The statistics are hundreds of small tensor operations: with several threads each one ends
    in a barrier, and on a busy machine a descheduled thread stalls them all (measured here:
    10× slower). One thread per process, with images spread over loader workers, avoids that
    and makes the result independent of the thread count.
    """
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class NSSFeatures:
    """The feature computation itself: uint8 RGB images (B, 3, H, W), any device → (B, D).

    Picklable and weight-free; :class:`NSSPreprocess` runs it per image in the loader workers,
    :meth:`NSSEncoder.features` on whole batches.
    """

    def __init__(self, scales: int = 3):
        self.scales = scales
        coords = torch.arange(7, dtype=torch.float64) - 3
        window = torch.exp(-coords.pow(2) / (2 * (7 / 6) ** 2))
        self.window = (window / window.sum()).float().tolist()

    @property
    def dim(self) -> int:
        return 20 * self.scales + 21

    def _blur(self, x: torch.Tensor) -> torch.Tensor:
        """Separable 7×7 Gaussian with reflect padding, as shifted sums (x: (B, C, H, W))."""
        w = self.window
        height, width = x.shape[-2:]
        xp = F.pad(x, (3, 3, 0, 0), mode="reflect")
        rows = sum(w[k] * xp[..., :, k:k + width] for k in range(7))
        xp = F.pad(rows, (0, 0, 3, 3), mode="reflect")
        return sum(w[k] * xp[..., k:k + height, :] for k in range(7))

    def _mscn(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """MSCN coefficients and local standard deviation of each channel of y (B, C, H, W)."""
        c = y.shape[1]
        moments = self._blur(torch.cat([y, y * y], dim=1))
        mu, second = moments[:, :c], moments[:, c:]
        sigma = (second - mu * mu).clamp_min(0).sqrt()
        return (y - mu) / (sigma + 1.0), sigma

    @staticmethod
    def _gradient(y: torch.Tensor) -> torch.Tensor:
        """Sobel gradient magnitude of y/255 (replicate padding), flattened per image."""
        p = F.pad(y / 255.0, (1, 1, 1, 1), mode="replicate")
        smooth_v = p[..., :-2, :] + 2 * p[..., 1:-1, :] + p[..., 2:, :]
        smooth_h = p[..., :, :-2] + 2 * p[..., :, 1:-1] + p[..., :, 2:]
        gx = (smooth_v[..., :, :-2] - smooth_v[..., :, 2:]) / 8
        gy = (smooth_h[..., :-2, :] - smooth_h[..., 2:, :]) / 8
        return (gx * gx + gy * gy).sqrt().flatten(1)

    def _scale_features(self, y: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor,
                                                         torch.Tensor]:
        m, sigma = self._mscn(y)
        feats = list(ggd_fit(m.flatten(1)))
        # neighbour products on the common (H-1)x(W-1) grid: h, v, d1, d2
        a = m[:, 0, :-1, :-1]
        pairs = torch.stack([a * m[:, 0, :-1, 1:], a * m[:, 0, 1:, :-1], a * m[:, 0, 1:, 1:],
                             m[:, 0, :-1, 1:] * m[:, 0, 1:, :-1]], dim=1).flatten(2)
        alpha, eta, var_left, var_right = aggd_fit(pairs)  # each (B, 4)
        for o in range(4):
            feats += [alpha[:, o], eta[:, o], var_left[:, o], var_right[:, o]]
        grad = self._gradient(y)
        feats.append(torch.log1p(sigma.flatten(1).mean(dim=1)))
        feats.append(torch.log(1e-4 + grad.mean(dim=1)))
        return feats, sigma.flatten(1), grad

    @staticmethod
    def _blockiness(y: torch.Tensor, dim: int) -> torch.Tensor:
        """log((d_8 + ½)/(d_o + ½)) along ``dim`` (3: across columns, 2: across rows)."""
        d = y.diff(dim=dim).abs()
        at_grid = torch.arange(d.shape[dim], device=y.device) % 8 == 7
        if not at_grid.any():
            return torch.zeros(y.shape[0], device=y.device)
        on = d.index_select(dim, at_grid.nonzero().squeeze(1)).flatten(1).mean(dim=1)
        off = d.index_select(dim, (~at_grid).nonzero().squeeze(1)).flatten(1).mean(dim=1)
        return torch.log((on + 0.5) / (off + 0.5))

    def _global_features(self, image: torch.Tensor, y: torch.Tensor, sigma: torch.Tensor,
                         grad: torch.Tensor) -> list[torch.Tensor]:
        b = image.shape[0]
        rgb = image.float()
        lum = y.flatten(1) / 255.0
        feats = [lum.mean(dim=1), lum.std(dim=1), (y <= 2).flatten(1).float().mean(dim=1),
                 (y >= 253).flatten(1).float().mean(dim=1)]
        n = grad.shape[1]
        feats += [torch.log(1e-4 + grad.std(dim=1)),
                  torch.log(1e-4 + grad.kthvalue(max(1, n // 2), dim=1).values),
                  torch.log(1e-4 + grad.kthvalue(max(1, (99 * n) // 100), dim=1).values),
                  torch.log1p(sigma.kthvalue(max(1, sigma.shape[1] // 10), dim=1).values)]
        # flat runs: neighbouring pixels with identical 8-bit RGB values
        feats += [(image[..., :, 1:] == image[..., :, :-1]).all(dim=1).flatten(1).float()
                  .mean(dim=1),
                  (image[..., 1:, :] == image[..., :-1, :]).all(dim=1).flatten(1).float()
                  .mean(dim=1)]
        h, w = y.shape[-2:]
        # Immerkær's mask [[1, -2, 1], [-2, 4, -2], [1, -2, 1]] = outer([1, -2, 1], [1, -2, 1])
        d2 = y[..., :, :-2] - 2 * y[..., :, 1:-1] + y[..., :, 2:]
        resid = (d2[..., :-2, :] - 2 * d2[..., 1:-1, :] + d2[..., 2:, :]).abs().flatten(1).sum(1)
        noise = math.sqrt(math.pi / 2) * resid / (6 * (w - 2) * (h - 2))
        feats.append(torch.log1p(noise))
        feats += [self._blockiness(y, 3), self._blockiness(y, 2)]
        r, g, bl = (rgb[:, i].flatten(1) / 255.0 for i in range(3))
        rg, yb = r - g, 0.5 * (r + g) - bl
        colourful = (rg.var(dim=1) + yb.var(dim=1)).sqrt() + 0.3 * (
            rg.mean(dim=1).pow(2) + yb.mean(dim=1).pow(2)).sqrt()
        mx = torch.maximum(torch.maximum(r, g), bl)
        mn = torch.minimum(torch.minimum(r, g), bl)
        sat = (mx - mn) / (mx + 1e-3)
        feats += [colourful, sat.mean(dim=1), sat.std(dim=1)]
        chroma, _ = self._mscn(torch.cat([rg.view_as(y), yb.view_as(y)], dim=1) * 255.0)
        alpha, var = ggd_fit(chroma.flatten(2))  # (B, 2)
        feats += [alpha[:, 0], var[:, 0], alpha[:, 1], var[:, 1]]
        levels = y.round().clamp(0, 255).long().flatten(1)
        counts = torch.zeros(b, 256, device=y.device).scatter_add_(
            1, levels, torch.ones_like(levels, dtype=torch.float32))
        p = counts / levels.shape[1]
        feats.append(-(p * torch.log2(p.clamp_min(1e-12))).sum(dim=1))
        return feats

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """Features of uint8 RGB images (B, 3, H, W) → float32 (B, D)."""
        rgb = image.float()
        y = (0.299 * rgb[:, 0:1] + 0.587 * rgb[:, 1:2] + 0.114 * rgb[:, 2:3])
        feats, level = [], y
        for s in range(self.scales):
            if s:
                level = F.avg_pool2d(level, 2)
            scale_feats, sigma, grad = self._scale_features(level)
            feats += scale_feats
            if s == 0:
                sigma0, grad0 = sigma, grad
        feats += self._global_features(image, y, sigma0, grad0)
        out = torch.stack([f.float() for f in feats], dim=1)
        return torch.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


class NSSPreprocess(Preprocess):
    """Resize if huge, then compute the features of the one image, single-threaded."""

    def __init__(self, computer: NSSFeatures, max_side: int | None = 1024, min_side: int = 32):
        self.computer = computer
        self.max_side = max_side
        self.min_side = min_side

    def apply(self, image):
        image, note = downscale_long_side(image, self.max_side)
        with torch.inference_mode(), single_thread():
            features = self.computer(pil_to_uint8(image)[None])[0]
        return {"features": features}, note

    def describe(self) -> str:
        big = (f"long side > {self.max_side} resized to it (PIL bicubic); "
               if self.max_side else "")
        return f"PIL RGB; {big}no crop; values 0-255"


class NSSEncoder(Encoder):
    """Weight-free natural-scene-statistics quality features (see the module docstring).

    Parameters
    ----------
    scales : int, default=3
        Number of scales (at least 2).
    max_side : int or None, default=1024
        Larger images are resized first so their long side is ``max_side``.
    """

    name = "nss"
    supports_amp = False
    channels_last = False
    cpu_heavy_transform = True

    def __init__(self, *, scales: int = 3, max_side: int | None = 1024):
        super().__init__(scales=scales, max_side=max_side)
        check_scalar(scales, "scales", int, min_val=2, max_val=5)
        if max_side is not None:
            check_scalar(max_side, "max_side", int, min_val=64)
        self.scales = scales
        self.max_side = max_side
        self.computer = NSSFeatures(scales)
        self.outputs = {"embedding": self.computer.dim}
        self._preprocess = NSSPreprocess(self.computer, max_side)
        self.input_policy = "whole_image"
        self.preprocessing = (self._preprocess.describe() + f"; {scales}-scale MSCN GGD/AGGD "
                              "statistics plus global luminance, gradient, noise, blockiness, "
                              "colour and entropy features (no weights)")
        self.key = self.name if (scales, max_side) == (3, 1024) else \
            f"{self.name}_s{scales}_m{max_side}"

    def options(self):
        return {"scales": self.scales, "max_side": self.max_side,
                "features": feature_names(self.scales)}

    def transform(self):
        return self._preprocess

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Features of a batch of uint8 RGB images (B, 3, H, W) of one size, on their device
        (the threads as configured: for whole batches on a quiet machine or a GPU)."""
        with torch.inference_mode():
            return self.computer(images)

    def _encode(self, inputs):
        # the statistics were computed per image by the transform (in the loader workers)
        return {"embedding": inputs["features"].float()}

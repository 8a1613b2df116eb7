"""KADID-10K-style distortions, each at 5 levels of increasing strength.

Modelled on the 25 distortion types of KADID-10K (Lin, Hosu & Saupe, QoMEX 2019), written from
their published descriptions; the parameters are chosen for 192-pixel crops, so they are not
KADID's exact values. Every function takes an RGB float image in [0, 1] of shape (H, W, 3), a
level parameter and a numpy ``Generator`` (used only by the random distortions), and returns an
image of the same shape and range.

Besides the 5 levels, :meth:`DistortionType.apply_severity` takes a *continuous* severity in
[0, 5] (interpolated parameters; a blend with the reference below 1), which the ``authentic``
proxy preset composes into compound distortions.
"""
from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage import color

Array = np.ndarray


@dataclass(frozen=True)
class DistortionType:
    """One distortion type: its KADID-style name, category and 5 level parameters.

    ``color_only`` types change nothing on a greyscale image (they act on chroma alone), so the
    benchmark builder skips them for greyscale references. ``integer`` types take a count or a
    whole-pixel amount (JPEG quality, number of colours, kernel length, ...): a continuous
    severity rounds their interpolated parameter to the nearest integer
    (:meth:`parameter_at`).
    """

    name: str
    category: str
    func: Callable[[Array, float, np.random.Generator], Array]
    levels: tuple[float, ...]
    color_only: bool = False
    integer: bool = False

    def apply(self, image: Array, level: int, rng: np.random.Generator) -> Array:
        """Distort ``image`` at ``level`` (1 = mildest … 5 = strongest)."""
        if not 1 <= level <= len(self.levels):
            raise ValueError(f"The 'level' parameter must be in [1, {len(self.levels)}]. "
                             f"Got {level!r}.")
        out = self.func(image, self.levels[level - 1], rng)
        return np.clip(out, 0.0, 1.0).astype(np.float32)

    def parameter_at(self, severity: float) -> float:
        """The distortion parameter at a continuous ``severity`` in [1, n_levels].

        Linear interpolation between the parameters of the neighbouring levels (level ``k`` sits
        at severity ``k``), rounded to the nearest integer for :attr:`integer` types.
        """
        n = len(self.levels)
        if not 1.0 <= severity <= n:
            raise ValueError(f"The 'severity' parameter must be a float in the range [1.0, "
                             f"{float(n)}]. Got {severity!r} instead.")
        value = float(np.interp(severity, np.arange(1, n + 1), self.levels))
        return int(round(value)) if self.integer else value

    def apply_severity(self, image: Array, severity: float, rng: np.random.Generator) -> Array:
        """Distort ``image`` at a continuous ``severity`` in [0, n_levels].

        From 1 up, the level parameters are interpolated (:meth:`parameter_at`); at a whole
        number the result equals :meth:`apply` at that level. Below 1 the image is blended
        with its level-1 distortion, ``(1 − s)·image + s·D₁(image)``, so severities near 0
        give near-pristine images and the blend meets level 1 continuously.
        """
        n = len(self.levels)
        if not 0.0 <= severity <= n:
            raise ValueError(f"The 'severity' parameter must be a float in the range [0.0, "
                             f"{float(n)}]. Got {severity!r} instead.")
        if severity >= 1.0:
            out = self.func(image, self.parameter_at(severity), rng)
        else:
            mild = np.clip(self.func(image, self.parameter_at(1.0), rng), 0.0, 1.0)
            out = image + severity * (mild - image)
        return np.clip(out, 0.0, 1.0).astype(np.float32)


def _per_channel(image: Array, fn) -> Array:
    return np.stack([fn(image[..., c]) for c in range(image.shape[-1])], axis=-1)


def _to_uint8(image: Array) -> Array:
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


def _disk(radius: float) -> Array:
    r = int(np.ceil(radius))
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    kernel = (x ** 2 + y ** 2 <= radius ** 2).astype(np.float32)
    return kernel / kernel.sum()


def _motion_kernel(length: float, angle: float) -> Array:
    size = int(np.ceil(length)) | 1
    kernel = np.zeros((size, size), np.float32)
    c = size // 2
    for t in np.linspace(-(length - 1) / 2, (length - 1) / 2, 4 * size):
        kernel[int(round(c + t * np.sin(angle))), int(round(c + t * np.cos(angle)))] = 1.0
    return kernel / kernel.sum()


# -- blurs ------------------------------------------------------------------------------------
def gaussian_blur(image, sigma, rng):
    return ndimage.gaussian_filter(image, sigma=(sigma, sigma, 0), mode="reflect")


def lens_blur(image, radius, rng):
    kernel = _disk(radius)
    return _per_channel(image, lambda ch: ndimage.convolve(ch, kernel, mode="reflect"))


def motion_blur(image, length, rng):
    kernel = _motion_kernel(length, rng.uniform(0, np.pi))
    return _per_channel(image, lambda ch: ndimage.convolve(ch, kernel, mode="reflect"))


# -- colour -----------------------------------------------------------------------------------
def _lab2rgb(lab):
    with warnings.catch_warnings():  # out-of-gamut colours are clipped, which is intended here
        warnings.simplefilter("ignore", UserWarning)
        return color.lab2rgb(lab)


def color_diffusion(image, sigma, rng):
    lab = color.rgb2lab(image)
    lab[..., 1:] = ndimage.gaussian_filter(lab[..., 1:], sigma=(sigma, sigma, 0), mode="reflect")
    return _lab2rgb(lab)


def color_shift(image, shift, rng):
    out = image.copy()
    angle = rng.uniform(0, 2 * np.pi)
    dy, dx = shift * np.sin(angle), shift * np.cos(angle)
    out[..., 1] = ndimage.shift(image[..., 1], (dy, dx), mode="nearest", order=1)
    return out


def color_quantization(image, n_colors, rng):
    pil = Image.fromarray(_to_uint8(image)).quantize(colors=int(n_colors), method=Image.MEDIANCUT,
                                                     dither=Image.Dither.NONE)
    return np.asarray(pil.convert("RGB"), np.float32) / 255.0


def color_saturation_decrease(image, keep, rng):
    grey = color.rgb2gray(image)[..., None]
    return grey + keep * (image - grey)


def color_saturation_increase(image, factor, rng):
    lab = color.rgb2lab(image)
    lab[..., 1:] *= factor
    return _lab2rgb(lab)


# -- compression ------------------------------------------------------------------------------
def jpeg2000(image, ratio, rng):
    buf = io.BytesIO()
    Image.fromarray(_to_uint8(image)).save(buf, format="JPEG2000", quality_mode="rates",
                                           quality_layers=[float(ratio)], irreversible=True)
    buf.seek(0)
    with Image.open(buf) as img:
        return np.asarray(img.convert("RGB"), np.float32) / 255.0


def jpeg(image, quality, rng):
    buf = io.BytesIO()
    Image.fromarray(_to_uint8(image)).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as img:
        return np.asarray(img.convert("RGB"), np.float32) / 255.0


# -- noise ------------------------------------------------------------------------------------
def white_noise(image, sigma, rng):
    return image + rng.normal(0.0, sigma, image.shape)


def white_noise_color_component(image, sigma, rng):
    ycc = color.rgb2ycbcr(image) / 255.0
    ycc[..., 1:] += rng.normal(0.0, sigma, ycc[..., 1:].shape)
    return color.ycbcr2rgb(ycc * 255.0)


def impulse_noise(image, density, rng):
    out = image.copy()
    hit = rng.random(image.shape[:2]) < density
    out[hit] = rng.integers(0, 2, size=(int(hit.sum()), 1)).astype(np.float32)
    return out


def multiplicative_noise(image, sigma, rng):
    return image * (1.0 + rng.normal(0.0, sigma, image.shape))


def denoise(image, sigma, rng):
    noisy = np.clip(image + rng.normal(0.0, sigma, image.shape), 0, 1)
    return ndimage.median_filter(noisy, size=(3, 3, 1), mode="reflect")


# -- brightness -------------------------------------------------------------------------------
def brighten(image, gamma, rng):
    return image ** (1.0 / gamma)


def darken(image, gamma, rng):
    return image ** gamma


def mean_shift(image, shift, rng):
    return image + shift


# -- spatial ----------------------------------------------------------------------------------
def jitter(image, amount, rng):
    h, w = image.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    sy = np.clip(yy + rng.integers(-amount, amount + 1, (h, w)), 0, h - 1)
    sx = np.clip(xx + rng.integers(-amount, amount + 1, (h, w)), 0, w - 1)
    return image[sy, sx]


def non_eccentricity_patch(image, n_patches, rng, size: int = 8, reach: int = 12):
    out = image.copy()
    h, w = image.shape[:2]
    for _ in range(int(n_patches)):
        y, x = rng.integers(0, h - size), rng.integers(0, w - size)
        ty = int(np.clip(y + rng.integers(-reach, reach + 1), 0, h - size))
        tx = int(np.clip(x + rng.integers(-reach, reach + 1), 0, w - size))
        out[ty:ty + size, tx:tx + size] = image[y:y + size, x:x + size]
    return out


def pixelate(image, scale, rng):
    h, w = image.shape[:2]
    small = Image.fromarray(_to_uint8(image)).resize(
        (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BOX)
    return np.asarray(small.resize((w, h), Image.Resampling.NEAREST), np.float32) / 255.0


def quantization(image, n_levels, rng):
    return np.round(image * (n_levels - 1)) / (n_levels - 1)


def color_block(image, n_blocks, rng, size: int = 12):
    out = image.copy()
    h, w = image.shape[:2]
    for _ in range(int(n_blocks)):
        y, x = rng.integers(0, h - size), rng.integers(0, w - size)
        out[y:y + size, x:x + size] = rng.random(3)
    return out


# -- sharpness and contrast -------------------------------------------------------------------
def high_sharpen(image, amount, rng):
    blurred = ndimage.gaussian_filter(image, sigma=(1.5, 1.5, 0), mode="reflect")
    return image + amount * (image - blurred)


def contrast_change(image, factor, rng):
    mean = image.mean(axis=(0, 1), keepdims=True)
    return mean + factor * (image - mean)


DISTORTIONS: dict[str, DistortionType] = {d.name: d for d in [
    DistortionType("gaussian_blur", "blur", gaussian_blur, (0.6, 1.2, 2.0, 3.0, 5.0)),
    DistortionType("lens_blur", "blur", lens_blur, (1.0, 2.0, 3.0, 5.0, 8.0)),
    DistortionType("motion_blur", "blur", motion_blur, (3, 5, 9, 13, 19), integer=True),
    DistortionType("color_diffusion", "color", color_diffusion, (2, 4, 8, 12, 18), True),
    DistortionType("color_shift", "color", color_shift, (1, 2, 4, 7, 11)),
    DistortionType("color_quantization", "color", color_quantization, (64, 32, 16, 8, 4),
                   integer=True),
    DistortionType("color_saturation_decrease", "color", color_saturation_decrease,
                   (0.6, 0.4, 0.25, 0.1, 0.0), True),
    DistortionType("color_saturation_increase", "color", color_saturation_increase,
                   (1.5, 2.0, 2.8, 3.8, 5.0), True),
    DistortionType("jpeg2000", "compression", jpeg2000, (20, 40, 80, 160, 320)),
    DistortionType("jpeg", "compression", jpeg, (50, 30, 15, 8, 3), integer=True),
    DistortionType("white_noise", "noise", white_noise, (0.015, 0.03, 0.06, 0.1, 0.16)),
    DistortionType("white_noise_color_component", "noise", white_noise_color_component,
                   (0.02, 0.04, 0.07, 0.11, 0.17)),
    DistortionType("impulse_noise", "noise", impulse_noise, (0.005, 0.015, 0.03, 0.06, 0.12)),
    DistortionType("multiplicative_noise", "noise", multiplicative_noise,
                   (0.05, 0.1, 0.2, 0.3, 0.45)),
    DistortionType("denoise", "noise", denoise, (0.03, 0.06, 0.1, 0.15, 0.22)),
    DistortionType("brighten", "brightness", brighten, (1.25, 1.5, 1.9, 2.5, 3.4)),
    DistortionType("darken", "brightness", darken, (1.25, 1.5, 1.9, 2.5, 3.4)),
    DistortionType("mean_shift", "brightness", mean_shift, (0.05, 0.1, 0.16, 0.23, 0.32)),
    DistortionType("jitter", "spatial", jitter, (1, 2, 3, 5, 8), integer=True),
    DistortionType("non_eccentricity_patch", "spatial", non_eccentricity_patch,
                   (10, 25, 50, 100, 180), integer=True),
    DistortionType("pixelate", "spatial", pixelate, (0.7, 0.5, 0.33, 0.2, 0.12)),
    DistortionType("quantization", "spatial", quantization, (32, 16, 10, 6, 4), integer=True),
    DistortionType("color_block", "spatial", color_block, (2, 5, 10, 18, 30), integer=True),
    DistortionType("high_sharpen", "sharpness_contrast", high_sharpen, (1.0, 2.0, 3.5, 6.0, 10.0)),
    DistortionType("contrast_change", "sharpness_contrast", contrast_change,
                   (0.75, 0.55, 0.4, 0.27, 0.15)),
]}

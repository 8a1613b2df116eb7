"""Pristine reference crops from the natural photos that ship with scikit-image, scikit-learn
and matplotlib (no download needed).

Each photo gives up to ``crops_per_photo`` non-overlapping square crops, chosen on a grid as the
most textured ones (highest mean gradient magnitude), so that flat sky or black background is not
used as a reference. The choice is deterministic.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Photo:
    """A bundled natural photo."""

    name: str
    package: str
    load: Callable[[], np.ndarray]
    greyscale: bool = False


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load():
        from skimage import data

        return getattr(data, name)()

    return load


def _motorcycle() -> np.ndarray:
    from skimage import data

    return data.stereo_motorcycle()[0]


def _sklearn(index: int) -> Callable[[], np.ndarray]:
    def load():
        from sklearn.datasets import load_sample_images

        return load_sample_images().images[index]

    return load


def _grace_hopper() -> np.ndarray:
    import matplotlib
    from PIL import Image

    path = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


# Every natural photograph bundled with the three packages (diagrams, logos, synthetic images
# and the 25-pixel LFW faces are left out). Colour photos first, in a fixed order.
PHOTOS: tuple[Photo, ...] = (
    Photo("astronaut", "scikit-image", _skimage("astronaut")),
    Photo("coffee", "scikit-image", _skimage("coffee")),
    Photo("chelsea", "scikit-image", _skimage("chelsea")),
    Photo("rocket", "scikit-image", _skimage("rocket")),
    Photo("china", "scikit-learn", _sklearn(0)),
    Photo("flower", "scikit-learn", _sklearn(1)),
    Photo("grace_hopper", "matplotlib", _grace_hopper),
    Photo("motorcycle", "scikit-image", _motorcycle),
    Photo("hubble_deep_field", "scikit-image", _skimage("hubble_deep_field")),
    Photo("immunohistochemistry", "scikit-image", _skimage("immunohistochemistry")),
    Photo("retina", "scikit-image", _skimage("retina")),
    Photo("camera", "scikit-image", _skimage("camera"), greyscale=True),
    Photo("coins", "scikit-image", _skimage("coins"), greyscale=True),
    Photo("clock", "scikit-image", _skimage("clock"), greyscale=True),
    Photo("moon", "scikit-image", _skimage("moon"), greyscale=True),
    Photo("grass", "scikit-image", _skimage("grass"), greyscale=True),
    Photo("gravel", "scikit-image", _skimage("gravel"), greyscale=True),
    Photo("brick", "scikit-image", _skimage("brick"), greyscale=True),
)


@dataclass(frozen=True)
class ReferenceCrop:
    """A reference image: a crop of a bundled photo."""

    photo: str
    package: str
    crop_index: int
    top: int
    left: int
    size: int
    greyscale: bool

    @property
    def name(self) -> str:
        return f"{self.photo}_{self.crop_index}"


def photo_rgb(photo: Photo) -> np.ndarray:
    """The photo as an (H, W, 3) uint8 array."""
    image = np.asarray(photo.load())
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3]).astype(np.uint8)


def _texture(image: np.ndarray) -> np.ndarray:
    grey = image.astype(np.float32).mean(axis=2)
    gy, gx = np.gradient(grey)
    return np.hypot(gx, gy)


def plan_crops(photo: Photo, *, size: int, crops_per_photo: int) -> list[ReferenceCrop]:
    """The ``crops_per_photo`` most textured non-overlapping ``size``² crops of ``photo``."""
    image = photo_rgb(photo)
    h, w = image.shape[:2]
    if min(h, w) < size:
        raise ValueError(f"Photo {photo.name!r} ({h}×{w}) is smaller than the crop size {size}.")
    texture = _texture(image)
    stride = max(8, size // 4)
    candidates = []
    for top in range(0, h - size + 1, stride):
        for left in range(0, w - size + 1, stride):
            score = float(texture[top:top + size, left:left + size].mean())
            candidates.append((-score, top, left))
    candidates.sort()
    chosen: list[tuple[int, int]] = []
    for _, top, left in candidates:
        if all(abs(top - t) >= size or abs(left - lf) >= size for t, lf in chosen):
            chosen.append((top, left))
        if len(chosen) == crops_per_photo:
            break
    return [ReferenceCrop(photo.name, photo.package, k, top, left, size, photo.greyscale)
            for k, (top, left) in enumerate(chosen)]


def crop_image(crop: ReferenceCrop) -> np.ndarray:
    """Pixels of ``crop`` as an (size, size, 3) uint8 array."""
    photo = next(p for p in PHOTOS if p.name == crop.photo)
    image = photo_rgb(photo)
    return image[crop.top:crop.top + crop.size, crop.left:crop.left + crop.size].copy()

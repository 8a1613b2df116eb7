"""Input pipelines: image → model input, in training (random, seeded) and at test time.

A pipeline turns a decoded RGB PIL image into what a model consumes:

:class:`ImagePipeline` (MANIQA, BaseCNN)
    resize (bicubic) → random crop → horizontal flip with ``flip_p`` → normalise, in training;
    resize → the test-crop policy (``full``, ``center``, ``five_point``, ``grid:K``) at test
    time, the model's scores averaged over the crops (identical crop positions count once).
:class:`MusiqPipeline` (MUSIQ)
    optional resize of the longer side → flip → [-1, 1] →
    :func:`~qd_lib.models.musiq.multiscale_patches`.

Training randomness comes from a ``numpy.random.Generator`` that the trainer seeds per
(seed, epoch, image), so every view is reproducible whatever the worker layout, and a resumed
run sees the same views as an uninterrupted one.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from qd_lib.models.configs import InputPolicy


def _pair(value) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    h, w = value
    return int(h), int(w)


def _to_uint8_tensor(image: Image.Image) -> torch.Tensor:
    array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.transpose(2, 0, 1).copy())


def crop_positions(height: int, width: int, crop: tuple[int, int], policy: str
                   ) -> list[tuple[int, int]]:
    """Top-left corners of the test crops of ``policy`` for an image of the given size.

    Duplicates (e.g. every corner of an image the size of the crop) are removed, keeping order.
    """
    ch, cw = crop
    if ch > height or cw > width:
        raise ValueError(f"Crop {ch}×{cw} is larger than the image {height}×{width}.")
    bottom, right = height - ch, width - cw
    if policy == "center":
        positions = [(bottom // 2, right // 2)]
    elif policy == "five_point":  # the official MANIQA order: corners, then the centre
        positions = [(0, 0), (0, right), (bottom, 0), (bottom, right), (bottom // 2, right // 2)]
    elif policy.startswith("grid:"):
        k = int(policy[5:])
        rows = math.ceil(math.sqrt(k))
        cols = math.ceil(k / rows)
        ys = np.linspace(0, bottom, rows).round().astype(int) if rows > 1 else [bottom // 2]
        xs = np.linspace(0, right, cols).round().astype(int) if cols > 1 else [right // 2]
        positions = [(int(y), int(x)) for y in ys for x in xs][:k]
    else:
        raise ValueError(f"Unknown crop policy {policy!r}.")
    return list(dict.fromkeys(positions))


class ImagePipeline:
    """Resize, crop, flip and normalise images for MANIQA and BaseCNN (see module docstring)."""

    def __init__(self, policy: InputPolicy):
        if policy.kind != "image":
            raise ValueError(f"ImagePipeline needs an input policy of kind 'image'. Got "
                             f"{policy.kind!r}.")
        self.policy = policy
        self.resize = _pair(policy.resize)
        self.crop = _pair(policy.crop)
        self.mean = torch.tensor(policy.mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(policy.std, dtype=torch.float32).view(3, 1, 1)

    def describe(self) -> dict:
        """The inference policy, for run records."""
        return {"kind": "image", "resize": list(self.resize) if self.resize else None,
                "crop": list(self.crop) if self.crop else None,
                "test_crops": self.policy.eval_crops, "aggregate": "mean of crop scores",
                "normalisation": {"mean": list(self.policy.mean), "std": list(self.policy.std)}}

    def load(self, image: Image.Image) -> torch.Tensor:
        """Decoded image → resized uint8 tensor (3, H, W) (deterministic)."""
        if self.resize is not None and (image.height, image.width) != self.resize:
            image = image.resize((self.resize[1], self.resize[0]), Image.BICUBIC)
        return _to_uint8_tensor(image)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255.0 - self.mean) / self.std

    def _check_crop(self, img: torch.Tensor) -> tuple[int, int]:
        h, w = img.shape[-2:]
        if self.crop is None:
            return h, w
        ch, cw = self.crop
        if ch > h or cw > w:
            raise ValueError(f"Image of size {h}×{w} is smaller than the crop {ch}×{cw}; set "
                             "'resize' in the input policy.")
        return ch, cw

    def train_view(self, img: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Random crop and flip of a loaded image, normalised: (3, ch, cw)."""
        ch, cw = self._check_crop(img)
        h, w = img.shape[-2:]
        top = int(rng.integers(0, h - ch + 1))
        left = int(rng.integers(0, w - cw + 1))
        view = img[:, top:top + ch, left:left + cw]
        if rng.random() < self.policy.flip_p:
            view = view.flip(-1)
        return self._normalise(view)

    def eval_view(self, img: torch.Tensor) -> torch.Tensor:
        """Test crops of a loaded image, normalised: (K, 3, ch, cw)."""
        if self.policy.eval_crops == "full" or self.crop is None:
            return self._normalise(img)[None]
        ch, cw = self._check_crop(img)
        h, w = img.shape[-2:]
        views = [img[:, y:y + ch, x:x + cw]
                 for y, x in crop_positions(h, w, (ch, cw), self.policy.eval_crops)]
        return self._normalise(torch.stack(views))

    @staticmethod
    def collate_train(views: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(views)

    @staticmethod
    def collate_eval(views: list[torch.Tensor]) -> torch.Tensor:
        counts = {v.shape for v in views}
        if len(counts) > 1:
            raise ValueError(f"Test views of one batch differ in shape: {sorted(counts)}; use "
                             "a fixed 'resize' or eval_batch_size=1.")
        return torch.stack(views)  # (B, K, 3, h, w)

    @staticmethod
    def predict(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
        """Scores of a test batch (B, K, 3, h, w): the mean over the K crops, (B,)."""
        b, k = batch.shape[:2]
        scores = model(batch.reshape(b * k, *batch.shape[2:]))
        return scores.reshape(b, k).mean(dim=1)


class MusiqPipeline:
    """MUSIQ's multi-scale patch packing, with a horizontal flip in training."""

    def __init__(self, policy: InputPolicy, preprocess: dict):
        if policy.kind != "musiq_patches":
            raise ValueError(f"MusiqPipeline needs an input policy of kind 'musiq_patches'. Got "
                             f"{policy.kind!r}.")
        self.policy = policy
        self.preprocess = dict(preprocess)

    def describe(self) -> dict:
        return {"kind": "musiq_patches", "max_longer_side": self.policy.max_longer_side,
                "resize_longer_side": self.policy.resize_longer_side,
                "test_crops": "full (one multi-scale pass)",
                "patch_size": self.preprocess["patch_size"],
                "longer_side_lengths": list(self.preprocess["longer_side_lengths"]),
                "native_resolution": self.preprocess["max_seq_len_from_original_res"],
                "hse_grid_size": self.preprocess["hse_grid_size"]}

    def load(self, image: Image.Image) -> torch.Tensor:
        limit = self.policy.max_longer_side
        longer = max(image.height, image.width)
        if limit is not None and (longer > limit or (self.policy.resize_longer_side
                                                     and longer != limit)):
            ratio = limit / longer
            size = (max(1, round(image.width * ratio)), max(1, round(image.height * ratio)))
            image = image.resize(size, Image.BICUBIC)
        return _to_uint8_tensor(image)

    def _pack(self, img: torch.Tensor) -> torch.Tensor:
        from qd_lib.models.musiq import multiscale_patches

        return multiscale_patches(img.float() / 127.5 - 1.0, **self.preprocess)

    def train_view(self, img: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        if rng.random() < self.policy.flip_p:
            img = img.flip(-1)
        return self._pack(img)

    def eval_view(self, img: torch.Tensor) -> torch.Tensor:
        return self._pack(img)

    @staticmethod
    def collate_train(views: list[torch.Tensor]) -> torch.Tensor:
        from qd_lib.models.musiq import collate_patches

        return collate_patches(views)

    collate_eval = collate_train

    @staticmethod
    def predict(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
        return model(batch)


def make_pipeline(model: torch.nn.Module, policy: InputPolicy):
    """The pipeline for ``model`` under ``policy``."""
    if policy.kind == "musiq_patches":
        preprocess = getattr(model, "preprocess", None)
        if preprocess is None:
            raise ValueError("Input policy 'musiq_patches' needs a MUSIQ model.")
        return MusiqPipeline(policy, preprocess)
    return ImagePipeline(policy)


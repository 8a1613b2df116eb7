"""An offline stand-in for CIFAR-10: scikit-learn's handwritten digits, **not CIFAR-10**.

CIFAR-10 cannot be downloaded on an offline machine, so the classification pipeline of the
supplement's §F.3 is exercised on a small real classification set that installs with the
project: ``sklearn.datasets.load_digits`` (1,797 greyscale 8×8 digits, 10 classes, the UCI
"Optical Recognition of Handwritten Digits" test set, bundled inside scikit-learn).

Conversion, exactly: pixel values 0–16 → ×255/16 → bilinear upsampling to 32×32 (torch
``interpolate``, ``align_corners=False``) → rounded to uint8 → the grey channel repeated as R, G
and B. Split: stratified by class, 20 % test, ``random_state=0``
(``sklearn.model_selection.train_test_split``), each part in increasing original index: 1,437
train and 360 test images. Digits are not mirror-symmetric, so the training recipe for this set
uses random crops without horizontal flips.

What it is not: natural photographs, 32×32 content, or CIFAR-10's difficulty (a small CNN
reaches well over 90 % on all of it). Numbers measured on it show that the pipeline runs and
how the methods order on one small real set; they are never CIFAR-10 results.
"""
from __future__ import annotations

import logging

import numpy as np

from qd_lib.data.classification import ImageClassificationSet

logger = logging.getLogger(__name__)

__all__ = ["DIGITS_TITLE", "load_digits_standin"]

DIGITS_TITLE = "digits stand-in (scikit-learn 8×8 digits at 32×32, NOT CIFAR-10)"


def load_digits_standin(*, size: int = 32, test_fraction: float = 0.2,
                        random_state: int = 0) -> ImageClassificationSet:
    """scikit-learn's digits as a 10-class RGB image set (see the module docstring).

    Parameters
    ----------
    size : int, default=32
        Side of the upsampled images.
    test_fraction : float, default=0.2
        Share of each class held out for testing.
    random_state : int, default=0
        Seed of the stratified split.

    Returns
    -------
    ImageClassificationSet
        ``name="digits"``, ``stand_in=True``.
    """
    import sklearn
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from qd_lib.utils.validation import check_scalar

    check_scalar(size, "size", int, min_val=8)
    check_scalar(test_fraction, "test_fraction", float, min_val=0.0, max_val=1.0,
                 closed="neither")
    bunch = load_digits()
    grey = torch.from_numpy(bunch.images.astype(np.float32) * (255.0 / 16.0))[:, None]
    up = F.interpolate(grey, size=(size, size), mode="bilinear", align_corners=False)
    images = up.round().clamp(0, 255).to(torch.uint8).repeat(1, 3, 1, 1).numpy()
    labels = bunch.target.astype(np.int64)
    index = np.arange(len(labels))
    train, test = train_test_split(index, test_size=test_fraction, stratify=labels,
                                   random_state=random_state)
    train, test = np.sort(train), np.sort(test)
    source = {"package": f"scikit-learn {sklearn.__version__}",
              "loader": "sklearn.datasets.load_digits",
              "conversion": f"0-16 x 255/16, bilinear upsampling 8x8 -> {size}x{size} "
                            "(align_corners=False), rounded to uint8, grey repeated as RGB",
              "split": f"train_test_split(test_size={test_fraction}, stratify=labels, "
                       f"random_state={random_state}), each part in increasing index",
              "train_index_sha256": _index_hash(train), "test_index_sha256": _index_hash(test)}
    return ImageClassificationSet(
        name="digits", train_images=np.ascontiguousarray(images[train]),
        train_labels=labels[train], test_images=np.ascontiguousarray(images[test]),
        test_labels=labels[test], classes=tuple(str(c) for c in range(10)), stand_in=True,
        title=DIGITS_TITLE, source=source)


def _index_hash(index: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.asarray(index, dtype=np.int64).tobytes()).hexdigest()

"""Image classification sets held in memory: CIFAR-10 and the offline digits stand-in.

The coreset experiment of the supplement's §F.3 (Table 4) runs on CIFAR-10. Its images are small
(32×32) and few enough (60,000) to hold as one uint8 array, so these sets are not manifests of
image files: an :class:`ImageClassificationSet` keeps the train and test images as
``(n, 3, H, W)`` uint8 arrays with integer labels, plus where they came from.

=============  ==========================================================================
name           what
=============  ==========================================================================
``cifar10``    CIFAR-10 from the standard python batches under ``QD_DATA_ROOT/cifar10/``
               (:mod:`qd_lib.data.cifar10`); never downloaded
``digits``     scikit-learn's 8×8 handwritten digits upsampled to 32×32 RGB
               (:mod:`qd_lib.data.digits`): a small *stand-in* that installs with the
               project, **not CIFAR-10**; every record and table made from it says so
=============  ==========================================================================

>>> data = open_classification_set("digits")
>>> data.n_train, data.n_test, data.image_shape, data.stand_in
(1437, 360, (3, 32, 32), True)
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from qd_lib.utils.errors import UnknownNameError

logger = logging.getLogger(__name__)

__all__ = ["CLASSIFICATION_SETS", "CLASS_COUNTS", "ImageClassificationSet",
           "open_classification_set"]

#: Registered names and one line each.
CLASSIFICATION_SETS = {
    "cifar10": "CIFAR-10 (python batches under QD_DATA_ROOT/cifar10/; 50,000 train / 10,000 "
               "test, 32×32 RGB, 10 classes)",
    "digits": "scikit-learn digits, 8×8 greyscale upsampled to 32×32 RGB: an offline STAND-IN, "
              "not CIFAR-10 (1,437 train / 360 test, 10 classes)",
}

#: Number of classes of each registered set (known without loading it).
CLASS_COUNTS = {"cifar10": 10, "digits": 10}


@dataclass(frozen=True)
class ImageClassificationSet:
    """Train and test images with class labels, in memory.

    Attributes
    ----------
    name : str
        ``"cifar10"`` or ``"digits"``.
    train_images, test_images : ndarray of uint8, shape (n, 3, H, W)
        RGB images, channels first.
    train_labels, test_labels : ndarray of int64, shape (n,)
        Class indices ``0 … n_classes − 1``.
    classes : tuple of str
        Class names, by index.
    stand_in : bool
        True when the set is not the dataset of the experiment it stands in for (the digits).
    title : str
        How tables and figures name it (the stand-in says it is one).
    source : dict
        Where the data came from: files and their sha256, or the package and version, and how
        the split was made.
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: tuple[str, ...]
    stand_in: bool
    title: str
    source: dict = field(default_factory=dict)

    def __post_init__(self):
        for part in ("train", "test"):
            images = getattr(self, f"{part}_images")
            labels = getattr(self, f"{part}_labels")
            if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != 3:
                raise ValueError(f"The '{part}_images' parameter must be a uint8 array of shape "
                                 f"(n, 3, H, W). Got {images.dtype} {images.shape} instead.")
            if labels.shape != (images.shape[0],):
                raise ValueError(f"The '{part}_labels' parameter must have one label per image "
                                 f"({images.shape[0]}). Got shape {labels.shape} instead.")
            if len(labels) and (labels.min() < 0 or labels.max() >= len(self.classes)):
                raise ValueError(f"The '{part}_labels' parameter must hold class indices in "
                                 f"[0, {len(self.classes)}). Got values in "
                                 f"[{labels.min()}, {labels.max()}] instead.")
        if self.train_images.shape[1:] != self.test_images.shape[1:]:
            raise ValueError("Train and test images must have the same shape. Got "
                             f"{self.train_images.shape[1:]} and {self.test_images.shape[1:]}.")

    @property
    def n_train(self) -> int:
        return int(self.train_images.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.test_images.shape[0])

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.train_images.shape[1:])

    @cached_property
    def train_hash(self) -> str:
        """sha256 of the training images and labels (what selections are computed from)."""
        return _digest(self.train_images, self.train_labels)

    @cached_property
    def test_hash(self) -> str:
        """sha256 of the test images and labels (accuracies are only comparable on one)."""
        return _digest(self.test_images, self.test_labels)

    def class_counts(self, part: str = "train") -> np.ndarray:
        """Images per class in ``part`` (``"train"`` or ``"test"``)."""
        labels = self.train_labels if part == "train" else self.test_labels
        return np.bincount(labels, minlength=self.n_classes)

    def describe(self) -> dict:
        """What run records store about the data."""
        return {"name": self.name, "title": self.title, "stand_in": self.stand_in,
                "n_train": self.n_train, "n_test": self.n_test, "n_classes": self.n_classes,
                "classes": list(self.classes), "image_shape": list(self.image_shape),
                "train_hash": self.train_hash, "test_hash": self.test_hash,
                "source": self.source}


def _digest(images: np.ndarray, labels: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(repr((images.shape, str(images.dtype))).encode())
    h.update(np.ascontiguousarray(images).tobytes())
    h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()


def open_classification_set(name: str, root=None) -> ImageClassificationSet:
    """Load a registered classification set.

    Parameters
    ----------
    name : {"cifar10", "digits"}
    root : path, optional
        ``cifar10`` only: the folder holding the python batches (default
        ``QD_DATA_ROOT/cifar10``).

    Raises
    ------
    UnknownNameError
        For an unregistered name.
    CIFARFileMissingError, CIFARFormatError
        ``cifar10``: a batch file is missing or not in the CIFAR layout (the message names it).
    """
    if name == "cifar10":
        from qd_lib.data.cifar10 import load_cifar10

        return load_cifar10(root)
    if name == "digits":
        from qd_lib.data.digits import load_digits_standin

        return load_digits_standin()
    raise UnknownNameError("classification set", name, CLASSIFICATION_SETS)

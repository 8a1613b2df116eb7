"""Image encoders and cached, resumable, optionally Dask-sharded embedding extraction.

One interface for every encoder (:class:`~qd_lib.encoders.base.Encoder`): a picklable per-image
CPU transform that yields uint8 tensors, and a batched forward pass that returns named float32
outputs, the first being the embedding. Weights are resolved offline (torchvision's hub cache
or ``QD_WEIGHTS_DIR``) and hash-checked; a missing file is an ``OfflineWeightsError``, never a
random initialisation.

========================  =====================================================  ===============
name                      what                                                   outputs
========================  =====================================================  ===============
``resnet50``              torchvision ResNet-50, ImageNet V1 (default) or V2     embedding 2048
``arniqa``                ARNIQA (ResNet-50 + ARNIQA.pth), full + half scale     embedding 4096
``liqe``                  LIQE (CLIP ViT-B/32 + LIQE checkpoint), 15 patches     embedding 512,
                                                                                 quality5 5,
                                                                                 joint495
``mobilenet_v2``          torchvision MobileNet-V2 IMAGENET1K_V1 (offline)       embedding 1280
``mobilenet_v2_stats``    the same MobileNet-V2 (offline): mean and std of 5     embedding 976
                          intermediate feature maps, whole image at native
                          resolution; an offline quality embedding
``nss``                   weight-free natural-scene statistics (offline)         embedding 81
``pixels``                downsampled pixel statistics (tests, CI; not learned)  embedding 192,
                                                                                 stats 16
========================  =====================================================  ===============

Each encoder module's docstring gives its exact preprocessing.

Datasets are opened in one place, :func:`qd_lib.data.open_dataset` (or
:func:`~qd_lib.data.load_manifest`), and the result is passed to :func:`extract`:

>>> from qd_lib.encoders import available_encoders, load_encoder, extract
>>> available_encoders()
['arniqa', 'liqe', 'mobilenet_v2', 'mobilenet_v2_stats', 'nss', 'pixels', 'resnet50']
>>> from qd_lib.data import open_dataset
>>> emb = extract(open_dataset("proxy-tiny"), "nss")     # doctest: +SKIP
>>> emb.array.shape                                      # doctest: +SKIP
(160, 81)

Offline defaults: ``mobilenet_v2`` (content) and ``nss`` (quality), see
:data:`OFFLINE_DEFAULTS`; ``mobilenet_v2_stats`` is the stronger offline quality embedding of the
``offline-deep`` feature set.
"""
from __future__ import annotations

import importlib
import logging

from qd_lib.encoders.base import Encoder, ImageTooSmallError, WeightsRecord
from qd_lib.encoders.extract import Embeddings, embedding_path, extract, load_embeddings
from qd_lib.utils.device import resolve_device
from qd_lib.utils.errors import UnknownNameError

logger = logging.getLogger(__name__)

_REGISTRY: dict[str, tuple[str, str, str]] = {
    "arniqa": ("qd_lib.encoders.arniqa", "ARNIQAEncoder",
               "ARNIQA quality embedding: ResNet-50 trunk with ARNIQA.pth, L2-normalised "
               "full- and half-scale features (4096-d)"),
    "liqe": ("qd_lib.encoders.liqe", "LIQEEncoder",
             "LIQE: CLIP ViT-B/32 with the LIQE checkpoint; 512-d mean patch embedding, 5 "
             "quality and 495 joint-class probabilities"),
    "mobilenet_v2": ("qd_lib.encoders.mobilenet_v2", "MobileNetV2Encoder",
                     "torchvision MobileNet-V2 IMAGENET1K_V1, pooled features (1280-d); "
                     "offline default content encoder"),
    "mobilenet_v2_stats": ("qd_lib.encoders.mobilenet_v2_stats", "MobileNetV2StatsEncoder",
                           "the offline MobileNet-V2: per-channel mean and std of 5 intermediate "
                           "feature maps (blocks 1, 3, 6, 13, 17), whole image at native "
                           "resolution (976-d); offline quality embedding"),
    "nss": ("qd_lib.encoders.nss", "NSSEncoder",
            "weight-free natural-scene statistics (BRISQUE/NIQE-style MSCN GGD/AGGD fits at 3 "
            "scales + global cues, 81-d); offline default quality encoder"),
    "pixels": ("qd_lib.encoders.pixels", "PixelStatsEncoder",
               "downsampled pixel statistics, not a learned encoder: 8x8 RGB thumbnail "
               "(192-d) and 16 local statistics (stats); for tests and CI"),
    "resnet50": ("qd_lib.encoders.resnet50", "ResNet50Encoder",
                 "torchvision ResNet-50, ImageNet V1 (default) or V2 weights, pooled features "
                 "(2048-d)"),
}

OFFLINE_DEFAULTS = {"content": "mobilenet_v2", "quality": "nss"}


def available_encoders() -> list[str]:
    """Names of the registered encoders."""
    return sorted(_REGISTRY)


def describe_encoders() -> dict[str, str]:
    """One line per encoder."""
    return {name: _REGISTRY[name][2] for name in available_encoders()}


def encoder_class(name: str) -> type[Encoder]:
    """The class registered under ``name``."""
    if name not in _REGISTRY:
        raise UnknownNameError("encoder", name, _REGISTRY)
    module, cls, _ = _REGISTRY[name]
    return getattr(importlib.import_module(module), cls)


def load_encoder(name: str, *, device: str = "cpu", **options) -> Encoder:
    """Build encoder ``name`` with its real weights, ready for inference on ``device``.

    Parameters
    ----------
    name : str
        One of :func:`available_encoders`.
    device : str, default="cpu"
        ``"auto"`` picks CUDA when available.
    **options
        The encoder's own options (e.g. ``weights="IMAGENET1K_V2"`` for ``resnet50``,
        ``input_policy="five_crop"`` for ``arniqa``, ``checkpoint=path``).

    Raises
    ------
    UnknownNameError
        Unknown encoder name (the message lists the registered ones).
    OfflineWeightsError
        A weights file is missing or does not match its published hash.
    """
    encoder = encoder_class(name)(**options)
    return encoder.prepare(resolve_device(device))


__all__ = [
    "OFFLINE_DEFAULTS",
    "Embeddings",
    "Encoder",
    "ImageTooSmallError",
    "WeightsRecord",
    "available_encoders",
    "describe_encoders",
    "embedding_path",
    "encoder_class",
    "extract",
    "load_embeddings",
    "load_encoder",
]


def __getattr__(name):
    if name == "resolve_dataset":  # removed: one way to open a dataset
        raise AttributeError(
            "qd_lib.encoders.resolve_dataset was removed: open datasets with "
            "qd_lib.data.open_dataset(name, root) and pass the result to extract() (it carries "
            "the manifest and the image root).")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

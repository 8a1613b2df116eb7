"""Selection features of an in-memory classification set, cached with their provenance.

The IQA datasets are manifests of image files and go through :func:`qd_lib.encoders.extract`.
CIFAR-10 is 60,000 32×32 images held as one uint8 array, and writing them out as files only to
read them back would add nothing, so here the same encoders run directly on the array (their
forward pass and weights, verified as usual) and the result is cached beside the runs:

``content``
    MobileNet-V2 ImageNet (``mobilenet_v2``, the offline content encoder), 1280-d. Each 32×32
    image is upsampled to the encoder's 224×224 input (bilinear, ``align_corners=False``,
    rounded to uint8), whole, no crop, then ImageNet mean/std (the encoder's own
    normalisation).
``quality``
    ``nss``, the weight-free natural-scene-statistics embedding (81-d), on the 32×32 image
    itself: a label-free second view of each image (contrast, sharpness, noise, colour
    statistics) for Q-Diverse's quality role. The supplement's γ = 0.7 weights content over it.
``probs``
    Class probabilities for Contextual Diversity: 5-fold cross-fitted multinomial logistic
    regression on the standardised content embedding with the **training labels** (each row
    predicted by a model that did not see it). This uses labels, as DeepCore's CD does (its
    softmax comes from a network trained on the labelled training set); it is not label-free.

The ``embedding`` read by the baselines (Herding, k-Center, Moderate, PGCS; and CD's row check)
is the content embedding: in DeepCore the classification baselines work on a network's
penultimate features, which a semantic ImageNet embedding stands in for.

Cache: ``runs_dir()/cifar10/features/<dataset>__<train_hash8>__<key>/`` with ``content.npy``,
``quality.npy``, ``probs.npy`` and ``features.json`` (written last: encoder descriptions with
weights sha256, preprocessing, shapes, sha256 of every array file, seconds, versions). A cache
whose sidecar or files disagree is recomputed, with a message saying why.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qd_lib.data.classification import ImageClassificationSet
from qd_lib.paths import display_path, runs_dir
from qd_lib.utils.io import atomic_write_bytes, atomic_write_json, sha256_file
from qd_lib.utils.progress import progress
from qd_lib.utils.validation import check_scalar

logger = logging.getLogger(__name__)

__all__ = ["ClassificationFeatures", "EXPERIMENT_DIR", "FEATURE_VERSION", "class_probabilities",
           "selection_features"]

EXPERIMENT_DIR = "cifar10"
FEATURE_VERSION = 1  # bump when the computation changes: cached features are then recomputed
OUTPUTS = ("content", "quality", "probs")
PROBS_DESCRIPTION = ("5-fold cross-fitted multinomial logistic regression (C=1, lbfgs) on the "
                     "standardised content embedding, training labels (label-using, as "
                     "DeepCore's CD)")


@dataclass
class ClassificationFeatures:
    """The selection inputs of one classification set's training split.

    Attributes
    ----------
    arrays : dict of str to ndarray
        ``content`` (n, 1280), ``quality`` (n, 81), ``probs`` (n, n_classes), float32, rows in
        the training split's order.
    meta : dict
        The sidecar (encoders, weights, preprocessing, hashes, timing).
    folder : Path
        The cache folder.
    from_cache : bool
        True when nothing was computed.
    """

    arrays: dict
    meta: dict
    folder: Path
    from_cache: bool = False

    def inputs(self, roles) -> dict[str, np.ndarray]:
        """The arrays for a selection method's input roles (``get_method(m).inputs``):
        ``content``/``quality``/``probs`` as stored, ``embedding`` = the content embedding."""
        out = {}
        for role in roles:
            key = "content" if role == "embedding" else role
            if key not in self.arrays:
                raise KeyError(f"No selection input for role {role!r}; roles: "
                               f"['content', 'quality', 'embedding', 'probs'].")
            out[role] = self.arrays[key]
        return out

    def describe(self) -> dict:
        """What a selection record says about its inputs."""
        return {"folder": display_path(self.folder), "key": self.meta["key"],
                "roles": {"content": self.meta["content"]["encoder"]["key"],
                          "quality": self.meta["quality"]["encoder"]["key"],
                          "embedding": self.meta["content"]["encoder"]["key"] + " (content)",
                          "probs": self.meta["probs"]["description"]},
                "sha256": {k: v["sha256"] for k, v in self.meta["files"].items()}}


def _upsample_uint8(batch, size: int):
    import torch
    import torch.nn.functional as F

    if batch.shape[-1] == size and batch.shape[-2] == size:
        return batch
    up = F.interpolate(batch.float(), size=(size, size), mode="bilinear", align_corners=False)
    return up.round_().clamp_(0, 255).to(torch.uint8)


def _encode_content(images: np.ndarray, *, device, batch_size: int, input_size: int,
                    show_progress) -> tuple[np.ndarray, dict]:
    import torch

    from qd_lib.encoders import load_encoder

    encoder = load_encoder("mobilenet_v2", device=device)
    out = np.empty((len(images), encoder.dim), dtype=np.float32)
    with torch.inference_mode():
        for start in progress(range(0, len(images), batch_size), desc="MobileNet-V2",
                              enabled=show_progress):
            batch = torch.from_numpy(images[start:start + batch_size])
            up = _upsample_uint8(batch.to(encoder.device), input_size)
            out[start:start + len(batch)] = encoder.encode({"image": up})["embedding"].numpy()
    described = encoder.describe()
    described["preprocessing"] = (
        f"uint8 {images.shape[2]}x{images.shape[3]} RGB -> bilinear upsampling to "
        f"{input_size}x{input_size} (torch interpolate, align_corners=False), rounded to uint8, "
        "whole image (no crop); /255; ImageNet mean/std; global average pool (1280-d)")
    return out, described


def _encode_quality(images: np.ndarray, *, device, batch_size: int, show_progress
                    ) -> tuple[np.ndarray, dict]:
    import torch

    from qd_lib.encoders.nss import NSSEncoder

    encoder = NSSEncoder().prepare(device)
    out = np.empty((len(images), encoder.dim), dtype=np.float32)
    for start in progress(range(0, len(images), batch_size), desc="NSS", enabled=show_progress):
        batch = torch.from_numpy(images[start:start + batch_size]).to(encoder.device)
        out[start:start + len(batch)] = encoder.features(batch).float().cpu().numpy()
    described = encoder.describe()
    described["preprocessing"] = (f"uint8 {images.shape[2]}x{images.shape[3]} RGB as it is (no "
                                  "resize); " + described["preprocessing"])
    return out, described


def class_probabilities(X: np.ndarray, labels: np.ndarray, *, n_classes: int, n_folds: int = 5,
                        seed: int = 0) -> np.ndarray:
    """Cross-fitted class probabilities of a linear probe (see the module docstring).

    Each row's probabilities come from a multinomial logistic regression fitted on the other
    folds (stratified, shuffled with ``seed``), on z-scored features. Classes absent from a
    training fold get probability 0 before the selector's clipping.

    Returns
    -------
    ndarray of float32, shape (n, n_classes)
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels, dtype=np.int64)
    folds = max(2, min(n_folds, int(np.bincount(labels).min())))
    out = np.zeros((len(labels), n_classes), dtype=np.float64)
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    for train, held in splitter.split(X, labels):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=500))
        model.fit(X[train], labels[train])
        out[np.ix_(held, model[-1].classes_)] = model.predict_proba(X[held])
    return out.astype(np.float32)


def _cache_key(input_size: int) -> str:
    return f"mobilenet_v2-{input_size}+nss+linprobe5__v{FEATURE_VERSION}"


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def _read_cache(folder: Path, expected: dict) -> tuple[dict | None, str]:
    sidecar = folder / "features.json"
    if not sidecar.is_file():
        return None, "no cache"
    meta = json.loads(sidecar.read_text(encoding="utf-8"))
    for key, value in expected.items():
        if meta.get(key) != value:
            return None, f"its {key!r} differs ({meta.get(key)!r} vs {value!r})"
    arrays = {}
    for name in OUTPUTS:
        entry = meta["files"].get(name) or {}
        path = folder / f"{name}.npy"
        if not path.is_file() or sha256_file(path) != entry.get("sha256"):
            return None, f"{name}.npy is missing or does not match its sha256"
        arrays[name] = np.load(path, mmap_mode="r")
    return {"arrays": arrays, "meta": meta}, ""


def selection_features(data: ImageClassificationSet, *, device: str = "auto",
                       batch_size: int = 128, input_size: int = 224, runs_root=None,
                       overwrite: bool = False, show_progress: bool | None = None
                       ) -> ClassificationFeatures:
    """Content, quality and probability features of ``data``'s training split, cached.

    Parameters
    ----------
    data : ImageClassificationSet
    device : str, default="auto"
        Where the encoders run (``"auto"``: CUDA when available).
    batch_size : int, default=128
    input_size : int, default=224
        Side the images are upsampled to for MobileNet-V2.
    runs_root : path, optional
        Default :func:`qd_lib.paths.runs_dir`; the cache lies under ``cifar10/features/``.
    overwrite : bool, default=False
        Recompute even when a matching cache exists.
    show_progress : bool, optional

    Returns
    -------
    ClassificationFeatures
    """
    import torch
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    from qd_lib.runner.spec import environment_record
    from qd_lib.utils.device import resolve_device

    check_scalar(batch_size, "batch_size", int, min_val=1)
    check_scalar(input_size, "input_size", int, min_val=32)
    key = _cache_key(input_size)
    root = Path(runs_root) if runs_root is not None else runs_dir()
    folder = root / EXPERIMENT_DIR / "features" / f"{data.name}__{data.train_hash[:8]}__{key}"
    expected = {"key": key, "dataset": data.name, "train_hash": data.train_hash,
                "n_train": data.n_train, "version": FEATURE_VERSION}
    if not overwrite:
        cached, why = _read_cache(folder, expected)
        if cached is not None:
            logger.info("selection features of %s from %s", data.name, display_path(folder))
            return ClassificationFeatures(cached["arrays"], cached["meta"], folder, True)
        if why != "no cache":
            logger.warning("recomputing the features in %s: %s", display_path(folder), why)
    dev = resolve_device(device)
    timings = {}
    t0 = time.perf_counter()
    content, content_desc = _encode_content(data.train_images, device=dev,
                                            batch_size=batch_size, input_size=input_size,
                                            show_progress=show_progress)
    timings["content_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    quality, quality_desc = _encode_quality(data.train_images, device=dev,
                                            batch_size=max(batch_size, 256),
                                            show_progress=show_progress)
    timings["quality_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    # BLAS threads follow torch's setting: on a busy shared CPU, OpenBLAS threads spinning
    # against other jobs made this probe ~15x slower than one thread (same result)
    with threadpool_limits(limits=torch.get_num_threads()):
        probs = class_probabilities(content, data.train_labels, n_classes=data.n_classes)
    timings["probs_s"] = round(time.perf_counter() - t0, 2)
    arrays = {"content": content, "quality": quality, "probs": probs}
    files = {}
    for name, array in arrays.items():
        path = atomic_write_bytes(folder / f"{name}.npy", _npy_bytes(array))
        files[name] = {"file": path.name, "shape": list(array.shape), "dtype": str(array.dtype),
                       "sha256": sha256_file(path)}
    env = environment_record()
    meta = {**expected, "title": data.title, "stand_in": data.stand_in,
            "content": {"encoder": content_desc, "dim": int(content.shape[1])},
            "quality": {"encoder": quality_desc, "dim": int(quality.shape[1])},
            "probs": {"description": PROBS_DESCRIPTION, "n_classes": data.n_classes},
            "embedding": "the content embedding", "files": files, "seconds": timings,
            "device": str(dev), "rows": "the training split, in order",
            "rows_sha256_16": hashlib.sha256(np.ascontiguousarray(data.train_labels).tobytes())
            .hexdigest()[:16], **env}
    atomic_write_json(folder / "features.json", meta)
    logger.info("selection features of %s: content %s, quality %s, probs %s in %s s",
                data.name, content.shape, quality.shape, probs.shape, timings)
    return ClassificationFeatures({k: np.load(folder / f"{k}.npy", mmap_mode="r")
                                   for k in OUTPUTS}, meta, folder, False)

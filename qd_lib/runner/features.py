"""Feature sources for coreset selection inside the runner (pluggable).

A feature source is a function ``source(manifest, root, rows, spec, inputs, *, seed)`` returning
``(arrays, description)``: one row-aligned 2-D array per requested input role of a selection
method (``embedding``; ``content`` and ``quality`` for Q-Diverse; ``embedding`` and ``probs``
for Contextual Diversity) and a JSON-able description for the run record. ``spec`` is the
sweep's ``features`` mapping; its ``source`` picks the function from :data:`FEATURE_SOURCES`
(:func:`register_feature_source` adds one).

``encoders``
    The feature sets of :mod:`qd_lib.selection.features`, the same code notebooks 03, 05 and 06
    use: ``{"source": "encoders", "set": "offline"}`` (MobileNet-V2 + NSS, the default) or
    ``"paper"`` (ResNet-50 + ARNIQA, LIQE for the baselines). Any role can be overridden by
    encoder name: ``content``, ``quality``, ``baseline`` (a name or a list, concatenated after
    standardisation) and ``probs`` (``"liqe.quality5"``, or ``"soft_clusters"``: soft k-means
    memberships of the ``quality`` embedding, the label-free stand-in).
``pixels``
    Downsampled pixel statistics, for tests and CI (no weights): ``content`` is an 8×8 RGB
    thumbnail (192-d), ``quality`` 16 local statistics (per-channel mean/std, gradient and
    Laplacian energies at two scales, local contrast, high-frequency share, colourfulness).
    Labelled ``"pixels (downsampled pixel statistics, not a learned encoder)"`` in every record.
    ``embedding`` and ``probs`` are derived as in the offline feature set
    (:func:`~qd_lib.selection.features.standardize_blocks`,
    :func:`~qd_lib.selection.features.soft_cluster_probabilities`).
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from qd_lib.data.manifest import Manifest
from qd_lib.selection.features import (
    FEATURE_SETS,
    get_feature_set,
    soft_cluster_probabilities,
    standardize_blocks,
)
from qd_lib.utils.errors import UnknownNameError

logger = logging.getLogger(__name__)

PIXELS_LABEL = "pixels (downsampled pixel statistics, not a learned encoder)"
SOFT_CLUSTERS = "soft_clusters"
SOFT_CLUSTERS_LABEL = ("soft_clusters: soft 5-means memberships of the quality features "
                       "(label-free stand-in for LIQE quality5)")
INPUT_ROLES = ("embedding", "content", "quality", "probs")
ENCODER_KEYS = ("set", "content", "quality", "baseline", "probs")

FeatureSource = Callable[..., tuple[dict, dict]]
FEATURE_SOURCES: dict[str, FeatureSource] = {}


def register_feature_source(name: str, func: FeatureSource | None = None):
    """Register ``func`` as feature source ``name`` (usable as a decorator)."""

    def add(f):
        FEATURE_SOURCES[name] = f
        return f

    return add(func) if func is not None else add


def _encoder_names(value) -> list[str]:
    return [value] if isinstance(value, str) else [str(v) for v in value]


def check_feature_spec(spec: Mapping, inputs: Sequence[str]) -> None:
    """Validate a ``features`` mapping for a method reading ``inputs`` (no data loaded)."""
    if not isinstance(spec, Mapping) or "source" not in spec:
        raise ValueError(f"The 'features' setting must be a mapping with a 'source' "
                         f"({sorted(FEATURE_SOURCES)}). Got {spec!r}.")
    if spec["source"] not in FEATURE_SOURCES:
        raise UnknownNameError("feature source", spec["source"], FEATURE_SOURCES)
    missing = [k for k in inputs if k not in INPUT_ROLES]
    if missing:
        raise ValueError(f"No feature source can provide the inputs {missing}.")
    if spec["source"] == "pixels":
        for key in spec:
            if key != "source":
                raise UnknownNameError("features key of source 'pixels'", key, ("source",))
    if spec["source"] != "encoders":
        return
    for key in spec:
        if key != "source" and key not in ENCODER_KEYS:
            raise UnknownNameError("features key of source 'encoders'", key,
                                   ("source",) + ENCODER_KEYS)
    get_feature_set(spec.get("set", "offline"))
    for key in ("content", "quality"):
        if key in spec and (not isinstance(spec[key], str) or spec[key] == SOFT_CLUSTERS):
            raise ValueError(f"The features key {key!r} must name one encoder. Got "
                             f"{spec[key]!r}.")
    if "baseline" in spec and not _encoder_names(spec["baseline"]):
        raise ValueError(f"The features key 'baseline' must name at least one encoder. Got "
                         f"{spec['baseline']!r}.")
    if "probs" in spec and spec["probs"] != SOFT_CLUSTERS and (
            not isinstance(spec["probs"], str) or "." not in spec["probs"]):
        raise ValueError(f"The features key 'probs' must be 'encoder.output' (e.g. "
                         f"'liqe.quality5': probabilities, not an embedding) or "
                         f"{SOFT_CLUSTERS!r}. Got {spec['probs']!r}.")
    try:
        from qd_lib.encoders import available_encoders
    except ImportError:
        return
    for key in ("content", "quality", "baseline", "probs"):
        if key not in spec or spec[key] == SOFT_CLUSTERS:
            continue
        for name in _encoder_names(spec[key]):
            base = name.split(".", 1)[0]
            if base not in available_encoders():
                raise UnknownNameError("encoder", base, available_encoders())


def get_features(manifest: Manifest, root, rows, spec: Mapping, inputs: Sequence[str], *,
                 seed: int = 0) -> tuple[dict[str, np.ndarray], dict]:
    """Arrays for ``inputs`` from the source ``spec`` names, and a description for records.

    ``seed`` seeds the label-free probability stand-in's clustering (the run's seed).
    """
    check_feature_spec(spec, inputs)
    func = FEATURE_SOURCES[spec["source"]]
    arrays, described = func(manifest, Path(root), np.asarray(rows, dtype=np.int64), spec,
                             tuple(inputs), seed=seed)
    return {k: arrays[k] for k in inputs}, described


# -- encoders -----------------------------------------------------------------------------------
def feature_set_from_spec(spec: Mapping):
    """The :class:`~qd_lib.selection.features.FeatureSet` an ``encoders`` spec describes."""
    fs = get_feature_set(spec.get("set", "offline"))
    changes = {k: str(spec[k]) for k in ("content", "quality") if k in spec}
    if "baseline" in spec:
        changes["baseline"] = tuple(_encoder_names(spec["baseline"]))
    if "probs" in spec:
        encoder, _, output = str(spec["probs"]).partition(".")
        changes["probs"] = None if spec["probs"] == SOFT_CLUSTERS else (encoder, output or None)
    if not changes:
        return fs
    return dataclasses.replace(fs, name=f"{fs.name}+custom", **changes)


@register_feature_source("encoders")
def encoder_features(manifest: Manifest, root: Path, rows: np.ndarray, spec: Mapping,
                     inputs: Sequence[str], *, seed: int = 0) -> tuple[dict, dict]:
    """Embeddings of a feature set (see the module docstring), via
    :func:`qd_lib.selection.features.feature_inputs`."""
    from qd_lib.selection.features import feature_inputs

    fs = feature_set_from_spec(spec)
    dataset = types.SimpleNamespace(manifest=manifest, root=root)
    provenance: dict = {}
    arrays = feature_inputs(inputs, dataset, rows, feature_set=fs, seed=seed,
                            provenance=provenance)
    roles = {}
    for key in inputs:
        if key in ("content", "quality"):
            roles[key] = getattr(fs, key)
        elif key == "embedding":
            roles[key] = "+".join(fs.baseline)
        elif key == "probs":
            roles[key] = ".".join(p for p in fs.probs if p) if fs.probs else \
                f"{SOFT_CLUSTERS}({fs.quality})"
    label = f"encoders {fs.name} (" + ", ".join(f"{k}={v}" for k, v in sorted(roles.items())) + ")"
    described = {"source": "encoders", "set": fs.name, "label": label, "roles": roles,
                 "encoders": provenance}
    if "probs" in inputs and fs.probs is None:
        described["probs"] = SOFT_CLUSTERS_LABEL
    return arrays, described


# -- pixels -------------------------------------------------------------------------------------
def _pixel_stats(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from scipy import ndimage

    with Image.open(path) as img:
        rgb = img.convert("RGB")
        thumb = np.asarray(rgb.resize((8, 8), Image.BOX), dtype=np.float32) / 255.0
        small = np.asarray(rgb.resize((128, 128), Image.BILINEAR), dtype=np.float64) / 255.0
    gray = small @ np.array([0.299, 0.587, 0.114])
    feats = [*small.mean(axis=(0, 1)), *small.std(axis=(0, 1))]
    for g in (gray, gray[::2, ::2]):
        gx, gy = ndimage.sobel(g, axis=1), ndimage.sobel(g, axis=0)
        mag = np.hypot(gx, gy)
        feats += [mag.mean(), mag.std(), np.abs(ndimage.laplace(g)).mean()]
    local_mean = ndimage.uniform_filter(gray, 3)
    local_sd = np.sqrt(np.maximum(ndimage.uniform_filter(gray ** 2, 3) - local_mean ** 2, 0))
    spectrum = np.abs(np.fft.rfft2(gray - gray.mean())) ** 2
    high = spectrum[32:96, 32:].sum() / max(spectrum.sum(), 1e-12)
    rg, yb = small[..., 0] - small[..., 1], 0.5 * (small[..., 0] + small[..., 1]) - small[..., 2]
    colour = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
    feats += [local_sd.mean(), local_sd.std(), high, colour]
    return thumb.reshape(-1), np.asarray(feats, dtype=np.float32)


@functools.lru_cache(maxsize=8)
def _pixel_table(root: str, relpaths: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    content, quality = zip(*(_pixel_stats(Path(root) / rel) for rel in relpaths))
    return np.stack(content), np.stack(quality)


@register_feature_source("pixels")
def pixel_features(manifest: Manifest, root: Path, rows: np.ndarray, spec: Mapping,
                   inputs: Sequence[str], *, seed: int = 0) -> tuple[dict, dict]:
    """Downsampled pixel statistics (see the module docstring); cached per process."""
    relpaths = tuple(manifest.table["relpath"].to_numpy()[rows].tolist())
    content, quality = _pixel_table(str(root), relpaths)
    arrays = {"content": content, "quality": quality}
    described = {"source": "pixels", "label": PIXELS_LABEL, "content": "8x8 RGB thumbnail",
                 "quality": "16 local pixel statistics"}
    if "embedding" in inputs:
        arrays["embedding"] = standardize_blocks([content, quality])
        described["embedding"] = "standardised content ‖ quality"
    if "probs" in inputs:
        arrays["probs"] = soft_cluster_probabilities(quality, seed=seed)
        described["probs"] = SOFT_CLUSTERS_LABEL
    return arrays, described


__all__ = ["FEATURE_SETS", "FEATURE_SOURCES", "check_feature_spec", "encoder_features",
           "feature_set_from_spec", "get_features", "pixel_features", "register_feature_source"]

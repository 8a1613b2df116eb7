"""Feature sources for coreset selection inside the runner (pluggable).

A feature source is a function ``source(manifest, root, rows, spec, inputs)`` returning
``(arrays, description)``: one row-aligned 2-D array per requested input key of a selection
method (``embedding``; ``content`` and ``quality`` for Q-Diverse; ``embedding`` and ``probs``
for Contextual Diversity), and a JSON-able description of where they came from. ``spec`` is
the sweep's ``features`` mapping; its ``source`` picks the function from
:data:`FEATURE_SOURCES` (:func:`register_feature_source` adds one).

``pixels``
    Downsampled pixel statistics, for tests and CI (no weights): ``content`` is an 8×8 RGB
    thumbnail (192-d), ``quality`` 16 local statistics (per-channel mean/std, gradient and
    Laplacian energies at two scales, local contrast, high-frequency share, colourfulness).
    Labelled ``"pixels (downsampled pixel statistics, not a learned encoder)"`` in every record.
``encoders``
    :func:`qd_lib.encoders.extract` of every image of the manifest (cached on disk and shared
    with notebook 02), rows picked afterwards. Keys map to encoder names
    (``{"source": "encoders", "content": "resnet50", "quality": "arniqa", "embedding": "liqe",
    "probs": "liqe.quality5"}``); ``name.output`` picks a further output; a list concatenates.
    Defaults: ``content`` mobilenet_v2 and ``quality`` nss (the offline defaults).

Both sources build missing keys the same way: ``embedding`` = the standardised ``content`` and
``quality`` blocks concatenated (each scaled by 1/√d so both weigh the same); ``probs`` = a
label-free stand-in for LIQE's five quality-level probabilities: the first principal component
of the standardised ``quality`` block, softly assigned to 5 levels at its 10/30/50/70/90 %
quantiles (labelled ``soft_levels``).
"""
from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from qd_lib.data.manifest import Manifest
from qd_lib.utils.errors import UnknownNameError

logger = logging.getLogger(__name__)

PIXELS_LABEL = "pixels (downsampled pixel statistics, not a learned encoder)"
SOFT_LEVELS_LABEL = ("soft_levels: PC1 of the quality features softly assigned to 5 levels "
                     "(label-free stand-in for LIQE quality5)")
KNOWN_KEYS = ("embedding", "content", "quality", "probs")

FeatureSource = Callable[[Manifest, Path, np.ndarray, Mapping, Sequence[str]],
                         tuple[dict, dict]]
FEATURE_SOURCES: dict[str, FeatureSource] = {}


def register_feature_source(name: str, func: FeatureSource | None = None):
    """Register ``func`` as feature source ``name`` (usable as a decorator)."""

    def add(f):
        FEATURE_SOURCES[name] = f
        return f

    return add(func) if func is not None else add


def check_feature_spec(spec: Mapping, inputs: Sequence[str]) -> None:
    """Validate a ``features`` mapping for a method reading ``inputs`` (no data loaded)."""
    if not isinstance(spec, Mapping) or "source" not in spec:
        raise ValueError(f"The 'features' setting must be a mapping with a 'source' "
                         f"({sorted(FEATURE_SOURCES)}). Got {spec!r}.")
    if spec["source"] not in FEATURE_SOURCES:
        raise UnknownNameError("feature source", spec["source"], FEATURE_SOURCES)
    for key in spec:
        if key != "source" and key not in KNOWN_KEYS:
            raise UnknownNameError("features key", key, ("source",) + KNOWN_KEYS)
    missing = [k for k in inputs if k not in KNOWN_KEYS]
    if missing:
        raise ValueError(f"No feature source can provide the inputs {missing}.")
    if spec["source"] == "encoders":
        try:
            from qd_lib.encoders import available_encoders
        except ImportError:
            return
        for key, value in spec.items():
            if key == "source" or value == "soft_levels":
                continue
            for name in [value] if isinstance(value, str) else list(value):
                base = str(name).split(".", 1)[0]
                if base not in available_encoders():
                    raise UnknownNameError("encoder", base, available_encoders())


def get_features(manifest: Manifest, root, rows, spec: Mapping, inputs: Sequence[str]
                 ) -> tuple[dict[str, np.ndarray], dict]:
    """Arrays for ``inputs`` from the source ``spec`` names, and a description for records."""
    check_feature_spec(spec, inputs)
    func = FEATURE_SOURCES[spec["source"]]
    arrays, described = func(manifest, Path(root), np.asarray(rows, dtype=np.int64), spec,
                             tuple(inputs))
    return {k: arrays[k] for k in inputs}, described


# -- shared derivations -------------------------------------------------------------------------
def _standardise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    sd = x.std(axis=0)
    sd[sd == 0] = 1.0
    return (x - x.mean(axis=0)) / sd


def combined_embedding(blocks: Sequence[np.ndarray]) -> np.ndarray:
    """Standardised blocks, each scaled by 1/√d, side by side (float32)."""
    parts = [_standardise(b) / np.sqrt(b.shape[1]) for b in blocks]
    return np.concatenate(parts, axis=1).astype(np.float32)


def soft_levels(quality: np.ndarray, n_levels: int = 5) -> np.ndarray:
    """Label-free soft assignment of images to ``n_levels`` levels along the quality PC1."""
    z = _standardise(quality)
    if z.shape[0] < 2:
        return np.full((z.shape[0], n_levels), 1.0 / n_levels)
    _, _, vt = np.linalg.svd(z - z.mean(axis=0), full_matrices=False)
    score = z @ vt[0]
    if np.corrcoef(score, z.mean(axis=1))[0, 1] < 0:  # a fixed sign, so levels are ordered
        score = -score
    centres = np.quantile(score, np.linspace(0.1, 0.9, n_levels))
    width = max((centres[-1] - centres[0]) / (2 * (n_levels - 1)), 1e-6)
    logits = -((score[:, None] - centres[None, :]) ** 2) / (2 * width ** 2)
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    return (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)


def _complete(arrays: dict, inputs: Sequence[str], described: dict) -> dict:
    if "embedding" in inputs and "embedding" not in arrays:
        arrays["embedding"] = combined_embedding([arrays["content"], arrays["quality"]])
        described["embedding"] = "standardised content ‖ quality"
    if "probs" in inputs and "probs" not in arrays:
        arrays["probs"] = soft_levels(arrays["quality"])
        described["probs"] = SOFT_LEVELS_LABEL
    return arrays


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
                   inputs: Sequence[str]) -> tuple[dict, dict]:
    """Downsampled pixel statistics (see the module docstring); cached per process."""
    relpaths = tuple(manifest.table["relpath"].to_numpy()[rows].tolist())
    content, quality = _pixel_table(str(root), relpaths)
    arrays = {"content": content, "quality": quality}
    described = {"source": "pixels", "label": PIXELS_LABEL, "content": "8x8 RGB thumbnail",
                 "quality": "16 local pixel statistics"}
    return _complete(arrays, inputs, described), described


# -- encoders -----------------------------------------------------------------------------------
def _encoder_block(manifest, root, rows, name: str, cache: dict) -> tuple[np.ndarray, dict]:
    from qd_lib.encoders import extract

    encoder, _, output = name.partition(".")
    if encoder not in cache:  # every row of the manifest: one cache shared with notebook 02
        cache[encoder] = extract(manifest, encoder, root=root)
    emb = cache[encoder]
    stored_rows = np.asarray(emb.meta.get("rows", np.arange(len(manifest))), dtype=np.int64)
    if not np.array_equal(stored_rows, np.arange(len(manifest))):
        raise ValueError(f"Embedding {name!r} does not hold every row of the manifest (bad "
                         "images skipped?); fix the images and extract again.")
    array = np.asarray((emb[output] if output else emb.array)[rows], dtype=np.float32)
    sha = hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]
    return array, {"encoder": name, "file": emb.path.name, "sha256_16": sha,
                   "weights": emb.meta.get("weights_sha256"),
                   "input_policy": emb.meta.get("input_policy")}


@register_feature_source("encoders")
def encoder_features(manifest: Manifest, root: Path, rows: np.ndarray, spec: Mapping,
                     inputs: Sequence[str]) -> tuple[dict, dict]:
    """Embeddings from :mod:`qd_lib.encoders` (see the module docstring)."""
    try:
        from qd_lib.encoders import OFFLINE_DEFAULTS
    except ImportError as exc:  # the encoders package is optional for this source's users
        raise ImportError("The 'encoders' feature source needs qd_lib.encoders; use "
                          "{'source': 'pixels'} without it.") from exc
    mapping = {"content": OFFLINE_DEFAULTS["content"], "quality": OFFLINE_DEFAULTS["quality"]}
    mapping.update({k: v for k, v in spec.items() if k != "source"})
    needed = set(inputs)
    if "embedding" in needed and "embedding" not in spec:
        needed |= {"content", "quality"}
    if "probs" in needed and spec.get("probs", "soft_levels") == "soft_levels":
        needed |= {"quality"}
        mapping.pop("probs", None)
    cache: dict = {}
    arrays, described = {}, {"source": "encoders"}
    for key in sorted(needed):
        if key not in mapping:
            continue
        names = [mapping[key]] if isinstance(mapping[key], str) else list(mapping[key])
        blocks, records = zip(*(_encoder_block(manifest, root, rows, n, cache) for n in names))
        arrays[key] = blocks[0] if len(blocks) == 1 else combined_embedding(blocks)
        described[key] = list(records) if len(records) > 1 else records[0]
    described["label"] = "encoders (" + ", ".join(
        f"{k}={mapping[k] if isinstance(mapping[k], str) else '+'.join(mapping[k])}"
        for k in sorted(needed) if k in mapping) + ")"
    arrays = _complete(arrays, inputs, described)
    return arrays, described

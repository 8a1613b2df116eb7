"""The arrays a selector sees for a dataset: one per input role, and the MOS.

:func:`feature_inputs` extracts (or reads from the embedding cache) every encoder output a
:class:`~qd_lib.features.FeatureSet` names, for the rows asked for, and assembles the roles;
:func:`selection_mos` gives the MOS in the one convention of the selection API. The notebooks,
the runner and the explorer all go through these two functions.

Encoders run on every row of the manifest (one cache file per dataset and encoder, shared by
notebook 02, the selections, the runner and the explorer), then the requested rows are taken.
"""
from __future__ import annotations

import hashlib
import logging

import numpy as np

from qd_lib.features.sets import (
    DEFAULT_FEATURE_SET,
    SOFT_CLUSTERS,
    FeatureSet,
    check_feature_spec,
    feature_spec,
    split_output,
)

logger = logging.getLogger(__name__)

NORMALIZED_MOS_RANGE = (0.0, 1.0)
"""The range of :func:`selection_mos` (what coverage numbers computed from it take)."""
SOFT_CLUSTERS_LABEL = ("soft 5-means memberships of the quality features (label-free stand-in "
                       "for LIQE quality5)")


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


def selection_mos(dataset, rows) -> np.ndarray:
    """The MOS of ``rows`` as every selection receives it: normalised to [0, 1] with the
    dataset's fixed native range, 1 being the best quality
    (:meth:`~qd_lib.data.Manifest.normalized_mos`).

    One convention for the notebooks, the runner and the explorer, so that MOS-binned methods
    (Moderate, Herding/k-Center/CD per bin) and the coverage numbers see the same values, and a
    lower-is-better (DMOS) dataset is binned in the same direction as the others.

    Parameters
    ----------
    dataset : LoadedDataset or Manifest
    rows : array-like of int
    """
    manifest = getattr(dataset, "manifest", dataset)
    return manifest.normalized_mos()[np.asarray(rows, dtype=np.int64)]


def _encoder_output(dataset, rows, name: str, provenance: dict | None,
                    **extract_options) -> np.ndarray:
    """Output ``name`` (``"encoder"`` or ``"encoder.output"``) for ``rows`` of ``dataset``."""
    from qd_lib.encoders import extract

    encoder, output = split_output(name)
    emb = extract(dataset.manifest, encoder, root=dataset.root, **extract_options)
    stored = emb.meta.get("rows")
    source = emb[output] if output else emb.array
    if stored is not None and len(stored) != len(dataset.manifest):
        # Bad images were left out (on_error="skip"): map manifest rows to stored rows.
        where = np.full(len(dataset.manifest), -1, dtype=np.int64)
        where[np.asarray(stored, dtype=np.int64)] = np.arange(len(stored))
        positions = where[rows]
        if (positions < 0).any():
            absent = rows[positions < 0]
            ids = dataset.manifest.table["image_id"].to_numpy()[absent[:5]].tolist()
            raise ValueError(f"The {encoder!r} embedding of {dataset.manifest.name!r} does not "
                             f"hold {len(absent)} of the requested rows (bad images left out: "
                             f"{ids}{' …' if len(absent) > 5 else ''}); fix the images and "
                             "extract again, or leave these rows out.")
        array = np.asarray(source[positions])
    else:
        array = np.asarray(source[rows])
    if provenance is not None:
        provenance[name] = {"file": emb.path.name, "weights": emb.meta.get("weights_sha256"),
                            "input_policy": emb.meta.get("input_policy"),
                            "sha256_16": hashlib.sha256(
                                np.ascontiguousarray(array).tobytes()).hexdigest()[:16]}
    return array


def feature_inputs(roles, dataset, rows, *, feature_set=DEFAULT_FEATURE_SET, seed: int = 0,
                   provenance: dict | None = None, **extract_options) -> dict[str, np.ndarray]:
    """One row-aligned 2-D array per input role.

    Parameters
    ----------
    roles : sequence of str
        Input roles (``content``, ``quality``, ``embedding``, ``probs``), usually
        ``get_method(name).inputs``.
    dataset : LoadedDataset
        From :func:`qd_lib.data.open_dataset` (manifest and image root).
    rows : array-like of int
        Manifest rows (usually the training split), in the order the selector sees them.
    feature_set : str, mapping or FeatureSet, default="offline"
        A set name, a mapping overriding roles of one, or a :class:`FeatureSet`
        (:mod:`qd_lib.features.sets`).
    seed : int, default=0
        Seed of the label-free probability stand-in's clustering.
    provenance : dict, optional
        Filled with one entry per encoder output read (cache file, weights hash, input policy,
        digest of the rows used).
    **extract_options
        Passed to :func:`qd_lib.encoders.extract` (``batch_size``, ``device``, ``client``...).

    Returns
    -------
    dict of str to ndarray
    """
    return stacked_feature_inputs(roles, [(dataset, rows)], feature_set=feature_set, seed=seed,
                                  provenance=provenance, **extract_options)


def stacked_feature_inputs(roles, parts, *, feature_set=DEFAULT_FEATURE_SET, seed: int = 0,
                           provenance: dict | None = None,
                           **extract_options) -> dict[str, np.ndarray]:
    """:func:`feature_inputs` over the rows of several datasets, stacked in order.

    Each encoder output is read per dataset (from its own embedding cache) and the blocks are
    concatenated before the roles are assembled, so the standardised ``embedding`` and the
    soft-cluster ``probs`` are computed over all rows together, as for one dataset. Used to
    put images from outside a folder (already rated elsewhere) next to the folder's own.

    Parameters
    ----------
    roles : sequence of str
    parts : sequence of (LoadedDataset, array-like of int)
        Datasets and their rows, in output order. Rows of images that the extraction left out
        (``on_error="skip"``) must not be requested.
    feature_set, seed, provenance, **extract_options
        As for :func:`feature_inputs`; provenance entries of the second and later datasets are
        keyed ``"<output> (<dataset name>)"``.

    Returns
    -------
    dict of str to ndarray
    """
    fs = check_feature_spec(feature_set, roles)
    parts = [(dataset, np.asarray(rows, dtype=np.int64)) for dataset, rows in parts]
    if not parts:
        raise ValueError("The 'parts' parameter must hold at least one (dataset, rows) pair.")
    cache: dict[str, np.ndarray] = {}

    def output(name: str) -> np.ndarray:
        if name not in cache:
            blocks = []
            for i, (dataset, rows) in enumerate(parts):
                found = {} if provenance is not None else None
                blocks.append(_encoder_output(dataset, rows, name, found, **extract_options))
                if found:
                    key = name if i == 0 else f"{name} ({dataset.manifest.name})"
                    provenance[key] = found[name]
            cache[name] = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
        return cache[name]

    out = {}
    for role in roles:
        if role in ("content", "quality"):
            out[role] = output(getattr(fs, role))
        elif role == "embedding":
            blocks = [output(name) for name in fs.baseline]
            out[role] = blocks[0] if len(blocks) == 1 else standardize_blocks(blocks)
        else:  # probs
            out[role] = output(fs.probs) if fs.probs else soft_cluster_probabilities(
                output(fs.quality), seed=seed)
    return out


def baseline_embedding(dataset, rows, *, feature_set=DEFAULT_FEATURE_SET,
                       provenance: dict | None = None, **extract_options) -> np.ndarray:
    """The single embedding the baselines, the t-SNE maps and the covering radii read (the
    ``embedding`` role): LIQE in the paper's set; the standardised concatenation of the content
    and quality embeddings offline."""
    return feature_inputs(("embedding",), dataset, rows, feature_set=feature_set,
                          provenance=provenance, **extract_options)["embedding"]


def describe_features(feature_set, roles, provenance: dict | None = None) -> dict:
    """What a selection record says about its inputs: the canonical spec, a label naming the
    encoder behind each role, and the per-output provenance of :func:`feature_inputs`."""
    fs: FeatureSet = check_feature_spec(feature_set, roles)
    sources = {role: fs.source(role) for role in roles}
    label = f"{fs.name} (" + ", ".join(f"{k}={v}" for k, v in sorted(sources.items())) + ")"
    described = {"set": fs.name, "spec": feature_spec(feature_set), "label": label,
                 "roles": sources, "encoders": provenance or {}}
    if "probs" in roles and fs.probs is None:
        described["probs"] = f"{SOFT_CLUSTERS}: {SOFT_CLUSTERS_LABEL}"
    return described

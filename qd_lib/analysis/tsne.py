"""t-SNE layouts of embeddings (openTSNE), cached so that every method and fraction of a
dataset is drawn on the same map."""
from __future__ import annotations

import hashlib
import io
import json
import logging
from pathlib import Path

import numpy as np

from qd_lib.paths import display_path
from qd_lib.utils.io import atomic_write_bytes, atomic_write_json
from qd_lib.utils.validation import check_array_2d, check_scalar

logger = logging.getLogger(__name__)


def _features_hash(X: np.ndarray) -> str:
    digest = hashlib.sha256(str(X.shape).encode())
    step = max(1, (1 << 22) // max(1, X.shape[1]))
    for start in range(0, len(X), step):
        digest.update(np.ascontiguousarray(X[start:start + step], dtype=np.float32).tobytes())
    return digest.hexdigest()


def tsne_layout(features, *, perplexity: float = 30.0, seed: int = 0, n_jobs: int = 1,
                cache_dir=None, name: str = "tsne") -> np.ndarray:
    """A 2-D openTSNE layout of ``features`` (PCA initialisation, FFT gradients).

    Parameters
    ----------
    features : array-like of shape (n, d)
    perplexity : float, default=30
        Lowered automatically to ``(n - 1) / 3`` for tiny inputs (logged).
    seed : int, default=0
        openTSNE's ``random_state``.
    n_jobs : int, default=1
    cache_dir : str or Path, optional
        If given, the layout is stored there as ``<name>__<hash12>.npy`` with a JSON sidecar
        and reused whenever the same features and parameters come again.
    name : str, default="tsne"
        File stem of the cached layout.

    Returns
    -------
    ndarray of shape (n, 2), float32
    """
    X = check_array_2d(features, "features", min_rows=4)
    check_scalar(perplexity, "perplexity", (int, float), min_val=0, closed="neither")
    check_scalar(seed, "seed", int, min_val=0)
    effective = min(float(perplexity), (len(X) - 1) / 3.0)
    if effective < perplexity:
        logger.info("perplexity lowered from %g to %.3g for %d points", perplexity, effective,
                    len(X))
    params = {"perplexity": effective, "seed": seed, "initialization": "pca",
              "negative_gradient_method": "fft", "n_components": 2}
    key = hashlib.sha256((_features_hash(X) + json.dumps(params, sort_keys=True)).encode())
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{name}__{key.hexdigest()[:12]}.npy"
        if path.is_file():
            logger.info("reusing t-SNE layout %s", display_path(path))
            return np.load(path)
    from openTSNE import TSNE

    tsne = TSNE(n_components=2, perplexity=effective, initialization="pca",
                negative_gradient_method="fft", random_state=seed, n_jobs=n_jobs, verbose=False)
    layout = np.asarray(tsne.fit(np.asarray(X, dtype=np.float64)), dtype=np.float32)
    if path is not None:
        buf = io.BytesIO()
        np.save(buf, layout)
        atomic_write_bytes(path, buf.getvalue())
        atomic_write_json(path.with_suffix(".json"), {"params": params, "n": len(X),
                                                      "features_dim": X.shape[1],
                                                      "key": key.hexdigest()})
    return layout

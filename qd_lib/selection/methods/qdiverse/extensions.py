"""Two labelled extensions of Q-Diverse, beyond the paper (registered under their own names).

Q-Diverse's greedy log-det reaches for the edges of the data: a DPP with a unit-diagonal kernel
prefers points unlike everything picked so far, and heavily distorted images spread out in
feature space. A coreset that must *train* a regressor may instead need to keep the training
distribution. Both extensions keep the whole pipeline (affinity, Laplacian, Nyström embedding,
greedy log-det) and change only the kernel the greedy step sees:

``qdiverse_qdpp`` (``extension="quality_dpp"``)
    The standard quality × diversity decomposition of a DPP, ``L = diag(q) · K · diag(q)``
    (Kulesza & Taskar), with a label-free quality ``q_i = (d_i / mean d)^power``: ``d_i`` is
    row ``i``'s degree in the affinity graph (a kernel density estimate in the combined
    content/quality space), ``power`` = ``quality_power`` (0.5: ``q² ∝`` density). Typical
    images get larger diagonal entries, so the greedy step trades diversity for typicality;
    the first pick is the most typical row (unless ``first_pick`` says otherwise).
``qdiverse_density`` (``extension="density_kernel"``)
    A density-compensated kernel on the spectral embedding: the self-tuning RBF
    ``K_ij = exp(−‖z_i − z_j‖² / (2 σ_i σ_j))`` with ``σ_i`` the distance from ``z_i`` to its
    ``local_k``-th nearest neighbour in the batch. Points in dense regions get small scales and
    look less alike, so more of them can be picked before their log-det gains fall: the coreset
    follows the density instead of the support.

Both are numpy-only and have the same options as ``qdiverse`` otherwise. The kernels are
here; :mod:`.extension_methods` registers the two names.
"""
from __future__ import annotations

import numpy as np

__all__ = ["local_bandwidth_kernel", "typicality_weights"]


def typicality_weights(degrees, power: float) -> np.ndarray:
    """``q_i = (d_i / mean d) ** power`` (all ones when every degree is zero)."""
    d = np.asarray(degrees, dtype=np.float64)
    mean = d.mean()
    if not mean > 0:
        return np.ones_like(d)
    return (d / mean) ** power


def local_bandwidth_kernel(Z, k: int) -> tuple[np.ndarray, float]:
    """Self-tuning RBF on the rows of ``Z`` with per-row scales (unit diagonal); returns the
    kernel and the median scale (recorded like ``sigma_z``)."""
    Z = np.asarray(Z, dtype=np.float64)
    sq = (Z * Z).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (Z @ Z.T), 0.0)
    np.fill_diagonal(d2, 0.0)
    kth = min(int(k), len(Z) - 1)
    if kth < 1:
        return np.ones((len(Z), len(Z))), 1.0
    sigma = np.sqrt(np.partition(d2, kth, axis=1)[:, kth])
    positive = sigma[sigma > 0]
    floor = float(np.median(positive)) if len(positive) else 1.0
    sigma = np.where(sigma > 0, sigma, floor)
    K = np.exp(-d2 / (2.0 * np.outer(sigma, sigma)))
    np.fill_diagonal(K, 1.0)
    return K, float(np.median(sigma))

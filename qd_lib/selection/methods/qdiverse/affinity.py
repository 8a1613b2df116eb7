"""Q-Diverse affinity graph of one batch: distances, content/quality combination, RBF.

Design note ``qdiverse.md`` §2.4 (pairwise Euclidean distances in each embedding from one Gram
GEMM), §2.5 (each space scaled by its largest distance, then ``D = γ·D_content + (1 − γ)·
D_quality``; the alternatives are the ``distance_norm`` and ``combine`` options) and §2.6 (RBF
affinities ``W = exp(−D² / 2σ²)`` with the median-distance bandwidth, self-loops kept).

The numpy kernels here (:func:`squared_distances`, :func:`offdiag_median`,
:func:`rbf_inplace`) are the reference implementation: the b × b matrices are float64 and
transformed in place, medians use partitioning rather than sorting. The pipeline steps
(:func:`affinity`, :func:`bandwidth`) call them through an array backend ``xp``
(:mod:`.backends`), so the same steps run on torch tensors.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["affinity", "bandwidth", "offdiag_median", "rbf_inplace", "squared_distances"]


def squared_distances(X: np.ndarray, *, dtype=np.float32) -> np.ndarray:
    """Pairwise squared Euclidean distances between the rows of ``X``.

    The rows are copied into a ``dtype`` working array and centred (distances are translation
    invariant and centring limits cancellation), then ``‖a‖² + ‖b‖² − 2aᵀb`` is evaluated from
    a single Gram matrix ``X Xᵀ`` (a symmetric rank-k update in BLAS). Round-off below zero is
    clamped and the diagonal is exactly zero.

    Parameters
    ----------
    X : ndarray of shape (n, d)
        Rows to compare; any float array, including a slice of a ``numpy.memmap``.
    dtype : {numpy.float32, numpy.float64}, default=numpy.float32
        Precision of the GEMM. float32 is about twice as fast and accurate to about 1e-7
        relative to the spread of the data, which is ample for kernels built on top.

    Returns
    -------
    ndarray of shape (n, n), float64
        Symmetric matrix of squared distances.
    """
    work = np.array(X, dtype=dtype, order="C", copy=True)
    work -= work.mean(axis=0, dtype=np.float64).astype(dtype)
    gram = work @ work.T  # numpy dispatches X @ X.T to syrk: one triangle, mirrored exactly
    del work
    d2 = gram.astype(np.float64)
    del gram
    sq = np.diag(d2).copy()
    d2 *= -2.0
    d2 += sq[:, None]
    d2 += sq[None, :]
    np.maximum(d2, 0.0, out=d2)
    np.fill_diagonal(d2, 0.0)
    return d2


@lru_cache(maxsize=8)
def _upper_mask(n: int) -> np.ndarray:
    mask = np.triu(np.ones((n, n), dtype=bool), k=1)
    mask.setflags(write=False)
    return mask


def offdiag_median(M: np.ndarray, *, sqrt: bool = False) -> float:
    """Median of the entries above the diagonal of a symmetric matrix.

    Parameters
    ----------
    M : ndarray of shape (n, n)
        Symmetric matrix (typically distances or squared distances).
    sqrt : bool, default=False
        Take the median of ``sqrt(M)`` instead (the median distance from squared distances;
        for an even count this differs from ``sqrt(median(M))``).

    Returns
    -------
    float
        The median, or 0.0 when ``n < 2``.
    """
    n = M.shape[0]
    if n < 2:
        return 0.0
    values = M[_upper_mask(n)]
    if sqrt:
        np.sqrt(values, out=values)
    return float(np.median(values, overwrite_input=True))


def rbf_inplace(sq_dist: np.ndarray, sigma: float) -> np.ndarray:
    """Overwrite squared distances with ``exp(−d² / (2σ²))`` and return the same array."""
    sq_dist *= -1.0 / (2.0 * sigma * sigma)
    np.exp(sq_dist, out=sq_dist)
    return sq_dist


def bandwidth(sq_dist, setting, xp) -> float:
    """RBF bandwidth σ: a fixed float, or the median off-diagonal distance (1 if that is 0)."""
    if setting != "median":
        return float(setting)
    sigma = xp.offdiag_median(sq_dist, sqrt=True)
    return sigma if sigma > 0 else 1.0  # all points identical: any bandwidth gives W = 1


def _scaled_sq_distances(X, o: dict, xp):
    """Squared distances of one embedding, scaled per ``distance_norm`` (§2.4-§2.5)."""
    d2 = xp.squared_distances(X, o["distance_dtype"])
    if o["distance_norm"] == "max":
        scale2 = float(d2.max())
    elif o["distance_norm"] == "median":
        scale2 = xp.offdiag_median(d2, sqrt=True) ** 2
    else:
        scale2 = 1.0
    if scale2 > 0 and scale2 != 1.0:
        d2 *= 1.0 / scale2
    return d2


def _combine_kernels(parts, o: dict, xp):
    """``combine="kernel"``: ``Σ weight·RBF(d²)``, one median bandwidth per embedding."""
    W, sigmas = None, []
    for weight, d2 in parts:
        sigmas.append(bandwidth(d2, o["bandwidth"], xp))
        xp.rbf_inplace(d2, sigmas[-1])
        if len(parts) > 1:
            d2 *= weight
        if W is None:
            W = d2
        else:
            W += d2
    return W, float(np.mean(sigmas))


def _combine_distances(parts, o: dict, xp):
    """Combined squared distance: ``(Σ weight·d)²`` ("distance") or ``Σ weight·d²``."""
    if len(parts) == 1:
        return parts[0][1]
    (wc, d2), (wq, dq2) = parts
    if o["combine"] == "distance":
        xp.sqrt_(d2)
        xp.sqrt_(dq2)
    d2 *= wc
    dq2 *= wq
    d2 += dq2
    del dq2
    if o["combine"] == "distance":
        d2 *= d2
    return d2


def affinity(Xc, Xq, o: dict, xp) -> tuple[object, float]:
    """RBF affinity of the combined content/quality distances of one batch.

    Parameters
    ----------
    Xc, Xq : array of shape (b, d_c), (b, d_q) or None
        The batch's content and quality rows, as ``xp`` arrays; an embedding whose weight is
        0 (``gamma`` 0 or 1) is not read and may be ``None``.
    o : dict
        Resolved options (``gamma``, ``distance_norm``, ``distance_dtype``, ``combine``,
        ``bandwidth``, ``self_loops``).
    xp : backend
        The array backend (:mod:`.backends`): numpy, or torch on a device.

    Returns
    -------
    W : array of shape (b, b), float64
        Affinities, diagonal 1 (``self_loops``) or 0.
    sigma : float
        The bandwidth used (the mean of the two for ``combine="kernel"``).
    """
    gamma = o["gamma"]
    parts = []
    if gamma > 0:
        parts.append((gamma, _scaled_sq_distances(Xc, o, xp)))
    if gamma < 1:
        parts.append((1.0 - gamma, _scaled_sq_distances(Xq, o, xp)))
    if o["combine"] == "kernel":
        W, sigma = _combine_kernels(parts, o, xp)
    else:
        d2 = _combine_distances(parts, o, xp)
        parts.clear()
        sigma = bandwidth(d2, o["bandwidth"], xp)
        W = xp.rbf_inplace(d2, sigma)
    xp.fill_diagonal_(W, 1.0 if o["self_loops"] else 0.0)
    return W, sigma

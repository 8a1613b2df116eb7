"""Spectral and log-determinant building blocks (used by Q-Diverse, reusable elsewhere).

Everything here works on one in-memory block of rows (a Q-Diverse batch) and is written for
speed on a few cores: distances come from one Gram matrix (a single GEMM), the b × b matrices
are float64 and transformed in place, medians use partitioning rather than sorting, and the
greedy log-determinant step is one matrix-vector product per pick.

Functions
---------
squared_distances
    Pairwise squared Euclidean distances through the Gram identity.
offdiag_median
    Median of the strictly-upper-triangular entries of a symmetric matrix.
rbf_inplace
    Turn squared distances into a Gaussian (RBF) kernel in place.
symmetric_normalize_inplace
    ``W -> D^{-1/2} W D^{-1/2}`` with ``D = diag(W 1)``.
energy_rank
    Smallest number of leading eigenvalues holding a given share of the spectrum's energy.
nystrom_eigenvectors
    Leading eigenvectors of a PSD matrix from a subset of its columns (Nyström extension).
greedy_logdet
    Greedy maximisation of ``log det(K_S + eps I)`` by incremental Cholesky (DPP MAP).
allocate_budget
    Split an integer budget across groups in proportion to their sizes, exactly.
"""
from __future__ import annotations

import heapq
from functools import lru_cache

import numpy as np

__all__ = [
    "allocate_budget",
    "energy_rank",
    "greedy_logdet",
    "nystrom_eigenvectors",
    "offdiag_median",
    "rbf_inplace",
    "squared_distances",
    "symmetric_normalize_inplace",
]

#: Eigenvalues below this fraction of the largest one are treated as zero.
EIGEN_FLOOR = 1e-10
#: Greedy gains within this fraction of the largest diagonal of the maximum count as tied
#: (round-off of the Cholesky updates is far smaller); ties go to the lowest index.
TIE_TOLERANCE = 1e-12


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


def symmetric_normalize_inplace(W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Overwrite an affinity matrix with ``D^{-1/2} W D^{-1/2}``.

    The eigenvectors of the result for its largest eigenvalues are those of the symmetric
    normalised Laplacian ``I − D^{-1/2} W D^{-1/2}`` for its smallest ones.

    Parameters
    ----------
    W : ndarray of shape (n, n)
        Symmetric non-negative affinities (overwritten).

    Returns
    -------
    S : ndarray of shape (n, n)
        The normalised matrix (the same object as ``W``).
    degrees : ndarray of shape (n,)
        Row sums of the input ``W``. Rows with zero degree are left as zero rows.
    """
    degrees = W.sum(axis=1)
    inv_sqrt = np.zeros_like(degrees)
    positive = degrees > 0
    inv_sqrt[positive] = 1.0 / np.sqrt(degrees[positive])
    W *= inv_sqrt[:, None]
    W *= inv_sqrt[None, :]
    return W, degrees


def energy_rank(eigenvalues: np.ndarray, energy: float) -> int:
    """Number of leading eigenvalues needed to hold ``energy`` of the total.

    Parameters
    ----------
    eigenvalues : ndarray of shape (k,)
        Non-negative eigenvalues in descending order.
    energy : float in (0, 1]
        Share of ``sum(eigenvalues)`` to keep.

    Returns
    -------
    int
        ``r = min{k : Σ_{t≤k} λ_t ≥ energy · Σ_t λ_t}``, clamped to the number of numerically
        positive eigenvalues (those above ``EIGEN_FLOOR · λ_1``) and to at least 1. ``r`` does
        not decrease as ``energy`` grows, and ``energy = 1`` gives the numerical rank.
    """
    lam = np.asarray(eigenvalues, dtype=np.float64)
    if lam.size == 0 or not lam[0] > 0:
        return 1
    n_positive = int(np.count_nonzero(lam > EIGEN_FLOOR * lam[0]))
    cumulative = np.cumsum(lam)
    r = int(np.searchsorted(cumulative, energy * cumulative[-1], side="left")) + 1
    return max(1, min(r, n_positive))


def nystrom_eigenvectors(S: np.ndarray, landmarks: np.ndarray, energy: float,
                         ) -> tuple[np.ndarray, np.ndarray, int]:
    """Leading eigenvectors of a PSD matrix from its landmark columns (Nyström extension).

    With ``C = S[:, I]`` and ``A = S[I, I] = U Λ Uᵀ`` (eigenvalues in descending order, tiny
    negative round-off clipped to 0), the embedding is ``Z = C U_r Λ_r^{-1}`` where ``r`` is
    chosen by :func:`energy_rank`. At the landmark rows ``Z`` equals ``U_r``; when the landmarks
    are all rows, ``Z`` holds the exact leading eigenvectors of ``S``.

    Parameters
    ----------
    S : ndarray of shape (n, n)
        Symmetric positive semi-definite matrix. Only the landmark columns are read.
    landmarks : ndarray of int, shape (l,)
        Distinct row indices, sorted.
    energy : float in (0, 1]
        Energy threshold for the retained dimension.

    Returns
    -------
    Z : ndarray of shape (n, r)
        The spectral embedding.
    eigenvalues : ndarray of shape (l,)
        Clipped eigenvalues of ``A`` in descending order.
    r : int
        Retained dimension, ``1 ≤ r ≤ l``.
    """
    n = S.shape[0]
    landmarks = np.asarray(landmarks, dtype=np.intp)
    if landmarks.size == n and landmarks[0] == 0 and landmarks[-1] == n - 1:
        C = A = S  # every row is a landmark: no copy (eigh does not overwrite its input)
    else:
        C = S[:, landmarks]
        A = C[landmarks]
    lam, U = np.linalg.eigh(A)
    del A
    lam = np.maximum(lam[::-1], 0.0)
    r = energy_rank(lam, energy)
    if not lam[0] > 0:  # a zero block: no spectral information at all
        return np.zeros((n, 1)), lam, 1
    U_r = U[:, ::-1][:, :r]
    Z = C @ (U_r / lam[:r])
    return Z, lam, r


def greedy_logdet(K: np.ndarray, n_select: int, *, eps: float = 1e-6,
                  first: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Greedy maximisation of ``log det(K_S + eps·I)`` over subsets of size ``n_select``.

    This is the fast greedy MAP inference of a determinantal point process (Chen, Zhang & Zhou,
    2018), equivalently pivoted Cholesky with maximum-diagonal pivoting on ``K + eps·I``. The
    Cholesky rows are kept in an ``(n_select, n)`` array, so each pick costs one matrix-vector
    product over the rows so far: ``O(n · n_select²)`` in total. The marginal gain of a
    candidate ``j`` is the Schur complement ``g_j = K_jj + eps − k_jSᵀ (K_S + eps·I)^{-1} k_jS``;
    because ``K`` is PSD it is at least ``eps`` in exact arithmetic, so the selection never
    stops early. Ties go to the lowest index; gains within ``TIE_TOLERANCE · max(diag K + eps)``
    of the maximum count as ties, so exact ties (duplicates, constant data) are broken the same
    way whatever the BLAS kernels' round-off.

    Parameters
    ----------
    K : ndarray of shape (n, n)
        Symmetric positive semi-definite kernel.
    n_select : int
        Number of items to pick, ``0 ≤ n_select ≤ n``.
    eps : float, default=1e-6
        Ridge added to the diagonal (must be positive).
    first : int, optional
        Force the first pick (otherwise the largest diagonal, lowest index on ties).

    Returns
    -------
    picks : ndarray of int64, shape (n_select,)
        Selected indices in pick order.
    gains : ndarray of float64, shape (n_select,)
        ``g`` of each pick when it was picked: ``Σ log gains = log det(K_S + eps·I)``, and the
        sequence is non-increasing (up to round-off) when ``first`` is not forced.
    """
    n = K.shape[0]
    if not 0 <= n_select <= n:
        raise ValueError(f"n_select must be in [0, {n}]. Got {n_select}.")
    picks = np.empty(n_select, dtype=np.int64)
    gains = np.empty(n_select, dtype=np.float64)
    if n_select == 0:
        return picks, gains
    g = np.diagonal(K).astype(np.float64) + eps  # a copy
    rows = np.empty((n_select, n), dtype=np.float64)  # Cholesky rows, contiguous
    scratch = np.empty(n, dtype=np.float64)
    tie_tol = TIE_TOLERANCE * float(np.max(g))
    for k in range(n_select):
        if k == 0 and first is not None:
            j = int(first)
        else:
            j = int(np.argmax(g))
            if j and g[j] > -np.inf:  # a lower index within round-off of the maximum wins
                near = g[:j] >= g[j] - tie_tol
                if near.any():
                    j = int(np.argmax(near))
        g_j = g[j]
        picks[k] = j
        gains[k] = g_j
        if k == n_select - 1:
            break
        row = rows[k]
        if k:
            np.dot(rows[:k, j], rows[:k], out=row)
            np.subtract(K[j], row, out=row)
        else:
            row[:] = K[j]
        if g_j > 0:
            row *= 1.0 / np.sqrt(g_j)
        else:  # only reachable through catastrophic round-off; the pick adds nothing
            row[:] = 0.0
        np.multiply(row, row, out=scratch)
        g -= scratch
        np.maximum(g, 0.0, out=g)
        g[picks[:k + 1]] = -np.inf
    return picks, gains


def allocate_budget(sizes, total: int, *, method: str = "largest_remainder") -> np.ndarray:
    """Split ``total`` units across groups in proportion to their ``sizes``, exactly.

    Parameters
    ----------
    sizes : sequence of int
        Group sizes (non-negative, positive sum).
    total : int
        Units to hand out, ``0 ≤ total ≤ sum(sizes)``.
    method : {"largest_remainder", "sainte_lague"}, default="largest_remainder"
        ``"largest_remainder"`` (Hamilton): each group gets ``floor(total·size/Σsizes)`` and the
        leftover units go to the largest fractional parts, ties to the lower index; every
        share is within 1 of its quota. ``"sainte_lague"``: units are handed out one at a
        time to the group with the largest ``size / (2·m + 1)`` (capped at its size), which is
        house-monotone: raising ``total`` never lowers a share.

    Returns
    -------
    ndarray of int64
        Shares summing to ``total`` with ``0 ≤ share ≤ size``.
    """
    sizes = [int(s) for s in sizes]
    n = sum(sizes)
    if any(s < 0 for s in sizes) or n <= 0:
        raise ValueError(f"sizes must be non-negative with a positive sum. Got {sizes}.")
    if not 0 <= total <= n:
        raise ValueError(f"total must be in [0, {n}]. Got {total}.")
    if method == "largest_remainder":
        shares = [total * s // n for s in sizes]
        remainders = [total * s % n for s in sizes]
        left = total - sum(shares)
        order = sorted(range(len(sizes)), key=lambda i: (-remainders[i], i))
        for i in order[:left]:
            shares[i] += 1
    elif method == "sainte_lague":
        shares = [0] * len(sizes)
        heap = [(-s, i) for i, s in enumerate(sizes) if s > 0]  # priority s / (2·0 + 1)
        heapq.heapify(heap)
        for _ in range(total):
            _, i = heapq.heappop(heap)
            shares[i] += 1
            if shares[i] < sizes[i]:
                heapq.heappush(heap, (-sizes[i] / (2 * shares[i] + 1), i))
    else:
        raise ValueError(
            f"The 'method' parameter must be one of ['largest_remainder', 'sainte_lague']. "
            f"Got {method!r} instead."
        )
    return np.asarray(shares, dtype=np.int64)

"""Q-Diverse geometric diversity sampling: greedy log-det (DPP MAP) by incremental Cholesky.

Design note ``qdiverse.md`` §2.10: pick ``M_i`` rows of a batch maximising
``log det(K_S + ε·I)`` greedily. Each step takes the candidate with the largest Schur complement
``g_j`` (ties to the lowest index) and updates every ``g`` with one new Cholesky row, one GEMV
over the rows so far: ``O(b·M_i²)`` per batch. The ``first_pick`` option replaces the first,
all-tied step (unit diagonal) by the largest-degree row or the row nearest the embedding's mean.
Conditioning on rows already selected (``initial``) starts the factor from them.
"""
from __future__ import annotations

import numpy as np

__all__ = ["TIE_TOLERANCE", "first_pick", "greedy_logdet"]

#: Greedy gains within this fraction of the largest diagonal of the maximum count as tied
#: (round-off of the Cholesky updates is far smaller); ties go to the lowest index.
TIE_TOLERANCE = 1e-12


def greedy_plan(n: int, n_select: int, initial) -> tuple[list[int], int | None]:
    """``(given, total)`` for a greedy log-det of ``n_select`` new picks among ``n`` items
    after the already-selected ``initial`` (the factor's first rows): ``total`` counts both,
    ``None`` when there is nothing to pick after a non-empty ``initial`` (shared by the numpy
    and torch kernels)."""
    given = [] if initial is None else [int(i) for i in initial]
    if not 0 <= n_select <= n - len(given):
        raise ValueError(f"n_select must be in [0, {n - len(given)}]. Got {n_select}.")
    if given and n_select == 0:
        return given, None
    return given, n_select + len(given)


def greedy_logdet(K: np.ndarray, n_select: int, *, eps: float = 1e-6,
                  first: int | None = None, initial=None) -> tuple[np.ndarray, np.ndarray]:
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
        Force the first pick (otherwise the largest diagonal, lowest index on ties). Ignored
        when ``initial`` is given.
    initial : sequence of int, optional
        Items already selected, in order: the Cholesky factor starts from them (its first
        rows are theirs, computed exactly as if they had been picked), so the ``n_select``
        new picks maximise ``log det`` of the union and never repeat one of them. If
        ``initial`` is a run's first picks, the result is that run's next ``n_select`` picks.

    Returns
    -------
    picks : ndarray of int64, shape (n_select,)
        Selected indices in pick order (the new ones only).
    gains : ndarray of float64, shape (n_select,)
        ``g`` of each pick when it was picked: ``Σ log gains = log det(K_S + eps·I)`` (over
        ``initial`` and the picks, with the gains of ``initial`` added), and the sequence is
        non-increasing (up to round-off) when ``first`` is not forced.
    """
    n = K.shape[0]
    given, n_select = greedy_plan(n, n_select, initial)
    if n_select is None:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    n_given = len(given)
    picks = np.empty(n_select, dtype=np.int64)
    gains = np.empty(n_select, dtype=np.float64)
    if n_select == 0:
        return picks, gains
    g = np.diagonal(K).astype(np.float64) + eps  # a copy
    rows = np.empty((n_select, n), dtype=np.float64)  # Cholesky rows, contiguous
    scratch = np.empty(n, dtype=np.float64)
    tie_tol = TIE_TOLERANCE * float(np.max(g))
    for k in range(n_select):
        if k < n_given:
            j = given[k]
        elif k == 0 and first is not None:
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
    return picks[n_given:], gains[n_given:]


def first_pick(how: str, degrees, Z, xp) -> int | None:
    """The forced first pick of a batch for the ``first_pick`` option (``None``: the default,
    lowest index among the tied unit diagonal); ``degrees`` and ``Z`` are ``xp`` arrays."""
    if how == "max_degree":
        return xp.argmax(degrees)
    if how == "nearest_mean":
        return xp.nearest_to_mean(Z)
    return None

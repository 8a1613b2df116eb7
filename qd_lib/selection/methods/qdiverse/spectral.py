"""Q-Diverse spectral embedding of one batch: Laplacian, Nyström landmarks, energy rule.

Design note ``qdiverse.md`` §2.7 (normalised Laplacian: the leading eigenvectors of
``S = D^{-1/2} W D^{-1/2}`` with exact degrees), §2.8 (Nyström: ``l`` landmark columns of ``S``,
eigendecomposition of the landmark block, dimension ``r`` by the energy threshold, extension
``Z = C U_r Λ_r^{-1}``; the ``landmarks``, ``eigen_power``, ``drop_leading`` and
``row_normalize`` options) and §2.9 (the second RBF kernel ``K`` on ``Z``, median bandwidth).

:func:`symmetric_normalize_inplace`, :func:`energy_rank` and :func:`nystrom_eigenvectors` are
the numpy reference kernels; the pipeline steps (:func:`choose_landmarks`,
:func:`spectral_embedding`, :func:`embedding_kernel`) call the kernels through an array
backend ``xp`` (:mod:`.backends`).
"""
from __future__ import annotations

import numpy as np

from qd_lib.selection.methods.qdiverse.affinity import bandwidth

__all__ = ["EIGEN_FLOOR", "choose_landmarks", "embedding_kernel", "energy_rank",
           "inv_sqrt_degrees", "nystrom_eigenvectors", "spectral_embedding",
           "symmetric_normalize_inplace"]

#: Eigenvalues below this fraction of the largest one are treated as zero.
EIGEN_FLOOR = 1e-10


def inv_sqrt_degrees(degrees: np.ndarray) -> np.ndarray:
    """``1 / √degree``, and 0 for rows of zero degree."""
    out = np.zeros_like(degrees)
    positive = degrees > 0
    out[positive] = 1.0 / np.sqrt(degrees[positive])
    return out


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
    inv_sqrt = inv_sqrt_degrees(degrees)
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


def choose_landmarks(W, n_landmarks: int, how: str, rng: np.random.Generator,
                     xp) -> np.ndarray:
    """Sorted landmark rows of a batch (§2.8 step 1).

    Parameters
    ----------
    W : array of shape (b, b)
        The affinity matrix (read by ``how="kmeans++"`` only, a row at a time).
    n_landmarks : int
        Landmarks wanted; ``>= b`` gives every row.
    how : {"uniform", "first", "kmeans++"}
        Uniform without replacement, the first rows, or D²-sampling in the affinity's feature
        space (squared distance ``2 − 2·W_jk``).
    rng : numpy.random.Generator
        The batch's generator (every draw is made on the host, whatever the backend).
    xp : backend
        The array backend holding ``W``.

    Returns
    -------
    ndarray of int, shape (min(n_landmarks, b),)
    """
    b = W.shape[0]
    if n_landmarks >= b:
        return np.arange(b)
    if how == "first":
        return np.arange(n_landmarks)
    if how == "uniform":
        return np.sort(rng.choice(b, size=n_landmarks, replace=False))
    chosen = np.empty(n_landmarks, dtype=np.int64)
    chosen[0] = rng.integers(b)
    nearest = np.maximum(2.0 - 2.0 * xp.to_host(W[chosen[0]]), 0.0)
    nearest[chosen[0]] = 0.0
    for t in range(1, n_landmarks):
        total = nearest.sum()
        if total > 0:
            j = int(rng.choice(b, p=nearest / total))
        else:  # every remaining point coincides with a landmark
            free = np.setdiff1d(np.arange(b), chosen[:t])
            j = int(rng.choice(free))
        chosen[t] = j
        np.minimum(nearest, np.maximum(2.0 - 2.0 * xp.to_host(W[j]), 0.0), out=nearest)
        nearest[chosen[:t + 1]] = 0.0
    return np.sort(chosen)


def spectral_embedding(W, landmarks: np.ndarray, o: dict, xp) -> tuple[object, int, object]:
    """Nyström embedding of the normalised affinity (§2.7-§2.8).

    Parameters
    ----------
    W : array of shape (b, b)
        Affinities (overwritten by the normalised matrix).
    landmarks : ndarray of int
        Sorted landmark rows.
    o : dict
        Resolved options (``laplacian``, ``energy``, ``eigen_power``, ``drop_leading``,
        ``row_normalize``).
    xp : backend
        The array backend holding ``W``.

    Returns
    -------
    Z : array of shape (b, r')
        The embedding (``r' = r − 1`` with ``drop_leading``).
    r : int
        Dimension chosen by the energy rule.
    degrees : array of shape (b,)
        Row sums of ``W``.
    """
    if o["laplacian"] == "none":
        S, degrees = W, xp.row_sums(W)
    else:
        S, degrees = xp.symmetric_normalize_inplace(W)
    Z, lam, r = xp.nystrom_eigenvectors(S, landmarks, o["energy"])
    if o["laplacian"] == "rw":  # right eigenvectors of D^{-1} W
        Z *= xp.inv_sqrt(degrees)[:, None]
    if o["eigen_power"] > 0:
        Z *= lam[:Z.shape[1]] ** o["eigen_power"]
    if o["drop_leading"] and Z.shape[1] > 1:
        Z = Z[:, 1:]
    if o["row_normalize"]:
        norms = xp.row_norms(Z)
        norms[norms == 0] = 1.0
        Z /= norms[:, None]
    return Z, r, degrees


def embedding_kernel(Z, setting, xp) -> tuple[object, float]:
    """RBF kernel on the spectral embedding, unit diagonal (§2.9); returns ``(K, sigma_z)``."""
    K = xp.squared_distances(Z, "float64")
    sigma_z = bandwidth(K, setting, xp)
    xp.rbf_inplace(K, sigma_z)
    xp.fill_diagonal_(K, 1.0)
    return K, sigma_z

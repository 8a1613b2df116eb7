"""Q-Diverse inside one batch: §2.4 to §2.10 of design note ``qdiverse.md``, in order.

Affinity graph (:mod:`.affinity`), landmarks and spectral embedding (:mod:`.spectral`), kernel
on the embedding, then greedy log-det (:mod:`.greedy`); plus the trivial cases of §2.11 (an
empty budget, or a budget equal to the batch: the whole batch, nothing computed). The arrays
live on the backend ``xp`` (:mod:`.backends`): numpy, or torch on a device.
"""
from __future__ import annotations

import numpy as np

from qd_lib.selection.methods.qdiverse.affinity import affinity
from qd_lib.selection.methods.qdiverse.extensions import (
    local_bandwidth_kernel,
    typicality_weights,
)
from qd_lib.selection.methods.qdiverse.greedy import first_pick
from qd_lib.selection.methods.qdiverse.spectral import (
    choose_landmarks,
    embedding_kernel,
    spectral_embedding,
)

__all__ = ["select_in_batch"]


def select_in_batch(Xc, Xq, budget: int, rng: np.random.Generator, o: dict, xp, *,
                    initial=None) -> dict:
    """Q-Diverse inside one batch.

    Parameters
    ----------
    Xc, Xq : array of shape (b, d_c), (b, d_q) or None
        The batch's rows as ``xp`` arrays; ``None`` for an embedding ``gamma`` ignores.
    budget : int
        Picks wanted, ``0 ≤ budget``; ``>= b`` takes the whole batch.
    rng : numpy.random.Generator
        The batch's own generator (landmark sampling).
    o : dict
        Resolved options.
    xp : backend
        Where the kernels run (:func:`.backends.get_backend`).
    initial : array of int, optional
        Batch-local rows already selected (rated), in order. They take part in the affinity
        graph, the landmarks and the spectral embedding like every row, and start the greedy
        log-det's Cholesky factor (``first_pick`` is then not used); ``budget`` counts the new
        picks only, which never include them. A budget of at least the other rows takes all
        of those, in index order.

    Returns
    -------
    dict
        ``local`` (picks as batch-local indices, pick order), ``gains``, and the diagnostics
        ``r``, ``n_landmarks``, ``sigma``, ``sigma_z`` (``None`` where nothing was computed).
    """
    b = (Xc if Xc is not None else Xq).shape[0]
    info = {"r": None, "n_landmarks": None, "sigma": None, "sigma_z": None}
    if initial is not None and len(initial) == 0:
        initial = None
    if budget <= 0:
        return {"local": np.empty(0, np.int64), "gains": np.empty(0), **info}
    if initial is not None and budget >= b - len(initial):  # every row not selected yet
        rest = np.setdiff1d(np.arange(b, dtype=np.int64), initial)
        return {"local": rest, "gains": np.full(len(rest), np.nan), **info}
    if budget >= b:  # the whole batch: no criterion is evaluated
        return {"local": np.arange(b, dtype=np.int64), "gains": np.full(b, np.nan), **info}
    W, sigma = affinity(Xc, Xq, o, xp)
    n_landmarks = min(o["n_landmarks"], b)
    landmarks = choose_landmarks(W, n_landmarks, o["landmarks"], rng, xp)
    Z, r, degrees = spectral_embedding(W, landmarks, o, xp)
    del W
    if o["extension"] == "density_kernel":
        K, sigma_z = local_bandwidth_kernel(Z, o["local_k"])
    else:
        K, sigma_z = embedding_kernel(Z, o["z_bandwidth"], xp)
    first = first_pick(o["first_pick"], degrees, Z, xp)
    if o["extension"] == "quality_dpp":
        q = typicality_weights(degrees, o["quality_power"])
        K *= q[:, None]
        K *= q[None, :]
        if o["first_pick"] == "lowest_index":
            first = None  # the diagonal is q², no longer tied: the most typical row goes first
    if initial is not None:  # the factor starts from the rows already selected
        local, gains = xp.greedy_logdet(K, budget, eps=o["eps"], initial=initial)
    else:
        local, gains = xp.greedy_logdet(K, budget, eps=o["eps"], first=first)
    return {"local": local, "gains": gains, "r": int(r), "n_landmarks": int(n_landmarks),
            "sigma": float(sigma), "sigma_z": float(sigma_z)}

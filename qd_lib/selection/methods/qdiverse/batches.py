"""Q-Diverse batches: how the rows are cut, how the budget is shared, how batches are seeded.

Design note ``qdiverse.md`` §2.2 (batching and non-batch mode: ``K = ⌈N/b⌉`` contiguous chunks,
or chunks of a seeded permutation), §2.3 (per-batch budget: largest remainder, or the
house-monotone Sainte-Laguë divisor method) and §2.12 (determinism: batch ``i`` draws from
child ``i`` of the run's ``SeedSequence``, so batches can run in any order, in any process).
"""
from __future__ import annotations

import heapq

import numpy as np

__all__ = ["allocate_budget", "batch_len", "batch_seed", "plan_batches", "root_seed_sequence"]


def plan_batches(n: int, batch_size: int | None, order: str,
                 rng: np.random.Generator) -> list[slice | np.ndarray]:
    """The rows of each batch (§2.2).

    Parameters
    ----------
    n : int
        Number of rows.
    batch_size : int or None
        Rows per batch; ``None`` (or ``>= n``) is the non-batch mode, one batch of all rows.
    order : {"contiguous", "shuffle"}
        Consecutive row ranges (the last batch takes the remainder), or the same ranges of a
        permutation drawn from ``rng`` (each batch's rows sorted).
    rng : numpy.random.Generator
        Only read for ``order="shuffle"``.

    Returns
    -------
    list of slice or ndarray of int
        One entry per batch, in batch order.
    """
    b = n if batch_size is None else min(batch_size, n)
    n_batches = -(-n // b)
    if order == "contiguous":
        return [slice(i * b, min((i + 1) * b, n)) for i in range(n_batches)]
    perm = rng.permutation(n)
    return [np.sort(perm[i * b:(i + 1) * b]) for i in range(n_batches)]


def batch_len(rows) -> int:
    """Number of rows of a :func:`plan_batches` entry."""
    return rows.stop - rows.start if isinstance(rows, slice) else len(rows)


def allocate_budget(sizes, total: int, *, method: str = "largest_remainder") -> np.ndarray:
    """Split ``total`` units across groups in proportion to their ``sizes``, exactly (§2.3).

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


def root_seed_sequence(rng: np.random.Generator) -> np.random.SeedSequence:
    """The ``SeedSequence`` behind ``rng`` (or one drawn from it): the root of batch seeds."""
    seed_seq = getattr(rng.bit_generator, "seed_seq", None)
    if isinstance(seed_seq, np.random.SeedSequence):
        return seed_seq
    return np.random.SeedSequence(int(rng.integers(2**63)))


def batch_seed(root: np.random.SeedSequence, index: int) -> np.random.SeedSequence:
    """Child ``index`` of ``root``: the same as ``root.spawn(K)[index]`` on a fresh root."""
    return np.random.SeedSequence(root.entropy, spawn_key=(*root.spawn_key, index),
                                  pool_size=root.pool_size)

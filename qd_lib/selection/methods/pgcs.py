"""PGCS: t-SNE, coverage-precedence strata and median-distance windows, as its official code
does it, with the all-pairs step streamed in row chunks."""
from __future__ import annotations

import hashlib
import logging
import numbers
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from qd_lib.selection._kernels import (
    DEFAULT_CHUNK_BYTES,
    chunk_rows,
    coordinate_median,
    one_thread,
    single_thread_blas,
    sq_dists_to_vector,
)
from qd_lib.selection.base import MethodOutput, register
from qd_lib.utils.progress import progress as progress_bar
from qd_lib.utils.validation import check_array_2d, check_scalar

logger = logging.getLogger(__name__)

#: Bytes of temporaries per row of a partitioning chunk, per candidate column: the float64
#: distance block, its partitioned copy and a boolean comparison.
_BYTES_PER_ENTRY = 8 + 8 + 1
#: Default memory budget of one partitioning worker (bytes).
PARTITION_CHUNK_BYTES = 2 * DEFAULT_CHUNK_BYTES
#: PGCS's number of strata (``iqa_config.py``), lowered to N on fewer rows.
DEFAULT_PARTITIONS = 5
#: Fewest rows t-SNE runs on (perplexity ≥ 1 needs N − 1 ≥ 3); below, the embedding is used.
MIN_TSNE_ROWS = 4


def coverage_scores(Y: np.ndarray, n_partitions: int = 5, *, chunk_size: int | None = None,
                    n_jobs: int = 1, bar=None) -> tuple[np.ndarray, int]:
    """PGCS coverage score of every point, streamed over row chunks (never ``n × n``).

    For each point ``i`` all points are ranked by distance to ``i`` (ascending, the point
    itself first, ties by index) and the ranking is cut into ``K`` bins of ``q = ⌊n/K⌋``
    ranks (the last bin takes the remainder); bin ``t`` is worth ``t`` (1 … K). The coverage of
    ``j`` is the sum over all ``i`` of ``j``'s bin value in ``i``'s ranking: low for central
    points, high for peripheral ones.

    Per chunk of rows, the squared distances to all points are computed (explicit differences,
    float64), the ``K − 1`` cut values ``τ_t`` = the ``t·q``-th smallest are found by
    single-``kth`` in-place partitions (introselect, no sort), and each point's bin value is
    ``1 + #{t : rank ≥ t·q}``, i.e. counts of ``d > τ_t`` (plus the tied entries at or past the
    cut position, by index). Work ``O(n²)``, memory ``O(chunk · n)`` per worker.

    Parameters
    ----------
    Y : ndarray of shape (n, m)
        Low-dimensional points (PGCS: the 3-D t-SNE embedding).
    n_partitions : int, default=5
        ``K``.
    chunk_size : int, optional
        Rows per chunk; default: as many as fit 64 MiB of temporaries.
    n_jobs : int, default=1
        Worker threads (numpy releases the GIL in these kernels).
    bar : tqdm, optional
        Advanced by the number of rows processed.

    Returns
    -------
    coverage : ndarray of int64, shape (n,)
    chunk_size : int
        Rows per chunk actually used.
    """
    Y = np.asarray(Y, dtype=np.float64)
    n = Y.shape[0]
    K = int(n_partitions)
    q = max(1, n // K)
    cuts = [t * q for t in range(1, K) if t * q < n]
    if chunk_size is None:
        chunk_size = chunk_rows(n, itemsize=_BYTES_PER_ENTRY, budget_bytes=PARTITION_CHUNK_BYTES)
        logger.info("PGCS partitioning: %d rows, chunks of %d rows (64 MiB per worker), "
                    "%d worker(s)", n, min(chunk_size, n), n_jobs)
    # ≤ 65535 rows: the per-chunk column counts use a uint16 accumulator
    chunk_size = int(min(max(1, chunk_size), n, 65535))
    cols = [np.ascontiguousarray(Y[:, k]) for k in range(Y.shape[1])]
    col_index = np.arange(n)
    starts = list(range(0, n, chunk_size))
    lock = threading.Lock()

    def work(worker: int) -> np.ndarray:
        counts = np.zeros(n, dtype=np.int64)
        D = tmp = None
        for start in starts[worker::n_jobs]:
            stop = min(start + chunk_size, n)
            rows = stop - start
            if D is None or D.shape[0] != rows:
                D = np.empty((rows, n))
                tmp = np.empty((rows, n))
            # Squared distances from explicit differences: in a few dimensions this is cheaper
            # than a Gram product (a rank-3 GEMM runs far below peak), exact for ties and ≥ 0.
            for k, col in enumerate(cols):
                target = D if k == 0 else tmp
                np.subtract.outer(col[start:stop], col, out=target)
                np.multiply(target, target, out=target)
                if k:
                    D += tmp
            if cuts:
                part = D.copy()
                _select_in_place(part, 0, n, cuts)
                prev = -1
                for c in cuts:
                    tau = part[:, c, None]
                    ge = D >= tau  # rank ≥ c, except tied entries sitting before the cut
                    # column sums of a boolean block: uint8 view, uint16 accumulator (fast)
                    counts += np.add.reduce(ge.view(np.uint8), axis=0, dtype=np.uint16)
                    # Entries tied with τ before position c: only if the segment between the
                    # previous cut and this one reaches τ, or the previous cut equals it.
                    straddle = np.zeros(rows, dtype=bool)
                    if c - prev > 1:
                        straddle |= part[:, prev + 1:c].max(axis=1) == tau[:, 0]
                    if prev >= 0:
                        straddle |= part[:, prev] == tau[:, 0]
                    for r in np.flatnonzero(straddle):  # rare: exact ties at the cut
                        less = int(np.count_nonzero(D[r] < tau[r, 0]))
                        tied = col_index[D[r] == tau[r, 0]]
                        counts[tied[:c - less]] -= 1  # by index, these rank before c
                    prev = c
                del part
            if bar is not None:
                with lock:
                    bar.update(rows)
        return counts

    with single_thread_blas():
        if n_jobs == 1:
            total = work(0)
        else:
            with ThreadPoolExecutor(max_workers=n_jobs) as pool:
                total = sum(pool.map(work, range(n_jobs)))
    return total + n, chunk_size


def _select_in_place(part: np.ndarray, lo: int, hi: int, cuts: list[int]) -> None:
    """Put the order statistics at positions ``cuts`` of every row in place.

    One single-``kth`` partition at the middle cut, then each side recursively. numpy's
    multi-``kth`` ``partition`` is several times slower than this (and than a full sort).
    """
    if not cuts:
        return
    half = len(cuts) // 2
    mid = cuts[half]
    part[:, lo:hi].partition(mid - lo, axis=1)
    _select_in_place(part, lo, mid, cuts[:half])
    _select_in_place(part, mid + 1, hi, cuts[half + 1:])


def coverage_partition(coverage: np.ndarray, n_partitions: int) -> np.ndarray:
    """Round-robin strata: sort by (coverage, index), label sorted position ``p`` ``p mod K``."""
    order = np.argsort(coverage, kind="stable")
    labels = np.empty(len(coverage), dtype=np.int64)
    labels[order] = np.arange(len(coverage)) % n_partitions
    return labels


def pgcs_quotas(sizes, budget: int) -> np.ndarray:
    """PGCS's per-partition budgets: ceilings, then its trimming rule.

    Partition ``c`` of size ``n_c`` first gets ``m_c = ⌈n_c·M/N⌉``; the excess
    ``E = Σm − M`` is removed by subtracting ``⌊m_c·E/Σm⌋`` from each, then one unit at a time
    from the partition with the largest current ``m_c`` (first on ties). Exact integers.
    """
    sizes = [int(s) for s in sizes]
    N = sum(sizes)
    m = [-(-s * budget // N) for s in sizes]
    total = sum(m)
    excess = total - budget
    if excess > 0:
        m = [mc - (mc * excess) // total for mc in m]
        left = sum(m) - budget
        while left > 0:
            i = max(range(len(m)), key=lambda j: (m[j], -j))
            m[i] -= 1
            left -= 1
    out = np.asarray(m, dtype=np.int64)
    if out.sum() != budget or (out < 0).any() or (out > np.asarray(sizes)).any():
        raise RuntimeError(f"PGCS quotas {out.tolist()} do not fit budget {budget} / {sizes}.")
    return out


def median_window(n_c: int, m_c: int) -> tuple[int, int]:
    """PGCS's window in ascending-distance order: start ``⌊n_c/2⌋ − ⌊m_c/2⌋``, length ``m_c``."""
    start = n_c // 2 - m_c // 2
    return start, start + m_c


#: decimals the t-SNE's PCA initialisation is rounded to (openTSNE scales it to a standard
#: deviation of 1e-4, so the grid is a millionth of the initial spread)
PCA_INIT_DECIMALS = 10

#: openTSNE finds exact neighbours below this many rows (approximate ones from there on)
EXACT_NEIGHBOURS_BELOW = 1000

_TSNE_CACHE: dict = {}
_TSNE_CACHE_SIZE = 4


def exact_distances(X, *, chunk_bytes: int = PARTITION_CHUNK_BYTES) -> np.ndarray:
    """Euclidean distances between the rows of ``X`` from explicit differences, in row chunks
    of at most ``chunk_bytes`` of temporaries: no BLAS, so the same bits on every machine."""
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    rows = max(1, int(chunk_bytes // max(1, 8 * n * d)))
    out = np.empty((n, n))
    for start in range(0, n, rows):
        diff = X[start:start + rows, None, :] - X[None, :, :]
        out[start:start + rows] = np.sqrt((diff * diff).sum(axis=2))
    return out


def tsne_3d(X: np.ndarray, *, n_components: int, perplexity: float, random_state: int,
            n_jobs: int, verbose: bool) -> tuple[np.ndarray, dict]:
    """openTSNE embedding with PGCS's settings (library defaults otherwise).

    Runs with BLAS and OpenMP on one thread (openTSNE's own ``n_jobs`` workers aside): its PCA
    initialisation goes through BLAS/LAPACK, whose round-off changes with the thread count and
    with the CPU model (OpenBLAS picks its kernels per CPU), and t-SNE carries such a change
    into another layout. One thread fixes the first; rounding the PCA initialisation to
    :data:`PCA_INIT_DECIMALS` decimals fixes the second, and so does computing the exact
    neighbours of small inputs without BLAS: the same input bits give the same layout on every
    machine (checked by forcing different OpenBLAS kernels in the tests). The input's own bits
    are another matter: t-SNE is chaotic in them, so a change in the last bit of the embedding
    (torch's extractors round differently on different CPU families) moves a large part of the
    coreset, a different draw from the same distribution.

    The last few layouts are kept in memory, keyed by a digest of ``X`` and the settings: the
    coresets of one seed at several fractions share one t-SNE (the budget does not enter it),
    and the result is the same array a fresh computation gives.
    """
    key = (hashlib.sha256(np.ascontiguousarray(X).tobytes()).hexdigest(), X.shape,
           str(X.dtype), n_components, float(perplexity), int(random_state), int(n_jobs))
    if key in _TSNE_CACHE:
        Y, info = _TSNE_CACHE[key]
        logger.debug("t-SNE layout reused from memory (%d rows)", len(Y))
        return Y.copy(), dict(info)
    Y, info = _tsne_3d(X, n_components=n_components, perplexity=perplexity,
                       random_state=random_state, n_jobs=n_jobs, verbose=verbose)
    while len(_TSNE_CACHE) >= _TSNE_CACHE_SIZE:
        _TSNE_CACHE.pop(next(iter(_TSNE_CACHE)))
    _TSNE_CACHE[key] = (Y.copy(), info)
    return Y, info


def _tsne_3d(X: np.ndarray, *, n_components: int, perplexity: float, random_state: int,
             n_jobs: int, verbose: bool) -> tuple[np.ndarray, dict]:
    from openTSNE import TSNE  # loads its BLAS/OpenMP libraries before the limit below

    n = X.shape[0]
    effective = min(float(perplexity), (n - 1) / 3.0)
    if effective < perplexity:
        logger.info("t-SNE perplexity lowered from %g to %.3g for %d rows", perplexity,
                    effective, n)
    # openTSNE's FFT gradients support at most 2 dimensions; Barnes-Hut handles 3.
    method = "bh" if n_components > 2 else "auto"
    init = "pca" if min(X.shape) >= n_components else "random"
    if init != "pca":
        logger.info("t-SNE initialisation: random (embedding of shape %s, %d components)",
                    X.shape, n_components)
    X = np.asarray(X, dtype=np.float64)
    with one_thread():
        start = init
        if init == "pca":
            # openTSNE's own PCA initialisation, rounded to a fixed grid: its SVD goes through
            # BLAS, whose kernel (chosen per CPU model, not per thread count) changes the last
            # bits, and t-SNE carries such a change into another layout; on the grid every
            # machine starts from the same positions (the rest of t-SNE does not use BLAS)
            from openTSNE import initialization

            start = np.round(initialization.pca(X, n_components, random_state=random_state),
                             PCA_INIT_DECIMALS)
        if n < EXACT_NEIGHBOURS_BELOW:
            # openTSNE's exact neighbours go through BLAS distances (CPU-dependent last bits,
            # which move the affinities, and so does scipy's cdist); explicit differences are
            # the same on every machine. Its approximate neighbours (Annoy, from n = 1000) do
            # not use BLAS.
            tsne = TSNE(n_components=n_components, perplexity=effective,
                        random_state=random_state, n_jobs=n_jobs, verbose=verbose,
                        negative_gradient_method=method, initialization=start,
                        metric="precomputed")
            Y = np.asarray(tsne.fit(exact_distances(X)), dtype=np.float64)
        else:
            tsne = TSNE(n_components=n_components, perplexity=effective,
                        random_state=random_state, n_jobs=n_jobs, verbose=verbose,
                        negative_gradient_method=method, initialization=start)
            Y = np.asarray(tsne.fit(X), dtype=np.float64)
    return Y, {"perplexity": effective, "random_state": random_state,
               "negative_gradient_method": method, "n_jobs": n_jobs,
               "initialization": init if init != "pca" else
               f"pca (rounded to 1e-{PCA_INIT_DECIMALS})"}


@register("pgcs", inputs=("embedding",), needs_mos=False, stochastic=True, title="PGCS")
def pgcs_selection(features: dict[str, np.ndarray], budget: int, *, mos=None,
                   random_state: np.random.Generator, n_partitions: int | None = None,
                   embedding_3d=None, n_components: int = 3, perplexity: float = 30.0,
                   n_jobs: int = 1, verbose: bool = False, chunk_size: int | None = None,
                   progress: bool | None = None) -> MethodOutput:
    """PGCS: partition-guided coreset selection on LIQE features, as its official code does it.

    Reference: Nema, Zhu & Lin, PGCS (ICIP 2025), official code ``Arpita2012/PGCS`` (commit
    ``eb44ad0``, ``iqa_config.py`` defaults: LIQE features, t-SNE to 3-D,
    ``CoveragePrecedencePartitioning`` with K = 5). Design note ``qdiverse.md`` §6.

    Procedure:

    1. 3-D t-SNE of the embedding (openTSNE, ``random_state`` drawn from the seed), or the
       ``embedding_3d`` given.
    2. Coverage-precedence partitioning: every point ranks all points by t-SNE distance and
       cuts the ranking into ``K`` bins of ``⌊N/K⌋`` ranks worth 1 … K; a point's coverage is
       the sum of its bin values over all rankings (:func:`coverage_scores`). Points sorted by
       (coverage, index) are labelled round-robin ``p mod K``: ``K`` interleaved strata of
       sizes ``⌊N/K⌋`` or ``⌈N/K⌉``, each spanning the whole centrality range.
    3. Budgets ``m_c = ⌈n_c·M/N⌉`` trimmed to ``M`` (:func:`pgcs_quotas`).
    4. In each stratum, distances of its rows to the per-dimension median of their embeddings
       (original space), ascending; keep the ``m_c`` rows from ``⌊n_c/2⌋ − ⌊m_c/2⌋``.
    5. Output: strata in label order, each in ascending distance (``gains`` = those distances).

    The MOS is not used (the official code loads it and never uses it for selection).
    With ``embedding_3d`` the result does not depend on the seed.

    Deviations from the official code, and why:

    * The partitioning streams row chunks of float64 squared distances and finds only the
      ``K − 1`` cut ranks of each row by selection (the official code builds the full ``N × N``
      distance matrix and argsorts every row): same coverage scores, ``O(chunk · N)`` memory,
      so ``N = 100k`` runs (the ``O(N²)`` work remains: it is what the method defines).
    * Ties (exact duplicates only) are ranked by index, and the coverage sort is stable with
      index tie-break. The official code ranks each distance row and the coverage scores with
      ``torch.argsort``, which is not stable (and the distances inside a stratum with numpy's
      default quicksort); integer coverage ties are common, so its labels can differ from ours
      on tied points.
    * openTSNE instead of the official code's t-SNE call (library defaults either way:
      perplexity 30; openTSNE initialises with PCA), Barnes-Hut gradients in 3-D, perplexity
      lowered to ``(N − 1)/3`` on tiny inputs; its ``random_state`` is drawn from our seed
      instead of the global seed 20. t-SNE layouts differ between libraries, so strata differ
      from the official run. The PCA start is rounded to 1e-10 and inputs under 1,000 rows get
      BLAS-free exact neighbours (:func:`tsne_3d`), so that the same features give the same
      layout, and so the same coreset, on every machine (BLAS round-off depends on the CPU
      model). Features extracted on another CPU family differ in their last bits, and PGCS's
      coreset with them.
    * The quota trimming uses exact integers (``⌊m_c·E/Σm⌋``) where the code uses floats.
    * Features are used as given: L2-normalise the LIQE embeddings beforehand to match the
      official extractor (which also leaves a random flip active during extraction).
    * ``n_partitions`` must lie in ``[1, N]``; when ``N < 2K`` the bins hold one rank each
      except the last. Left unset it is 5 (the official setting) or ``N`` on fewer rows, so
      every budget ``1 … N`` works on any ``N ≥ 1``.
    * Fewer than 4 rows: t-SNE is undefined there (perplexity below 1), so the partitioning
      ranks distances in the embedding itself (``info["tsne"] = "skipped"``).

    Options
    -------
    n_partitions : int, optional
        ``K``, the number of strata, in ``[1, N]``; default ``min(5, N)``.
    embedding_3d : array-like of shape (n, m), optional
        Precomputed low-dimensional embedding (skips t-SNE; tests use it to stay fast).
    n_components : int, default=3
        t-SNE output dimension.
    perplexity : float, default=30.0
        t-SNE perplexity.
    n_jobs : int, default=1
        Threads for openTSNE and for the partitioning.
    verbose : bool, default=False
        openTSNE's own progress output.
    chunk_size : int, optional
        Rows per partitioning chunk (default: 64 MiB of temporaries per worker).
    progress : bool, optional
        Show a progress bar for the partitioning.
    """
    X = features["embedding"]
    n = X.shape[0]
    if n_partitions is None:
        n_partitions = min(DEFAULT_PARTITIONS, n)
        if n_partitions < DEFAULT_PARTITIONS:
            logger.info("PGCS: %d strata for %d rows (default %d)", n_partitions, n,
                        DEFAULT_PARTITIONS)
    elif not 1 <= check_scalar(n_partitions, "n_partitions", numbers.Integral) <= n:
        raise ValueError(f"The 'n_partitions' parameter of pgcs must be an int in the range "
                         f"[1, {n}]. Got {n_partitions!r} instead.")
    check_scalar(n_components, "n_components", numbers.Integral, min_val=1, max_val=3)
    check_scalar(perplexity, "perplexity", numbers.Real, min_val=0.0, closed="neither")
    check_scalar(n_jobs, "n_jobs", numbers.Integral, min_val=1)
    if not isinstance(verbose, bool):
        raise TypeError(f"The 'verbose' parameter must be an instance of bool. Got {verbose!r}.")
    if chunk_size is not None:
        check_scalar(chunk_size, "chunk_size", numbers.Integral, min_val=1)
    K = int(n_partitions)
    params = {"n_partitions": K, "embedding_3d": None if embedding_3d is None else "given",
              "n_components": int(n_components), "perplexity": float(perplexity),
              "n_jobs": int(n_jobs), "verbose": verbose, "chunk_size": chunk_size}
    info: dict = {}
    if embedding_3d is not None:
        Y = check_array_2d(embedding_3d, "embedding_3d")
        if Y.shape[0] != n:
            raise ValueError(
                f"The 'embedding_3d' parameter must have one row per candidate ({n}). "
                f"Got shape {Y.shape} instead."
            )
        info["tsne"] = "precomputed"
    elif n < MIN_TSNE_ROWS:
        logger.info("PGCS: t-SNE skipped on %d rows; partitioning the embedding itself", n)
        Y = X
        info["tsne"] = "skipped"
    else:
        seed = int(random_state.integers(2**31 - 1))
        Y, info["tsne"] = tsne_3d(X, n_components=int(n_components), perplexity=perplexity,
                                  random_state=seed, n_jobs=int(n_jobs), verbose=verbose)
    with progress_bar(total=n, desc="pgcs partitioning", enabled=progress) as bar:
        coverage, used_chunk = coverage_scores(Y, K, chunk_size=chunk_size, n_jobs=int(n_jobs),
                                               bar=bar)
    labels = coverage_partition(coverage, K)
    sizes = np.bincount(labels, minlength=K)
    quotas = pgcs_quotas(sizes, budget)
    parts, dists = [], []
    for c in range(K):
        rows = np.flatnonzero(labels == c)
        if quotas[c] == 0:
            continue
        proto = coordinate_median(X, rows)
        d = np.sqrt(sq_dists_to_vector(X[rows], proto))
        order = np.argsort(d, kind="stable")
        lo, hi = median_window(len(rows), int(quotas[c]))
        parts.append(rows[order[lo:hi]])
        dists.append(d[order[lo:hi]])
    info.update(partition_sizes=sizes.tolist(), quotas=quotas.tolist(), chunk_size=used_chunk,
                coverage_range=[int(coverage.min()), int(coverage.max())])
    return MethodOutput(indices=np.concatenate(parts).astype(np.int64), params=params,
                        info=info, gains=np.concatenate(dists))

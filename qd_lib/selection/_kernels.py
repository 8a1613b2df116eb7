"""Distance kernels shared by the baseline selectors (k-Center, Herding, CD, Moderate, PGCS).

Everything here works on one vector per query or streams over row chunks, so no routine ever
holds an ``n × n`` (or ``budget × n``) matrix: the working memory of a call is ``O(n)`` or
``chunk × k`` for ``k`` query rows.

Squared Euclidean distances use the Gram identity ``‖a − b‖² = ‖a‖² + ‖b‖² − 2aᵀb``: the inner
products come from one BLAS product (float32 or float64, the caller's choice), the norms and the
sum are float64, and round-off below zero is clamped. The rows are centred first
(:func:`working_copy`), which keeps ``‖a‖²`` small and the cancellation in the identity mild.

Functions
---------
column_mean
    Column mean of a (possibly memory-mapped) matrix, accumulated in float64 over row chunks.
working_copy
    Centred, C-contiguous float32/float64 copy of a feature matrix, with its row norms.
chunk_rows
    Rows per chunk so that a ``chunk × width`` float64 block stays within a memory budget.
sq_dists_to_point
    Squared distances from every row to one row (a GEMV).
snap_to_zero
    Squared distances below the Gram identity's round-off set to exactly 0 (duplicates tie).
gram_chunks
    ``Q Wᵀ`` for a block of query rows, yielded one column chunk at a time (Herding's check).
dot_error_bound
    Rigorous bound on the round-off of a float32/float64 inner product (Herding's screening).
coordinate_median
    Per-dimension median of a set of rows (column blocks, float64).
sq_dists_to_vector
    Exact squared distances (differences, not the identity) from every row to one vector.
jeffreys_to_point
    Half the Jeffreys divergence (symmetric KL) from every probability row to one row.
farthest_first
    Greedy farthest-first traversal (k-Center) for any "distances to one point" callable.
farthest_first_loop
    The traversal's loop around a running minimum, for callers that lower it their own way.
single_thread_blas
    Context manager: BLAS on one thread for loops of small products.
one_thread
    Context manager: BLAS and OpenMP on one thread (what :func:`~qd_lib.selection.select`
    runs every method under, so no result depends on the machine's thread count).
check_flag, resolve_dtype
    Small option checks shared by the selectors.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
    threadpool_limits = None

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "THREADS",
    "check_flag",
    "chunk_rows",
    "column_mean",
    "coordinate_median",
    "dot_error_bound",
    "farthest_first",
    "farthest_first_loop",
    "gram_chunks",
    "jeffreys_to_point",
    "one_thread",
    "resolve_dtype",
    "single_thread_blas",
    "snap_to_zero",
    "sq_dists_to_point",
    "sq_dists_to_vector",
    "working_copy",
]

#: Memory budget of one temporary block (bytes); chunk sizes are derived from it.
DEFAULT_CHUNK_BYTES = 32 << 20

_DTYPES = {"float32": np.float32, "float64": np.float64}


def resolve_dtype(dtype) -> type:
    """Map ``"float32"``/``"float64"`` (or the numpy types) to the numpy type."""
    if isinstance(dtype, str):
        return _DTYPES[dtype]
    return np.dtype(dtype).type


def chunk_rows(width: int, *, itemsize: int = 8, budget_bytes: int = DEFAULT_CHUNK_BYTES,
               minimum: int = 1) -> int:
    """Number of rows such that a ``rows × width`` block of ``itemsize`` bytes fits the budget."""
    return max(int(minimum), int(budget_bytes) // max(1, int(width) * int(itemsize)))


def column_mean(X: np.ndarray, *, budget_bytes: int = DEFAULT_CHUNK_BYTES) -> np.ndarray:
    """Column mean of ``X`` in float64, accumulated over row chunks (a memmap is read once)."""
    n, d = X.shape
    step = chunk_rows(d, itemsize=8, budget_bytes=budget_bytes)
    mean = np.zeros(d, dtype=np.float64)
    for start in range(0, n, step):
        mean += np.asarray(X[start:start + step]).sum(axis=0, dtype=np.float64)
    return mean / n


def working_copy(X: np.ndarray, dtype=np.float32, *, center: bool = True,
                 mean: np.ndarray | None = None, exact_norms: bool = False,
                 budget_bytes: int = DEFAULT_CHUNK_BYTES) -> tuple[np.ndarray, np.ndarray]:
    """Copy ``X`` into a C-contiguous ``dtype`` array, centred on its column mean.

    The mean is accumulated in float64 over row chunks (:func:`column_mean`), so a
    ``numpy.memmap`` is read chunk by chunk. Distances and the herding residual are translation
    invariant, so centring changes no result; it only shrinks the norms in the Gram identity.

    Parameters
    ----------
    mean : ndarray of shape (d,), optional
        The centre to subtract (default: the column mean; ignored when ``center=False``).
    exact_norms : bool, default=False
        Norms of the float64 rows ``X_i − mean`` instead of the stored (rounded) rows.

    Returns
    -------
    W : ndarray of shape (n, d), ``dtype``
    sq_norms : ndarray of shape (n,), float64
        ``‖W_i‖²`` computed in float64.
    """
    dtype = resolve_dtype(dtype)
    n, d = X.shape
    # exact_norms holds one float64 chunk at a time: keep it a small share of the budget
    step = chunk_rows(d, itemsize=64 if exact_norms else 8, budget_bytes=budget_bytes)
    if not center:
        mean = np.zeros(d, dtype=np.float64)
    elif mean is None:
        mean = column_mean(X, budget_bytes=budget_bytes)
    W = np.empty((n, d), dtype=dtype)
    sq = np.empty(n, dtype=np.float64)
    for start in range(0, n, step):
        block = W[start:start + step]
        if exact_norms:
            exact = np.subtract(X[start:start + step], mean, dtype=np.float64)
            sq[start:start + step] = np.einsum("ij,ij->i", exact, exact)
            block[...] = exact
            continue
        # float64 arithmetic, rounded once into the working dtype (buffered: no temporary)
        np.subtract(X[start:start + step], mean, out=block, casting="unsafe")
        sq[start:start + step] = np.einsum("ij,ij->i", block, block, dtype=np.float64)
    return W, sq


def snap_to_zero(d2: np.ndarray, sq_rows: np.ndarray, sq_p, dtype) -> np.ndarray:
    """Set squared distances below the Gram identity's round-off to exactly 0, in place.

    ``‖a‖² + ‖b‖² − 2aᵀb`` carries an error of a few ``eps·(‖a‖² + ‖b‖²)``; anything smaller is
    indistinguishable from a duplicate, and is reported as one (so exact duplicates tie at 0
    and the lowest index wins, instead of round-off deciding).
    """
    tiny = d2 <= (4.0 * np.finfo(dtype).eps) * (sq_rows + sq_p)
    d2[tiny] = 0.0
    return d2


def sq_dists_to_point(W: np.ndarray, sq: np.ndarray, p: int, out: np.ndarray | None = None
                      ) -> np.ndarray:
    """Squared distances (float64, clamped, snapped at 0) from every row of ``W`` to row ``p``."""
    g = W @ W[p]
    out = np.multiply(g, -2.0, out=out, dtype=np.float64) if out is not None else \
        g.astype(np.float64) * -2.0
    out += sq
    out += sq[p]
    np.maximum(out, 0.0, out=out)
    snap_to_zero(out, sq, sq[p], W.dtype)
    out[p] = 0.0
    return out


def gram_chunks(W: np.ndarray, Q: np.ndarray, *, budget_bytes: int = DEFAULT_CHUNK_BYTES
                ) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(start, stop, G)`` with ``G = Q @ W[start:stop].T`` in ``W``'s dtype.

    ``Q`` holds query rows (cast to ``W``'s dtype); ``G`` has shape ``(len(Q), stop − start)``
    and at most ``budget_bytes``; the column chunks cover ``range(n)`` in order.
    """
    Q = np.ascontiguousarray(Q, dtype=W.dtype)
    step = chunk_rows(max(1, len(Q)), itemsize=W.dtype.itemsize, budget_bytes=budget_bytes,
                      minimum=64)
    for start in range(0, W.shape[0], step):
        stop = min(start + step, W.shape[0])
        yield start, stop, Q @ W[start:stop].T


def dot_error_bound(dtype, d: int) -> float:
    """Factor ``c`` with ``|fl(x̂·ŵ) − x·w| ≤ c‖x‖‖w‖`` for float64 vectors ``x``, ``w``.

    ``x̂``, ``ŵ`` are ``x``, ``w`` rounded to ``dtype`` (unit round-off ``u``) and ``fl`` is a
    dot product of length ``d`` summed in ``dtype`` in any order (so any BLAS kernel, FMA or
    not): rounding the inputs costs at most ``(2u + u²)Σ|x_k w_k|`` and the sum at most
    ``γ_d Σ|x̂_k ŵ_k|`` with ``γ_d = du/(1 − du)`` (Higham, *Accuracy and Stability of
    Numerical Algorithms*, §3.1), and ``Σ|x_k w_k| ≤ ‖x‖‖w‖``. A small margin covers the
    float64 arithmetic around the product.
    """
    u = float(np.finfo(resolve_dtype(dtype)).eps) / 2.0
    gamma = d * u / (1.0 - d * u)
    return 1.01 * (gamma * (1.0 + u) ** 2 + 2.0 * u + u * u) + 64.0 * (d + 8) * 2.0 ** -53


def sq_dists_to_vector(X: np.ndarray, v: np.ndarray, *,
                       budget_bytes: int = DEFAULT_CHUNK_BYTES) -> np.ndarray:
    """Squared distances ``‖X_i − v‖²`` in float64 from explicit differences (no cancellation)."""
    n, d = X.shape
    v = np.asarray(v, dtype=np.float64)
    out = np.empty(n, dtype=np.float64)
    step = chunk_rows(d, itemsize=8, budget_bytes=budget_bytes)
    for start in range(0, n, step):
        diff = np.asarray(X[start:start + step], dtype=np.float64) - v
        out[start:start + step] = np.einsum("ij,ij->i", diff, diff)
    return out


def coordinate_median(X: np.ndarray, rows: np.ndarray | None = None, *,
                      budget_bytes: int = DEFAULT_CHUNK_BYTES) -> np.ndarray:
    """Per-dimension median of ``X[rows]`` (all rows by default), in float64.

    Columns are processed in blocks so the temporary copy is ``len(rows) × block`` rather than
    the whole sub-matrix in float64.
    """
    n_rows = X.shape[0] if rows is None else len(rows)
    d = X.shape[1]
    out = np.empty(d, dtype=np.float64)
    step = max(1, chunk_rows(max(1, n_rows), itemsize=8, budget_bytes=budget_bytes))
    for j in range(0, d, step):
        block = X[:, j:j + step] if rows is None else X[rows, j:j + step]
        out[j:j + step] = np.median(np.asarray(block, dtype=np.float64), axis=0)
    return out


def jeffreys_to_point(P: np.ndarray, logP: np.ndarray, h: np.ndarray, p: int) -> np.ndarray:
    """½·Jeffreys divergence ``½ Σ_k (a_k − b_k)(log a_k − log b_k)`` from every row to row ``p``.

    Uses ``½[h(a) + h(b) − a·log b − b·log a]`` with ``h(a) = Σ a log a`` precomputed: two GEMVs
    against the (tiny) class dimension. Rows must be strictly positive (clip first). Clamped at 0.
    """
    out = h + h[p]
    out -= P @ logP[p]
    out -= logP @ P[p]
    out *= 0.5
    # round-off of the expansion is a few eps·(|h(a)| + |h(b)| + ...); below it, a duplicate
    out[out <= 16.0 * np.finfo(np.float64).eps * (np.abs(h) + abs(h[p]) + 1.0)] = 0.0
    out[p] = 0.0
    return out


def farthest_first(dist_to: Callable[[int], np.ndarray], n: int, budget: int, first: int, *,
                   bar=None) -> tuple[np.ndarray, np.ndarray]:
    """Greedy farthest-first traversal with one running-minimum vector.

    Parameters
    ----------
    dist_to : callable
        ``dist_to(p)`` returns the length-``n`` float64 vector of (any monotone transform of)
        distances from every point to point ``p``.
    n, budget : int
        Number of points and of picks (``1 ≤ budget ≤ n``); the first pick counts.
    first : int
        The first centre.
    bar : tqdm, optional
        Progress bar advanced once per pick.

    Returns
    -------
    picks : ndarray of int64, shape (budget,)
        Pick order. Each pick after the first maximises the distance to the nearest earlier
        pick among the unpicked points (lowest index on ties, so when only exact duplicates
        remain the lowest-index unpicked point comes next).
    radii : ndarray of float64, shape (budget,)
        ``radii[t]`` is the covering value after picks ``0..t``: the largest distance from any
        point to its nearest pick (in the units ``dist_to`` returns).
    """
    m = np.array(dist_to(first), dtype=np.float64)

    def add_centre(t: int, p: int, m: np.ndarray) -> None:
        np.minimum(m, dist_to(p), out=m)

    return farthest_first_loop(m, budget, first, add_centre, bar=bar)


def farthest_first_loop(m: np.ndarray, budget: int, first: int,
                        add_centre: Callable[[int, int, np.ndarray], None], *,
                        bar=None, initial=()) -> tuple[np.ndarray, np.ndarray]:
    """The farthest-first loop around a running minimum ``m``, lowered by ``add_centre``.

    ``m`` holds every point's distance to ``first`` and is updated in place; picked points are
    set to ``-inf`` before ``add_centre(t, p, m)`` lowers ``m`` for the ``t``-th centre ``p``
    (every unpicked entry to at most its distance to ``p``). Returns ``(picks, radii)`` as
    :func:`farthest_first` does.

    ``initial`` (points already selected, ``initial[0] == first``) makes the first
    ``len(initial)`` picks those points, in order; the traversal continues from them and the
    bar advances only for the picks after them. Their ``radii`` entries before the last one are
    not covering radii.
    """
    picks = np.empty(budget, dtype=np.int64)
    radii = np.empty(budget, dtype=np.float64)
    n_initial = len(initial)
    picks[0] = first
    m[first] = -np.inf
    if bar is not None and not n_initial:
        bar.update(1)
    for t in range(1, budget):
        p = int(initial[t]) if t < n_initial else int(np.argmax(m))
        radii[t - 1] = max(m[p], 0.0)
        picks[t] = p
        m[p] = -np.inf
        add_centre(t, p, m)
        if bar is not None and t >= n_initial:
            bar.update(1)
    radii[budget - 1] = max(float(m.max()), 0.0)  # -inf (no point left) gives 0
    return picks, radii


def check_flag(value, name: str) -> bool:
    """Check that an option is a real ``bool`` (not ``0``/``1``) and return it."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"The {name!r} parameter must be an instance of bool. "
            f"Got {value!r} of type {type(value).__name__} instead."
        )
    return bool(value)


def single_thread_blas():
    """Context manager limiting BLAS to one thread.

    Greedy loops issue thousands of small, memory-bound GEMVs; with several BLAS threads each
    call pays a synchronisation that can cost milliseconds on a busy machine (measured: 8 ms
    instead of 0.1 ms per call with two threads and one competing process). One thread also
    makes float32 results independent of the machine's core count.
    """
    if threadpool_limits is None:  # pragma: no cover
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


#: The thread setting every selection runs under (recorded in ``Selection.info["threads"]``).
THREADS = {"blas": 1, "openmp": 1} if threadpool_limits is not None else {"blas": None,
                                                                           "openmp": None}


def one_thread():
    """Context manager limiting BLAS and OpenMP to one thread (threadpoolctl).

    Float results of BLAS (a GEMM's blocking, a LAPACK factorisation) can change with the
    number of threads, and a greedy selection turns one changed bit into another coreset.
    Libraries loaded after entering the context are not limited, so import them first.
    """
    if threadpool_limits is None:  # pragma: no cover
        return contextlib.nullcontext()
    return threadpool_limits(limits=1)

"""Q-Diverse: quality- and content-aware coreset selection by spectral log-determinant diversity.

Pipeline, per batch of ``b`` rows (``qd_lib`` design note ``qdiverse.md`` §2):

1. Squared Euclidean distances in the content and the quality embedding (one float32 GEMM each),
   each scaled by its largest off-diagonal distance, combined as
   ``D = γ·D_content + (1 − γ)·D_quality``.
2. RBF affinities ``W = exp(−D² / 2σ²)`` with ``σ`` = median distance, self-loops kept.
3. ``S = D^{-1/2} W D^{-1/2}`` (the symmetric normalised graph Laplacian is ``I − S``).
4. Nyström spectral embedding from ``l`` landmark columns of ``S``; the dimension ``r`` is the
   smallest one holding ``energy`` of the landmark block's spectrum.
5. A second RBF kernel ``K`` on the embedding (median bandwidth).
6. Greedy maximisation of ``log det(K_S + ε·I)`` by incremental Cholesky until the batch's
   budget is met.

The total budget is split across batches by the largest-remainder rule (exact total, each
share within 1 of its proportional quota). Batches are independent: batch ``i`` draws its
randomness (the landmarks) from ``SeedSequence(seed).spawn`` child ``i``, so a serial run, a
process pool (``n_jobs``) and a Dask-like ``client`` give identical results, in any order.

The paper's main text was not available: the distance normalisation, the RBF bandwidths, the
Laplacian normalisation, the landmark sampling, the batch order, the first pick and the budget
allocation are inferred. Each is a named option whose default is the design note's
recommendation; :data:`QDIVERSE_PRESETS` holds the per-dataset hyperparameters of the
supplement (§E.1, §F.3), with the values it does not state marked as inferred.

Out-of-core use: pass ``numpy.load(path, mmap_mode="r")`` arrays, float16, float32 or float64.
Each batch's rows are read (and copied; float16 rows cast to float32) only while that batch
runs, so the memory beyond the mapped file is ``O(b² + b·d)``; with ``n_jobs > 1`` the
workers receive the file name and the batch's rows and map the file themselves, instead of
receiving pickled arrays.

Every batch runs its BLAS calls on a single thread (float32 GEMM results depend on the thread
count); that is what makes serial and parallel runs bit-identical. Use ``n_jobs`` to use more
cores.
"""
from __future__ import annotations

import contextlib
import inspect
import logging
import mmap
import multiprocessing
import numbers
import os
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from qd_lib.selection.base import MethodOutput, register
from qd_lib.selection.spectral import (
    allocate_budget,
    greedy_logdet,
    nystrom_eigenvectors,
    offdiag_median,
    rbf_inplace,
    squared_distances,
    symmetric_normalize_inplace,
)
from qd_lib.utils.errors import UnknownNameError
from qd_lib.utils.progress import progress as progress_bar
from qd_lib.utils.validation import check_option, check_scalar

logger = logging.getLogger(__name__)

__all__ = ["qdiverse_selection", "qdiverse_preset", "QDIVERSE_PRESETS", "QDiversePreset",
           "QDIVERSE_DEFAULTS"]

# --------------------------------------------------------------------------------------------
# Options and presets
# --------------------------------------------------------------------------------------------

#: Every option of the selector with its default (the design note's recommendation).
QDIVERSE_DEFAULTS: Mapping[str, object] = MappingProxyType({
    # hyperparameters named by the paper (supplement §E.1)
    "preset": None,
    "gamma": 0.5,
    "energy": 0.95,
    "eps": 1e-6,
    "n_landmarks": 600,
    "batch_size": 1000,
    # choices the paper leaves open (inferred; design note §2-§3)
    "distance_norm": "max",
    "combine": "distance",
    "bandwidth": "median",
    "self_loops": True,
    "laplacian": "sym",
    "landmarks": "uniform",
    "eigen_power": 0.0,
    "drop_leading": False,
    "row_normalize": False,
    "z_bandwidth": "median",
    "first_pick": "lowest_index",
    "batch_order": "contiguous",
    "allocation": "largest_remainder",
    "distance_dtype": "float32",
    # execution (never changes the result)
    "n_jobs": 1,
    "start_method": "spawn",
    "client": None,
    "progress": None,
})

_CHOICES = {
    "distance_norm": ("max", "median", "none"),
    "combine": ("distance", "squared", "kernel"),
    "laplacian": ("sym", "rw", "none"),
    "landmarks": ("uniform", "first", "kmeans++"),
    "first_pick": ("lowest_index", "max_degree", "nearest_mean"),
    "batch_order": ("contiguous", "shuffle"),
    "allocation": ("largest_remainder", "sainte_lague"),
    "distance_dtype": ("float32", "float64"),
    "start_method": ("spawn", "forkserver"),
}

#: Keys a preset sets.
_PRESET_KEYS = ("gamma", "energy", "eps", "n_landmarks", "batch_size")


@dataclass(frozen=True)
class QDiversePreset:
    """Per-dataset hyperparameters of Q-Diverse.

    Attributes
    ----------
    options : mapping
        ``gamma``, ``energy``, ``eps``, ``n_landmarks`` and ``batch_size``
        (``None`` = non-batch mode).
    inferred : tuple of str
        The options the paper does not state for this dataset (our choice).
    source : str
        Where the stated values come from.
    """

    options: Mapping[str, object]
    inferred: tuple[str, ...] = ()
    source: str = ""


def _preset(gamma, n_landmarks, batch_size, inferred=(), source="supplement §E.1"):
    return QDiversePreset(MappingProxyType({"gamma": gamma, "energy": 0.95, "eps": 1e-6,
                                            "n_landmarks": n_landmarks,
                                            "batch_size": batch_size}),
                          tuple(inferred), source)


_NON_BATCH_NOTE = ("supplement §E.1 (γ, ε, energy); non-batch mode inferred for this small set, "
                   "landmark count not stated")
_NOT_STATED_NOTE = "supplement §E.1 (γ, ε, energy); (l, b) not stated, SPAQ's (600, 1500) used"

#: The paper's per-dataset settings. ``energy = 0.95`` and ``eps = 1e-6`` everywhere (§E.1);
#: γ = 0.7 for TID2013 (§E.1) and CIFAR-10 (§F.3), else 0.5.
QDIVERSE_PRESETS: Mapping[str, QDiversePreset] = MappingProxyType({
    "kadid10k": _preset(0.5, 600, 1000),
    "koniq10k": _preset(0.5, 600, 1000),
    "spaq": _preset(0.5, 600, 1500),
    "tid2013": _preset(0.7, 600, None, ("batch_size", "n_landmarks"), _NON_BATCH_NOTE),
    "agiqa3k": _preset(0.5, 600, None, ("batch_size", "n_landmarks"), _NON_BATCH_NOTE),
    "pipal": _preset(0.5, 600, 1500, ("batch_size", "n_landmarks"), _NOT_STATED_NOTE),
    "flive": _preset(0.5, 600, 1500, ("batch_size", "n_landmarks"), _NOT_STATED_NOTE),
    "cifar10": _preset(0.7, 500, 1500, (), "supplement §F.3"),
})

_PRESET_ALIASES = {"kadid": "kadid10k", "koniq": "koniq10k", "agiqa": "agiqa3k",
                   "pipal22": "pipal", "tid": "tid2013"}


def _preset_key(name) -> str:
    if not isinstance(name, str):
        raise TypeError(f"The 'preset' parameter must be None or a str. Got {name!r} of type "
                        f"{type(name).__name__} instead.")
    key = "".join(ch for ch in name.lower() if ch.isalnum())
    key = _PRESET_ALIASES.get(key, key)
    if key not in QDIVERSE_PRESETS:
        raise UnknownNameError("Q-Diverse preset", name, QDIVERSE_PRESETS)
    return key


def qdiverse_preset(dataset_name: str) -> dict:
    """The paper's Q-Diverse hyperparameters for a dataset, as options for ``select``.

    Parameters
    ----------
    dataset_name : str
        ``"kadid10k"``, ``"koniq10k"``, ``"spaq"``, ``"tid2013"``, ``"agiqa3k"``, ``"pipal"``,
        ``"flive"`` or ``"cifar10"``. Case, dashes and underscores are ignored
        (``"KADID-10K"`` works).

    Returns
    -------
    dict
        ``gamma``, ``energy``, ``eps``, ``n_landmarks`` and ``batch_size``. Which of them the
        paper does not state is in ``QDIVERSE_PRESETS[name].inferred``.

    Raises
    ------
    UnknownNameError
        If the dataset has no preset.

    Examples
    --------
    >>> qdiverse_preset("KADID-10k")["batch_size"]
    1000
    >>> opts = {**qdiverse_preset("tid2013"), "n_jobs": 2}   # then select("qdiverse", F, b, **opts)
    """
    return dict(QDIVERSE_PRESETS[_preset_key(dataset_name)].options)


def _check_bool(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"The {name!r} parameter must be a bool. Got {value!r} of type "
                        f"{type(value).__name__} instead.")
    return bool(value)


def _check_bandwidth(value, name: str):
    if isinstance(value, str):
        if value != "median":
            raise ValueError(f"The {name!r} parameter must be 'median' or a positive float. "
                             f"Got {value!r} instead.")
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"The {name!r} parameter must be 'median' or a positive float. "
                        f"Got {value!r} of type {type(value).__name__} instead.")
    return float(check_scalar(value, name, numbers.Real, min_val=0.0, closed="neither"))


def _resolve_n_jobs(n_jobs) -> int:
    if n_jobs is None:
        return 1
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral):
        raise TypeError(f"The 'n_jobs' parameter must be None or a non-zero int. Got {n_jobs!r} "
                        f"of type {type(n_jobs).__name__} instead.")
    if n_jobs == 0:
        raise ValueError("The 'n_jobs' parameter must be None or a non-zero int "
                         "(-1 = all cores). Got 0 instead.")
    cores = os.cpu_count() or 1
    return int(n_jobs) if n_jobs > 0 else max(1, cores + 1 + int(n_jobs))


def _resolve_options(given: Mapping) -> tuple[dict, tuple[str, ...]]:
    """Defaults < preset < explicit options; validate everything. Returns (options, inferred)."""
    unknown = sorted(set(given) - set(QDIVERSE_DEFAULTS))
    if unknown:
        raise TypeError(f"Unknown option(s) {unknown} for method 'qdiverse'. "
                        f"Valid options: {sorted(QDIVERSE_DEFAULTS)}.")
    o = dict(QDIVERSE_DEFAULTS)
    inferred: tuple[str, ...] = ()
    preset = given.get("preset")
    if preset is not None:
        key = _preset_key(preset)
        o.update(QDIVERSE_PRESETS[key].options)
        inferred = tuple(k for k in QDIVERSE_PRESETS[key].inferred if k not in given)
        given = {**given, "preset": key}
    o.update(given)

    o["gamma"] = float(check_scalar(o["gamma"], "gamma", numbers.Real, min_val=0.0, max_val=1.0))
    o["energy"] = float(check_scalar(o["energy"], "energy", numbers.Real, min_val=0.0,
                                     max_val=1.0, closed="right"))
    o["eps"] = float(check_scalar(o["eps"], "eps", numbers.Real, min_val=0.0, closed="neither"))
    o["n_landmarks"] = int(check_scalar(o["n_landmarks"], "n_landmarks", numbers.Integral,
                                        min_val=1))
    if o["batch_size"] is not None:
        o["batch_size"] = int(check_scalar(o["batch_size"], "batch_size", numbers.Integral,
                                           min_val=1))
    for name, choices in _CHOICES.items():
        check_option(o[name], name, choices)
    o["bandwidth"] = _check_bandwidth(o["bandwidth"], "bandwidth")
    o["z_bandwidth"] = _check_bandwidth(o["z_bandwidth"], "z_bandwidth")
    o["eigen_power"] = float(check_scalar(o["eigen_power"], "eigen_power", numbers.Real,
                                          min_val=0.0))
    for name in ("self_loops", "drop_leading", "row_normalize"):
        o[name] = _check_bool(o[name], name)
    if o["progress"] is not None:
        o["progress"] = _check_bool(o["progress"], "progress")
    _resolve_n_jobs(o["n_jobs"])  # validates
    client = o["client"]
    if client is not None:
        if not (callable(getattr(client, "map", None))
                and callable(getattr(client, "gather", None))):
            raise TypeError("The 'client' parameter must be None or a Dask-like client with "
                            f"map() and gather() methods. Got {client!r} instead.")
        if o["n_jobs"] not in (None, 1):
            raise ValueError("The 'n_jobs' and 'client' parameters are exclusive: with a client "
                             f"the cluster decides the parallelism. Got n_jobs={o['n_jobs']!r}.")
    return o, inferred


# --------------------------------------------------------------------------------------------
# Data transport: arrays, or a memory-mapped file named by path
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _MemmapRef:
    """Enough to re-open a C-contiguous memory-mapped array in another process."""

    filename: str
    offset: int
    dtype: str
    shape: tuple[int, ...]

    def open(self) -> np.memmap:
        return np.memmap(self.filename, dtype=np.dtype(self.dtype), mode="r",
                         offset=self.offset, shape=self.shape, order="C")


def _memmap_ref(arr: np.ndarray) -> _MemmapRef | None:
    """Describe ``arr`` by file position if it is a C-contiguous view of a shared file mapping."""
    if not arr.flags.c_contiguous:
        return None
    root = arr
    while isinstance(root, np.ndarray) and not (
            isinstance(root, np.memmap) and isinstance(root.base, mmap.mmap)):
        root = root.base
    if not isinstance(root, np.memmap) or not root.filename:
        return None
    if root.mode not in ("r", "r+", "w+"):  # "c" (copy-on-write) edits are not in the file
        return None
    position = int(root.offset) + (arr.ctypes.data - root.ctypes.data)
    return _MemmapRef(os.fspath(root.filename), position, arr.dtype.str, tuple(arr.shape))


@dataclass
class _BatchTask:
    index: int
    rows: slice | np.ndarray        # rows of the full input (for mapping picks back)
    source_rows: slice | np.ndarray  # rows to read from ``content``/``quality``
    budget: int
    seed: np.random.SeedSequence
    content: np.ndarray | _MemmapRef | None
    quality: np.ndarray | _MemmapRef | None
    options: dict = field(repr=False)


def _read_rows(source, rows) -> np.ndarray | None:
    """One batch's rows. float16 storage is widened here, batch by batch (exactly), so a
    half-precision memmap is never converted as a whole and every later stage sees
    float32/float64."""
    if source is None:
        return None
    array = source.open() if isinstance(source, _MemmapRef) else source
    block = array[rows]
    if block.dtype == np.float16:
        block = block.astype(np.float32)
    return block


_THREADPOOL_CONTROLLER = None


def _single_blas_thread():
    """Context limiting BLAS to one thread (bit-identical results in every execution mode)."""
    global _THREADPOOL_CONTROLLER
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        return contextlib.nullcontext()
    if _THREADPOOL_CONTROLLER is None:
        _THREADPOOL_CONTROLLER = ThreadpoolController()
    return _THREADPOOL_CONTROLLER.limit(limits=1, user_api="blas")


def _run_task(task: _BatchTask) -> dict:
    """Select inside one batch (runs in the caller, a worker process or a Dask worker)."""
    with _single_blas_thread():
        Xc = _read_rows(task.content, task.source_rows)
        Xq = _read_rows(task.quality, task.source_rows)
        rng = np.random.default_rng(task.seed)
        result = _select_in_batch(Xc, Xq, task.budget, rng, task.options)
    local = result.pop("local")
    if isinstance(task.rows, slice):
        result["indices"] = (task.rows.start or 0) + local
    else:
        result["indices"] = np.asarray(task.rows, dtype=np.int64)[local]
    result["index"] = task.index
    return result


# --------------------------------------------------------------------------------------------
# One batch
# --------------------------------------------------------------------------------------------

def _scaled_sq_distances(X: np.ndarray, o: dict) -> np.ndarray:
    d2 = squared_distances(X, dtype=np.dtype(o["distance_dtype"]).type)
    if o["distance_norm"] == "max":
        scale2 = float(d2.max())
    elif o["distance_norm"] == "median":
        scale2 = offdiag_median(d2, sqrt=True) ** 2
    else:
        scale2 = 1.0
    if scale2 > 0 and scale2 != 1.0:
        d2 *= 1.0 / scale2
    return d2


def _bandwidth(sq_dist: np.ndarray, setting) -> float:
    if setting != "median":
        return float(setting)
    sigma = offdiag_median(sq_dist, sqrt=True)
    return sigma if sigma > 0 else 1.0  # all points identical: any bandwidth gives W = 1


def _affinity(Xc, Xq, o: dict) -> tuple[np.ndarray, float]:
    """RBF affinity of the combined content/quality distances (self-loops per option)."""
    gamma = o["gamma"]
    parts = []
    if gamma > 0:
        parts.append((gamma, _scaled_sq_distances(Xc, o)))
    if gamma < 1:
        parts.append((1.0 - gamma, _scaled_sq_distances(Xq, o)))
    if o["combine"] == "kernel":
        W, sigmas = None, []
        for weight, d2 in parts:
            sigmas.append(_bandwidth(d2, o["bandwidth"]))
            rbf_inplace(d2, sigmas[-1])
            if len(parts) > 1:
                d2 *= weight
            W = d2 if W is None else np.add(W, d2, out=W)
        sigma = float(np.mean(sigmas))
    else:
        if len(parts) == 1:
            d2 = parts[0][1]
        elif o["combine"] == "distance":
            (wc, d2), (wq, dq2) = parts
            np.sqrt(d2, out=d2)
            np.sqrt(dq2, out=dq2)
            d2 *= wc
            dq2 *= wq
            d2 += dq2
            del dq2
            np.multiply(d2, d2, out=d2)
        else:  # "squared"
            (wc, d2), (wq, dq2) = parts
            d2 *= wc
            dq2 *= wq
            d2 += dq2
            del dq2
        parts.clear()
        sigma = _bandwidth(d2, o["bandwidth"])
        W = rbf_inplace(d2, sigma)
    np.fill_diagonal(W, 1.0 if o["self_loops"] else 0.0)
    return W, sigma


def _choose_landmarks(W: np.ndarray, n_landmarks: int, how: str,
                      rng: np.random.Generator) -> np.ndarray:
    b = W.shape[0]
    if n_landmarks >= b:
        return np.arange(b)
    if how == "first":
        return np.arange(n_landmarks)
    if how == "uniform":
        return np.sort(rng.choice(b, size=n_landmarks, replace=False))
    # "kmeans++": D²-sampling in the feature space of W (squared distance 2 − 2·W_jk)
    chosen = np.empty(n_landmarks, dtype=np.int64)
    chosen[0] = rng.integers(b)
    nearest = np.maximum(2.0 - 2.0 * W[chosen[0]], 0.0)
    nearest[chosen[0]] = 0.0
    for t in range(1, n_landmarks):
        total = nearest.sum()
        if total > 0:
            j = int(rng.choice(b, p=nearest / total))
        else:  # every remaining point coincides with a landmark
            free = np.setdiff1d(np.arange(b), chosen[:t])
            j = int(rng.choice(free))
        chosen[t] = j
        np.minimum(nearest, np.maximum(2.0 - 2.0 * W[j], 0.0), out=nearest)
        nearest[chosen[:t + 1]] = 0.0
    return np.sort(chosen)


def _spectral_embedding(W: np.ndarray, landmarks: np.ndarray, o: dict,
                        ) -> tuple[np.ndarray, int, np.ndarray]:
    """Nyström embedding of the normalised affinity; returns (Z, r, degrees)."""
    if o["laplacian"] == "none":
        S, degrees = W, W.sum(axis=1)
    else:
        S, degrees = symmetric_normalize_inplace(W)
    Z, lam, r = nystrom_eigenvectors(S, landmarks, o["energy"])
    if o["laplacian"] == "rw":  # right eigenvectors of D^{-1} W
        inv_sqrt = np.zeros_like(degrees)
        inv_sqrt[degrees > 0] = 1.0 / np.sqrt(degrees[degrees > 0])
        Z *= inv_sqrt[:, None]
    if o["eigen_power"] > 0:
        Z *= lam[:Z.shape[1]] ** o["eigen_power"]
    if o["drop_leading"] and Z.shape[1] > 1:
        Z = Z[:, 1:]
    if o["row_normalize"]:
        norms = np.linalg.norm(Z, axis=1)
        norms[norms == 0] = 1.0
        Z /= norms[:, None]
    return Z, r, degrees


def _select_in_batch(Xc, Xq, budget: int, rng: np.random.Generator, o: dict) -> dict:
    """Q-Diverse inside one batch; ``local`` holds the picks as batch-local indices."""
    b = (Xc if Xc is not None else Xq).shape[0]
    info = {"r": None, "n_landmarks": None, "sigma": None, "sigma_z": None}
    if budget <= 0:
        return {"local": np.empty(0, np.int64), "gains": np.empty(0), **info}
    if budget >= b:  # the whole batch: no criterion is evaluated
        return {"local": np.arange(b, dtype=np.int64), "gains": np.full(b, np.nan), **info}
    W, sigma = _affinity(Xc, Xq, o)
    n_landmarks = min(o["n_landmarks"], b)
    landmarks = _choose_landmarks(W, n_landmarks, o["landmarks"], rng)
    Z, r, degrees = _spectral_embedding(W, landmarks, o)
    del W
    K = squared_distances(Z, dtype=np.float64)
    sigma_z = _bandwidth(K, o["z_bandwidth"])
    rbf_inplace(K, sigma_z)
    np.fill_diagonal(K, 1.0)
    first = None
    if o["first_pick"] == "max_degree":
        first = int(np.argmax(degrees))
    elif o["first_pick"] == "nearest_mean":
        centred = Z - Z.mean(axis=0)
        first = int(np.argmin(np.einsum("ij,ij->i", centred, centred)))
    local, gains = greedy_logdet(K, budget, eps=o["eps"], first=first)
    return {"local": local, "gains": gains, "r": int(r), "n_landmarks": int(n_landmarks),
            "sigma": float(sigma), "sigma_z": float(sigma_z)}


# --------------------------------------------------------------------------------------------
# Batches, seeds, execution
# --------------------------------------------------------------------------------------------

def _root_seed_sequence(rng: np.random.Generator) -> np.random.SeedSequence:
    seed_seq = getattr(rng.bit_generator, "seed_seq", None)
    if isinstance(seed_seq, np.random.SeedSequence):
        return seed_seq
    return np.random.SeedSequence(int(rng.integers(2**63)))


def _batch_seed(root: np.random.SeedSequence, index: int) -> np.random.SeedSequence:
    """Child ``index`` of ``root``: the same as ``root.spawn(K)[index]`` on a fresh root."""
    return np.random.SeedSequence(root.entropy, spawn_key=(*root.spawn_key, index),
                                  pool_size=root.pool_size)


def _plan_batches(n: int, batch_size: int | None, order: str,
                  rng: np.random.Generator) -> list[slice | np.ndarray]:
    b = n if batch_size is None else min(batch_size, n)
    n_batches = -(-n // b)
    if order == "contiguous":
        return [slice(i * b, min((i + 1) * b, n)) for i in range(n_batches)]
    perm = rng.permutation(n)
    return [np.sort(perm[i * b:(i + 1) * b]) for i in range(n_batches)]


def _batch_len(rows) -> int:
    return rows.stop - rows.start if isinstance(rows, slice) else len(rows)


def _tasks(Xc, Xq, plan, budgets, root, o, transport: str) -> Iterator[_BatchTask]:
    """Build tasks lazily; ``transport`` is "in-process", "path" or "array"."""
    options = {k: v for k, v in o.items() if k not in ("client", "progress")}
    refs = (None, None)
    if transport == "path":
        refs = tuple(None if X is None else _memmap_ref(X) for X in (Xc, Xq))
    for i, (rows, m) in enumerate(zip(plan, budgets)):
        if transport == "in-process":
            content, quality, source_rows = Xc, Xq, rows
        elif transport == "path":
            content, quality, source_rows = refs[0], refs[1], rows
        else:  # pickle only this batch's rows
            content = None if Xc is None else np.ascontiguousarray(Xc[rows])
            quality = None if Xq is None else np.ascontiguousarray(Xq[rows])
            source_rows = slice(None)
        yield _BatchTask(i, rows, source_rows, int(m), _batch_seed(root, i), content, quality,
                         options)


def _run_processes(tasks: Iterator[_BatchTask], n_workers: int,
                   start_method: str) -> Iterator[dict]:
    """Run tasks on a process pool, at most ``2·n_workers`` in flight, results in order."""
    context = multiprocessing.get_context(start_method)
    pool = ProcessPoolExecutor(max_workers=n_workers, mp_context=context)
    try:
        pending = deque()
        for task in tasks:
            pending.append(pool.submit(_run_task, task))
            if len(pending) >= 2 * n_workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    except BaseException:  # a failed batch, or the caller stopped: drop the queued batches
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _run_client(tasks: Iterator[_BatchTask], client) -> Iterator[dict]:
    futures = client.map(_run_task, list(tasks))
    yield from client.gather(futures)


def _signature() -> inspect.Signature:
    kw = inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter("features", inspect.Parameter.POSITIONAL_OR_KEYWORD),
              inspect.Parameter("budget", inspect.Parameter.POSITIONAL_OR_KEYWORD),
              inspect.Parameter("mos", kw, default=None),
              inspect.Parameter("random_state", kw)]
    params += [inspect.Parameter(name, kw, default=value)
               for name, value in QDIVERSE_DEFAULTS.items()]
    return inspect.Signature(params, return_annotation=MethodOutput)


def qdiverse_selection(features: dict[str, np.ndarray], budget: int, *, mos=None,
                       random_state: np.random.Generator, **options) -> MethodOutput:
    """Q-Diverse: greedy log-det diversity in a Nyström spectral space of content + quality.

    Use it through ``qd_lib.selection.select("qdiverse", {"content": Fc, "quality": Fq},
    budget, seed=..., **options)``. Options are resolved as defaults < ``preset`` < options
    passed explicitly.

    Parameters
    ----------
    features : dict with keys "content" and "quality"
        Row-aligned 2-D float arrays (e.g. ResNet-50 pooled features and ARNIQA features).
        ``numpy.memmap`` inputs are streamed batch by batch.
    budget : int
        Number of rows to select.
    mos : ignored
        Q-Diverse is label-free.
    random_state : numpy.random.Generator
        Its ``SeedSequence`` is the root of the per-batch seeds: batch ``i`` uses child ``i``
        (what ``SeedSequence(seed).spawn(K)[i]`` gives), whatever process runs it. The
        ``batch_order="shuffle"`` permutation is drawn from the generator itself.
    preset : str, optional
        A dataset name from :data:`QDIVERSE_PRESETS` (``"kadid10k"``, ``"tid2013"``, ...):
        sets ``gamma``, ``energy``, ``eps``, ``n_landmarks`` and ``batch_size``.
    gamma : float in [0, 1], default=0.5
        Weight of the content distance; ``1 − gamma`` weights the quality distance. ``1``
        ignores the quality embedding, ``0`` the content embedding.
    energy : float in (0, 1], default=0.95
        Share of the landmark spectrum kept; fixes the spectral dimension ``r`` per batch.
    eps : float > 0, default=1e-6
        Ridge of the kernel submatrices, ``log det(K_S + eps·I)``; keeps every marginal gain
        at least ``eps`` so the budget is always met.
    n_landmarks : int >= 1, default=600
        Nyström landmarks per batch (``min(n_landmarks, batch rows)`` are used).
    batch_size : int >= 1 or None, default=1000
        Rows per batch (the last batch takes the remainder); ``None`` is the non-batch mode,
        one batch of all rows (memory ``O(N²)``).
    distance_norm : {"max", "median", "none"}, default="max"
        Per-batch scale of each embedding's distances before combining (inferred).
    combine : {"distance", "squared", "kernel"}, default="distance"
        ``γ·D_c + (1−γ)·D_q`` then one RBF; the same on squared distances; or
        ``γ·W_c + (1−γ)·W_q`` with one RBF per embedding (inferred).
    bandwidth : "median" or float > 0, default="median"
        RBF bandwidth σ of the affinity graph; "median" = median off-diagonal distance
        (1 when all points coincide) (inferred).
    self_loops : bool, default=True
        Keep ``W_jj = 1`` (a PSD affinity, so the energy rule is well defined) (inferred).
    laplacian : {"sym", "rw", "none"}, default="sym"
        Normalisation: eigenvectors of ``D^{-1/2} W D^{-1/2}``; those scaled by
        ``D^{-1/2}`` (random-walk Laplacian); or of ``W`` itself (inferred).
    landmarks : {"uniform", "first", "kmeans++"}, default="uniform"
        Landmark sampling within a batch: uniform without replacement (seeded), the first
        rows, or k-means++ in the affinity's feature space (inferred).
    eigen_power : float >= 0, default=0.0
        Scale embedding column ``t`` by ``λ_t ** eigen_power`` (0 = plain eigenvectors).
    drop_leading : bool, default=False
        Drop the leading (degree) eigenvector when ``r > 1``.
    row_normalize : bool, default=False
        Normalise embedding rows to unit length (Ng-Jordan-Weiss style).
    z_bandwidth : "median" or float > 0, default="median"
        Bandwidth of the RBF kernel on the spectral embedding (inferred).
    first_pick : {"lowest_index", "max_degree", "nearest_mean"}, default="lowest_index"
        The first greedy pick of a batch. All candidates tie (unit diagonal), so the default
        takes the batch's first row; the others use the largest affinity degree or the row
        nearest the embedding's mean (inferred).
    batch_order : {"contiguous", "shuffle"}, default="contiguous"
        Batches are consecutive row ranges, or ranges of a seeded permutation (inferred).
    allocation : {"largest_remainder", "sainte_lague"}, default="largest_remainder"
        How the budget is split across batches; both give the exact total (inferred).
    distance_dtype : {"float32", "float64"}, default="float32"
        Precision of the embedding distance GEMMs.
    n_jobs : int or None, default=1
        Worker processes for the batches (``-1`` = all cores). Never changes the result. Each
        call starts a fresh pool; a worker's start-up costs about as much as importing the
        caller's main module (1-2 s here, mostly torch via ``qd_lib.data``), so it pays off
        from a few dozen batches on. Workers get memory-mapped inputs as file name + rows,
        other inputs as pickled batch rows (at most ``2·n_jobs`` batches in flight).
    start_method : {"spawn", "forkserver"}, default="spawn"
        Start method of the worker processes. Scripts must guard their entry point with
        ``if __name__ == "__main__":``.
    client : object with map() and gather(), optional
        A ``dask.distributed.Client`` (or any look-alike) to run the batches on instead;
        ``client.map(func, tasks)`` then ``client.gather(futures)``. Memory-mapped inputs are
        sent as file paths, so the workers must see the same filesystem. Exclusive with
        ``n_jobs``.
    progress : bool, optional
        Show a per-batch progress bar (``None``: shown for more than one batch unless
        ``TQDM_DISABLE`` is set).

    Returns
    -------
    MethodOutput
        ``indices`` in pick order (batch by batch, greedy order within a batch); ``gains``
        the marginal gain ``g = det(K_{S+j} + εI) / det(K_S + εI)`` of each pick (NaN for
        batches taken whole because their budget equals their size); ``params`` the resolved
        options (``client`` recorded by type name); ``info`` with ``mode``, ``n_batches``,
        ``batch_sizes``, ``batch_budgets``, ``r`` (energy-rule dimension per batch, ``None``
        where nothing was computed), ``n_landmarks``, ``sigma``/``sigma_z`` (bandwidths),
        ``executor``, ``n_workers``, ``data_transport`` and ``preset_inferred``.
    """
    del mos  # label-free
    o, inferred = _resolve_options(options)
    Xc, Xq = features["content"], features["quality"]
    n = Xc.shape[0]
    gamma = o["gamma"]
    Xc_used = Xc if gamma > 0 else None
    Xq_used = Xq if gamma < 1 else None

    plan = _plan_batches(n, o["batch_size"], o["batch_order"], random_state)
    sizes = [_batch_len(rows) for rows in plan]
    budgets = allocate_budget(sizes, budget, method=o["allocation"])
    root = _root_seed_sequence(random_state)
    n_batches = len(plan)
    if n_batches == 1 and n > 20_000:
        logger.warning("Q-Diverse in non-batch mode on %d rows needs about %.1f GB "
                       "(several %d x %d float64 matrices); consider batch_size.",
                       n, 4 * 8 * n * n / 1e9, n, n)
    logger.info("Q-Diverse: %d rows in %d batch(es) of up to %d (%s), budget %d split by %s "
                "(%d to %d per batch), %d landmarks, gamma %.2f, energy %.2f",
                n, n_batches, max(sizes), o["batch_order"], budget, o["allocation"],
                int(budgets.min()), int(budgets.max()), o["n_landmarks"], gamma, o["energy"])

    n_workers = min(_resolve_n_jobs(o["n_jobs"]), n_batches)
    if o["client"] is not None:
        executor = "client"
    elif n_workers > 1:
        executor = "processes"
    else:
        executor, n_workers = "serial", 1
    if executor == "serial":
        transport = "in-process"
    else:
        refs = [_memmap_ref(X) for X in (Xc_used, Xq_used) if X is not None]
        transport = "path" if refs and all(ref is not None for ref in refs) else "array"
        if transport == "array" and any(isinstance(X, np.memmap) for X in (Xc_used, Xq_used)):
            logger.info("Q-Diverse: the memory-mapped input is not a C-contiguous shared file "
                        "mapping; sending the batches' rows to the workers instead")

    tasks = _tasks(Xc_used, Xq_used, plan, budgets, root, o, transport)
    if executor == "serial":
        results = map(_run_task, tasks)
    elif executor == "processes":
        results = _run_processes(tasks, n_workers, o["start_method"])
    else:
        results = _run_client(tasks, o["client"])

    show = o["progress"] if o["progress"] is not None else (None if n_batches > 1 else False)
    picks, gains, r_values, landmark_counts, sigmas, sigmas_z = [], [], [], [], [], []
    with progress_bar(total=n_batches, desc="Q-Diverse batches", enabled=show) as bar:
        for expected, res in enumerate(results):
            if res["index"] != expected:  # pragma: no cover - executors keep the order
                raise RuntimeError(f"batch results out of order: {res['index']} != {expected}")
            picks.append(res["indices"])
            gains.append(res["gains"])
            r_values.append(res["r"])
            landmark_counts.append(res["n_landmarks"])
            sigmas.append(res["sigma"])
            sigmas_z.append(res["sigma_z"])
            if res["r"] is not None:
                logger.info("batch %d: r=%d of %d landmarks (energy %.2f), %d of %d rows picked",
                            expected, res["r"], res["n_landmarks"], o["energy"],
                            int(budgets[expected]), sizes[expected])
            else:
                logger.info("batch %d: %d of %d rows picked without computation",
                            expected, int(budgets[expected]), sizes[expected])
            bar.update(1)

    params = {k: v for k, v in o.items() if k != "client"}
    params["client"] = None if o["client"] is None else type(o["client"]).__name__
    info = {
        "mode": "non-batch" if n_batches == 1 else "batch",
        "n_batches": n_batches,
        "batch_sizes": sizes,
        "batch_budgets": [int(m) for m in budgets],
        "r": r_values,
        "n_landmarks": landmark_counts,
        "sigma": sigmas,
        "sigma_z": sigmas_z,
        "executor": executor,
        "n_workers": n_workers,
        "data_transport": transport,
        "preset_inferred": list(inferred),
    }
    indices = np.concatenate(picks) if picks else np.empty(0, np.int64)
    all_gains = np.concatenate(gains) if gains else np.empty(0)
    return MethodOutput(indices=indices.astype(np.int64), params=params, info=info,
                        gains=all_gains)


qdiverse_selection.__signature__ = _signature()
register("qdiverse", inputs=("content", "quality"), needs_mos=False,
         stochastic=True)(qdiverse_selection)

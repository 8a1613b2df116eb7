"""The registered ``qdiverse`` selector: inputs, batches, execution, assembly of the output.

Design note ``qdiverse.md`` §1 (inputs and outputs: row-aligned content and quality embeddings
in, ``M`` distinct indices out, label-free) and §2.11 (assembly: each batch's local picks mapped
to global rows and concatenated in batch order, greedy order within a batch). The stages
themselves live in the sibling modules (see the package docstring).
"""
from __future__ import annotations

import inspect
import logging

import numpy as np

from qd_lib.selection.base import MethodOutput, register
from qd_lib.selection.methods.qdiverse.batches import (
    allocate_budget,
    batch_len,
    plan_batches,
    root_seed_sequence,
)
from qd_lib.selection.methods.qdiverse.options import QDIVERSE_DEFAULTS, resolve_options
from qd_lib.selection.methods.qdiverse.parallel import choose_executor, make_tasks, run_batches
from qd_lib.utils.progress import progress as progress_bar

logger = logging.getLogger(__name__)

__all__ = ["qdiverse_selection"]

#: Per-batch diagnostics gathered into ``info`` (one list entry per batch).
_PER_BATCH = ("r", "n_landmarks", "sigma", "sigma_z")


def _log_plan(n: int, sizes: list[int], budgets: np.ndarray, budget: int, o: dict) -> None:
    n_batches = len(sizes)
    if n_batches == 1 and n > 20_000:
        logger.warning("Q-Diverse in non-batch mode on %d rows needs about %.1f GB "
                       "(several %d x %d float64 matrices); consider batch_size.",
                       n, 4 * 8 * n * n / 1e9, n, n)
    logger.info("Q-Diverse: %d rows in %d batch(es) of up to %d (%s), budget %d split by %s "
                "(%d to %d per batch), %d landmarks, gamma %.2f, energy %.2f",
                n, n_batches, max(sizes), o["batch_order"], budget, o["allocation"],
                int(budgets.min()), int(budgets.max()), o["n_landmarks"], o["gamma"],
                o["energy"])


def _collect(results, sizes: list[int], budgets: np.ndarray, o: dict) -> dict:
    """Gather the batches' results in order: picks, gains and per-batch diagnostics."""
    n_batches = len(sizes)
    out = {"picks": [], "gains": [], **{key: [] for key in _PER_BATCH}}
    show = o["progress"] if o["progress"] is not None else (None if n_batches > 1 else False)
    with progress_bar(total=n_batches, desc="Q-Diverse batches", enabled=show) as bar:
        for expected, res in enumerate(results):
            if res["index"] != expected:  # pragma: no cover - executors keep the order
                raise RuntimeError(f"batch results out of order: {res['index']} != {expected}")
            out["picks"].append(res["indices"])
            out["gains"].append(res["gains"])
            for key in _PER_BATCH:
                out[key].append(res[key])
            if res["r"] is not None:
                logger.info("batch %d: r=%d of %d landmarks (energy %.2f), %d of %d rows picked",
                            expected, res["r"], res["n_landmarks"], o["energy"],
                            int(budgets[expected]), sizes[expected])
            else:
                logger.info("batch %d: %d of %d rows picked without computation",
                            expected, int(budgets[expected]), sizes[expected])
            bar.update(1)
    return out


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
    backend : {"numpy", "torch"}, default="numpy"
        Where the kernels run: numpy on the host, or torch on ``device``
        (:mod:`.torch_backend`). Both give the same coreset up to round-off: gains agree to
        about 1e-6 relative (float32 GEMMs over thousands of dimensions), so only candidates
        tied within that can be ordered differently.
    device : str, default="cpu"
        The torch backend's device: ``"cpu"``, ``"cuda"``, ``"cuda:<index>"`` or ``"auto"``
        (CUDA when available). A CUDA device that is not available is an error. With
        ``backend="numpy"`` only ``"cpu"`` (or ``"auto"``) is allowed. Recorded resolved.
    n_jobs : int or None, default=1
        Worker processes for the batches (``-1`` = all cores; 1 with ``backend="torch"``,
        whose batches run one after another on the device). Never changes the result. Each
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
    o, inferred = resolve_options(options)
    Xc, Xq = features["content"], features["quality"]
    n = Xc.shape[0]
    Xc_used = Xc if o["gamma"] > 0 else None
    Xq_used = Xq if o["gamma"] < 1 else None

    plan = plan_batches(n, o["batch_size"], o["batch_order"], random_state)
    sizes = [batch_len(rows) for rows in plan]
    budgets = allocate_budget(sizes, budget, method=o["allocation"])
    root = root_seed_sequence(random_state)
    _log_plan(n, sizes, budgets, budget, o)

    executor, n_workers, transport = choose_executor(o, len(plan), Xc_used, Xq_used)
    tasks = make_tasks(Xc_used, Xq_used, plan, budgets, root, o, transport)
    out = _collect(run_batches(tasks, executor, n_workers, o), sizes, budgets, o)

    params = {k: v for k, v in o.items() if k != "client"}
    params["client"] = None if o["client"] is None else type(o["client"]).__name__
    info = {"mode": "non-batch" if len(plan) == 1 else "batch", "n_batches": len(plan),
            "batch_sizes": sizes, "batch_budgets": [int(m) for m in budgets],
            **{key: out[key] for key in _PER_BATCH},
            "executor": executor, "n_workers": n_workers, "data_transport": transport,
            "preset_inferred": list(inferred)}
    indices = np.concatenate(out["picks"]) if out["picks"] else np.empty(0, np.int64)
    gains = np.concatenate(out["gains"]) if out["gains"] else np.empty(0)
    return MethodOutput(indices=indices.astype(np.int64), params=params, info=info, gains=gains)


qdiverse_selection.__signature__ = _signature()
register("qdiverse", inputs=("content", "quality"), needs_mos=False,
         stochastic=True)(qdiverse_selection)

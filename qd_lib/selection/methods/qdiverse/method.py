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


#: Conditioning options (rows already selected). They are recorded in ``params`` only when
#: given, so runs without them record exactly the parameters they always did.
CONDITIONING_OPTIONS = ("initial", "initial_everywhere")


def _check_everywhere(everywhere, initial: np.ndarray | None, n: int) -> np.ndarray:
    """``initial_everywhere`` as sorted row indices, a subset of ``initial``."""
    arr = np.asarray(everywhere)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise TypeError("The 'initial_everywhere' parameter must be a 1-D sequence of row "
                        f"indices. Got {everywhere!r:.80} instead.")
    arr = np.unique(arr.astype(np.int64))
    if arr.size and (initial is None or not np.isin(arr, initial).all()):
        raise ValueError("The 'initial_everywhere' parameter must name rows of 'initial' (rows "
                         "already selected that condition every batch). Got rows outside it.")
    if arr.size and arr.size >= n:
        raise ValueError("The 'initial_everywhere' parameter must leave rows to select from. "
                         f"Got all {n} rows.")
    return arr


def _conditioned_plan(n: int, budget: int, initial: np.ndarray, everywhere: np.ndarray,
                      o: dict, random_state) -> tuple[list, list[int], np.ndarray, list]:
    """Batches, their sizes, their new-pick budgets and local ``initial`` rows, conditioned on
    rows already selected.

    The rows of ``everywhere`` are left out of the batch plan (which is then made over the
    other rows exactly as without them) and appended to every batch as conditioning-only rows.
    Each batch's share of the whole coreset (its rows already selected plus the new picks) is
    allocated by batch size as usual; its new picks are that share less its rows already
    selected (none where those exceed it, the excess taken from the other batches in
    proportion to what they still lack).
    """
    own = initial[~np.isin(initial, everywhere)]  # in the order given
    if len(everywhere):
        batched = np.setdiff1d(np.arange(n, dtype=np.int64), everywhere)
        plan = [batched[rows] for rows in plan_batches(len(batched), o["batch_size"],
                                                       o["batch_order"], random_state)]
    else:
        plan = plan_batches(n, o["batch_size"], o["batch_order"], random_state)
    sizes = [batch_len(rows) for rows in plan]
    where = np.full(n, -1, dtype=np.int64)  # row -> batch
    for i, rows in enumerate(plan):
        where[rows] = i
    counts = np.bincount(where[own], minlength=len(plan)) if len(own) else np.zeros(
        len(plan), dtype=np.int64)
    shares = allocate_budget(sizes, int(counts.sum()) + budget, method=o["allocation"])
    lacking = np.maximum(shares - counts, 0)
    budgets = allocate_budget(lacking, budget, method=o["allocation"]) if budget else lacking * 0
    local_initial, batch_rows = [], []
    for i, rows in enumerate(plan):
        rows = np.arange(rows.start, rows.stop) if isinstance(rows, slice) else rows
        position = {int(r): k for k, r in enumerate(rows)}
        mine = [position[int(r)] for r in own if where[r] == i]
        extra = list(range(len(rows), len(rows) + len(everywhere)))
        local_initial.append(np.asarray(mine + extra, dtype=np.int64))
        batch_rows.append(np.concatenate([rows, everywhere]) if len(everywhere) else plan[i])
    return batch_rows, sizes, budgets, local_initial


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

    initial : array of int, optional
        Rows already selected (rated), in the order they were selected; the ``budget`` new
        picks are conditioned on them and never repeat one. Batches are planned as without
        them; within each batch, its rows of ``initial`` start the greedy log-det's Cholesky
        factor (the affinity graph, landmarks and spectral embedding are the batch's, as
        always). Per-batch budgets: each batch's share of the whole coreset (``len(initial)``
        + ``budget``, split by batch size with ``allocation``) less its rows already selected,
        so batches already well covered get fewer new picks. Within one batch (non-batch mode,
        or a batch holding every row of ``initial``), conditioning on a run's first picks
        continues that run exactly; in batch mode, conditioning on a run's picks at a smaller
        budget gives the picks of the run at the larger one whenever each batch's share does
        not shrink (always with ``allocation="sainte_lague"``, which is house-monotone).
    initial_everywhere : array of int, optional
        Rows of ``initial`` that belong to no batch (images already rated that are not
        candidates, e.g. from another folder): they are left out of the batch plan, which is
        made over the other rows, and added to every batch as conditioning-only rows (so
        every batch's picks are conditioned on them; each batch then computes with that many
        more rows).

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
    conditioning = {k: o.pop(k) for k in CONDITIONING_OPTIONS}
    Xc, Xq = features["content"], features["quality"]
    n = Xc.shape[0]
    Xc_used = Xc if o["gamma"] > 0 else None
    Xq_used = Xq if o["gamma"] < 1 else None

    initial = conditioning.get("initial")
    initial = None if initial is None else np.asarray(initial, dtype=np.int64)
    everywhere = conditioning.get("initial_everywhere")
    everywhere = _check_everywhere([] if everywhere is None else everywhere, initial, n)
    local_initial = None
    if initial is None or len(initial) == 0:
        plan = plan_batches(n, o["batch_size"], o["batch_order"], random_state)
        sizes = [batch_len(rows) for rows in plan]
        budgets = allocate_budget(sizes, budget, method=o["allocation"])
    else:
        plan, sizes, budgets, local_initial = _conditioned_plan(
            n, budget, initial, everywhere, o, random_state)
        if len(everywhere) > max(sizes):
            logger.warning("Q-Diverse: %d conditioning-only rows join each batch of up to %d "
                           "rows; every batch computes with them", len(everywhere), max(sizes))
    root = root_seed_sequence(random_state)
    _log_plan(n, sizes, budgets, budget, o)

    executor, n_workers, transport = choose_executor(o, len(plan), Xc_used, Xq_used)
    tasks = make_tasks(Xc_used, Xq_used, plan, budgets, root, o, transport,
                       initial=local_initial)
    out = _collect(run_batches(tasks, executor, n_workers, o), sizes, budgets, o)

    params = {k: v for k, v in o.items() if k != "client"}
    params["client"] = None if o["client"] is None else type(o["client"]).__name__
    info = {"mode": "non-batch" if len(plan) == 1 else "batch", "n_batches": len(plan),
            "batch_sizes": sizes, "batch_budgets": [int(m) for m in budgets],
            **{key: out[key] for key in _PER_BATCH},
            "executor": executor, "n_workers": n_workers, "data_transport": transport,
            "preset_inferred": list(inferred)}
    if local_initial is not None:
        params["initial"] = initial.tolist()
        params["initial_everywhere"] = everywhere.tolist()
        info["n_initial"] = len(initial)
        info["batch_initial"] = [len(li) - len(everywhere) for li in local_initial]
    indices = np.concatenate(out["picks"]) if out["picks"] else np.empty(0, np.int64)
    gains = np.concatenate(out["gains"]) if out["gains"] else np.empty(0)
    return MethodOutput(indices=indices.astype(np.int64), params=params, info=info, gains=gains)


qdiverse_selection.__signature__ = _signature()
register("qdiverse", inputs=("content", "quality"), needs_mos=False, stochastic=True,
         title="Q-Diverse")(qdiverse_selection)

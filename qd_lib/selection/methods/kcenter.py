"""k-Center Greedy (farthest-first traversal), as DeepCore runs it, in O(n) extra memory."""
from __future__ import annotations

import logging
import numbers

import numpy as np

from qd_lib.selection._backend import resolve_backend
from qd_lib.selection._kernels import (
    check_flag,
    farthest_first_loop,
    resolve_dtype,
    single_thread_blas,
    snap_to_zero,
    sq_dists_to_point,
    working_copy,
)
from qd_lib.selection.base import MethodOutput, register
from qd_lib.selection.binning import check_binning_options, mos_bins, select_per_bin
from qd_lib.utils.progress import progress as progress_bar
from qd_lib.utils.validation import check_option, check_scalar

logger = logging.getLogger(__name__)

#: How the first centre is drawn when ``first_index`` is not given.
FIRST_DRAWS = ("generator", "deepcore")


def farthest_first_pruned(W: np.ndarray, sq: np.ndarray, budget: int, first: int, *,
                          bar=None, initial=()) -> tuple[np.ndarray, np.ndarray, dict]:
    """Exact farthest-first traversal in Euclidean distance, pruned by the triangle inequality.

    Every point belongs to the cell of its nearest centre and ``m_i`` is its squared distance
    to it; ``r_c`` is the largest distance in cell ``c``. A new centre ``p`` can only move a
    point ``i`` of cell ``c`` if ``d(p, x_i) < d(c, x_i)``, and ``d(p, x_i) ≥ d(p, c) − r_c``,
    so cells with ``d(p, c) ≥ 2 r_c`` are skipped without computing any of their distances
    (Elkan's bound applied to Gonzalez's traversal). Each pick costs one GEMV against the
    centres so far plus one against the rows of the cells it can touch; on clustered data that
    is a small share of ``n``, and it never exceeds one full pass. The picks are those of the
    plain algorithm (ties to the lowest index); a cell is skipped only with a margin above the
    round-off of the Gram identity.

    Parameters
    ----------
    W : ndarray of shape (n, d)
        Working rows (centred float32/float64, see :func:`working_copy`).
    sq : ndarray of shape (n,)
        ``‖W_i‖²`` in float64.
    budget : int
        Picks to make, ``1 ≤ budget ≤ n``, the first centre included.
    first : int
        First centre.
    bar : tqdm, optional
        Advanced once per pick.
    initial : sequence of int, optional
        Centres already chosen (``initial[0] == first``): the first ``len(initial)`` picks,
        in order (:func:`~qd_lib.selection._kernels.farthest_first_loop`).

    Returns
    -------
    picks : ndarray of int64, shape (budget,)
    radii_sq : ndarray of float64, shape (budget,)
        Squared covering radius after each pick (``radii_sq[t]`` covers picks ``0..t``).
    stats : dict
        ``rows_examined``: distances computed, as a multiple of ``n`` (the plain algorithm
        computes ``budget``).
    """
    n, d = W.shape
    centres = np.empty((budget, d), dtype=W.dtype)
    csq = np.empty(budget, dtype=np.float64)
    cell_r2 = np.zeros(budget, dtype=np.float64)  # squared radius of each centre's cell
    assign = np.zeros(n, dtype=np.int64)
    lut = np.zeros(budget, dtype=bool)
    # Round-off of a squared distance from the Gram identity is about eps·(‖a‖² + ‖b‖²);
    # a cell is skipped only if the bound clears it by a few times that (as a distance).
    tol = 4.0 * float(np.sqrt(8.0 * np.finfo(W.dtype).eps * max(float(sq.max()), 1e-300)))
    m = sq_dists_to_point(W, sq, first)
    centres[0] = W[first]
    csq[0] = sq[first]
    cell_r2[0] = max(float(m.max()), 0.0)  # m[first] = 0 does not change the maximum
    examined = n

    def add_centre(t: int, p: int, m: np.ndarray) -> None:
        nonlocal examined
        wp = W[p]
        centres[t] = wp
        csq[t] = sq[p]
        dc2 = centres[:t] @ wp
        dc2 = csq[:t] + sq[p] - 2.0 * dc2
        np.maximum(dc2, 0.0, out=dc2)
        active = np.sqrt(dc2) <= 2.0 * np.sqrt(cell_r2[:t]) + tol
        cells = np.flatnonzero(active)
        idx = None
        if len(cells) < t:
            lut[cells] = True
            idx = np.flatnonzero(lut[assign])
            lut[cells] = False
            if len(idx) > n // 2:  # a gathered copy would cost more than one full pass
                idx = None
        if idx is None:
            d2 = sq_dists_to_point(W, sq, p)
            cur = m
            examined += n
        else:
            d2 = W[idx] @ wp
            d2 = sq[idx] + sq[p] - 2.0 * d2
            np.maximum(d2, 0.0, out=d2)
            snap_to_zero(d2, sq[idx], sq[p], W.dtype)
            cur = m[idx]
            examined += len(idx)
        closer = d2 < cur
        if idx is None:
            m[closer] = d2[closer]
            assign[closer] = t
        else:
            moved = idx[closer]
            m[moved] = d2[closer]
            assign[moved] = t
        assign[p] = t
        if idx is None:
            touched_assign, touched_m = assign, m
        else:
            touched_assign, touched_m = assign[idx], m[idx]
        cell_r2[cells] = 0.0
        cell_r2[t] = 0.0
        np.maximum.at(cell_r2, touched_assign, np.maximum(touched_m, 0.0))

    picks, radii = farthest_first_loop(m, budget, first, add_centre, bar=bar, initial=initial)
    return picks, radii, {"rows_examined": round(examined / n, 3)}


def _kcenter_rows(X: np.ndarray, budget: int, first: int, dtype, bar, device=None,
                  initial=()) -> tuple[np.ndarray, np.ndarray, dict]:
    if device is not None:  # backend="torch" (no initial centres: checked by the caller)
        from qd_lib.selection._torch_kernels import kcenter_torch

        return kcenter_torch(X, budget, first, dtype, device=device, bar=bar)
    W, sq = working_copy(X, dtype)
    with single_thread_blas():  # many small GEMVs: threads only add synchronisation
        picks, radii_sq, stats = farthest_first_pruned(W, sq, budget, first, bar=bar,
                                                       initial=initial)
    return picks, np.sqrt(radii_sq), stats


@register("kcenter", inputs=("embedding",), needs_mos=False, stochastic=True,
          title="k-Center Greedy")
def kcenter_selection(features: dict[str, np.ndarray], budget: int, *, mos=None,
                      random_state: np.random.Generator, first_index: int | None = None,
                      first_draw: str = "generator", dtype: str = "float32",
                      balance: bool = False, n_bins: int = 5,
                      binning: str = "equal_width", progress: bool | None = None,
                      backend: str = "numpy", device: str = "cpu",
                      initial=None) -> MethodOutput:
    """k-Center Greedy: farthest-first traversal in Euclidean distance (DeepCore's procedure).

    Reference: Sener & Savarese, "Active Learning for Convolutional Neural Networks: A Core-Set
    Approach", ICLR 2018 (greedy 2-approximation of the minimax facility-location problem), as
    implemented in DeepCore (``methods/kcentergreedy.py``, Guo, Zhao & Bai 2022), which produced
    the paper's k-Center numbers. Design note ``baselines.md`` §5.

    Procedure: a random first centre (counted in the budget), then repeatedly the point whose
    distance to its nearest centre is largest (lowest index on ties; when only exact duplicates
    remain, the lowest-index unpicked point). ``gains[t]`` is the covering radius after pick
    ``t`` (non-increasing); ``info["covering_radius"]`` is the final one.

    IQA adaptation: none needed; the method is label-free and runs on the LIQE embedding.
    ``balance=True`` runs it separately inside MOS bins (:mod:`qd_lib.selection.binning`) with
    largest-remainder quotas, concatenated in bin order.

    Deviations from DeepCore's code, and why:

    * Pick order is kept (DeepCore returns indices sorted from a boolean mask): greedy picks are
      prefix-nested, so smaller budgets are prefixes.
    * One running-minimum vector instead of a preallocated ``(budget−1) × n`` distance matrix
      filled from boolean-mask gathers of the unselected rows; a new centre's distances are
      computed only for the cells (points grouped by nearest centre) that the triangle
      inequality cannot rule out (see :func:`farthest_first_pruned`). Same picks,
      ``O(n + budget·d)`` memory.
    * The first centre is drawn from the seeded ``Generator`` (DeepCore reseeds numpy's global
      ``RandomState`` and draws ``randint(0, n)``); pass ``first_index`` to fix it, or
      ``first_draw="deepcore"`` to draw it from DeepCore's legacy stream (without touching
      numpy's global state), which reproduces DeepCore's first centre bit for bit.
    * Squared distances are compared (no clamp at ``1e-12`` before a square root). Rows are
      centred before the Gram identity, and squared distances below its round-off
      (``4·eps·(‖a‖² + ‖b‖²)``) count as 0, so exact duplicates tie at 0 and the lowest index
      wins instead of round-off.
    * Budgets are exact counts (the caller's floor rule), not ``round(n·fraction)``;
      balanced quotas use largest remainder instead of ``round(f·n_c)`` per class (which can
      miss the total), and every bin draws its own first centre from the seeded stream
      (``first_draw="deepcore"``: each bin restarts the legacy stream from the seed, as
      DeepCore restarts it for every class).
    * DeepCore's ``already_selected`` is the ``initial`` option (below).

    Options
    -------
    first_index : int, optional
        First centre; default: drawn uniformly from the seed. Not allowed with ``balance``.
    first_draw : {"generator", "deepcore"}, default="generator"
        How the first centre is drawn: from the seeded ``numpy.random.Generator``, or as
        DeepCore does, ``numpy.random.RandomState(seed).randint(0, n)`` (needs an integer
        ``seed`` in ``[0, 2**32 − 1]``).
    dtype : {"float32", "float64"}, default="float32"
        Precision of the inner products (norms, sums and comparisons are float64). float32 is
        about twice as fast (DeepCore computes in float32 too); with it, rows closer than about
        ``1e-3·‖x − μ‖`` count as duplicates. Use float64 for near-duplicate-heavy data.
    balance : bool, default=False
        Run inside MOS bins with largest-remainder quotas (needs ``mos``); ``n_bins``
        (default 5) and ``binning`` (``"equal_width"``, the default, or ``"quantile"``) choose
        the bins, as in :func:`~qd_lib.selection.binning.mos_bins`.
    progress : bool, optional
        Show a progress bar (default: tqdm decides, honouring ``TQDM_DISABLE``).
    backend : {"numpy", "torch"}, default="numpy"
        Where the distance updates run: numpy on the host (triangle-inequality pruning), or
        torch on ``device`` (one GEMV per pick; same arithmetic, so the same picks up to the
        tie rule of :mod:`qd_lib.selection._torch_kernels`; ``info["near_ties"]`` counts the
        steps its round-off bound cannot certify).
    device : str, default="cpu"
        ``"cpu"``, ``"cuda"``, ``"cuda:<index>"`` or ``"auto"`` with ``backend="torch"``.
    initial : array of int, optional
        Rows already selected (rated), in the order they were selected: they are the first
        centres, no centre is drawn, and the traversal continues from them (``budget`` new
        centres). Conditioning on a run's first picks continues that run exactly.
        ``gains`` are the covering radii of the initial and new centres together. Not with
        ``balance``, ``first_index`` or ``backend="torch"``.
    """
    X = features["embedding"]
    n = X.shape[0]
    torch_device = resolve_backend(backend, device, "kcenter")
    check_option(first_draw, "first_draw", FIRST_DRAWS)
    check_option(dtype, "dtype", ("float32", "float64"))
    check_flag(balance, "balance")
    n_bins, binning = check_binning_options(n_bins, binning)
    if first_index is not None:
        check_scalar(first_index, "first_index", numbers.Integral, min_val=0, max_val=n - 1)
        if balance:
            raise ValueError("The 'first_index' parameter cannot be combined with balance=True.")
        if first_draw != "generator":
            raise ValueError("The 'first_index' parameter of kcenter fixes the first centre, so "
                             f"the 'first_draw' parameter must be 'generator'. Got "
                             f"{first_draw!r} instead.")
    draw = _deepcore_draw(random_state) if first_draw == "deepcore" else (
        lambda size: int(random_state.integers(size)))
    params = {"first_index": None if first_index is None else int(first_index),
              "first_draw": first_draw, "dtype": dtype, "balance": balance, "n_bins": n_bins,
              "binning": binning, "backend": backend, "device": torch_device or "cpu"}
    work_dtype = resolve_dtype(dtype)
    if initial is not None:
        if balance or first_index is not None:
            raise ValueError("The 'initial' parameter of kcenter fixes the first centres, so it "
                             "cannot be combined with balance=True or 'first_index'.")
        if torch_device is not None:
            raise ValueError("The 'initial' parameter of kcenter runs on backend='numpy' only. "
                             f"Got backend={backend!r}.")
        return _kcenter_from(X, budget, np.asarray(initial, dtype=np.int64), work_dtype,
                             progress, params)
    info: dict = {}
    with progress_bar(total=budget, desc="k-center", enabled=progress) as bar:
        if not balance:
            if first_index is None:
                first = draw(n)
                logger.info("k-center: first centre %d drawn from the seed (%s)", first,
                            first_draw)
            else:
                first = int(first_index)
            picks, radii, stats = _kcenter_rows(X, budget, first, work_dtype, bar, torch_device)
            info.update(first_index=first, covering_radius=float(radii[-1]), **stats)
            return MethodOutput(indices=picks, params=params, info=info, gains=radii)
        if mos is None:
            raise ValueError("The 'mos' parameter is required when balance=True (kcenter).")
        bins = mos_bins(mos, n_bins=n_bins, scheme=binning)

        def kcenter_bin(c, rows, quota):
            first = draw(len(rows))
            picks, radii, _ = _kcenter_rows(X[rows], quota, first, work_dtype, bar, torch_device)
            return picks, radii, (int(rows[first]), float(radii[-1]))

        merged = select_per_bin(bins, budget, kcenter_bin)
        per_bin = [(None, None) if e is None else e for e in merged.extras]
        info.update(mos_bins=bins.to_info(), quotas=merged.quotas.tolist(),
                    first_index=[f for f, _ in per_bin],
                    covering_radius_per_bin=[r for _, r in per_bin])
        return MethodOutput(indices=merged.indices, params=params, info=info,
                            gains=merged.gains)


def _kcenter_from(X: np.ndarray, budget: int, initial: np.ndarray, work_dtype, progress,
                  params: dict) -> MethodOutput:
    """k-Center continued from the centres ``initial`` (already selected): ``budget`` more."""
    s = len(initial)
    with progress_bar(total=budget, desc="k-center", enabled=progress) as bar:
        picks, radii, stats = _kcenter_rows(X, s + budget, int(initial[0]), work_dtype, bar,
                                            initial=initial)
    info = {"n_initial": s, "covering_radius": float(radii[-1]), **stats}
    return MethodOutput(indices=picks[s:], params={**params, "initial": initial.tolist()},
                        info=info, gains=radii[s:])


def _deepcore_draw(random_state: np.random.Generator):
    """``size -> RandomState(seed).randint(0, size)``: DeepCore's first-centre draw.

    DeepCore calls ``np.random.seed(seed)`` and then ``np.random.randint(0, n)``; a private
    ``RandomState`` gives the same number without touching numpy's global state. The seed is
    the integer that :func:`~qd_lib.selection.select` seeded ``random_state`` with.
    """
    seq = getattr(random_state.bit_generator, "seed_seq", None)
    seed = getattr(seq, "entropy", None)
    if not isinstance(seed, int) or seq.spawn_key or not 0 <= seed < 2**32:
        raise ValueError("The 'seed' parameter of kcenter must be an int in [0, 2**32 - 1] "
                         "with first_draw='deepcore' (DeepCore seeds numpy's legacy "
                         f"RandomState with it). Got a generator seeded with {seed!r} instead "
                         "(seed=None seeds it with fresh entropy).")

    def draw(size: int) -> int:
        return int(np.random.RandomState(seed).randint(0, size))

    return draw

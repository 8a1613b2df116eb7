"""Herding: greedy mean matching (Chen et al.) or DeepCore's argmax variant."""
from __future__ import annotations

import logging

import numpy as np

from qd_lib.selection._backend import resolve_backend
from qd_lib.selection._kernels import (
    check_flag,
    column_mean,
    dot_error_bound,
    gram_chunks,
    resolve_dtype,
    single_thread_blas,
    working_copy,
)
from qd_lib.selection.base import MethodOutput, register
from qd_lib.selection.binning import check_binning_options, mos_bins, select_per_bin
from qd_lib.utils.progress import progress as progress_bar
from qd_lib.utils.validation import check_option

logger = logging.getLogger(__name__)

HERDING_VARIANTS = ("classic", "deepcore")

_MIN_BLOCK, _MAX_BLOCK = 8, 256
_MIN_CANDIDATES = 256
_PLAIN_STRETCH, _MAX_PLAIN_STRETCH = 64, 1024


def herding_greedy(W: np.ndarray, sq: np.ndarray, budget: int, *, farthest: bool = False,
                   exact_rows=None, bar=None, initial=()) -> tuple[np.ndarray, np.ndarray, dict]:
    """Exact greedy herding: scores screened in ``W``'s precision, decided in float64.

    With ``W`` centred on the data mean ``μ`` and ``S_t`` the sum of the (centred) picks, the
    herding residual is ``r_t − x_i = −(S_t + w_i)`` and

        ``‖r_t − x_i‖² = ‖S_t‖² + f_i(t)``,   ``f_i(t) = ‖w_i‖² + 2⟨S_t, w_i⟩``.

    The classic rule picks ``argmin f`` among unpicked rows, DeepCore's ``argmax f``. The
    reference is ``f`` in float64: ``S_t`` summed from the float64 rows, ``⟨S_t, w_i⟩`` from
    them, ties to the lowest index. Screened scores are recomputed from ``S_t`` at every pass
    over the rows (not carried from pick to pick), so round-off cannot accumulate.

    Screening: ``⟨S_t, w_i⟩`` for all rows comes from one product in ``W``'s dtype, whose
    round-off is at most ``ε_t = c‖S_t‖ max‖w‖`` (:func:`~qd_lib.selection._kernels.
    dot_error_bound`). Every row whose screened score lies within ``2ε_t`` of the best could
    be the true winner; only those are evaluated in float64 (usually the winner alone), so
    the pick equals the float64 greedy's although the pass over the rows is float32.

    Blocks: where picks are predictable (DeepCore's rule), ``k`` picks are proposed from the
    few hundred best rows and checked at once: one product of ``[S_t; w_{p_1} … w_{p_k}]``
    with all rows gives, by cumulative sums, every row's screened score at every step of the
    block (the bound grows with ``‖S_t‖ + Σ‖w_p‖``); the first step whose float64 winner
    differs from the proposal ends the block with that winner as its pick. Block lengths
    adapt (doubling after a clean block); where proposals keep failing (classic herding on
    clustered data reshuffles its scores at every pick) it takes plain steps, one pass per
    pick, for a stretch that doubles while blocks keep failing.

    Parameters
    ----------
    W : ndarray of shape (n, d)
        Centred working rows, float32 or float64 (see
        :func:`~qd_lib.selection._kernels.working_copy`).
    sq : ndarray of shape (n,)
        ``‖w_i‖²`` of the float64 rows.
    budget : int
        Number of picks, ``1 ≤ budget ≤ n``.
    farthest : bool, default=False
        ``True`` for DeepCore's argmax rule.
    exact_rows : callable, optional
        ``exact_rows(idx)`` returns the float64 centred rows ``idx`` (default: ``W[idx]`` in
        float64, exact when ``W`` is float64).
    bar : tqdm, optional
        Advanced once per accepted pick.
    initial : sequence of int, optional
        Rows already selected: herding starts from their sum ``S_0`` (added in order, as the
        picks are), never picks them, and makes ``budget`` new picks. Conditioning on a run's
        first picks continues that run exactly.

    Returns
    -------
    picks : ndarray of int64, shape (budget,)
    discrepancy : ndarray of float64, shape (budget,)
        ``‖mean(initial + picks[:t+1]) − μ‖`` after each pick.
    stats : dict
        ``blocks`` checked, ``corrections`` (blocks cut short by the check),
        ``plain_steps`` (picks made with one pass each) and ``exact_checks`` (decisions the
        screening left to float64).
    """
    n, d = W.shape
    if exact_rows is None:
        def exact_rows(idx):
            return np.asarray(W[idx], dtype=np.float64)
    sign = -1.0 if farthest else 1.0  # minimise g = sign·f
    c = dot_error_bound(W.dtype, d)
    w_max = float(np.sqrt(sq.max()))
    slack = 32.0 * 2.0 ** -53 * float(sq.max())

    def err(R):  # bound on |screened h − float64 h| for query rows whose norms sum to R
        return c * w_max * R + slack

    # Screening works on h = g/2 = sign·‖w‖²/2 + ⟨sign·S, w⟩: a product with sign·S plus half.
    half = 0.5 * sign * sq  # +inf marks picked rows
    h_est = half.copy()  # recent screened scores: rank the rows proposals come from
    S = np.zeros(d, dtype=np.float64)
    t0 = len(initial)  # rows already selected: the start state, as if picked before
    for q in initial:
        np.add(S, exact_rows([q])[0], out=S)
        half[q] = h_est[q] = np.inf
    picks = np.empty(budget, dtype=np.int64)
    disc = np.empty(budget, dtype=np.float64)
    stats = {"blocks": 0, "corrections": 0, "plain_steps": 0, "exact_checks": 0}
    t = 0
    k = 2 * _MIN_BLOCK
    plain_left, stretch = 0, _PLAIN_STRETCH

    def decide(cand: np.ndarray, S_now: np.ndarray) -> int:
        """The float64 winner among ``cand`` (ascending, so ties go to the lowest index)."""
        if len(cand) == 1:
            return int(cand[0])
        stats["exact_checks"] += 1
        vals = sign * (sq[cand] + 2.0 * np.einsum("ij,j->i", exact_rows(cand), S_now))
        return int(cand[np.argmin(vals)])

    def accept(q: int, row: np.ndarray) -> None:
        nonlocal t
        np.add(S, row, out=S)
        half[q] = h_est[q] = np.inf
        picks[t] = q
        t += 1
        disc[t - 1] = float(np.sqrt(S @ S)) / (t0 + t)
        if bar is not None:
            bar.update(1)

    while t < budget:
        if plain_left > 0:
            h = (W @ (sign * S).astype(W.dtype)).astype(np.float64)
            h += half
            tol = 2.0 * err(float(np.sqrt(S @ S)))
            q = decide(np.flatnonzero(h <= h.min() + tol), S)
            h_est = h
            accept(q, exact_rows([q])[0])
            plain_left -= 1
            stats["plain_steps"] += 1
            continue
        k = min(k, budget - t)
        avail = n - t0 - t
        L = min(avail, max(4 * k, _MIN_CANDIDATES))
        if L >= avail:
            pool = np.flatnonzero(np.isfinite(half))
        else:
            pool = np.sort(np.argpartition(h_est, L - 1)[:L])
        # Proposals: the greedy restricted to the pool, from float64 scores (‖S‖ can be large)
        # moved by the pool's Gram matrix in the working precision.
        hp = half[pool] + sign * np.einsum("ij,j->i", exact_rows(pool), S)
        Wp = W[pool]
        gram = Wp @ Wp.T
        chosen: list[int] = []
        for _ in range(k):
            j = int(np.argmin(hp))
            chosen.append(j)
            hp[j] = np.inf
            hp += sign * gram[j]
        spec = pool[chosen]
        spec_rows = exact_rows(spec)
        accepted = _verify_block(W, half, h_est, S, spec_rows, spec, sign, err, decide)
        stats["blocks"] += 1
        clean = len(accepted) == len(spec) and accepted[-1] == spec[-1]
        for ell, q in enumerate(accepted):
            accept(q, spec_rows[ell] if q == spec[ell] else exact_rows([q])[0])
        h_est[spec[len(accepted):]] = -np.inf  # keep rejected proposals in view
        if clean:
            k = min(_MAX_BLOCK, 2 * k)
            stretch = _PLAIN_STRETCH
        else:
            stats["corrections"] += 1
            k = max(_MIN_BLOCK, 2 * len(accepted))
            if len(accepted) < _MIN_BLOCK:
                # Proposals are poor here: a block costs more than the passes it saves.
                plain_left = stretch
                stretch = min(2 * stretch, _MAX_PLAIN_STRETCH)
    return picks, disc, stats


def _verify_block(W, half, h_est, S, spec_rows, spec, sign, err, decide) -> list[int]:
    """The longest prefix of ``spec`` that the float64 greedy picks, plus its correction.

    ``half`` holds ``sign·‖w_i‖²/2`` (``+inf`` for picked rows), ``S`` the float64 sum of the
    picks so far and ``spec_rows`` the float64 rows of the proposals. Returns ``spec[:j] +
    [float64 winner at step j]`` for the first step ``j`` where they differ, or all of
    ``spec``. Writes the screened scores after the whole block into ``h_est``.
    """
    k = len(spec)
    Q = sign * np.vstack([S, spec_rows])
    # R[ℓ]: total norm of the query rows summed into step ℓ's scores (bounds their round-off)
    R = np.sqrt(S @ S) + np.concatenate(
        [[0.0], np.cumsum(np.sqrt(np.einsum("ij,ij->i", spec_rows, spec_rows)))])
    tol = 2.0 * err(R[:k])
    best = np.full(k, np.inf)
    hits_step, hits_row, hits_val = [], [], []
    where = {int(p): ell for ell, p in enumerate(spec)}
    for start, stop, G in gram_chunks(W, Q):
        gone = sorted((where[p], p - start) for p in where if start <= p < stop)
        h = np.add(G[0], half[start:stop], dtype=np.float64)  # h after 0 proposals
        for ell in range(k):
            while gone and gone[0][0] < ell:  # a proposal is unavailable after its step
                h[gone.pop(0)[1]] = np.inf
            best[ell] = min(best[ell], h.min())
            cand = np.flatnonzero(h <= best[ell] + tol[ell])  # superset of the final set
            hits_step.append(np.full(len(cand), ell))
            hits_row.append(cand + start)
            hits_val.append(h[cand])
            h += G[ell + 1]
        for _, col in gone:
            h[col] = np.inf
        h_est[start:stop] = h
    r, i, v = (np.concatenate(a) for a in (hits_step, hits_row, hits_val))
    keep = v <= best[r] + tol[r]
    r, i = r[keep], i[keep]
    order = np.lexsort((i, r))
    r, i = r[order], i[order]
    bounds = np.searchsorted(r, np.arange(k + 1))
    S_now = S.copy()
    for ell in range(k):
        cand = i[bounds[ell]:bounds[ell + 1]]
        q = int(spec[ell]) if len(cand) == 1 and cand[0] == spec[ell] else decide(cand, S_now)
        if q != spec[ell]:
            return spec[:ell].tolist() + [q]
        S_now += spec_rows[ell]
    return spec.tolist()


def _herd_rows(X, budget, dtype, farthest, bar, device=None, initial=()):
    if device is not None:  # backend="torch" (no initial rows: checked by the caller)
        from qd_lib.selection._torch_kernels import herding_torch

        return herding_torch(X, budget, dtype, farthest=farthest, device=device, bar=bar)
    mean = column_mean(X)
    W, sq = working_copy(X, dtype, mean=mean, exact_norms=True)

    def exact_rows(idx):
        return np.asarray(X[np.asarray(idx)], dtype=np.float64) - mean

    with single_thread_blas():
        return herding_greedy(W, sq, budget, farthest=farthest, exact_rows=exact_rows, bar=bar,
                              initial=initial)


@register("herding", inputs=("embedding",), needs_mos=False, stochastic=False,
          title="Herding")
def herding_selection(features: dict[str, np.ndarray], budget: int, *, mos=None,
                      random_state: np.random.Generator, variant: str = "classic",
                      dtype: str = "float32", balance: bool = False, n_bins: int = 5,
                      binning: str = "equal_width", progress: bool | None = None,
                      backend: str = "numpy", device: str = "cpu",
                      initial=None) -> MethodOutput:
    """Herding: greedily match the coreset mean to the data mean (or DeepCore's argmax rule).

    References: Welling, "Herding dynamical weights to learn", ICML 2009; Chen, Welling &
    Smola, "Super-samples from kernel herding", UAI 2010 (``variant="classic"``); DeepCore
    ``methods/herding.py`` (Guo, Zhao & Bai 2022), which produced the paper's Herding numbers
    (``variant="deepcore"``). Design note ``baselines.md`` §4, decision 10.

    With ``μ`` the data mean and ``S_t`` the sum of the first ``t`` picks, both variants form the
    residual ``r_t = (t + 1)μ − S_t``:

    * ``"classic"`` picks ``argmin ‖r_t − x_i‖`` over unpicked rows, i.e. the row that brings
      ``mean(S ∪ {x})`` closest to ``μ``; the first pick is the row nearest the mean.
    * ``"deepcore"`` picks ``argmax ‖r_t − x_i‖``, as DeepCore's code does: the first pick is
      the row farthest from the mean and the picks then drift to one side of the cloud (they do
      not match the mean; the paper's Herding rows reflect this behaviour).

    ``gains[t]`` is ``‖mean(first t + 1 picks) − μ‖``. Deterministic: the seed is ignored.

    IQA adaptation: none needed (label-free, on the LIQE embedding). ``balance=True`` herds
    inside each MOS bin toward that bin's mean, with largest-remainder quotas, concatenated in
    bin order (DeepCore's ``balance`` with classes replaced by MOS bins).

    Deviations from DeepCore's code, and why:

    * Pick order is kept (DeepCore returns sorted indices from a boolean mask).
    * Scores ``‖x_i − μ‖² + 2⟨S_t − tμ, x_i − μ⟩`` are screened with one float32 product per
      pass instead of re-summing the selected rows and gathering the unselected ones at every
      step; rows the screening cannot separate by its proven round-off bound are compared in
      float64, and predictable stretches are checked in blocks (see :func:`herding_greedy`).
      The picks are those of the float64 greedy, whatever ``dtype``.
    * Squared distances are compared (DeepCore clamps at ``1e-12`` and takes square roots; the
      argmax/argmin is unchanged). Rows are centred before the inner products, and decisions
      are made in float64 (DeepCore: float32 throughout, so its near-ties can go either way).
    * Budgets are exact counts from the caller (DeepCore: ``round(n·fraction)``, clipped to
      ``n``); balanced quotas use largest remainder, not ``round(f·n_c)`` per class.
    * ``"classic"`` is the default (decision 10) although DeepCore implements only the argmax.

    Options
    -------
    variant : {"classic", "deepcore"}, default="classic"
    dtype : {"float32", "float64"}, default="float32"
        Precision of the screening passes; decisions are float64 either way (float32 reads
        half the memory per pass, so it is faster).
    balance : bool, default=False
        Herd inside MOS bins, each toward its own mean (needs ``mos``). ``n_bins`` (default 5)
        and ``binning`` (``"equal_width"``, the default, or ``"quantile"``) choose the bins,
        as in :func:`~qd_lib.selection.binning.mos_bins`.
    progress : bool, optional
        Show a progress bar (default: tqdm decides, honouring ``TQDM_DISABLE``).
    backend : {"numpy", "torch"}, default="numpy"
        Where the score updates run: numpy on the host, or torch on ``device`` (one screening
        pass per pick, decisions in float64: the same float64-greedy picks, see
        :mod:`qd_lib.selection._torch_kernels`).
    device : str, default="cpu"
        ``"cpu"``, ``"cuda"``, ``"cuda:<index>"`` or ``"auto"`` with ``backend="torch"``.
    initial : array of int, optional
        Rows already selected (rated), in the order they were selected: herding starts from
        their sum, as if it had picked them, and makes ``budget`` new picks toward the mean of
        all rows (see :func:`herding_greedy`); ``gains`` then measure the initial and new
        picks together. Not with ``balance`` or ``backend="torch"``.
    """
    X = features["embedding"]
    check_option(variant, "variant", HERDING_VARIANTS)
    torch_device = resolve_backend(backend, device, "herding")
    check_option(dtype, "dtype", ("float32", "float64"))
    check_flag(balance, "balance")
    n_bins, binning = check_binning_options(n_bins, binning)
    params = {"variant": variant, "dtype": dtype, "balance": balance, "n_bins": n_bins,
              "binning": binning, "backend": backend, "device": torch_device or "cpu"}
    farthest = variant == "deepcore"
    work_dtype = resolve_dtype(dtype)
    if initial is not None:
        if balance:
            raise ValueError("The 'initial' parameter of herding cannot be combined with "
                             "balance=True.")
        if torch_device is not None:
            raise ValueError("The 'initial' parameter of herding runs on backend='numpy' only. "
                             f"Got backend={backend!r}.")
        initial = np.asarray(initial, dtype=np.int64)
        params["initial"] = initial.tolist()
    with progress_bar(total=budget, desc=f"herding ({variant})", enabled=progress) as bar:
        if not balance:
            picks, disc, stats = _herd_rows(X, budget, work_dtype, farthest, bar, torch_device,
                                            initial=() if initial is None else initial)
            logger.debug("herding (%s): %s", variant, stats)
            info = {"mean_discrepancy": float(disc[-1]), **stats}
            if initial is not None:
                info["n_initial"] = len(initial)
            return MethodOutput(indices=picks, params=params, info=info, gains=disc)
        if mos is None:
            raise ValueError("The 'mos' parameter is required when balance=True (herding).")
        bins = mos_bins(mos, n_bins=n_bins, scheme=binning)

        def herd_bin(c, rows, quota):
            local, disc, _ = _herd_rows(X[rows], quota, work_dtype, farthest, bar, torch_device)
            return local, disc, None

        merged = select_per_bin(bins, budget, herd_bin)
        info = {"mos_bins": bins.to_info(), "quotas": merged.quotas.tolist()}
        return MethodOutput(indices=merged.indices, params=params, info=info,
                            gains=merged.gains)

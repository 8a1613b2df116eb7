"""Herding: greedy mean matching (Chen et al.) or DeepCore's argmax variant."""
from __future__ import annotations

import logging

import numpy as np

from qd_lib.selection._kernels import (
    check_flag,
    gram_rows_chunks,
    resolve_dtype,
    single_thread_blas,
    working_copy,
)
from qd_lib.selection.base import MethodOutput, register
from qd_lib.selection.binning import check_binning_options, mos_bins, split_budget
from qd_lib.utils.progress import progress as progress_bar
from qd_lib.utils.validation import check_option

logger = logging.getLogger(__name__)

HERDING_VARIANTS = ("classic", "deepcore")

_MIN_BLOCK, _MAX_BLOCK = 8, 256
_MIN_CANDIDATES = 256
_PLAIN_STRETCH = 64


def herding_greedy(W: np.ndarray, sq: np.ndarray, budget: int, *, farthest: bool = False,
                   bar=None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Greedy herding on centred rows, evaluated in verified blocks.

    With ``W`` centred on the data mean ``μ`` and ``S̃_t`` the sum of the centred picks, the
    herding residual is ``r_t − x_i = −(S̃_t + w_i)`` and

        ``‖r_t − x_i‖² = ‖S̃_t‖² + f_i(t)``,   ``f_i(t) = ‖w_i‖² + 2⟨S̃_t, w_i⟩``.

    The classic rule picks ``argmin f`` among unpicked rows, DeepCore's ``argmax f``; after a
    pick ``q`` every score moves by ``2⟨w_q, w_i⟩``. Rather than one GEMV over all rows per pick
    (memory-bound), a block of ``k`` picks is first proposed from the best few hundred
    candidates (exact updates on those rows only), then checked against all rows at once: one
    GEMM gives the Gram rows of the proposed picks, their cumulative sums give every row's
    exact score at every step of the block, and the first step whose true best row differs from
    the proposal ends the block there, with the true best row as that step's pick. The output is
    therefore the plain greedy sequence (ties to the lowest index); the block length adapts
    (doubling after a clean block, shrinking after a correction). Where proposals keep failing
    (classic herding on data whose scores reshuffle at every pick), it steps with one exact
    GEMV per pick for a stretch before trying blocks again. DeepCore's argmax rule is stable
    and runs almost entirely in blocks; the classic rule is mostly GEMV-bound.

    Parameters
    ----------
    W : ndarray of shape (n, d)
        Centred working rows (see :func:`~qd_lib.selection._kernels.working_copy`).
    sq : ndarray of shape (n,)
        ``‖W_i‖²`` in float64.
    budget : int
        Number of picks, ``1 ≤ budget ≤ n``.
    farthest : bool, default=False
        ``True`` for DeepCore's argmax rule.
    bar : tqdm, optional
        Advanced once per accepted pick.

    Returns
    -------
    picks : ndarray of int64, shape (budget,)
    discrepancy : ndarray of float64, shape (budget,)
        ``‖mean(picks[:t+1]) − μ‖`` after each pick.
    stats : dict
        ``blocks`` checked, ``corrections`` (blocks cut short by the check) and
        ``plain_steps`` (picks made with one GEMV each, where blocks did not pay).
    """
    n, d = W.shape
    sign = -1.0 if farthest else 1.0  # minimise g = sign·f
    g = sign * sq
    picks = np.empty(budget, dtype=np.int64)
    disc = np.empty(budget, dtype=np.float64)
    S = np.zeros(d, dtype=np.float64)
    t = 0
    k = 2 * _MIN_BLOCK
    blocks = corrections = plain_steps = 0
    plain_left = 0  # steps to run one GEMV at a time before trying a block again

    def accept(q: int) -> None:
        nonlocal t
        np.add(S, W[q], out=S)
        picks[t] = q
        t += 1
        disc[t - 1] = float(np.sqrt(S @ S)) / t

    while t < budget:
        if plain_left > 0:
            # Exact step: the argmin of the exact scores, then one GEMV over all rows.
            q = int(np.argmin(g))
            accept(q)
            if t < budget:
                g += (2.0 * sign) * (W @ W[q])
            g[q] = np.inf
            plain_left -= 1
            plain_steps += 1
            if bar is not None:
                bar.update(1)
            continue
        k = min(k, budget - t)
        avail = n - t
        L = min(avail, max(4 * k, _MIN_CANDIDATES))
        if L >= avail:
            cand = np.flatnonzero(np.isfinite(g))
        else:
            cand = np.sort(np.argpartition(g, L - 1)[:L])
        Wc = W[cand]
        gc = g[cand]
        spec: list[int] = []
        for _ in range(k):
            j = int(np.argmin(gc))
            if not np.isfinite(gc[j]):
                break
            q = int(cand[j])
            spec.append(q)
            gc[j] = np.inf
            gc += (2.0 * sign) * (Wc @ W[q])
        accepted = _verify_block(W, g, np.asarray(spec, dtype=np.int64), sign)
        blocks += 1
        if len(accepted) < len(spec) or accepted[-1] != spec[len(accepted) - 1]:
            corrections += 1
            k = max(_MIN_BLOCK, 2 * len(accepted))
            if len(accepted) < _MIN_BLOCK:
                # Proposals are poor here (scores reshuffle at every pick): a block costs more
                # than the GEMVs it saves, so step plainly for a while.
                plain_left = _PLAIN_STRETCH
        else:
            k = min(_MAX_BLOCK, 2 * k)
        acc = np.asarray(accepted, dtype=np.int64)
        v = W[acc].sum(axis=0, dtype=np.float64)
        g += (2.0 * sign) * (W @ v.astype(W.dtype, copy=False))
        g[acc] = np.inf
        for q in acc:
            accept(int(q))
        if bar is not None:
            bar.update(len(acc))
    return picks, disc, {"blocks": blocks, "corrections": corrections,
                         "plain_steps": plain_steps}


def _verify_block(W: np.ndarray, g: np.ndarray, spec: np.ndarray, sign: float) -> list[int]:
    """The longest prefix of ``spec`` that the exact greedy would pick, plus its correction.

    ``g`` holds the exact (signed) scores before the block, ``+inf`` for picked rows. Returns
    ``spec[:j] + [true pick at step j]`` for the first step ``j`` where they differ, or all of
    ``spec``.
    """
    s = len(spec)
    best_val = np.full(s, np.inf)
    best_idx = np.full(s, -1, dtype=np.int64)
    steps = np.arange(s)
    for start, stop, G in gram_rows_chunks(W, spec):
        F = np.empty((s, stop - start), dtype=np.float64)
        F[0] = g[start:stop]
        if s > 1:
            np.cumsum(G[:-1], axis=0, out=F[1:])
            F[1:] *= 2.0 * sign
            F[1:] += g[start:stop]
        inside = np.flatnonzero((spec >= start) & (spec < stop))
        for ell in inside:  # a proposed pick is unavailable after its own step
            F[ell + 1:, spec[ell] - start] = np.inf
        local = F.argmin(axis=1)
        val = F[steps, local]
        better = val < best_val  # strict: earlier chunks (lower indices) win ties
        best_val[better] = val[better]
        best_idx[better] = local[better] + start
    differ = np.flatnonzero(best_idx != spec)
    if differ.size == 0:
        return spec.tolist()
    j = int(differ[0])
    return spec[:j].tolist() + [int(best_idx[j])]


def _herd_rows(X, budget, dtype, farthest, bar):
    W, sq = working_copy(X, dtype)
    with single_thread_blas():
        return herding_greedy(W, sq, budget, farthest=farthest, bar=bar)


@register("herding", inputs=("embedding",), needs_mos=False, stochastic=False)
def herding_selection(features: dict[str, np.ndarray], budget: int, *, mos=None,
                      random_state: np.random.Generator, variant: str = "classic",
                      dtype: str = "float32", balance: bool = False, n_bins: int = 5,
                      binning: str = "equal_width", progress: bool | None = None
                      ) -> MethodOutput:
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
    * Scores are updated incrementally (``f_i += 2⟨x_q − μ, x_i − μ⟩``) instead of re-summing the
      selected rows and gathering the unselected ones at every step, and are evaluated in
      verified blocks (see :func:`herding_greedy`); the pick sequence is the same.
    * Squared distances are compared (DeepCore clamps at ``1e-12`` and takes square roots; the
      argmax/argmin is unchanged). Rows are centred before the inner products, and the scores
      and sums are kept in float64 (DeepCore: float32 throughout).
    * Budgets are exact counts from the caller (DeepCore: ``round(n·fraction)``, clipped to
      ``n``); balanced quotas use largest remainder, not ``round(f·n_c)`` per class.
    * ``"classic"`` is the default (decision 10) although DeepCore implements only the argmax.

    Options
    -------
    variant : {"classic", "deepcore"}, default="classic"
    dtype : {"float32", "float64"}, default="float32"
        Precision of the inner products (scores and sums are float64).
    balance : bool, default=False
        Herd inside MOS bins (needs ``mos``).
    n_bins : int, default=5
        Number of MOS bins when balancing.
    binning : {"equal_width", "quantile"}, default="equal_width"
        MOS binning scheme when balancing.
    progress : bool, optional
        Show a progress bar (default: tqdm decides, honouring ``TQDM_DISABLE``).
    """
    X = features["embedding"]
    check_option(variant, "variant", HERDING_VARIANTS)
    check_option(dtype, "dtype", ("float32", "float64"))
    check_flag(balance, "balance")
    n_bins, binning = check_binning_options(n_bins, binning)
    params = {"variant": variant, "dtype": dtype, "balance": balance, "n_bins": n_bins,
              "binning": binning}
    farthest = variant == "deepcore"
    work_dtype = resolve_dtype(dtype)
    with progress_bar(total=budget, desc=f"herding ({variant})", enabled=progress) as bar:
        if not balance:
            picks, disc, stats = _herd_rows(X, budget, work_dtype, farthest, bar)
            logger.debug("herding (%s): %s", variant, stats)
            info = {"mean_discrepancy": float(disc[-1]), **stats}
            return MethodOutput(indices=picks, params=params, info=info, gains=disc)
        if mos is None:
            raise ValueError("The 'mos' parameter is required when balance=True (herding).")
        bins = mos_bins(mos, n_bins=n_bins, scheme=binning)
        quotas = split_budget(bins.counts, budget)
        all_picks, all_disc = [], []
        for c in range(bins.n_bins):
            if quotas[c] == 0:
                continue
            rows = bins.members(c)
            picks, disc, _ = _herd_rows(X[rows], int(quotas[c]), work_dtype, farthest, bar)
            all_picks.append(rows[picks])
            all_disc.append(disc)
        info = {"mos_bins": bins.to_info(), "quotas": quotas.tolist()}
        return MethodOutput(indices=np.concatenate(all_picks), params=params, info=info,
                            gains=np.concatenate(all_disc))

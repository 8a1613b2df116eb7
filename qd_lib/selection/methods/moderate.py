"""Moderate Coreset: the rows at a middle distance from their MOS bin's median centre."""
from __future__ import annotations

import logging

import numpy as np

from qd_lib.selection._kernels import check_flag, coordinate_median, sq_dists_to_vector
from qd_lib.selection.base import MethodOutput, register
from qd_lib.selection.binning import check_binning_options, mos_bins, select_per_bin
from qd_lib.utils.validation import check_option

logger = logging.getLogger(__name__)

MODERATE_WINDOWS = ("rank", "abs")
MODERATE_CENTERS = ("median", "mean")


def moderate_scores(X: np.ndarray, labels: np.ndarray, n_groups: int, *,
                    center: str = "median") -> tuple[np.ndarray, np.ndarray]:
    """Distance of every row to its group's centre (per-dimension median or mean), float64.

    Returns
    -------
    scores : ndarray of shape (n,)
    centres : ndarray of shape (n_groups, d)
    """
    n, d = X.shape
    scores = np.empty(n, dtype=np.float64)
    centres = np.empty((n_groups, d), dtype=np.float64)
    for c in range(n_groups):
        rows = np.flatnonzero(labels == c)
        if center == "median":
            centres[c] = coordinate_median(X, rows)
        else:
            centres[c] = np.asarray(X[rows], dtype=np.float64).mean(axis=0)
        scores[rows] = np.sqrt(sq_dists_to_vector(X[rows], centres[c]))
    return scores, centres


def middle_window(scores: np.ndarray, budget: int, *, window: str = "rank") -> np.ndarray:
    """Positions of the ``budget`` middle scores, in increasing (score, position) order.

    ``"rank"``: sort by (score, position) and keep ranks ``⌊(n − B)/2⌋ … ⌊(n − B)/2⌋ + B − 1``,
    i.e. ``⌊(n − B)/2⌋`` rows excluded below and ``⌈(n − B)/2⌉`` above. ``"abs"``: the ``B``
    rows with the smallest ``|score − median(score)|`` (ties by position), returned in score
    order.
    """
    n = len(scores)
    order = np.argsort(scores, kind="stable")
    if window == "rank":
        start = (n - budget) // 2
        return order[start:start + budget]
    gap = np.abs(scores - np.median(scores))
    chosen = np.argsort(gap, kind="stable")[:budget]
    return chosen[np.lexsort((chosen, scores[chosen]))]


@register("moderate", inputs=("embedding",), needs_mos=True, stochastic=False,
          title="Moderate")
def moderate_selection(features: dict[str, np.ndarray], budget: int, *, mos,
                       random_state: np.random.Generator, n_bins: int = 5,
                       binning: str = "equal_width", window: str = "rank",
                       center: str = "median", per_bin: bool = False) -> MethodOutput:
    """Moderate Coreset: keep the rows whose distance to their class centre is in the middle.

    Reference: Xia, Liu, Yu, Shen, Han & Liu, "Moderate Coreset: A Universal Method of Data
    Selection for Real-world Data-efficient Deep Learning", ICLR 2023; official code
    ``tmllab/2023_ICLR_Moderate-DS`` (``selection.py``). Design note ``baselines.md`` §7.

    Procedure: every row's score is its Euclidean distance (float64) to the per-dimension
    **median** of its class's embeddings; rows are ordered by (score, row index) and the
    ``budget`` rows in the middle of that order are kept: ``⌊(n − B)/2⌋`` excluded below and
    ``⌈(n − B)/2⌉`` above. Picks are returned in increasing score; ``gains`` holds their scores.
    Deterministic: the seed is ignored.

    IQA adaptation: classes are MOS bins (:mod:`qd_lib.selection.binning`: default 5
    equal-width bins over the given MOS's range, empty bins dropped and relabelled) and the
    embedding is LIQE's (seed §E.2), not a ResNet-50 trained on the target labels.

    Deviations from the reference code, and why:

    * Exact window of ``budget`` rows centred on the median rank. The official code keeps ranks
      ``[round(n(0.5 − r/2)), round(n(0.5 + r/2)))``, a difference of two roundings that can
      miss the requested count, and pickles the complement (the rows to drop).
    * Stable sort on (score, index) instead of numpy's default (unstable) quicksort, so ties
      resolve the same way everywhere.
    * Empty bins are dropped and the labels made contiguous (the official code would take a
      NaN median for an empty class and measure labels ``≥ K`` against the zero vector).
    * Options beyond the reference, off by default: ``window="abs"`` (the paper's wording:
      smallest ``|score − median score|``), ``center="mean"`` (the paper's "class centre"),
      ``per_bin=True`` (the window inside each bin with largest-remainder quotas, the
      class-specific variant the seed says the original lacks).

    Options
    -------
    n_bins : int, default=5
        Number of MOS bins.
    binning : {"equal_width", "quantile"}, default="equal_width"
        MOS binning scheme.
    window : {"rank", "abs"}, default="rank"
    center : {"median", "mean"}, default="median"
    per_bin : bool, default=False
    """
    X = features["embedding"]
    n_bins, binning = check_binning_options(n_bins, binning)
    check_option(window, "window", MODERATE_WINDOWS)
    check_option(center, "center", MODERATE_CENTERS)
    check_flag(per_bin, "per_bin")
    params = {"n_bins": n_bins, "binning": binning, "window": window, "center": center,
              "per_bin": per_bin}
    bins = mos_bins(mos, n_bins=n_bins, scheme=binning)
    scores, _ = moderate_scores(X, bins.labels, bins.n_bins, center=center)
    info: dict = {"mos_bins": bins.to_info()}
    n = len(scores)
    if not per_bin:
        picks = middle_window(scores, budget, window=window)
        info.update(excluded_below=int((scores < scores[picks].min()).sum()),
                    excluded_above=int((scores > scores[picks].max()).sum()),
                    score_range=[float(scores.min()), float(scores.max())])
        if window == "rank":
            info["rank_window"] = [(n - budget) // 2, (n - budget) // 2 + budget]
    else:
        merged = select_per_bin(bins, budget, lambda c, rows, quota: (
            middle_window(scores[rows], quota, window=window), None, None))
        picks = merged.indices
        info["quotas"] = merged.quotas.tolist()
    return MethodOutput(indices=picks.astype(np.int64), params=params, info=info,
                        gains=scores[picks])

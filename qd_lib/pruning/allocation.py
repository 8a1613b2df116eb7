"""Per-layer sparsities that minimise the summed output distortion at a global sparsity.

Given each layer's measured distortion curve ``D_l(k)`` (:mod:`qd_lib.pruning.distortion`; the
distortion is taken as additive over layers, as in RD-Prune), :func:`allocate_sparsity` solves

    minimise ``Σ_l D_l(k_l)``  subject to  ``Σ_l k_l = K = round(target · Σ_l n_l)``

in two steps:

1. **Dynamic programming over the measured grid** (every layer at one of its measured levels or
   dense). Pruned-weight counts are quantised to units of ``u = ceil(N / resolution)`` weights,
   rounded *down*, and the state is the number of units pruned so far, capped at
   ``ceil(K / u)``; the DP returns the grid allocation of least total distortion among those
   that prune at least ``K`` weights (exactly optimal for the grid up to the quantisation).
2. **Exact count.** The grid allocation prunes ``K + surplus`` weights; the surplus is given back
   one curve segment at a time, always where the linearly interpolated curve saves the most
   distortion per weight, so the final counts sum to exactly ``K``. Magnitude masks can prune
   any integer number of weights, so the counts are realised exactly.

:func:`uniform_allocation` spreads ``K`` over the layers in proportion to their sizes (the same
sparsity everywhere, exact total by largest remainders): the calibration-free reference.
"""
from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from qd_lib.utils.validation import check_scalar

logger = logging.getLogger(__name__)

__all__ = ["Allocation", "allocate_sparsity", "target_count", "uniform_allocation"]


@dataclass
class Allocation:
    """Weights to prune per layer.

    Attributes
    ----------
    layers : list of str
    n_weights : ndarray of int, shape (L,)
    counts : ndarray of int, shape (L,)
        Weights pruned per layer; ``counts.sum() == target_count``.
    target : float
        The global sparsity asked for.
    target_count : int
        ``round(target · n_weights.sum())``.
    predicted_distortion : float
        ``Σ_l D_l(counts_l)`` on the linearly interpolated curves (NaN for the uniform
        allocation without curves).
    method : str
        ``"rd-dp"`` or ``"uniform"``.
    """

    layers: list
    n_weights: np.ndarray
    counts: np.ndarray
    target: float
    target_count: int
    predicted_distortion: float
    method: str

    @property
    def sparsity(self) -> np.ndarray:
        """Per-layer sparsity ``counts / n_weights``."""
        return self.counts / np.maximum(self.n_weights, 1)

    def counts_by_layer(self) -> dict[str, int]:
        return {name: int(k) for name, k in zip(self.layers, self.counts)}

    def kept_by_layer(self) -> dict[str, float]:
        """Kept fraction of each layer's weights."""
        return {name: 1.0 - float(s) for name, s in zip(self.layers, self.sparsity)}

    def to_record(self) -> dict:
        return {"method": self.method, "target": self.target,
                "target_count": self.target_count, "pruned": int(self.counts.sum()),
                "n_weights": int(self.n_weights.sum()),
                "predicted_distortion": (None if not np.isfinite(self.predicted_distortion)
                                         else float(self.predicted_distortion)),
                "layers": {name: {"n": int(n), "pruned": int(k)} for name, n, k in
                           zip(self.layers, self.n_weights, self.counts)}}


def target_count(n_weights: Sequence[int], target: float) -> int:
    """``round(target × Σ n_weights)``: the number of weights a global sparsity prunes."""
    check_scalar(target, "target", numbers.Real, min_val=0.0, max_val=1.0)
    return int(round(float(target) * int(np.sum(n_weights))))


def uniform_allocation(layers: Sequence[str], n_weights: Sequence[int],
                       target: float) -> Allocation:
    """The same sparsity in every layer, with counts summing exactly to the target count
    (largest remainders, ties to the earlier layer)."""
    n = np.asarray(n_weights, dtype=np.int64)
    total = target_count(n, target)
    exact = n * (total / max(int(n.sum()), 1))
    counts = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: total - int(counts.sum())]] += 1
    return Allocation(list(layers), n, counts, float(target), total, float("nan"), "uniform")


def _interpolated(k: int, counts: np.ndarray, dist: np.ndarray) -> float:
    """A layer's distortion at ``k`` pruned weights on its piecewise-linear curve through
    ``(0, 0)`` and the measured points (``counts``/``dist`` increasing, finite)."""
    xs = np.concatenate([[0], counts])
    ys = np.concatenate([[0.0], dist])
    return float(np.interp(k, xs, ys))


def allocate_sparsity(curves, target: float, *, resolution: int = 4000) -> Allocation:
    """Rate-distortion allocation of a global sparsity over the layers (module docstring).

    Parameters
    ----------
    curves : DistortionCurves
        Measured curves; unmeasured points (``inf``) are never chosen.
    target : float in [0, 1]
        Global sparsity: the share of all the curves' weights to prune.
    resolution : int >= 10, default=4000
        Quantisation of the DP state (units of ``ceil(N / resolution)`` weights).

    Returns
    -------
    Allocation
        Counts per layer summing exactly to ``round(target · N)``.

    Raises
    ------
    ValueError
        If ``target`` cannot be reached with the measured points.
    """
    check_scalar(target, "target", numbers.Real, min_val=0.0, max_val=1.0)
    check_scalar(resolution, "resolution", int, min_val=10)
    n = np.asarray(curves.n_weights, dtype=np.int64)
    counts_grid = curves.counts()  # (L, S)
    dist = np.asarray(curves.distortion, dtype=float)
    if dist.shape != counts_grid.shape:
        raise ValueError(f"The curves' distortion has shape {dist.shape}; expected "
                         f"{counts_grid.shape} (layers x levels).")
    if np.any(dist < 0):
        raise ValueError("Distortions must be non-negative.")
    total = target_count(n, target)
    L = len(n)
    # options per layer: dense (0 weights, 0 distortion), then each measured level
    opt_counts = np.concatenate([np.zeros((L, 1), np.int64), counts_grid], axis=1)
    opt_dist = np.concatenate([np.zeros((L, 1)), dist], axis=1)
    unit = max(1, math.ceil(int(n.sum()) / resolution))
    cap = math.ceil(total / unit)
    opt_units = np.minimum(opt_counts // unit, cap)

    # dp[c]: least distortion with c units pruned so far (c == cap: at least cap units)
    dp = np.full(cap + 1, np.inf)
    dp[0] = 0.0
    choice = np.zeros((L, cap + 1), dtype=np.int64)
    prev = np.zeros((L, cap + 1), dtype=np.int64)
    states = np.arange(cap + 1)
    for layer in range(L):
        best = np.full(cap + 1, np.inf)
        for j in range(opt_counts.shape[1]):
            d = opt_dist[layer, j]
            if not np.isfinite(d):
                continue
            c = int(opt_units[layer, j])
            new_state = np.minimum(states + c, cap)
            value = dp + d
            # scatter-min into new_state (several sources reach the cap)
            order = np.lexsort((value, new_state))
            ns, val, src = new_state[order], value[order], states[order]
            first = np.ones(len(ns), dtype=bool)
            first[1:] = ns[1:] != ns[:-1]
            ns, val, src = ns[first], val[first], src[first]
            better = val < best[ns]
            best[ns[better]] = val[better]
            choice[layer, ns[better]] = j
            prev[layer, ns[better]] = src[better]
        dp = best
    if not np.isfinite(dp[cap]):
        raise ValueError(f"A global sparsity of {target!r} ({total} of {int(n.sum())} weights) "
                         "cannot be reached with the measured levels; measure higher levels or "
                         "turn off the early stop.")
    picks = np.zeros(L, dtype=np.int64)
    state = cap
    for layer in range(L - 1, -1, -1):
        picks[layer] = choice[layer, state]
        state = prev[layer, state]
    counts = opt_counts[np.arange(L), picks].copy()

    # give the surplus back where the interpolated curves save the most per weight
    surplus = int(counts.sum()) - total
    level = picks.copy()
    while surplus > 0:
        best_layer, best_slope = -1, -np.inf
        for layer in range(L):
            j = level[layer]
            if j == 0:
                continue
            lo_k, hi_k = opt_counts[layer, j - 1], opt_counts[layer, j]
            if hi_k <= lo_k:  # a zero-width segment (tiny layer): step down at no cost
                level[layer] -= 1
                best_layer = -2
                break
            slope = (opt_dist[layer, j] - opt_dist[layer, j - 1]) / (hi_k - lo_k)
            if slope > best_slope:
                best_layer, best_slope = layer, slope
        if best_layer == -2:
            continue
        if best_layer < 0:  # pragma: no cover - the DP total is >= K, so a layer is pruned
            raise RuntimeError("no layer left to give the surplus back to")
        j = level[best_layer]
        room = int(counts[best_layer] - opt_counts[best_layer, j - 1])
        step = min(surplus, room)
        counts[best_layer] -= step
        surplus -= step
        if counts[best_layer] == opt_counts[best_layer, j - 1]:
            level[best_layer] -= 1
    predicted = sum(_interpolated(int(k), opt_counts[i, 1:][np.isfinite(dist[i])],
                                  dist[i][np.isfinite(dist[i])])
                    for i, k in enumerate(counts))
    logger.info("allocation: %d of %d weights pruned (target %.3f), predicted distortion %.4g",
                int(counts.sum()), int(n.sum()), float(target), predicted)
    return Allocation(list(curves.layers), n, counts, float(target), total, float(predicted),
                      "rd-dp")

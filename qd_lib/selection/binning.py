"""MOS bins and per-bin budgets, shared by every selector that stratifies by quality.

IQA has a continuous MOS where the classification coresets had class labels. Contextual
Diversity, Moderate and the optional class balancing of Herding and k-Center therefore use
MOS bins as classes (design note ``baselines.md`` §1.3–1.4):

* :func:`mos_bins` discretises the MOS into ``n_bins`` bins, equal-width over the given MOS's
  range (the default; bins keep an absolute meaning, "bad" … "excellent") or by quantile
  (equal counts within one, never empty). Empty bins are dropped and the labels relabelled
  ``0 … K'−1`` in MOS order. The result records the scheme, edges and counts for
  :class:`~qd_lib.selection.Selection.info`.
* :func:`split_budget` apportions an integer budget over bins by the largest-remainder
  (Hamilton) rule: every bin gets ``floor(B·n_c/n)`` and the leftover units go to the largest
  fractional parts (ties: larger bin, then lower bin index), so the shares sum to ``B`` exactly
  and each is within 1 of its proportional quota.
* :func:`select_per_bin` runs a selector inside every bin with its share and merges the picks
  (bin order, each bin in its own pick order): the per-bin loop of Herding and k-Center
  (``balance=True``), Contextual Diversity and Moderate (``per_bin=True``).

The MOS passed in is the training split's; edges are never fitted on test MOS.
"""
from __future__ import annotations

import logging
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from qd_lib.utils.validation import check_option, check_scalar

logger = logging.getLogger(__name__)

__all__ = ["BINNING_SCHEMES", "MOSBins", "PerBinPicks", "check_binning_options", "mos_bins",
           "select_per_bin", "split_budget"]

#: Supported binning schemes.
BINNING_SCHEMES = ("equal_width", "quantile")


@dataclass(frozen=True)
class MOSBins:
    """MOS bins of the candidate rows.

    Attributes
    ----------
    labels : ndarray of int64, shape (n,)
        Bin of each row, ``0 … n_bins − 1`` in increasing MOS, empty bins removed.
    edges : ndarray of float64, shape (n_bins + 1,)
        Bin boundaries on the MOS scale of the non-empty bins: the lower edge of each and the
        largest MOS, so bin ``c`` holds MOS in ``[edges[c], edges[c + 1])`` (the last bin is
        closed; an empty bin's range joins the bin below it). For quantile bins the lower edges
        are the smallest MOS of each bin.
    counts : ndarray of int64, shape (n_bins,)
        Rows per bin.
    scheme : str
        ``"equal_width"`` or ``"quantile"``.
    n_bins_requested : int
        The ``n_bins`` asked for; ``n_bins`` (= ``len(counts)``) is smaller when bins were empty.
    dropped : tuple of int
        Indices (in the requested numbering) of the empty bins that were removed.
    requested_edges : ndarray of float64, shape (n_bins_requested + 1,)
        Boundaries of all requested bins, empty ones included.
    """

    labels: np.ndarray
    edges: np.ndarray
    counts: np.ndarray
    scheme: str
    n_bins_requested: int
    dropped: tuple[int, ...] = ()
    requested_edges: np.ndarray | None = None

    @property
    def n_bins(self) -> int:
        """Number of non-empty bins."""
        return len(self.counts)

    def members(self, c: int) -> np.ndarray:
        """Row indices of bin ``c`` in increasing order."""
        return np.flatnonzero(self.labels == c)

    def to_info(self) -> dict:
        """JSON-friendly description (scheme, edges, counts, requested and dropped bins)."""
        return {
            "scheme": self.scheme,
            "n_bins_requested": int(self.n_bins_requested),
            "n_bins": int(self.n_bins),
            "edges": [float(e) for e in self.edges],
            "requested_edges": [float(e) for e in self.requested_edges],
            "counts": [int(c) for c in self.counts],
            "dropped_empty": [int(b) for b in self.dropped],
        }


def check_binning_options(n_bins, binning) -> tuple[int, str]:
    """Validate the ``n_bins`` and ``binning`` options shared by the MOS-binning selectors."""
    check_scalar(n_bins, "n_bins", numbers.Integral, min_val=1)
    check_option(binning, "binning", BINNING_SCHEMES)
    return int(n_bins), binning


def mos_bins(mos, *, n_bins: int = 5, scheme: str = "equal_width") -> MOSBins:
    """Discretise MOS into bins.

    Parameters
    ----------
    mos : array-like of shape (n,)
        Finite MOS values, higher meaning better (convert DMOS first).
    n_bins : int, default=5
        Number of bins asked for (5 matches LIQE's five quality levels and the ACR scale).
    scheme : {"equal_width", "quantile"}, default="equal_width"
        ``"equal_width"``: ``bin = min(floor(K·(y − min)/(max − min)), K − 1)`` over the range of
        the given MOS; a constant MOS gives one bin. ``"quantile"``: ``bin = floor(K·rank/n)``
        with ranks from a stable sort on (MOS, row index), so counts differ by at most one even
        with tied MOS.

    Returns
    -------
    MOSBins

    Raises
    ------
    ValueError, TypeError
        On a bad ``n_bins`` or ``scheme``, or MOS that is not a finite 1-D array.

    Examples
    --------
    >>> b = mos_bins([1.0, 1.5, 2.0, 4.0, 5.0], n_bins=4)  # bin [3, 4) is empty
    >>> b.labels.tolist(), b.counts.tolist(), b.dropped
    ([0, 0, 1, 2, 2], [2, 1, 2], (2,))
    """
    n_bins, scheme = check_binning_options(n_bins, scheme)
    y = np.asarray(mos, dtype=np.float64)
    if y.ndim != 1 or y.size == 0 or not np.isfinite(y).all():
        raise ValueError(
            f"The 'mos' parameter must be a non-empty finite 1-D array. Got shape {y.shape}."
        )
    n = y.size
    lo, hi = float(y.min()), float(y.max())
    if scheme == "equal_width":
        if hi > lo:
            raw = np.floor((y - lo) * (n_bins / (hi - lo))).astype(np.int64)
            np.clip(raw, 0, n_bins - 1, out=raw)
        else:
            logger.info("MOS is constant (%g): all %d rows go to one bin", lo, n)
            raw = np.zeros(n, dtype=np.int64)
        full_edges = lo + (hi - lo) * np.arange(n_bins + 1) / n_bins
        full_edges[-1] = hi
    else:
        order = np.argsort(y, kind="stable")
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n)
        raw = (rank * n_bins) // n
        firsts = [float(y[order[(c * n + n_bins - 1) // n_bins]]) if (c * n + n_bins - 1)
                  // n_bins < n else hi for c in range(n_bins)]
        full_edges = np.array(firsts + [hi], dtype=np.float64)
    full_counts = np.bincount(raw, minlength=n_bins)
    keep = np.flatnonzero(full_counts > 0)
    dropped = tuple(int(b) for b in np.flatnonzero(full_counts == 0))
    relabel = np.full(n_bins, -1, dtype=np.int64)
    relabel[keep] = np.arange(len(keep))
    labels = relabel[raw]
    edges = np.append(full_edges[keep], full_edges[-1])
    counts = full_counts[keep].astype(np.int64)
    if dropped:
        logger.info("dropped %d empty MOS bin(s) %s of %d (%s)", len(dropped), list(dropped),
                    n_bins, scheme)
    small = max(2, int(np.ceil(0.005 * n)))
    sparse = [int(c) for c in np.flatnonzero(counts < small)]
    if sparse and len(keep) > 1:
        logger.warning("MOS bin(s) %s hold fewer than %d rows (counts %s)", sparse, small,
                       counts[sparse].tolist())
    return MOSBins(labels=labels, edges=edges, counts=counts, scheme=scheme,
                   n_bins_requested=n_bins, dropped=dropped, requested_edges=full_edges)


def split_budget(sizes, budget: int) -> np.ndarray:
    """Apportion ``budget`` over groups of the given ``sizes`` (largest remainder, exact total).

    Each group gets ``floor(budget·size/n)``; the ``budget − Σ floors`` leftover units go one
    each to the groups with the largest fractional parts, ties to the larger group and then the
    lower index. Shares never exceed the group size (a capped group would pass its overflow on
    in the same order, which proportional quotas never need).

    Parameters
    ----------
    sizes : sequence of int
        Group sizes, non-negative with a positive sum.
    budget : int
        Units to hand out, ``0 ≤ budget ≤ sum(sizes)``.

    Returns
    -------
    ndarray of int64
        Shares, summing to ``budget``, each within 1 of ``budget·size/n``.

    Examples
    --------
    >>> split_budget([5, 5, 5, 5, 5, 5, 5, 5, 5, 5], 5).tolist()
    [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    >>> split_budget([10, 30, 60], 7).tolist()
    [1, 2, 4]
    """
    sizes = [int(s) for s in np.asarray(sizes).ravel()]
    n = sum(sizes)
    if any(s < 0 for s in sizes) or n <= 0:
        raise ValueError(
            f"The 'sizes' parameter must be non-negative with a positive sum. Got {sizes}."
        )
    check_scalar(budget, "budget", numbers.Integral, min_val=0, max_val=n)
    budget = int(budget)
    shares = [budget * s // n for s in sizes]
    remainders = [budget * s % n for s in sizes]
    order = sorted(range(len(sizes)), key=lambda i: (-remainders[i], -sizes[i], i))
    left = budget - sum(shares)
    while left > 0:  # one pass hands out everything unless a cap binds
        progressed = False
        for i in order:
            if left == 0:
                break
            if shares[i] < sizes[i]:
                shares[i] += 1
                left -= 1
                progressed = True
        if not progressed:  # pragma: no cover - impossible while budget <= n
            break
    return np.asarray(shares, dtype=np.int64)


@dataclass(frozen=True)
class PerBinPicks:
    """Picks made inside MOS bins, merged (see :func:`select_per_bin`).

    Attributes
    ----------
    indices : ndarray of int64, shape (budget,)
        Row indices: bin 0's picks in their pick order, then bin 1's, …
    gains : ndarray of float64 or None
        The per-bin gains in the same order (``None`` when the selector returns none).
    quotas : ndarray of int64, shape (n_bins,)
        Picks per bin (:func:`split_budget`).
    extras : list
        Per bin, the third value the selector returned; ``None`` for bins with no quota.
    """

    indices: np.ndarray
    gains: np.ndarray | None
    quotas: np.ndarray
    extras: list


def select_per_bin(bins: MOSBins, budget: int,
                   select_in_bin: Callable[[int, np.ndarray, int], tuple[np.ndarray, Any, Any]]
                   ) -> PerBinPicks:
    """Split ``budget`` over the bins and run a selector inside each bin that gets a share.

    Parameters
    ----------
    bins : MOSBins
        The bins (:func:`mos_bins`).
    budget : int
        Total picks, ``1 ≤ budget ≤ n``.
    select_in_bin : callable
        ``select_in_bin(c, rows, quota)`` with ``rows`` the bin's row indices (ascending)
        returns ``(local, gains, extra)``: ``quota`` positions into ``rows`` in pick order, the
        gains of those picks (or ``None``) and anything else to keep per bin. Called in bin
        order, only for bins with a positive quota (so random draws happen in that order).

    Returns
    -------
    PerBinPicks
    """
    quotas = split_budget(bins.counts, budget)
    parts, gains, extras = [], [], []
    for c in range(bins.n_bins):
        if quotas[c] == 0:
            extras.append(None)
            continue
        rows = bins.members(c)
        local, bin_gains, extra = select_in_bin(c, rows, int(quotas[c]))
        parts.append(rows[np.asarray(local, dtype=np.int64)])
        gains.append(bin_gains)
        extras.append(extra)
    merged = None if any(g is None for g in gains) else np.concatenate(gains).astype(np.float64)
    return PerBinPicks(indices=np.concatenate(parts), gains=merged, quotas=quotas,
                       extras=extras)

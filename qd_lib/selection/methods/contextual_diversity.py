"""Contextual Diversity (CDAL-CS): k-Center Greedy under the symmetric KL of quality
probabilities, inside MOS bins."""
from __future__ import annotations

import logging
import numbers

import numpy as np

from qd_lib.selection._kernels import farthest_first, jeffreys_to_point
from qd_lib.selection.base import MethodOutput, register
from qd_lib.selection.binning import check_binning_options, mos_bins, select_per_bin
from qd_lib.utils.progress import progress as progress_bar
from qd_lib.utils.validation import check_option, check_scalar

logger = logging.getLogger(__name__)

CD_MODES = ("per_bin", "global", "cdal_literal")


def prepare_probabilities(probs: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray,
                                                                  np.ndarray]:
    """Clip probability rows at ``eps``, renormalise, and return ``(P, log P, Σ P log P)``.

    Raises
    ------
    ValueError
        If a row holds a negative value or sums to zero, or there are fewer than 2 classes.
    """
    P = np.array(probs, dtype=np.float64)
    if P.shape[1] < 2:
        raise ValueError(
            f"The 'features[\"probs\"]' parameter must have at least 2 columns (classes). "
            f"Got shape {P.shape} instead."
        )
    if (P < 0).any():
        bad = int(np.argwhere(P < 0)[0, 0])
        raise ValueError(
            f"The 'features[\"probs\"]' parameter must hold probabilities (>= 0); row {bad} "
            f"holds {P[bad].tolist()}."
        )
    sums = P.sum(axis=1)
    if (sums <= 0).any():
        bad = int(np.flatnonzero(sums <= 0)[0])
        raise ValueError(f"The 'features[\"probs\"]' parameter has an all-zero row ({bad}).")
    if np.abs(sums - 1.0).max() > 1e-6:
        logger.info("probability rows do not sum to 1 (range %.4g–%.4g): renormalised",
                    sums.min(), sums.max())
    np.maximum(P, eps, out=P)
    P /= P.sum(axis=1, keepdims=True)
    logP = np.log(P)
    h = np.einsum("ij,ij->i", P, logP)
    return P, logP, h


def _bin_kcenter(P, logP, h, rows, quota, rng, bar):
    """Farthest-first under ``d`` among ``rows``: positions into ``rows``, radii, first."""
    sub_P, sub_logP, sub_h = P[rows], logP[rows], h[rows]
    first = int(rng.integers(len(rows)))
    picks, radii = farthest_first(lambda p: jeffreys_to_point(sub_P, sub_logP, sub_h, p),
                                  len(rows), quota, first, bar=bar)
    return picks, radii, first


def _cdal_literal(P, logP, h, labels, budget, rng):
    """CDAL-CS on K×C label-row matrices, literally: cross-bin distance 0, no masking."""
    n = len(labels)
    first = int(rng.integers(n))

    def dist(p):
        d = jeffreys_to_point(P, logP, h, p)
        d[labels != labels[p]] = 0.0  # no class row valid in both images: distance 0
        return d

    seq = [first]
    m = dist(first)
    for _ in range(budget - 1):
        p = int(np.argmax(m))  # picked points keep distance 0: they are not masked
        seq.append(p)
        np.minimum(m, dist(p), out=m)
    literal = np.asarray(seq, dtype=np.int64)
    _, first_pos = np.unique(literal, return_index=True)
    unique = literal[np.sort(first_pos)]
    shortfall = budget - len(unique)
    if shortfall:
        taken = np.zeros(n, dtype=bool)
        taken[unique] = True
        unique = np.concatenate([unique, np.flatnonzero(~taken)[:shortfall]])
    info = {"first_index": first, "literal_unique": int(budget - shortfall),
            "literal_duplicates": int(shortfall), "filled_lowest_index": int(shortfall),
            "first_bin": int(labels[first])}
    return unique, info


@register("contextual_diversity", inputs=("embedding", "probs"), needs_mos=True,
          stochastic=True, title="Contextual Diversity")
def contextual_diversity_selection(features: dict[str, np.ndarray], budget: int, *, mos,
                                   random_state: np.random.Generator, mode: str = "per_bin",
                                   eps: float = 1e-12, n_bins: int = 5,
                                   binning: str = "equal_width",
                                   progress: bool | None = None) -> MethodOutput:
    """Contextual Diversity: k-Center Greedy with the symmetric KL of LIQE quality probabilities.

    Reference: Agarwal, Arora, Anand & Arora, "Contextual Diversity for Active Learning",
    ECCV 2020 (CDAL-CS, the k-Center framework), official code ``sharat29ag/CDAL``
    (``CDAL_CS.py``), and DeepCore's ``ContextualDiversity`` (k-Center under
    ``½ Σ_k (a_k − b_k)(log a_k − log b_k)`` of the softmax, class-balanced). Design note
    ``baselines.md`` §6.

    IQA adaptation (seed supplementary §C/§E.2): classes are MOS bins
    (:mod:`qd_lib.selection.binning`, default 5 equal-width bins) and the per-image
    distribution is ``features["probs"]``, LIQE's marginal over its five quality levels
    (bad … perfect), as in the paper. The distance is
    ``d(a, b) = ½ Σ_k (a_k − b_k)(log a_k − log b_k)`` (half the Jeffreys divergence) after
    clipping at ``eps`` and renormalising.

    Modes:

    * ``"per_bin"`` (default): the budget is split over MOS bins by largest remainder; inside
      each bin, farthest-first under ``d`` from a random first centre (each bin draws from its
      own child of the seed). This equals DeepCore's CD with per-class balance, and the exact
      collapse of CDAL's ``K × 5`` matrix distance when k-Center runs inside one bin.
      Picks are concatenated in bin order, each bin in pick order.
    * ``"global"``: one farthest-first over all rows (DeepCore's CD with ``balance=False``).
    * ``"cdal_literal"``: CDAL-CS on the ``K × 5`` label-row matrices exactly as its code
      behaves: images in different bins share no valid row, so their distance is 0; picked
      points are not masked. The run stays inside the first pick's bin and then keeps
      returning index 0. For comparison only (it tests whether the paper's weak CD numbers come
      from this degeneracy).

    ``gains`` is the covering value (in ``d`` units) after each pick, per bin for
    ``"per_bin"``; ``None`` for ``"cdal_literal"``. ``features["embedding"]`` is required so
    CD receives the same LIQE bundle as the other baselines and rows are checked for
    alignment, but the distance uses only the probabilities (as in DeepCore and CDAL).

    Deviations from the reference code, and why:

    * Pick order is kept (CDAL and DeepCore return sorted ids).
    * One running-minimum vector, ``O(n·C)`` per pick via ``½[h(a) + h(b) − a·log b −
      b·log a]``; CDAL builds the full matrix with a Python callable, DeepCore an ``m × n × C``
      tensor. Probabilities are clipped at ``eps`` (DeepCore has no guard: ``log 0``).
    * Picked points are masked, so no index repeats; when every remaining distance is 0 the
      lowest-index unpicked point comes next (all modes but ``"cdal_literal"``).
    * ``"cdal_literal"`` must still return ``budget`` distinct rows: its duplicate picks are
      dropped and the shortfall is filled with the lowest-index unpicked rows (what a masked
      argmax over all-zero distances gives); the counts are in ``info``.
    * The first centre comes from the seeded ``Generator`` (CDAL: unseeded ``np.random``);
      budgets are exact counts, balanced quotas largest remainder (DeepCore: ``round(f·n_c)``).
    * The official CDAL features are region-level softmaxes (``nc = 19`` hard-coded); LIQE's
      image-level quality marginal replaces them (one row per image, seed §C).

    Options
    -------
    mode : {"per_bin", "global", "cdal_literal"}, default="per_bin"
    eps : float, default=1e-12
        Floor applied to the probabilities before renormalising.
    n_bins : int, default=5
        Number of MOS bins.
    binning : {"equal_width", "quantile"}, default="equal_width"
        MOS binning scheme.
    progress : bool, optional
        Show a progress bar (default: tqdm decides, honouring ``TQDM_DISABLE``).
    """
    check_option(mode, "mode", CD_MODES)
    check_scalar(eps, "eps", numbers.Real, min_val=0.0, max_val=1e-3, closed="right")
    n_bins, binning = check_binning_options(n_bins, binning)
    params = {"mode": mode, "eps": float(eps), "n_bins": n_bins, "binning": binning}
    P, logP, h = prepare_probabilities(features["probs"], float(eps))
    n = P.shape[0]
    bins = mos_bins(mos, n_bins=n_bins, scheme=binning)
    info: dict = {"mos_bins": bins.to_info(), "n_classes": int(P.shape[1])}
    if mode == "cdal_literal":
        picks, extra = _cdal_literal(P, logP, h, bins.labels, budget, random_state)
        info.update(extra)
        if extra["literal_duplicates"]:
            logger.info("cdal_literal repeated picks %d time(s); filled with the lowest-index "
                        "unpicked rows", extra["literal_duplicates"])
        return MethodOutput(indices=picks, params=params, info=info)
    with progress_bar(total=budget, desc=f"contextual diversity ({mode})",
                      enabled=progress) as bar:
        if mode == "global":
            picks, radii, first = _bin_kcenter(P, logP, h, np.arange(n), budget, random_state,
                                               bar)
            info.update(first_index=first, covering_value=float(radii[-1]))
            return MethodOutput(indices=picks, params=params, info=info, gains=radii)
        children = random_state.spawn(bins.n_bins)

        def cd_bin(c, rows, quota):
            picks, radii, first = _bin_kcenter(P, logP, h, rows, quota, children[c], bar)
            return picks, radii, int(rows[first])

        merged = select_per_bin(bins, budget, cd_bin)
        info.update(quotas=merged.quotas.tolist(), first_index=merged.extras)
        return MethodOutput(indices=merged.indices, params=params, info=info,
                            gains=merged.gains)

"""Training-free diagnostics of coresets at scale, and which of them predicts trained SRCC.

For every method × fraction × seed the coreset of the training split is selected exactly as a
trained run of the study selects it (:func:`qd_lib.selection.records.select_on_dataset`, same
features, MOS convention and seed), then measured without training:

MOS (normalised, :func:`qd_lib.features.selection_mos`)
    ``ks`` (Kolmogorov–Smirnov to the training split), ``wasserstein`` (Wasserstein-1 / range),
    ``bins_hit`` (share of occupied MOS deciles also hit), ``range_ratio``, ``mos_shift``
    (coreset mean minus training mean, as a share of the MOS range: the direction of a skew;
    negative means the coreset over-picks low-quality images).
Embedding spaces (``content``, ``quality``, and ``embedding``: the baselines' LIQE stand-in)
    ``covering_radius_<space>`` (worst case) and ``mean_nearest_<space>`` (density fit), both
    relative to one well-placed point (:func:`qd_lib.analysis.embedding_coverage`).

:func:`diagnostic_correlations` then ranks the diagnostics by their Spearman correlation with
the trained SRCC of the same (method, fraction, seed) over all study runs.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from qd_lib.analysis import embedding_coverage, mos_coverage, reference_distances
from qd_lib.features import NORMALIZED_MOS_RANGE, feature_inputs, selection_mos
from qd_lib.utils.progress import progress

logger = logging.getLogger(__name__)

SPACES = ("content", "quality", "embedding")
MOS_KEYS = ("ks", "wasserstein", "bins_hit", "range_ratio", "mos_shift")
DIAGNOSTICS = MOS_KEYS + tuple(f"{k}_{s}" for s in SPACES
                               for k in ("covering_radius", "mean_nearest"))
DIAGNOSTIC_FRACTIONS = (0.01, 0.05, 0.1, 0.3)


def coreset_diagnostics(indices, mos, spaces: dict[str, np.ndarray], *, bins: int = 10,
                        references: dict | None = None) -> dict[str, float]:
    """The diagnostics of one coreset (``indices`` into the training rows); ``references``
    holds :func:`qd_lib.analysis.reference_distances` per space when already computed."""
    idx = np.asarray(indices, dtype=np.int64)
    out = mos_coverage(mos, mos[idx], mos_range=NORMALIZED_MOS_RANGE, bins=bins)
    lo, hi = NORMALIZED_MOS_RANGE
    out["mos_shift"] = float((np.mean(mos[idx]) - np.mean(mos)) / (hi - lo))
    row = {k: out[k] for k in MOS_KEYS}
    for name, X in spaces.items():
        cov = embedding_coverage(X, idx, reference=(references or {}).get(name))
        row[f"covering_radius_{name}"] = cov["covering_radius"]
        row[f"mean_nearest_{name}"] = cov["mean_nearest"]
    return row


def run_diagnostics(dataset, methods: Sequence[str], fractions: Sequence[float] =
                    DIAGNOSTIC_FRACTIONS, seeds: Sequence[int] = tuple(range(10)), *,
                    feature_set="offline", options: dict | None = None,
                    show_progress: bool | None = None, **extract_options) -> pd.DataFrame:
    """Select and measure every method × fraction × seed (no training).

    Parameters
    ----------
    dataset : LoadedDataset
    methods : sequence of str
        Registered methods; a method may be given as ``(name, label, options)`` to measure a
        variant (the ablation does).
    fractions, seeds : sequences
    feature_set : str or mapping, default="offline"
    options : dict, optional
        ``{method: {option: value}}`` for plain method names.

    Returns
    -------
    pandas.DataFrame
        One row per method × fraction × seed: ``method``, ``fraction``, ``seed``, ``budget``,
        ``seconds`` (selection only) and :data:`DIAGNOSTICS`.
    """
    from qd_lib.selection import get_method
    from qd_lib.selection.records import select_on_dataset

    rows = dataset.indices("train")
    mos = selection_mos(dataset, rows)
    entries = [(m, m, (options or {}).get(m, {})) if isinstance(m, str) else tuple(m)
               for m in methods]
    roles = sorted({r for name, _, _ in entries for r in get_method(name).inputs} | set(SPACES)
                   - {"probs"})
    base = feature_inputs(roles, dataset, rows, feature_set=feature_set, **extract_options)
    spaces = {s: np.asarray(base[s], dtype=np.float64) for s in SPACES}
    references = {s: reference_distances(X) for s, X in spaces.items()}
    out = []
    tasks = [(s, e, f) for s in seeds for e in entries for f in fractions]
    for seed, (name, label, opts), fraction in progress(tasks, desc="diagnostics",
                                                        enabled=show_progress):
        inputs = dict(base)
        if "probs" in get_method(name).inputs:  # the label-free stand-in is seeded
            inputs.update(feature_inputs(("probs",), dataset, rows, feature_set=feature_set,
                                         seed=seed, **extract_options))
        started = time.perf_counter()
        result = select_on_dataset(dataset, name, fraction, feature_set=feature_set,
                                   seed=seed, options=opts, features=inputs)
        seconds = time.perf_counter() - started
        out.append({"method": label, "fraction": float(fraction), "seed": int(seed),
                    "budget": result.selection.budget, "seconds": round(seconds, 3),
                    **coreset_diagnostics(result.selection.indices, mos, spaces,
                                          references=references)})
    return pd.DataFrame(out)


def within_method_spearman(group: pd.DataFrame, name: str, *, n_permutations: int = 2000,
                           random_state: int = 0) -> tuple[float, float, int]:
    """Does ``name`` predict SRCC among the seeds of one method, not only which method it is?

    Spearman correlation of the diagnostic and SRCC after each method's mean is taken off
    both (methods with one run carry no within-method information and are left out), with a
    permutation p-value that shuffles SRCC only within each method (the test's null: inside a
    method the diagnostic says nothing about SRCC).

    Returns
    -------
    (spearman, p, n)
        NaN and 0 where fewer than 3 runs of methods with 2+ runs remain.
    """
    from scipy.stats import rankdata

    counts = group["method"].map(group["method"].value_counts())
    kept = group[counts >= 2]
    if len(kept) < 3 or kept[name].nunique() < 2:
        return float("nan"), float("nan"), 0
    by_method = kept.groupby("method")
    x = rankdata(kept[name] - by_method[name].transform("mean"))
    y = rankdata(kept["srcc"] - by_method["srcc"].transform("mean"))
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan"), 0

    # the ranks of the centred SRCC are shuffled within each method (all permutations at
    # once, one row each); a permutation keeps the set of ranks, so only the cross term moves
    rng = np.random.default_rng(random_state)
    shuffled = np.tile(y, (n_permutations, 1))
    for method in by_method.groups:
        where = np.flatnonzero(kept["method"].to_numpy() == method)
        shuffled[:, where] = rng.permuted(shuffled[:, where], axis=1)
    xc, yc = x - x.mean(), y - y.mean()
    scale = np.sqrt((xc ** 2).sum() * (yc ** 2).sum())
    rho = float(xc @ yc / scale)
    null = (shuffled - y.mean()) @ xc / scale
    hits = int((np.abs(null) >= abs(rho) - 1e-12).sum())
    return rho, (hits + 1) / (n_permutations + 1), int(len(kept))


#: a correlation is computed per trained setting: SRCC scales differ between models and
#: schedules, and both SRCC and the diagnostics move with the fraction
SETTING = ("model", "epochs", "fraction")


#: up to this many methods the method-level p-value enumerates every permutation (9! rows)
EXACT_METHODS = 9


def method_level_spearman(group: pd.DataFrame, name: str, *, n_permutations: int = 20000,
                          random_state: int = 0) -> tuple[float, float, int]:
    """Spearman correlation of the diagnostic and SRCC over the methods' means (one point per
    method), with an exact permutation p-value (Monte Carlo beyond :data:`EXACT_METHODS`).

    The runs of one method share most of their diagnostic value, so run-level p-values count
    the same evidence many times; the number of methods is the honest sample size.

    Returns
    -------
    (spearman, p, n_methods)
        NaN where fewer than 3 methods, or no spread, remain.
    """
    from itertools import permutations

    from scipy.stats import rankdata

    means = group.groupby("method")[[name, "srcc"]].mean()
    n = len(means)
    if n < 3 or means[name].nunique() < 2 or means["srcc"].nunique() < 2:
        return float("nan"), float("nan"), n
    x, y = rankdata(means[name]), rankdata(means["srcc"])
    xc, yc = x - x.mean(), y - y.mean()
    scale = np.sqrt((xc ** 2).sum() * (yc ** 2).sum())
    rho = float(xc @ yc / scale)
    if n <= EXACT_METHODS:
        null = yc[np.array(list(permutations(range(n))))] @ xc / scale
        p = float((np.abs(null) >= abs(rho) - 1e-12).mean())
    else:
        rng = np.random.default_rng(random_state)
        null = rng.permuted(np.tile(yc, (n_permutations, 1)), axis=1) @ xc / scale
        p = (int((np.abs(null) >= abs(rho) - 1e-12).sum()) + 1) / (n_permutations + 1)
    return rho, p, n


def diagnostic_correlations(diagnostics: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Spearman correlation of each diagnostic with trained SRCC, over the study runs that have
    a diagnostic row of the same method, fraction and seed, per trained setting
    (:data:`SETTING`: model, schedule, fraction; never pooled, SRCC scales differ). A run of a
    named variant's options (``qdiverse[row_normalize=True]``) is matched to that variant's
    rows (``qdiverse_rownorm``). ``runs`` must be of the dataset and feature set that
    ``diagnostics`` was measured on (:func:`qd_lib.study.commands.refresh_correlations`).

    Three views of one question: over the runs (``spearman``, ``p``, ``n``; the p-value
    treats runs as independent, which they are not: a method's seeds share most of their
    diagnostic), over the methods' means (``spearman_methods``, ``p_methods``, ``n_methods``,
    :func:`method_level_spearman`, the honest test that the diagnostic ranks selectors), and
    within a method (``spearman_within``, ``p_within``, ``n_within``,
    :func:`within_method_spearman`: does it also rank one method's seeds?).

    Returns
    -------
    pandas.DataFrame
        The :data:`SETTING` columns, ``diagnostic`` and the three views; sorted by
        |spearman| within a setting (stable); a setting whose matched runs are of one method
        only has no rows. A negative value means "lower is better" (e.g. KS).
    """
    from scipy.stats import spearmanr

    from qd_lib.study.report import named_method

    keys = ["method", "fraction", "seed"]
    runs = runs.assign(method=[named_method(m) for m in runs["method"]])
    merged = runs.merge(diagnostics, on=keys, how="inner")
    setting = [c for c in SETTING if c in merged]
    rows = []
    for values, group in merged.groupby(setting, sort=True, dropna=False):
        for name in DIAGNOSTICS:
            # one method's runs differ only by seed: nothing to say about which coreset
            # trains better
            if (name not in group or group[name].nunique() < 2 or len(group) < 3
                    or group["method"].nunique() < 2):
                continue
            rho, p = spearmanr(group[name], group["srcc"])
            by_method, p_methods, n_methods = method_level_spearman(group, name)
            within, p_within, n_within = within_method_spearman(group, name)
            rows.append({**dict(zip(setting, values)), "diagnostic": name,
                         "spearman": float(rho), "p": float(p), "n": int(len(group)),
                         "spearman_methods": by_method, "p_methods": p_methods,
                         "n_methods": n_methods, "spearman_within": within,
                         "p_within": p_within, "n_within": n_within})
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["_order"] = -out["spearman"].abs()
    return (out.sort_values([*setting, "_order"], kind="stable").drop(columns="_order")
            .reset_index(drop=True))

"""Ablation of Q-Diverse's inferred options, and its labelled extensions, training-free first.

Every choice the paper leaves open (design note ``qdiverse.md`` §3) is an option of ``qdiverse``;
:data:`ABLATION_GRID` varies one at a time around the faithful default, plus the two labelled
extensions (``qdiverse_qdpp``, ``qdiverse_density``). :func:`run_ablation` measures each variant
with the study's diagnostics (:mod:`qd_lib.study.diagnostics`) over seeds and fractions, and
:func:`rank_variants` orders them by the diagnostic that best predicts trained SRCC (from the
study's own correlation table; KS to the training MOS by default). The most promising variants
are then trained in the paired design (``notebooks/sweeps/study_ablation.yaml``) and chosen on
the validation split only: :func:`trained_variants` gives each trained variant's mean SRCC and its
paired difference with Random on both splits, the validation one being what a choice may use.
"""
from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from qd_lib.study.report import variant_name

#: (option, value shown, method, options): one row per variant; ``default`` is the paper's
#: method with the design note's recommended choices.
ABLATION_GRID: tuple[tuple[str, str, str, dict], ...] = (
    ("default", "faithful defaults", "qdiverse", {}),
    ("batch_order", "shuffle", "qdiverse", {"batch_order": "shuffle"}),
    ("batch_order", "one batch (b = N)", "qdiverse", {"batch_size": None}),
    ("gamma", "0.3", "qdiverse", {"gamma": 0.3}),
    ("gamma", "0.7", "qdiverse", {"gamma": 0.7}),
    ("gamma", "1.0 (content only)", "qdiverse", {"gamma": 1.0}),
    ("gamma", "0.0 (quality only)", "qdiverse", {"gamma": 0.0}),
    ("bandwidth", "0.5 x median", "qdiverse", {"bandwidth": 0.5}),
    ("distance_norm", "median", "qdiverse", {"distance_norm": "median"}),
    ("combine", "kernel", "qdiverse", {"combine": "kernel"}),
    ("laplacian", "rw", "qdiverse", {"laplacian": "rw"}),
    ("laplacian", "none", "qdiverse", {"laplacian": "none"}),
    ("energy", "0.80", "qdiverse", {"energy": 0.8}),
    ("energy", "0.99", "qdiverse", {"energy": 0.99}),
    ("n_landmarks", "150", "qdiverse", {"n_landmarks": 150}),
    ("landmarks", "kmeans++", "qdiverse", {"landmarks": "kmeans++"}),
    ("eigen_power", "1.0", "qdiverse", {"eigen_power": 1.0}),
    ("row_normalize", "True", "qdiverse", {"row_normalize": True}),
    ("z_bandwidth", "0.5 (fixed)", "qdiverse", {"z_bandwidth": 0.5}),
    ("first_pick", "max_degree", "qdiverse", {"first_pick": "max_degree"}),
    ("first_pick", "nearest_mean", "qdiverse", {"first_pick": "nearest_mean"}),
    ("extension", "qdiverse_qdpp", "qdiverse_qdpp", {}),
    ("extension", "qdiverse_density", "qdiverse_density", {}),
)


def ablation_entries(grid=ABLATION_GRID) -> list[tuple[str, str, dict]]:
    """``(method, variant name, options)`` for :func:`~qd_lib.study.diagnostics.
    run_diagnostics`; the variant name is what a trained run of it is called in the study
    tables (:func:`~qd_lib.study.report.variant_name`)."""
    return [(method, variant_name(method, options), options)
            for _, _, method, options in grid]


def run_ablation(dataset, fractions: Sequence[float] = (0.05, 0.1),
                 seeds: Sequence[int] = tuple(range(10)), *, grid=ABLATION_GRID,
                 feature_set="offline", show_progress: bool | None = None) -> pd.DataFrame:
    """Diagnostics of every variant × fraction × seed, with ``option`` and ``value`` columns.
    Random is measured alongside as the reference row."""
    from qd_lib.study.diagnostics import run_diagnostics

    entries = ablation_entries(grid) + [("random", "random", {})]
    table = run_diagnostics(dataset, entries, fractions, seeds, feature_set=feature_set,
                            show_progress=show_progress)
    labels = {variant_name(m, o): (opt, value) for opt, value, m, o in grid}
    labels["random"] = ("reference", "random")
    table.insert(0, "value", [labels[m][1] for m in table["method"]])
    table.insert(0, "option", [labels[m][0] for m in table["method"]])
    return table


def rank_variants(ablation: pd.DataFrame, *, by: str = "ks", lower_is_better: bool = True
                  ) -> pd.DataFrame:
    """Mean of every diagnostic per variant (over seeds and fractions), ordered by ``by``."""
    numeric = [c for c in ablation.columns if c not in ("option", "value", "method", "fraction",
                                                         "seed", "budget")]
    means = ablation.groupby(["option", "value", "method"], as_index=False, sort=False)[
        numeric].mean()
    return means.sort_values(by, ascending=lower_is_better).reset_index(drop=True)


def trained_variants(runs: pd.DataFrame, *, baseline: str = "random") -> pd.DataFrame:
    """Per method of the ablation sweep's trained ``runs`` (one dataset, model, fraction and
    feature set): ``n_trained``, mean ``val_srcc_trained`` and ``srcc_trained`` (test), and the
    mean paired difference with ``baseline`` on each split (``val_srcc_diff``, ``srcc_diff``;
    same seeds only, ``n_pairs`` of them).

    Variants are chosen on ``val_srcc_diff``; the test columns are reported, never chosen on.
    """
    cells = [c for c in ("dataset", "model", "config", "fraction", "feature_set", "epochs")
             if c in runs]
    n_cells = len(runs.drop_duplicates(cells)) if cells and len(runs) else len(runs) > 0
    if n_cells > 1:
        raise ValueError("The 'runs' parameter of trained_variants must hold one cell (dataset, "
                         f"model, fraction, feature set) of the ablation sweep. Got {n_cells} "
                         "cells.")
    table = runs.groupby("method", sort=False).agg(
        n_trained=("srcc", "size"), val_srcc_trained=("val_srcc", "mean"),
        srcc_trained=("srcc", "mean")).reset_index()
    base = runs[runs["method"] == baseline].drop_duplicates("seed").set_index("seed")
    diffs = []
    for method, rows in runs.groupby("method", sort=False):
        rows = rows.drop_duplicates("seed").set_index("seed")
        seeds = rows.index.intersection(base.index)
        diffs.append({"method": method, "n_pairs": len(seeds),
                      "val_srcc_diff": (rows.loc[seeds, "val_srcc"]
                                        - base.loc[seeds, "val_srcc"]).mean()
                      if len(seeds) else float("nan"),
                      "srcc_diff": (rows.loc[seeds, "srcc"] - base.loc[seeds, "srcc"]).mean()
                      if len(seeds) else float("nan")})
    return table.merge(pd.DataFrame(diffs), on="method", how="left")

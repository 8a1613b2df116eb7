"""The study's tables: trained runs → ``runs.csv`` → ``summary.csv`` (and its Markdown view).

``runs.csv`` holds one row per finished run of the study's sweep(s), straight from the run
records. ``summary.csv`` is computed from ``runs.csv`` alone (:func:`summarise_study`), so it
says exactly what ``runs.csv`` says: per dataset × model × fraction × method, the mean SRCC
and PLCC over seeds with an expanded-percentile bootstrap 95 % interval (wide enough for a
handful of seeds), and the paired comparison with Random (mean per-seed difference, its
interval of the same kind, the Wilcoxon signed-rank p-value, wins out of
pairs, and a marker; see :mod:`qd_lib.study.stats`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from qd_lib.data.budget import fraction_label
from qd_lib.study.stats import (
    MIN_PAIRS_FOR_VERDICT,
    bootstrap_ci,
    paired_comparison,
    significance_marker,
)

logger = logging.getLogger(__name__)

BASELINE = "random"
RUN_COLUMNS = ("dataset", "model", "config", "feature_set", "method", "fraction", "seed", "srcc",
               "plcc",
               "val_srcc", "val_plcc", "krcc", "n_train", "n_test", "epochs", "features",
               "proxy", "sweep", "seconds", "machine", "load_15min",
               "manifest_hash", "run_id")
CELL = ("dataset", "model", "epochs", "feature_set", "method", "fraction")
METHOD_ORDER = ("random", "herding", "kcenter", "contextual_diversity", "moderate", "pgcs",
                "qdiverse", "qdiverse_rownorm", "qdiverse_density", "qdiverse_qdpp", "full")


def named_method(method: str) -> str:
    """The registered name of a run's method: a variant that a named variant fixes
    (``qdiverse[row_normalize=True]`` is ``qdiverse_rownorm``) gets that name, any other
    method keeps its own (so that runs and training-free tables, which use the registered
    names, refer to the same selections)."""
    from qd_lib.selection.methods.qdiverse import NAMED_VARIANTS

    for name, fixed in NAMED_VARIANTS.items():
        if method == variant_name("qdiverse", fixed) != name:
            return name
    return method


def method_label(method: str) -> str:
    """Display name of a method: the selection registry's title (a variant that a named
    variant fixes gets that one's title, :func:`named_method`); other variants keep their own
    names."""
    from qd_lib.runner.tables import method_label as registry_label

    return registry_label(named_method(method))


def _method_rank(method: str) -> tuple:
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


def study_runs(sweeps: Sequence, runs_root=None) -> pd.DataFrame:
    """One row per finished (``ok``) run of the sweep files' current grids, with
    :data:`RUN_COLUMNS`, sorted by cell and seed.

    Method variants (a sweep's method entry with ``params``) get their options in the name:
    ``qdiverse[batch_order=shuffled]`` (:func:`variant_name`), so each is a cell of its own.
    """
    from qd_lib.runner import sweep_runs

    frames = []
    for sweep in sweeps:
        runs = sweep_runs(sweep, runs_root)
        if len(runs):
            frames.append(runs)
    if not frames:
        raise ValueError(f"No finished run of {list(map(str, sweeps))} was found; run the "
                         "sweep(s) first (python -m qd_lib.runner sweep FILE).")
    # a run listed by two sweeps (the ablation shares Random and Q-Diverse with the main
    # study) is one run: one row
    runs = pd.concat(frames, ignore_index=True).drop_duplicates("run_id")
    runs["method"] = [_variant_name(m, s) for m, s in zip(runs["method"], runs["settings"])]
    runs["epochs"] = [_epochs(s) for s in runs["settings"]]
    runs["feature_set"] = [_feature_set(s) for s in runs["settings"]]
    out = runs[[c for c in RUN_COLUMNS if c in runs.columns]].copy()
    out["_rank"] = [_method_rank(m) for m in out["method"]]
    out = out.sort_values(["dataset", "model", "fraction", "_rank", "seed"]).drop(
        columns="_rank")
    return out.reset_index(drop=True)


def variant_name(method: str, params: dict | None) -> str:
    """``qdiverse`` for default options, ``qdiverse[batch_order=shuffled,gamma=0.7]`` else."""
    if not params:
        return method
    return f"{method}[" + ",".join(f"{k}={params[k]}" for k in sorted(params)) + "]"


def _variant_name(method: str, settings) -> str:
    import json

    params = (json.loads(settings) or {}).get("method_params", {}) if settings else {}
    return variant_name(method, params if isinstance(params, dict) else None)


def _feature_set(settings) -> str:
    """The run's feature set as a short name (``offline``; ``offline+custom-<hash>`` for a set
    with overridden roles; ``-`` for the whole training split)."""

    spec = (json.loads(settings) if settings else {}).get("features") or {}
    return feature_set_name(spec)


def feature_set_name(spec: dict) -> str:
    """A feature specification (:func:`qd_lib.features.feature_spec`) as the short name that
    ``runs.csv`` files it under: ``offline``; ``offline+custom-<hash>`` for a set with
    overridden roles; ``-`` for none."""
    if not spec:
        return "-"
    if len(spec) == 1:
        return str(spec.get("set"))
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:6]
    return f"{spec.get('set')}+custom-{digest}"


def _epochs(settings):
    import json

    spec = json.loads(settings) if settings else {}
    return (spec.get("overrides") or {}).get("epochs")


def summarise_study(runs: pd.DataFrame, *, baseline: str = BASELINE, confidence: float = 0.95,
                    n_boot: int = 10_000) -> pd.DataFrame:
    """Per dataset × model × fraction × method: mean, bootstrap CI, and the paired comparison
    with ``baseline`` on the seeds both have.

    Raises
    ------
    ValueError
        If a cell holds two runs of one seed (a mean must not count a run twice).
    """
    runs = runs.copy()
    if "epochs" not in runs:
        runs["epochs"] = -1  # one schedule (what a table of runs without the column means)
    runs["epochs"] = runs["epochs"].fillna(-1).astype(int)
    if "feature_set" not in runs:
        runs["feature_set"] = "-"
    dup = runs.duplicated(list(CELL) + ["seed"], keep=False)
    if dup.any():
        raise ValueError(f"{int(dup.sum())} runs share a cell and a seed, e.g. "
                         f"{runs.loc[dup, 'run_id'].tolist()[:2]}; filter the runs first.")
    rows = []
    for key, group in runs.groupby(list(CELL), sort=False):
        cell = dict(zip(CELL, key))
        row = {**cell, "n_seeds": int(group["seed"].nunique())}
        for metric in ("srcc", "plcc"):
            values = group[metric].to_numpy(dtype=float)
            low, high = bootstrap_ci(values, confidence=confidence, n_boot=n_boot)
            row.update({f"{metric}_mean": float(values.mean()),
                        f"{metric}_std": float(values.std(ddof=1)) if len(values) > 1
                        else math.nan, f"{metric}_low": low, f"{metric}_high": high})
        base = runs[(runs["dataset"] == cell["dataset"]) & (runs["model"] == cell["model"])
                    & (runs["epochs"] == cell["epochs"]) & (runs["fraction"] == cell["fraction"])
                    & (runs["method"] == baseline)]
        # Random reads no feature: its run of this seed under any feature set is the same
        # coreset and training; one of the cell's own feature set is preferred
        base = base.assign(_own=base["feature_set"] != cell["feature_set"]).sort_values(
            ["_own", "feature_set"]).drop_duplicates("seed")
        paired = group.merge(base[["seed", "srcc", "plcc"]], on="seed", suffixes=("", "_base"))
        if cell["method"] != baseline and len(paired):
            for metric in ("srcc", "plcc"):
                cmp = paired_comparison(paired[metric], paired[f"{metric}_base"],
                                        confidence=confidence, n_boot=n_boot)
                row.update({f"{metric}_diff": cmp["diff_mean"],
                            f"{metric}_diff_low": cmp["diff_low"],
                            f"{metric}_diff_high": cmp["diff_high"],
                            f"{metric}_p": cmp["p_wilcoxon"], f"{metric}_wins": cmp["wins"]})
            row.update({"n_pairs": cmp["n_pairs"], "p_min": cmp["p_min"],
                        "marker": significance_marker(row["srcc_diff_low"],
                                                      row["srcc_diff_high"], row["srcc_p"],
                                                      n_pairs=cmp["n_pairs"])})
        rows.append(row)
    out = pd.DataFrame(rows)
    out["_rank"] = [_method_rank(m) for m in out["method"]]
    out = out.sort_values(["dataset", "model", "fraction", "_rank"]).drop(columns="_rank")
    return out.reset_index(drop=True)


def _fmt(value, digits: int = 3, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def data_builds(runs: pd.DataFrame) -> pd.DataFrame:
    """Which build of each dataset the runs trained on.

    A proxy benchmark is built on each machine (``python -m qd_lib.data.synthetic``), and
    builds made on another CPU family differ in a few proxy MOS values (a different
    ``manifest_hash``): runs paired across builds compare coresets of different data.

    Returns
    -------
    pandas.DataFrame
        ``dataset``, ``manifest_hash`` (``""`` for runs recorded before the hash was kept),
        ``n_runs``; one row per dataset and build, known builds first.
    """
    columns = ["dataset", "manifest_hash", "n_runs"]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    hashes = (runs["manifest_hash"] if "manifest_hash" in runs
              else pd.Series("", index=runs.index))
    table = (runs.assign(manifest_hash=hashes.fillna("").astype(str))
             .groupby(["dataset", "manifest_hash"]).size().rename("n_runs").reset_index())
    table["_unknown"] = table["manifest_hash"] == ""
    return (table.sort_values(["dataset", "_unknown", "n_runs"], ascending=[True, True, False])
            .drop(columns="_unknown").reset_index(drop=True)[columns])


def mixed_build_seeds(runs: pd.DataFrame) -> pd.DataFrame:
    """The paired blocks (dataset, model, fraction, seed) whose runs trained on more than one
    known build of the dataset: their paired differences mix data builds.

    Returns
    -------
    pandas.DataFrame
        ``dataset``, ``model``, ``fraction``, ``seed``, ``n_builds``; runs without a recorded
        build are left out (their build is unknown, not different).
    """
    keys = ["dataset", "model", "fraction", "seed"]
    if runs.empty or "manifest_hash" not in runs:
        return pd.DataFrame(columns=[*keys, "n_builds"])
    known = runs[runs["manifest_hash"].fillna("").astype(str) != ""]
    counts = known.groupby(keys)["manifest_hash"].nunique().rename("n_builds").reset_index()
    return counts[counts["n_builds"] > 1].sort_values(keys).reset_index(drop=True)


def data_build_notes(runs: pd.DataFrame) -> list[str]:
    """One Markdown line per dataset: the builds its runs trained on, and a warning when
    there is more than one known build (:func:`data_builds`) naming the seeds whose paired
    runs span builds (:func:`mixed_build_seeds`)."""
    mixed = mixed_build_seeds(runs)
    lines = []
    for dataset, table in data_builds(runs).groupby("dataset", sort=True):
        known = table[table["manifest_hash"] != ""]
        unknown = int(table.loc[table["manifest_hash"] == "", "n_runs"].sum())
        parts = [f"build {h[:8]}: {n} run(s)" for h, n in zip(known["manifest_hash"],
                                                            known["n_runs"])]
        if unknown:
            parts.append(f"{unknown} run(s) recorded before the build was kept")
        line = f"- {dataset}: " + "; ".join(parts) + "."
        if len(known) > 1:
            line += (f" **{len(known)} different builds**: runs paired across builds compare "
                     "coresets of different data.")
            spans = [f"{model} {float(fraction):.0%} seed {int(seed)}" for model, fraction, seed
                     in mixed.loc[mixed["dataset"] == dataset,
                                  ["model", "fraction", "seed"]].itertuples(index=False)]
            line += (f" Seeds whose runs span builds: {', '.join(spans)}." if spans else
                     " No seed's runs span builds.")
        lines.append(line)
    return lines


def summary_markdown(summary: pd.DataFrame, *, proxy: bool = True,
                     runs: pd.DataFrame | None = None) -> str:
    """The summary as Markdown: one table per dataset × model, rows fraction × method; with
    ``runs``, the dataset builds the runs trained on (:func:`data_build_notes`) at the end."""
    lines = []
    if proxy:
        lines += ["**PROXY benchmark**: MOS from full-reference metrics, not human ratings.", ""]
    lines += ["SRCC mean over seeds [bootstrap 95 % CI, expanded percentile: with few seeds "
              "the plain percentile interval is too narrow]; Δ = mean paired difference with "
              "Random (same seed) [the same kind of CI], two-sided Wilcoxon signed-rank p, "
              "wins/pairs. "
              "▲/▼: better/worse than Random by both the CI and p < 0.05; △/▽: by the CI only; "
              f"no marker below {MIN_PAIRS_FOR_VERDICT} pairs (p cannot reach 0.05 there).",
              ""]
    for (dataset, model, epochs, features), table in summary.groupby(
            ["dataset", "model", "epochs", "feature_set"], sort=False):
        schedule = f" · {int(epochs)} epochs" if epochs is not None and epochs >= 0 else ""
        lines += [f"### {dataset} · {model}{schedule} · features {features}", "",
                  "| fraction | method | seeds | SRCC [95 % CI] | Δ SRCC vs Random [95 % CI] "
                  "| p | wins | |", "|---|---|---:|---|---|---:|---:|---|"]
        for _, r in table.iterrows():
            ci = f"{_fmt(r['srcc_mean'])} [{_fmt(r['srcc_low'])}, {_fmt(r['srcc_high'])}]"
            if r["method"] == BASELINE or pd.isna(r.get("srcc_diff")):
                diff, p, wins, mark = "–", "–", "–", ""
            else:
                diff = (f"{_fmt(r['srcc_diff'], signed=True)} "
                        f"[{_fmt(r['srcc_diff_low'], signed=True)}, "
                        f"{_fmt(r['srcc_diff_high'], signed=True)}]")
                p = _fmt(r["srcc_p"], 3)
                wins = f"{int(r['srcc_wins'])}/{int(r['n_pairs'])}"
                mark = r["marker"] or ""
            lines.append(f"| {fraction_label(r['fraction'])} | {method_label(r['method'])} | "
                         f"{int(r['n_seeds'])} | {ci} | {diff} | {p} | {wins} | {mark} |")
        lines.append("")
    if runs is not None and len(runs):
        lines += ["**Data builds** (the dataset's `manifest_hash` each run trained on):", "",
                  *data_build_notes(runs), ""]
    return "\n".join(lines)


def summary_csv_text(summary: pd.DataFrame) -> str:
    """The text of ``summary.csv`` (six decimals)."""
    return summary.to_csv(index=False, float_format="%.6f")


def write_study_tables(runs: pd.DataFrame, folder, *, proxy: bool = True,
                       provenance: dict | None = None) -> dict[str, Path]:
    """Write ``runs.csv`` and, computed from that file, ``summary.csv``/``summary.md`` into
    ``folder`` (atomically); return the paths."""
    from qd_lib.utils.io import atomic_write_text

    folder = Path(folder)
    runs_path = atomic_write_text(folder / "runs.csv", runs.to_csv(index=False,
                                                                   float_format="%.6f"))
    written = pd.read_csv(runs_path)
    summary = summarise_study(written)  # exactly what runs.csv says
    paths = {"runs": runs_path,
             "summary": atomic_write_text(folder / "summary.csv", summary_csv_text(summary)),
             "summary_md": atomic_write_text(folder / "summary.md", summary_markdown(
                 summary, proxy=proxy, runs=written))}
    if provenance is not None:
        from qd_lib.utils.io import atomic_write_json

        paths["json"] = atomic_write_json(folder / "study.json", provenance)
    logger.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return paths


def srcc_arrays(summary: pd.DataFrame, dataset: str, model: str, method: str
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(fractions, mean, low, high) of one method's SRCC curve, sorted by fraction."""
    rows = summary[(summary["dataset"] == dataset) & (summary["model"] == model)
                   & (summary["method"] == method)].sort_values("fraction")
    return (rows["fraction"].to_numpy(float), rows["srcc_mean"].to_numpy(float),
            rows["srcc_low"].to_numpy(float), rows["srcc_high"].to_numpy(float))

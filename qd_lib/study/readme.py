"""The README's "What the evidence says" section, written from the committed study files only
(no number typed by hand): ``python -m qd_lib.study readme``."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from qd_lib.data.budget import fraction_label
from qd_lib.paths import display_path
from qd_lib.study.report import BASELINE, method_label, named_method
from qd_lib.study.stats import MIN_PAIRS_FOR_VERDICT
from qd_lib.utils.readme_blocks import begin_marker, end_marker, has_block, replace_block

#: The README block's name and the command its begin marker names.
BLOCK = "study"
COMMAND = "python -m qd_lib.study readme"
BEGIN = begin_marker(BLOCK, COMMAND)
END = end_marker(BLOCK)


def _f(value, digits=3, signed=False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _verdict_kind(row) -> str:
    """The summary table's marker in words: ``"better"``/``"worse"`` only when both the
    bootstrap interval excludes zero and p < 0.05 (▲/▼), ``"leaning better"``/``"leaning
    worse"`` when the interval alone does (△/▽), ``"not distinguishable"`` otherwise, and
    ``"undecided"`` below :data:`MIN_PAIRS_FOR_VERDICT` paired seeds."""
    if int(row["n_pairs"]) < MIN_PAIRS_FOR_VERDICT:
        return "undecided"
    significant = row["srcc_p"] < 0.05
    if row["srcc_diff_high"] < 0:
        return "worse" if significant else "leaning worse"
    if row["srcc_diff_low"] > 0:
        return "better" if significant else "leaning better"
    return "not distinguishable"


def _verdict(row) -> str:
    """:func:`_verdict_kind` as a sentence with the paired difference, its interval, p and
    wins."""
    n_pairs = int(row["n_pairs"])
    diff = (f"Δ SRCC {_f(row['srcc_diff'], signed=True)} "
            f"[{_f(row['srcc_diff_low'], signed=True)}, {_f(row['srcc_diff_high'], signed=True)}]"
            f", p = {_f(row['srcc_p'])}, wins {int(row['srcc_wins'])}/{n_pairs}")
    kind = _verdict_kind(row)
    if kind == "undecided":
        return (f"not yet decided: {_count(n_pairs, 'paired seed')}, too few for a verdict "
                f"({diff})")
    if kind == "not distinguishable":
        return f"not distinguishable from Random ({diff})"
    return f"{kind} than Random ({diff})"


def _across_settings(summary: pd.DataFrame) -> list[str]:
    """One line: per Q-Diverse variant or other method with a verdict in at least one trained
    setting, how its verdicts against Random split over the settings that have one (cells
    with :data:`MIN_PAIRS_FOR_VERDICT`+ pairs), naming the settings where it is better."""
    rows = summary[summary["srcc_diff"].notna()
                   & (summary["n_pairs"] >= MIN_PAIRS_FOR_VERDICT)].copy()
    if rows.empty:
        return []
    rows["kind"] = [_verdict_kind(r) for _, r in rows.iterrows()]
    rows["named"] = rows["method"].map(named_method)
    parts = []
    order = ["better", "leaning better", "not distinguishable", "leaning worse", "worse"]
    for method, group in rows.groupby("named", sort=False):
        counts = group["kind"].value_counts()
        where = [f"{r['model']} {fraction_label(r['fraction'])} {r['dataset']}"
                 for _, r in group[group["kind"] == "better"].iterrows()]
        split = ", ".join(f"{kind} in {counts[kind]}" + (f" ({'; '.join(where)})"
                                                         if kind == "better" else "")
                          for kind in order if kind in counts)
        parts.append(f"{method_label(method)}, {_count(len(group), 'setting')}: {split}")
    return [f"**Across the trained settings** (each dataset × model × fraction with "
            f"{MIN_PAIRS_FOR_VERDICT}+ paired seeds, verdicts against Random): "
            + "; ".join(parts) + ".", ""]


def _trained(summary: pd.DataFrame, runs: pd.DataFrame) -> list[str]:
    n_seeds = int(summary["n_seeds"].max())
    seconds = runs["seconds"].sum() if "seconds" in runs else math.nan
    lines = [f"{len(runs)} trained runs ({_count(runs['model'].nunique(), 'model')} × "
             f"{_count(runs['fraction'].nunique(), 'fraction')} × "
             f"{_count(runs['method'].map(named_method).nunique(), 'method')} × up "
             f"to {n_seeds} paired seeds) on {', '.join(sorted(runs['dataset'].unique()))}; "
             f"training time {_f(seconds / 3600, 1)} h of 2-core CPU in total. Mean test SRCC "
             "with a bootstrap 95 % interval (expanded percentile, which stays honest with "
             "a handful of seeds where the plain percentile interval is too narrow), and every "
             "method's paired difference with Random (same seed) with a Wilcoxon signed-rank "
             "p-value "
             f"(the smallest p attainable with {n_seeds} pairs is {_f(2 / 2 ** n_seeds)}); the "
             "full table is `figures/study/summary.md`.", ""]
    keys = [k for k in ("dataset", "model", "epochs", "feature_set", "fraction")
            if k in summary]
    for values, cell in summary.groupby(keys, sort=False):
        where = dict(zip(keys, values))
        ranked = cell.sort_values("srcc_mean", ascending=False)
        order = ", ".join(f"{method_label(m)} {_f(v)} (n = {int(n)})" for m, v, n in
                          zip(ranked["method"], ranked["srcc_mean"], ranked["n_seeds"]))
        setting = ", ".join(f"{where[k]}" + (" epochs" if k == "epochs" else "")
                            for k in ("dataset", "epochs", "feature_set") if k in where)
        lines.append(f"- **{where['model']}, {fraction_label(where['fraction'])}** ({setting}): "
                     f"{order}.")
        # the faithful Q-Diverse first, then each trained variant or extension of it, win or lose
        stated = set()
        for _, row in cell.iterrows():
            if str(row["method"]).startswith("qdiverse") and not pd.isna(row.get("srcc_diff")):
                label = "Q-Diverse" if row["method"] == "qdiverse" else method_label(row["method"])
                lines.append(f"  {label} is {_verdict(row)}.")
                stated.add(row["method"])
        # then every other method with enough pairs for a verdict, best first
        paired = ranked[ranked["srcc_diff"].notna() & ~ranked["method"].isin(stated)]
        for _, row in paired[paired["n_pairs"] >= MIN_PAIRS_FOR_VERDICT].iterrows():
            lines.append(f"  {method_label(row['method'])} is {_verdict(row)}.")
            stated.add(row["method"])
        best = ranked.iloc[0]
        if best["method"] not in stated | {BASELINE} and not pd.isna(best.get("srcc_diff")):
            lines.append(f"  The best, {method_label(best['method'])}, is {_verdict(best)}.")
            stated.add(best["method"])
        few = paired[~paired["method"].isin(stated)]
        if not few.empty:
            lines.append(f"  Too few paired seeds for a verdict (fewer than "
                         f"{MIN_PAIRS_FOR_VERDICT}): " + ", ".join(
                             f"{method_label(m)} ({_count(int(n), 'pair')})"
                             for m, n in zip(few["method"], few["n_pairs"])) + ".")
    across = _across_settings(summary)
    return lines + ([""] + across[:-1] if across else [])


#: fewest trained runs of one model for a correlation to be quoted
MIN_RUNS_FOR_CORRELATION = 10


def _setting_label(row) -> str:
    return f"{row['model']} {fraction_label(row['fraction'])}"


def _settings_with_runs(corr: pd.DataFrame):
    """Per trained setting with enough runs: (label, its rows ordered by |spearman|)."""
    from qd_lib.study.diagnostics import SETTING

    corr = corr[corr["n"] >= MIN_RUNS_FOR_CORRELATION]
    setting = [c for c in SETTING if c in corr]
    for _, rows in corr.groupby(setting, sort=True, dropna=False):
        yield _setting_label(rows.iloc[0]), rows


def _views(r) -> str:
    """A diagnostic's correlation over runs and over method means (with the exact p)."""
    text = f"`{r.diagnostic}` {_f(r.spearman, 2, signed=True)} over runs"
    if pd.notna(getattr(r, "spearman_methods", float("nan"))):
        text += (f", {_f(r.spearman_methods, 2, signed=True)} over {int(r.n_methods)} method "
                 f"means ({_p(r.p_methods)})")
    return text


def _diagnostics(out: Path, top: int = 3) -> list[str]:
    """Per trained setting (model and fraction; SRCC scales differ, so they are not pooled):
    the diagnostics best rank-correlated with trained SRCC, over runs and over method means
    (whose p is the one to read: a method's seeds share most of their diagnostic), then within
    a method; on each robustness setting with trained runs, how the main setting's best
    predictor fares there (an out-of-sample check)."""
    path = out / "correlations.csv"
    if not path.is_file():
        return []
    corr = pd.read_csv(path)
    parts, within, leads = [], [], {}
    for label, rows in _settings_with_runs(corr):
        shown = rows.head(top)
        if "ks" not in set(shown["diagnostic"]):
            shown = pd.concat([shown, rows[rows["diagnostic"] == "ks"]])
        leads[label] = rows.iloc[0]["diagnostic"]
        parts.append(f"{label} ({rows['n'].iloc[0]} runs): "
                     + "; ".join(_views(r) for r in shown.itertuples()))
        if "spearman_within" in rows:
            inside = [f"`{r.diagnostic}` {_f(r.spearman_within, 2, signed=True)} "
                      f"({_p(r.p_within)})" for r in shown.itertuples()
                      if r.diagnostic != "ks" and pd.notna(r.spearman_within)]
            if inside:
                within.append(f"{label} ({int(shown['n_within'].max())} runs): "
                              + ", ".join(inside))
    if not parts:
        return []
    lines = ["", "**Which cheap number predicts trained SRCC** (Spearman correlation between a "
             "training-free diagnostic of a trained coreset and that run's test SRCC, per "
             "model and fraction, the best three and MOS KS, `figures/study/correlations.csv`; "
             "the p-value is over the methods' means, exact by permutation, since a method's "
             "seeds share most of their diagnostic): " + " ".join(f"{p}." for p in parts)
             + " `mean_nearest_*` is the mean distance from a training image to its nearest "
             "selected image in that space (lower: the coreset sits densely among the "
             "training images); negative: lower is better."]
    if within:
        lines.append("  Within a method (each method's mean taken off, methods with 2+ runs, "
                     "p from shuffling SRCC within methods): does the diagnostic also rank one "
                     "method's seeds? " + "; ".join(within) + ".")
    for folder, change in ROBUSTNESS:
        other = out / folder / "correlations.csv"
        if not other.is_file():
            continue
        there = pd.read_csv(other)
        for label, lead in leads.items():
            hit = there[(there.apply(_setting_label, axis=1) == label)
                        & (there["diagnostic"] == lead)]
            if hit.empty:
                continue
            lines.append(f"  With {change}, {label}'s best predictor: "
                         f"{_views(next(hit.itertuples()))} "
                         f"(`figures/study/{folder}/correlations.csv`).")
    return lines


def _p(value: float) -> str:
    return "p < 0.001" if value < 0.001 else f"p = {value:.3f}"


def _variant(option, value) -> str:
    """An ablation row's name: ``option = value``; an extension or the faithful defaults by
    name."""
    if option == "extension":
        return f"extension {value}"
    return str(value) if option in ("default", "reference") else f"{option} = {value}"


def _lead_predictor(out: Path) -> tuple:
    """``(diagnostic, setting label, spearman)``: the diagnostic best rank-correlated with
    trained SRCC over runs, in the trained setting with the most runs (at least
    :data:`MIN_RUNS_FOR_CORRELATION`); ``(None, None, None)`` when there is none."""
    path = out / "correlations.csv"
    if not path.is_file():
        return None, None, None
    settings = list(_settings_with_runs(pd.read_csv(path)))
    if not settings:
        return None, None, None
    label, rows = max(settings, key=lambda item: item[1]["n"].iloc[0])
    best = rows.iloc[0]  # ordered by |spearman|
    return best["diagnostic"], label, float(best["spearman"])


def _ablation(out: Path) -> list[str]:
    path = out / "ablation.csv"
    if not path.is_file():
        return []
    table = pd.read_csv(path)
    default = table[table["option"] == "default"]
    rows = table[~table["option"].isin(["default", "reference"])].head(3)
    ref = table[table["option"] == "reference"]
    text = ["", "**Ablation** (training-free, `figures/study/ablation.csv`, ordered by the MOS "
            "KS distance to the training split, lower is closer): "]
    items = [f"{_variant(r.option, r.value)} (KS {_f(r.ks)})" for r in rows.itertuples()]
    if len(default):
        items.append(f"faithful default KS {_f(default.iloc[0]['ks'])}")
    if len(ref):
        items.append(f"Random KS {_f(ref.iloc[0]['ks'])}")
    lines = text[:1] + [text[1] + "; ".join(items) + "."]
    lead, model, rho = _lead_predictor(out)
    if lead is not None and lead in table and lead != "ks":
        # the same variants ordered by the diagnostic that tells methods apart best in the
        # trained runs (lower is better for a negative correlation)
        ranked = table.sort_values(lead, ascending=rho < 0)
        top = ranked[~ranked["option"].isin(["default", "reference"])].head(3)
        order = [f"{_variant(r.option, r.value)} ({_f(getattr(r, lead))})"
                 for r in top.itertuples()]
        for name, rows_ in (("faithful default", default), ("Random", ref)):
            if len(rows_):
                order.append(f"{name} {_f(rows_.iloc[0][lead])}")
        lines.append(f"Ordered instead by `{lead}`, the best predictor of trained SRCC "
                     f"across the runs of {model} (Spearman {_f(rho, 2, signed=True)}, above; "
                     "chosen on runs that include the trained variants' own, so this order "
                     "describes them rather than predicting them): " + "; ".join(order) + ".")
    if "srcc_trained" in table:
        trained = table[table["srcc_trained"].notna() & (table["option"] != "reference")]
        paired = [f"{_variant(r.option, r.value)} ({int(r.n_pairs)} seeds): validation Δ "
                  f"{_f(r.val_srcc_diff, signed=True)}, test Δ {_f(r.srcc_diff, signed=True)}"
                  for r in trained.itertuples() if getattr(r, "n_pairs", 0) > 0]
        if paired:
            lines.append("Trained in the paired design (`notebooks/sweeps/study_ablation.yaml`; "
                         "mean paired SRCC difference with Random, variants are chosen on the "
                         "validation column): " + "; ".join(paired) + ".")
    return lines


def _epochs(out: Path, runs: pd.DataFrame | None) -> list[str]:
    """The epoch sweep's line from ``epochs.csv``, and the study's shortfall from ``runs``
    (the study's ``runs.csv``, ``None`` when there is none)."""
    path = out / "epochs.csv"
    if not path.is_file():
        return []
    table = pd.read_csv(path)
    parts, capped = [], []
    for (model, fraction), rows in table.groupby(["model", "fraction"], sort=False):
        rows = rows.sort_values("epochs")
        chosen = int(rows["chosen_epochs"].iloc[0])
        # a schedule measured on fewer seeds than the others says so
        most = rows["n_seeds"].max() if "n_seeds" in rows else None
        curve = ", ".join(f"{int(r.epochs)}: {_f(r.val_srcc)}"
                          + (f" ({_count(int(r.n_seeds), 'seed')})"
                             if most is not None and r.n_seeds < most else "")
                          for r in rows.itertuples())
        parts.append(f"{model} {fraction_label(fraction)}: {chosen} (val SRCC {curve})")
        if len(rows) > 1 and chosen == int(rows["epochs"].max()) and \
                rows["val_srcc"].iloc[-1] > rows["val_srcc"].iloc[-2]:
            capped.append(model)
    lines = ["", "**Epochs** (shortest schedule within 0.005 of the best final validation SRCC, "
             "`figures/study/epochs.csv`): " + "; ".join(parts) + "."]
    if capped:
        lines[-1] += (f" For {', '.join(capped)} the validation SRCC was still rising at the "
                      "longest schedule measured: that length is a compute cap, not a plateau, "
                      "and longer training could change the ranking.")
    shorter = _shorter_than_chosen(table, runs)
    if shorter:
        lines[-1] += (" The study trains " + "; ".join(shorter) + ": a compute cap, so its "
                      "trained comparisons are of models still short of their plateau.")
    return lines


def _shorter_than_chosen(table: pd.DataFrame, runs: pd.DataFrame | None) -> list[str]:
    """One phrase per model the study (its ``runs``) trains for fewer epochs than the epoch
    sweep chose, with the validation SRCC Random's schedule gives up by it."""
    if runs is None or not {"model", "epochs"} <= set(runs):
        return []
    trained = runs.dropna(subset=["epochs"]).groupby("model")["epochs"].max()
    phrases = []
    for (model, fraction), rows in table.groupby(["model", "fraction"], sort=False):
        chosen = int(rows["chosen_epochs"].iloc[0])
        if model not in trained or int(trained[model]) >= chosen:
            continue
        study = int(trained[model])
        curve = rows.set_index(rows["epochs"].astype(int))["val_srcc"]
        phrase = f"{model} for {study} epochs, short of the chosen {chosen}"
        if study in curve.index:
            phrase += (f" (Random's validation SRCC at {fraction_label(fraction)}: "
                       f"{_f(curve[study])} against {_f(curve[chosen])})")
        phrases.append(phrase)
    return phrases


#: the sub-folder of ``figures/study`` holding the paired block trained at the chosen schedule
LONG_DIR = "long"


def _paired_differences(runs: pd.DataFrame, method: str) -> pd.Series:
    """Per seed, ``method``'s test SRCC minus Random's in ``runs`` (one setting), over the seeds
    that trained both."""
    table = runs.pivot_table(index="seed", columns="method", values="srcc", aggfunc="mean")
    if BASELINE not in table or method not in table:
        return pd.Series(dtype=float)
    return (table[method] - table[BASELINE]).dropna()


def _same_setting(runs: pd.DataFrame, where: dict) -> pd.Series:
    """Rows of ``runs`` with ``where``'s dataset, model and fraction."""
    return ((runs["dataset"] == where["dataset"]) & (runs["model"] == where["model"])
            & np.isclose(runs["fraction"].astype(float), float(where["fraction"])))


def _long_schedule(out: Path, runs: pd.DataFrame | None) -> list[str]:
    """The block trained at the epoch sweep's chosen length (``out/long``): per Q-Diverse
    variant its paired difference with Random there, beside the same seeds' difference at the
    study's own length (from ``runs``, the study's ``runs.csv``), so a reader sees whether the
    gap moves with training length on the same seeds."""
    folder = out / LONG_DIR
    summary_path, runs_path = folder / "summary.csv", folder / "runs.csv"
    if not summary_path.is_file():
        return []
    if not runs_path.is_file():
        raise FileNotFoundError(f"{display_path(summary_path)} exists but "
                                f"{display_path(runs_path)} does not: run `python -m "
                                "qd_lib.study --out figures/study/long report "
                                "notebooks/sweeps/study_long.yaml` to write both.")
    summary, long_runs = pd.read_csv(summary_path), pd.read_csv(runs_path)
    settings = []
    keys = ["dataset", "model", "fraction", "epochs"]
    for values, cell in summary.groupby(keys, sort=False):
        where = dict(zip(keys, values))
        phrases = []
        here = long_runs[_same_setting(long_runs, where)
                         & (long_runs["epochs"] == where["epochs"])]
        before = None if runs is None else \
            runs[_same_setting(runs, where) & (runs["epochs"] < where["epochs"])]
        for _, row in cell[cell["method"] != BASELINE].iterrows():
            if pd.isna(row.get("srcc_diff")):
                continue
            label = "Q-Diverse" if row["method"] == "qdiverse" else method_label(row["method"])
            phrase = f"{label} is {_verdict(row)}"
            now = _paired_differences(here, row["method"])
            if before is not None and not before.empty:
                study_epochs = int(before["epochs"].max())
                then = _paired_differences(before[before["epochs"] == study_epochs],
                                           row["method"])
                seeds = sorted(set(now.index) & set(then.index))
                if seeds:
                    same = "the same seed" if len(seeds) == 1 else \
                        f"the same {len(seeds)} seeds (mean)"
                    phrase += (f"; on {same} at the study's {study_epochs} epochs its Δ SRCC was "
                               f"{_f(then[seeds].mean(), signed=True)} against "
                               f"{_f(now[seeds].mean(), signed=True)} at {int(where['epochs'])}")
            phrases.append(phrase)
        if phrases:
            settings.append(f"{where['model']} {fraction_label(where['fraction'])} "
                            f"{where['dataset']}, {int(where['epochs'])} epochs: "
                            + "; ".join(phrases))
    if not settings:
        return []
    return ["", f"**At the chosen schedule** (`{display_path(folder)}/`, the same paired design "
                "trained as long as the epoch sweep chooses): " + ". ".join(settings) + "."]


#: the labelled extensions, measured by the ablation (training-free)
EXTENSIONS = ("qdiverse_density", "qdiverse_qdpp")


def _training_free(out: Path) -> list[str]:
    """MOS KS per method and fraction (diagnostics; the ablation's rows for extensions the
    diagnostics do not hold), and
    whether Q-Diverse keeps the training MOS distribution better than Random."""
    path = out / "diagnostics.csv"
    if not path.is_file():
        return []
    table = pd.read_csv(path)
    extra = out / "ablation_seeds.csv"
    if extra.is_file():
        seeds = pd.read_csv(extra)
        extensions = [m for m in EXTENSIONS if m not in set(table["method"])]
        table = pd.concat([table, seeds[seeds["method"].isin(extensions)]], ignore_index=True)
    ks = table.groupby(["method", "fraction"])["ks"].mean().unstack()
    radius = table.groupby(["method", "fraction"])["covering_radius_content"].mean().unstack()
    n_seeds = int(table.groupby(["method", "fraction"])["seed"].nunique().min())
    fractions = list(ks.columns)
    from qd_lib.study.report import _method_rank

    shift = (table.groupby(["method", "fraction"])["mos_shift"].mean().unstack()
             .reindex(index=ks.index, columns=ks.columns) if "mos_shift" in table else None)

    def cell(method, fraction) -> str:
        if shift is None or pd.isna(shift.loc[method, fraction]):
            return _f(ks.loc[method, fraction])
        return f"{_f(ks.loc[method, fraction])} ({_f(shift.loc[method, fraction], 2, True)})"

    header = "| method | " + " | ".join(fraction_label(f) for f in fractions) + " |"
    lines = ["", f"**Training-free diagnostics** (`figures/study/diagnostics.csv`, "
             f"{n_seeds}+ seeds per cell): Kolmogorov–Smirnov distance between the coreset's "
             "MOS and the training split's (lower keeps the MOS distribution; – where not "
             "measured)" + ("" if shift is None else
                            ", and in brackets the direction of the skew: the coreset's mean "
                            "MOS minus the training mean, as a share of the MOS range "
                            "(negative: more low-quality images)") + ".", "", header,
             "|---|" + "---:|" * len(fractions)]
    for method in sorted(ks.index, key=_method_rank):
        lines.append(f"| {method_label(method)} | "
                     + " | ".join(cell(method, f) for f in fractions) + " |")
    if {"qdiverse", BASELINE} <= set(ks.index):
        worse = [f for f in fractions if ks.loc["qdiverse", f] > ks.loc[BASELINE, f]]
        reach = [f for f in fractions
                 if radius.loc["qdiverse", f] < radius.loc[BASELINE, f]]
        verdict = ("does not reproduce here" if len(worse) == len(fractions) else
                   "holds here" if not worse else "holds at some fractions only")
        lines += ["", f"The supplement's Figure 1 claim that Q-Diverse preserves the MOS "
                  f"distribution {verdict}: its KS is above Random's at {len(worse)} of "
                  f"{len(fractions)} fractions, while its content-space covering radius is "
                  f"smaller than Random's at {len(reach)} of {len(fractions)} (it reaches the "
                  "edges of the content space rather than its bulk)."]
    seconds = []
    for name in ("diagnostics.json", "ablation_seeds.json"):
        meta = out / name
        if meta.is_file():
            seconds.append(pd.read_json(meta, typ="series").get("selection_seconds", math.nan))
    if seconds:
        lines.append(f"All training-free selections of the diagnostics and the ablation took "
                     f"{_f(sum(seconds) / 60, 1)} min of CPU in total (`selection_seconds` in "
                     "`diagnostics.json` and `ablation_seeds.json`).")
    return lines


#: the robustness checks' training-free diagnostics: sub-folder of the study's outputs → what
#: changes against the main setting
ROBUSTNESS = (("features", "the `offline-deep` quality embedding (multi-layer MobileNet-V2 "
               "feature-map statistics) instead of NSS"),
              ("authentic", "the authentic-like proxy preset (`proxy-authentic`)"))


def _ks_rank(path: Path, fraction: float) -> tuple[int, int, float, float] | None:
    """Q-Diverse's rank by mean MOS KS among the diagnosed methods at ``fraction`` (1 = closest
    to the training MOS), the number of methods, and Q-Diverse's and Random's KS."""
    table = pd.read_csv(path)
    ks = table[table["fraction"].round(6) == round(fraction, 6)].groupby("method")["ks"].mean()
    if "qdiverse" not in ks or BASELINE not in ks:
        return None
    rank = int((ks < ks["qdiverse"]).sum()) + 1
    return rank, len(ks), float(ks["qdiverse"]), float(ks[BASELINE])


def _robustness(out: Path, fraction: float = 0.1) -> list[str]:
    main = out / "diagnostics.csv"
    if not main.is_file() or _ks_rank(main, fraction) is None:
        return []
    rank, n, q, r = _ks_rank(main, fraction)
    lines = []
    for folder, change in ROBUSTNESS:
        path = out / folder / "diagnostics.csv"
        found = _ks_rank(path, fraction) if path.is_file() else None
        if found is None:
            continue
        rank_b, n_b, q_b, r_b = found
        lines.append(f"- With {change} (`figures/study/{folder}/diagnostics.csv`), at "
                     f"{fraction_label(fraction)}: Q-Diverse's MOS KS {_f(q_b)} against "
                     f"Random's {_f(r_b)}, rank {rank_b} of {n_b} methods by KS (main "
                     f"setting: {_f(q)} against {_f(r)}, rank {rank} of {n}).")
    if not lines:
        return []
    return ["", "**Robustness checks, training-free** (trained comparisons appear in the list "
            "above once their runs are committed):"] + lines


#: what "fits in one night" means for the wall-time line
NIGHT_HOURS = 10


def timing_machine(runs: pd.DataFrame) -> pd.Series:
    """Which machine timed each run: the recorded machine (``machine`` column), else the proxy
    build it trained on (``"the build-8d2d9f8d machine"``: builds differ by CPU family, so a
    build stands for one), else ``"an unrecorded machine"``."""
    recorded = runs["machine"] if "machine" in runs else pd.Series(None, index=runs.index)
    builds = runs["manifest_hash"] if "manifest_hash" in runs else pd.Series(None,
                                                                           index=runs.index)
    return pd.Series([m if isinstance(m, str) and m else
                      f"the build-{b[:8]} machine" if isinstance(b, str) and b
                      else "an unrecorded machine" for m, b in zip(recorded, builds)],
                     index=runs.index)


def _wall_time(out: Path, grid: pd.DataFrame | None, workers: int = 2) -> list[str]:
    """Measured minutes per run (``runs.csv`` and the epoch sweep's runs of the same schedule)
    and what the main sweep's grid costs at those times with ``workers`` runs in parallel.

    Machines differ (one 2-core machine trains twice as fast as another), so a cell timed on
    several machines gets one time per machine (:func:`timing_machine`) and the grid's cost is
    given for the fastest and the slowest machine that timed each cell."""
    if grid is None or grid.empty:
        return []
    keys = ["model", "fraction", "epochs"]
    timed = [pd.read_csv(p) for p in (out / "runs.csv", out / "epochs" / "runs.csv")
             if p.is_file()]
    if not timed:
        return []
    runs = pd.concat(timed, ignore_index=True).drop_duplicates("run_id")
    if "dataset" in grid and "dataset" in runs:  # another dataset's runs time another grid
        runs = runs[runs["dataset"].isin(set(grid["dataset"])) | runs["dataset"].isna()]
    runs["fraction"] = runs["fraction"].round(6)
    runs["timing_machine"] = timing_machine(runs)
    per_machine = runs.groupby([*keys, "timing_machine"])["seconds"].agg(["mean", "count"])
    cells = grid.assign(fraction=grid["fraction"].round(6)).groupby(keys).size()
    parts, fastest, slowest, missing = [], 0.0, 0.0, []
    several = runs["timing_machine"].nunique() > 1
    for key, count in cells.items():
        if key not in per_machine.index.droplevel("timing_machine"):
            missing.append(f"{key[0]} {fraction_label(key[1])} ({_count(count, 'run')})")
            continue
        times = per_machine.loc[key].sort_values("mean")
        fastest += count * times["mean"].iloc[0] / 60
        slowest += count * times["mean"].iloc[-1] / 60
        if several:
            timed_on = ", ".join(f"{_f(row['mean'] / 60, 0)} min on {machine} "
                                 f"({int(row['count'])} timed)"
                                 for machine, row in times.iterrows())
        else:
            timed_on = (f"{_f(times['mean'].iloc[0] / 60, 0)} min "
                        f"({int(times['count'].iloc[0])} timed)")
        parts.append(f"{key[0]} {fraction_label(key[1])} ({_count(count, 'run')} in the grid), "
                     f"per run: {timed_on}")
    where = "2-core machines" if several else "the 2-core machine"
    text = (f"**Wall time.** Measured per training run on {where}, {workers} runs in parallel "
            "with one torch thread each: " + "; ".join(parts) + ". ")
    if parts:
        hours = (f"{_f(fastest / 60 / workers, 1)} h on the fastest machine that timed each cell "
                 f"and {_f(slowest / 60 / workers, 1)} h on the slowest" if several and
                 slowest > fastest else f"{_f(fastest / 60 / workers, 1)} h")
        over_night = fastest / 60 / workers > NIGHT_HOURS
        if missing:
            text += (f"At these times the timed part of the main grid needs {hours}; not yet "
                     f"timed: {', '.join(missing)}.")
        else:
            text += f"At these times the whole main grid needs {hours}" + (
                "." if over_night else ", and the study resumes where it stopped.")
        if over_night:
            text += (f" That is more than one {NIGHT_HOURS}-hour night on 2 cores: the grid is "
                     "trained in stages (`run --models/--fractions/--methods/--seeds`), each "
                     "resuming where the last stopped.")
        if several:
            text += (" Times include whatever else ran beside the study; a machine named by its "
                     "proxy build recorded no CPU model (runs before machines were kept; builds "
                     "differ by CPU family), and new runs record their machine and the 15-minute "
                     "load average when they finished (`machine`, `load_15min` in `runs.csv`).")
    return ["", text]


def evidence_body(out: Path, grid: pd.DataFrame | None = None) -> str:
    """The generated Markdown between :data:`BEGIN` and :data:`END`, from the study files in
    ``out`` (``figures/study``) only; ``grid`` (one row per run of the main sweep: ``model,
    fraction, epochs``, :func:`qd_lib.study.commands.study_grid`) adds the wall-time estimate."""
    out = Path(out)
    lines = ["**PROXY benchmark** (MOS from full-reference metrics, not human "
             "ratings), CPU `small` models: evidence about this workbench's offline setting, "
             "not about the paper's claim on human-rated datasets.", ""]
    runs_path, summary_path = out / "runs.csv", out / "summary.csv"
    runs = pd.read_csv(runs_path) if runs_path.is_file() else None
    if summary_path.is_file():
        if runs is None:
            raise FileNotFoundError(f"{display_path(summary_path)} exists but "
                                    f"{display_path(runs_path)} does not: run `python -m "
                                    "qd_lib.study report` to write both.")
        lines += _trained(pd.read_csv(summary_path), runs)
    else:
        lines.append("No trained study results are committed yet.")
    lines += _wall_time(out, grid)
    lines += (_training_free(out) + _robustness(out) + _diagnostics(out) + _ablation(out)
              + _epochs(out, runs) + _long_schedule(out, runs))
    return "\n".join(lines)


def evidence_section(out: Path, grid: pd.DataFrame | None = None) -> str:
    """The whole block: :data:`BEGIN`, :func:`evidence_body` and :data:`END`."""
    return f"{BEGIN}\n\n{evidence_body(out, grid)}\n\n{END}"


def replace_section(readme: str, section: str) -> str:
    """``readme`` with the study block holding ``section`` (a whole block, as
    :func:`evidence_section` writes it), appended under a heading when the README has no
    study markers yet; broken markers raise
    :class:`~qd_lib.utils.readme_blocks.ReadmeBlockError`."""
    if has_block(readme, BLOCK):
        body = section.removeprefix(BEGIN).removesuffix(END)
        return replace_block(readme, BLOCK, body, command=COMMAND)
    return readme.rstrip() + "\n\n## What the evidence says\n\n" + section + "\n"

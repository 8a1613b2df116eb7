"""Figures of the evidence study: SRCC vs fraction with CI bands, paired differences with
Random (forest plot), and diagnostics against trained SRCC (scatter)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from qd_lib.data.budget import fraction_label
from qd_lib.viz.figures import PALETTE


def _label(method: str) -> str:
    from qd_lib.study.report import method_label

    return method_label(method)


#: method colours: the palette without black (Random is drawn dark grey), then Tol's muted
#: colours, so that up to eleven methods stay apart
_METHOD_COLOURS = tuple(c for c in PALETTE if c != "#000000") + (
    "#882255", "#44AA99", "#999933", "#AA4499")


def _named(summary: pd.DataFrame) -> pd.DataFrame:
    """``summary`` with each method under its registered name, so that a named variant trained
    under its option string on one dataset (``qdiverse[row_normalize=True]``) and under its
    name on another (``qdiverse_rownorm``) is one row, one colour, one legend entry."""
    from qd_lib.study.report import named_method

    return summary.assign(method=summary["method"].map(named_method))


def _colours(methods) -> dict:
    others = [m for m in methods if m != "random"]
    colours = {m: _METHOD_COLOURS[i % len(_METHOD_COLOURS)] for i, m in enumerate(others)}
    return {m: "0.2" if m == "random" else colours[m] for m in methods}


def plot_srcc_vs_fraction(summary: pd.DataFrame, *, proxy: bool = True, metric: str = "srcc"):
    """One panel per dataset × model: mean SRCC over seeds against the coreset fraction, with
    the bootstrap 95 % interval as a band and as error bars (a method trained at one fraction
    only has no band); Random drawn dashed. Methods are dodged sideways a little so that
    their intervals do not hide each other; one legend for all panels."""
    summary = _named(summary)
    panels = list(summary.groupby(["dataset", "model"], sort=False))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels) + 2.6, 3.4),
                             squeeze=False)
    methods = list(dict.fromkeys(summary["method"]))
    colours = _colours(methods)
    handles = {}
    for ax, ((dataset, model), table) in zip(axes[0], panels):
        fractions = np.sort(table["fraction"].unique()) * 100
        gap = np.diff(fractions).min() if len(fractions) > 1 else 2.0
        shown = [m for m in methods if (table["method"] == m).any()]
        dodge = dict(zip(shown, np.linspace(-0.3, 0.3, len(shown)) * gap
                         if len(shown) > 1 else [0.0]))
        for method in shown:
            rows = table[table["method"] == method].sort_values("fraction")
            x = rows["fraction"].to_numpy(float) * 100 + dodge[method]
            mean = rows[f"{metric}_mean"].to_numpy(float)
            low = np.nan_to_num(mean - rows[f"{metric}_low"].to_numpy(float))
            high = np.nan_to_num(rows[f"{metric}_high"].to_numpy(float) - mean)
            line = ax.errorbar(x, mean, yerr=np.vstack([low, high]), marker="o", ms=3.5,
                               capsize=2, color=colours[method],
                               linestyle="--" if method == "random" else "-")
            ax.fill_between(x, mean - low, mean + high, alpha=0.15, color=colours[method],
                            linewidth=0)
            handles.setdefault(_label(method), line)
        ax.set_xticks(fractions, [f"{f:g}" for f in fractions])
        ax.set_xlim(fractions[0] - gap, fractions[-1] + gap)
        ax.set(xlabel="coreset fraction (%)", ylabel=f"test {metric.upper()}",
               title=f"{dataset} · {model}" + (" (PROXY MOS)" if proxy else ""))
    fig.legend(list(handles.values()), list(handles), frameon=False, fontsize=7,
               loc="center right")
    fig.tight_layout(rect=(0, 0, 1 - 2.5 / (4.4 * len(panels) + 2.6), 1))
    return fig


def plot_paired_forest(summary: pd.DataFrame, *, metric: str = "srcc", proxy: bool = True):
    """Paired difference with Random per method (rows), one marker per dataset × model ×
    fraction with its bootstrap 95 % interval and its number of pairs; the zero line is "as
    good as Random". Hollow markers: fewer pairs than a verdict needs
    (:data:`~qd_lib.study.stats.MIN_PAIRS_FOR_VERDICT`)."""
    from matplotlib.ticker import MaxNLocator

    from qd_lib.study.stats import MIN_PAIRS_FOR_VERDICT

    data = _named(summary[summary[f"{metric}_diff"].notna()])
    methods = list(dict.fromkeys(data["method"]))
    settings = list(dict.fromkeys(zip(data["dataset"], data["model"], data["fraction"])))
    fig, ax = plt.subplots(figsize=(7.6, 0.55 * len(methods) * max(1, len(settings)) ** 0.5
                                    + 1.6))
    offsets = np.linspace(-0.3, 0.3, len(settings)) if len(settings) > 1 else [0.0]
    for k, (dataset, model, fraction) in enumerate(settings):
        rows = data[(data["dataset"] == dataset) & (data["model"] == model)
                    & (data["fraction"] == fraction)]
        colour = PALETTE[k % len(PALETTE)]
        label = f"{model} {fraction_label(fraction)}" + (
            f" ({dataset})" if data["dataset"].nunique() > 1 else "")
        pairs = rows["n_pairs"].to_numpy(int) if "n_pairs" in rows else \
            np.full(len(rows), MIN_PAIRS_FOR_VERDICT)
        for enough in (True, False):
            part = rows[(pairs >= MIN_PAIRS_FOR_VERDICT) == enough]
            if part.empty:
                continue
            y = np.array([methods.index(m) for m in part["method"]]) + offsets[k]
            mean = part[f"{metric}_diff"].to_numpy(float)
            # a single pair has no interval: draw the point alone
            low = np.nan_to_num(mean - part[f"{metric}_diff_low"].to_numpy(float))
            high = np.nan_to_num(part[f"{metric}_diff_high"].to_numpy(float) - mean)
            ax.errorbar(mean, y, xerr=np.vstack([low, high]), fmt="o", ms=4.5, capsize=2,
                        color=colour, markerfacecolor=colour if enough else "white",
                        label=label)
            label = None
        for m, d, n in zip(rows["method"], rows[f"{metric}_diff"], pairs):
            ax.annotate(f"n={n}", (d, methods.index(m) + offsets[k]), xytext=(0, 5),
                        textcoords="offset points", fontsize=6, ha="center", color=colour)
    ax.axvline(0, color="0.3", linewidth=1)
    ax.xaxis.set_major_locator(MaxNLocator(6))
    ax.set_yticks(range(len(methods)), [_label(m) for m in methods])
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric.upper()} − Random's (same seed): mean, 95 % CI, n pairs; "
                  f"hollow: < {MIN_PAIRS_FOR_VERDICT} pairs", fontsize=8)
    ax.set_title("Paired difference with Random" + (" · PROXY MOS" if proxy else ""),
                 fontsize=10)
    # below the axis label, where it cannot cover a marker
    ax.legend(frameon=False, fontsize=7, loc="upper right", bbox_to_anchor=(1.0, -0.07))
    fig.tight_layout()
    return fig


def plot_diagnostic_scatter(merged: pd.DataFrame, correlations: pd.DataFrame, *,
                            top: int = 4, proxy: bool = True):
    """Trained SRCC against the ``top`` diagnostics best correlated with it in one trained
    setting (model, schedule, fraction: the one with the most matched runs; settings are not
    pooled, their SRCC scales differ), one point per trained run, coloured by method; each
    title gives the correlation over runs and over the methods' means."""
    from qd_lib.study.diagnostics import SETTING

    setting = [c for c in SETTING if c in correlations and c in merged]
    lead = correlations.sort_values("n", ascending=False, kind="stable").iloc[0]
    chosen = correlations[(correlations[setting] == lead[setting]).all(axis=1)].head(top)
    runs = merged[(merged[setting] == lead[setting]).all(axis=1)]
    where = f"{lead['model']} {fraction_label(lead['fraction'])}" \
        if {"model", "fraction"} <= set(setting) else ""
    fig, axes = plt.subplots(1, max(1, len(chosen)), figsize=(3.6 * max(1, len(chosen)) + 2.4,
                                                               3.4), squeeze=False)
    methods = list(dict.fromkeys(runs["method"]))
    colours = _colours(methods)
    handles = {}
    for ax, (_, row) in zip(axes[0], chosen.iterrows()):
        for method in methods:
            part = runs[runs["method"] == method]
            handles[_label(method)] = ax.scatter(part[row["diagnostic"]], part["srcc"], s=12,
                                                 alpha=0.75, color=colours[method])
        title = f"{where}: runs {row['spearman']:+.2f} (n={row['n']})"
        if pd.notna(row.get("spearman_methods")):
            title += f"\nmethod means {row['spearman_methods']:+.2f} (n={row['n_methods']})"
        ax.set(xlabel=row["diagnostic"], ylabel="test SRCC" + (" (PROXY)" if proxy else ""))
        ax.set_title(title, fontsize=9)
    if handles:
        fig.legend(list(handles.values()), list(handles), frameon=False, fontsize=7,
                   loc="center right")
    fig.tight_layout(rect=(0, 0, 1 - 2.3 / (3.6 * max(1, len(chosen)) + 2.4), 1))
    return fig

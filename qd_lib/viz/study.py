"""Figures of the evidence study: SRCC vs fraction with CI bands, paired differences with
Random (forest plot), and diagnostics against trained SRCC (scatter)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from qd_lib.data.budget import fraction_label
from qd_lib.viz.figures import PALETTE


def _label(method: str) -> str:
    from qd_lib.selection import available_methods, get_method

    return get_method(method).label if method in available_methods() else method


def _colours(methods) -> dict:
    return {m: ("0.2" if m == "random" else PALETTE[i % len(PALETTE)])
            for i, m in enumerate(methods)}


def plot_srcc_vs_fraction(summary: pd.DataFrame, *, proxy: bool = True, metric: str = "srcc"):
    """One panel per dataset × model: mean SRCC over seeds against the coreset fraction, with
    the bootstrap 95 % interval as a band; Random drawn dashed."""
    panels = list(summary.groupby(["dataset", "model"], sort=False))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.4), squeeze=False)
    methods = list(dict.fromkeys(summary["method"]))
    colours = _colours(methods)
    for ax, ((dataset, model), table) in zip(axes[0], panels):
        for method in methods:
            rows = table[table["method"] == method].sort_values("fraction")
            if rows.empty:
                continue
            x = rows["fraction"].to_numpy(float) * 100
            ax.plot(x, rows[f"{metric}_mean"], marker="o", ms=3.5, color=colours[method],
                    linestyle="--" if method == "random" else "-", label=_label(method))
            ax.fill_between(x, rows[f"{metric}_low"], rows[f"{metric}_high"], alpha=0.15,
                            color=colours[method], linewidth=0)
        ax.set(xlabel="coreset fraction (%)", ylabel=f"test {metric.upper()}",
               title=f"{dataset} · {model}" + (" (PROXY MOS)" if proxy else ""))
    axes[0][-1].legend(frameon=False, fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def plot_paired_forest(summary: pd.DataFrame, *, metric: str = "srcc", proxy: bool = True):
    """Paired difference with Random per method (rows), one marker per model × fraction with its
    bootstrap 95 % interval; the zero line is "as good as Random"."""
    data = summary[summary[f"{metric}_diff"].notna()].copy()
    methods = list(dict.fromkeys(data["method"]))
    settings = list(dict.fromkeys(zip(data["dataset"], data["model"], data["fraction"])))
    fig, ax = plt.subplots(figsize=(6.4, 0.55 * len(methods) * max(1, len(settings)) ** 0.5
                                    + 1.4))
    offsets = np.linspace(-0.3, 0.3, len(settings)) if len(settings) > 1 else [0.0]
    for k, (dataset, model, fraction) in enumerate(settings):
        rows = data[(data["dataset"] == dataset) & (data["model"] == model)
                    & (data["fraction"] == fraction)]
        y = np.array([methods.index(m) for m in rows["method"]]) + offsets[k]
        mean = rows[f"{metric}_diff"].to_numpy(float)
        err = np.vstack([mean - rows[f"{metric}_diff_low"].to_numpy(float),
                         rows[f"{metric}_diff_high"].to_numpy(float) - mean])
        label = f"{model} {fraction_label(fraction)}" + (
            f" ({dataset})" if data["dataset"].nunique() > 1 else "")
        ax.errorbar(mean, y, xerr=err, fmt="o", ms=4, capsize=2, color=PALETTE[k % 8],
                    label=label)
    ax.axvline(0, color="0.3", linewidth=1)
    ax.set_yticks(range(len(methods)), [_label(m) for m in methods])
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric.upper()} − Random's {metric.upper()} (same seed), mean and "
                  "95 % CI")
    ax.set_title("Paired difference with Random" + (" · PROXY MOS" if proxy else ""))
    ax.legend(frameon=False, fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def plot_diagnostic_scatter(merged: pd.DataFrame, correlations: pd.DataFrame, *,
                            top: int = 4, proxy: bool = True):
    """Trained SRCC against the ``top`` diagnostics best correlated with it (pooled over
    models), one point per trained run, coloured by method."""
    pooled = correlations[correlations["model"] == "all"].head(top)
    fig, axes = plt.subplots(1, len(pooled), figsize=(3.6 * len(pooled), 3.2), squeeze=False)
    methods = list(dict.fromkeys(merged["method"]))
    colours = _colours(methods)
    for ax, (_, row) in zip(axes[0], pooled.iterrows()):
        for method in methods:
            part = merged[merged["method"] == method]
            ax.scatter(part[row["diagnostic"]], part["srcc"], s=10, alpha=0.7,
                       color=colours[method], label=_label(method))
        ax.set(xlabel=row["diagnostic"], ylabel="test SRCC" + (" (PROXY)" if proxy else ""),
               title=f"Spearman {row['spearman']:+.2f} (n={row['n']})")
    if len(pooled):
        axes[0][-1].legend(frameon=False, fontsize=6, loc="best")
    fig.tight_layout()
    return fig

"""MOS coverage plots (supplement Figure 1): full training split vs coreset."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from scipy import stats


def plot_mos_coverage(mos_full, mos_subset, *, mos_range, bins: int = 20, ax=None,
                      label: str = "coreset", title: str | None = None, proxy: bool = False):
    """Densities of the full split's and the coreset's MOS (histogram + KDE)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(3.6, 2.6))
    full = np.asarray(mos_full, dtype=np.float64)
    sub = np.asarray(mos_subset, dtype=np.float64)
    lo, hi = mos_range
    edges = np.linspace(lo, hi, bins + 1)
    grid = np.linspace(lo, hi, 200)
    for values, name, color, fill in ((full, f"full ({len(full)})", "0.45", True),
                                      (sub, f"{label} ({len(sub)})", "C3", False)):
        ax.hist(values, bins=edges, density=True, histtype="stepfilled" if fill else "step",
                alpha=0.35 if fill else 0.9, color=color, linewidth=1.4)
        if len(values) > 2 and np.ptp(values) > 0:
            ax.plot(grid, stats.gaussian_kde(values)(grid), color=color, linewidth=1.6,
                    label=name)
        else:
            ax.plot([], [], color=color, label=name)
    ax.set(xlabel="proxy MOS" if proxy else "MOS", ylabel="density", xlim=(lo, hi))
    if title:
        ax.set_title(title)
    ax.legend(frameon=False)
    return ax


def plot_coverage_panels(mos_full, subsets, *, mos_range, proxy: bool = False, bins: int = 20,
                         ncols: int = 4):
    """One coverage panel per coreset: ``subsets`` maps a label to the coreset's MOS."""
    labels = list(subsets)
    nrows = int(np.ceil(len(labels) / ncols))
    fig, axes = plt.subplots(nrows, min(ncols, len(labels)),
                             figsize=(3.4 * min(ncols, len(labels)), 2.6 * nrows), squeeze=False)
    for ax, label in zip(axes.flat, labels):
        plot_mos_coverage(mos_full, subsets[label], mos_range=mos_range, bins=bins, ax=ax,
                          label="coreset", title=label, proxy=proxy)
    for ax in list(axes.flat)[len(labels):]:
        ax.set_axis_off()
    fig.tight_layout()
    return fig

"""Plots of the classification coreset experiment (supplement §F.3, Table 4)."""
from __future__ import annotations

import numpy as np

from qd_lib.viz.figures import PALETTE

__all__ = ["plot_accuracy_by_fraction"]


def plot_accuracy_by_fraction(long, *, ax=None, title: str | None = None, quoted: bool = True):
    """Accuracy (%) against dataset fraction, one line per method, ±std as error bars.

    Parameters
    ----------
    long : pandas.DataFrame
        :attr:`qd_lib.classification.Table4.long` (columns fraction, source, method, mean,
        std).
    ax : matplotlib Axes, optional
    title : str, optional
    quoted : bool, default=True
        Also draw the supplement's quoted CIFAR-10 values as hollow markers on dashed lines
        (labelled "quoted, CIFAR-10"); leave them out next to a stand-in's runs.

    Returns
    -------
    matplotlib Axes
    """
    import matplotlib.pyplot as plt

    from qd_lib.classification.tables import METHOD_COLUMNS

    if ax is None:
        _, ax = plt.subplots(figsize=(5.2, 3.4))
    methods = [m for m in METHOD_COLUMNS if m in set(long["method"])]
    for i, method in enumerate(methods):
        color = PALETTE[i % len(PALETTE)]
        for source, style in (("run", "-o"), ("quoted", "--s")):
            if source == "quoted" and not quoted:
                continue
            part = long[(long["method"] == method) & (long["source"] == source)]
            if part.empty:
                continue
            part = part.sort_values("fraction")
            x = 100 * part["fraction"].to_numpy(dtype=float)
            ax.errorbar(x, part["mean"], yerr=np.nan_to_num(part["std"].to_numpy(dtype=float)),
                        fmt=style, color=color, capsize=3, markersize=4,
                        markerfacecolor="none" if source == "quoted" else color,
                        label=METHOD_COLUMNS[method] + (" (quoted, CIFAR-10)"
                                                        if source == "quoted" else ""))
    shown = long if quoted else long[long["source"] == "run"]
    ax.set_xticks(sorted({100 * float(f) for f in shown["fraction"]}))
    ax.set_xlabel("dataset fraction (%)")
    ax.set_ylabel("top-1 test accuracy (%)")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    return ax

"""Coreset maps on a t-SNE layout, in the style of the supplement's Figures 2–6: every image
coloured by MOS, coreset points in red, darker where selections are dense."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import cm, colors
from scipy import stats

from qd_lib.data.budget import fraction_label


def _density(points: np.ndarray) -> np.ndarray:
    if len(points) < 3:
        return np.ones(len(points))
    try:
        return stats.gaussian_kde(points.T)(points.T)
    except np.linalg.LinAlgError:  # collinear points: no 2-D density
        return np.ones(len(points))


RATED_COLOUR = "#0072B2"
"""Colour of the images already rated on a label-free map (Okabe–Ito blue)."""


def plot_coreset_map(layout, mos, selected, *, ax=None, title: str | None = None,
                     mos_norm=None, point_size: float = 6.0, rated=None, legend: bool = False):
    """One map: all images coloured by MOS, the coreset in red shaded by local density.

    Parameters
    ----------
    layout : ndarray of shape (n, 2)
        t-SNE coordinates (see :func:`qd_lib.analysis.tsne.tsne_layout`).
    mos : array-like of shape (n,) or None
        ``None`` for images without MOS (a label-free set): every image is drawn in grey.
    selected : array-like of int
        Coreset row indices.
    ax : matplotlib Axes, optional
    title : str, optional
    mos_norm : matplotlib Normalize, optional
        Shared colour scale for grids.
    rated : array-like of int, optional
        Rows already rated before this selection, drawn as blue squares under the coreset.
    legend : bool, default=False
        Add a legend naming the point kinds.

    Returns
    -------
    matplotlib.collections.PathCollection
        The MOS scatter (for a colour bar; the grey scatter when ``mos`` is ``None``).
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(3.2, 3.2))
    layout = np.asarray(layout)
    idx = np.asarray(selected, dtype=np.int64)
    if mos is None:
        background = ax.scatter(layout[:, 0], layout[:, 1], c="0.6", s=point_size, alpha=0.45,
                                linewidths=0, rasterized=True, label="candidates")
    else:
        mos = np.asarray(mos, dtype=np.float64)
        norm = mos_norm or colors.Normalize(mos.min(), mos.max())
        background = ax.scatter(layout[:, 0], layout[:, 1], c=mos, cmap="viridis", norm=norm,
                                s=point_size, alpha=0.35, linewidths=0, rasterized=True,
                                label="images")
    if rated is not None and len(rated):
        done = np.asarray(rated, dtype=np.int64)
        ax.scatter(layout[done, 0], layout[done, 1], marker="s", s=point_size * 2.2,
                   facecolors="none", edgecolors=RATED_COLOUR, linewidths=0.9,
                   rasterized=True, label=f"already rated ({len(done)})")
    if len(idx):
        dens = _density(layout[idx])
        order = np.argsort(dens)  # dense points drawn last
        shade = 0.45 + 0.55 * (dens - dens.min()) / (np.ptp(dens) or 1.0)
        ax.scatter(layout[idx[order], 0], layout[idx[order], 1],
                   c=cm.Reds(shade[order]), s=point_size * 1.8, linewidths=0.2,
                   edgecolors="darkred", rasterized=True, label=f"picks ({len(idx)})")
    if legend:
        ax.legend(loc="best", frameon=True, framealpha=0.8, markerscale=1.5)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    if title:
        ax.set_title(title)
    return background


def plot_coreset_grid(layout, mos, selections, *, proxy: bool = False, figsize=None):
    """Grid of coreset maps: rows are methods, columns fractions.

    Parameters
    ----------
    layout : ndarray of shape (n, 2)
    mos : array-like of shape (n,)
    selections : mapping
        ``{method: {fraction: indices}}``.
    proxy : bool, default=False
        Label the colour bar as proxy MOS.

    Returns
    -------
    matplotlib Figure
    """
    methods = list(selections)
    fractions = sorted({f for per in selections.values() for f in per})
    size = figsize or (2.3 * len(fractions) + 0.8, 2.3 * len(methods))
    fig, axes = plt.subplots(len(methods), len(fractions), figsize=size, squeeze=False)
    norm = colors.Normalize(float(np.min(mos)), float(np.max(mos)))
    mappable = None
    for r, method in enumerate(methods):
        for c, fraction in enumerate(fractions):
            ax = axes[r, c]
            idx = selections[method].get(fraction)
            if idx is None:
                ax.set_axis_off()
                continue
            mappable = plot_coreset_map(layout, mos, idx, ax=ax, mos_norm=norm)
            if r == 0:
                ax.set_title(fraction_label(fraction))
            if c == 0:
                ax.set_ylabel(method)
    if mappable is not None:
        bar = fig.colorbar(mappable, ax=axes, shrink=0.6, pad=0.02)
        bar.set_label("proxy MOS" if proxy else "MOS")
        bar.solids.set(alpha=1)
    return fig

"""MOS distribution plots."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from qd_lib.data.manifest import SPLIT_PARTS, Manifest


def plot_mos_histogram(manifest: Manifest, *, scheme: str | None = None, bins: int = 20,
                       ax=None):
    """Histogram of MOS on the native scale, one step curve per split part of ``scheme``.

    Parameters
    ----------
    manifest : Manifest
    scheme : str, optional
        Split scheme whose parts are drawn separately; ``None`` draws all images.
    bins : int, default=20
        Equal-width bins over the dataset's fixed MOS range.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3))
    lo, hi = manifest.info.mos_range
    edges = np.linspace(lo, hi, bins + 1)
    mos = manifest.table["mos"].to_numpy()
    if scheme is None:
        ax.hist(mos, bins=edges, histtype="stepfilled", alpha=0.6, label=f"all ({len(mos)})")
    else:
        for part in SPLIT_PARTS:
            rows = manifest.split_indices(scheme, part)
            if len(rows):
                ax.hist(mos[rows], bins=edges, histtype="step", linewidth=1.6,
                        label=f"{part} ({len(rows)})")
    ax.set(xlabel="proxy MOS" if manifest.info.proxy else "MOS", ylabel="images", xlim=(lo, hi),
           title=f"{manifest.name}" + (f" — split '{scheme}'" if scheme else ""))
    ax.legend(frameon=False)
    return ax


def plot_mos_by_level(manifest: Manifest, *, ax=None):
    """Mean MOS per distortion level, one line per distortion type."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3))
    table = manifest.table.dropna(subset=["distortion", "level"])
    means = table.groupby(["distortion", "level"])["mos"].mean().unstack("distortion")
    ax.plot(means.index, means.to_numpy(), color="0.6", linewidth=0.8, alpha=0.7)
    ax.plot(means.index, means.mean(axis=1), color="C3", linewidth=2.2, label="mean over types")
    ax.set(xlabel="distortion level", ylabel="mean MOS" + (" (proxy)" if manifest.info.proxy
                                                           else ""),
           xticks=list(means.index), title=f"{manifest.name}: MOS by level")
    ax.legend(frameon=False)
    return ax

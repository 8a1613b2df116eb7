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


_SEVERITY_EDGES = np.array([0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0])


def _binned_quartiles(x: np.ndarray, y: np.ndarray, *, integer: bool):
    """(x position, 25 %, 50 %, 75 %) of ``y`` per whole ``x`` (integer levels) or per
    severity bin (continuous levels); bins with fewer than 5 values are dropped."""
    if integer:
        keys, centres = x.astype(int), np.unique(x.astype(int)).astype(float)
        groups = [y[keys == k] for k in centres.astype(int)]
    else:
        index = np.clip(np.digitize(x, _SEVERITY_EDGES[1:-1]), 0, len(_SEVERITY_EDGES) - 2)
        centres = (_SEVERITY_EDGES[:-1] + _SEVERITY_EDGES[1:]) / 2
        groups = [y[index == k] for k in range(len(centres))]
    keep = [k for k, g in enumerate(groups) if len(g) >= 5]
    q = np.array([np.percentile(groups[k], [25, 50, 75]) for k in keep]).reshape(-1, 3)
    return centres[keep], q[:, 0], q[:, 1], q[:, 2]


def plot_proxy_composition(manifests, *, human=None, bins: int = 32):
    """Make-up of proxy benchmarks side by side (one colour per benchmark).

    Four panels: (a) the MOS histogram (density; human-rated datasets in ``human`` as dashed
    outlines, their MOS rescaled to 1–5); (b) MOS by the number of composed distortion types
    (box plots); (c) MOS against severity (grid: the level; authentic: the largest component
    severity): medians with interquartile bands, authentic images split by their number of
    types and drawn as faint points; (d) the mean MOS of the images that contain each
    distortion type.

    Parameters
    ----------
    manifests : mapping of str to Manifest
        The proxy benchmarks (e.g. ``proxy-default`` and ``proxy-authentic``).
    human : mapping of str to Manifest, optional
        Human-rated datasets drawn in panel (a) only.
    bins : int, default=32
        Histogram bins over [1, 5].

    Returns
    -------
    matplotlib.figure.Figure
    """
    from qd_lib.data.synthetic.composition import distortion_components, n_distortions
    from qd_lib.viz.figures import PALETTE

    if not manifests:
        raise ValueError("The 'manifests' parameter must hold at least one manifest. Got none.")
    names = list(manifests)
    colours = {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}
    fig = plt.figure(figsize=(12, 9.5))
    grid = fig.add_gridspec(3, 2, width_ratios=(1.15, 1.0), hspace=0.45, wspace=0.35,
                            top=0.93)
    ax_hist, ax_n, ax_sev = (fig.add_subplot(grid[r, 0]) for r in range(3))
    ax_type = fig.add_subplot(grid[:, 1])
    edges = np.linspace(1, 5, bins + 1)

    # (a) MOS histograms
    for name, manifest in manifests.items():
        mos = 1 + 4 * manifest.normalized_mos()
        ax_hist.hist(mos, bins=edges, density=True, histtype="stepfilled", alpha=0.35,
                     color=colours[name], label=f"{name} (median {np.median(mos):.2f})")
        ax_hist.hist(mos, bins=edges, density=True, histtype="step", linewidth=1.4,
                     color=colours[name])
    for k, (name, manifest) in enumerate((human or {}).items()):
        mos = 1 + 4 * manifest.normalized_mos()
        ax_hist.hist(mos, bins=edges, density=True, histtype="step", linestyle="--",
                     linewidth=1.1, color=("0.25", "0.55", "0.4")[k % 3],
                     label=f"{name} (human, rescaled; median {np.median(mos):.2f})")
    ax_hist.axvline(4.5, color="0.5", linewidth=0.8, linestyle=":")
    ax_hist.set(xlabel="MOS on 1-5 (proxy MOS for the proxy benchmarks)", ylabel="density",
                xlim=(1, 5), title="(a) MOS histogram (dotted: near-pristine threshold 4.5)")
    ax_hist.legend(frameon=False, fontsize=7, loc="upper left")

    # (b) MOS by the number of composed distortion types
    counts = {name: n_distortions(m) for name, m in manifests.items()}
    levels = sorted({int(v) for c in counts.values() for v in np.unique(c)})
    width = 0.8 / len(names)
    for i, (name, manifest) in enumerate(manifests.items()):
        mos = manifest.table["mos"].to_numpy(float)
        present = [n for n in levels if np.any(counts[name] == n)]
        data = [mos[counts[name] == n] for n in present]
        positions = [levels.index(n) + (i - (len(names) - 1) / 2) * width for n in present]
        parts = ax_n.boxplot(data, positions=positions, widths=width * 0.9, patch_artist=True,
                             showfliers=False, manage_ticks=False)
        for box in parts["boxes"]:
            box.set(facecolor=colours[name], alpha=0.45, edgecolor=colours[name])
        for med in parts["medians"]:
            med.set(color="0.1")
        for pos, values in zip(positions, data):
            ax_n.text(pos, 5.05, f"{len(values)}", ha="center", va="bottom", fontsize=6,
                      color=colours[name])
    ax_n.set_xticks(range(len(levels)), [str(n) for n in levels])
    ax_n.set(xlabel="distortion types composed in the image", ylabel="proxy MOS",
             ylim=(1, 5.35), title="(b) MOS by number of distortions (numbers: images)")

    # (c) MOS against severity
    for name, manifest in manifests.items():
        table = manifest.table.dropna(subset=["level"])
        x = table["level"].to_numpy(float)
        y = table["mos"].to_numpy(float)
        integer = bool(np.all(x == np.round(x)))
        if integer:
            pos, q1, med, q3 = _binned_quartiles(x, y, integer=True)
            ax_sev.fill_between(pos, q1, q3, color=colours[name], alpha=0.2, linewidth=0)
            ax_sev.plot(pos, med, marker="o", ms=3.5, color=colours[name],
                        label=f"{name}: median, IQR")
            continue
        n = counts[name][table.index.to_numpy()]
        ax_sev.scatter(x, y, s=2, alpha=0.12, color=colours[name], linewidths=0)
        for k, style in ((1, "-"), (2, "--"), (3, ":")):
            rows = n == k
            if rows.sum() < 5:
                continue
            pos, q1, med, q3 = _binned_quartiles(x[rows], y[rows], integer=False)
            if k == 1:
                ax_sev.fill_between(pos, q1, q3, color=colours[name], alpha=0.2, linewidth=0)
            ax_sev.plot(pos, med, linestyle=style, color=colours[name],
                        label=f"{name}: median, {k} type{'s' if k > 1 else ''}")
    ax_sev.set(xlabel="severity (grid: level; authentic: largest component severity)",
               ylabel="proxy MOS", xlim=(0, 5.1), ylim=(1, 5.05),
               title="(c) MOS by severity")
    ax_sev.legend(frameon=False, fontsize=6.5, loc="lower left")

    # (d) per distortion type
    means = {}
    for name, manifest in manifests.items():
        comp = distortion_components(manifest)
        means[name] = comp.groupby("type")["mos"].agg(["mean", "count"])
    order = means[names[0]]["mean"].sort_values().index.tolist()
    order += sorted(t for m in means.values() for t in m.index if t not in order)
    order = list(dict.fromkeys(order))
    y = np.arange(len(order))
    for i, name in enumerate(names):
        m = means[name].reindex(order)
        ax_type.scatter(m["mean"], y + (i - (len(names) - 1) / 2) * 0.25, s=18,
                        color=colours[name], label=name, zorder=3)
    ax_type.set_yticks(y, order, fontsize=7)
    ax_type.set(xlabel="mean proxy MOS of the images containing the type", xlim=(1, 5),
                title="(d) per distortion type")
    ax_type.legend(frameon=False, fontsize=7, loc="lower right")
    fig.suptitle("Proxy benchmarks' make-up (PROXY MOS from full-reference metrics)", y=0.985)
    return fig

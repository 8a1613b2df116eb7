"""Figures of the pruning experiment (Table 3): per-layer allocations and FLOPs vs SRCC."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from qd_lib.viz.figures import PALETTE

__all__ = ["plot_allocations", "plot_flops_srcc", "save_pruning_figure"]


def _label(method: str) -> str:
    from qd_lib.pruning.tables import REFERENCE_NAMES
    from qd_lib.runner.tables import method_label

    return REFERENCE_NAMES.get(method) or method_label(method)


def _methods(records: Sequence[dict]) -> list[str]:
    from qd_lib.pruning.tables import _order

    return _order({r["method"] for r in records})


def plot_allocations(records: Sequence[dict], ax=None):
    """Per-layer sparsity chosen for each calibration method (mean over its runs), layers in
    network order; the uniform reference as a dashed line."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3))
    layers = list(records[0]["allocation"]["layers"])
    for i, method in enumerate(_methods(records)):
        runs = [r for r in records if r["method"] == method]
        sparsity = np.mean([[r["allocation"]["layers"][name]["pruned"] /
                             r["allocation"]["layers"][name]["n"] for name in layers]
                            for r in runs], axis=0)
        style = {"ls": "--", "color": "0.3"} if method == "uniform" else {
            "color": PALETTE[i % len(PALETTE)]}
        ax.plot(np.arange(len(layers)), sparsity, marker=".", ms=3, lw=1,
                label=f"{_label(method)} ({len(runs)})", **style)
    ax.set_xlabel("prunable layer (network order)")
    ax.set_ylabel("sparsity")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, ncol=2)
    return ax


def plot_flops_srcc(records: Sequence[dict], ax=None):
    """Remaining FLOPs fraction against test SRCC, one point per run, one colour per method;
    the unpruned models' SRCC as a grey band (min to max over seeds)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.2))
    dense = [r["dense_metrics"]["srcc"] for r in records]
    ax.axhspan(min(dense), max(dense), color="0.85", label="unpruned", zorder=0)
    for i, method in enumerate(_methods(records)):
        runs = [r for r in records if r["method"] == method]
        marker = "x" if method == "uniform" else "o"
        ax.scatter([r["flops"] for r in runs], [r["srcc"] for r in runs], s=18,
                   marker=marker, color=PALETTE[i % len(PALETTE)], label=_label(method))
    ax.set_xlabel("remaining FLOPs fraction")
    ax.set_ylabel("test SRCC")
    ax.legend(fontsize=7)
    return ax


def save_pruning_figure(records: Sequence[dict], name: str, *, folder=None,
                        provenance: dict | None = None) -> dict:
    """The allocation and FLOPs-vs-SRCC panels of ``records`` side by side, saved with
    :func:`qd_lib.viz.save_figure` (PNG, PDF, JSON) as ``<folder>/<name>``."""
    import matplotlib.pyplot as plt

    from qd_lib.viz.figures import save_figure, use_style

    use_style()
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.2), gridspec_kw={"width_ratios": [2, 1]})
    plot_allocations(records, axes[0])
    plot_flops_srcc(records, axes[1])
    datasets = sorted({r["dataset"] for r in records})
    proxy = any(r.get("proxy") for r in records)
    fig.suptitle(f"{', '.join(datasets)}: per-layer sparsity of the rate-distortion allocation, "
                 "and FLOPs vs SRCC" + (" (PROXY MOS)" if proxy else ""), fontsize=9)
    try:
        return save_figure(fig, name, folder=folder, provenance={
            "run_ids": sorted(r["run_id"] for r in records), **(provenance or {})})
    finally:
        plt.close(fig)

"""Q-Diverse's time complexity measured: stage timings, Eq. 7 fitted by NNLS, term by term.

The supplement (§D) bounds Q-Diverse's time by

    ``T = O(N·d + N·b + N·l·r + K·l³ + N²·r/K + N·M²/K²)``        (Eq. 7)

with N rows, d the embedding dimension, b the batch size, K = ⌈N/b⌉ batches, l Nyström
landmarks, r retained eigenvectors (set by the energy threshold τ) and M picks. This module
times the four stages of the implementation (:mod:`qd_lib.selection.methods.qdiverse`)
separately, on seeded synthetic features, while N, d, b, l, τ and M are varied one at a time
around a centre point (plus a few joint points), then fits the terms by non-negative least
squares.

Stages and how they are timed
-----------------------------
:func:`time_batch` runs the same step functions as
:func:`~qd_lib.selection.methods.qdiverse.pipeline.select_in_batch`, in the same order and
with the same arguments (a test checks that it picks the same rows), through a backend
wrapper that clocks each kernel call:

``distances``
    the pairwise squared-distance GEMMs of the content and quality embeddings (§D.1);
``kernel``
    the rest of the affinity (scaling, combination, median bandwidth, RBF) and the
    normalisation ``D^{-1/2} W D^{-1/2}`` (§D.2, "kernel and Laplacian");
``nystrom``
    landmark choice, the landmark eigendecomposition, the energy rule and the extension
    ``Z = C U Λ⁻¹`` (§D.2, Nyström);
``sampling``
    the RBF kernel on ``Z``, the first pick and the greedy log-det (§D.3).

Terms
-----
Every term is summed over the batches from each batch's own sizes (``b_i``, ``l_i =
min(l, b_i)``, the measured ``r_i``, the batch budget ``M_i``), which equals the supplement's
aggregate form when the batches are equal: ``Nd = Σ b_i d``, ``Nb = Σ b_i²``, ``Nlr = Σ b_i
l_i r_i``, ``Kl3 = Σ l_i³``, ``N2r_K = Σ b_i² r_i`` (= N²r/K), ``NM2_K2 = Σ b_i M_i²``
(= NM²/K²), plus the implementation's ``Nbd = Σ b_i² d`` (two GEMMs per batch) and ``Nl =
Σ b_i l_i`` (the landmark columns).

Two models are fitted per stage: the supplement's attribution (:data:`STAGE_TERMS`, Eqs. 2,
3 and 5) and the implementation's operation count (:data:`IMPLEMENTATION_TERMS`); the whole
Eq. 7 (its six terms) is fitted to the total time (:data:`EQ7_TERMS`; ``r2`` of ``fit.json``).
Per axis, the log-log slope of each stage's time is reported with the slopes both fitted
models predict at the same points: where they disagree, the bound does not describe the code.

Run ``python -m qd_lib.analysis.complexity [--preset default|toy]``; it writes
``figures/complexity/fit.json``, the measured-vs-predicted figure and the timings table.
"""
from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from qd_lib.selection.methods.qdiverse.affinity import affinity
from qd_lib.selection.methods.qdiverse.backends import NUMPY
from qd_lib.selection.methods.qdiverse.batches import (
    allocate_budget,
    batch_len,
    batch_seed,
    plan_batches,
    root_seed_sequence,
)
from qd_lib.selection.methods.qdiverse.greedy import first_pick
from qd_lib.selection.methods.qdiverse.options import resolve_options
from qd_lib.selection.methods.qdiverse.spectral import (
    choose_landmarks,
    embedding_kernel,
    spectral_embedding,
)
from qd_lib.utils.progress import progress
from qd_lib.utils.validation import check_option, check_scalar

logger = logging.getLogger("qd_lib.analysis.complexity" if __name__ == "__main__" else __name__)

__all__ = ["EQ7_TERMS", "IMPLEMENTATION_TERMS", "PRESETS", "STAGES", "STAGE_TERMS",
           "ComplexityGrid", "fit_complexity", "fit_terms", "plot_fit", "run_complexity",
           "synthetic_features", "time_batch", "time_configuration", "timing_design",
           "write_complexity"]

STAGES = ("distances", "kernel", "nystrom", "sampling")
#: Eq. 7's terms, in its order.
EQ7_TERMS = ("Nd", "Nb", "Nlr", "Kl3", "N2r_K", "NM2_K2")
TERM_LABELS = {"Nd": "N·d", "Nb": "N·b", "Nlr": "N·l·r", "Kl3": "K·l³", "N2r_K": "N²·r/K",
               "NM2_K2": "N·M²/K²", "Nbd": "N·b·d", "Nl": "N·l"}
#: The supplement's attribution of terms to stages (Eq. 2; Eq. 3 split in kernel + Laplacian
#: and Nyström; Eq. 5/6).
STAGE_TERMS = {"distances": ("Nd", "Nb"), "kernel": ("Nb",), "nystrom": ("Nl", "Nlr", "Kl3"),
               "sampling": ("N2r_K", "NM2_K2")}
#: What the implementation does per batch: two distance GEMMs (b²d), O(b²) element-wise
#: passes, landmark columns (bl), eigh (l³), extension (blr), the Z GEMM (b²r), its RBF (b²)
#: and the greedy (b·M_i²).
IMPLEMENTATION_TERMS = {"distances": ("Nbd", "Nb"), "kernel": ("Nb",),
                        "nystrom": ("Nl", "Nlr", "Kl3"),
                        "sampling": ("N2r_K", "Nb", "NM2_K2")}
#: The varied quantities and the column each axis is plotted against.
AXES = {"n": "n", "d": "d", "batch_size": "b", "n_landmarks": "l", "energy": "r",
        "fraction": "M"}


@dataclass(frozen=True)
class ComplexityGrid:
    """A one-at-a-time design around ``center`` plus ``joint`` points.

    ``center`` and each joint point hold ``n``, ``d``, ``batch_size``, ``n_landmarks``,
    ``energy`` (τ) and ``fraction`` (M = floor(fraction·n)); ``axes`` maps each of them to the
    values tried while the others stay at the centre.
    """

    center: Mapping
    axes: Mapping
    joint: tuple = ()
    repeats: int = 3
    seed: int = 0

    def to_dict(self) -> dict:
        return {"center": dict(self.center), "axes": {k: list(v) for k, v in self.axes.items()},
                "joint": [dict(j) for j in self.joint], "repeats": self.repeats,
                "seed": self.seed}


_DEFAULT_CENTER = {"n": 4000, "d": 256, "batch_size": 1000, "n_landmarks": 300, "energy": 0.9,
                   "fraction": 0.1}
PRESETS = {
    "default": ComplexityGrid(
        center=_DEFAULT_CENTER,
        axes={"n": (1000, 2000, 4000, 8000, 12000), "d": (64, 256, 1024, 2048),
              "batch_size": (250, 500, 1000, 2000), "n_landmarks": (50, 100, 300, 600, 1000),
              "energy": (0.5, 0.7, 0.9, 0.95, 0.99), "fraction": (0.02, 0.1, 0.3, 0.6, 0.9)},
        joint=({**_DEFAULT_CENTER, "batch_size": 2000, "d": 1024},
               {**_DEFAULT_CENTER, "batch_size": 2000, "fraction": 0.6},
               {**_DEFAULT_CENTER, "n": 8000, "n_landmarks": 600, "energy": 0.99}),
        repeats=3),
    "toy": ComplexityGrid(
        center={"n": 400, "d": 32, "batch_size": 100, "n_landmarks": 40, "energy": 0.9,
                "fraction": 0.1},
        axes={"n": (200, 400, 800), "d": (16, 64), "batch_size": (50, 200),
              "n_landmarks": (20, 80), "energy": (0.5, 0.99), "fraction": (0.05, 0.5)},
        repeats=1),
}


# -- data and timing ------------------------------------------------------------------------------
def synthetic_features(n: int, d: int, seed: int = 0, *, n_clusters: int = 16
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Seeded clustered float32 content and quality embeddings, ``d // 2`` and ``d - d // 2``
    columns (a Gaussian mixture each, unit-variance centres, 0.5 spread)."""
    check_scalar(n, "n", int, min_val=2)
    check_scalar(d, "d", int, min_val=2)
    rng = np.random.default_rng(seed)
    out = []
    for dim in (d // 2, d - d // 2):
        centers = rng.normal(size=(n_clusters, dim)).astype(np.float32)
        labels = rng.integers(0, n_clusters, size=n)
        X = centers[labels] + 0.5 * rng.normal(size=(n, dim)).astype(np.float32)
        out.append(np.ascontiguousarray(X, dtype=np.float32))
    return out[0], out[1]


class _Clock:
    """A backend wrapper that adds each kernel call's wall time to ``seconds[name]``."""

    def __init__(self, xp):
        self._xp = xp
        self.seconds: dict[str, float] = defaultdict(float)

    def __getattr__(self, name):
        attr = getattr(self._xp, name)
        if not callable(attr):
            return attr

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - started

        return timed


def time_batch(Xc, Xq, budget: int, rng: np.random.Generator, o: dict, xp=NUMPY) -> dict:
    """Q-Diverse inside one batch, exactly as ``select_in_batch`` does it, stage by stage.

    Returns
    -------
    dict
        ``seconds`` (stage → wall time), ``local`` (the picks), ``r``, ``l``, ``b``, ``m``
        (the batch budget), ``computed`` (False for an empty or whole-batch budget, which
        ``select_in_batch`` answers without computing anything).
    """
    if o.get("extension") is not None:
        raise ValueError("time_batch times the paper's Q-Diverse; the 'extension' option must "
                         f"be None. Got {o['extension']!r} instead.")
    b = (Xc if Xc is not None else Xq).shape[0]
    out = {"seconds": dict.fromkeys(STAGES, 0.0), "r": 0, "l": 0, "b": b, "m": int(budget),
           "computed": False}
    if budget <= 0 or budget >= b:
        out["local"] = np.arange(b if budget >= b else 0, dtype=np.int64)
        return out
    clock = _Clock(xp)
    t0 = time.perf_counter()
    W, _ = affinity(Xc, Xq, o, clock)
    t1 = time.perf_counter()
    distances = clock.seconds["squared_distances"]
    n_landmarks = min(o["n_landmarks"], b)
    landmarks = choose_landmarks(W, n_landmarks, o["landmarks"], rng, clock)
    t2 = time.perf_counter()
    normalise = clock.seconds["symmetric_normalize_inplace"] + clock.seconds["row_sums"]
    Z, r, degrees = spectral_embedding(W, landmarks, o, clock)
    t3 = time.perf_counter()
    normalise = (clock.seconds["symmetric_normalize_inplace"] + clock.seconds["row_sums"]
                 - normalise)
    del W
    K, _ = embedding_kernel(Z, o["z_bandwidth"], clock)
    first = first_pick(o["first_pick"], degrees, Z, clock)
    local, _ = clock.greedy_logdet(K, budget, eps=o["eps"], first=first)
    t4 = time.perf_counter()
    out["seconds"] = {"distances": distances, "kernel": (t1 - t0 - distances) + normalise,
                      "nystrom": (t2 - t1) + (t3 - t2 - normalise), "sampling": t4 - t3}
    out.update(local=np.asarray(local), r=int(r), l=int(n_landmarks), computed=True)
    return out


def _terms(batches: Sequence[dict], d: int) -> dict[str, float]:
    t = dict.fromkeys(["Nd", "Nb", "Nbd", "Nl", "Nlr", "Kl3", "N2r_K", "NM2_K2"], 0.0)
    for bt in batches:
        if not bt["computed"]:
            continue
        b, lm, r, m = (float(bt[k]) for k in ("b", "l", "r", "m"))
        t["Nd"] += b * d
        t["Nb"] += b * b
        t["Nbd"] += b * b * d
        t["Nl"] += b * lm
        t["Nlr"] += b * lm * r
        t["Kl3"] += lm ** 3
        t["N2r_K"] += b * b * r
        t["NM2_K2"] += b * m * m
    return t


def time_configuration(n: int, d: int, batch_size: int, n_landmarks: int, energy: float,
                       fraction: float, *, seed: int = 0, repeats: int = 3,
                       threads: int | None = 1, options: Mapping | None = None) -> dict:
    """Time Q-Diverse's stages on seeded synthetic features of one configuration.

    Every repeat runs every batch (same seeds, so the same picks); each stage's time is the
    minimum over the repeats of its sum over the batches. ``threads`` limits BLAS (1: as the
    selector's batches run); ``None`` leaves it alone.

    Returns
    -------
    dict
        The configuration, ``K``, ``M``, mean ``r``, the terms, each stage's seconds and
        ``total`` (their sum).
    """
    check_scalar(repeats, "repeats", int, min_val=1)
    check_scalar(fraction, "fraction", float, min_val=0.0, max_val=1.0, closed="right")
    Xc, Xq = synthetic_features(n, d, seed)
    o, _ = resolve_options({"batch_size": batch_size, "n_landmarks": n_landmarks,
                            "energy": energy, **(options or {})})
    rng = np.random.default_rng(seed)
    plan = plan_batches(n, o["batch_size"], o["batch_order"], rng)
    sizes = [batch_len(rows) for rows in plan]
    m_total = math.floor(fraction * n)
    budgets = allocate_budget(sizes, m_total, method=o["allocation"])
    root = root_seed_sequence(rng)
    best = dict.fromkeys(STAGES, math.inf)
    batches = []
    context = _blas_threads(threads)
    with context:
        for repeat in range(repeats):
            sums = dict.fromkeys(STAGES, 0.0)
            batches = []
            for i, rows in enumerate(plan):
                res = time_batch(Xc[rows], Xq[rows], int(budgets[i]),
                                 np.random.default_rng(batch_seed(root, i)), o)
                for stage in STAGES:
                    sums[stage] += res["seconds"][stage]
                batches.append(res)
            for stage in STAGES:
                best[stage] = min(best[stage], sums[stage])
            del repeat
    rs = [bt["r"] for bt in batches if bt["computed"]]
    return {"n": n, "d": d, "b": o["batch_size"], "l": n_landmarks, "energy": energy,
            "fraction": fraction, "K": len(plan), "M": m_total,
            "r": float(np.mean(rs)) if rs else 0.0, **_terms(batches, d),
            **{stage: best[stage] for stage in STAGES}, "total": sum(best.values())}


class _NoLimit:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _blas_threads(threads):
    if threads is None:
        return _NoLimit()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads, user_api="blas")


def timing_design(grid: ComplexityGrid) -> list[dict]:
    """The configurations of ``grid``: the centre, each axis value with the others at the
    centre, then the joint points; each tagged with its ``axis`` (``center``/``joint``)."""
    configs, seen = [], set()

    def add(config, axis):
        key = tuple(sorted(config.items()))
        if key not in seen:
            seen.add(key)
            configs.append({**config, "axis": axis})

    add(dict(grid.center), "center")
    for axis, values in grid.axes.items():
        check_option(axis, "axis", tuple(AXES))
        for value in values:
            add({**grid.center, axis: value}, axis)
    for point in grid.joint:
        add(dict(point), "joint")
    return configs


def run_complexity(grid: ComplexityGrid | str = "default", *, threads: int | None = 1,
                   show_progress: bool | None = None) -> pd.DataFrame:
    """Time every configuration of ``grid`` (a :class:`ComplexityGrid` or a preset name);
    one row per configuration, with its ``axis``."""
    if isinstance(grid, str):
        check_option(grid, "grid", tuple(PRESETS))
        grid = PRESETS[grid]
    rows = []
    configs = timing_design(grid)
    for config in progress(configs, desc="Q-Diverse timings", enabled=show_progress):
        axis = config.pop("axis")
        started = time.perf_counter()
        row = time_configuration(**config, seed=grid.seed, repeats=grid.repeats,
                                 threads=threads)
        logger.info("%s: n=%d d=%d b=%d l=%d tau=%.2f M=%d r=%.1f -> %.3f s (%.1f s wall)",
                    axis, row["n"], row["d"], row["b"], row["l"], row["energy"], row["M"],
                    row["r"], row["total"], time.perf_counter() - started)
        rows.append({"axis": axis, **row})
    return pd.DataFrame(rows)


# -- fitting ---------------------------------------------------------------------------------------
def fit_terms(frame: pd.DataFrame, terms: Sequence[str], target: str) -> dict:
    """Non-negative least squares ``frame[target] ≈ Σ c_t · frame[t]``.

    Columns are scaled to a unit maximum before the solve (the terms span many orders of
    magnitude) and the coefficients scaled back.

    Returns
    -------
    dict
        ``coef`` (term → seconds per unit of the term), ``r2`` (``1 − SS_res/SS_tot`` of the
        measured against the predicted values), ``predicted`` (array) and ``median_rel_error``.
    """
    from scipy.optimize import nnls

    A = frame[list(terms)].to_numpy(dtype=float)
    y = frame[target].to_numpy(dtype=float)
    scale = A.max(axis=0)
    scale[scale == 0] = 1.0
    x, _ = nnls(A / scale, y)
    coef = x / scale
    pred = A @ coef
    ss_res = float(((y - pred) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")
    rel = np.abs(pred - y) / np.where(y > 0, y, 1.0)
    return {"coef": {t: float(c) for t, c in zip(terms, coef)}, "r2": r2, "predicted": pred,
            "median_rel_error": float(np.median(rel))}


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    ok = (x > 0) & (y > 0)
    if ok.sum() < 2 or np.ptp(np.log(x[ok])) == 0:
        return float("nan")
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0])


@dataclass
class ComplexityFit:
    """Fitted models and the term-by-term evidence (see :func:`fit_complexity`)."""

    timings: pd.DataFrame
    eq7: dict
    stages: dict
    implementation: dict
    exponents: dict
    shares: dict
    info: dict = field(default_factory=dict)

    def to_record(self) -> dict:
        def clean(fit):
            return {k: v for k, v in fit.items() if k != "predicted"}

        return {
            "model": "Eq. 7: T = c1 N d + c2 N b + c3 N l r + c4 K l^3 + c5 N^2 r / K + "
                     "c6 N M^2 / K^2, NNLS on the total time",
            "terms": {t: {"label": TERM_LABELS[t], "coef": self.eq7["coef"][t],
                          "share_at_center": self.shares["eq7"][t]} for t in EQ7_TERMS},
            "r2": self.eq7["r2"], "median_rel_error": self.eq7["median_rel_error"],
            "r2_stagewise_supplement": self.info["r2_stagewise_supplement"],
            "r2_stagewise_implementation": self.info["r2_stagewise_implementation"],
            "stages": {s: {"supplement": clean(self.stages[s]),
                           "implementation": clean(self.implementation[s]),
                           "share_of_total_at_center": self.shares["stages"][s]}
                       for s in STAGES},
            "exponents": self.exponents, **self.info}


def fit_complexity(timings: pd.DataFrame) -> ComplexityFit:
    """Fit Eq. 7 to the total time, each stage with the supplement's and the implementation's
    terms, and compute per-axis log-log slopes (measured and as each model predicts)."""
    eq7 = fit_terms(timings, EQ7_TERMS, "total")
    stages = {s: fit_terms(timings, STAGE_TERMS[s], s) for s in STAGES}
    impl = {s: fit_terms(timings, IMPLEMENTATION_TERMS[s], s) for s in STAGES}
    y = timings["total"].to_numpy()

    def r2(pred):
        return float(1 - ((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum())

    exponents = {}
    for stage in (*STAGES, "total"):
        exponents[stage] = {}
        for axis, column in AXES.items():
            sel = timings["axis"].isin([axis, "center"]).to_numpy()
            x = timings.loc[sel, column].to_numpy(dtype=float)
            if stage == "total":
                models = {"eq7": eq7["predicted"][sel]}
            else:
                models = {"supplement": stages[stage]["predicted"][sel],
                          "implementation": impl[stage]["predicted"][sel]}
            exponents[stage][AXES[axis]] = {
                "measured": _slope(x, timings.loc[sel, stage].to_numpy(dtype=float)),
                **{k: _slope(x, v) for k, v in models.items()}}
    center = timings[timings["axis"] == "center"].iloc[0]
    eq7_parts = {t: eq7["coef"][t] * float(center[t]) for t in EQ7_TERMS}
    total_pred = sum(eq7_parts.values()) or 1.0
    shares = {"eq7": {t: v / total_pred for t, v in eq7_parts.items()},
              "stages": {s: float(center[s] / center["total"]) for s in STAGES}}
    info = {
        "r2_stagewise_supplement": r2(sum(stages[s]["predicted"] for s in STAGES)),
        "r2_stagewise_implementation": r2(sum(impl[s]["predicted"] for s in STAGES)),
        "n_points": int(len(timings)),
    }
    return ComplexityFit(timings, eq7, stages, impl, exponents, shares, info)


# -- outputs ---------------------------------------------------------------------------------------
def plot_fit(fit: ComplexityFit, axes=None):
    """Measured against predicted time, one panel per stage (the implementation's and the
    supplement's terms) and one for the total (Eq. 7), log-log, coloured by axis."""
    import matplotlib.pyplot as plt

    from qd_lib.viz.figures import PALETTE

    if axes is None:
        _, axes = plt.subplots(1, 5, figsize=(15, 3.2))
    t = fit.timings
    colors = {a: PALETTE[i % len(PALETTE)] for i, a in enumerate(dict.fromkeys(t["axis"]))}
    panels = [(s, fit.implementation[s]["predicted"], fit.stages[s]["predicted"],
               f"{s}: R² impl {fit.implementation[s]['r2']:.3f}, "
               f"suppl {fit.stages[s]['r2']:.3f}") for s in STAGES]
    panels.append(("total", fit.eq7["predicted"], None, f"total: Eq. 7 R² {fit.eq7['r2']:.3f}"))
    for ax, (column, pred, pred_suppl, title) in zip(axes, panels):
        y = t[column].to_numpy()
        for axis, color in colors.items():
            sel = (t["axis"] == axis).to_numpy()
            ax.scatter(pred[sel], y[sel], s=14, color=color, label=axis)
            if pred_suppl is not None:
                ax.scatter(pred_suppl[sel], y[sel], s=14, facecolors="none",
                           edgecolors=color, linewidths=0.6)
        positive = np.concatenate([y[y > 0], pred[pred > 0]])
        lo, hi = positive.min() * 0.7, positive.max() * 1.4
        ax.plot([lo, hi], [lo, hi], color="0.4", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel("predicted (s)")
        ax.set_title(title, fontsize=8)
    axes[0].set_ylabel("measured (s)")
    axes[-1].legend(title="varied", fontsize=7, loc="upper left")
    return axes


def write_complexity(fit: ComplexityFit, grid: ComplexityGrid, *, folder=None,
                     seconds: float | None = None, note: str | None = None) -> dict:
    """Write ``fit.json`` (coefficients per term, ``r2``, stage fits, exponents, the grid),
    the figure (``measured_vs_predicted.{png,pdf,json}``) and the timings table
    (``timings.{csv,md,tex,json}``) under ``folder`` (default ``figures/complexity``)."""
    import os

    import matplotlib.pyplot as plt

    from qd_lib import __version__
    from qd_lib.paths import figures_dir
    from qd_lib.utils.io import atomic_write_json
    from qd_lib.utils.machine import cpu_model
    from qd_lib.viz import save_figure, save_table, use_style

    folder = figures_dir() / "complexity" if folder is None else Path(folder)
    record = {**fit.to_record(), "grid": grid.to_dict(), "blas_threads": 1,
              "cpu_count": os.cpu_count(), "seconds": seconds,
              "machine": cpu_model(),
              "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
              "qd_lib": __version__, "numpy": np.__version__, "note": note}
    written = {"fit": atomic_write_json(folder / "fit.json", record)}
    use_style()
    fig, axes = plt.subplots(1, 5, figsize=(15, 3.2))
    plot_fit(fit, axes)
    fig.suptitle("Q-Diverse stage times on synthetic features: measured vs fitted "
                 "(filled: implementation terms, open: supplement terms)", fontsize=9)
    written.update(save_figure(fig, "measured_vs_predicted", folder=folder,
                               provenance={"fit": "fit.json", "grid": grid.to_dict()}))
    plt.close(fig)
    columns = ["axis", "n", "d", "b", "l", "energy", "r", "M", "K", *STAGES, "total"]
    written.update({f"table_{k}": v for k, v in save_table(
        fit.timings[columns], "timings", folder=folder, float_format="%.4g",
        provenance={"what": "Q-Diverse stage times (s, min over repeats) per configuration",
                    "grid": grid.to_dict()}).items()})
    return written


def main(argv=None) -> int:
    """``python -m qd_lib.analysis.complexity [--preset default|toy] [--folder DIR]
    [--repeats N]``: time, fit and write (see the module docstring)."""
    import argparse
    import dataclasses

    from qd_lib.utils.logging import setup

    parser = argparse.ArgumentParser(prog="python -m qd_lib.analysis.complexity",
                                     description="Time Q-Diverse's stages and fit Eq. 7.")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default")
    parser.add_argument("--folder", default=None, help="default: figures/complexity")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed repeats per configuration (default: the preset's)")
    parser.add_argument("--note", default=None,
                        help="where and how the timings were taken, stored in fit.json")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    setup(args.log_level)
    grid = PRESETS[args.preset]
    if args.repeats is not None:
        grid = dataclasses.replace(grid, repeats=args.repeats)
    started = time.perf_counter()
    fit = fit_complexity(run_complexity(grid))
    seconds = time.perf_counter() - started
    files = write_complexity(fit, grid, folder=args.folder, seconds=seconds, note=args.note)
    record = fit.to_record()
    print(f"Eq. 7 fitted on {record['n_points']} configurations in {seconds:.0f} s: "
          f"R² {record['r2']:.3f} (stage-wise: supplement terms "
          f"{record['r2_stagewise_supplement']:.3f}, implementation terms "
          f"{record['r2_stagewise_implementation']:.3f})")
    for info in record["terms"].values():
        print(f"  {info['label']:>8}: {info['coef']:.3e} s per unit, "
              f"{100 * info['share_at_center']:.1f} % of the centre's time")
    print("wrote:", ", ".join(sorted(str(p) for p in files.values())))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())

"""Agreement between predicted quality scores and MOS: SRCC, PLCC, KRCC, RMSE.

Every function takes ``(pred, mos)``: predictions and mean opinion scores, two 1-D sequences of
the same length (at least 2 points, all finite). Conventions (design note
``models-and-datasets.md`` §5):

``srcc``
    Spearman's rank correlation; ties get average ranks.
``plcc``
    Pearson's linear correlation of the **raw** predictions. This is the headline PLCC, as in the
    seed paper (whose official MANIQA and MUSIQ scripts report raw ``pearsonr``).
``plcc_logistic``
    Pearson's correlation after mapping the predictions through a fitted 4-parameter logistic
    (VQEG): ``f(x) = (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2``, started at
    ``b1 = max(mos)``, ``b2 = min(mos)``, ``b3 = mean(pred)``, ``b4 = std(pred) / 4``. When the
    fit fails it returns NaN and emits a :class:`FitWarning`, never an exception.
``krcc``
    Kendall's tau-b.
``rmse``
    Root mean squared error in MOS units; ``fit="logistic"`` maps the predictions first (it is
    meaningful only when both are on one scale or after the mapping).

Signs are never flipped: a lower-is-better scale gives negative correlations unless the MOS was
normalised with :func:`qd_lib.data.normalize_mos` (which makes 1 the best quality).

A constant input has no defined correlation: the correlation functions then return NaN with a
:class:`ConstantInputWarning` (an untrained model often predicts a constant).

>>> from qd_lib.metrics import srcc, plcc
>>> srcc([1, 2, 3, 4], [10, 20, 30, 45])
1.0
>>> round(plcc([1, 2, 3, 4], [2, 4, 6, 8]), 6)
1.0
"""
from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

logger = logging.getLogger(__name__)

__all__ = [
    "METRICS",
    "ConstantInputWarning",
    "FitWarning",
    "MetricSpec",
    "compute_metrics",
    "krcc",
    "logistic4",
    "fit_logistic4",
    "plcc",
    "plcc_logistic",
    "rmse",
    "srcc",
]


class ConstantInputWarning(RuntimeWarning):
    """One of the inputs is constant, so a correlation is undefined (NaN returned)."""


class FitWarning(RuntimeWarning):
    """The 4-parameter logistic fit did not converge (NaN returned)."""


@dataclass(frozen=True)
class MetricSpec:
    """Registry entry of a metric: its function, direction and a one-line description."""

    name: str
    func: object
    higher_is_better: bool
    description: str


def _as_vector(values, name: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"The {name!r} parameter must be a 1-D numeric array. Got "
                        f"{type(values).__name__} instead.") from None
    if arr.ndim != 1:
        squeezed = np.squeeze(arr)
        if squeezed.ndim != 1:  # (n, 1) columns are accepted, anything else is not
            raise ValueError(f"The {name!r} parameter must be 1-D. Got an array of shape "
                             f"{arr.shape} instead.")
        arr = squeezed
    return arr


def _check_pair(pred, mos) -> tuple[np.ndarray, np.ndarray]:
    p, y = _as_vector(pred, "pred"), _as_vector(mos, "mos")
    if p.shape != y.shape:
        raise ValueError(f"The 'pred' and 'mos' parameters must have the same length. Got "
                         f"{p.shape[0]} predictions and {y.shape[0]} MOS values.")
    if p.shape[0] < 2:
        raise ValueError(f"At least 2 points are needed to compare predictions with MOS. Got "
                         f"{p.shape[0]}.")
    for name, arr in (("pred", p), ("mos", y)):
        bad = ~np.isfinite(arr)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"The {name!r} parameter must contain only finite values; position "
                             f"{i} holds {arr[i]!r} ({int(bad.sum())} non-finite in all).")
    return p, y


def _constant(p: np.ndarray, y: np.ndarray, what: str) -> bool:
    if np.ptp(p) == 0 or np.ptp(y) == 0:
        which = "pred" if np.ptp(p) == 0 else "mos"
        warnings.warn(f"{what} is undefined: {which!r} is constant; returning NaN.",
                      ConstantInputWarning, stacklevel=3)
        return True
    return False


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denom = math.sqrt(float(a @ a) * float(b @ b))
    return float(np.clip((a @ b) / denom, -1.0, 1.0))


def srcc(pred, mos) -> float:
    """Spearman rank correlation (ties get average ranks).

    Parameters
    ----------
    pred, mos : array-like of shape (n,)
        Predictions and MOS, n ≥ 2, finite.

    Returns
    -------
    float
        In [-1, 1]; NaN (with a :class:`ConstantInputWarning`) if either input is constant.

    Raises
    ------
    ValueError
        On a length mismatch, non-finite values or fewer than 2 points.
    """
    p, y = _check_pair(pred, mos)
    if _constant(p, y, "SRCC"):
        return float("nan")
    return _pearson(stats.rankdata(p), stats.rankdata(y))


def plcc(pred, mos) -> float:
    """Pearson linear correlation of the raw predictions (the headline PLCC).

    Same parameters, returns and errors as :func:`srcc`.
    """
    p, y = _check_pair(pred, mos)
    if _constant(p, y, "PLCC"):
        return float("nan")
    return _pearson(p, y)


def krcc(pred, mos) -> float:
    """Kendall's tau-b (ties in either input are accounted for).

    Same parameters, returns and errors as :func:`srcc`.
    """
    p, y = _check_pair(pred, mos)
    if _constant(p, y, "KRCC"):
        return float("nan")
    return float(stats.kendalltau(p, y, variant="b").statistic)


def logistic4(x, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """The VQEG 4-parameter logistic ``(b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2``."""
    z = -(np.asarray(x, dtype=np.float64) - b3) / max(abs(b4), 1e-300)
    return (b1 - b2) / (1.0 + np.exp(np.clip(z, -700.0, 700.0))) + b2


def fit_logistic4(pred, mos, *, maxfev: int = 10000) -> np.ndarray | None:
    """Least-squares fit of :func:`logistic4` mapping ``pred`` onto ``mos``.

    Returns the parameters ``[b1, b2, b3, b4]``, or ``None`` (with a :class:`FitWarning`) when
    the fit fails to converge or gives non-finite values.
    """
    p, y = _check_pair(pred, mos)
    if len(p) < 4:  # scipy raises TypeError: more parameters than points
        warnings.warn(f"4-parameter logistic fit needs at least 4 points, got {len(p)}; "
                      "returning NaN.", FitWarning, stacklevel=2)
        return None
    scale = float(np.std(p)) / 4.0
    start = [float(y.max()), float(y.min()), float(p.mean()), scale if scale > 0 else 1.0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optimize.OptimizeWarning)
            with np.errstate(all="ignore"):
                params, _ = optimize.curve_fit(logistic4, p, y, p0=start, maxfev=maxfev)
    except (RuntimeError, ValueError, optimize.OptimizeWarning) as exc:
        warnings.warn(f"4-parameter logistic fit failed ({exc}); returning NaN.", FitWarning,
                      stacklevel=2)
        return None
    if not np.all(np.isfinite(params)):
        warnings.warn("4-parameter logistic fit gave non-finite parameters; returning NaN.",
                      FitWarning, stacklevel=2)
        return None
    return params


def plcc_logistic(pred, mos) -> float:
    """Pearson correlation after the 4-parameter logistic mapping of the predictions.

    Same parameters and errors as :func:`srcc`. Returns NaN with a :class:`FitWarning` when the
    fit fails, and NaN with a :class:`ConstantInputWarning` for constant inputs.
    """
    p, y = _check_pair(pred, mos)
    if _constant(p, y, "PLCC (logistic)"):
        return float("nan")
    params = fit_logistic4(p, y)
    if params is None:
        return float("nan")
    mapped = logistic4(p, *params)
    if np.ptp(mapped) == 0:
        warnings.warn("4-parameter logistic fit collapsed to a constant; returning NaN.",
                      FitWarning, stacklevel=2)
        return float("nan")
    return _pearson(mapped, y)


def rmse(pred, mos, *, fit: str | None = None) -> float:
    """Root mean squared error between predictions and MOS.

    Parameters
    ----------
    pred, mos : array-like of shape (n,)
        Predictions and MOS, n ≥ 2, finite.
    fit : {None, "logistic"}, default=None
        ``None`` compares the raw values (meaningful on matched scales, e.g. both normalised to
        [0, 1]); ``"logistic"`` maps the predictions with the fitted 4-parameter logistic first
        (NaN with a :class:`FitWarning` when the fit fails).
    """
    p, y = _check_pair(pred, mos)
    if fit not in (None, "logistic"):
        raise ValueError(f"The 'fit' parameter must be one of [None, 'logistic']. Got {fit!r} "
                         "instead.")
    if fit == "logistic":
        params = fit_logistic4(p, y)
        if params is None:
            return float("nan")
        p = logistic4(p, *params)
    return float(np.sqrt(np.mean((p - y) ** 2)))


METRICS: dict[str, MetricSpec] = {
    "srcc": MetricSpec("srcc", srcc, True, "Spearman rank correlation"),
    "plcc": MetricSpec("plcc", plcc, True, "Pearson correlation, raw predictions (headline)"),
    "plcc_logistic": MetricSpec("plcc_logistic", plcc_logistic, True,
                                "Pearson correlation after a 4-parameter logistic fit"),
    "krcc": MetricSpec("krcc", krcc, True, "Kendall tau-b"),
    "rmse": MetricSpec("rmse", rmse, False, "root mean squared error, raw predictions"),
}


def compute_metrics(pred, mos, names=tuple(METRICS)) -> dict[str, float]:
    """All metrics in ``names`` (default: every one in :data:`METRICS`) as a dict of floats.

    Inputs are validated once; warnings (constant input, failed fit) are logged, not raised.
    """
    p, y = _check_pair(pred, mos)
    out = {}
    for name in names:
        if name not in METRICS:
            from qd_lib.utils.errors import UnknownNameError

            raise UnknownNameError("metric", name, METRICS)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out[name] = float(METRICS[name].func(p, y))
        for w in caught:
            logger.warning("%s: %s", name, w.message)
    return out

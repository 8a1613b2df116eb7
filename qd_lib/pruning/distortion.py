"""Rate-distortion curves of layer-wise magnitude pruning, measured on a calibration set.

For every prunable layer ``l`` and every sparsity level ``s`` of a grid, the layer alone is
pruned to ``round(s · n_l)`` weights by magnitude and the **output distortion** is measured:
the mean squared difference between the network's output and the unpruned network's output
over the calibration inputs (RD-Prune's measurement; the allocation in
:mod:`qd_lib.pruning.allocation` then treats the distortions of the layers as additive).

Speed (what makes the measurement affordable on a CPU):

- the unpruned network runs once over the calibration set, split into consecutive *stages*
  (``model.stages()`` when the model provides it, e.g. :meth:`BaseCNN.stages`; the children of
  an ``nn.Sequential``; else the whole model as one stage). The input of every stage and the
  final output are cached, so measuring a layer re-runs only its own stage and the stages after
  it, on whole batches of cached activations;
- with ``target`` given, the levels are measured from small to large and a layer's curve stops
  at the first level above the target whose distortion exceeds the total distortion of the
  uniform allocation (every layer at ``target``): under the additive model such a point can
  never be part of an allocation that beats the uniform one. Skipping the levels *after* it is
  a heuristic that assumes the curve keeps rising: curves mostly do, but not always (on the
  committed proxy-default runs 3.6 % of the measured steps go down, some by half or more, as
  errors of a more heavily pruned layer partly cancel), so a skipped point could occasionally
  have been usable (re-measuring 30 of those runs on the whole grid gave the same allocation
  every time). ``target=None`` measures the whole grid. Skipped points are ``inf`` (and
  ``measured`` is False).
"""
from __future__ import annotations

import logging
import numbers
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from qd_lib.pruning.masks import is_pruned, magnitude_mask, prunable_layers
from qd_lib.utils.progress import progress
from qd_lib.utils.validation import check_scalar

logger = logging.getLogger(__name__)

__all__ = ["DistortionCurves", "check_levels", "distortion_curves", "model_stages"]


@dataclass
class DistortionCurves:
    """Output distortion of each prunable layer at each sparsity level.

    Attributes
    ----------
    layers : list of str
        Prunable layer names, in module order.
    n_weights : ndarray of int, shape (L,)
        Weights per layer.
    levels : ndarray of float, shape (S,)
        Sparsity levels, increasing, in (0, 1].
    distortion : ndarray of float, shape (L, S)
        Mean squared output change; ``inf`` where not measured (early stop).
    measured : ndarray of bool, shape (L, S)
    bound : float or None
        The early-stop bound (total distortion of the uniform allocation at ``target``).
    target : float or None
    n_calibration : int
        Calibration inputs.
    seconds : float
        Wall time of the whole measurement (caching included).
    stage_forwards : int
        Stage evaluations over the whole calibration set (a full pass counts one per stage).
    n_stages : int
    """

    layers: list
    n_weights: np.ndarray
    levels: np.ndarray
    distortion: np.ndarray
    measured: np.ndarray
    bound: float | None = None
    target: float | None = None
    n_calibration: int = 0
    seconds: float = 0.0
    stage_forwards: int = 0
    n_stages: int = 1
    info: dict = field(default_factory=dict)

    def counts(self) -> np.ndarray:
        """Weights pruned at each (layer, level): ``round(level · n_l)``, shape (L, S)."""
        return np.rint(self.levels[None, :] * self.n_weights[:, None]).astype(np.int64)

    def to_record(self) -> dict:
        """JSON-friendly form (``inf`` as ``None``)."""
        dist = [[None if not np.isfinite(v) else float(v) for v in row]
                for row in self.distortion]
        return {"layers": list(self.layers), "n_weights": self.n_weights.tolist(),
                "levels": self.levels.tolist(), "distortion": dist,
                "measured": self.measured.tolist(), "bound": self.bound, "target": self.target,
                "n_calibration": self.n_calibration, "seconds": round(self.seconds, 3),
                "stage_forwards": self.stage_forwards, "n_stages": self.n_stages,
                "info": dict(self.info)}

    @classmethod
    def from_record(cls, record: dict) -> DistortionCurves:
        dist = np.array([[np.inf if v is None else v for v in row]
                         for row in record["distortion"]], dtype=float)
        return cls(layers=list(record["layers"]),
                   n_weights=np.asarray(record["n_weights"], dtype=np.int64),
                   levels=np.asarray(record["levels"], dtype=float), distortion=dist,
                   measured=np.asarray(record["measured"], dtype=bool),
                   bound=record.get("bound"), target=record.get("target"),
                   n_calibration=int(record.get("n_calibration", 0)),
                   seconds=float(record.get("seconds", 0.0)),
                   stage_forwards=int(record.get("stage_forwards", 0)),
                   n_stages=int(record.get("n_stages", 1)), info=dict(record.get("info", {})))


def check_levels(levels: Sequence[float], name: str = "levels") -> np.ndarray:
    """Sparsity levels as a strictly increasing float array in (0, 1]."""
    arr = np.asarray(levels, dtype=float)
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)) or arr.min() <= 0 or \
            arr.max() > 1 or np.any(np.diff(arr) <= 0):
        raise ValueError(f"The {name!r} parameter must be a non-empty, strictly increasing "
                         f"sequence of sparsities in (0, 1]. Got {list(levels)!r} instead.")
    return arr


def model_stages(model: nn.Module) -> list[nn.Module]:
    """Consecutive modules whose composition is ``model``'s forward pass."""
    if hasattr(model, "stages"):
        return list(model.stages())
    if isinstance(model, nn.Sequential):
        return list(model)
    return [model]


def _run(stages: Sequence[nn.Module], x: torch.Tensor) -> torch.Tensor:
    for stage in stages:
        x = stage(x)
    return x


def _batches(n: int, batch_size: int | None):
    step = n if not batch_size else batch_size
    return [slice(i, min(n, i + step)) for i in range(0, n, step)]


class _StageCache:
    """The unpruned network's stage inputs and output on the calibration set."""

    def __init__(self, stages, inputs: torch.Tensor, needed: set[int], batch_size):
        self.stages = stages
        self.slices = _batches(len(inputs), batch_size)
        self.inputs: dict[int, list[torch.Tensor]] = {k: [] for k in needed}
        outputs = []
        for sl in self.slices:
            x = inputs[sl]
            for k, stage in enumerate(stages):
                if k in self.inputs:
                    self.inputs[k].append(x)
                x = stage(x)
            outputs.append(x.reshape(x.shape[0], -1).float())
        self.reference = torch.cat(outputs)

    def distortion(self, start: int) -> float:
        """Mean squared change of the output when re-running stages ``start:`` (weights as they
        are now) on the cached inputs of stage ``start``."""
        total = 0.0
        for i, x in enumerate(self.inputs[start]):
            out = _run(self.stages[start:], x).reshape(x.shape[0], -1).float()
            ref = self.reference[self.slices[i]]
            total += float(((out - ref) ** 2).sum())
        return total / self.reference.numel()


def _stage_of(stages: Sequence[nn.Module], layers: dict[str, nn.Module]) -> dict[str, int]:
    owner = {}
    for k, stage in enumerate(stages):
        for module in stage.modules():
            owner.setdefault(id(module), k)
    missing = [name for name, module in layers.items() if id(module) not in owner]
    if missing:
        raise ValueError(f"Prunable layers {missing[:5]} are in none of the model's stages; "
                         "model.stages() must cover the whole forward pass.")
    return {name: owner[id(module)] for name, module in layers.items()}


def distortion_curves(model: nn.Module, inputs: torch.Tensor, levels: Sequence[float], *,
                      target: float | None = None, layers: Sequence[str] | None = None,
                      batch_size: int | None = 128, show_progress: bool | None = None,
                      check_stages: bool = True) -> DistortionCurves:
    """Measure the output distortion of pruning each layer alone to each sparsity level.

    Parameters
    ----------
    model : torch.nn.Module
        The unpruned network (put in eval mode for the measurement; weights are restored).
    inputs : torch.Tensor
        The calibration set, already in the model's input format (e.g. ``(n, 3, h, w)``).
    levels : sequence of float
        Sparsity grid, strictly increasing, in (0, 1].
    target : float, optional
        The global sparsity the curves are for. When given it must be one of ``levels``; it
        turns on the early stop described in the module docstring.
    layers : sequence of str, optional
        Layers to measure (default: every prunable layer).
    batch_size : int or None, default=128
        Calibration inputs per forward pass (``None``: all at once).
    show_progress : bool, optional
        Progress bar over the layers.
    check_stages : bool, default=True
        Check that the stages reproduce the model's output on the first batch.

    Returns
    -------
    DistortionCurves

    Raises
    ------
    ValueError
        For bad levels, a ``target`` outside the grid, an already pruned layer, or stages that
        do not reproduce the model.
    """
    started = time.perf_counter()
    grid = check_levels(levels)
    if target is not None:
        check_scalar(target, "target", numbers.Real, min_val=0.0, max_val=1.0, closed="right")
        if not np.any(np.isclose(grid, target)):
            raise ValueError(f"The 'target' parameter ({target!r}) must be one of the levels "
                             f"{grid.tolist()}.")
    if batch_size is not None:
        check_scalar(batch_size, "batch_size", int, min_val=1)
    all_layers = prunable_layers(model)
    names = list(all_layers) if layers is None else list(layers)
    unknown = [n for n in names if n not in all_layers]
    if unknown:
        raise ValueError(f"The 'layers' parameter names layers that are not prunable: "
                         f"{unknown[:5]}.")
    pruned = [n for n in names if is_pruned(all_layers[n])]
    if pruned:
        raise ValueError(f"Layers {pruned[:5]} are already pruned; measure the curves on the "
                         "unpruned model.")
    chosen = {n: all_layers[n] for n in names}
    stages = model_stages(model)
    owner = _stage_of(stages, chosen)
    was_training = model.training
    model.eval()
    n_weights = np.array([chosen[n].weight.numel() for n in names], dtype=np.int64)
    dist = np.full((len(names), len(grid)), np.inf)
    measured = np.zeros_like(dist, dtype=bool)
    forwards = len(stages)
    try:
        with torch.no_grad():
            if check_stages:
                first = inputs[: batch_size or len(inputs)]
                full, staged = model(first), _run(stages, first)
                if full.shape != staged.shape or not torch.allclose(full, staged, rtol=1e-4,
                                                                    atol=1e-5):
                    raise ValueError("The model's stages do not reproduce its forward pass.")
            cache = _StageCache(stages, inputs, set(owner.values()), batch_size)

            def measure(i: int, j: int) -> float:
                nonlocal forwards
                module = chosen[names[i]]
                saved = module.weight.detach().clone()
                k = int(np.rint(grid[j] * n_weights[i]))
                try:
                    module.weight.mul_(magnitude_mask(saved, k))
                    value = cache.distortion(owner[names[i]])
                finally:
                    module.weight.copy_(saved)
                forwards += len(stages) - owner[names[i]]
                dist[i, j], measured[i, j] = value, True
                return value

            order = list(range(len(grid)))
            bound = None
            if target is not None:
                t = int(np.argmin(np.abs(grid - target)))
                for i in progress(range(len(names)), desc="distortion at target",
                                  enabled=show_progress, leave=False):
                    measure(i, t)
                bound = float(dist[:, t].sum())
                order.remove(t)
            for i in progress(range(len(names)), desc="distortion curves",
                              enabled=show_progress, leave=False):
                for j in order:
                    if bound is not None and grid[j] > target and (
                            dist[i, j - 1] > bound or not measured[i, j - 1]):
                        break
                    measure(i, j)
    finally:
        model.train(was_training)
    seconds = time.perf_counter() - started
    logger.info("distortion curves: %d layers x %d levels (%d measured) on %d inputs, %d stage "
                "passes, %.1f s", len(names), len(grid), int(measured.sum()), len(inputs),
                forwards, seconds)
    return DistortionCurves(layers=names, n_weights=n_weights, levels=grid, distortion=dist,
                            measured=measured, bound=bound, target=target,
                            n_calibration=int(len(inputs)), seconds=seconds,
                            stage_forwards=forwards, n_stages=len(stages))

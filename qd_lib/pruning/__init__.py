"""Rate-distortion pruning with coresets as calibration sets (supplement §F.2, Table 3).

Layer-adaptive unstructured magnitude pruning in the spirit of RD-Prune (Xu et al., ICCV 2023):
measure, on a *calibration set*, how much the network's output moves when each layer alone is
pruned to each level of a sparsity grid (:func:`distortion_curves`), then choose per-layer
sparsities that minimise the summed distortion at a global sparsity target
(:func:`allocate_sparsity`, exact count), and apply magnitude masks (:func:`apply_masks`).
The experiment (:mod:`.experiment`) picks the calibration set with each coreset method and
prunes BaseCNN; :mod:`.tables` writes Table 3 from the run records.

>>> from qd_lib.pruning import PruningSpec, run_pruning, table3, save_table3
>>> run_pruning(PruningSpec("proxy-default", "qdiverse", seed=0))      # doctest: +SKIP
>>> save_table3(table3(datasets=["proxy-default"]))                      # doctest: +SKIP

Command line: ``python -m qd_lib.pruning run|table ...`` (see :mod:`qd_lib.pruning.__main__`).
"""
from qd_lib.pruning.allocation import (
    Allocation,
    allocate_sparsity,
    target_count,
    uniform_allocation,
)
from qd_lib.pruning.distortion import DistortionCurves, distortion_curves, model_stages
from qd_lib.pruning.experiment import (
    CALIBRATION_FRACTIONS,
    DEFAULT_LEVELS,
    UNIFORM,
    PruningSpec,
    calibration_fraction,
    grid_specs,
    load_records,
    pruning_dir,
    run_pruning,
    run_pruning_grid,
    train_base,
)
from qd_lib.pruning.flops import layer_macs, measure_flops, remaining_flops_fraction
from qd_lib.pruning.masks import (
    apply_masks,
    load_pruned_state_dict,
    magnitude_mask,
    magnitude_masks,
    make_permanent,
    mask_sparsity,
    prunable_layers,
)
from qd_lib.pruning.tables import save_table3, table3

__all__ = [
    "CALIBRATION_FRACTIONS", "DEFAULT_LEVELS", "UNIFORM", "Allocation", "DistortionCurves",
    "PruningSpec", "allocate_sparsity", "apply_masks", "calibration_fraction",
    "distortion_curves", "grid_specs", "layer_macs", "load_pruned_state_dict", "load_records",
    "magnitude_mask", "magnitude_masks", "make_permanent", "mask_sparsity", "measure_flops",
    "model_stages", "prunable_layers", "pruning_dir", "remaining_flops_fraction",
    "run_pruning", "run_pruning_grid", "save_table3", "table3", "target_count", "train_base",
    "uniform_allocation",
]

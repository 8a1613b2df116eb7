"""The supplement's image-classification experiment (§F.3, Table 4): coresets of CIFAR-10.

Features (MobileNet-V2 content, NSS quality, a linear probe's class probabilities for CD) →
selection with Q-Diverse (the supplement's l = 500, b = 1500, γ = 0.7) and the baselines →
ResNet-18 (CIFAR stem, no max-pool) trained on the coreset → top-1 test accuracy → one record
per run under ``runs/cifar10/<run_id>/`` → the Table 4 layout from the records, with the
supplement's quoted DeepCore/ZCore rows labelled as quoted.

Offline, the same pipeline runs on the digits stand-in (``dataset: digits``, NOT CIFAR-10).

>>> from qd_lib.classification import load_grid
>>> grid = load_grid("notebooks/sweeps/cifar10/digits.yaml")
>>> grid.dataset, grid.methods[-1], grid.fractions, len(grid.runs())
('digits', 'qdiverse', (0.1, 0.3), 42)

Command line (``python -m qd_lib.classification``)::

    run GRID [--device auto] [--threads N] [--dry-run] [--force]
    table GRID [--folder figures/cifar10] [--no-quoted]
"""
from qd_lib.classification.experiment import (
    ALL_METHODS,
    ClassificationGrid,
    ClassificationRun,
    GridReport,
    check_class_bins,
    default_method_options,
    grid_runs,
    load_grid,
    run_grid,
    run_one,
    run_status,
)
from qd_lib.classification.features import ClassificationFeatures, selection_features
from qd_lib.classification.tables import (
    QUOTED_LABEL,
    SUPPLEMENT_TABLE4,
    Table4,
    TableMixError,
    save_table4,
    table4,
)
from qd_lib.classification.training import RECIPES, TrainRecipe, train_classifier

__all__ = [
    "ALL_METHODS",
    "QUOTED_LABEL",
    "RECIPES",
    "SUPPLEMENT_TABLE4",
    "ClassificationFeatures",
    "ClassificationGrid",
    "ClassificationRun",
    "GridReport",
    "Table4",
    "TableMixError",
    "TrainRecipe",
    "check_class_bins",
    "default_method_options",
    "grid_runs",
    "grid_table",
    "load_grid",
    "run_grid",
    "run_one",
    "run_status",
    "save_table4",
    "selection_features",
    "table4",
    "train_classifier",
]


def grid_table(grid, *, runs_root=None, quoted: bool = True, decimals: int = 2) -> Table4:
    """The Table 4 layout of a grid's finished runs (plus the quoted rows)."""
    grid = grid if isinstance(grid, ClassificationGrid) else load_grid(grid)
    return table4(grid_runs(grid, runs_root=runs_root), fractions=grid.fractions,
                  quoted=quoted, decimals=decimals, grid_name=grid.name)

"""Spectral and log-determinant building blocks, under their former import path.

The implementations live in the Q-Diverse package, next to the section of design note
``qdiverse.md`` each implements; this module re-exports them for code written against
``qd_lib.selection.spectral``:

=============================  ================================================================
name                           home
=============================  ================================================================
squared_distances              :mod:`qd_lib.selection.methods.qdiverse.affinity` (§2.4)
offdiag_median, rbf_inplace    :mod:`qd_lib.selection.methods.qdiverse.affinity` (§2.6)
symmetric_normalize_inplace    :mod:`qd_lib.selection.methods.qdiverse.spectral` (§2.7)
energy_rank,                   :mod:`qd_lib.selection.methods.qdiverse.spectral` (§2.8)
nystrom_eigenvectors
greedy_logdet                  :mod:`qd_lib.selection.methods.qdiverse.greedy` (§2.10)
allocate_budget                :mod:`qd_lib.selection.methods.qdiverse.batches` (§2.3)
=============================  ================================================================
"""
from qd_lib.selection.methods.qdiverse.affinity import (
    offdiag_median,
    rbf_inplace,
    squared_distances,
)
from qd_lib.selection.methods.qdiverse.batches import allocate_budget
from qd_lib.selection.methods.qdiverse.greedy import TIE_TOLERANCE, greedy_logdet
from qd_lib.selection.methods.qdiverse.spectral import (
    EIGEN_FLOOR,
    energy_rank,
    nystrom_eigenvectors,
    symmetric_normalize_inplace,
)

__all__ = [
    "EIGEN_FLOOR",
    "TIE_TOLERANCE",
    "allocate_budget",
    "energy_rank",
    "greedy_logdet",
    "nystrom_eigenvectors",
    "offdiag_median",
    "rbf_inplace",
    "squared_distances",
    "symmetric_normalize_inplace",
]

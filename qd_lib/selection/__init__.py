"""Coreset selection: one signature, one registry.

>>> import numpy as np
>>> from qd_lib.selection import select
>>> sel = select("random", np.zeros((10, 3)), 0.3, seed=0)
>>> sel.budget, len(set(sel.indices))
(3, 3)
"""
from qd_lib.selection.base import (
    MethodOutput,
    MethodSpec,
    Selection,
    available_methods,
    conditioning_methods,
    get_method,
    register,
    select,
)

__all__ = [
    "MethodOutput",
    "MethodSpec",
    "Selection",
    "available_methods",
    "conditioning_methods",
    "get_method",
    "register",
    "select",
]

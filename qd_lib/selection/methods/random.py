"""Uniform random sampling without replacement: the reference every method must beat."""
from __future__ import annotations

import numpy as np

from qd_lib.selection.base import MethodOutput, register


@register("random", inputs=("embedding",), needs_mos=False, stochastic=True)
def random_selection(features: dict[str, np.ndarray], budget: int, *, mos=None,
                     random_state: np.random.Generator) -> MethodOutput:
    """Uniform random sample without replacement (label- and feature-free).

    The features only fix the number of candidates. Pick order is the order of the draw, so the
    first ``k`` picks of a selection are themselves a uniform sample of size ``k``.
    """
    n = features["embedding"].shape[0]
    return MethodOutput(indices=random_state.permutation(n)[:budget])

"""Uniform random sampling without replacement: the reference every method must beat."""
from __future__ import annotations

import numpy as np

from qd_lib.selection.base import MethodOutput, register


@register("random", inputs=("embedding",), needs_mos=False, stochastic=True,
          title="Random")
def random_selection(features: dict[str, np.ndarray], budget: int, *, mos=None,
                     random_state: np.random.Generator, initial=None) -> MethodOutput:
    """Uniform random sample without replacement (label- and feature-free).

    The features only fix the number of candidates. Pick order is the order of the draw, so the
    first ``k`` picks of a selection are themselves a uniform sample of size ``k``.

    Options
    -------
    initial : array of int, optional
        Rows already selected (rated): they are excluded, and the sample is drawn uniformly
        from the other rows.
    """
    n = features["embedding"].shape[0]
    if initial is None:
        return MethodOutput(indices=random_state.permutation(n)[:budget])
    rest = np.setdiff1d(np.arange(n), initial)
    return MethodOutput(indices=random_state.permutation(rest)[:budget],
                        params={"initial": np.asarray(initial).tolist()},
                        info={"n_initial": len(initial)})

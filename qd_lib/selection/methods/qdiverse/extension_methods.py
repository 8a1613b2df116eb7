"""Registers Q-Diverse's named variants: ``qdiverse`` with some options fixed.

* ``qdiverse_qdpp`` and ``qdiverse_density``: the labelled extensions beyond the paper (see
  :mod:`.extensions`), the ``extension`` option fixed.
* ``qdiverse_rownorm``: the paper's algorithm with one inferred choice made the other way, the
  spectral embedding's rows scaled to unit length (``row_normalize=True``). It is the variant
  the study's ablation ranked best training-free and then trained in the paired design
  (README, "What the evidence says"); ``qdiverse`` keeps the design note's defaults.

A named variant selects exactly what ``qdiverse`` with the same options selects;
:data:`NAMED_VARIANTS` maps each name to those options.
"""
from __future__ import annotations

import inspect

from qd_lib.selection.base import register
from qd_lib.selection.methods.qdiverse.method import qdiverse_selection

__all__ = ["NAMED_VARIANTS", "qdiverse_density_selection", "qdiverse_qdpp_selection",
           "qdiverse_rownorm_selection"]

#: Registry name -> the ``qdiverse`` options it fixes.
NAMED_VARIANTS: dict[str, dict] = {}


def _named_variant(name: str, fixed: dict, title: str, summary: str, see: str):
    def selector(features, budget, *, mos=None, random_state, **options):
        clash = sorted(set(options) & set(fixed))
        if clash:
            raise TypeError(f"Method {name!r} fixes the {clash[0]!r} option "
                            f"({fixed[clash[0]]!r}); use 'qdiverse' to choose it.")
        return qdiverse_selection(features, budget, mos=mos, random_state=random_state,
                                  **fixed, **options)

    base = inspect.signature(qdiverse_selection)
    selector.__signature__ = base.replace(parameters=[
        p for p in base.parameters.values() if p.name not in fixed])
    selector.__name__ = f"{name}_selection"
    selector.__doc__ = f"{summary}\n\nSee {see}."
    register(name, inputs=("content", "quality"), needs_mos=False, stochastic=True,
             title=title)(selector)
    NAMED_VARIANTS[name] = dict(fixed)
    return selector


qdiverse_qdpp_selection = _named_variant(
    "qdiverse_qdpp", {"extension": "quality_dpp"}, "Q-Diverse quality×diversity DPP (extension)",
    "EXTENSION (not in the paper): Q-Diverse with a quality × diversity DPP kernel "
    "diag(q)·K·diag(q), q from the affinity-graph density.",
    ":mod:`qd_lib.selection.methods.qdiverse.extensions`")
qdiverse_density_selection = _named_variant(
    "qdiverse_density", {"extension": "density_kernel"}, "Q-Diverse density kernel (extension)",
    "EXTENSION (not in the paper): Q-Diverse with a density-compensated (self-tuning, "
    "k-NN scaled) kernel on the spectral embedding.",
    ":mod:`qd_lib.selection.methods.qdiverse.extensions`")
qdiverse_rownorm_selection = _named_variant(
    "qdiverse_rownorm", {"row_normalize": True}, "Q-Diverse unit-length rows (variant)",
    "VARIANT of an inferred choice: Q-Diverse with the spectral embedding's rows scaled to unit "
    "length (``row_normalize=True``, Ng-Jordan-Weiss style) before the second kernel.",
    "the README's study section for the paired evidence behind it")

"""Registers the labelled extensions ``qdiverse_qdpp`` and ``qdiverse_density`` (see
:mod:`.extensions`): ``qdiverse`` with its ``extension`` option fixed."""
from __future__ import annotations

import inspect

from qd_lib.selection.base import register
from qd_lib.selection.methods.qdiverse.method import qdiverse_selection

__all__ = ["qdiverse_density_selection", "qdiverse_qdpp_selection"]


def _extension_method(extension: str, name: str, title: str, summary: str):
    def selector(features, budget, *, mos=None, random_state, **options):
        if "extension" in options:
            raise TypeError(f"Method {name!r} fixes the 'extension' option "
                            f"({extension!r}); use 'qdiverse' to choose it.")
        return qdiverse_selection(features, budget, mos=mos, random_state=random_state,
                                  extension=extension, **options)

    base = inspect.signature(qdiverse_selection)
    selector.__signature__ = base.replace(parameters=[
        p for p in base.parameters.values() if p.name != "extension"])
    selector.__name__ = f"{name}_selection"
    selector.__doc__ = f"{summary}\n\nSee :mod:`qd_lib.selection.methods.qdiverse.extensions`."
    register(name, inputs=("content", "quality"), needs_mos=False, stochastic=True,
             title=title)(selector)
    return selector


qdiverse_qdpp_selection = _extension_method(
    "quality_dpp", "qdiverse_qdpp", "Q-Diverse quality×diversity DPP (extension)",
    "EXTENSION (not in the paper): Q-Diverse with a quality × diversity DPP kernel "
    "diag(q)·K·diag(q), q from the affinity-graph density.")
qdiverse_density_selection = _extension_method(
    "density_kernel", "qdiverse_density", "Q-Diverse density kernel (extension)",
    "EXTENSION (not in the paper): Q-Diverse with a density-compensated (self-tuning, "
    "k-NN scaled) kernel on the spectral embedding.")

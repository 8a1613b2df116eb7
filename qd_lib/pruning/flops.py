"""FLOPs of the prunable layers: dense, remaining after pruning (formula), and measured.

FLOPs here are multiply-accumulates of the convolution and linear layers for one input: a
convolution costs ``weight.numel() × H_out × W_out`` (grouped and depthwise convolutions
included, since their weight holds ``C_out × C_in/groups × k_h × k_w`` values), a linear layer
``weight.numel()`` per output row. An unstructured mask that keeps a fraction ``κ_l`` of layer
``l``'s weights leaves ``κ_l`` of its multiply-accumulates, so the remaining FLOPs fraction is

    ``Σ_l F_l κ_l / Σ_l F_l``

(the dense FLOPs of the layers weighted by their kept weights: the supplement's Table 3
"FLOPs" column). :func:`measure_flops` counts the same quantity from a real forward pass (the
non-zero weights each layer actually multiplies, times its output positions), which the tests
compare with the formula.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from qd_lib.pruning.masks import prunable_layers

__all__ = ["layer_macs", "measure_flops", "remaining_flops_fraction"]


def _positions(module: nn.Module, out: torch.Tensor) -> int:
    """Output positions per input of one layer call (spatial size; rows for a linear)."""
    if isinstance(module, nn.Conv2d):
        return int(out.shape[-2] * out.shape[-1])
    return int(out[0].numel() // out.shape[-1])  # Linear: leading dims other than the batch


def _count(model: nn.Module, example: torch.Tensor, weight_count) -> dict[str, int]:
    layers = prunable_layers(model)
    counts = dict.fromkeys(layers, 0)
    hooks = []
    for name, module in layers.items():
        def hook(mod, _inp, out, name=name):
            counts[name] += weight_count(mod) * _positions(mod, out)
        hooks.append(module.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example[:1])
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return counts


def layer_macs(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """Dense multiply-accumulates of each prunable layer for one input.

    Parameters
    ----------
    model : torch.nn.Module
    example : torch.Tensor
        A batch of inputs in the model's input format; only the first one is run.

    Returns
    -------
    dict of str to int
        Layer name → ``weight.numel() × output positions`` (0 for a layer the forward pass
        does not reach).
    """
    return _count(model, example, lambda mod: mod.weight.numel())


def measure_flops(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """Multiply-accumulates a forward pass performs with the weights it actually uses: the
    non-zero entries of each layer's (masked) weight × its output positions, per layer."""
    return _count(model, example, lambda mod: int(torch.count_nonzero(mod.weight)))


def remaining_flops_fraction(macs: Mapping[str, int], kept: Mapping[str, float]) -> float:
    """``Σ_l F_l κ_l / Σ_l F_l``: the share of the layers' dense FLOPs left after pruning.

    Parameters
    ----------
    macs : mapping of str to int
        Dense FLOPs per layer (:func:`layer_macs`).
    kept : mapping of str to float
        Kept fraction of each layer's weights, in [0, 1]; layers not listed are dense.

    Raises
    ------
    ValueError
        If a kept fraction is outside [0, 1] or names a layer ``macs`` does not have.
    """
    unknown = sorted(set(kept) - set(macs))
    if unknown:
        raise ValueError(f"The 'kept' parameter names layers without FLOPs: {unknown[:5]}.")
    total = sum(macs.values())
    if total <= 0:
        raise ValueError("The 'macs' parameter must hold a positive total.")
    remaining = 0.0
    for name, flops in macs.items():
        fraction = float(kept.get(name, 1.0))
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"The kept fraction of layer {name!r} must be in [0, 1]. Got "
                             f"{fraction!r} instead.")
        remaining += flops * fraction
    return remaining / total

"""Unstructured magnitude masks on a model's convolution and linear weights.

A *prunable layer* is every ``nn.Conv2d`` and ``nn.Linear`` of a model, in ``named_modules``
order (biases, normalisation layers and embeddings are never pruned). Pruning ``k`` weights of
a layer zeroes its ``k`` smallest-magnitude weights (ties broken by position, so the mask is
deterministic).

Masks are applied with :func:`torch.nn.utils.prune.custom_from_mask`: the layer keeps
``weight_orig`` (a parameter) and ``weight_mask`` (a buffer), both in its ``state_dict``, and
``weight = weight_orig * weight_mask`` is recomputed before every forward pass, so the pruned
weights stay zero through fine-tuning. :func:`load_pruned_state_dict` loads such a state dict
into a freshly built (unpruned) model; :func:`make_permanent` folds the masks into plain
weights.

>>> import torch
>>> from qd_lib.pruning.masks import apply_masks, magnitude_masks, mask_sparsity
>>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
>>> masks = magnitude_masks(net, {"0": 6, "2": 1})
>>> apply_masks(net, masks)
>>> mask_sparsity(net)["pruned"]
7
"""
from __future__ import annotations

import logging
from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils import prune

from qd_lib.utils.errors import UnknownNameError
from qd_lib.utils.validation import check_scalar

logger = logging.getLogger(__name__)

__all__ = ["PRUNABLE_TYPES", "apply_masks", "is_pruned", "load_pruned_state_dict",
           "magnitude_mask", "magnitude_masks", "make_permanent", "mask_sparsity",
           "prunable_layers"]

#: Module types whose ``weight`` is pruned.
PRUNABLE_TYPES = (nn.Conv2d, nn.Linear)


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The model's convolution and linear layers by qualified name, in module order."""
    return {name: module for name, module in model.named_modules()
            if isinstance(module, PRUNABLE_TYPES)}


def is_pruned(module: nn.Module) -> bool:
    """Whether ``module`` carries a pruning mask on its ``weight``."""
    return hasattr(module, "weight_mask") and hasattr(module, "weight_orig")


def magnitude_mask(weight: torch.Tensor, n_prune: int) -> torch.Tensor:
    """Mask (same shape and dtype as ``weight``, 1 = kept) zeroing the ``n_prune`` weights of
    smallest magnitude; equal magnitudes are pruned in flat-index order.

    Parameters
    ----------
    weight : torch.Tensor
        The layer's weight.
    n_prune : int
        Weights to prune, ``0 ≤ n_prune ≤ weight.numel()``.
    """
    n = weight.numel()
    check_scalar(n_prune, "n_prune", int, min_val=0, max_val=n)
    mask = torch.ones(n, dtype=weight.dtype, device=weight.device)
    if n_prune:
        order = torch.argsort(weight.detach().abs().flatten(), stable=True)
        mask[order[:n_prune]] = 0
    return mask.view_as(weight)


def _layer(model: nn.Module, name: str, layers: Mapping[str, nn.Module]) -> nn.Module:
    if name not in layers:
        raise UnknownNameError("prunable layer", name, list(layers))
    return layers[name]


def _weight(module: nn.Module) -> torch.Tensor:
    """The weight a forward pass uses (``weight_orig * weight_mask`` when already pruned)."""
    return module.weight_orig * module.weight_mask if is_pruned(module) else module.weight


def magnitude_masks(model: nn.Module, counts: Mapping[str, int]) -> dict[str, torch.Tensor]:
    """Magnitude masks of the layers named in ``counts`` (layer name → weights to prune).

    Raises
    ------
    UnknownNameError
        If a name is not a prunable layer of ``model`` (with the closest names).
    """
    layers = prunable_layers(model)
    return {name: magnitude_mask(_weight(_layer(model, name, layers)), int(k))
            for name, k in counts.items()}


def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Attach ``masks`` (layer name → 0/1 tensor shaped like the weight) to ``model``, in place.

    A layer that already has a mask gets the product of the old and the new one (PyTorch's
    pruning container), so pruned weights never come back.

    Raises
    ------
    UnknownNameError
        For an unknown layer name.
    ValueError
        If a mask's shape differs from its layer's weight.
    """
    layers = prunable_layers(model)
    for name, mask in masks.items():
        module = _layer(model, name, layers)
        weight = _weight(module)
        if tuple(mask.shape) != tuple(weight.shape):
            raise ValueError(f"The mask of layer {name!r} has shape {tuple(mask.shape)}; its "
                             f"weight has shape {tuple(weight.shape)}.")
        prune.custom_from_mask(module, "weight", mask.to(weight.device, weight.dtype))


def mask_sparsity(model: nn.Module) -> dict:
    """Pruned weights of every prunable layer, counted from the weights themselves.

    Returns
    -------
    dict
        ``layers`` (name → ``{"n": weights, "pruned": zeros under the mask}``; an unmasked
        layer counts 0), ``n`` and ``pruned`` (totals) and ``sparsity`` (``pruned / n``).
    """
    layers, total, pruned = {}, 0, 0
    for name, module in prunable_layers(model).items():
        n = _weight(module).numel()
        k = int((module.weight_mask == 0).sum()) if is_pruned(module) else 0
        layers[name] = {"n": n, "pruned": k}
        total, pruned = total + n, pruned + k
    return {"layers": layers, "n": total, "pruned": pruned,
            "sparsity": pruned / total if total else 0.0}


def make_permanent(model: nn.Module) -> None:
    """Fold every mask into its layer's plain ``weight`` (the zeros stay; the mask is gone)."""
    for module in prunable_layers(model).values():
        if is_pruned(module):
            prune.remove(module, "weight")


def load_pruned_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], *,
                           strict: bool = True):
    """Load a state dict saved from a pruned model into ``model`` (built unpruned).

    Every layer whose ``<name>.weight_mask`` is in ``state`` gets a mask first (so the keys
    ``weight_orig``/``weight_mask`` exist), then the state is loaded; the masks in ``state``
    are what the model ends up with.

    Returns
    -------
    The result of :meth:`torch.nn.Module.load_state_dict`.
    """
    layers = prunable_layers(model)
    for key in state:
        if key.endswith(".weight_mask"):
            name = key[: -len(".weight_mask")]
            module = _layer(model, name, layers)
            if not is_pruned(module):
                prune.identity(module, "weight")
    return model.load_state_dict(state, strict=strict)

"""IQA models (MANIQA, MUSIQ, BaseCNN): one registry, named configurations, official layouts.

>>> from qd_lib.models import available_models, available_configs, build_model
>>> available_models()
['basecnn', 'maniqa', 'musiq']
>>> available_configs("maniqa")
['official', 'paper', 'small', 'tiny']
>>> model = build_model("maniqa", config="tiny")
>>> model.config.name, type(model).__name__
('tiny', 'MANIQA')

``build_model(name, config=...)`` returns the model with its :class:`ModelConfig` attached as
``model.config``. Pretrained weights named by the configuration are loaded from files only
(``QD_WEIGHTS_DIR`` or torchvision's hub cache); ``pretrained=False`` skips them and gives a
random initialisation (label such results). :func:`load_official_checkpoint` loads a released
MANIQA or MUSIQ checkpoint (or a state dict in their key layout) strictly.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from qd_lib.models.configs import (
    InputPolicy,
    ModelConfig,
    Recipe,
    available_configs,
    get_config,
)
from qd_lib.paths import display_path
from qd_lib.utils.errors import UnknownNameError

logger = logging.getLogger(__name__)

__all__ = [
    "InputPolicy",
    "ModelConfig",
    "Recipe",
    "available_configs",
    "available_models",
    "build_model",
    "count_parameters",
    "get_config",
    "load_official_checkpoint",
    "model_class",
]

_MODELS = {
    "maniqa": ("qd_lib.models.maniqa", "MANIQA"),
    "musiq": ("qd_lib.models.musiq", "MUSIQ"),
    "basecnn": ("qd_lib.models.basecnn", "BaseCNN"),
}


def available_models() -> list[str]:
    """Registry names of the models."""
    return sorted(_MODELS)


def model_class(name: str) -> type[nn.Module]:
    """The class registered under ``name``."""
    import importlib

    if name not in _MODELS:
        raise UnknownNameError("model", name, _MODELS)
    module, cls = _MODELS[name]
    return getattr(importlib.import_module(module), cls)


def build_model(name: str, config: str | ModelConfig = "paper", *, pretrained: bool = True,
                **overrides) -> nn.Module:
    """Build model ``name`` in configuration ``config``.

    Parameters
    ----------
    name : {"maniqa", "musiq", "basecnn"}
        Registry name.
    config : str or ModelConfig, default="paper"
        A configuration name (see :func:`available_configs`) or a :class:`ModelConfig`.
    pretrained : bool, default=True
        Load the weights the configuration names (``config.pretrained``, and ImageNet weights
        given in its ``arch``). ``False`` gives a random initialisation everywhere.
    **overrides
        Passed to :meth:`ModelConfig.with_overrides` (``epochs=3``, ``arch.scale=0.13``, …).

    Returns
    -------
    torch.nn.Module
        With attributes ``config`` (the resolved :class:`ModelConfig`) and
        ``weights_loaded`` (list of weights files used).

    Raises
    ------
    UnknownNameError
        Unknown model, configuration or override (with the closest names).
    OfflineWeightsError
        A weights file named by the configuration is missing (use ``pretrained=False``).
    """
    cls = model_class(name)
    cfg = get_config(name, config, **overrides)
    arch = dict(cfg.arch)
    if not pretrained:
        for key in ("mobilenet_weights", "weights"):
            if key in arch:
                arch[key] = None
    model = cls(**arch)
    loaded: list[str] = []
    for key in ("mobilenet_weights", "weights"):
        if arch.get(key):
            loaded.append(f"{key}:{arch[key]}")
    if pretrained and cfg.pretrained:
        loaded.append(_load_pretrained(model, cfg.pretrained))
    model.config = cfg
    model.weights_loaded = loaded
    return model


def _load_pretrained(model: nn.Module, spec: str) -> str:
    kind, _, tag = spec.partition(":")
    if kind == "vit":
        from qd_lib.models.backbones import load_vit_weights

        path = load_vit_weights(model.vit, tag)
    elif kind == "musiq":
        from qd_lib.weights import MUSIQ_CHECKPOINTS, locate

        if tag not in MUSIQ_CHECKPOINTS:
            raise UnknownNameError("MUSIQ checkpoint", tag, MUSIQ_CHECKPOINTS)
        path = locate(MUSIQ_CHECKPOINTS[tag])
        load_official_checkpoint(model, path, skip_head=True)
    else:
        raise ValueError(f"Unknown pretrained specification {spec!r}; expected 'vit:<tag>' or "
                         "'musiq:<name>'.")
    return f"{spec} ({Path(path).name})"


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


#: Keys a checkpoint may hold its state dict under, in the order tried: pyiqa's ``params``
#: (then ``params_ema``, BasicSR's EMA copy, when ``params`` is absent), ``state_dict``, ``model``.
_WRAPPER_KEYS = ("params", "params_ema", "state_dict", "model")


def _unwrap_state_dict(obj) -> dict[str, torch.Tensor]:
    """The bare state dict inside ``obj`` (a module, a wrapper dict or a state dict)."""
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, dict):
        for key in _WRAPPER_KEYS:
            if key in obj and isinstance(obj[key], dict):
                others = [k for k in _WRAPPER_KEYS if k != key and k in obj]
                if others:
                    logger.info("checkpoint holds %s; using %r", sorted([key, *others]), key)
                return _unwrap_state_dict(obj[key])
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return {(k[7:] if k.startswith("module.") else k): v for k, v in obj.items()}
    raise TypeError("Not a state dict: expected a mapping of tensors (optionally under "
                    f"{' or '.join(repr(k) for k in _WRAPPER_KEYS)}, keys optionally prefixed "
                    "'module.').")


def _head_prefixes(model: nn.Module) -> tuple[str, ...]:
    prefixes = getattr(model, "checkpoint_heads", None)
    if not prefixes:
        raise ValueError(f"The 'skip_head' parameter needs a model that names its heads "
                         f"('checkpoint_heads'); {type(model).__name__} does not.")
    return tuple(prefixes)


def _keep_own_heads(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` without any classifier head of the checkpoint, with the model's own heads."""
    prefixes = _head_prefixes(model)
    dropped = sorted({k.rsplit(".", 1)[0] for k in state if k.startswith(prefixes)})
    out = {k: v for k, v in state.items() if not k.startswith(prefixes)}
    own = {k: v for k, v in model.state_dict().items() if k.startswith(prefixes)}
    out.update(own)
    logger.info("skip_head: dropped the checkpoint's %s; kept the model's own %s",
                dropped or "(no heads)", sorted({k.rsplit(".", 1)[0] for k in own}))
    return out


def load_official_checkpoint(model: nn.Module, checkpoint, *, strict: bool = True,
                             skip_head: bool = False) -> nn.Module:
    """Load a released MANIQA/MUSIQ checkpoint (or a state dict in its layout) into ``model``.

    Accepted: a path or an in-memory state dict; a bare state dict (the released files), or one
    under ``params`` (pyiqa's training checkpoints), ``params_ema`` (BasicSR/pyiqa EMA copies,
    used when ``params`` is absent), ``state_dict`` or ``model``; keys with the ``module.``
    prefix of ``DataParallel``. MUSIQ's AVA head (``head.0.*``, a Linear followed by a softmax)
    maps to ``head.*``.

    Layouts of the released files (from the code that wrote them):

    - pyiqa's MUSIQ conversions (``scripts/convert_musiq_to_pth.py``): bare state dicts.
      ``musiq_imagenet_pretrain`` holds the state of a 1-output MUSIQ, including an untrained
      ``head.*``, plus Google's 1000-class classifier as ``imagenet_head.*``; load it with
      ``skip_head=True``.
    - MANIQA's KonIQ/KADID releases (``train_maniqa.py``: ``net.module.state_dict()``): bare,
      with the ViT's ImageNet classifier ``vit.head.*`` and the IQA heads ``fc_score.*`` and
      ``fc_weight.*``.

    Parameters
    ----------
    model : MANIQA or MUSIQ
        Built with the matching architecture (``maniqa/paper`` with ``arch.scale`` as the
        checkpoint needs, ``musiq/official`` for Google's checkpoints).
    checkpoint : path or mapping
        The checkpoint.
    strict : bool, default=True
        Every key must match (``load_state_dict(strict=True)``).
    skip_head : bool, default=False
        Keep the model's own heads and ignore every head of the checkpoint, whatever its
        shape: the keys under the model's ``checkpoint_heads`` prefixes (MUSIQ: ``head.``,
        ``imagenet_head.``; MANIQA: ``fc_score.``, ``fc_weight.``, ``vit.head.``). For starting
        from a pre-training checkpoint (``musiq_imagenet_pretrain``).

    Raises
    ------
    OfflineWeightsError
        If a path does not exist.
    RuntimeError
        On missing or unexpected keys or shape mismatches (strict), naming them.
    ValueError
        With ``skip_head`` for a model that declares no ``checkpoint_heads``.
    """
    from qd_lib.utils.errors import OfflineWeightsError

    source = "state dict"
    if isinstance(checkpoint, (str, Path)):
        path = Path(checkpoint)
        if not path.is_file():
            raise OfflineWeightsError(f"Checkpoint not found: {display_path(path)}.")
        source = display_path(path)
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a pickled whole module cannot be read safely
            raise TypeError(
                f"{source} is not a plain state dict ({type(exc).__name__}: {exc}). Early "
                "official MANIQA releases pickled the whole module; re-save it as a state dict "
                "(or use pyiqa's converted file).") from None
    state = _unwrap_state_dict(checkpoint)
    if any(k.startswith("head.0.") for k in state) and not any(k == "head.weight" for k in state):
        state = {("head." + k[7:] if k.startswith("head.0.") else k): v for k, v in state.items()}
    if skip_head:
        state = _keep_own_heads(model, state)
    result = model.load_state_dict(state, strict=strict)
    logger.info("loaded %d tensors from %s into %s", len(state), source, type(model).__name__)
    if not strict and (result.missing_keys or result.unexpected_keys):
        logger.warning("non-strict load from %s: %d missing, %d unexpected keys", source,
                       len(result.missing_keys), len(result.unexpected_keys))
    return model

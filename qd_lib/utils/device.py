"""Torch device resolution shared by extraction and training."""
from __future__ import annotations

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else the CPU; a ``torch.device`` passes through.

    Raises
    ------
    ValueError
        If ``device`` is not a device torch understands.
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"The 'device' parameter must be 'auto', 'cpu', 'cuda' or 'cuda:<i>'. "
                         f"Got {device!r} instead.") from None

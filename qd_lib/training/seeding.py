"""Seeds for training runs (and only for them).

Library code elsewhere never touches global random state; training is the exception because
torch draws dropout masks and weight initialisations from its global generator.
:func:`seed_everything` seeds Python, NumPy and torch (CPU and CUDA) and switches torch to
deterministic algorithms; :func:`derive_seed` gives independent, reproducible sub-seeds
(per epoch, per image) from one run seed.
"""
from __future__ import annotations

import hashlib
import os
import random
from contextlib import contextmanager

import numpy as np
import torch


def derive_seed(seed: int, *keys) -> int:
    """A 63-bit seed derived from ``seed`` and ``keys`` (stable across processes and runs)."""
    text = repr((int(seed),) + tuple(str(k) for k in keys)).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") >> 1


def seed_everything(seed: int, *, deterministic: bool = True) -> dict:
    """Seed ``random``, NumPy's legacy global generator and torch (all devices).

    With ``deterministic``, cuDNN autotuning is off, cuDNN is deterministic and
    ``torch.use_deterministic_algorithms(True, warn_only=True)`` is set (``CUBLAS_WORKSPACE_CONFIG``
    too, when unset). Returns the previous settings for :func:`restore_determinism`.
    """
    previous = {
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))  # noqa: NPY002 (third-party code may draw from it)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
    return previous


def restore_determinism(previous: dict) -> None:
    """Undo the global switches made by :func:`seed_everything`."""
    torch.use_deterministic_algorithms(previous["deterministic_algorithms"],
                                       warn_only=previous["warn_only"])
    torch.backends.cudnn.deterministic = previous["cudnn_deterministic"]
    torch.backends.cudnn.benchmark = previous["cudnn_benchmark"]


@contextmanager
def seeded(seed: int, *, deterministic: bool = True):
    """Context manager: :func:`seed_everything` on entry, determinism switches restored on exit."""
    previous = seed_everything(seed, deterministic=deterministic)
    try:
        yield
    finally:
        restore_determinism(previous)

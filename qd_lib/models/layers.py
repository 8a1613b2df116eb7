"""Layers shared by the IQA models (MANIQA and MUSIQ use the same transformer MLP block; its
parameter names ``fc1``/``fc2`` are part of both models' state-dict keys)."""
from __future__ import annotations

import torch
from torch import nn


class Mlp(nn.Module):
    """Linear → GELU → Dropout → Linear → Dropout."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))

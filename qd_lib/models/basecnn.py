"""BaseCNN: a ResNet-18 global-average-pooling regressor (for the pruning experiment, Table 3).

The architecture of ``BaseCNN.py`` in ``zwx8981/DBCNN-PyTorch`` with ``representation=None``:
an ImageNet ResNet-18 trunk (module ``basemodel``, torchvision's layout, its unused ``fc`` kept
so the key layout matches), global average pooling (512) and ``fc = Linear(512, 1)``.

Its two-phase recipe (head only, then fine-tuning with ``conv1``, ``bn1`` and ``layer1``
frozen) is available through :meth:`BaseCNN.freeze`.
"""
from __future__ import annotations

import torch
from torch import nn

from qd_lib.utils.validation import check_option


class BaseCNN(nn.Module):
    """ResNet-18 → global average pool → Linear(512, 1). Input (B, 3, H, W); output (B,).

    Parameters
    ----------
    weights : {None, "IMAGENET1K_V1"}
        ResNet-18 weights from torchvision's hub cache (``None``: random initialisation).
    """

    #: Head prefixes for ``load_official_checkpoint(skip_head=True)``: the regressor and the
    #: trunk's (unused) ImageNet classifier.
    checkpoint_heads = ("fc.", "basemodel.fc.")

    def __init__(self, *, weights: str | None = None):
        super().__init__()
        from qd_lib.models.backbones import resnet18

        self.basemodel = resnet18(weights)
        self.fc = nn.Linear(512, 1)
        nn.init.kaiming_normal_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def freeze(self, phase: str) -> None:
        """Freeze parameters for a training phase of the official recipe.

        ``"head"``: only ``fc`` trains; ``"finetune"``: everything but ``conv1``, ``bn1`` and
        ``layer1``; ``"none"``: everything trains.
        """
        check_option(phase, "phase", ("head", "finetune", "none"))
        for p in self.parameters():
            p.requires_grad = True
        if phase == "head":
            for p in self.basemodel.parameters():
                p.requires_grad = False
        elif phase == "finetune":
            for module in (self.basemodel.conv1, self.basemodel.bn1, self.basemodel.layer1):
                for p in module.parameters():
                    p.requires_grad = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.basemodel
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        x = m.layer4(m.layer3(m.layer2(m.layer1(x))))
        x = torch.flatten(m.avgpool(x), 1)
        return self.fc(x)[:, 0]

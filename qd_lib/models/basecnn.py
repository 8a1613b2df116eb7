"""BaseCNN: a CNN trunk, global average pooling and one linear regressor (Table 3's pruning).

The architecture of ``BaseCNN.py`` in ``zwx8981/DBCNN-PyTorch`` with ``representation=None``:
an ImageNet ResNet-18 trunk (module ``basemodel``, torchvision's layout, its unused ``fc`` kept
so the key layout matches), global average pooling (512) and ``fc = Linear(512, 1)``.

Its two-phase recipe (head only, then fine-tuning with ``conv1``, ``bn1`` and ``layer1``
frozen) is available through :meth:`BaseCNN.freeze`.

``backbone="mobilenet_v2"`` swaps the trunk for the first ``depth`` blocks of torchvision's
MobileNet-V2 ``features`` (``basemodel`` is then that ``nn.Sequential``; its ImageNet weights
are the ones this machine has offline). It is the CPU configuration ``basecnn/small`` of the
pruning experiment: the same GAP-regressor shape, a smaller and cheaper trunk.

:meth:`BaseCNN.stages` splits the forward pass into consecutive modules (stem, residual or
inverted-residual blocks, head), which the pruning code uses to re-run only the part of the
network after a pruned layer.
"""
from __future__ import annotations

import torch
from torch import nn

from qd_lib.utils.validation import check_option, check_scalar

BACKBONES = ("resnet18", "mobilenet_v2")
#: Blocks of torchvision's MobileNet-V2 ``features``.
MOBILENET_BLOCKS = 19


# The stage wrappers below hold the model's own modules (shared, not copied); they are built on
# demand by BaseCNN.stages() and never become submodules of the model, so its state dict is
# unchanged.
class _ResNetStem(nn.Module):
    """conv1 → bn1 → relu → maxpool of a torchvision ResNet."""

    def __init__(self, resnet: nn.Module):
        super().__init__()
        self.conv1, self.bn1, self.relu, self.maxpool = (resnet.conv1, resnet.bn1, resnet.relu,
                                                         resnet.maxpool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))


class _Head(nn.Module):
    """Global average pooling → ``fc`` → (B,)."""

    def __init__(self, fc: nn.Linear):
        super().__init__()
        self.fc = fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(x.mean(dim=(2, 3)), 1))[:, 0]


class BaseCNN(nn.Module):
    """CNN trunk → global average pool → Linear(C, 1). Input (B, 3, H, W); output (B,).

    Parameters
    ----------
    weights : {None, "IMAGENET1K_V1"}
        ImageNet weights of the trunk from torchvision's hub cache (``None``: random
        initialisation).
    backbone : {"resnet18", "mobilenet_v2"}, default="resnet18"
        The trunk: ResNet-18 (the official BaseCNN) or MobileNet-V2's first ``depth`` blocks.
    depth : int, optional
        MobileNet-V2 blocks kept, 1 to 19 (default all 19); only with ``mobilenet_v2``.
    """

    #: Head prefixes for ``load_official_checkpoint(skip_head=True)``: the regressor and the
    #: trunk's (unused) ImageNet classifier.
    checkpoint_heads = ("fc.", "basemodel.fc.")

    def __init__(self, *, weights: str | None = None, backbone: str = "resnet18",
                 depth: int | None = None):
        super().__init__()
        check_option(backbone, "backbone", BACKBONES)
        self.backbone = backbone
        if backbone == "resnet18":
            if depth is not None:
                raise ValueError("The 'depth' parameter applies to backbone='mobilenet_v2' "
                                 f"only. Got depth={depth!r} with backbone='resnet18'.")
            from qd_lib.models.backbones import resnet18

            self.basemodel = resnet18(weights)
            channels = 512
        else:
            from qd_lib.models.backbones import mobilenet_v2_features

            depth = MOBILENET_BLOCKS if depth is None else depth
            check_scalar(depth, "depth", int, min_val=1, max_val=MOBILENET_BLOCKS)
            self.basemodel = mobilenet_v2_features(weights)[:depth]
            channels = [m for m in self.basemodel.modules()
                        if isinstance(m, nn.Conv2d)][-1].out_channels
        self.depth = depth
        self.fc = nn.Linear(channels, 1)
        nn.init.kaiming_normal_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def freeze(self, phase: str) -> None:
        """Freeze parameters for a training phase of the official recipe.

        ``"head"``: only ``fc`` trains; ``"finetune"``: everything but the stem and the first
        stage (ResNet-18: ``conv1``, ``bn1``, ``layer1``; MobileNet-V2: blocks 0 and 1);
        ``"none"``: everything trains.
        """
        check_option(phase, "phase", ("head", "finetune", "none"))
        for p in self.parameters():
            p.requires_grad = True
        if phase == "head":
            for p in self.basemodel.parameters():
                p.requires_grad = False
        elif phase == "finetune":
            m = self.basemodel
            frozen = ((m.conv1, m.bn1, m.layer1) if self.backbone == "resnet18"
                      else tuple(m[:2]))
            for module in frozen:
                for p in module.parameters():
                    p.requires_grad = False

    def stages(self) -> list[nn.Module]:
        """Consecutive modules whose composition is :meth:`forward`: the stem, every residual
        (ResNet-18) or inverted-residual (MobileNet-V2) block, then the head (pooling and
        ``fc``). They share the model's parameters."""
        m = self.basemodel
        if self.backbone == "resnet18":
            blocks = [_ResNetStem(m)]
            for layer in (m.layer1, m.layer2, m.layer3, m.layer4):
                blocks.extend(layer)
        else:
            blocks = list(m)
        return [*blocks, _Head(self.fc)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.basemodel
        if self.backbone == "resnet18":
            x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
            x = m.layer4(m.layer3(m.layer2(m.layer1(x))))
            x = torch.flatten(m.avgpool(x), 1)
        else:
            x = torch.flatten(m(x).mean(dim=(2, 3)), 1)
        return self.fc(x)[:, 0]

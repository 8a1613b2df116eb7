"""MANIQA: multi-dimension attention network for no-reference IQA (Yang et al., CVPRW 2022).

Our own implementation of the architecture of the official code (``IIGROUP/MANIQA``,
``models/maniqa.py`` and ``models/swin.py``), with the same module names so that the released
checkpoints (``ckpt_koniq10k.pt``, ``ckpt_kadid10k.pt``, pyiqa's ``MANIQA_PIPAL-*.pth``) load
with ``strict=True`` (:func:`qd_lib.models.load_official_checkpoint`).

Pipeline (paper configuration, 224×224 input):

1. **Backbone.** A timm ViT-B/8 (tag pinned to ``augreg_in21k_ft_in1k``, the weights the official
   timm 0.5.5 loaded; timm ≥ 0.9's default tag ``augreg2`` is a re-fine-tuned variant). Inputs are
   normalised with mean = std = 0.5. The outputs of blocks 6, 7, 8 and 9 (0-based) without the CLS
   token are concatenated: 784 tokens × 3072 channels. Later blocks do not feed anything, so they
   are not run (their parameters stay in the state dict, as in the official model).
2. **Stage 1.** Two transposed-attention blocks (:class:`TABlock`, attention over channels with
   ``Linear(N, N)`` projections over the token axis; the official transpose-then-reshape is
   kept), a 1×1 conv to ``embed_dim`` (768), and a scale Swin transformer
   (:class:`ScaleSwinTransformer`: 2 layers of depth 2, 4 heads, window 4, MLP 768; each layer
   ends with a 3×3 conv + ReLU and its residual is ``scale · layer(x) + x``, α = 0.8).
3. **Stage 2.** Two more TABs, a 1×1 conv to ``embed_dim // 2`` (384) and a second SSTB.
4. **Head.** Per token, a score branch (Linear, ReLU, Dropout, Linear, ReLU → s ≥ 0) and a weight
   branch (… Sigmoid → w ∈ (0, 1)); the image score is Σ w·s / Σ w, vectorised (the official
   loop over the batch with ``.cuda()`` cannot run on a CPU).

The backbone is pluggable: ``backbone="vit"`` (timm ``VisionTransformer``; any size, for the
``tiny`` test configuration) or ``backbone="mobilenet_v2"`` (torchvision's MobileNet-V2,
``IMAGENET1K_V1`` available offline; blocks at stride 16 are tapped), for the CPU ``small``
configuration.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from qd_lib.models.layers import Mlp

logger = logging.getLogger(__name__)


# -- transposed attention ---------------------------------------------------------------------
class TABlock(nn.Module):
    """Transposed-attention block: attention between channels, over ``dim`` = number of tokens.

    Input and output ``(B, C, N)``. The attention matrix is ``C × C`` scaled by ``N^-1/2``. As in
    the official code the result ``(attn @ v)`` of shape (B, C, N) is transposed to (B, N, C) and
    then *reshaped* (not transposed back) to (B, C, N); checkpoints depend on this.
    """

    def __init__(self, dim: int, drop: float = 0.1):
        super().__init__()
        self.c_q = nn.Linear(dim, dim)
        self.c_k = nn.Linear(dim, dim)
        self.c_v = nn.Linear(dim, dim)
        self.norm_fact = dim ** -0.5
        self.proj_drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, n = x.shape
        q, k, v = self.c_q(x), self.c_k(x), self.c_v(x)
        attn = torch.softmax(q @ k.transpose(-2, -1) * self.norm_fact, dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, c, n)  # the official (non-inverse) reshape
        return self.proj_drop(out) + x


# -- Swin blocks --------------------------------------------------------------------------------
def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) → (B·nW, window, window, C)."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, c)


def window_reverse(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """(B·nW, window, window, C) → (B, H, W, C)."""
    b = windows.shape[0] // ((h // window) * (w // window))
    x = windows.view(b, h // window, w // window, window, window, -1)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, -1)


def _relative_position_index(window: int) -> torch.Tensor:
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window),
                                        indexing="ij")).flatten(1)  # 2, w*w
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # w*w, w*w, 2
    rel = rel + (window - 1)
    return rel[:, :, 0] * (2 * window - 1) + rel[:, :, 1]


class WindowAttention(nn.Module):
    """Window multi-head self-attention with a relative position bias (Swin)."""

    def __init__(self, dim: int, window: int, num_heads: int, attn_drop: float = 0.0,
                 proj_drop: float = 0.0):
        super().__init__()
        self.window = window
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", _relative_position_index(window))
        self.qkv = nn.Linear(dim, dim * 3)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        attn = attn + bias.view(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(bw // nw, nw, self.num_heads, n, n) + mask[None, :, None]
            attn = attn.view(-1, self.num_heads, n, n)
        attn = self.attn_drop(torch.softmax(attn, dim=-1))
        out = (attn @ v).transpose(1, 2).reshape(bw, n, c)
        return self.proj_drop(self.proj(out))


def _drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


class DropPath(nn.Module):
    """Stochastic depth per sample."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _drop_path(x, self.p, self.training)


def _shift_mask(h: int, w: int, window: int, shift: int) -> torch.Tensor:
    img = torch.zeros(1, h, w, 1)
    slices = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    count = 0
    for hs in slices:
        for ws in slices:
            img[:, hs, ws, :] = count
            count += 1
    windows = window_partition(img, window).view(-1, window * window)
    mask = windows.unsqueeze(1) - windows.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


class SwinBlock(nn.Module):
    """Swin transformer block (pre-norm, (shifted) window attention, MLP of width ``dim_mlp``).

    ``attn_mask`` is a persistent buffer of shifted blocks, as in the official code (their
    checkpoints hold it).
    """

    def __init__(self, dim: int, resolution: tuple[int, int], num_heads: int, window: int,
                 shift: int, dim_mlp: int, drop: float = 0.0, attn_drop: float = 0.0,
                 drop_path: float = 0.0):
        super().__init__()
        self.resolution = resolution
        if min(resolution) <= window:  # a window covering the whole map: no partition, no shift
            window, shift = min(resolution), 0
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, num_heads, attn_drop, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, dim_mlp, drop)
        if shift > 0:
            self.register_buffer("attn_mask", _shift_mask(*resolution, window, shift))
        else:
            self.attn_mask = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.resolution
        b, n, c = x.shape
        y = self.norm1(x).view(b, h, w, c)
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        windows = window_partition(y, self.window).view(-1, self.window * self.window, c)
        windows = self.attn(windows, mask=self.attn_mask)
        y = window_reverse(windows.view(-1, self.window, self.window, c), self.window, h, w)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + self.drop_path(y.reshape(b, n, c))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class SwinLayer(nn.Module):
    """``depth`` Swin blocks (alternating shift 0 and window // 2), then a 3×3 conv and ReLU.

    Named ``BasicLayer`` in the official code; the module names (``blocks``, ``conv``) match.
    """

    def __init__(self, dim: int, resolution: tuple[int, int], depth: int, num_heads: int,
                 window: int, dim_mlp: int, drop: float, attn_drop: float,
                 drop_path: Sequence[float]):
        super().__init__()
        self.resolution = resolution
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1)
        self.blocks = nn.ModuleList([
            SwinBlock(dim, resolution, num_heads, window, 0 if i % 2 == 0 else window // 2,
                      dim_mlp, drop, attn_drop, drop_path[i]) for i in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        b, n, c = x.shape
        h, w = self.resolution
        x = F.relu(self.conv(x.transpose(1, 2).reshape(b, c, h, w)))
        return x.flatten(2).transpose(1, 2)


class ScaleSwinTransformer(nn.Module):
    """Scale Swin transformer block (SSTB): layers with residuals scaled by α (``scale``).

    Input and output ``(B, C, H, W)``. ``dropout`` (p = ``drop``) is applied to the input. The
    stride-2 ``downsample`` conv of the official code is never used but kept, so that checkpoints
    load strictly.
    """

    def __init__(self, resolution: tuple[int, int], depths: Sequence[int],
                 num_heads: Sequence[int], embed_dim: int, window: int, dim_mlp: int,
                 scale: float, drop: float = 0.1, drop_path_rate: float = 0.1):
        super().__init__()
        self.resolution = resolution
        self.scale = float(scale)
        self.dropout = nn.Dropout(drop)
        self.downsample = nn.Conv2d(embed_dim, embed_dim, 3, 2, 1)  # unused (checkpoint layout)
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.layers = nn.ModuleList()
        start = 0
        for depth, heads in zip(depths, num_heads):
            self.layers.append(SwinLayer(embed_dim, resolution, depth, heads, window, dim_mlp,
                                         0.0, 0.0, rates[start:start + depth]))
            start += depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x = self.dropout(x).flatten(2).transpose(1, 2)
        for layer in self.layers:
            x = self.scale * layer(x) + x
        return x.transpose(1, 2).reshape(b, c, h, w)


# -- backbones ----------------------------------------------------------------------------------
class _MobileNetTaps(nn.Module):
    """torchvision MobileNet-V2 ``features`` up to the last tapped block; returns the taps
    resized to the grid of the first one, concatenated along channels, as (B, N, C)."""

    def __init__(self, taps: Sequence[int], weights: str | None):
        super().__init__()
        from qd_lib.models.backbones import mobilenet_v2_features

        features = mobilenet_v2_features(weights)
        self.taps = tuple(int(t) for t in taps)
        self.features = features[: max(self.taps) + 1]
        self.channels = [self._out_channels(self.features[t]) for t in self.taps]

    @staticmethod
    def _out_channels(block: nn.Module) -> int:
        convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
        return convs[-1].out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for i, block in enumerate(self.features):
            x = block(x)
            if i in self.taps:
                outs.append(x)
        size = outs[0].shape[-2:]
        outs = [o if o.shape[-2:] == size else F.interpolate(o, size=size, mode="bilinear",
                                                             align_corners=False) for o in outs]
        return torch.cat(outs, dim=1).flatten(2).transpose(1, 2)


# -- the model ----------------------------------------------------------------------------------
class MANIQA(nn.Module):
    """MANIQA with a configurable backbone. Input: (B, 3, img_size, img_size), normalised as the
    backbone expects; output: (B,) scores.

    Parameters
    ----------
    backbone : {"vit", "mobilenet_v2"}, default="vit"
        ``vit``: a timm ViT (module ``vit``, as in the official model); ``mobilenet_v2``:
        torchvision's MobileNet-V2 ``features`` (module ``backbone``).
    vit_name : str, optional
        timm model name (e.g. ``"vit_base_patch8_224"``); ``None`` builds a
        ``VisionTransformer`` from ``vit_dim``, ``vit_depth`` and ``vit_heads``.
    img_size, patch_size : int
        Input side and ViT patch size; the token grid is ``img_size // patch_size``.
    vit_dim, vit_depth, vit_heads : int
        ViT width, depth and heads when ``vit_name`` is None.
    tap_blocks : sequence of int
        ViT blocks (0-based) whose outputs are concatenated (default 6–9), or MobileNet-V2
        ``features`` indices (all at one resolution, or resized to the first one's).
    embed_dim : int
        D1 (stage 1 width); stage 2 uses ``embed_dim // 2``.
    num_tab : int
        TABs per stage.
    depths, num_heads : sequence of int
        Swin layers per SSTB (their depths and heads).
    window_size, dim_mlp : int
        Swin window and MLP width.
    scale : float
        α, the SSTB residual scale (0.8 for the KonIQ/KADID checkpoints and the seed).
    drop : float
        Dropout of the TABs, SSTB inputs and head.
    drop_path_rate : float
        Stochastic depth of the Swin blocks (linearly increasing, as in the official code).
    mobilenet_weights : str or None
        ``"IMAGENET1K_V1"`` (offline) or ``None`` for the MobileNet-V2 backbone.
    num_outputs : int
        Outputs of each head branch (1).

    Raises
    ------
    ValueError
        When the token grid is not divisible by the window, a width is not divisible by its
        heads, or a tap is outside the backbone's depth.
    """

    #: Checkpoint key prefixes of heads, dropped by ``load_official_checkpoint(skip_head=True)``:
    #: the IQA score and weight branches and the ViT's (unused) ImageNet classifier.
    checkpoint_heads = ("fc_score.", "fc_weight.", "vit.head.")

    def __init__(self, *, backbone: str = "vit", vit_name: str | None = "vit_base_patch8_224",
                 img_size: int = 224, patch_size: int = 8, vit_dim: int = 768,
                 vit_depth: int = 12, vit_heads: int = 12,
                 tap_blocks: Sequence[int] = (6, 7, 8, 9), embed_dim: int = 768,
                 num_tab: int = 2, depths: Sequence[int] = (2, 2),
                 num_heads: Sequence[int] = (4, 4), window_size: int = 4, dim_mlp: int = 768,
                 scale: float = 0.8, drop: float = 0.1, drop_path_rate: float = 0.1,
                 mobilenet_weights: str | None = None, num_outputs: int = 1):
        super().__init__()
        if backbone not in ("vit", "mobilenet_v2"):
            raise ValueError(f"The 'backbone' parameter must be one of ['vit', 'mobilenet_v2']. "
                             f"Got {backbone!r} instead.")
        self.backbone_kind = backbone
        self.img_size = int(img_size)
        self.tap_blocks = tuple(int(t) for t in tap_blocks)
        if not self.tap_blocks:
            raise ValueError("The 'tap_blocks' parameter must name at least one block.")
        if backbone == "vit":
            self.vit = self._build_vit(vit_name, img_size, patch_size, vit_dim, vit_depth,
                                       vit_heads)
            depth = len(self.vit.blocks)
            if max(self.tap_blocks) >= depth or min(self.tap_blocks) < 0:
                raise ValueError(f"The 'tap_blocks' parameter {list(self.tap_blocks)} must lie in "
                                 f"[0, {depth}) (the ViT has {depth} blocks).")
            grid = self.img_size // int(self.vit.patch_embed.patch_size[0])
            in_channels = self.vit.embed_dim * len(self.tap_blocks)
        else:
            self.backbone = _MobileNetTaps(self.tap_blocks, mobilenet_weights)
            grid = _mobilenet_grid(self.img_size, self.backbone.features, self.tap_blocks[0])
            in_channels = sum(self.backbone.channels)
        self.grid = grid
        resolution = (grid, grid)
        n_tokens = grid * grid
        d2 = embed_dim // 2
        if grid % window_size and grid > window_size:
            raise ValueError(f"The 'window_size' parameter ({window_size}) must divide the token "
                             f"grid ({grid}×{grid} for img_size {img_size}).")
        for width in (embed_dim, d2):
            for heads in num_heads:
                if width % heads:
                    raise ValueError(f"Width {width} (embed_dim={embed_dim} and its half) must be "
                                     f"divisible by every entry of 'num_heads' {list(num_heads)}.")
        if len(depths) != len(num_heads):
            raise ValueError(f"The 'depths' {list(depths)} and 'num_heads' {list(num_heads)} "
                             "parameters must have the same length.")
        self.tablock1 = nn.ModuleList([TABlock(n_tokens, drop) for _ in range(num_tab)])
        self.conv1 = nn.Conv2d(in_channels, embed_dim, 1, 1, 0)
        self.swintransformer1 = ScaleSwinTransformer(resolution, depths, num_heads, embed_dim,
                                                     window_size, dim_mlp, scale, drop,
                                                     drop_path_rate)
        self.tablock2 = nn.ModuleList([TABlock(n_tokens, drop) for _ in range(num_tab)])
        self.conv2 = nn.Conv2d(embed_dim, d2, 1, 1, 0)
        self.swintransformer2 = ScaleSwinTransformer(resolution, depths, num_heads, d2,
                                                     window_size, dim_mlp, scale, drop,
                                                     drop_path_rate)
        self.fc_score = nn.Sequential(nn.Linear(d2, d2), nn.ReLU(), nn.Dropout(drop),
                                      nn.Linear(d2, num_outputs), nn.ReLU())
        self.fc_weight = nn.Sequential(nn.Linear(d2, d2), nn.ReLU(), nn.Dropout(drop),
                                       nn.Linear(d2, num_outputs), nn.Sigmoid())

    @staticmethod
    def _build_vit(vit_name, img_size, patch_size, dim, depth, heads) -> nn.Module:
        import timm
        from timm.models.vision_transformer import VisionTransformer

        if vit_name is None:
            return VisionTransformer(img_size=img_size, patch_size=patch_size, embed_dim=dim,
                                     depth=depth, num_heads=heads, num_classes=1000)
        # pretrained=False: weights come only from files (qd_lib.models.backbones.load_vit_weights)
        return timm.create_model(vit_name, pretrained=False, img_size=img_size)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Tapped backbone features, (B, N, C)."""
        if self.backbone_kind == "vit":
            taps = self.vit.forward_intermediates(x, indices=list(self.tap_blocks), norm=False,
                                                  stop_early=True, output_fmt="NLC",
                                                  intermediates_only=True)
            return torch.cat(taps, dim=2)
        return self.backbone(x)

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(f"MANIQA expects {self.img_size}×{self.img_size} inputs. Got "
                             f"{tuple(x.shape[-2:])}; resize or crop first (the input pipeline "
                             "does).")
        b, g = x.shape[0], self.grid
        x = self.features(x).transpose(1, 2)  # (B, C, N)
        for tab in self.tablock1:
            x = tab(x)
        x = self.swintransformer1(self.conv1(x.reshape(b, -1, g, g))).flatten(2)
        for tab in self.tablock2:
            x = tab(x)
        x = self.swintransformer2(self.conv2(x.reshape(b, -1, g, g)))
        return x.flatten(2).transpose(1, 2)  # (B, N, D2)

    def patch_outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token scores s ≥ 0 and weights w ∈ (0, 1), each (B, N)."""
        tokens = self._tokens(x)
        return self.fc_score(tokens)[..., 0], self.fc_weight(tokens)[..., 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self._tokens(x)
        s = self.fc_score(tokens)
        w = self.fc_weight(tokens)
        return (s * w).sum(dim=(1, 2)) / w.sum(dim=(1, 2))


def _mobilenet_grid(img_size: int, features: nn.Module, tap: int) -> int:
    """Spatial side of MobileNet-V2 ``features[tap]``'s output for a square input."""
    size = img_size
    for block in list(features)[: tap + 1]:
        for m in block.modules():
            if isinstance(m, nn.Conv2d) and m.stride[0] > 1:
                k, s, p = m.kernel_size[0], m.stride[0], m.padding[0]
                size = math.floor((size + 2 * p - k) / s) + 1
    return size

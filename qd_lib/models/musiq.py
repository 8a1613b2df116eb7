"""MUSIQ: multi-scale image quality transformer (Ke et al., ICCV 2021).

Our own implementation of Google's architecture (released as JAX inference code; pyiqa's
PyTorch conversion defines the checkpoint layout we match, so ``musiq_imagenet_pretrain`` and
the KonIQ/SPAQ/PaQ-2-PiQ checkpoints load with ``strict=True``).

Input: a **packed multi-scale patch tensor** made by :func:`multiscale_patches` (in the dataset,
so batches collate): for the native resolution and aspect-ratio-preserving resizes whose longer
side is 224 and 384, the image (in [-1, 1]) is cut into non-overlapping 32×32 patches with TF
"SAME" padding; each patch row carries its pixels, its hash-based spatial position
(``⌊i·G/h⌋·G + ⌊j·G/w⌋`` on a G×G grid, G = 10), its scale id and an input mask (0 for padding).

Model: each patch goes through a small ResNet stem (weight-standardised 7×7/2 conv, GroupNorm,
ReLU, SAME max-pool 3/2, one bottleneck 64 → 256), is flattened (in TF's HWC order) and
projected to D = 384; hash spatial and scale embeddings are added, a CLS token is prepended and a
pre-LN transformer (14 layers, 6 heads, MLP 1152, dropout 0.1, attention dropout 0.1, masked
padding) encodes the sequence; a linear head on the CLS token gives the score (``num_classes``
> 1: softmax over classes and the expected class 1…K, as for AVA).

Seed values (supplementary §E.4): hidden 384, 6 heads, MLP 1152, dropout 0.1, LayerNorm
ε = 1e-12, grid 10. Google's checkpoints use ε = 1e-6 (the ``official`` configuration).

The token encoder is pluggable: ``token_encoder="stem"`` (above) or ``"mobilenet_v2"``
(MobileNet-V2 blocks with offline ImageNet weights run on each patch, for the CPU ``small``
configuration).
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from qd_lib.models.layers import Mlp

logger = logging.getLogger(__name__)


# -- preprocessing ------------------------------------------------------------------------------
def hse_index(count_h: int, count_w: int, grid: int) -> np.ndarray:
    """Hash-based spatial position of each patch of an ``count_h × count_w`` grid, row-major.

    Patch (i, j) maps to grid cell ``(⌊i·G/h⌋, ⌊j·G/w⌋)``, returned as ``row·G + col``.
    """
    rows = (np.arange(count_h) * grid) // count_h
    cols = (np.arange(count_w) * grid) // count_w
    return (rows[:, None] * grid + cols[None, :]).reshape(-1)


def _same_pad(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """TF 'SAME' padding (extra pixel at the bottom/right)."""
    h, w = x.shape[-2:]
    pad_h = max((math.ceil(h / stride) - 1) * stride + kernel - h, 0)
    pad_w = max((math.ceil(w / stride) - 1) * stride + kernel - w, 0)
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2),
                 value=value)


def _resize_longer_side(image: torch.Tensor, longer: int) -> torch.Tensor:
    h, w = image.shape[-2:]
    ratio = longer / max(h, w)
    size = (max(1, round(h * ratio)), max(1, round(w * ratio)))
    if size == (h, w):
        return image
    out = F.interpolate(image[None], size=size, mode="bicubic", align_corners=False,
                        antialias=True)[0]
    return out.clamp(-1.0, 1.0)


def _patches_of(image: torch.Tensor, patch: int, grid: int, scale_id: int,
                max_len: int) -> torch.Tensor:
    c, h, w = image.shape
    count_h, count_w = math.ceil(h / patch), math.ceil(w / patch)
    padded = _same_pad(image[None], patch, patch)
    cols = F.unfold(padded, kernel_size=patch, stride=patch)[0].T  # (n, c·p·p), channel-major
    n = cols.shape[0]
    extra = torch.stack([
        torch.as_tensor(hse_index(count_h, count_w, grid), dtype=cols.dtype),
        torch.full((n,), float(scale_id), dtype=cols.dtype),
        torch.ones(n, dtype=cols.dtype)], dim=1)
    out = torch.cat([cols, extra], dim=1)
    if max_len >= 0:
        if n >= max_len:
            out = out[:max_len]
        else:
            out = torch.cat([out, out.new_zeros(max_len - n, out.shape[1])], dim=0)
    return out


def multiscale_patches(image: torch.Tensor, *, patch_size: int = 32,
                       longer_side_lengths: Sequence[int] = (224, 384),
                       max_seq_len_from_original_res: int | None = -1,
                       hse_grid_size: int = 10) -> torch.Tensor:
    """Pack an image into MUSIQ's multi-scale patch sequence.

    Parameters
    ----------
    image : Tensor of shape (3, H, W)
        Pixel values in [-1, 1].
    patch_size : int
        Patch side (32).
    longer_side_lengths : sequence of int
        Longer sides of the resized scales, sorted ascending; scale ids 0, 1, … in that order.
        Each resized scale is padded to ``ceil(L / patch)²`` tokens.
    max_seq_len_from_original_res : int or None
        ``None``: no native-resolution scale; ``-1``: all its patches; ``k ≥ 0``: the first
        ``k`` (padded up to ``k``). The native scale's id is ``len(longer_side_lengths)``.
    hse_grid_size : int
        G of the hash-based spatial embedding.

    Returns
    -------
    Tensor of shape (L, 3·patch² + 3)
        Patch pixels (channel-major), spatial position, scale id, mask.
    """
    if image.ndim != 3:
        raise ValueError(f"The 'image' parameter must have shape (3, H, W). Got "
                         f"{tuple(image.shape)}.")
    parts = []
    lengths = sorted(int(v) for v in longer_side_lengths)
    for scale_id, longer in enumerate(lengths):
        resized = _resize_longer_side(image, longer)
        parts.append(_patches_of(resized, patch_size, hse_grid_size, scale_id,
                                 math.ceil(longer / patch_size) ** 2))
    if max_seq_len_from_original_res is not None:
        parts.append(_patches_of(image, patch_size, hse_grid_size, len(lengths),
                                 int(max_seq_len_from_original_res)))
    return torch.cat(parts, dim=0)


def collate_patches(sequences: Sequence[torch.Tensor]) -> torch.Tensor:
    """Stack packed sequences of different lengths, padding with masked (all-zero) rows."""
    longest = max(s.shape[0] for s in sequences)
    out = sequences[0].new_zeros(len(sequences), longest, sequences[0].shape[1])
    for i, s in enumerate(sequences):
        out[i, : s.shape[0]] = s
    return out


# -- layers -------------------------------------------------------------------------------------
class StdConv(nn.Conv2d):
    """Weight-standardised conv with TF 'SAME' padding (pyiqa's conversion of Google's stem)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _same_pad(x, self.kernel_size[0], self.stride[0])
        w = self.weight
        w = (w - w.mean(dim=(1, 2, 3), keepdim=True)) / (w.std(dim=(1, 2, 3), keepdim=True) + 1e-5)
        return F.conv2d(x, w, self.bias, self.stride)


class Bottleneck(nn.Module):
    """ResNet bottleneck with weight-standardised convs and GroupNorm."""

    def __init__(self, inplanes: int, outplanes: int, groups: int = 32):
        super().__init__()
        width = inplanes
        self.conv1 = StdConv(inplanes, width, 1, 1, bias=False)
        self.gn1 = nn.GroupNorm(groups, width, eps=1e-4)
        self.conv2 = StdConv(width, width, 3, 1, bias=False)
        self.gn2 = nn.GroupNorm(groups, width, eps=1e-4)
        self.conv3 = StdConv(width, outplanes, 1, 1, bias=False)
        self.gn3 = nn.GroupNorm(groups, outplanes, eps=1e-4)
        self.conv_proj = StdConv(inplanes, outplanes, 1, 1, bias=False)
        self.gn_proj = nn.GroupNorm(groups, outplanes, eps=1e-4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = self.gn_proj(self.conv_proj(x))
        x = F.relu(self.gn1(self.conv1(x)))
        x = F.relu(self.gn2(self.conv2(x)))
        return F.relu(self.gn3(self.conv3(x)) + identity)


class MultiHeadAttention(nn.Module):
    """Self-attention with separate query/key/value projections; padded keys are masked."""

    def __init__(self, dim: int, num_heads: int, attn_drop: float):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.attn_drop = nn.Dropout(attn_drop)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        h = self.num_heads

        def heads(t):
            return t.reshape(b, n, h, c // h).transpose(1, 2)

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        attn = self.attn_drop(torch.softmax(attn, dim=-1))
        return self.out((attn @ v).transpose(1, 2).reshape(b, n, c))


class TransformerBlock(nn.Module):
    """Pre-LN encoder block."""

    def __init__(self, dim: int, mlp_dim: int, num_heads: int, drop: float, attn_drop: float,
                 eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attention = MultiHeadAttention(dim, num_heads, attn_drop)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, mlp_dim, drop)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x), key_mask)
        return x + self.mlp(self.norm2(x))


class AddHashSpatialPositionEmbs(nn.Module):
    """Learnable G×G table indexed by each token's hashed position."""

    def __init__(self, grid: int, dim: int):
        super().__init__()
        self.position_emb = nn.Parameter(torch.empty(1, grid * grid, dim))
        nn.init.normal_(self.position_emb, std=0.02)

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return x + self.position_emb[0][positions.long()]


class AddScaleEmbs(nn.Module):
    """One learnable embedding per scale."""

    def __init__(self, num_scales: int, dim: int):
        super().__init__()
        self.scale_emb = nn.Parameter(torch.empty(num_scales, dim))
        nn.init.normal_(self.scale_emb, std=0.02)

    def forward(self, x: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        return x + self.scale_emb[scales.long()]


class TransformerEncoder(nn.Module):
    """Embeddings, CLS token, ``num_layers`` pre-LN blocks and a final LayerNorm."""

    def __init__(self, dim: int, mlp_dim: int, num_heads: int, num_layers: int, num_scales: int,
                 grid: int, drop: float, attn_drop: float, eps: float,
                 use_scale_emb: bool = True):
        super().__init__()
        self.use_scale_emb = use_scale_emb
        self.posembed_input = AddHashSpatialPositionEmbs(grid, dim)
        self.scaleembed_input = AddScaleEmbs(num_scales, dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.dropout = nn.Dropout(drop)
        self.encoder_norm = nn.LayerNorm(dim, eps=eps)
        self.transformer = nn.ModuleDict({
            f"encoderblock_{i}": TransformerBlock(dim, mlp_dim, num_heads, drop, attn_drop, eps)
            for i in range(num_layers)})

    def forward(self, x, positions, scales, mask) -> torch.Tensor:
        x = self.posembed_input(x, positions)
        if self.use_scale_emb:
            x = self.scaleembed_input(x, scales)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
        key_mask = torch.cat([mask.new_ones(mask.shape[0], 1), mask], dim=1)
        x = self.dropout(x)
        for block in self.transformer.values():
            x = block(x, key_mask)
        return self.encoder_norm(x)


class _MobileNetPatchEncoder(nn.Module):
    """MobileNet-V2 ``features[:depth]`` run on each patch, flattened in HWC order."""

    def __init__(self, depth: int, weights: str | None):
        super().__init__()
        from qd_lib.models.backbones import mobilenet_v2_features

        self.features = mobilenet_v2_features(weights)[:depth]
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = ((x + 1.0) / 2.0 - self.mean) / self.std  # [-1, 1] → ImageNet normalisation
        return self.features(x)


# -- the model ----------------------------------------------------------------------------------
class MUSIQ(nn.Module):
    """MUSIQ on packed multi-scale patches (:func:`multiscale_patches`). Output: (B,) scores.

    Parameters
    ----------
    patch_size : int
        Patch side (32); the stem reduces a patch by 4, the token feature is
        ``(patch/4)² × 4·stem_channels``.
    hidden_size, mlp_dim, num_heads, num_layers : int
        Transformer width (384), MLP width (1152), heads (6), depth (14).
    num_scales : int
        Scale embeddings: resized scales + 1 for the native resolution (3).
    spatial_pos_grid_size : int
        G of the hash spatial embedding (10).
    dropout_rate, attention_dropout_rate : float
        Dropout of the embeddings/MLP and of the attention weights (0.1 and 0.1).
    ln_eps : float
        LayerNorm ε (seed: 1e-12; Google's checkpoints: 1e-6).
    stem_channels, gn_groups : int
        Stem width (64) and GroupNorm groups (32).
    num_classes : int
        1: a regression head; K > 1: softmax and the expected class 1…K (AVA).
    token_encoder : {"stem", "mobilenet_v2"}
        The per-patch encoder.
    mobilenet_depth : int
        MobileNet-V2 blocks used by ``token_encoder="mobilenet_v2"``.
    mobilenet_weights : str or None
        ``"IMAGENET1K_V1"`` (offline) or ``None``.
    longer_side_lengths, max_seq_len_from_original_res : see :func:`multiscale_patches`
        Stored so that the input pipeline packs images the way the model was configured.
    """

    #: Checkpoint key prefixes of classifier/regression heads, dropped by
    #: ``load_official_checkpoint(skip_head=True)``: ``head.`` (ours, pyiqa's, AVA's ``head.0.``)
    #: and ``imagenet_head.`` (Google's ImageNet classifier in ``musiq_imagenet_pretrain``).
    checkpoint_heads = ("head.", "imagenet_head.")

    def __init__(self, *, patch_size: int = 32, hidden_size: int = 384, mlp_dim: int = 1152,
                 num_heads: int = 6, num_layers: int = 14, num_scales: int = 3,
                 spatial_pos_grid_size: int = 10, dropout_rate: float = 0.1,
                 attention_dropout_rate: float = 0.1, ln_eps: float = 1e-12,
                 stem_channels: int = 64, gn_groups: int = 32, num_classes: int = 1,
                 use_scale_emb: bool = True, token_encoder: str = "stem",
                 mobilenet_depth: int = 7, mobilenet_weights: str | None = None,
                 longer_side_lengths: Sequence[int] = (224, 384),
                 max_seq_len_from_original_res: int | None = -1):
        super().__init__()
        if token_encoder not in ("stem", "mobilenet_v2"):
            raise ValueError(f"The 'token_encoder' parameter must be one of ['stem', "
                             f"'mobilenet_v2']. Got {token_encoder!r} instead.")
        if hidden_size % num_heads:
            raise ValueError(f"The 'hidden_size' parameter ({hidden_size}) must be divisible by "
                             f"'num_heads' ({num_heads}).")
        if patch_size % 4:
            raise ValueError(f"The 'patch_size' parameter must be a multiple of 4. Got "
                             f"{patch_size}.")
        expected_scales = len(longer_side_lengths) + (max_seq_len_from_original_res is not None)
        if num_scales < expected_scales:
            raise ValueError(f"The 'num_scales' parameter ({num_scales}) must cover the "
                             f"{expected_scales} scales of the input (longer sides "
                             f"{list(longer_side_lengths)} plus the native resolution).")
        self.patch_size = int(patch_size)
        self.token_encoder = token_encoder
        self.num_classes = int(num_classes)
        self.preprocess = {"patch_size": int(patch_size),
                           "longer_side_lengths": tuple(int(v) for v in longer_side_lengths),
                           "max_seq_len_from_original_res": max_seq_len_from_original_res,
                           "hse_grid_size": int(spatial_pos_grid_size)}
        if token_encoder == "stem":
            if stem_channels % gn_groups or (stem_channels * 4) % gn_groups:
                raise ValueError(f"The 'stem_channels' parameter ({stem_channels}) must be "
                                 f"divisible by 'gn_groups' ({gn_groups}).")
            self.conv_root = StdConv(3, stem_channels, 7, 2, bias=False)
            self.gn_root = nn.GroupNorm(gn_groups, stem_channels, eps=1e-6)
            self.block1 = Bottleneck(stem_channels, stem_channels * 4, gn_groups)
            token_dim = stem_channels * 4 * (patch_size // 4) ** 2
        else:
            self.patch_encoder = _MobileNetPatchEncoder(mobilenet_depth, mobilenet_weights)
            with torch.no_grad():
                probe = self.patch_encoder(torch.zeros(1, 3, patch_size, patch_size))
            token_dim = probe[0].numel()
        self.embedding = nn.Linear(token_dim, hidden_size)
        self.transformer_encoder = TransformerEncoder(
            hidden_size, mlp_dim, num_heads, num_layers, num_scales, spatial_pos_grid_size,
            dropout_rate, attention_dropout_rate, ln_eps, use_scale_emb)
        self.head = nn.Linear(hidden_size, num_classes)

    def encode_patches(self, pixels: torch.Tensor) -> torch.Tensor:
        """(M, 3, p, p) patches → (M, token_dim) features (HWC flattening, as TF)."""
        if self.token_encoder == "stem":
            x = F.relu(self.gn_root(self.conv_root(pixels)))
            x = F.max_pool2d(_same_pad(x, 3, 2, value=float("-inf")), 3, 2)
            x = self.block1(x)
        else:
            x = self.patch_encoder(pixels)
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (B, L, 3·p² + 3) packed patches (or (B, K, L, ·) crops, averaged)."""
        crops = 1
        if x.ndim == 4:
            b, crops, length, dim = x.shape
            x = x.reshape(b * crops, length, dim)
        b, length, _ = x.shape
        positions, scales = x[..., -3], x[..., -2]
        mask = x[..., -1] > 0.5
        pixels = x[..., :-3].reshape(b * length, 3, self.patch_size, self.patch_size)
        tokens = self.embedding(self.encode_patches(pixels).reshape(b, length, -1))
        tokens = tokens * mask[..., None]  # padded tokens carry no content
        encoded = self.transformer_encoder(tokens, positions, scales, mask)
        out = self.head(encoded[:, 0])
        if self.num_classes > 1:
            probs = torch.softmax(out, dim=-1)
            levels = torch.arange(1, self.num_classes + 1, dtype=probs.dtype, device=probs.device)
            score = (probs * levels).sum(dim=-1)
        else:
            score = out[:, 0]
        return score.reshape(-1, crops).mean(dim=1)

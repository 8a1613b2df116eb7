"""CLIP in plain torch, in OpenAI's state-dict key layout, plus its BPE tokenizer.

Written for LIQE, whose checkpoints are whole fine-tuned CLIP ViT-B/32 models. The module names
reproduce OpenAI's layout exactly, so ``ViT-B-32.pt`` (a TorchScript archive), the official
``LIQE.pt`` (a plain CLIP state dict) and pyiqa's ``liqe_mix.pt`` (the same under a
``clip_model.`` prefix) load with ``strict=True``:

- image tower: ``visual.conv1.weight`` (no bias), ``visual.class_embedding``,
  ``visual.positional_embedding``, ``visual.ln_pre.*``,
  ``visual.transformer.resblocks.<i>.{ln_1, attn.in_proj_weight, attn.in_proj_bias,
  attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}.*``, ``visual.ln_post.*``, ``visual.proj``;
- text tower: ``token_embedding.weight``, ``positional_embedding``,
  ``transformer.resblocks.<i>.*``, ``ln_final.*``, ``text_projection``; and ``logit_scale``.

The architecture is read off the tensor shapes (:meth:`CLIPConfig.from_state_dict`), like
OpenAI's ``build_model``: ViT-B/32 is width 768, 12 layers, 12 heads, patch 32, 224 px, text
width 512, 8 heads, 12 layers, context 77, vocabulary 49,408, joint space 512. Heads are
``width // 64`` as in OpenAI's code; activations are QuickGELU, ``x·σ(1.702x)``.

The tokenizer (:class:`CLIPTokenizer`) is our own implementation of CLIP's byte-level BPE. It
reads OpenAI's merges file ``bpe_simple_vocab_16e6.txt.gz``. It lower-cases, collapses
whitespace and unescapes HTML, but does not apply ``ftfy``'s text repair, so it is exact for
plain ASCII text such as LIQE's prompts.
"""
from __future__ import annotations

import gzip
import html
import re
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

# -- model -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CLIPConfig:
    """Shape of a CLIP ViT model (OpenAI's ``build_model`` arguments)."""

    embed_dim: int = 512
    image_resolution: int = 224
    vision_layers: int = 12
    vision_width: int = 768
    vision_patch_size: int = 32
    context_length: int = 77
    vocab_size: int = 49408
    transformer_width: int = 512
    transformer_layers: int = 12

    @property
    def vision_heads(self) -> int:
        return max(1, self.vision_width // 64)

    @property
    def transformer_heads(self) -> int:
        return max(1, self.transformer_width // 64)

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> CLIPConfig:
        """Read the architecture off a CLIP ViT state dict."""
        if "visual.proj" not in state:
            raise ValueError("Not a CLIP ViT state dict (no 'visual.proj'); ResNet CLIP models "
                             "are not supported.")
        conv = state["visual.conv1.weight"]
        grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        return cls(
            embed_dim=state["text_projection"].shape[1] if "text_projection" in state
            else state["visual.proj"].shape[1],
            image_resolution=conv.shape[-1] * grid,
            vision_layers=_count_blocks(state, "visual.transformer.resblocks."),
            vision_width=conv.shape[0],
            vision_patch_size=conv.shape[-1],
            context_length=state["positional_embedding"].shape[0],
            vocab_size=state["token_embedding.weight"].shape[0],
            transformer_width=state["ln_final.weight"].shape[0],
            transformer_layers=_count_blocks(state, "transformer.resblocks."),
        )


VIT_B_32 = CLIPConfig()


def _count_blocks(state, prefix: str) -> int:
    return len({k[len(prefix):].split(".")[0] for k in state if k.startswith(prefix)})


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    """Pre-LN transformer block; ``attn`` is ``nn.MultiheadAttention``, whose parameter names
    (``in_proj_weight``, ``in_proj_bias``, ``out_proj``) are OpenAI's."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(width, width * 4)),
                                              ("gelu", QuickGELU()),
                                              ("c_proj", nn.Linear(width * 4, width))]))
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x, attn_mask=None):
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False, attn_mask=attn_mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        self.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads)
                                         for _ in range(layers)])

    def forward(self, x, attn_mask=None):
        for block in self.resblocks:
            x = block(x, attn_mask)
        return x


class VisionTransformer(nn.Module):
    """CLIP's image tower: patch embedding, class token, pre-LN transformer, projection."""

    def __init__(self, resolution: int, patch: int, width: int, layers: int, heads: int,
                 output_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch, stride=patch, bias=False)
        scale = width ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(
            scale * torch.randn((resolution // patch) ** 2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, heads)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def forward(self, x):
        x = self.conv1(x).flatten(2).transpose(1, 2)  # (B, grid², width)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.transformer(self.ln_pre(x))
        return self.ln_post(x[:, 0, :]) @ self.proj


class CLIP(nn.Module):
    """Both CLIP towers with OpenAI's parameter names."""

    def __init__(self, config: CLIPConfig = VIT_B_32):
        super().__init__()
        c = config
        self.config = c
        self.visual = VisionTransformer(c.image_resolution, c.vision_patch_size, c.vision_width,
                                        c.vision_layers, c.vision_heads, c.embed_dim)
        self.transformer = Transformer(c.transformer_width, c.transformer_layers,
                                       c.transformer_heads)
        self.token_embedding = nn.Embedding(c.vocab_size, c.transformer_width)
        self.positional_embedding = nn.Parameter(torch.empty(c.context_length,
                                                             c.transformer_width))
        self.ln_final = nn.LayerNorm(c.transformer_width)
        self.text_projection = nn.Parameter(torch.empty(c.transformer_width, c.embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(4.6052))  # log(1/0.07)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised pixels (N, 3, R, R) → (N, embed_dim), not L2-normalised."""
        return self.visual(images)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids (N, L ≤ context) → (N, embed_dim) at each sequence's end token.

        The end token has the largest id, so its position is ``argmax``. The mask is causal,
        so positions after the last end token never matter: sequences are trimmed to the
        longest one in the batch (same result as the full context, at a fraction of the cost).
        """
        end = tokens.argmax(dim=-1)
        length = int(end.max()) + 1
        tokens = tokens[:, :length]
        x = self.token_embedding(tokens) + self.positional_embedding[:length]
        mask = torch.full((length, length), float("-inf"), device=x.device).triu_(1)
        x = self.ln_final(self.transformer(x, attn_mask=mask))
        return x[torch.arange(x.shape[0], device=x.device), end] @ self.text_projection


def clip_state_dict_keys(config: CLIPConfig = VIT_B_32) -> dict[str, tuple[int, ...]]:
    """The key → shape table of a CLIP model (built on the meta device: no memory used)."""
    with torch.device("meta"):
        model = CLIP(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


# -- tokenizer ---------------------------------------------------------------------------------
SOT, EOT = "<|startoftext|>", "<|endoftext|>"
_N_MERGES = 49152 - 256 - 2  # OpenAI uses the first 48,894 merges
# CLIP's token pattern with the standard library's ``re``: special tokens, English
# contractions, runs of letters, single digits, runs of other non-space characters.
_PATTERN = re.compile(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|"
                      r"(?:[^\s\w]|_)+", re.IGNORECASE)


@lru_cache(maxsize=1)
def byte_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable unicode characters."""
    keep = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
            + list(range(ord("®"), ord("ÿ") + 1)))
    # Insertion order matters: it is the order of the first 256 vocabulary entries (the
    # printable bytes first, then the others mapped above U+0100).
    mapping = {b: chr(b) for b in keep}
    others = [b for b in range(256) if b not in mapping]
    mapping.update({b: chr(256 + i) for i, b in enumerate(others)})
    return mapping


class CLIPTokenizer:
    """CLIP's byte-level BPE tokenizer, read from OpenAI's merges file.

    Parameters
    ----------
    merges_path : path
        ``bpe_simple_vocab_16e6.txt.gz`` (gzip text; first line a header, then one merge
        ``"a b"`` per line). A shorter file gives a smaller vocabulary, with the start and end
        tokens last, as in OpenAI's code.
    """

    def __init__(self, merges_path: str | Path):
        lines = gzip.open(merges_path, "rt", encoding="utf-8").read().split("\n")
        merges = [tuple(line.split()) for line in lines[1:_N_MERGES + 1] if line.strip()]
        symbols = list(byte_to_unicode().values())
        vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [SOT, EOT]
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.ranks = {merge: i for i, merge in enumerate(merges)}
        self.sot, self.eot = self.encoder[SOT], self.encoder[EOT]
        self._cache: dict[str, list[str]] = {}

    @property
    def vocab_size(self) -> int:
        return len(self.encoder)

    def _bpe(self, word: str) -> list[str]:
        if word in self._cache:
            return self._cache[word]
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            pairs = {(parts[i], parts[i + 1]) for i in range(len(parts) - 1)}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(parts):
                if i < len(parts) - 1 and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        self._cache[word] = parts
        return parts

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (without the start/end tokens)."""
        text = " ".join(html.unescape(html.unescape(text)).split()).lower()
        mapping = byte_to_unicode()
        ids = []
        for piece in _PATTERN.findall(text):
            word = "".join(mapping[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[p] for p in self._bpe(word))
        return ids

    def __call__(self, texts: list[str], context_length: int = 77) -> torch.Tensor:
        """``(len(texts), context_length)`` int64 ids: start, tokens, end, zero padding."""
        out = torch.zeros(len(texts), context_length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.sot] + self.encode(text) + [self.eot]
            if len(ids) > context_length:
                raise ValueError(f"Text {text!r} has {len(ids)} tokens; the context holds "
                                 f"{context_length}.")
            out[row, :len(ids)] = torch.tensor(ids)
        return out

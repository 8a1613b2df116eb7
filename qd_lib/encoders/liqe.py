"""``liqe``: LIQE's CLIP ViT-B/32 embedding and quality probabilities.

Checkpoints (``QD_WEIGHTS_DIR``): LIQE fine-tunes *both* CLIP towers, and its checkpoints are
whole CLIP state dicts: the official ``LIQE.pt`` without a prefix, pyiqa's ``liqe_mix.pt`` /
``liqe_koniq.pt`` under ``clip_model.`` (optionally inside ``params``). Such a checkpoint is
complete on its own; OpenAI's ``ViT-B-32.pt`` (sha256-checked) is read only to fill keys a
checkpoint lacks. The model is :class:`qd_lib.encoders.clip.CLIP`, loaded with ``strict=True``.

Class embeddings (decision): the 495 joint prompts ``"a photo of a {scene} with {distortion}
artifacts, which is of {quality} quality"`` (5 qualities × 9 scenes × 11 distortion groups, in
``itertools.product(QUALITIES, SCENES, DISTORTIONS)`` order) are encoded by the checkpoint's own
fine-tuned text tower, which we implement too, with our CLIP tokenizer reading OpenAI's
``bpe_simple_vocab_16e6.txt.gz`` (sha256-checked, from ``QD_WEIGHTS_DIR``). Precomputed text
features (a ``(495, 512)`` tensor, e.g. pyiqa's cached ``liqe_text_feat_mix.pt``, which holds
exactly these L2-normalised features) can be given instead with ``text_features=`` and then no
tokenizer file is needed. Computed features are cached under ``runs_dir()/cache/`` keyed by the
checkpoint's and the vocabulary's hashes.

Preprocessing (LIQE's ``AdaptiveResize(768, image_size=224)`` + pyiqa's fixed patch sampling):
PIL RGB → if both sides ≥ 768, resize the short side to 768 (bilinear); if the short side is
< 224, resize it to 224 (bilinear; recorded as a conversion) → 224×224 patches at stride
``step`` (32) in row-major order → keep ``k = min(num_patch, n)`` of the ``n`` patches, at
indices ``i·max(1, n // num_patch)`` (the official code takes the step from the *batch* size,
which at batch 1 repeats the first patch 15 times; we never do) → /255 → CLIP mean/std.

Outputs per image:

``embedding`` (512)
    Mean over the k patches of the L2-normalised image features (not renormalised).
``quality5`` (5)
    p(bad, poor, fair, good, perfect): the joint softmax summed over scenes and distortions.
    LIQE's score is ``Σ_k k·p_k`` ∈ [1, 5].
``joint495`` (495; ``variant="mix"`` only)
    softmax over the 495 classes of ``exp(logit_scale)·cos(patch, prompt)`` averaged over
    patches.

``variant="koniq"`` (``liqe_koniq.pt``) is quality-only: 5 prompts ``"a photo with {q}
quality"`` and no ``joint495``.
"""
from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass
from itertools import product
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from qd_lib.encoders.base import (
    CLIP_MEAN,
    CLIP_STD,
    Encoder,
    Preprocess,
    WeightsRecord,
    checkpoint_key,
    file_sha256,
    load_checkpoint,
    load_state_dict_file,
    load_strict,
    normalize,
    pil_to_uint8,
    resize_short_side,
    resolve_weights,
)
from qd_lib.encoders.clip import CLIP, CLIPConfig, CLIPTokenizer
from qd_lib.paths import display_path, runs_dir
from qd_lib.utils.errors import OfflineWeightsError
from qd_lib.utils.io import atomic_write_bytes
from qd_lib.utils.validation import check_option, check_scalar
from qd_lib.weights import CLIP_BPE_VOCAB, CLIP_VIT_B_32, LIQE_KONIQ, LIQE_MIX

logger = logging.getLogger(__name__)

QUALITIES = ("bad", "poor", "fair", "good", "perfect")
SCENES = ("animal", "cityscape", "human", "indoor", "landscape", "night", "plant", "still_life",
          "others")
DISTORTIONS = ("jpeg2000 compression", "jpeg compression", "noise", "blur", "color", "contrast",
               "overexposure", "underexposure", "spatial", "quantization", "other")
_PREFIXES = ("clip_model.", "module.", "model.")
_JIT_EXTRAS = ("input_resolution", "context_length", "vocab_size")


def joint_prompts() -> list[str]:
    """LIQE's 495 prompts in its class order (quality, then scene, then distortion)."""
    return [f"a photo of a {s} with {d} artifacts, which is of {q} quality"
            for q, s, d in product(QUALITIES, SCENES, DISTORTIONS)]


def quality_prompts() -> list[str]:
    """The 5 prompts of the quality-only model (``liqe_koniq``)."""
    return [f"a photo with {q} quality" for q in QUALITIES]


def clip_state_from_checkpoint(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Bring a LIQE/CLIP checkpoint to OpenAI's bare key layout."""
    for prefix in _PREFIXES:
        if any(k.startswith(prefix + "visual.") for k in state):
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            break
    return {k: v.float() for k, v in state.items() if k not in _JIT_EXTRAS}


def patch_indices(n: int, num_patch: int) -> list[int]:
    """pyiqa's evaluation sampling: ``min(num_patch, n)`` patches at a uniform index step."""
    step = max(1, n // num_patch)
    return [step * i for i in range(min(num_patch, n))]


@dataclass(eq=False)
class LIQEPreprocess(Preprocess):
    """LIQE's adaptive resize and fixed patch sampling of one image (see the module
    docstring)."""

    num_patch: int = 15
    step: int = 32
    patch: int = 224
    adaptive_size: int = 768

    def apply(self, image):
        note = None
        width, height = image.size
        if min(width, height) >= self.adaptive_size:
            image = resize_short_side(image, self.adaptive_size, Image.Resampling.BILINEAR)
        elif min(width, height) < self.patch:
            image = resize_short_side(image, self.patch, Image.Resampling.BILINEAR)
            note = f"upsampled from {width}x{height} (short side {self.patch})"
        x = pil_to_uint8(image)
        patches = x.unfold(1, self.patch, self.step).unfold(2, self.patch, self.step)
        patches = patches.permute(1, 2, 0, 3, 4).reshape(-1, 3, self.patch, self.patch)
        keep = patch_indices(patches.shape[0], self.num_patch)
        return {"patches": patches[keep].contiguous()}, note

    def describe(self) -> str:
        return (f"PIL RGB; both sides >= {self.adaptive_size}: short side to "
                f"{self.adaptive_size} (bilinear); short side < {self.patch}: to {self.patch} "
                f"(bilinear); {self.patch}x{self.patch} patches at stride {self.step}, "
                f"min({self.num_patch}, n) kept at indices i*max(1, n//{self.num_patch}); /255; "
                f"CLIP mean {CLIP_MEAN} / std {CLIP_STD}")


class LIQEEncoder(Encoder):
    """LIQE (CLIP ViT-B/32): 512-d embedding, 5 quality and 495 joint-class probabilities.

    Parameters
    ----------
    variant : {"mix", "koniq"}, default="mix"
        Which released checkpoint (``liqe_mix.pt`` or ``liqe_koniq.pt``) is the default file.
    checkpoint : path, optional
        A LIQE checkpoint to use instead of the default file (e.g. the official ``LIQE.pt``).
    clip_checkpoint : path, optional
        OpenAI's ``ViT-B-32.pt``, only read if the LIQE checkpoint lacks CLIP keys.
    vocab : path, optional
        The BPE merges file, instead of ``QD_WEIGHTS_DIR/bpe_simple_vocab_16e6.txt.gz``.
    text_features : path or tensor, optional
        Precomputed class embeddings ``(n_prompts, embed_dim)``; skips the text tower.
    num_patch : int, default=15
        Patches per image.
    step : int, default=32
        Patch stride in pixels.
    cache_text_features : bool, default=True
        Cache computed class embeddings under ``runs_dir()/cache``.
    """

    name = "liqe"
    channels_last = False

    def __init__(self, *, variant: str = "mix", checkpoint=None, clip_checkpoint=None, vocab=None,
                 text_features=None, num_patch: int = 15, step: int = 32,
                 cache_text_features: bool = True):
        super().__init__(variant=variant, checkpoint=checkpoint, clip_checkpoint=clip_checkpoint,
                         vocab=vocab, text_features=text_features, num_patch=num_patch,
                         step=step, cache_text_features=cache_text_features)
        check_option(variant, "variant", ("mix", "koniq"))
        check_scalar(num_patch, "num_patch", int, min_val=1)
        check_scalar(step, "step", int, min_val=1)
        spec = LIQE_MIX if variant == "mix" else LIQE_KONIQ
        with load_checkpoint(spec, checkpoint) as (path, record, raw):
            model, records = self._clip_model(path, record, clip_state_from_checkpoint(raw),
                                              clip_checkpoint)
        self.variant = variant
        self.prompts = joint_prompts() if variant == "mix" else quality_prompts()
        features, feature_record = self._text_features(model, text_features, vocab, record,
                                                       cache_text_features)
        records.append(feature_record)
        self.visual = model.visual
        self.logit_scale = model.logit_scale
        self.register_buffer("text_features", features)
        self.config = config = model.config
        self.num_patch, self.step = num_patch, step
        self.weights_records = records
        self.outputs = {"embedding": config.embed_dim, "quality5": 5}
        if variant == "mix":
            self.outputs["joint495"] = len(self.prompts)
        self._preprocess = LIQEPreprocess(num_patch, step, config.image_resolution)
        self.input_policy = f"patches_{config.image_resolution}_stride{step}_k{num_patch}"
        self.preprocessing = (self._preprocess.describe() + "; CLIP image tower per patch, "
                              "L2-normalised; embedding = mean over patches; probabilities = "
                              "softmax of exp(logit_scale)*cos averaged over patches")
        key = self.name if variant == "mix" else f"{self.name}_koniq"
        if (num_patch, step) != (15, 32):
            key += f"_k{num_patch}s{step}"
        self.key = checkpoint_key(key, checkpoint, record)

    def _clip_model(self, path: Path, record: WeightsRecord, state: dict[str, torch.Tensor],
                    clip_checkpoint) -> tuple[CLIP, list[WeightsRecord]]:
        """The CLIP model of a LIQE checkpoint (keys it lacks filled from ``ViT-B-32.pt``),
        loaded strictly, and the records of the files read."""
        records = [record]
        missing = self._missing_clip_keys(state)
        if missing:
            logger.info("LIQE checkpoint %s lacks %d CLIP keys (e.g. %s); filling them from "
                        "ViT-B-32.pt", path.name, len(missing), missing[0])
            clip_path, clip_record = resolve_weights(CLIP_VIT_B_32, clip_checkpoint,
                                                     "clip_checkpoint")
            base = clip_state_from_checkpoint(load_state_dict_file(clip_path))
            state = {**{k: v for k, v in base.items() if k in missing or k not in state},
                     **state}
            records.append(clip_record)
        try:
            config = CLIPConfig.from_state_dict(state)
        except (KeyError, ValueError) as exc:
            raise OfflineWeightsError(f"LIQE checkpoint {path.name} is not a CLIP ViT state dict "
                                      f"({type(exc).__name__}: {exc}).") from None
        model = CLIP(config)
        load_strict(model, state, f"LIQE checkpoint {path.name}")
        return model, records

    @staticmethod
    def _missing_clip_keys(state) -> list[str]:
        try:
            config = CLIPConfig.from_state_dict(state)
        except (KeyError, ValueError):
            config = CLIPConfig()
        with torch.device("meta"):
            reference = CLIP(config).state_dict()
        return [k for k in reference if k not in state]

    def _text_features(self, model: CLIP, given, vocab, ckpt_record: WeightsRecord,
                       use_cache: bool) -> tuple[torch.Tensor, WeightsRecord]:
        n, dim = len(self.prompts), model.config.embed_dim
        if given is not None:
            if isinstance(given, torch.Tensor):
                features = given.detach().float().cpu()
                digest = _tensor_sha256(features)
                record = WeightsRecord("text_features", "<tensor>", "<in memory>", digest, False,
                                       "precomputed text features given by the caller")
            else:
                p = Path(given)
                if not p.is_file():
                    raise OfflineWeightsError(f"Text features file {display_path(p)} not found.")
                features = torch.load(p, map_location="cpu", weights_only=True).float()
                record = WeightsRecord("text_features", p.name, display_path(p), file_sha256(p),
                                       False, "precomputed text features given by the caller")
            if tuple(features.shape) != (n, dim):
                raise ValueError(f"The 'text_features' parameter must have shape ({n}, {dim}) "
                                 f"for variant {self.variant!r}. Got {tuple(features.shape)}.")
            return F.normalize(features, dim=-1), record
        vocab_path, vocab_record = resolve_weights(CLIP_BPE_VOCAB, vocab, "vocab")
        cache = (runs_dir() / "cache" /
                 f"liqe_text_{self.variant}_{ckpt_record.sha256[:16]}_"
                 f"{vocab_record.sha256[:16]}.npy")
        if use_cache and cache.is_file():
            features = torch.from_numpy(np.load(cache))
            if tuple(features.shape) == (n, dim):
                logger.info("LIQE class embeddings read from %s", display_path(cache))
                return features, vocab_record
        tokenizer = CLIPTokenizer(vocab_path)
        if tokenizer.vocab_size > model.config.vocab_size:
            raise OfflineWeightsError(f"The tokenizer vocabulary ({tokenizer.vocab_size}) is "
                                      f"larger than the model's ({model.config.vocab_size}).")
        tokens = tokenizer(self.prompts, model.config.context_length)
        with torch.inference_mode():
            features = F.normalize(model.encode_text(tokens).float(), dim=-1)
        if use_cache:
            buf = io.BytesIO()
            np.save(buf, features.numpy())
            atomic_write_bytes(cache, buf.getvalue())
        return features.clone(), vocab_record

    def options(self):
        return {"variant": self.variant, "num_patch": self.num_patch, "step": self.step,
                "text_features_sha256": _tensor_sha256(self.text_features.cpu())}

    def transform(self):
        return self._preprocess

    def _encode(self, inputs):
        patches = inputs["patches"]  # (B, k, 3, R, R) uint8
        b, k = patches.shape[:2]
        x = normalize(patches.flatten(0, 1), CLIP_MEAN, CLIP_STD)
        feats = F.normalize(self.visual(x).float(), dim=-1).view(b, k, -1)
        logits = self.logit_scale.exp().float() * feats @ self.text_features.float().t()
        probs = logits.mean(dim=1).softmax(dim=-1)
        out = {"embedding": feats.mean(dim=1)}
        if self.variant == "mix":
            out["joint495"] = probs
            out["quality5"] = probs.view(b, len(QUALITIES), len(SCENES), len(DISTORTIONS)).sum(
                dim=(2, 3))
        else:
            out["quality5"] = probs
        return out


def _tensor_sha256(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.contiguous().numpy().tobytes()).hexdigest()

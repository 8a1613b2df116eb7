"""What every encoder shares: the interface, weight resolution, and image helpers.

An encoder is two halves:

``Encoder.transform()``
    A small picklable :class:`Preprocess` that turns one RGB PIL image into a dict of **uint8**
    tensors. It runs in DataLoader workers (or Dask workers) on the CPU; sending uint8 keeps the
    inter-process traffic at a quarter of float32.
``Encoder.encode(inputs)``
    The batched forward pass on the encoder's device: uint8 → float in [0, 1] → the model's
    normalisation → model → a dict of float32 outputs, the first one being the embedding.

Images whose short side is below ``Preprocess.min_side`` raise :class:`ImageTooSmallError`,
which the extractor reports by image id; images between that and the size the encoder needs are
resized the way each encoder documents (the resize is recorded as a conversion note).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image

from qd_lib.paths import display_path
from qd_lib.utils.errors import OfflineWeightsError, QDError
from qd_lib.weights import WeightsFile, file_sha256, locate, record_weights_hash, verify

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ImageTooSmallError(QDError, ValueError):
    """An image is smaller than the least an encoder can measure meaningfully."""


# -- weights -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class WeightsRecord:
    """Which file an encoder loaded: recorded in every embedding sidecar.

    Attributes
    ----------
    role : str
        What the file is for (``checkpoint``, ``clip_checkpoint``, ``vocab``, ``text_features``).
    filename : str
        Its name.
    path : str
        Where it was read (relative to the repository when inside it).
    sha256 : str
        Full sha256 of the bytes that were loaded.
    verified : bool
        True when the hash was checked against a published one.
    source : str
        Where the file comes from.
    """

    role: str
    filename: str
    path: str
    sha256: str
    verified: bool
    source: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_weights(spec: WeightsFile, explicit: str | os.PathLike | None,
                    role: str = "checkpoint") -> tuple[Path, WeightsRecord]:
    """Find the file for ``spec`` and describe it.

    Parameters
    ----------
    spec : WeightsFile
        The known checkpoint (name, published hash, source).
    explicit : path, optional
        A file chosen by the caller instead of the default location. It is loaded as it is and
        recorded with ``verified=False`` (a warning says so), unless it carries ``spec``'s file
        name and a published hash, which must then match.
    role : str
        Recorded in the :class:`WeightsRecord`.

    Raises
    ------
    OfflineWeightsError
        Missing file, or a hash that differs from the published one.
    """
    if explicit is None:
        # recorded by load_checkpoint once it has loaded (trust on first use)
        path = locate(spec, record=False)
        verified, source = spec.sha256 is not None, spec.source
    else:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise OfflineWeightsError(
                f"Weights file {path.name!r} not found at {display_path(path)} (given as the "
                f"{role!r} of this encoder; the default is {spec.filename!r}, source: "
                f"{spec.source}).")
        verified = bool(spec.sha256) and path.name == spec.filename
        if verified:
            verify(path, spec)
        else:
            logger.warning("%s %s is used as given (sha256 %s…, not checked against a "
                           "published hash)", role, display_path(path), file_sha256(path)[:12])
        source = f"given by the caller instead of {spec.filename}"
    return path, WeightsRecord(role, path.name, display_path(path), file_sha256(path), verified,
                               source)


@contextmanager
def load_checkpoint(spec: WeightsFile, explicit: str | os.PathLike | None,
                    role: str = "checkpoint"
                    ) -> Iterator[tuple[Path, WeightsRecord, dict[str, torch.Tensor]]]:
    """Resolve (:func:`resolve_weights`) and read (:func:`load_state_dict_file`) a checkpoint.

    Use as ``with load_checkpoint(ARNIQA, checkpoint) as (path, record, state): ...`` around the
    strict load. When the block completes, the default file (not one given by the caller) has
    loaded, and if no hash is published for it its sha256 is recorded on this first load
    (:func:`qd_lib.weights.record_weights_hash`); a block that raises records nothing.
    """
    path, record = resolve_weights(spec, explicit, role)
    yield path, record, load_state_dict_file(path)
    if explicit is None:
        record_weights_hash(path, spec)


def checkpoint_key(key: str, checkpoint, record: WeightsRecord) -> str:
    """Cache key of an encoder: ``key``, or ``key_ckpt-<sha8>`` for a caller's checkpoint."""
    return key if checkpoint is None else f"{key}_ckpt-{record.sha256[:8]}"


_CONTAINER_KEYS = ("params", "params_ema", "state_dict", "model_state_dict")


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint into a flat ``{name: tensor}`` dict on the CPU.

    Plain state dicts are read with ``torch.load(weights_only=True)``; TorchScript archives
    (OpenAI's CLIP ``.pt`` files) with ``torch.jit.load``. A dict holding the state dict under
    ``params``/``state_dict`` (pyiqa's and Lightning's layouts) is unwrapped.
    """
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # TorchScript archives and other formats
        try:
            obj = torch.jit.load(str(path), map_location="cpu").state_dict()
        except Exception:
            raise OfflineWeightsError(f"Cannot read weights file {display_path(path)} as a "
                                      f"state dict or a TorchScript archive: "
                                      f"{type(exc).__name__}: {exc}") from exc
    for key in _CONTAINER_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise OfflineWeightsError(f"Weights file {display_path(path)} does not hold a state dict "
                                  f"of tensors (got {type(obj).__name__}).")
    return dict(obj)


def strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Keys starting with ``prefix``, with the prefix removed."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def load_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """``load_state_dict(strict=True)`` with a message that names the file and the keys."""
    missing, unexpected = [], []
    own = module.state_dict()
    for key in own:
        if key not in state:
            missing.append(key)
        elif tuple(own[key].shape) != tuple(state[key].shape):
            raise OfflineWeightsError(f"{what}: tensor {key!r} has shape "
                                      f"{tuple(state[key].shape)}, the model expects "
                                      f"{tuple(own[key].shape)}.")
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise OfflineWeightsError(
            f"{what} does not match the model: {len(missing)} missing key(s) {missing[:5]}, "
            f"{len(unexpected)} unexpected key(s) {unexpected[:5]}. Nothing was loaded "
            "(no layer is left randomly initialised).")
    module.load_state_dict(state, strict=True)


# -- preprocessing -----------------------------------------------------------------------------
class Preprocess:
    """Base of the per-image transforms (picklable, no model inside).

    Subclasses implement :meth:`apply`, returning ``(inputs, note)``: a dict of uint8 tensors
    and an optional note describing a conversion (e.g. an upsampled small image).
    """

    min_side: int = 32

    def __call__(self, image: Image.Image) -> dict[str, Any]:
        width, height = image.size
        if min(width, height) < self.min_side:
            raise ImageTooSmallError(f"image is {width}x{height} px; this encoder needs a short "
                                     f"side of at least {self.min_side} px")
        inputs, note = self.apply(image)
        return {"inputs": inputs, "note": note}

    def apply(self, image: Image.Image) -> tuple[dict[str, torch.Tensor], str | None]:
        raise NotImplementedError


def pil_to_uint8(image: Image.Image) -> torch.Tensor:
    """RGB PIL image → uint8 tensor (3, H, W)."""
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).contiguous()


class ImageNetPreprocess(Preprocess):
    """torchvision's ImageNet evaluation transform on a PIL image, stopping at uint8.

    ``Resize(resize_size)`` of the short side (bilinear, antialiased: PIL's resampling), then
    ``CenterCrop(crop_size)``; the float conversion and ImageNet mean/std normalisation happen
    on the device (:func:`normalize`). Identical to ``weights.transforms()`` of torchvision's
    classification weights. Smaller images are upsampled by the resize.
    """

    def __init__(self, resize_size: int = 256, crop_size: int = 224, min_side: int = 32):
        self.resize_size = resize_size
        self.crop_size = crop_size
        self.min_side = min_side

    def apply(self, image):
        note = None
        if min(image.size) < self.crop_size:
            note = (f"upsampled from {image.size[0]}x{image.size[1]} (short side "
                    f"{self.resize_size})")
        image = TF.resize(image, self.resize_size, interpolation=TF.InterpolationMode.BILINEAR,
                          antialias=True)
        image = TF.center_crop(image, self.crop_size)
        return {"image": pil_to_uint8(image)}, note

    def describe(self) -> str:
        return (f"PIL RGB; resize short side to {self.resize_size} (bilinear, antialiased); "
                f"centre crop {self.crop_size}x{self.crop_size}; /255; ImageNet mean "
                f"{IMAGENET_MEAN} / std {IMAGENET_STD}")


def downscale_long_side(image: Image.Image, max_side: int | None
                        ) -> tuple[Image.Image, str | None]:
    """``image`` resized (PIL bicubic) so that its long side is at most ``max_side``, and a note
    when it was; ``None`` or a small enough image: unchanged, no note."""
    width, height = image.size
    if not max_side or max(width, height) <= max_side:
        return image, None
    factor = max_side / max(width, height)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    return image.resize(size, Image.Resampling.BICUBIC), f"downscaled from {width}x{height}"


def resize_short_side(image: Image.Image, size: int, resample=Image.Resampling.BILINEAR
                      ) -> Image.Image:
    """Resize so the short side is ``size`` (aspect kept; torchvision's rounding rule)."""
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    new = (new_short, new_long) if width <= height else (new_long, new_short)
    return image if new == (width, height) else image.resize(new, resample)


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """Centre crop of ``size``×``size`` (torchvision's rounding), zero padding if too small."""
    width, height = image.size
    left = int(round((width - size) / 2.0))
    top = int(round((height - size) / 2.0))
    return crop_with_padding(image, top, left, size)


def crop_with_padding(image: Image.Image, top: int, left: int, size: int) -> Image.Image:
    """``size``×``size`` crop at (top, left); parts outside the image are black (zero)."""
    width, height = image.size
    if top >= 0 and left >= 0 and top + size <= height and left + size <= width:
        return image.crop((left, top, left + size, top + size))
    canvas = Image.new("RGB", (size, size))
    canvas.paste(image, (-left, -top))
    return canvas


# -- the encoder interface ---------------------------------------------------------------------
class Encoder(torch.nn.Module):
    """Base class of the registered encoders.

    Attributes
    ----------
    name : str
        Registry name.
    key : str
        Cache-file stem: the name plus any non-default option that changes the output (e.g.
        ``resnet50_v2``, ``arniqa_five_crop``).
    outputs : dict of str to int
        Output names and dimensions; the first is the embedding.
    input_policy : str
        How images are fed (``center_crop_224``, ``whole_image``, ``five_crop``, ...).
    preprocessing : str
        The exact preprocessing, for people and for the sidecar.
    weights_records : list of WeightsRecord
        The files this encoder was loaded from (empty for weight-free encoders).
    supports_amp : bool
        Whether autocast may be used on a GPU.
    channels_last : bool
        Whether 4-D inputs and weights are moved to ``channels_last``.
    cpu_heavy_transform : bool
        True when the transform does most of the work (``nss``), so the extractor spreads it
        over as many loader workers as there are cores.
    """

    name: ClassVar[str] = ""
    version: ClassVar[int] = 1  # bump when the computation changes: cached results then mismatch
    supports_amp: ClassVar[bool] = True
    channels_last: ClassVar[bool] = True
    cpu_heavy_transform: ClassVar[bool] = False

    def __init__(self, **init_kwargs):
        super().__init__()
        self._init_kwargs = {k: (str(v) if isinstance(v, os.PathLike) else v)
                             for k, v in init_kwargs.items()}
        self.register_buffer("_anchor", torch.zeros(0), persistent=False)
        self.outputs: dict[str, int] = {}
        self.input_policy = ""
        self.preprocessing = ""
        self.weights_records: list[WeightsRecord] = []
        self.key = self.name

    # -- to be provided by subclasses --------------------------------------------------------
    def transform(self) -> Preprocess:
        """The per-image CPU transform."""
        raise NotImplementedError

    def _encode(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Forward pass on stacked inputs already on the device."""
        raise NotImplementedError

    def options(self) -> dict[str, Any]:
        """The options that define the output (part of the cache key)."""
        return {}

    # -- shared machinery --------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self._anchor.device

    @property
    def dim(self) -> int:
        """Dimension of the main embedding."""
        return next(iter(self.outputs.values()))

    def spec(self) -> dict[str, Any]:
        """Name and constructor arguments, to rebuild this encoder in another process."""
        return {"name": self.name, "kwargs": dict(self._init_kwargs)}

    def prepare(self, device: str | torch.device = "cpu") -> Encoder:
        """Move to ``device``, switch to eval mode, freeze, and use channels_last if wanted."""
        self.eval().requires_grad_(False).to(device)
        if self.channels_last:
            self.to(memory_format=torch.channels_last)
        return self

    def describe(self) -> dict[str, Any]:
        """What the sidecar records about the encoder."""
        return {"name": self.name, "key": self.key, "version": self.version,
                "options": self.options(),
                "outputs": dict(self.outputs), "input_policy": self.input_policy,
                "preprocessing": self.preprocessing,
                "weights": [w.as_dict() for w in self.weights_records]}

    def _move(self, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.to(self.device, non_blocking=True)
        if self.channels_last and tensor.dim() == 4:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        return tensor

    def encode(self, inputs: dict[str, Any], *, amp: str | None = None
               ) -> dict[str, torch.Tensor]:
        """Encode a collated batch; returns float32 tensors on the CPU.

        ``inputs`` maps each input name to a stacked uint8 tensor, or to a list of per-image
        tensors when the images of the batch differ in size; such a batch is encoded in groups
        of equal size and reassembled in order. ``amp`` names an autocast dtype
        (``"bfloat16"``/``"float16"``), used only on CUDA and if the encoder supports it.
        """
        n = len(next(iter(inputs.values())))
        use_amp = bool(amp) and self.supports_amp and self.device.type == "cuda"
        amp_dtype = getattr(torch, amp) if use_amp else None
        if all(isinstance(v, torch.Tensor) for v in inputs.values()):
            groups = [(list(range(n)), inputs)]
        else:
            by_shape: dict[tuple, list[int]] = {}
            for i in range(n):
                signature = tuple(tuple(inputs[k][i].shape) for k in inputs)
                by_shape.setdefault(signature, []).append(i)
            groups = [(idx, {k: torch.stack([inputs[k][i] for i in idx]) for k in inputs})
                      for idx in by_shape.values()]
        out = {name: torch.empty(n, dim, dtype=torch.float32) for name, dim in self.outputs.items()}
        for idx, group in groups:
            moved = {k: self._move(v) for k, v in group.items()}
            with torch.autocast(self.device.type, dtype=amp_dtype, enabled=use_amp):
                result = self._encode(moved)
            for name in self.outputs:
                out[name][idx] = result[name].float().cpu()
        return out

    forward = encode


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 image tensor (..., 3, H, W) → float normalised with ``mean``/``std``."""
    mean_t = torch.tensor(mean, device=x.device, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, device=x.device, dtype=torch.float32).view(3, 1, 1)
    return (x.float() / 255.0 - mean_t) / std_t


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=-1)

"""Train the CIFAR ResNet-18 on a coreset and measure test accuracy.

The recipe (:class:`TrainRecipe`) defaults to the CIFAR-10 setting of DeepCore, whose numbers
the supplement's Table 4 quotes: SGD with Nesterov momentum 0.9, learning rate 0.1, weight decay
5e-4, cosine annealing per step over all epochs, batch size 128, 200 epochs, random 32×32 crops
of the image padded by 4 (reflect) and horizontal flips, inputs normalised with the training
split's per-channel mean and standard deviation. Cross-entropy loss.

What is reported: the test accuracy **after the last epoch** (``accuracy``). DeepCore prints the
best test accuracy over epochs, which selects the epoch on the test set; where per-epoch
evaluation is switched on (``eval_every``) that figure is kept too, as ``best_accuracy`` with its
epoch, and labelled as chosen on the test set.

Determinism: the network is initialised under :func:`qd_lib.training.seeding.seeded`; the
order of the coreset and every augmentation draw in epoch ``e`` come from a generator seeded
with ``derive_seed(seed, "epoch", e)``, so a run resumed from its checkpoint (written after every
epoch) continues exactly as an uninterrupted one would.
"""
from __future__ import annotations

import io
import logging
import math
import numbers
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from qd_lib.paths import display_path
from qd_lib.utils.errors import QDError
from qd_lib.utils.io import atomic_write_bytes
from qd_lib.utils.progress import progress
from qd_lib.utils.validation import check_option, check_scalar

logger = logging.getLogger(__name__)

__all__ = ["AUGMENTATIONS", "RECIPES", "TrainRecipe", "TrainingDivergedError",
           "channel_stats", "train_classifier"]

AUGMENTATIONS = ("crop_flip", "crop", "none")


class TrainingDivergedError(QDError, FloatingPointError):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class TrainRecipe:
    """How the classifier is trained (every field is part of a run's identity).

    Attributes
    ----------
    epochs : int, default=200
    batch_size : int, default=128
    lr : float, default=0.1
        Peak learning rate (cosine annealing to 0 over ``epochs × steps per epoch``).
    momentum : float, default=0.9
    weight_decay : float, default=5e-4
    nesterov : bool, default=True
    width : int, default=64
        ResNet-18's base width (64 = the standard network; smaller only for CPU runs).
    augment : {"crop_flip", "crop", "none"}, default="crop_flip"
        Random crop of the reflect-padded image, with or without horizontal flips.
    crop_padding : int, default=4
    eval_every : int, default=0
        Also evaluate on the test set every this many epochs (0: only after the last one).
    deterministic : bool, default=True
        Deterministic cuDNN/torch algorithms (slower on a GPU, same result every time).
    """

    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    width: int = 64
    augment: str = "crop_flip"
    crop_padding: int = 4
    eval_every: int = 0
    deterministic: bool = True

    def __post_init__(self):
        check_scalar(self.epochs, "epochs", numbers.Integral, min_val=1)
        check_scalar(self.batch_size, "batch_size", numbers.Integral, min_val=2)
        check_scalar(self.lr, "lr", numbers.Real, min_val=0.0, closed="neither")
        check_scalar(self.momentum, "momentum", numbers.Real, min_val=0.0, max_val=1.0,
                     closed="left")
        check_scalar(self.weight_decay, "weight_decay", numbers.Real, min_val=0.0)
        check_scalar(self.width, "width", numbers.Integral, min_val=1)
        check_option(self.augment, "augment", AUGMENTATIONS)
        check_scalar(self.crop_padding, "crop_padding", numbers.Integral, min_val=0, max_val=16)
        check_scalar(self.eval_every, "eval_every", numbers.Integral, min_val=0)
        for name in ("nesterov", "deterministic"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"The {name!r} parameter must be a bool. Got "
                                f"{getattr(self, name)!r} instead.")
        if self.nesterov and self.momentum == 0:
            raise ValueError("The 'nesterov' parameter needs a momentum > 0. Got momentum=0.")

    @classmethod
    def from_mapping(cls, values=None, **overrides) -> TrainRecipe:
        """A recipe from a mapping (e.g. a grid file's ``recipe:``); unknown keys raise."""
        merged = {**dict(values or {}), **overrides}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(merged) - known)
        if unknown:
            raise TypeError(f"Unknown recipe field(s) {unknown}. Valid fields: {sorted(known)}.")
        floats = {"lr", "momentum", "weight_decay"}
        return cls(**{k: (float(v) if k in floats and isinstance(v, numbers.Real)
                          and not isinstance(v, bool) else v) for k, v in merged.items()})

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """One line for table captions."""
        net = "ResNet-18 (CIFAR stem)" if self.width == 64 else \
            f"ResNet-18 (CIFAR stem) at width {self.width} (not the standard 64)"
        aug = {"crop_flip": "crop+flip", "crop": "crop, no flip", "none": "no augmentation"}
        epochs = f"{self.epochs} epoch" + ("s" if self.epochs != 1 else "")
        return (f"{net}, {epochs}, batch {self.batch_size}, SGD lr {self.lr:g} "
                f"(cosine), wd {self.weight_decay:g}, {aug[self.augment]}")


#: Named recipes. ``paper``: the GPU recipe for CIFAR-10 (DeepCore's setting). ``cpu``: what
#: the offline digits stand-in runs with on two CPU cores (fewer epochs, a narrower network,
#: no flips for digits): a smoke-scale run, never comparable with the paper's numbers.
RECIPES = {
    "paper": TrainRecipe(),
    "cpu": TrainRecipe(epochs=20, batch_size=16, lr=0.05, width=16, augment="crop"),
}


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 images (n, 3, H, W), on [0, 1]."""
    x = images.reshape(images.shape[0], images.shape[1], -1)
    mean = x.mean(axis=(0, 2), dtype=np.float64) / 255.0
    sq = np.zeros(images.shape[1], dtype=np.float64)
    for start in range(0, len(images), 4096):  # chunks keep the float copy small
        block = x[start:start + 4096].astype(np.float64) / 255.0
        sq += ((block - mean[None, :, None]) ** 2).sum(axis=(0, 2))
    std = np.sqrt(sq / (x.shape[0] * x.shape[2]))
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def _augment(batch, recipe: TrainRecipe, generator):
    """Random crops (reflect padding) and optional flips of a float batch (B, C, H, W)."""
    import torch
    import torch.nn.functional as F

    if recipe.augment == "none":
        return batch
    b, _, h, w = batch.shape
    pad = recipe.crop_padding
    if pad:
        padded = F.pad(batch, (pad, pad, pad, pad), mode="reflect")
        offsets = torch.randint(0, 2 * pad + 1, (b, 2), generator=generator)
        batch = torch.stack([padded[i, :, oy:oy + h, ox:ox + w]
                             for i, (oy, ox) in enumerate(offsets.tolist())])
    if recipe.augment == "crop_flip":
        flip = torch.rand(b, generator=generator) < 0.5
        batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
    return batch


def _batches(n: int, batch_size: int, generator) -> list:
    """Shuffled index batches of one epoch; a last batch of one image (which batch norm cannot
    train on) joins the one before it."""
    import torch

    order = torch.randperm(n, generator=generator)
    chunks = list(order.split(batch_size))
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks[-2] = torch.cat([chunks[-2], chunks.pop()])
    return chunks


def _n_batches(n: int, batch_size: int) -> int:
    """Number of batches :func:`_batches` makes of ``n`` images."""
    count = -(-n // batch_size)
    return count - 1 if count > 1 and n % batch_size == 1 else count


def _evaluate(model, images: np.ndarray, labels: np.ndarray, mean, std, device,
              batch_size: int = 512) -> tuple[float, np.ndarray]:
    import torch

    model.eval()
    preds = np.empty(len(labels), dtype=np.int64)
    with torch.inference_mode():
        for start in range(0, len(labels), batch_size):
            x = _to_input(images[start:start + batch_size], mean, std, device)
            preds[start:start + len(x)] = model(x).argmax(1).cpu().numpy()
    model.train()
    return float((preds == labels).mean()), preds


def _to_input(images: np.ndarray, mean, std, device):
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).float().div_(255.0)
    m = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=device).view(1, -1, 1, 1)
    return (x - m) / s


def _save_checkpoint(path: Path, state: dict) -> None:
    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def train_classifier(train_images: np.ndarray, train_labels: np.ndarray,
                     test_images: np.ndarray, test_labels: np.ndarray, *, n_classes: int,
                     recipe: TrainRecipe, seed: int, device: str = "auto",
                     normalization=None, checkpoint: str | Path | None = None,
                     fingerprint: str = "", show_progress: bool | None = None) -> dict:
    """Train ResNet-18 (CIFAR variant) on the given images and return test accuracy.

    Parameters
    ----------
    train_images, test_images : ndarray of uint8, shape (n, 3, H, W)
        The coreset's images and the full test split.
    train_labels, test_labels : ndarray of int
    n_classes : int
    recipe : TrainRecipe
    seed : int
        Initialisation, order and augmentation seed.
    device : str, default="auto"
    normalization : (mean, std), optional
        Per-channel values on [0, 1]; default: :func:`channel_stats` of ``train_images``
        (pass the full training split's to match the usual CIFAR practice).
    checkpoint : path, optional
        Written after every epoch (atomically); a run finding one with the same ``fingerprint``
        resumes after its epoch. The caller removes it when done.
    fingerprint : str
        Identity of the run (spec hash and coreset); a checkpoint of another run is ignored.
    show_progress : bool, optional

    Returns
    -------
    dict
        ``accuracy`` (after the last epoch), ``per_class_accuracy``, ``predictions`` (int
        array), ``history`` (per-epoch loss, and accuracy where evaluated), ``best_accuracy``
        and ``best_epoch`` (on the test set; only with ``eval_every``), ``resumed_from_epoch``,
        ``seconds`` (train, eval), ``images_per_s``, ``n_parameters``, ``normalization``,
        ``device``.

    Raises
    ------
    TrainingDivergedError
        When the loss is not finite.
    """
    import torch
    import torch.nn.functional as F

    from qd_lib.models.resnet_cifar import resnet18_cifar
    from qd_lib.training.seeding import derive_seed, seeded
    from qd_lib.utils.device import resolve_device

    if not isinstance(recipe, TrainRecipe):
        raise TypeError(f"The 'recipe' parameter must be a TrainRecipe. Got "
                        f"{type(recipe).__name__} instead.")
    if len(train_labels) < 2:
        raise ValueError(f"Training needs at least 2 images. Got {len(train_labels)}.")
    dev = resolve_device(device)
    mean, std = normalization if normalization is not None else channel_stats(train_images)
    train_labels = np.asarray(train_labels, dtype=np.int64)
    test_labels = np.asarray(test_labels, dtype=np.int64)
    with seeded(int(seed), deterministic=recipe.deterministic):
        model = resnet18_cifar(n_classes, width=recipe.width).to(dev)
        optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                    weight_decay=recipe.weight_decay, nesterov=recipe.nesterov)
        n = len(train_labels)
        steps = _n_batches(n, recipe.batch_size)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer,
                                                               T_max=steps * recipe.epochs)
        history: list[dict] = []
        start_epoch = 0
        ckpt = Path(checkpoint) if checkpoint is not None else None
        if ckpt is not None and ckpt.is_file():
            state = torch.load(ckpt, map_location=dev, weights_only=False)
            if state.get("fingerprint") == fingerprint:
                model.load_state_dict(state["model"])
                optimizer.load_state_dict(state["optimizer"])
                scheduler.load_state_dict(state["scheduler"])
                start_epoch, history = int(state["epoch"]), list(state["history"])
                logger.info("resuming after epoch %d from %s", start_epoch, display_path(ckpt))
            else:
                logger.warning("ignoring %s: it belongs to another run", display_path(ckpt))
        x_all = torch.from_numpy(np.ascontiguousarray(train_images))
        y_all = torch.from_numpy(train_labels)
        m = torch.tensor(mean, device=dev).view(1, -1, 1, 1)
        s = torch.tensor(std, device=dev).view(1, -1, 1, 1)
        model.train()
        train_s = eval_s = 0.0
        seen = 0
        epochs = range(start_epoch, recipe.epochs)
        for epoch in progress(epochs, desc="epochs", enabled=show_progress):
            t0 = time.perf_counter()
            gen = torch.Generator().manual_seed(derive_seed(seed, "epoch", epoch))
            total, count = 0.0, 0
            for idx in _batches(n, recipe.batch_size, gen):
                x = _augment(x_all[idx].float().div_(255.0), recipe, gen).to(dev)
                x = (x - m) / s
                y = y_all[idx].to(dev)
                loss = F.cross_entropy(model(x), y)
                if not torch.isfinite(loss):
                    raise TrainingDivergedError(f"The training loss is {loss.item()} at epoch "
                                                f"{epoch + 1}; lower the learning rate.")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                total += float(loss.detach()) * len(idx)
                count += len(idx)
            seen += count
            train_s += time.perf_counter() - t0
            entry = {"epoch": epoch + 1, "loss": total / count,
                     "lr": float(scheduler.get_last_lr()[0])}
            if recipe.eval_every and (epoch + 1) % recipe.eval_every == 0 \
                    and epoch + 1 < recipe.epochs:
                t0 = time.perf_counter()
                entry["test_accuracy"], _ = _evaluate(model, test_images, test_labels, mean,
                                                      std, dev)
                eval_s += time.perf_counter() - t0
            history.append(entry)
            if ckpt is not None:
                _save_checkpoint(ckpt, {"epoch": epoch + 1, "model": model.state_dict(),
                                        "optimizer": optimizer.state_dict(),
                                        "scheduler": scheduler.state_dict(),
                                        "history": history, "fingerprint": fingerprint})
        t0 = time.perf_counter()
        accuracy, preds = _evaluate(model, test_images, test_labels, mean, std, dev)
        eval_s += time.perf_counter() - t0
    history[-1]["test_accuracy"] = accuracy
    per_class = [float((preds[test_labels == c] == c).mean()) if (test_labels == c).any()
                 else math.nan for c in range(n_classes)]
    result = {"accuracy": accuracy, "per_class_accuracy": per_class, "predictions": preds,
              "history": history, "resumed_from_epoch": start_epoch,
              "seconds": {"train": round(train_s, 2), "eval": round(eval_s, 2)},
              "images_per_s": round(seen / train_s, 1) if train_s > 0 else None,
              "n_parameters": int(sum(p.numel() for p in model.parameters())),
              "normalization": {"mean": list(mean), "std": list(std)}, "device": str(dev),
              "steps_per_epoch": steps}
    evaluated = [h for h in history if "test_accuracy" in h]
    if recipe.eval_every:
        best = max(evaluated, key=lambda h: h["test_accuracy"])
        result.update(best_accuracy=best["test_accuracy"], best_epoch=best["epoch"])
    return result

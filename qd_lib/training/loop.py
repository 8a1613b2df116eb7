"""Train an IQA model on a coreset and evaluate it on the fixed test split.

:func:`train_on_coreset` is the one entry point: it checks the coreset against the manifest,
seeds everything, builds the model from the registry, trains it with its configuration's recipe,
evaluates it on the test split with the full inference policy (e.g. MANIQA's crop averaging),
checkpoints after every epoch and resumes from the last checkpoint.

Its steps, one function each: :func:`_resolve_run` (arguments, configuration, rows, device,
fingerprint), :func:`_build_model`, :func:`_build_datasets`, :func:`_build_state` (optimiser,
scheduler, loss scaler), :func:`_resume`, :func:`_run_epochs` (per epoch
:func:`_train_one_epoch`, :func:`_evaluate` when due, :func:`_write_checkpoint`),
:func:`_reported` (the epoch the recipe reports), :func:`_write_outputs` and :func:`_run_info`.

Reproducibility: every random draw is derived from the run seed and the epoch (the data order,
the per-image augmentation, dropout), so a run killed after epoch *k* and resumed ends with the
same metrics as an uninterrupted one on the CPU. CUDA runs are seeded the same way with
deterministic algorithms requested (``warn_only``), and use automatic mixed precision.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from qd_lib.data.manifest import Manifest
from qd_lib.metrics import compute_metrics
from qd_lib.models import build_model, count_parameters, get_config
from qd_lib.models.configs import ModelConfig, Recipe
from qd_lib.paths import display_path
from qd_lib.training.pipelines import make_pipeline
from qd_lib.training.seeding import derive_seed, seeded
from qd_lib.utils.device import resolve_device
from qd_lib.utils.errors import CacheMismatchError, QDError
from qd_lib.utils.io import atomic_write_text
from qd_lib.utils.progress import progress
from qd_lib.utils.validation import check_scalar

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
PREDICTIONS_NAME = "predictions.csv"
CHECKPOINT_FORMAT = 1
REPORTED_METRICS = ("srcc", "plcc", "plcc_logistic", "krcc", "rmse")


class CoresetError(QDError, ValueError):
    """The coreset does not fit the manifest (unknown ids, duplicates, overlap with test)."""


class TrainingDivergedError(QDError, FloatingPointError):
    """The loss or the predictions became NaN or infinite."""


class CheckpointMismatchError(CacheMismatchError):
    """A checkpoint in the run folder belongs to another run."""


@dataclass
class TrainResult:
    """Outcome of :func:`train_on_coreset`.

    Attributes
    ----------
    metrics : dict
        Test metrics of the reported epoch (``recipe.epoch_rule``).
    final : dict
        Test metrics after the last epoch.
    best_on_test : dict or None
        The epoch with the highest SRCC + PLCC on the test split and its metrics (only when
        every epoch was evaluated); for comparison with the official scripts.
    history : list of dict
        Per epoch: train loss, learning rate, seconds and (when evaluated) test metrics.
    predictions : pandas.DataFrame
        ``image_id``, ``mos`` (the target scale), ``pred`` for the reported epoch.
    info : dict
        Everything else a run record needs (sizes, policy, recipe, device, timings, …).
    """

    metrics: dict
    final: dict
    best_on_test: dict | None
    history: list
    predictions: pd.DataFrame
    info: dict = field(default_factory=dict)


# -- data ---------------------------------------------------------------------------------------
def _as_pil(image):
    return image


class _Views(torch.utils.data.Dataset):
    """Images of ``rows`` as training or test views, with their targets."""

    def __init__(self, manifest: Manifest, root: Path, rows: np.ndarray, targets: np.ndarray,
                 pipeline, *, train: bool, seed: int):
        from qd_lib.data.dataset import IQADataset

        self.images = IQADataset(manifest, root, rows=rows, transform=_as_pil)
        self.targets = np.asarray(targets, dtype=np.float32)
        self.pipeline = pipeline
        self.train = train
        self.seed = int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        item = self.images[i]
        img = self.pipeline.load(item["image"])
        if self.train:
            rng = np.random.default_rng(derive_seed(self.seed, "view", self.epoch, item["index"]))
            view = self.pipeline.train_view(img, rng)
        else:
            view = self.pipeline.eval_view(img)
        return view, self.targets[i], i


class _Collate:
    def __init__(self, pipeline, train: bool):
        self.fn = pipeline.collate_train if train else pipeline.collate_eval

    def __call__(self, items):
        views, targets, idx = zip(*items)
        return self.fn(list(views)), torch.tensor(np.asarray(targets)), torch.tensor(idx)


def _loader(dataset, batch_size: int, *, order=None, drop_last=False, num_workers=0,
            pin_memory=False):
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=order, shuffle=False, drop_last=drop_last,
        num_workers=num_workers, collate_fn=_Collate(dataset.pipeline, dataset.train),
        pin_memory=pin_memory)


# -- helpers ------------------------------------------------------------------------------------
def _amp_dtype(device: torch.device, amp) -> torch.dtype | None:
    if amp not in ("auto", True, False):
        raise ValueError(f"The 'amp' parameter must be True, False or 'auto'. Got {amp!r}.")
    if device.type != "cuda" or amp is False:
        return None  # AMP on CUDA only
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _targets(manifest: Manifest, rows: np.ndarray, label_norm: str) -> np.ndarray:
    """Training/test targets of ``rows``: fixed-range normalised MOS or the split min–max."""
    if label_norm == "fixed_range":
        return manifest.normalized_mos()[rows]
    raw = manifest.table["mos"].to_numpy(np.float64)[rows]
    lo, hi = float(raw.min()), float(raw.max())
    if hi == lo:
        out = np.full(len(rows), 0.5)
    else:
        out = (raw - lo) / (hi - lo)
    return out if manifest.info.higher_is_better else 1.0 - out


def _optimizer(recipe: Recipe, params) -> torch.optim.Optimizer:
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum,
                           weight_decay=recipe.weight_decay)


def _scheduler(recipe: Recipe, optimizer, steps_per_epoch: int):
    sched = torch.optim.lr_scheduler
    per_iter = recipe.scheduler_step == "iter"
    if recipe.scheduler == "cosine":
        t_max = recipe.t_max or (recipe.epochs * steps_per_epoch if per_iter else recipe.epochs)
        return sched.CosineAnnealingLR(optimizer, T_max=max(1, int(t_max)),
                                       eta_min=recipe.eta_min)
    if recipe.scheduler == "multistep":
        return sched.MultiStepLR(optimizer, milestones=list(recipe.milestones),
                                 gamma=recipe.gamma)
    return sched.LambdaLR(optimizer, lambda _: 1.0)


def _loss(recipe: Recipe, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    pred = pred.float()
    return F.mse_loss(pred, target) if recipe.loss == "mse" else F.l1_loss(pred, target)


def _save_checkpoint(state: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read a training checkpoint written by :func:`train_on_coreset`."""
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointMismatchError(
            f"{display_path(path)} is not a training checkpoint of format {CHECKPOINT_FORMAT}.")
    return state


def _fingerprint(payload: dict) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _unwrap_dataset(manifest, root):
    """Accept a Manifest, a ProxyBenchmark or a LoadedDataset (they carry their root)."""
    if not isinstance(manifest, Manifest) and hasattr(manifest, "manifest"):
        root = getattr(manifest, "root", None) if root is None else root
        manifest = manifest.manifest
    if not isinstance(manifest, Manifest):
        raise TypeError(f"The 'manifest' parameter must be a Manifest, ProxyBenchmark or "
                        f"LoadedDataset. Got {type(manifest).__name__} instead.")
    if root is None:
        raise ValueError("The 'root' parameter is required: the folder that the manifest's "
                         "'relpath' values are relative to.")
    return manifest, Path(root)


def coreset_rows(manifest: Manifest, image_ids, *, scheme: str, test_part: str = "test"
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Manifest rows of a coreset (ascending) and of the test split, checked.

    Raises
    ------
    CoresetError
        If the coreset is empty, holds duplicates or ids that are not in the manifest, or
        shares images with the test split.
    """
    if isinstance(image_ids, str):
        raise TypeError("The 'image_ids' parameter must be a sequence of image ids, not a str.")
    ids = [str(i) for i in image_ids]
    if not ids:
        raise CoresetError("The coreset is empty: nothing to train on.")
    if len(set(ids)) != len(ids):
        seen, dup = set(), []
        for i in ids:
            if i in seen:
                dup.append(i)
            seen.add(i)
        raise CoresetError(f"The coreset holds {len(dup)} duplicate image id(s), e.g. "
                           f"{dup[:5]}.")
    index = pd.Index(manifest.table["image_id"])
    positions = index.get_indexer(ids)
    missing = [i for i, p in zip(ids, positions) if p < 0]
    if missing:
        raise CoresetError(f"{len(missing)} of {len(ids)} coreset image id(s) are not in "
                           f"manifest {manifest.name!r} (hash {manifest.content_hash[:8]}), "
                           f"e.g. {missing[:5]}. Was the selection made on another dataset or "
                           "manifest version?")
    test_rows = manifest.split_indices(scheme, test_part)
    overlap = np.intersect1d(positions, test_rows)
    if len(overlap):
        names = manifest.table["image_id"].to_numpy()[overlap[:5]].tolist()
        raise CoresetError(f"{len(overlap)} coreset image(s) belong to the {test_part!r} split of "
                           f"scheme {scheme!r}, e.g. {names}: the test split must stay unseen.")
    return np.sort(positions.astype(np.int64)), test_rows


# -- evaluation ---------------------------------------------------------------------------------
@torch.no_grad()
def _predict(model, pipeline, loader, device, amp_dtype, *, desc: str, show_progress):
    model.eval()
    preds, targets, idx = [], [], []
    autocast = (torch.autocast("cuda", dtype=amp_dtype) if amp_dtype is not None
                else nullcontext())
    for batch, target, i in progress(loader, desc=desc, enabled=show_progress, leave=False):
        with autocast:
            out = pipeline.predict(model, batch.to(device, non_blocking=True))
        preds.append(out.float().cpu().numpy())
        targets.append(target.numpy())
        idx.append(i.numpy())
    if not preds:
        return np.empty(0), np.empty(0), np.empty(0, dtype=np.int64)
    return np.concatenate(preds), np.concatenate(targets), np.concatenate(idx)


def _metrics(pred: np.ndarray, target: np.ndarray, epoch: int) -> dict:
    bad = ~np.isfinite(pred)
    if bad.any():
        raise TrainingDivergedError(f"{int(bad.sum())} test prediction(s) are NaN or infinite "
                                    f"after epoch {epoch}.")
    return compute_metrics(pred, target, REPORTED_METRICS)


# -- training: the steps of train_on_coreset ----------------------------------------------------
@dataclass(frozen=True)
class _RunSpec:
    """The resolved, validated inputs of one :func:`train_on_coreset` run."""

    manifest: Manifest
    root: Path
    model: str
    cfg: ModelConfig
    recipe: Recipe
    per_dataset: dict
    train_rows: np.ndarray
    test_rows: np.ndarray
    val_rows: np.ndarray
    seed: int
    device: torch.device
    amp_dtype: torch.dtype | None
    num_workers: int
    pretrained: bool
    fingerprint: str
    ckpt_path: Path | None
    show_progress: bool | None

    @property
    def autocast(self):
        """Autocast context for forward passes (AMP on CUDA only)."""
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast("cuda", dtype=self.amp_dtype)


@dataclass
class _TrainState:
    """Everything that changes while training, and what a checkpoint stores."""

    net: torch.nn.Module
    pipeline: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    history: list = field(default_factory=list)
    best: dict | None = None
    start_epoch: int = 0
    resumed_from: int | None = None
    last: tuple | None = None  # (pred, target, idx) of the latest test evaluation


def _resolve_run(manifest, root, image_ids, *, model, config, scheme, test_part, seed, out_dir,
                 device, amp, pretrained, dataset, num_workers, show_progress,
                 overrides) -> _RunSpec:
    """Check the arguments and resolve configuration, recipe, rows, device and fingerprint.

    Parameters
    ----------
    manifest, root, image_ids : see :func:`train_on_coreset`
        The dataset, its image root and the coreset.
    model, config, scheme, test_part, seed, out_dir, device, amp : see :func:`train_on_coreset`
        The model, split, seed, run folder and device options.
    pretrained, dataset, num_workers, show_progress, overrides : see :func:`train_on_coreset`
        The remaining options.

    Returns
    -------
    _RunSpec

    Raises
    ------
    TypeError, ValueError, CoresetError, UnknownNameError
        On invalid arguments (see :func:`train_on_coreset`).
    """
    manifest, root = _unwrap_dataset(manifest, root)
    if image_ids is None:
        raise TypeError("The 'image_ids' parameter is required (the coreset's image ids).")
    check_scalar(seed, "seed", int, min_val=0)
    cfg = get_config(model, config, **(overrides or {}))
    recipe, per_dataset = cfg.recipe.for_dataset(dataset or manifest.name)
    train_rows, test_rows = coreset_rows(manifest, image_ids, scheme=scheme, test_part=test_part)
    val_rows = np.empty(0, dtype=np.int64)
    if recipe.val_every:
        val_rows = manifest.split_indices(scheme, "val")
        if len(val_rows) == 0:
            logger.warning("val_every=%d but the %r scheme of %s has no val part: no "
                           "validation", recipe.val_every, scheme, manifest.name)
    dev = resolve_device(device)
    amp_dtype = _amp_dtype(dev, amp)
    if num_workers == "auto":
        num_workers = min(8, max(1, (os.cpu_count() or 1) - 1)) if dev.type == "cuda" else 0
    check_scalar(num_workers, "num_workers", int, min_val=0)
    ids = manifest.table["image_id"].to_numpy()
    fingerprint = _fingerprint({
        "model": model, "config": cfg.to_dict(), "recipe": recipe.to_dict(), "seed": seed,
        "manifest_hash": manifest.content_hash, "scheme": scheme, "test_part": test_part,
        "train_ids": sorted(ids[train_rows].tolist()), "pretrained": pretrained})
    return _RunSpec(
        manifest=manifest, root=root, model=model, cfg=cfg, recipe=recipe,
        per_dataset=per_dataset, train_rows=train_rows, test_rows=test_rows,
        val_rows=val_rows, seed=seed,
        device=dev, amp_dtype=amp_dtype, num_workers=num_workers, pretrained=pretrained,
        fingerprint=fingerprint,
        ckpt_path=Path(out_dir) / CHECKPOINT_NAME if out_dir is not None else None,
        show_progress=show_progress)


def _build_model(run: _RunSpec):
    """The model (frozen as the recipe says, on the run's device) and its input pipeline.

    Returns
    -------
    net : torch.nn.Module
    pipeline : ImagePipeline or MusiqPipeline
    """
    net = build_model(run.model, run.cfg, pretrained=run.pretrained)
    if run.recipe.freeze and hasattr(net, "freeze"):
        net.freeze(run.recipe.freeze)
    pipeline = make_pipeline(net, run.cfg.inputs)
    net.to(run.device)
    return net, pipeline


def _build_datasets(run: _RunSpec, pipeline) -> tuple[_Views, _Views, _Views | None, int]:
    """Training, test and (with ``val_every``) validation views with their targets, and the
    optimiser steps per epoch.

    Returns
    -------
    train_ds, test_ds : _Views
    val_ds : _Views or None
    steps_per_epoch : int
        Batches per epoch, capped by ``recipe.max_steps_per_epoch``.

    Raises
    ------
    CoresetError
        If the coreset is smaller than one batch and ``train_drop_last`` is set.
    """
    recipe = run.recipe
    train_targets = _targets(run.manifest, run.train_rows, recipe.label_norm)
    test_targets = _targets(run.manifest, run.test_rows, recipe.label_norm)
    train_ds = _Views(run.manifest, run.root, run.train_rows, train_targets, pipeline,
                      train=True, seed=run.seed)
    test_ds = _Views(run.manifest, run.root, run.test_rows, test_targets, pipeline, train=False,
                     seed=run.seed)
    val_ds = None
    if len(run.val_rows):
        val_ds = _Views(run.manifest, run.root, run.val_rows,
                        _targets(run.manifest, run.val_rows, recipe.label_norm), pipeline,
                        train=False, seed=run.seed)
    n_batches = (len(train_ds) // recipe.batch_size if recipe.train_drop_last
                 else math.ceil(len(train_ds) / recipe.batch_size))
    if n_batches == 0:
        raise CoresetError(f"The coreset ({len(train_ds)} images) is smaller than one batch "
                           f"({recipe.batch_size}) and train_drop_last is set.")
    return train_ds, test_ds, val_ds, min(n_batches, recipe.max_steps_per_epoch or n_batches)


def _build_state(run: _RunSpec, net, pipeline, steps_per_epoch: int) -> _TrainState:
    """Optimiser, learning-rate scheduler and loss scaler of the trainable parameters."""
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = _optimizer(run.recipe, params)
    return _TrainState(
        net=net, pipeline=pipeline, optimizer=optimizer,
        scheduler=_scheduler(run.recipe, optimizer, steps_per_epoch),
        scaler=torch.amp.GradScaler("cuda", enabled=run.amp_dtype == torch.float16))


def _resume(run: _RunSpec, state: _TrainState, *, resume: bool) -> None:
    """Restore ``state`` from the run folder's checkpoint (in place), if asked and present.

    Raises
    ------
    CheckpointMismatchError
        If the checkpoint belongs to another run.
    """
    path = run.ckpt_path
    if path is None or not path.is_file():
        return
    if not resume:
        logger.warning("resume=False: starting over; %s will be overwritten", display_path(path))
        return
    saved = load_checkpoint(path, map_location=run.device)
    if saved["fingerprint"] != run.fingerprint:
        raise CheckpointMismatchError(
            f"{display_path(path)} belongs to another run (different model, configuration, "
            "coreset, seed or data). Delete the run folder or pass resume=False (the runner's "
            "--force) to start over.")
    state.net.load_state_dict(saved["model"])
    state.optimizer.load_state_dict(saved["optimizer"])
    state.scheduler.load_state_dict(saved["scheduler"])
    state.scaler.load_state_dict(saved["scaler"])
    state.history, state.best = saved["history"], saved["best"]
    state.start_epoch = state.resumed_from = int(saved["epoch"])
    if state.start_epoch >= run.recipe.epochs:  # finished: report from the checkpoint
        last = saved["last_predictions"]
        state.last = (np.asarray(last["pred"]), np.asarray(last["target"]),
                      np.asarray(last["idx"]))
    logger.info("resuming %s from epoch %d (%s)", run.model, state.start_epoch,
                display_path(path))


def _diverged(run: _RunSpec, state: _TrainState, loss, epoch: int, step: int
              ) -> TrainingDivergedError:
    """The error for a non-finite loss, saying which checkpoint is kept."""
    path = run.ckpt_path
    last = state.history[-1]["epoch"] if state.history else state.start_epoch
    kept = (f"the checkpoint of epoch {last} is kept at {display_path(path)}"
            if path is not None and path.is_file() else "no checkpoint was written yet")
    return TrainingDivergedError(
        f"Training diverged: the loss is {loss.item()} at epoch {epoch + 1}, step {step + 1} "
        f"(lr {state.optimizer.param_groups[0]['lr']:.3g}); {kept}. Lower the learning rate "
        "or check the data.")


def _train_one_epoch(run: _RunSpec, state: _TrainState, train_ds: _Views, epoch: int,
                     steps_per_epoch: int) -> dict:
    """One epoch (0-based ``epoch``) of seeded training; returns its history record.

    The data order, the views (through ``train_ds.epoch``) and dropout are drawn from seeds
    derived from the run seed and the epoch, so a resumed run repeats an uninterrupted one.

    Raises
    ------
    TrainingDivergedError
        If the loss is NaN or infinite.
    """
    recipe, net = run.recipe, state.net
    net.train()
    torch.manual_seed(derive_seed(run.seed, "epoch", epoch))
    order = np.random.default_rng(derive_seed(run.seed, "order", epoch)).permutation(
        len(train_ds)).tolist()
    train_ds.epoch = epoch
    loader = _loader(train_ds, recipe.batch_size, order=order, drop_last=recipe.train_drop_last,
                     num_workers=run.num_workers, pin_memory=run.device.type == "cuda")
    losses = []
    batches = progress(loader, desc=f"epoch {epoch + 1}", total=steps_per_epoch,
                       enabled=run.show_progress, leave=False)
    for step, (batch, target, _) in enumerate(batches):
        if step >= steps_per_epoch:
            break
        batch = batch.to(run.device, non_blocking=True)
        target = target.to(run.device, non_blocking=True).float()
        with run.autocast:
            pred = net(batch)
        loss = _loss(recipe, pred, target)
        if not torch.isfinite(loss):
            raise _diverged(run, state, loss, epoch, step)
        state.optimizer.zero_grad(set_to_none=True)
        state.scaler.scale(loss).backward()
        state.scaler.step(state.optimizer)
        state.scaler.update()
        if recipe.scheduler_step == "iter":
            state.scheduler.step()
        losses.append(loss.item())
    lr = state.optimizer.param_groups[0]["lr"]
    if recipe.scheduler_step == "epoch":
        state.scheduler.step()
    return {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "lr": lr,
            "steps": len(losses)}


def _evaluate(run: _RunSpec, state: _TrainState, test_loader, epoch: int) -> dict:
    """Test metrics after ``epoch`` (0-based); updates the latest and the best predictions.

    Raises
    ------
    TrainingDivergedError
        If a prediction is NaN or infinite.
    """
    pred, target, idx = _predict(state.net, state.pipeline, test_loader, run.device,
                                 run.amp_dtype, desc="test", show_progress=run.show_progress)
    metrics = _metrics(pred, target, epoch + 1)
    state.last = (pred, target, idx)
    score = metrics["srcc"] + metrics["plcc"]
    if not math.isnan(score) and (state.best is None or score > state.best["score"]):
        state.best = {"epoch": epoch + 1, "score": score, "metrics": metrics,
                      "pred": pred.tolist(), "target": target.tolist(), "idx": idx.tolist()}
    return metrics


def _write_checkpoint(run: _RunSpec, state: _TrainState, epoch: int) -> None:
    """Save ``state`` after ``epoch`` (0-based) into the run folder (atomically)."""
    last = None
    if state.last is not None:
        pred, target, idx = state.last
        last = {"pred": pred.tolist(), "target": target.tolist(), "idx": idx.tolist()}
    _save_checkpoint({
        "format": CHECKPOINT_FORMAT, "fingerprint": run.fingerprint, "epoch": epoch + 1,
        "model": state.net.state_dict(), "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(), "scaler": state.scaler.state_dict(),
        "history": state.history, "best": state.best, "last_predictions": last},
        run.ckpt_path)


def _run_epochs(run: _RunSpec, state: _TrainState, train_ds: _Views, test_ds: _Views,
                steps_per_epoch: int, val_ds: _Views | None = None) -> None:
    """Train from ``state.start_epoch`` to the last epoch: train, evaluate when due (test, and
    validation with ``val_every``), log and checkpoint after every epoch."""
    recipe = run.recipe
    test_loader = _loader(test_ds, recipe.eval_batch_size or recipe.batch_size,
                          drop_last=recipe.eval_drop_last, num_workers=run.num_workers,
                          pin_memory=run.device.type == "cuda")
    val_loader = None if val_ds is None else _loader(
        val_ds, recipe.eval_batch_size or recipe.batch_size, num_workers=run.num_workers,
        pin_memory=run.device.type == "cuda")
    epochs = progress(range(state.start_epoch, recipe.epochs),
                      desc=f"{run.model}/{run.cfg.name}", total=recipe.epochs,
                      initial=state.start_epoch, enabled=run.show_progress)
    for epoch in epochs:
        t_epoch = time.perf_counter()
        record = _train_one_epoch(run, state, train_ds, epoch, steps_per_epoch)
        is_last = epoch + 1 == recipe.epochs
        if is_last or (recipe.eval_every and (epoch + 1) % recipe.eval_every == 0):
            record["test"] = _evaluate(run, state, test_loader, epoch)
        if val_loader is not None and (is_last or (epoch + 1) % recipe.val_every == 0):
            pred, target, _ = _predict(state.net, state.pipeline, val_loader, run.device,
                                       run.amp_dtype, desc="val",
                                       show_progress=run.show_progress)
            record["val"] = _metrics(pred, target, epoch + 1)
        record["seconds"] = round(time.perf_counter() - t_epoch, 3)
        state.history.append(record)
        test_text = (f", test SRCC {record['test']['srcc']:.4f} PLCC "
                     f"{record['test']['plcc']:.4f}" if "test" in record else "")
        logger.info("epoch %d/%d: loss %.5f%s (%.1f s)", epoch + 1, recipe.epochs,
                    record["train_loss"], test_text, record["seconds"])
        if run.ckpt_path is not None:
            _write_checkpoint(run, state, epoch)


def _reported(run: _RunSpec, state: _TrainState) -> tuple[dict, dict | None, int, tuple]:
    """The epoch the run reports (``recipe.epoch_rule``) and its test results.

    Returns
    -------
    metrics : dict
        Test metrics of the reported epoch.
    best_on_test : dict or None
        Best epoch by SRCC + PLCC on the test split and its metrics, when every epoch was
        evaluated.
    reported_epoch : int
    predictions : tuple of ndarray
        ``(pred, target, idx)`` of the reported epoch.
    """
    best = state.best
    best_on_test = None
    if best is not None and all("test" in h for h in state.history):
        best_on_test = {"epoch": best["epoch"], **best["metrics"]}
    if run.recipe.epoch_rule == "best_on_test":
        return (dict(best["metrics"]), best_on_test, best["epoch"],
                (np.asarray(best["pred"]), np.asarray(best["target"]),
                 np.asarray(best["idx"], dtype=np.int64)))
    return dict(state.history[-1]["test"]), best_on_test, run.recipe.epochs, state.last


def _write_outputs(run: _RunSpec, predictions: pd.DataFrame, out_dir, *,
                   keep_checkpoint: bool) -> None:
    """Write ``predictions.csv`` into ``out_dir``; delete the checkpoint unless kept."""
    if out_dir is None:
        return
    atomic_write_text(Path(out_dir) / PREDICTIONS_NAME,
                      predictions.to_csv(index=False, float_format="%.8g"))
    if not keep_checkpoint and run.ckpt_path is not None and run.ckpt_path.is_file():
        run.ckpt_path.unlink()


def _run_info(run: _RunSpec, state: _TrainState, *, reported_epoch: int, n_test: int,
              seconds: float) -> dict:
    """The run record's description of what was trained, how, and where."""
    recipe = run.recipe
    return {
        "model": run.model, "config": run.cfg.name, "config_detail": run.cfg.to_dict(),
        "recipe": recipe.to_dict(), "per_dataset_applied": run.per_dataset,
        "n_train": int(len(run.train_rows)), "n_test": int(n_test),
        "n_test_split": int(len(run.test_rows)), "epochs": recipe.epochs,
        "reported_epoch": reported_epoch, "epoch_rule": recipe.epoch_rule,
        "label_norm": recipe.label_norm, "inference_policy": state.pipeline.describe(),
        "plcc_variant": "raw", "scheduler_step": recipe.scheduler_step,
        "eval_drop_last": recipe.eval_drop_last, "device": str(run.device),
        "amp": str(run.amp_dtype).replace("torch.", "") if run.amp_dtype is not None else None,
        "pretrained": run.pretrained, "weights_loaded": getattr(state.net, "weights_loaded", []),
        "n_parameters": count_parameters(state.net),
        "n_trainable": count_parameters(state.net, trainable_only=True),
        "resumed_from_epoch": state.resumed_from, "seconds": round(seconds, 3),
        "fingerprint": run.fingerprint,
    }


def train_on_coreset(manifest, root=None, image_ids=None, *, model: str = "maniqa",
                     config: str | ModelConfig = "tiny", scheme: str = "paper",
                     test_part: str = "test", seed: int = 0,
                     out_dir: str | os.PathLike | None = None, device: str = "auto",
                     amp: bool | str = "auto", resume: bool = True, pretrained: bool = True,
                     dataset: str | None = None, num_workers: int | str = "auto",
                     keep_checkpoint: bool = True, show_progress: bool | None = None,
                     overrides: dict | None = None) -> TrainResult:
    """Train ``model`` (configuration ``config``) on the images ``image_ids``; test on the split.

    Parameters
    ----------
    manifest : Manifest, ProxyBenchmark or LoadedDataset
        The dataset (the last two carry their image root).
    root : path, optional
        Image root (required with a bare Manifest).
    image_ids : sequence of str
        The coreset, as image ids of the manifest (e.g. ``Selection.image_ids(train_ids)``).
    model, config : str
        Registry names (:func:`qd_lib.models.available_models`, ``available_configs``), or a
        :class:`ModelConfig` as ``config``.
    scheme, test_part : str
        The split scheme and the part evaluated on (``"test"``); the coreset must not overlap
        it.
    seed : int
        The run seed: model initialisation, data order, augmentation and dropout.
    out_dir : path, optional
        Run folder for ``checkpoint.pt`` (after every epoch) and ``predictions.csv``. Without
        it nothing is written and nothing can be resumed.
    device : str, default="auto"
        ``"auto"`` picks CUDA when available.
    amp : bool or "auto", default="auto"
        Mixed precision (bfloat16 where supported, else float16 with loss scaling); CUDA only.
    resume : bool, default=True
        Continue from ``out_dir/checkpoint.pt`` if it exists (it must belong to this run).
    pretrained : bool, default=True
        Load the weights the configuration names (False: random initialisation).
    dataset : str, optional
        Dataset name for the recipe's per-dataset values (default: the manifest's name).
    num_workers : int or "auto"
        DataLoader workers (``auto``: 0 on the CPU, up to 8 with CUDA).
    keep_checkpoint : bool, default=True
        Keep ``checkpoint.pt`` after a successful run (False deletes it at the end).
    show_progress : bool, optional
        Progress bars (``None``: tqdm's default, honouring ``TQDM_DISABLE``).
    overrides : dict, optional
        Configuration overrides (``{"epochs": 1}``, see ``ModelConfig.with_overrides``).

    Returns
    -------
    TrainResult

    Raises
    ------
    CoresetError
        Unknown, duplicate or test-split image ids.
    TrainingDivergedError
        NaN/inf loss or predictions; the checkpoint of the last finished epoch is kept.
    CheckpointMismatchError
        ``out_dir`` holds a checkpoint of a different run (and ``resume``).
    UnknownNameError
        Unknown model, configuration or override.
    """
    t_start = time.perf_counter()
    run = _resolve_run(manifest, root, image_ids, model=model, config=config, scheme=scheme,
                       test_part=test_part, seed=seed, out_dir=out_dir, device=device, amp=amp,
                       pretrained=pretrained, dataset=dataset, num_workers=num_workers,
                       show_progress=show_progress, overrides=overrides)
    with seeded(seed):
        net, pipeline = _build_model(run)
        train_ds, test_ds, val_ds, steps_per_epoch = _build_datasets(run, pipeline)
        state = _build_state(run, net, pipeline, steps_per_epoch)
        _resume(run, state, resume=resume)
        _run_epochs(run, state, train_ds, test_ds, steps_per_epoch, val_ds)

    metrics, best_on_test, reported_epoch, (pred, target, idx) = _reported(run, state)
    test_ids = run.manifest.table["image_id"].to_numpy()[run.test_rows][idx]
    predictions = pd.DataFrame({"image_id": test_ids, "mos": target, "pred": pred})
    _write_outputs(run, predictions, out_dir, keep_checkpoint=keep_checkpoint)
    info = _run_info(run, state, reported_epoch=reported_epoch, n_test=len(idx),
                     seconds=time.perf_counter() - t_start)
    return TrainResult(metrics=metrics, final=dict(state.history[-1]["test"]),
                       best_on_test=best_on_test, history=state.history,
                       predictions=predictions, info=info)


def predict_images(model: torch.nn.Module, manifest, root=None, rows=None, *,
                   batch_size: int = 8, device: str = "auto", amp: bool | str = "auto",
                   show_progress: bool | None = None) -> np.ndarray:
    """Scores of ``rows`` of a manifest with a model built by :func:`qd_lib.models.build_model`,
    using its configuration's test-time policy (e.g. MANIQA's crop averaging)."""
    manifest, root = _unwrap_dataset(manifest, root)
    rows = np.arange(len(manifest)) if rows is None else np.asarray(rows, dtype=np.int64)
    cfg = getattr(model, "config", None)
    if cfg is None:
        raise ValueError("The model has no 'config'; build it with qd_lib.models.build_model.")
    pipeline = make_pipeline(model, cfg.inputs)
    dev = resolve_device(device)
    model.to(dev)
    dataset = _Views(manifest, root, rows, np.zeros(len(rows)), pipeline, train=False, seed=0)
    loader = _loader(dataset, batch_size)
    pred, _, idx = _predict(model, pipeline, loader, dev, _amp_dtype(dev, amp), desc="predict",
                            show_progress=show_progress)
    out = np.empty(len(rows))
    out[idx] = pred
    return out


def describe_recipe(config: ModelConfig, dataset: str | None = None) -> dict[str, Any]:
    """The recipe a run of ``config`` on ``dataset`` uses (per-dataset values applied)."""
    recipe, applied = config.recipe.for_dataset(dataset)
    return {**recipe.to_dict(), "per_dataset_applied": applied}

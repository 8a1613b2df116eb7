"""Coresets as calibration sets for pruning (supplement §F.2, Table 3), run by run.

One *pruning run* is (dataset, calibration method, seed):

1. **Base model.** BaseCNN (configuration ``small`` on the CPU) trained on the whole training
   split with the run seed, once per (dataset, model, configuration, seed): it does not depend
   on the calibration set, so every method of a seed prunes the same network. Kept under
   ``runs/pruning/base/<base_id>/`` (``checkpoint.pt`` of :func:`train_on_coreset`, then
   ``base.json``, written last, with its test metrics).
2. **Calibration set.** The method's coreset of the training split at the dataset's calibration
   fraction (10 %; 5 % for KADID-10K and KonIQ-10k, as in the table), selected by
   :func:`qd_lib.selection.records.select_on_dataset` from the same feature set as everywhere
   else, with the run seed; saved as a selection record.
3. **Rate-distortion pruning.** The calibration images in the model's test-time input format;
   the output-distortion curves of every prunable layer (:func:`distortion_curves`); the
   per-layer allocation of the target sparsity (:func:`allocate_sparsity`, default 20 % of the
   prunable weights); unstructured magnitude masks.
4. **Evaluation.** Optionally a short fine-tune on the calibration set (``finetune_epochs``,
   0 by default as in the table); the remaining FLOPs fraction (formula, checked against a
   measured forward pass) and SRCC/PLCC on the fixed test split.

The method ``"uniform"`` is the calibration-free reference: the same sparsity in every layer,
no calibration set. Each run writes ``runs/pruning/<run_id>/record.json`` atomically (with a
sha256), last; a finished run with the same spec hash is skipped, a failed one is recorded and
redone next time. :func:`run_pruning_grid` runs many and keeps going past failures.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
import traceback
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from qd_lib.paths import display_path, runs_dir
from qd_lib.pruning.allocation import allocate_sparsity, uniform_allocation
from qd_lib.pruning.distortion import DistortionCurves, check_levels, distortion_curves
from qd_lib.pruning.flops import layer_macs, measure_flops, remaining_flops_fraction
from qd_lib.pruning.masks import apply_masks, magnitude_masks, mask_sparsity, prunable_layers
from qd_lib.utils.io import read_verified_json, write_verified_json
from qd_lib.utils.validation import check_scalar

logger = logging.getLogger(__name__)

__all__ = ["CALIBRATION_FRACTIONS", "DEFAULT_LEVELS", "PruningSpec", "calibration_fraction",
           "load_records", "pruning_dir", "run_pruning", "run_pruning_grid", "train_base"]

SCHEMA_VERSION = 1
RECORD = "record.json"
BASE_RECORD = "base.json"
#: Reference method without a calibration set: the same sparsity in every layer.
UNIFORM = "uniform"
#: Calibration fraction per dataset (Table 3: 5 % for KADID-10K and KonIQ-10k, else 10 %).
CALIBRATION_FRACTIONS = {"kadid10k": 0.05, "koniq10k": 0.05}
DEFAULT_FRACTION = 0.10
#: Sparsity grid of the distortion curves.
DEFAULT_LEVELS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def calibration_fraction(dataset: str) -> float:
    """The table's calibration fraction for ``dataset`` (registry names and aliases)."""
    key = str(dataset)
    try:
        from qd_lib.data.builders import resolve_name

        key = resolve_name(dataset)
    except Exception:  # a proxy benchmark or an unknown name: the default
        pass
    return CALIBRATION_FRACTIONS.get(key, DEFAULT_FRACTION)


def pruning_dir(runs_root=None) -> Path:
    """``<runs>/pruning``: where pruning runs and their base models live."""
    return (Path(runs_root) if runs_root is not None else runs_dir()) / "pruning"


def _hash(payload: dict, n: int = 6) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:n]


@dataclass(frozen=True)
class PruningSpec:
    """One pruning run (see the module docstring).

    Parameters
    ----------
    dataset : str
        A dataset name for :func:`qd_lib.data.open_dataset` (``proxy-default``, ...).
    method : str
        A selection method choosing the calibration set, or ``"uniform"`` (no calibration).
    seed : int
        Seed of the base model's training and of the selection.
    fraction : float, optional
        Calibration fraction (default :func:`calibration_fraction`).
    model, config : str
        The base model (``basecnn``) and its configuration (``small`` on the CPU).
    train_overrides : dict
        Configuration overrides of the base model (e.g. ``{"epochs": 1}``).
    target : float
        Global sparsity: the share of the prunable weights that is pruned.
    levels : tuple of float
        Sparsity grid of the distortion curves (must contain ``target``).
    early_stop : bool
        Stop a curve above the target once it exceeds the uniform allocation's distortion.
    finetune_epochs : int
        Epochs of fine-tuning on the calibration set after pruning (0: none).
    feature_set : str
        Feature set of the selection.
    method_options : dict
        Options of the selection method.
    batch_size : int
        Calibration and test images per forward pass.
    scheme : str, optional
        Split scheme (default: the dataset's).
    """

    dataset: str
    method: str
    seed: int = 0
    fraction: float | None = None
    model: str = "basecnn"
    config: str = "small"
    train_overrides: dict = field(default_factory=dict)
    target: float = 0.2
    levels: tuple = DEFAULT_LEVELS
    early_stop: bool = True
    finetune_epochs: int = 0
    feature_set: str = "offline"
    method_options: dict = field(default_factory=dict)
    batch_size: int = 128
    scheme: str | None = None

    def __post_init__(self):
        check_scalar(self.seed, "seed", int, min_val=0)
        check_scalar(self.target, "target", (int, float), min_val=0.0, max_val=1.0,
                     closed="right")
        check_scalar(self.finetune_epochs, "finetune_epochs", int, min_val=0)
        check_scalar(self.batch_size, "batch_size", int, min_val=1)
        levels = tuple(float(v) for v in check_levels(self.levels))
        if not any(abs(v - self.target) < 1e-12 for v in levels):
            raise ValueError(f"The 'levels' parameter must contain the target {self.target!r}. "
                             f"Got {list(levels)!r} instead.")
        object.__setattr__(self, "levels", levels)
        object.__setattr__(self, "target", float(self.target))
        if self.fraction is None:
            object.__setattr__(self, "fraction", calibration_fraction(self.dataset))
        check_scalar(self.fraction, "fraction", float, min_val=0.0, max_val=1.0,
                     closed="right")
        if self.method != UNIFORM:
            from qd_lib.selection import available_methods

            if self.method not in available_methods():
                from qd_lib.utils.errors import UnknownNameError

                raise UnknownNameError("calibration method", self.method,
                                       [*available_methods(), UNIFORM])

    def to_dict(self) -> dict:
        out = asdict(self)
        out["levels"] = list(self.levels)
        return out

    @property
    def spec_hash(self) -> str:
        return _hash(self.to_dict(), 12)

    def base_dict(self) -> dict:
        """What the base model depends on."""
        return {"dataset": self.dataset, "model": self.model, "config": self.config,
                "seed": self.seed, "train_overrides": dict(self.train_overrides),
                "scheme": self.scheme}

    @property
    def base_id(self) -> str:
        return (f"{self.dataset}__{self.model}-{self.config}__full__s{self.seed}__"
                f"{_hash(self.base_dict())}")

    @property
    def run_id(self) -> str:
        frac = "none" if self.method == UNIFORM else f"{self.fraction:.2f}"
        return (f"{self.dataset}__{self.model}-{self.config}__{self.method}__f{frac}__"
                f"sp{self.target:.2f}__s{self.seed}__{self.spec_hash[:6]}")


# -- inputs -------------------------------------------------------------------------------------
def _pipeline(model):
    from qd_lib.training import make_pipeline

    return make_pipeline(model, model.config.inputs)


def eval_views(dataset, rows: np.ndarray, pipeline) -> torch.Tensor:
    """Test-time views of ``rows`` (the pipeline's crop policy): ``(n, K, 3, h, w)``."""
    from qd_lib.data.dataset import IQADataset

    images = IQADataset(dataset.manifest, dataset.root, rows=rows, transform=lambda im: im)
    views = [pipeline.eval_view(pipeline.load(images[i]["image"])) for i in range(len(images))]
    return pipeline.collate_eval(views)


def predict_views(model, views: torch.Tensor, batch_size: int = 128) -> np.ndarray:
    """Scores of ``(n, K, ...)`` views: the model's output averaged over the K crops (the views
    are moved to the model's device batch by batch)."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for i in range(0, len(views), batch_size):
            batch = views[i:i + batch_size].to(device)
            b, k = batch.shape[:2]
            scores = model(batch.reshape(b * k, *batch.shape[2:])).reshape(b, k).mean(1)
            out.append(scores.float().cpu())
    return torch.cat(out).numpy() if out else np.empty(0)


@contextmanager
def _exact_float32(device: torch.device):
    """No TF32 in CUDA convolutions and matrix products (the distortions at small sparsities
    are far below TF32's rounding); restored afterwards."""
    if device.type != "cuda":
        yield
        return
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _metrics(pred: np.ndarray, target: np.ndarray) -> dict:
    from qd_lib.metrics import compute_metrics

    return compute_metrics(pred, target, ("srcc", "plcc", "krcc"))


# -- the base model -----------------------------------------------------------------------------
def train_base(spec: PruningSpec, dataset, *, runs_root=None, device: str = "auto"):
    """The base model of ``spec``: BaseCNN trained on the whole training split (resumed or
    reused when its folder has it). Returns ``(model, base_record)``, the model on the CPU."""
    from qd_lib.models import build_model
    from qd_lib.training import load_checkpoint, train_on_coreset

    folder = pruning_dir(runs_root) / "base" / spec.base_id
    record_path = folder / BASE_RECORD
    model = build_model(spec.model, spec.config, **spec.train_overrides)
    if record_path.is_file():
        record = read_verified_json(record_path, "pruning base record")
        if record.get("base") == spec.base_dict():
            model.load_state_dict(load_checkpoint(folder / "checkpoint.pt",
                                                  map_location="cpu")["model"])
            logger.info("%s: base model reused", spec.base_id)
            return model.eval(), record
    rows = dataset.indices("train", spec.scheme)
    ids = dataset.manifest.table["image_id"].to_numpy()[rows].tolist()
    started = time.perf_counter()
    result = train_on_coreset(dataset, image_ids=ids, model=spec.model, config=spec.config,
                              scheme=spec.scheme or dataset.scheme, seed=spec.seed,
                              out_dir=folder, device=device, overrides=spec.train_overrides,
                              keep_checkpoint=True)
    model.load_state_dict(load_checkpoint(folder / "checkpoint.pt", map_location="cpu")["model"])
    record = {"schema_version": SCHEMA_VERSION, "base_id": spec.base_id,
              "base": spec.base_dict(), "metrics": result.metrics,
              "n_train": int(len(rows)), "n_test": int(result.info["n_test"]),
              "seconds": round(time.perf_counter() - started, 3),
              "config_detail": result.info["config_detail"],
              "inference_policy": result.info["inference_policy"],
              "weights_loaded": result.info["weights_loaded"], "device": result.info["device"],
              "amp": result.info["amp"], "history": result.history}
    write_verified_json(record_path, record)
    return model.eval(), record


# -- one run ------------------------------------------------------------------------------------
def _record_path(spec: PruningSpec, runs_root) -> Path:
    return pruning_dir(runs_root) / spec.run_id / RECORD


def _finished(spec: PruningSpec, runs_root) -> dict | None:
    path = _record_path(spec, runs_root)
    if not path.is_file():
        return None
    record = read_verified_json(path, "pruning record")
    if record.get("spec_hash") == spec.spec_hash and record.get("status") == "ok":
        return record
    return None


def _finetune(model, dataset, rows: np.ndarray, spec: PruningSpec) -> dict:
    """Fine-tune the masked ``model`` on ``rows`` (training views, MSE on normalised MOS)."""
    from qd_lib.data.dataset import IQADataset
    from qd_lib.training import derive_seed

    pipeline = _pipeline(model)
    recipe = model.config.recipe
    device = next(model.parameters()).device
    images = IQADataset(dataset.manifest, dataset.root, rows=rows, transform=lambda im: im)
    loaded = [pipeline.load(images[i]["image"]) for i in range(len(images))]
    targets = torch.tensor(dataset.manifest.normalized_mos()[rows], dtype=torch.float32)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad],
                                 lr=recipe.lr * 0.1)
    losses = []
    for epoch in range(spec.finetune_epochs):
        model.train()
        rng = np.random.default_rng(derive_seed(spec.seed, "prune-finetune", epoch))
        order = rng.permutation(len(loaded))
        for start in range(0, len(order), recipe.batch_size):
            idx = order[start:start + recipe.batch_size]
            batch = torch.stack([pipeline.train_view(loaded[i], rng) for i in idx])
            loss = torch.nn.functional.mse_loss(model(batch.to(device)).float(),
                                                targets[idx].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
    model.eval()
    return {"epochs": spec.finetune_epochs, "lr": recipe.lr * 0.1,
            "final_loss": losses[-1] if losses else None}


class _Cache:
    """Per-process reuse across runs: datasets, base models, and per base model the test views,
    the dense FLOPs per layer and the unpruned test metrics."""

    def __init__(self):
        self.datasets: dict = {}
        self.bases: dict = {}
        self.tests: dict = {}

    def dataset(self, name: str):
        if name not in self.datasets:
            from qd_lib.data import open_dataset

            self.datasets[name] = open_dataset(name)
        return self.datasets[name]


def calibration_set(spec: PruningSpec, dataset) -> dict:
    """The calibration set of ``spec``: the saved selection record of the method at the
    calibration fraction, training split, feature set and seed when one exists (default
    options), else a new selection, saved. Returns ``image_ids`` (pick order), ``rows``
    (manifest rows in that order) and the provenance."""
    from qd_lib.selection.records import find_selection, save_selection, select_on_dataset

    found = None
    if not spec.method_options and spec.scheme in (None, dataset.scheme):
        found = find_selection(dataset, spec.method, spec.fraction,
                               feature_set=spec.feature_set, seed=spec.seed)
    if found is not None:
        path, record = found
        ids = [str(i) for i in record["image_ids"]]
        info = {"reused": True, "budget_rule": record.get("budget_rule"),
                "features": record.get("features"), "selection_seconds": record.get("seconds")}
    else:
        chosen = select_on_dataset(dataset, spec.method, spec.fraction,
                                   feature_set=spec.feature_set, seed=spec.seed,
                                   options=spec.method_options or None, scheme=spec.scheme)
        path = save_selection(chosen, dataset, feature_set=spec.feature_set)
        ids = [str(i) for i in chosen.image_ids]
        info = {"reused": False, "budget_rule": chosen.budget_rule,
                "features": chosen.features, "selection_seconds": round(chosen.seconds, 3)}
    index = {str(v): i for i, v in enumerate(dataset.manifest.table["image_id"].to_numpy())}
    rows = np.array([index[i] for i in ids], dtype=np.int64)
    return {"image_ids": ids, "rows": rows, "n": len(ids), "fraction": spec.fraction,
            "selection_record": display_path(path),
            "ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(), **info}


def run_pruning(spec: PruningSpec, *, runs_root=None, force: bool = False,
                cache: _Cache | None = None, device: str = "auto",
                show_progress: bool | None = None) -> dict:
    """Run (or reuse) one pruning run; return its record (``skipped`` set when reused).

    ``device`` (``auto``: CUDA when available) runs training, the distortion measurement and
    the evaluation there (float32 without TF32 for the last two). Raises whatever the run
    raises; :func:`run_pruning_grid` records failures instead.
    """
    if not force:
        done = _finished(spec, runs_root)
        if done is not None:
            logger.info("%s: finished earlier, skipped", spec.run_id)
            return {**done, "skipped": True}
    from qd_lib.runner.spec import environment_record
    from qd_lib.utils.device import resolve_device

    cache = cache or _Cache()
    started = time.perf_counter()
    dev = resolve_device(device)
    dataset = cache.dataset(spec.dataset)
    scheme = spec.scheme or dataset.scheme
    if spec.base_id not in cache.bases:
        model, base_record = train_base(spec, dataset, runs_root=runs_root, device=str(dev))
        cache.bases[spec.base_id] = (model.to(dev).eval(), base_record)
    base_model, base_record = cache.bases[spec.base_id]
    pipeline = _pipeline(base_model)
    test_rows = dataset.indices("test", scheme)
    test_mos = dataset.manifest.normalized_mos()[test_rows]
    with _exact_float32(dev):
        if spec.base_id not in cache.tests:
            views = eval_views(dataset, test_rows, pipeline)
            cache.tests[spec.base_id] = (views, layer_macs(base_model, views[:1, 0].to(dev)),
                                         _metrics(predict_views(base_model, views,
                                                                spec.batch_size), test_mos))
        test_views, macs, dense_metrics = cache.tests[spec.base_id]
        example = test_views[:1, 0].to(dev)
        layer_names = list(prunable_layers(base_model))

        curves = None
        if spec.method == UNIFORM:
            n_weights = [m.weight.numel() for m in prunable_layers(base_model).values()]
            allocation = uniform_allocation(layer_names, n_weights, spec.target)
            calibration = {"method": UNIFORM, "n": 0}
        else:
            calibration = {"method": spec.method, **calibration_set(spec, dataset)}
            cal_views = eval_views(dataset, calibration["rows"], pipeline)
            inputs = cal_views.reshape(-1, *cal_views.shape[2:]).to(dev)
            curves = distortion_curves(base_model, inputs, spec.levels,
                                       target=spec.target if spec.early_stop else None,
                                       batch_size=spec.batch_size,
                                       show_progress=show_progress)
            allocation = allocate_sparsity(curves, spec.target)
        cal_rows = np.asarray(calibration.pop("rows", []), dtype=np.int64)

        pruned = copy.deepcopy(base_model)
        apply_masks(pruned, magnitude_masks(pruned, allocation.counts_by_layer()))
        finetune = None
        if spec.finetune_epochs and len(cal_rows):
            finetune = _finetune(pruned, dataset, cal_rows, spec)
        sparsity = mask_sparsity(pruned)
        flops = remaining_flops_fraction(macs, allocation.kept_by_layer())
        measured = measure_flops(pruned, example)
        measured_fraction = sum(measured.values()) / sum(macs.values())
        metrics = _metrics(predict_views(pruned, test_views, spec.batch_size), test_mos)
    record = {
        "schema_version": SCHEMA_VERSION, "status": "ok", "run_id": spec.run_id,
        "spec_hash": spec.spec_hash, "spec": spec.to_dict(), "dataset": spec.dataset,
        "method": spec.method, "seed": spec.seed, "fraction": spec.fraction,
        "target": spec.target, "proxy": bool(dataset.manifest.info.proxy),
        "manifest_hash": dataset.manifest.content_hash, "scheme": scheme,
        "test_split_hash": dataset.manifest.split_hash(scheme, "test"),
        "n_test": int(len(test_rows)), "base_id": spec.base_id,
        "base_metrics": base_record["metrics"], "dense_metrics": dense_metrics,
        "srcc": metrics["srcc"], "plcc": metrics["plcc"], "metrics": metrics,
        "flops": flops, "flops_measured": measured_fraction,
        "dense_macs": int(sum(macs.values())), "sparsity": sparsity["sparsity"],
        "pruned_weights": sparsity["pruned"], "prunable_weights": sparsity["n"],
        "allocation": allocation.to_record(), "calibration": calibration,
        "curves": curves.to_record() if curves is not None else None,
        "rd_seconds": round(curves.seconds, 3) if curves is not None else None,
        "finetune": finetune, "model": spec.model, "config": spec.config,
        "inference_policy": pipeline.describe(), "device": str(dev),
        "torch_threads": torch.get_num_threads(),
        "seconds": round(time.perf_counter() - started, 3), **environment_record()}
    path = write_verified_json(_record_path(spec, runs_root), record)
    logger.info("%s: FLOPs %.4f, SRCC %.4f, PLCC %.4f (dense %.4f / %.4f) -> %s", spec.run_id,
                flops, metrics["srcc"], metrics["plcc"], dense_metrics["srcc"],
                dense_metrics["plcc"], display_path(path))
    return record


def run_pruning_grid(specs: Iterable[PruningSpec], *, runs_root=None, force: bool = False,
                     keep_going: bool = True, device: str = "auto",
                     show_progress: bool | None = None) -> dict:
    """Run many pruning runs in order (base models and test views reused in memory).

    A failed run is recorded (``status: failed`` with the error) and, with ``keep_going``,
    the others carry on. Returns ``{"counts": {...}, "records": [...]}``.
    """
    cache = _Cache()
    counts = {"ok": 0, "skipped": 0, "failed": 0}
    records = []
    for spec in specs:
        try:
            record = run_pruning(spec, runs_root=runs_root, force=force, cache=cache,
                                 device=device, show_progress=show_progress)
            counts["skipped" if record.get("skipped") else "ok"] += 1
        except Exception as exc:
            if not keep_going:
                raise
            logger.error("%s failed: %s: %s", spec.run_id, type(exc).__name__, exc)
            record = {"schema_version": SCHEMA_VERSION, "status": "failed",
                      "run_id": spec.run_id, "spec_hash": spec.spec_hash,
                      "spec": spec.to_dict(),
                      "error": {"type": type(exc).__name__, "message": str(exc)[:4000],
                                "traceback": "".join(traceback.format_exception(exc))[-4000:]}}
            write_verified_json(_record_path(spec, runs_root), record)
            counts["failed"] += 1
        records.append(record)
    return {"counts": counts, "records": records}


def grid_specs(dataset: str, methods: Sequence[str], seeds: Sequence[int], **options
               ) -> list[PruningSpec]:
    """Specs of ``methods × seeds`` on one dataset, seed-major (a seed's base model is trained
    once, then every method prunes it)."""
    return [PruningSpec(dataset=dataset, method=m, seed=int(s), **options)
            for s in seeds for m in methods]


def load_records(runs_root=None, *, status: str | None = "ok",
                 run_ids: Sequence[str] | None = None, folder=None) -> list[dict]:
    """The pruning run records under ``<runs>/pruning`` (optionally only ``run_ids``), or,
    with ``folder``, those saved as ``<folder>/<run_id>.json`` (the copies a table keeps
    beside itself, see :func:`qd_lib.pruning.tables.save_table3`). Each record's sha256 is
    checked."""
    if folder is not None:
        paths = sorted(Path(folder).glob("*.json"))
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"No pruning records folder at {display_path(folder)}.")
    else:
        paths = sorted(pruning_dir(runs_root).glob(f"*/{RECORD}"))
    wanted = set(run_ids) if run_ids is not None else None
    out = []
    for path in paths:
        run_id = path.stem if folder is not None else path.parent.name
        if wanted is not None and run_id not in wanted:
            continue
        record = read_verified_json(path, "pruning record")
        if status is None or record.get("status") == status:
            out.append(record)
    return out


def curves_of(record: dict) -> DistortionCurves | None:
    """The distortion curves stored in a run record."""
    return DistortionCurves.from_record(record["curves"]) if record.get("curves") else None

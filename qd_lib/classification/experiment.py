"""The classification coreset experiment (supplement §F.3): grid → selection → training → record.

A :class:`ClassificationGrid` (a YAML file under ``notebooks/sweeps/cifar10/`` or the notebook's
parameters) names a dataset, methods, fractions, seeds and one training recipe. Each cell is a
:class:`ClassificationRun`; :func:`run_grid` computes the selection features once, then for
every run writes ``runs_dir()/cifar10/<run_id>/``:

``params.json``
    The run's spec, its hash and the environment (versions, git commit), written first.
``selection.json``
    The coreset (training-split indices in pick order), its class counts, the method's resolved
    options and diagnostics, the feature provenance (digest-checked; reused on resume).
``checkpoint.pt``
    The last finished epoch, while training; removed when the run is done.
``metrics.json``
    Written last: ``status`` (``ok``, or ``failed`` with the error), the test accuracy after the
    last epoch, per-class accuracy, the data's train/test hashes and whether it is a stand-in,
    timings, device. A run whose ``metrics.json`` says ``ok`` with the same ``spec_hash`` is
    skipped; a failed one is retried the next time; an interrupted one resumes from its
    checkpoint. Every file is written atomically.

How the IQA baselines are adapted to classification (the selectors bin MOS into classes; here
the classes are given):

* Moderate, Contextual Diversity, and the class balancing of Herding and k-Center receive the
  **class labels** in the ``mos`` slot with ``n_bins = n_classes`` equal-width bins, which maps
  class ``c`` to bin ``c`` exactly (checked before every selection). So Moderate measures
  distances to each class's median centre, and CD runs k-Center under the symmetric KL inside
  each class (DeepCore's CD with per-class balance).
* Herding and k-Center run with ``balance=True`` (per-class budgets by largest remainder), as
  DeepCore's ``--balance`` defaults to true for the numbers Table 4 quotes.
* Random and PGCS are label-free and unchanged; Q-Diverse is label-free and uses the
  supplement's CIFAR-10 setting (``preset="cifar10"``: l = 500, b = 1500, γ = 0.7).
* The baselines' embedding is MobileNet-V2's (:mod:`qd_lib.classification.features`);
  CD's probabilities come from a cross-fitted linear probe (label-using).
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import numbers
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from qd_lib.classification.features import EXPERIMENT_DIR, selection_features
from qd_lib.classification.training import TrainRecipe, channel_stats, train_classifier
from qd_lib.data.budget import coreset_size, format_fraction
from qd_lib.data.classification import (
    CLASS_COUNTS,
    CLASSIFICATION_SETS,
    ImageClassificationSet,
    open_classification_set,
)
from qd_lib.paths import display_path, repo_root, runs_dir
from qd_lib.utils.errors import QDError, UnknownNameError
from qd_lib.utils.io import read_verified_json, write_verified_json
from qd_lib.utils.validation import check_option, check_scalar

logger = logging.getLogger(__name__)

__all__ = ["ALL_METHODS", "ClassificationGrid", "ClassificationRun", "GridReport",
           "check_class_bins", "default_method_options", "grid_runs", "load_grid", "run_grid",
           "run_one", "run_status"]

SCHEMA_VERSION = 1
PARAMS, SELECTION, CHECKPOINT, METRICS = ("params.json", "selection.json", "checkpoint.pt",
                                          "metrics.json")
#: Table 4's selectors plus Random and PGCS, in the order tables show them.
ALL_METHODS = ("random", "herding", "kcenter", "contextual_diversity", "moderate", "pgcs",
               "qdiverse")
_USES_CLASSES = {"herding", "kcenter", "contextual_diversity", "moderate"}


class ClassificationRunError(QDError, ValueError):
    """A grid, run record or selection does not fit the classification experiment."""


def default_method_options(method: str, n_classes: int) -> dict:
    """The options a method runs with in the classification experiment (module docstring)."""
    if method == "qdiverse":
        return {"preset": "cifar10"}
    if method in ("herding", "kcenter"):
        return {"balance": True, "n_bins": int(n_classes), "binning": "equal_width"}
    if method in ("contextual_diversity", "moderate"):
        return {"n_bins": int(n_classes), "binning": "equal_width"}
    return {}


def check_class_bins(labels: np.ndarray, n_classes: int) -> None:
    """Check that equal-width MOS binning of the class labels with ``n_bins = n_classes``
    reproduces the classes (every class present, bin ``c`` = class ``c``).

    Raises
    ------
    ClassificationRunError
        When a class is missing from ``labels`` (the bins would then merge classes).
    """
    from qd_lib.selection.binning import mos_bins

    labels = np.asarray(labels, dtype=np.int64)
    bins = mos_bins(labels.astype(np.float64), n_bins=n_classes, scheme="equal_width")
    if bins.n_bins != n_classes or not np.array_equal(bins.labels, labels):
        raise ClassificationRunError(
            f"Class labels cannot stand in for MOS bins here: equal-width binning into "
            f"{n_classes} bins gives {bins.n_bins} bins that differ from the classes (a class "
            f"is missing? counts {np.bincount(labels, minlength=n_classes).tolist()}).")


def _canonical(obj):
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, (np.generic,)):
        return obj.item()
    return obj


@dataclass(frozen=True)
class ClassificationRun:
    """One cell of the grid: a dataset, a method, a fraction, a seed and a recipe.

    Attributes
    ----------
    dataset, method : str
    fraction : float
    seed : int
        Seeds the selection (stochastic methods) and, through derived seeds, the training.
    recipe : TrainRecipe
    options : dict
        The method's options (:func:`default_method_options` merged with the grid's).
    features : dict
        Feature settings (``input_size``).
    """

    dataset: str
    method: str
    fraction: float
    seed: int
    recipe: TrainRecipe
    options: dict = field(default_factory=dict)
    features: dict = field(default_factory=lambda: {"input_size": 224})

    def spec(self) -> dict:
        """The canonical description of the run (what its hash covers)."""
        return _canonical({"schema_version": SCHEMA_VERSION, "experiment": EXPERIMENT_DIR,
                           "dataset": self.dataset, "method": self.method,
                           "fraction": float(self.fraction), "seed": int(self.seed),
                           "recipe": self.recipe.to_dict(), "options": dict(self.options),
                           "features": dict(self.features)})

    @property
    def spec_hash(self) -> str:
        text = json.dumps(self.spec(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def settings_hash(self) -> str:
        """Hash of the spec without its seed: the runs of one table cell share it."""
        spec = self.spec()
        spec.pop("seed")
        text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def run_id(self) -> str:
        return (f"{self.dataset}__{self.method}__f{format_fraction(self.fraction)}__"
                f"s{self.seed}__{self.spec_hash[:6]}")


@dataclass(frozen=True)
class ClassificationGrid:
    """Dataset × methods × fractions × seeds with one training recipe.

    Attributes
    ----------
    name : str
        Names the table (``figures/cifar10/<name>_table4.*``).
    dataset : {"cifar10", "digits"}
    methods : tuple of str
    fractions : tuple of float
    seeds : tuple of int
    recipe : TrainRecipe
    method_options : dict of str to dict
        Per-method options merged over :func:`default_method_options`.
    input_size : int
        MobileNet-V2 input side for the selection features.
    description : str
    """

    name: str
    dataset: str
    methods: tuple[str, ...]
    fractions: tuple[float, ...]
    seeds: tuple[int, ...]
    recipe: TrainRecipe
    method_options: dict = field(default_factory=dict)
    input_size: int = 224
    description: str = ""

    def runs(self, n_classes: int | None = None) -> list[ClassificationRun]:
        """Every run of the grid, methods outermost, then fractions, then seeds
        (``n_classes``: default the dataset's registered class count)."""
        n_classes = CLASS_COUNTS[self.dataset] if n_classes is None else n_classes
        out = []
        for method in self.methods:
            options = {**default_method_options(method, n_classes),
                       **dict(self.method_options.get(method, {}))}
            for fraction in self.fractions:
                for seed in self.seeds:
                    out.append(ClassificationRun(self.dataset, method, float(fraction),
                                                 int(seed), self.recipe, options,
                                                 {"input_size": int(self.input_size)}))
        return out

    def to_dict(self) -> dict:
        return {"name": self.name, "dataset": self.dataset, "methods": list(self.methods),
                "fractions": list(self.fractions), "seeds": list(self.seeds),
                "recipe": self.recipe.to_dict(), "method_options": dict(self.method_options),
                "input_size": self.input_size, "description": self.description}


_GRID_KEYS = {"name", "dataset", "methods", "fractions", "seeds", "recipe", "method_options",
              "input_size", "description"}


def load_grid(source=None, **overrides) -> ClassificationGrid:
    """A grid from a YAML file (relative paths also from the repository root) or a mapping.

    Parameters
    ----------
    source : path or mapping, optional
        ``name``, ``dataset``, ``methods`` (or ``"all"``), ``fractions``, ``seeds``,
        ``recipe`` (a named recipe ``"paper"``/``"cpu"`` or a mapping of
        :class:`TrainRecipe` fields, optionally with ``base: <named recipe>``),
        ``method_options``, ``input_size``, ``description``.
    **overrides
        Top-level keys replacing the source's.

    Raises
    ------
    ValueError, TypeError
        Unknown keys, datasets, methods or recipe fields; fractions outside (0, 1].
    """
    import yaml

    from qd_lib.classification.training import RECIPES
    from qd_lib.selection import available_methods

    if source is None:
        data = {}
    elif isinstance(source, Mapping):
        data = copy.deepcopy(dict(source))
    else:
        path = Path(source)
        if not path.is_file() and (repo_root() / path).is_file():
            path = repo_root() / path
        if not path.is_file():
            raise FileNotFoundError(f"Grid file {source!s} not found.")
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        data.setdefault("name", path.stem)
    data.update(overrides)
    unknown = sorted(set(data) - _GRID_KEYS)
    if unknown:
        raise TypeError(f"Unknown grid key(s) {unknown}. Valid keys: {sorted(_GRID_KEYS)}.")
    dataset = data.get("dataset", "digits")
    if dataset not in CLASSIFICATION_SETS:
        raise UnknownNameError("classification set", dataset, CLASSIFICATION_SETS)
    methods = data.get("methods", "all")
    methods = tuple(ALL_METHODS if methods == "all" else
                    ([methods] if isinstance(methods, str) else methods))
    for method in methods:
        check_option(method, "methods", available_methods())
    fractions = tuple(float(f) for f in data.get("fractions", (0.1, 0.3)))
    for f in fractions:
        format_fraction(f)  # validates (0, 1]
    seeds = tuple(int(s) for s in data.get("seeds", (0, 1, 2)))
    recipe_spec = data.get("recipe", "paper")
    if isinstance(recipe_spec, str):
        check_option(recipe_spec, "recipe", sorted(RECIPES))
        recipe = RECIPES[recipe_spec]
    elif isinstance(recipe_spec, TrainRecipe):
        recipe = recipe_spec
    else:
        recipe_spec = dict(recipe_spec)
        base = recipe_spec.pop("base", "paper")
        check_option(base, "recipe base", sorted(RECIPES))
        recipe = TrainRecipe.from_mapping(RECIPES[base].to_dict(), **recipe_spec)
    options = {str(k): dict(v or {}) for k, v in dict(data.get("method_options") or {}).items()}
    if not methods or not fractions or not seeds:
        raise ValueError("A grid needs at least one method, fraction and seed. Got "
                         f"methods={list(methods)}, fractions={list(fractions)}, "
                         f"seeds={list(seeds)}.")
    return ClassificationGrid(name=str(data.get("name", dataset)), dataset=dataset,
                              methods=methods, fractions=fractions, seeds=seeds, recipe=recipe,
                              method_options=options,
                              input_size=int(data.get("input_size", 224)),
                              description=str(data.get("description", "")))


# -- one run -----------------------------------------------------------------------------------
def _experiment_root(runs_root=None) -> Path:
    return (Path(runs_root) if runs_root is not None else runs_dir()) / EXPERIMENT_DIR


def run_status(run: ClassificationRun, runs_root=None) -> str:
    """``"done"`` (ok record with this spec hash), ``"failed"``, ``"partial"`` or ``"new"``."""
    folder = _experiment_root(runs_root) / run.run_id
    metrics = folder / METRICS
    if metrics.is_file():
        try:
            record = read_verified_json(metrics, "run record")
        except Exception:  # damaged: run again
            return "partial"
        if record.get("spec_hash") == run.spec_hash:
            return "done" if record.get("status") == "ok" else "failed"
    return "partial" if folder.is_dir() else "new"


def _select(run: ClassificationRun, data: ImageClassificationSet, feats, folder: Path) -> dict:
    from qd_lib.selection import get_method, select

    path = folder / SELECTION
    if path.is_file():
        try:
            record = read_verified_json(path, "selection record")
            if record.get("spec_hash") == run.spec_hash:
                return record
        except QDError as exc:
            logger.warning("%s", exc)
    spec = get_method(run.method)
    budget = coreset_size(data.n_train, run.fraction)
    uses_classes = run.method in _USES_CLASSES and (
        run.method in ("contextual_diversity", "moderate") or run.options.get("balance"))
    if uses_classes:
        check_class_bins(data.train_labels, data.n_classes)
    t0 = time.perf_counter()
    sel = select(run.method, feats.inputs(spec.inputs), budget,
                 mos=data.train_labels.astype(np.float64) if uses_classes else None,
                 seed=run.seed, **run.options)
    seconds = time.perf_counter() - t0
    picked = data.train_labels[sel.indices]
    record = {"schema_version": SCHEMA_VERSION, "run_id": run.run_id,
              "spec_hash": run.spec_hash, **sel.to_record(),
              "class_counts": np.bincount(picked, minlength=data.n_classes).tolist(),
              "labels_used": uses_classes,
              "labels_as_bins": (f"class labels in the mos slot, n_bins={data.n_classes} "
                                 "equal-width (bin c = class c, checked)") if uses_classes
              else None,
              "budget_rule": f"floor({run.fraction} x {data.n_train})",
              "features": feats.describe(), "seconds": round(seconds, 3)}
    write_verified_json(path, record)
    return record


def run_one(run: ClassificationRun, data: ImageClassificationSet, feats, *, runs_root=None,
            device: str = "auto", force: bool = False, raise_errors: bool = False,
            keep_checkpoint: bool = False, show_progress: bool | None = None) -> dict:
    """Select, train, evaluate and record one run (skipped when already done).

    Parameters
    ----------
    run : ClassificationRun
    data : ImageClassificationSet
        The run's dataset (``data.name == run.dataset``).
    feats : ClassificationFeatures
        From :func:`qd_lib.classification.features.selection_features`.
    runs_root : path, optional
        Default :func:`qd_lib.paths.runs_dir`; records go to ``cifar10/<run_id>/`` under it.
    device : str, default="auto"
    force : bool, default=False
        Run again even if finished.
    raise_errors : bool, default=False
        Re-raise a failure after recording it (default: record and return).
    keep_checkpoint : bool, default=False

    Returns
    -------
    dict
        The ``metrics.json`` record, with ``skipped: True`` when it was already done.
    """
    from qd_lib.runner.spec import environment_record

    if data.name != run.dataset:
        raise ValueError(f"The 'data' parameter holds {data.name!r}; the run is on "
                         f"{run.dataset!r}.")
    folder = _experiment_root(runs_root) / run.run_id
    if not force and run_status(run, runs_root) == "done":
        record = read_verified_json(folder / METRICS, "run record")
        return {**record, "skipped": True}
    if force and (folder / METRICS).exists():
        (folder / METRICS).unlink()
    env = environment_record()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    if not (folder / PARAMS).is_file() or force:
        write_verified_json(folder / PARAMS, {"schema_version": SCHEMA_VERSION,
                                              "run_id": run.run_id, "spec_hash": run.spec_hash,
                                              "spec": run.spec(), "started_at": started, **env})
    base = {"schema_version": SCHEMA_VERSION, "run_id": run.run_id, "spec_hash": run.spec_hash,
            "settings_hash": run.settings_hash, "spec": run.spec(),
            "dataset": data.name, "dataset_title": data.title, "stand_in": data.stand_in,
            "method": run.method, "fraction": run.fraction, "seed": run.seed,
            "train_hash": data.train_hash, "test_hash": data.test_hash,
            "n_train_full": data.n_train, "n_test": data.n_test, "recipe": run.recipe.to_dict(),
            "model": "resnet18_cifar", "metric": "top-1 test accuracy after the last epoch",
            **env}
    t_start = time.perf_counter()
    try:
        selection = _select(run, data, feats, folder)
        indices = np.asarray(selection["indices"], dtype=np.int64)
        fingerprint = hashlib.sha256(f"{run.spec_hash}:{indices.tobytes().hex()}".encode()
                                     ).hexdigest()
        result = train_classifier(
            data.train_images[indices], data.train_labels[indices], data.test_images,
            data.test_labels, n_classes=data.n_classes, recipe=run.recipe,
            seed=_train_seed(run), device=device,
            normalization=channel_stats(data.train_images), checkpoint=folder / CHECKPOINT,
            fingerprint=fingerprint, show_progress=show_progress)
        record = {**base, "status": "ok", "accuracy": result["accuracy"],
                  "per_class_accuracy": result["per_class_accuracy"],
                  "n_coreset": int(len(indices)), "class_counts": selection["class_counts"],
                  "best_on_test": ({"accuracy": result["best_accuracy"],
                                    "epoch": result["best_epoch"],
                                    "note": "epoch chosen on the test set (DeepCore's report); "
                                            "optimistic"} if "best_accuracy" in result
                                   else None),
                  "history": result["history"], "resumed_from_epoch":
                      result["resumed_from_epoch"],
                  "n_parameters": result["n_parameters"],
                  "normalization": result["normalization"], "device": result["device"],
                  "images_per_s": result["images_per_s"],
                  "seconds": {"selection": selection["seconds"], **result["seconds"],
                              "total": round(time.perf_counter() - t_start, 2)},
                  "predictions_sha256_16": hashlib.sha256(result["predictions"].tobytes())
                  .hexdigest()[:16],
                  "finished_at": datetime.now(UTC).isoformat(timespec="seconds")}
        write_verified_json(folder / METRICS, record)
        if not keep_checkpoint and (folder / CHECKPOINT).exists():
            (folder / CHECKPOINT).unlink()
        logger.info("%s: accuracy %.4f (%s s)", run.run_id, result["accuracy"],
                    record["seconds"]["total"])
        return record
    except Exception as exc:
        record = {**base, "status": "failed",
                  "error": {"type": type(exc).__name__, "message": str(exc),
                            "traceback": traceback.format_exc(limit=8)},
                  "seconds": {"total": round(time.perf_counter() - t_start, 2)}}
        write_verified_json(folder / METRICS, record)
        logger.error("%s failed: %s: %s", run.run_id, type(exc).__name__, exc)
        if raise_errors:
            raise
        return record


def _train_seed(run: ClassificationRun) -> int:
    from qd_lib.training.seeding import derive_seed

    return derive_seed(run.seed, "train") % (2 ** 31)


# -- the grid ----------------------------------------------------------------------------------
@dataclass
class GridReport:
    """What :func:`run_grid` did.

    Attributes
    ----------
    grid : ClassificationGrid
    records : list of dict
        One ``metrics.json`` record per run, in grid order.
    counts : dict
        ``ran``, ``skipped``, ``failed``.
    seconds : float
    features : dict
        The feature cache's description.
    """

    grid: ClassificationGrid
    records: list
    counts: dict
    seconds: float
    features: dict

    def failed(self) -> list[str]:
        return [r["run_id"] for r in self.records if r.get("status") != "ok"]


def run_grid(grid, *, runs_root=None, device: str = "auto", force: bool = False,
             dry_run: bool = False, raise_errors: bool = False, data=None,
             torch_threads: int | None = None, show_progress: bool | None = None
             ) -> GridReport:
    """Run every cell of ``grid`` that is not finished; keep going past failures.

    Parameters
    ----------
    grid : ClassificationGrid, path or mapping
        See :func:`load_grid`.
    runs_root : path, optional
    device : str, default="auto"
    force : bool, default=False
    dry_run : bool, default=False
        Only report each run's status and budget (no features, no training).
    raise_errors : bool, default=False
    data : ImageClassificationSet, optional
        The loaded dataset (default: :func:`open_classification_set` of ``grid.dataset``).
    torch_threads : int, optional
        torch's intra-op threads while the grid runs (restored afterwards). On a CPU shared
        with other jobs, 1 was measured 5-10x faster than 2 for this network (two cores,
        busy machine); ``None`` leaves torch's setting.

    Returns
    -------
    GridReport
    """
    grid = grid if isinstance(grid, ClassificationGrid) else load_grid(grid)
    data = data if data is not None else open_classification_set(grid.dataset)
    runs = grid.runs(data.n_classes)
    t0 = time.perf_counter()
    if dry_run:
        records = [{"run_id": r.run_id, "status": run_status(r, runs_root),
                    "budget": coreset_size(data.n_train, r.fraction)} for r in runs]
        counts = {s: sum(r["status"] == s for r in records)
                  for s in ("done", "failed", "partial", "new")}
        return GridReport(grid, records, counts, 0.0, {})
    import torch

    previous_threads = torch.get_num_threads()
    if torch_threads is not None:
        check_scalar(torch_threads, "torch_threads", numbers.Integral, min_val=1)
        torch.set_num_threads(int(torch_threads))
    try:
        feats = selection_features(data, device=device, input_size=grid.input_size,
                                   runs_root=runs_root, show_progress=show_progress)
        records, counts = [], {"ran": 0, "skipped": 0, "failed": 0}
        for i, run in enumerate(runs, 1):
            logger.info("[%d/%d] %s", i, len(runs), run.run_id)
            record = run_one(run, data, feats, runs_root=runs_root, device=device, force=force,
                             raise_errors=raise_errors, show_progress=show_progress)
            key = "skipped" if record.get("skipped") else (
                "ran" if record["status"] == "ok" else "failed")
            counts[key] += 1
            records.append(record)
    finally:
        torch.set_num_threads(previous_threads)
    seconds = time.perf_counter() - t0
    logger.info("grid %s: %s in %.0f s (runs under %s)", grid.name, counts, seconds,
                display_path(_experiment_root(runs_root)))
    return GridReport(grid, records, counts, seconds, feats.describe())


def grid_runs(grid, *, runs_root=None, status: str | None = "ok") -> list[dict]:
    """The records of ``grid``'s runs that exist (``status`` ``"ok"`` by default), in grid
    order; runs without a record are logged, never invented."""
    grid = grid if isinstance(grid, ClassificationGrid) else load_grid(grid)
    root = _experiment_root(runs_root)
    out, missing = [], []
    for run in grid.runs():
        path = root / run.run_id / METRICS
        if not path.is_file():
            missing.append(run.run_id)
            continue
        record = read_verified_json(path, "run record")
        if record.get("spec_hash") != run.spec_hash:
            missing.append(run.run_id)
        elif status is None or record.get("status") == status:
            out.append(record)
    if missing:
        logger.info("%d run(s) of grid %s have no finished record yet", len(missing), grid.name)
    return out


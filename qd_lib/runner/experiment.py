"""One experiment: select a coreset, train on it, evaluate on the fixed test split, record.

:func:`run_experiment` writes ``runs/<run_id>/``:

``params.json``
    The spec, its hash, the environment (versions, git commit), written first.
``selection.json``
    The coreset as image ids in pick order, the method's resolved options and diagnostics, the
    feature source, the budget rule.
``checkpoint.pt``
    The last finished epoch (training resumes from it); removed after success unless kept.
``predictions.csv``
    Test predictions of the reported epoch.
``metrics.json``
    Written last: ``status`` (``ok`` or ``failed`` with the error), the metrics, ``n_test``,
    the test-split hash, the inference policy, the epoch rule, the PLCC variant, versions and git
    commit. A run counts as finished when its ``metrics.json`` says ``ok`` with the same
    ``spec_hash``.

Every file is written atomically. A failure inside the run is recorded (``status: failed``) and
returned, never raised, unless ``raise_errors=True``; an interrupted run (no ``metrics.json``)
resumes from its checkpoint the next time.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from qd_lib.paths import display_path, runs_dir
from qd_lib.runner.spec import FULL_METHOD, SCHEMA_VERSION, RunSpec, environment_record
from qd_lib.utils.errors import QDError
from qd_lib.utils.io import (
    atomic_write_json,
    read_verified_json,
    to_jsonable,
    write_verified_json,
)

logger = logging.getLogger(__name__)

PARAMS = "params.json"
SELECTION = "selection.json"
METRICS = "metrics.json"
_PARAMS_KEYS = ("schema_version", "run_id", "spec_hash", "spec", "sweep", "versions",
                "git_commit", "git_dirty", "machine", "started_at")


class RunRecordError(QDError, ValueError):
    """A run record is malformed, from an incompatible schema version, or mixes test splits."""


def read_record(path: str | Path) -> dict:
    """Read a ``metrics.json`` (or ``params.json``) and check its ``schema_version``.

    Raises
    ------
    RunRecordError
        If the file is not valid JSON or was written by an incompatible version.
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RunRecordError(f"Run record {display_path(path)} cannot be read: {exc}") from None
    if not isinstance(record, dict):
        raise RunRecordError(f"Run record {display_path(path)} is not a JSON object.")
    version = record.get("schema_version")
    if version != SCHEMA_VERSION:
        raise RunRecordError(
            f"Run folder {display_path(path.parent)} was written with schema_version "
            f"{version!r}; this workbench reads version {SCHEMA_VERSION}. Re-run it (sweep "
            "--force) or move it out of the runs folder.")
    return record


def run_status(spec: RunSpec, runs_root: str | Path | None = None) -> str:
    """``"done"`` (ok, same spec hash), ``"failed"``, ``"stale"`` (another spec hash),
    ``"partial"`` (started, no metrics) or ``"new"``."""
    run_dir = Path(runs_root or runs_dir()) / spec.run_id
    metrics = run_dir / METRICS
    if metrics.is_file():
        record = read_record(metrics)
        if record.get("spec_hash") != spec.spec_hash:
            return "stale"
        return "done" if record.get("status") == "ok" else "failed"
    if run_dir.is_dir():
        return "partial"
    return "legacy" if _legacy_folder(spec, Path(runs_root or runs_dir())) else "new"


def _legacy_folder(spec: RunSpec, root: Path) -> tuple[Path, str] | None:
    for run_id, digest in spec.legacy_run_ids().items():
        folder = root / run_id
        if folder.is_dir():
            return folder, digest
    return None


def migrate_legacy_run(spec: RunSpec, runs_root: str | Path | None = None) -> Path | None:
    """Move a run folder written under this run's earlier id to its current id.

    Earlier versions hashed the dataset as given (``kadid`` and ``kadid10k`` were two runs) and
    named feature sets in another vocabulary (``{source: encoders, set: offline}``); such a
    folder holds this very run. Its records get the current run id, spec hash and spec, and a
    warning says what was moved. Returns the new folder, or ``None`` when there was nothing to
    move (or the current folder already exists).
    """
    root = Path(runs_root) if runs_root is not None else runs_dir()
    target = root / spec.run_id
    found = _legacy_folder(spec, root)
    if found is None or target.exists():
        return None
    folder, old_hash = found
    for name in (PARAMS, SELECTION, METRICS):
        path = folder / name
        if not path.is_file():
            continue
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("spec_hash") not in (None, old_hash):
            return None  # another run's folder after all: leave it alone
        record.update({"run_id": spec.run_id, "spec_hash": spec.spec_hash,
                       "migrated_from": folder.name})
        if "spec" in record:
            record["spec"] = spec.to_dict()
        if "dataset" in record:
            record["dataset"] = spec.dataset
        atomic_write_json(path, record)
    folder.rename(target)
    logger.warning("moved run folder %s to %s: dataset names are canonical (%r) and feature "
                   "sets use one vocabulary now; the run is the same", display_path(folder),
                   display_path(target), spec.dataset)
    return target


def run_header(spec: RunSpec) -> dict:
    """The fields every record of a run starts with: schema, ids, spec, sweep, environment
    (versions, git commit) and what the run is (dataset, method, fraction, seed, model)."""
    return {"schema_version": SCHEMA_VERSION, "run_id": spec.run_id,
            "spec_hash": spec.spec_hash, "spec": spec.to_dict(), "sweep": spec.sweep,
            **environment_record(), "dataset": spec.dataset, "scheme": spec.scheme,
            "method": spec.method, "fraction": spec.fraction, "seed": spec.seed,
            "model": spec.model, "config": spec.config}


def start_run(spec: RunSpec, runs_root=None, *, force: bool = False) -> tuple[Path, dict | None]:
    """Set up a run's folder: migrate a legacy folder, honour ``force``, and return
    ``(run_dir, finished)`` where ``finished`` is the ``ok`` record of an identical finished
    run (``skipped`` set) or ``None``. A failed or stale ``metrics.json`` is removed, so it can
    never pass for this run's result."""
    root = Path(runs_root) if runs_root is not None else runs_dir()
    run_dir = root / spec.run_id
    migrate_legacy_run(spec, root)
    if force and run_dir.exists():
        shutil.rmtree(run_dir)
    metrics_path = run_dir / METRICS
    if metrics_path.is_file():
        record = read_record(metrics_path)  # raises on an incompatible version
        if record.get("spec_hash") == spec.spec_hash and record.get("status") == "ok":
            logger.info("%s: finished earlier, skipped", spec.run_id)
            return run_dir, {**record, "skipped": True}
        metrics_path.unlink()  # a failed or stale run is redone (resuming its checkpoint)
    return run_dir, None


def failure_fields(exc: BaseException) -> dict:
    """``status`` and ``error`` (type, message, traceback tail) of a failed run's record."""
    return {"status": "failed", "error": {
        "type": type(exc).__name__, "message": str(exc)[:4000],
        "traceback": "".join(traceback.format_exception(exc))[-4000:]}}


def open_run_dataset(spec: RunSpec):
    """The run's dataset through :func:`qd_lib.data.open_dataset` (a proxy preset is built on
    first use)."""
    from qd_lib.data import open_dataset

    return open_dataset(spec.dataset, root=spec.root, scheme=spec.scheme)


def select_coreset(spec: RunSpec, loaded) -> dict:
    """The selection record of ``spec`` on a loaded dataset (image ids in pick order), through
    :func:`qd_lib.selection.records.select_on_dataset`: the same coreset notebooks 03, 05 and
    06 and the explorer get for the same settings."""
    from qd_lib.selection.records import select_on_dataset

    manifest = loaded.manifest
    train_rows = manifest.split_indices(spec.scheme, "train")
    if spec.method == FULL_METHOD:
        ids = manifest.table["image_id"].to_numpy()[train_rows]
        return {"method": FULL_METHOD, "budget": int(len(train_rows)),
                "n_train_split": int(len(train_rows)), "fraction": 1.0, "seed": spec.seed,
                "image_ids": ids.tolist(), "params": {}, "info": {}, "features": None,
                "budget_rule": "the whole training split", "seconds": 0.0}
    t0 = time.perf_counter()
    result = select_on_dataset(loaded, spec.method, spec.fraction, feature_set=spec.features,
                               seed=spec.seed, options=spec.method_params, scheme=spec.scheme)
    record = result.selection.to_record()
    record.pop("indices")
    record.update({"image_ids": result.image_ids, "n_train_split": int(len(train_rows)),
                   "fraction": spec.fraction, "features": result.features,
                   "budget_rule": result.budget_rule,
                   "seconds": round(time.perf_counter() - t0, 3)})
    return record


def _read_selection(path: Path, spec: RunSpec) -> dict | None:
    """The run's stored coreset when it belongs to this spec (checksum verified: training never
    reads an edited coreset), else ``None``."""
    if not path.is_file():
        return None
    stored = read_verified_json(path, "run selection record")
    return stored if stored.get("spec_hash") == spec.spec_hash else None


def earlier_attempt_seconds(history, resumed_from_epoch) -> float:
    """Seconds that earlier, interrupted attempts of a resumed run spent on the epochs it
    resumed after (their times as the checkpoint's history kept them; 0 for a run trained in
    one go). The time lost in the epoch that was cut off is not counted: it is redone."""
    if not resumed_from_epoch:
        return 0.0
    return float(sum(entry.get("seconds") or 0.0 for entry in history or []
                     if isinstance(entry, dict)
                     and (entry.get("epoch") or 0) <= int(resumed_from_epoch)))


def run_experiment(spec: RunSpec, *, runs_root: str | Path | None = None, force: bool = False,
                   device: str = "auto", keep_checkpoint: bool = False,
                   raise_errors: bool = False, show_progress: bool | None = None,
                   torch_threads: int | None = None) -> dict:
    """Run (or skip) one experiment and return its ``metrics.json`` record.

    Parameters
    ----------
    spec : RunSpec
        What to run.
    runs_root : path, optional
        Parent of the run folder (default :func:`qd_lib.paths.runs_dir`).
    force : bool, default=False
        Delete the run folder and start over, even if it finished.
    device : str, default="auto"
        Training device (``auto``: CUDA when present).
    keep_checkpoint : bool, default=False
        Keep ``checkpoint.pt`` after a successful run.
    raise_errors : bool, default=False
        Re-raise a failure after recording it (notebooks); sweeps record and carry on.
    show_progress : bool, optional
        Progress bars.
    torch_threads : int, optional
        ``torch.set_num_threads`` for this run (Dask workers sharing a machine).

    Returns
    -------
    dict
        The record as stored in ``metrics.json`` (``status`` ``ok`` or ``failed``; NaN stored
        as null); ``skipped`` is true when an identical finished run was found and nothing was
        computed.

    Raises
    ------
    RunRecordError
        If the run folder holds a record of an incompatible schema version (and not ``force``).
    """
    run_dir, finished = start_run(spec, runs_root, force=force)
    if finished is not None:
        return finished
    metrics_path = run_dir / METRICS
    if torch_threads is not None:
        import torch

        torch.set_num_threads(int(torch_threads))
    started = datetime.now(UTC).isoformat(timespec="seconds")
    record = {**run_header(spec), "started_at": started}
    atomic_write_json(run_dir / PARAMS, {k: record[k] for k in _PARAMS_KEYS if k in record})
    t0 = time.perf_counter()
    try:
        from qd_lib.training import train_on_coreset

        loaded = open_run_dataset(spec)
        manifest = loaded.manifest
        record.update({"manifest_hash": manifest.content_hash, "proxy": manifest.info.proxy,
                       "test_split_hash": manifest.split_hash(spec.scheme, "test")})
        selection_path = run_dir / SELECTION
        selection = _read_selection(selection_path, spec)  # a resumed run reuses its coreset
        if selection is None:
            selection = select_coreset(spec, loaded)
            selection.update({"schema_version": SCHEMA_VERSION, "run_id": spec.run_id,
                              "spec_hash": spec.spec_hash, "dataset": spec.dataset,
                              "manifest_hash": manifest.content_hash})
            write_verified_json(selection_path, selection)
        result = train_on_coreset(loaded, image_ids=selection["image_ids"], model=spec.model,
                                  config=spec.config, scheme=spec.scheme, seed=spec.seed,
                                  out_dir=run_dir, device=device, resume=True,
                                  keep_checkpoint=keep_checkpoint, show_progress=show_progress,
                                  overrides=spec.overrides)
        info = result.info
        record.update({
            "status": "ok", "error": None,
            "metrics": result.metrics, "final": result.final,
            "best_on_test": result.best_on_test, "history": result.history,
            "n_train_split": selection["n_train_split"], "budget": selection["budget"],
            "n_train": info["n_train"], "n_test": info["n_test"],
            "n_test_split": info["n_test_split"], "inference_policy": info["inference_policy"],
            "epoch_rule": info["epoch_rule"], "reported_epoch": info["reported_epoch"],
            "plcc_variant": info["plcc_variant"], "label_norm": info["label_norm"],
            "scheduler_step": info["scheduler_step"], "eval_drop_last": info["eval_drop_last"],
            "recipe": info["recipe"], "per_dataset_applied": info["per_dataset_applied"],
            "features": selection.get("features"), "selection_params": selection.get("params"),
            "selection_seconds": selection.get("seconds"), "train_seconds": info["seconds"],
            "resumed_from_epoch": info["resumed_from_epoch"], "device": info["device"],
            "amp": info["amp"], "pretrained": info["pretrained"],
            "weights_loaded": info["weights_loaded"], "n_parameters": info["n_parameters"]})
        error = None
    except Exception as exc:  # recorded, so the sweep can carry on
        error = exc
        record.update(failure_fields(exc))
        logger.error("%s failed: %s: %s", spec.run_id, type(exc).__name__, exc)
    # a resumed run counts its earlier attempts' finished epochs: "seconds" is what the run
    # took, "attempt_seconds" what this call took
    record["attempt_seconds"] = round(time.perf_counter() - t0, 3)
    record["seconds"] = round(record["attempt_seconds"] + earlier_attempt_seconds(
        record.get("history"), record.get("resumed_from_epoch")), 3)
    record["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    # 1, 5 and 15-minute load averages at the end: a time is comparable with another only
    # when the machine was as busy (another sweep or a CI run beside it slows both)
    record["load_average"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    atomic_write_json(metrics_path, to_jsonable(record, nan_to_none=True))
    if record["status"] == "ok":
        logger.info("%s: SRCC %.4f, PLCC %.4f on %d test images (%.0f s)", spec.run_id,
                    record["metrics"]["srcc"], record["metrics"]["plcc"], record["n_test"],
                    record["seconds"])
    if error is not None and raise_errors:
        raise error
    return {**read_record(metrics_path), "skipped": False}  # exactly what a later read sees

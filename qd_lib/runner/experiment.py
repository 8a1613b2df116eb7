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
import shutil
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from qd_lib.paths import display_path, runs_dir
from qd_lib.runner.spec import FULL_METHOD, SCHEMA_VERSION, RunSpec, environment_record
from qd_lib.utils.errors import QDError
from qd_lib.utils.io import atomic_write_json, to_jsonable

logger = logging.getLogger(__name__)

PARAMS = "params.json"
SELECTION = "selection.json"
METRICS = "metrics.json"


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
    return "partial" if run_dir.is_dir() else "new"


def _load_dataset(spec: RunSpec):
    from qd_lib.data import load_manifest
    from qd_lib.data.catalog import PROXY_PREFIX, PROXY_PRESETS

    name = str(spec.dataset)
    if name.lower().startswith(PROXY_PREFIX) and name.lower()[len(PROXY_PREFIX):] in \
            PROXY_PRESETS and spec.root is None:
        from qd_lib.data.synthetic import build_proxy_benchmark

        build_proxy_benchmark(name.lower()[len(PROXY_PREFIX):])  # reused when already built
    return load_manifest(name, root=spec.root, scheme=spec.scheme)


def select_coreset(spec: RunSpec, loaded) -> dict:
    """The selection record of ``spec`` on a loaded dataset (image ids in pick order)."""
    from qd_lib.data import coreset_size
    from qd_lib.runner.features import get_features
    from qd_lib.selection import get_method, select

    manifest = loaded.manifest
    train_rows = manifest.split_indices(spec.scheme, "train")
    ids = manifest.table["image_id"].to_numpy()[train_rows]
    t0 = time.perf_counter()
    if spec.method == FULL_METHOD:
        return {"method": FULL_METHOD, "budget": int(len(train_rows)),
                "n_train_split": int(len(train_rows)), "fraction": 1.0, "seed": spec.seed,
                "image_ids": ids.tolist(), "params": {}, "info": {}, "features": None,
                "budget_rule": "the whole training split", "seconds": 0.0}
    budget = coreset_size(len(train_rows), spec.fraction)
    method = get_method(spec.method)
    features, described = get_features(manifest, loaded.root, train_rows, spec.features,
                                       method.inputs, seed=spec.seed)
    mos = manifest.normalized_mos()[train_rows]
    selection = select(spec.method, features, budget, mos=mos, seed=spec.seed,
                       **spec.method_params)
    record = selection.to_record()
    record.pop("indices")
    record.update({"image_ids": selection.image_ids(ids), "n_train_split": int(len(train_rows)),
                   "fraction": spec.fraction, "features": described,
                   "budget_rule": f"floor({spec.fraction} x {len(train_rows)}) = {budget}",
                   "seconds": round(time.perf_counter() - t0, 3)})
    return record


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
    root = Path(runs_root) if runs_root is not None else runs_dir()
    run_dir = root / spec.run_id
    if force and run_dir.exists():
        shutil.rmtree(run_dir)
    metrics_path = run_dir / METRICS
    if metrics_path.is_file():
        record = read_record(metrics_path)  # raises on an incompatible version
        if record.get("spec_hash") == spec.spec_hash and record.get("status") == "ok":
            logger.info("%s: finished earlier, skipped", spec.run_id)
            return {**record, "skipped": True}
        metrics_path.unlink()  # a failed or stale run is redone (resuming its checkpoint)
    if torch_threads is not None:
        import torch

        torch.set_num_threads(int(torch_threads))
    env = environment_record()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    base = {"schema_version": SCHEMA_VERSION, "run_id": spec.run_id,
            "spec_hash": spec.spec_hash, "spec": spec.to_dict(), "sweep": spec.sweep, **env}
    atomic_write_json(run_dir / PARAMS, {**base, "started_at": started})
    t0 = time.perf_counter()
    record = {**base, "dataset": spec.dataset, "scheme": spec.scheme, "method": spec.method,
              "fraction": spec.fraction, "seed": spec.seed, "model": spec.model,
              "config": spec.config, "started_at": started}
    try:
        from qd_lib.training import train_on_coreset

        loaded = _load_dataset(spec)
        manifest = loaded.manifest
        record.update({"manifest_hash": manifest.content_hash, "proxy": manifest.info.proxy,
                       "test_split_hash": manifest.split_hash(spec.scheme, "test")})
        selection_path = run_dir / SELECTION
        selection = None
        if selection_path.is_file():  # a resumed run reuses its coreset
            stored = json.loads(selection_path.read_text())
            if stored.get("spec_hash") == spec.spec_hash:
                selection = stored
        if selection is None:
            selection = select_coreset(spec, loaded)
            selection.update({"schema_version": SCHEMA_VERSION, "run_id": spec.run_id,
                              "spec_hash": spec.spec_hash, "dataset": spec.dataset,
                              "manifest_hash": manifest.content_hash})
            atomic_write_json(selection_path, selection)
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
        record.update({"status": "failed", "error": {
            "type": type(exc).__name__, "message": str(exc),
            "traceback": traceback.format_exc(limit=8)[-4000:]}})
        logger.error("%s failed: %s: %s", spec.run_id, type(exc).__name__, exc)
    record["seconds"] = round(time.perf_counter() - t0, 3)
    record["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    atomic_write_json(metrics_path, to_jsonable(record, nan_to_none=True))
    if record["status"] == "ok":
        logger.info("%s: SRCC %.4f, PLCC %.4f on %d test images (%.0f s)", spec.run_id,
                    record["metrics"]["srcc"], record["metrics"]["plcc"], record["n_test"],
                    record["seconds"])
    if error is not None and raise_errors:
        raise error
    return {**read_record(metrics_path), "skipped": False}  # exactly what a later read sees

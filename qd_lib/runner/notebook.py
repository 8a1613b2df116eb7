"""Runs executed as notebooks: one papermill execution of ``04_train_iqa.ipynb`` per run.

:func:`run_notebook` passes the whole :class:`~qd_lib.runner.spec.RunSpec` to the notebook's
``SPEC`` parameter, so the notebook runs exactly what :func:`~qd_lib.runner.run_experiment`
would, and keeps the executed notebook beside the record::

    runs/<run_id>/run.ipynb        # every cell's output: what a reader opens to see the run

The notebook is written to ``run.partial.ipynb`` while it executes and renamed when the kernel
finishes (also after a failure, so the traceback is kept). A sweep killed at any moment leaves a
run folder without ``metrics.json``; the next sweep runs it again from its last checkpoint and
replaces the partial notebook.
"""
from __future__ import annotations

import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path

from qd_lib.paths import display_path, repo_root, runs_dir
from qd_lib.runner.experiment import (
    METRICS,
    PARAMS,
    failure_fields,
    read_record,
    run_header,
    start_run,
)
from qd_lib.runner.spec import RunSpec
from qd_lib.utils.errors import UnknownNameError
from qd_lib.utils.io import atomic_write_json, to_jsonable

logger = logging.getLogger(__name__)

EXECUTED_NOTEBOOK = "run.ipynb"
PARTIAL_NOTEBOOK = "run.partial.ipynb"  # while the kernel runs
EXECUTORS = ("papermill", "python")


NOTEBOOK_DEFAULTS = {"dataset": "proxy-tiny", "model": "maniqa", "config": "tiny",
                     "method": "random", "fraction": 0.5, "seed": 0, "epochs": None,
                     "features": "pixels"}
"""What notebook 04 runs when neither ``SPEC`` nor a single-run parameter is given."""


def notebook_run_spec(spec=None, **single_run) -> RunSpec:
    """The :class:`RunSpec` notebook 04 runs: ``spec`` (a whole run spec as a dict, as the sweep
    runner passes it) *or* single-run parameters (``None`` meaning the default of
    :data:`NOTEBOOK_DEFAULTS`), never both.

    Raises
    ------
    ValueError
        If ``spec`` is given together with single-run parameters (they would be ignored).
    UnknownNameError
        For a parameter the notebook does not have.
    """
    for name in single_run:
        if name not in NOTEBOOK_DEFAULTS:
            raise UnknownNameError("notebook 04 parameter", name, NOTEBOOK_DEFAULTS)
    given = {k: v for k, v in single_run.items() if v is not None}
    if spec is not None:
        if given:
            raise ValueError(
                "Notebook 04 runs either SPEC (a whole run spec, as the sweep runner passes it) "
                f"or the single-run parameters, not both. Got SPEC and {sorted(given)}: leave "
                "those at None, or put them into SPEC.")
        return RunSpec.from_dict(spec)
    p = {**NOTEBOOK_DEFAULTS, **given}
    return RunSpec(dataset=p["dataset"], method=p["method"], fraction=p["fraction"],
                   seed=p["seed"], model=p["model"], config=p["config"],
                   overrides={} if p["epochs"] is None else {"epochs": p["epochs"]},
                   features=p["features"])


def default_notebook() -> Path:
    """``notebooks/04_train_iqa.ipynb`` of this checkout."""
    return repo_root() / "notebooks" / "04_train_iqa.ipynb"


def run_notebook(spec: RunSpec, *, runs_root=None, force: bool = False, device: str = "auto",
                 keep_checkpoint: bool = False, torch_threads: int | None = None,
                 notebook=None, kernel_name: str | None = None, start_timeout: int = 120,
                 cell_timeout: float | None = None) -> dict:
    """Run ``spec`` by executing the training notebook with papermill; return its record.

    Parameters
    ----------
    spec : RunSpec
        What to run.
    runs_root : path, optional
        Parent of the run folder (default :func:`qd_lib.paths.runs_dir`).
    force : bool, default=False
        Start over even if the run finished.
    device : str, default="auto"
        Training device.
    keep_checkpoint : bool, default=False
        Keep the run's last checkpoint.
    torch_threads : int, optional
        ``torch.set_num_threads`` inside the kernel.
    notebook : path, optional
        The notebook to execute (default :func:`default_notebook`); it must take the
        parameters ``SPEC``, ``RUNS_DIR``, ``DEVICE``, ``KEEP_CHECKPOINT``, ``TORCH_THREADS``.
    kernel_name : str, optional
        Jupyter kernel (default: the notebook's own, ``python3``). The kernel starts in the
        current directory, so relative dataset paths mean what they mean to the caller.
    start_timeout : int, default=120
        Seconds to wait for the kernel to start.
    cell_timeout : float, optional
        Seconds one cell may run (training is one cell) before the run is stopped and
        recorded as failed; ``None``: no limit.

    Returns
    -------
    dict
        The ``metrics.json`` record (``skipped`` true when it had finished before), with
        ``executed_notebook`` naming the executed notebook in the run folder.

    Raises
    ------
    FileNotFoundError
        If ``notebook`` does not exist.
    ValueError
        If the notebook does not declare every parameter the runner passes (papermill would
        only warn and run with the notebook's defaults).
    """
    import papermill as pm

    root = Path(runs_root) if runs_root is not None else runs_dir()
    source = Path(notebook) if notebook is not None else default_notebook()
    if not source.is_file():
        raise FileNotFoundError(f"The 'notebook' parameter must name an existing notebook. Got "
                                f"{str(source)!r}.")
    parameters = {"SPEC": spec.to_dict(), "RUNS_DIR": str(root.resolve()), "DEVICE": device,
                  "KEEP_CHECKPOINT": bool(keep_checkpoint), "TORCH_THREADS": torch_threads}
    undeclared = sorted(set(parameters) - set(pm.inspect_notebook(str(source))))
    if undeclared:
        raise ValueError(f"The notebook {display_path(source)} does not declare the parameters "
                         f"{undeclared} in its 'parameters' cell; the runner passes "
                         f"{sorted(parameters)}.")
    run_dir, finished = start_run(spec, root, force=force)
    if finished is not None:
        return finished
    metrics_path = run_dir / METRICS
    run_dir.mkdir(parents=True, exist_ok=True)
    partial = run_dir / PARTIAL_NOTEBOOK
    t0 = time.perf_counter()
    error = None
    try:
        pm.execute_notebook(str(source), str(partial), parameters=parameters,
                            kernel_name=kernel_name, progress_bar=False, log_output=False,
                            cwd=os.getcwd(), start_timeout=start_timeout,
                            execution_timeout=cell_timeout,
                            # the kernel's start-up warnings (TCP on localhost) are noise here
                            extra_arguments=["--IPKernelApp.log_level=ERROR"])
    except Exception as exc:  # the run records its own failure; the kernel may not have
        error = exc
    if partial.is_file():
        os.replace(partial, run_dir / EXECUTED_NOTEBOOK)
    if not metrics_path.is_file():  # the kernel died (or never started) before recording
        _record_failure(spec, run_dir, error or RuntimeError("the notebook wrote no record"),
                        time.perf_counter() - t0)
    record = read_record(metrics_path)
    if (run_dir / EXECUTED_NOTEBOOK).is_file() and "executed_notebook" not in record:
        record["executed_notebook"] = EXECUTED_NOTEBOOK
        atomic_write_json(metrics_path, record)
    if record.get("status") == "ok":
        logger.info("%s: SRCC %.4f, PLCC %.4f on %d test images (%.0f s)", spec.run_id,
                    record["metrics"]["srcc"], record["metrics"]["plcc"], record["n_test"],
                    record["seconds"])
    else:
        logger.error("%s failed (notebook %s)", spec.run_id,
                     display_path(run_dir / EXECUTED_NOTEBOOK))
    return {**record, "skipped": False}


def _record_failure(spec: RunSpec, run_dir: Path, exc: BaseException, seconds: float) -> None:
    now = datetime.now(UTC).isoformat(timespec="seconds")
    header = run_header(spec)
    record = {**header, **failure_fields(exc), "seconds": round(seconds, 3), "finished_at": now}
    if not (run_dir / PARAMS).is_file():
        atomic_write_json(run_dir / PARAMS, {k: header[k] for k in (
            "schema_version", "run_id", "spec_hash", "spec", "sweep")} | {"started_at": now})
    atomic_write_json(run_dir / METRICS, to_jsonable(record, nan_to_none=True))

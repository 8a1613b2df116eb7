"""Sweeps: every RunSpec of a sweep file, skipping finished runs, on one machine or on Dask.

>>> from qd_lib.runner import run_sweep
>>> report = run_sweep("notebooks/sweeps/smoke.yaml")                     # doctest: +SKIP
>>> report.counts                                                          # doctest: +SKIP
{'ok': 4, 'failed': 0, 'skipped': 0}

With ``client=`` (a ``dask.distributed.Client``, or anything with ``submit`` and ``gather``)
each pending run becomes one task; workers must see the same file system (the runs folder and
the dataset). Failures are recorded by the run itself, so one bad run never stops the others.

By default every run executes ``notebooks/04_train_iqa.ipynb`` through papermill
(:func:`qd_lib.runner.run_notebook`) and keeps the executed notebook as
``runs/<run_id>/run.ipynb``. A sweep can be stopped at any moment, even killed: finished runs
have an ``ok`` ``metrics.json`` and are skipped next time; an interrupted one resumes from its
last checkpoint.
"""
from __future__ import annotations

import json
import logging
import numbers
import time
from dataclasses import dataclass, field
from pathlib import Path

from qd_lib.paths import display_path, runs_dir
from qd_lib.runner.experiment import migrate_legacy_run, run_experiment, run_status
from qd_lib.runner.notebook import EXECUTORS, run_notebook
from qd_lib.runner.spec import FULL_METHOD, RunSpec, expand, load_sweep
from qd_lib.utils.progress import progress
from qd_lib.utils.validation import check_option, check_scalar

logger = logging.getLogger(__name__)


@dataclass
class SweepReport:
    """What a sweep did.

    Attributes
    ----------
    name : str or None
        The sweep's name.
    records : list of dict
        One ``metrics.json`` record per run (``skipped`` marks runs found finished).
    plan : list of dict
        With ``dry_run``: run id, dataset, method, fraction, seed, budget and current status.
    seconds : float
        Wall time.
    """

    name: str | None
    records: list = field(default_factory=list)
    plan: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def counts(self) -> dict[str, int]:
        skipped = sum(1 for r in self.records if r.get("skipped"))
        ok = sum(1 for r in self.records if r.get("status") == "ok" and not r.get("skipped"))
        failed = sum(1 for r in self.records if r.get("status") == "failed")
        return {"ok": ok, "failed": failed, "skipped": skipped}

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.records if r.get("status") == "failed"]


def _budget_of(spec: RunSpec, cache: dict) -> int | None:
    from qd_lib.data import coreset_size
    from qd_lib.runner.experiment import open_run_dataset

    key = (spec.dataset, spec.scheme)
    if key not in cache:
        try:
            loaded = open_run_dataset(spec)
            cache[key] = len(loaded.manifest.split_indices(spec.scheme, "train"))
        except Exception as exc:  # dry runs report (once per dataset), never fail
            logger.warning("%s: budget unknown (%s)", spec.dataset, exc)
            cache[key] = None
    n_train = cache[key]
    if n_train is None:
        return None
    return n_train if spec.method == FULL_METHOD else coreset_size(n_train, spec.fraction)


def prepare_features(specs, *, show_progress: bool | None = None) -> list[str]:
    """Extract (or find cached) every embedding the ``specs`` select from, once, in this
    process: the runs then only read caches. Several workers extracting one cache at the same
    time would each redo it (and race on its partial files).

    Returns
    -------
    list of str
        One line per dataset × feature set prepared.
    """
    from qd_lib.features import feature_inputs
    from qd_lib.runner.experiment import open_run_dataset
    from qd_lib.selection import get_method

    wanted: dict[tuple, set] = {}
    for spec in specs:
        if spec.method == FULL_METHOD:
            continue
        key = (spec.dataset, spec.scheme, spec.root, json.dumps(spec.features, sort_keys=True))
        wanted.setdefault(key, set()).update(
            r for r in get_method(spec.method).inputs if r != "probs")
        if "probs" in get_method(spec.method).inputs:
            wanted[key].add("quality")  # the soft-cluster stand-in reads it (seeded per run)
    done = []
    for (dataset, scheme, _root, features), roles in wanted.items():
        spec = next(s for s in specs if s.dataset == dataset and s.scheme == scheme
                    and json.dumps(s.features, sort_keys=True) == features)
        loaded = open_run_dataset(spec)
        feature_inputs(sorted(roles), loaded, loaded.indices("train"),
                       feature_set=spec.features, show_progress=show_progress)
        done.append(f"{dataset} ({scheme}): {features} -> {sorted(roles)}")
    for line in done:
        logger.info("features ready: %s", line)
    return done


def _execute(spec: RunSpec, runs_root: str, force: bool, device: str, keep_checkpoint: bool,
             torch_threads: int | None, executor: str = "python", notebook=None,
             show_progress: bool | None = False, cell_timeout: float | None = None) -> dict:
    """Run one spec in this process or as a notebook (also the task a Dask worker runs)."""
    if executor == "papermill":
        return run_notebook(spec, runs_root=runs_root, force=force, device=device,
                            keep_checkpoint=keep_checkpoint, torch_threads=torch_threads,
                            notebook=notebook, cell_timeout=cell_timeout)
    return run_experiment(spec, runs_root=runs_root, force=force, device=device,
                          keep_checkpoint=keep_checkpoint, show_progress=show_progress,
                          torch_threads=torch_threads)


def run_sweep(sweep, *, runs_root=None, force: bool = False, dry_run: bool = False,
              client=None, device: str = "auto", keep_checkpoint: bool = False,
              torch_threads: int | None = None, show_progress: bool | None = None,
              executor: str | None = None, notebook=None,
              cell_timeout: float | None = None) -> SweepReport:
    """Run every experiment of ``sweep`` that has not finished yet.

    Parameters
    ----------
    sweep : path, mapping or list of RunSpec
        A sweep file, its content, or already expanded specs.
    runs_root : path, optional
        Where run folders go (default :func:`qd_lib.paths.runs_dir`).
    force : bool, default=False
        Re-run finished runs too (their folders are deleted first).
    dry_run : bool, default=False
        Validate and list the runs with their budgets and status; run nothing.
    client : dask.distributed.Client, optional
        Run the pending experiments as tasks on this cluster.
    device : str, default="auto"
        Training device.
    keep_checkpoint : bool, default=False
        Keep each run's last checkpoint.
    torch_threads : int, optional
        Threads per run (default: 1 per task with a client, torch's default otherwise).
    show_progress : bool, optional
        Progress bars.
    executor : {"papermill", "python"}, optional
        ``papermill`` (the default): each run executes ``notebooks/04_train_iqa.ipynb`` and
        keeps the executed copy as ``runs/<run_id>/run.ipynb``; ``python``: each run is a call
        of :func:`run_experiment` in this process (no notebook; the fastest for tests).
        Default: the sweep file's ``executor`` key, else ``papermill``.
    notebook : path, optional
        The notebook papermill executes (default: the sweep file's ``notebook`` key, else
        ``notebooks/04_train_iqa.ipynb``); a relative path is taken from the current directory.
    cell_timeout : float, optional
        With ``papermill``: seconds one notebook cell (training is one cell) may run before the
        run is stopped and recorded as failed (default: the sweep file's ``cell_timeout``, else
        no limit), so one hung run cannot stall a long sweep.

    Returns
    -------
    SweepReport
    """
    t0 = time.perf_counter()
    data: dict = {}
    if isinstance(sweep, (list, tuple)) and all(isinstance(s, RunSpec) for s in sweep):
        specs, name = list(sweep), (sweep[0].sweep if sweep else None)
    else:
        data = load_sweep(sweep)
        specs, name = expand(data), data.get("name")
    executor = executor or data.get("executor") or "papermill"
    check_option(executor, "executor", EXECUTORS)
    notebook = notebook or data.get("notebook")
    if notebook is not None:
        notebook = str(Path(notebook).resolve())  # the same file for every worker
    cell_timeout = cell_timeout if cell_timeout is not None else data.get("cell_timeout")
    if cell_timeout is not None:
        check_scalar(cell_timeout, "cell_timeout", numbers.Real, min_val=0, closed="right")
    root = Path(runs_root) if runs_root is not None else runs_dir()
    report = SweepReport(name=name)
    if not dry_run:  # folders of earlier run ids (alias dataset names, old feature vocabulary)
        for spec in specs:
            migrate_legacy_run(spec, root)
    statuses = {s.run_id: run_status(s, root) for s in specs}
    if dry_run:
        cache: dict = {}
        for spec in specs:
            report.plan.append({"run_id": spec.run_id, "dataset": spec.dataset,
                                "method": spec.method, "fraction": spec.fraction,
                                "seed": spec.seed, "model": f"{spec.model}/{spec.config}",
                                "budget": _budget_of(spec, cache),
                                "status": statuses[spec.run_id]})
        report.seconds = round(time.perf_counter() - t0, 3)
        return report
    pending = [s for s in specs if force or statuses[s.run_id] != "done"]
    done = [s for s in specs if s not in pending]
    for spec in done:
        report.records.append(run_experiment(spec, runs_root=root))  # reads, returns skipped
    logger.info("sweep %s: %d runs, %d finished earlier, %d to run (%s)%s", name, len(specs),
                len(done), len(pending), executor, " on Dask" if client is not None else "")
    if client is not None and pending:
        prepare_features(pending, show_progress=show_progress)
    if client is not None and pending:
        threads = 1 if torch_threads is None else torch_threads
        futures = [client.submit(_execute, spec, str(root), force, device, keep_checkpoint,
                                 threads, executor, notebook, False, cell_timeout,
                                 key=f"qd-run-{spec.run_id}", pure=False)
                   for spec in pending]
        report.records.extend(client.gather(futures))
    else:
        for spec in progress(pending, desc=f"sweep {name}", enabled=show_progress):
            report.records.append(_execute(
                spec, str(root), force, device, keep_checkpoint, torch_threads, executor,
                notebook, show_progress, cell_timeout))
    _append_index(root, report.records)
    report.seconds = round(time.perf_counter() - t0, 3)
    counts = report.counts
    logger.info("sweep %s: %d ok, %d failed, %d skipped (%.0f s)", name, counts["ok"],
                counts["failed"], counts["skipped"], report.seconds)
    for record in report.failed:
        logger.warning("failed: %s (%s)", record["run_id"], record["error"]["message"][:200])
    return report


def _append_index(root: Path, records: list[dict]) -> None:
    """One line per executed run in ``runs/index.jsonl`` (the driver writes it, not workers)."""
    lines = [json.dumps({"run_id": r["run_id"], "sweep": r.get("sweep"), "status": r["status"],
                         "seconds": r.get("seconds"), "finished_at": r.get("finished_at")})
             for r in records if not r.get("skipped")]
    if not lines:
        return
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "index.jsonl", "a", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    logger.debug("appended %d lines to %s", len(lines), display_path(root / "index.jsonl"))

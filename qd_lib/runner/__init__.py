"""Experiment runner: one run, a resumable sweep (optionally on Dask), tables from run records.

>>> from qd_lib.runner import RunSpec, run_experiment, run_sweep, collect_runs, summarise
>>> spec = RunSpec(dataset="proxy-tiny", method="random", fraction=0.5, seed=0,
...                model="maniqa", config="tiny")
>>> record = run_experiment(spec)                                  # doctest: +SKIP
>>> record["status"], record["metrics"]["srcc"]                    # doctest: +SKIP

Command line::

    python -m qd_lib.runner sweep notebooks/sweeps/smoke.yaml [--dry-run] [--force]
    python -m qd_lib.runner table notebooks/sweeps/smoke.yaml
    python -m qd_lib.runner table notebooks/sweeps/smoke.yaml --layout paper [--latex]

Each run writes ``runs/<run_id>/`` (``params.json``, ``selection.json``, ``metrics.json``, see
:mod:`qd_lib.runner.experiment`, and ``run.ipynb``, the executed training notebook, when the
sweep runs through papermill, its default; see :mod:`qd_lib.runner.notebook`). A sweep skips
runs whose ``metrics.json`` says ``ok`` with the same spec hash and records failed ones without
stopping.

Which features a run selects from is a feature set of :mod:`qd_lib.features` (the ``features``
key of a sweep file: ``offline``, ``paper``, ``pixels``, or a mapping overriding roles).
"""
from qd_lib.runner.experiment import (
    RunRecordError,
    migrate_legacy_run,
    read_record,
    run_experiment,
    run_status,
    select_coreset,
)
from qd_lib.runner.notebook import notebook_run_spec, run_notebook
from qd_lib.runner.records import collect_runs, format_table, save_table, summarise
from qd_lib.runner.spec import SCHEMA_VERSION, RunSpec, expand, load_sweep, validate_spec
from qd_lib.runner.sweep import SweepReport, run_sweep
from qd_lib.runner.tables import (
    PaperTable,
    paper_table,
    paper_tables,
    save_paper_table,
    save_paper_tables,
    sweep_runs,
)

__all__ = [
    "PaperTable",
    "SCHEMA_VERSION",
    "RunRecordError",
    "RunSpec",
    "SweepReport",
    "collect_runs",
    "expand",
    "format_table",
    "load_sweep",
    "paper_table",
    "paper_tables",
    "read_record",
    "migrate_legacy_run",
    "notebook_run_spec",
    "run_experiment",
    "run_notebook",
    "run_status",
    "run_sweep",
    "save_paper_table",
    "save_paper_tables",
    "save_table",
    "select_coreset",
    "summarise",
    "sweep_runs",
    "validate_spec",
]

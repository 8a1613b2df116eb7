"""``python -m qd_lib.runner``: run a sweep, or build its results table.

::

    python -m qd_lib.runner sweep CONFIG [--dry-run] [--force] [--runs-dir DIR]
                                         [--device auto] [--threads N]
                                         [--executor papermill|python]
                                         [--workers N | --scheduler ADDRESS]
    python -m qd_lib.runner table [CONFIG] [--runs-dir DIR] [--name NAME]
                                           [--metrics srcc plcc] [--no-save]
                                           [--layout long|paper] [--model NAME[/CONFIG] ...]
                                           [--latex] [--decimals 4]

``sweep`` exits with 0 when every run finished (or was finished before) and 1 when a run
failed (``--keep-going`` makes it 0 anyway); ``table`` prints the Markdown table and writes it
under ``figures/tables/``. With ``--layout paper`` it also builds the supplement's Table 2
layout, one table per model (with CONFIG: the runs of the file's current grid), prints it
(``--latex``: its LaTeX source) and writes ``<name>_table2_<model>-<config>.{md,tex,csv,json}``;
it exits with 2 when the runs cannot share a table (mixed test splits, metric variants, ...).
"""
from __future__ import annotations

import argparse
import sys

from qd_lib.utils.logging import setup


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m qd_lib.runner",
                                     description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sweep = sub.add_parser("sweep", help="run every pending experiment of a sweep file")
    sweep.add_argument("config", help="sweep YAML file (notebooks/sweeps/*.yaml)")
    sweep.add_argument("--dry-run", action="store_true",
                       help="list the runs, budgets and status; run nothing")
    sweep.add_argument("--force", action="store_true", help="re-run finished runs too")
    sweep.add_argument("--runs-dir", default=None, help="runs folder (default: QD_RUNS_DIR)")
    sweep.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1")
    sweep.add_argument("--workers", type=int, default=0,
                       help="run on a local Dask cluster with this many worker processes")
    sweep.add_argument("--scheduler", default=None, help="address of a Dask scheduler")
    sweep.add_argument("--threads", type=int, default=None,
                       help="torch CPU threads per run (default: torch's; 1 per Dask task)")
    sweep.add_argument("--keep-checkpoint", action="store_true",
                       help="keep each run's last checkpoint")
    sweep.add_argument("--executor", choices=("papermill", "python"), default=None,
                       help="papermill: each run executes notebooks/04 and keeps run.ipynb "
                            "(default, or the sweep file's 'executor'); python: in-process")
    sweep.add_argument("--cell-timeout", type=float, default=None,
                       help="papermill: seconds a notebook cell may run before the run is "
                            "recorded as failed (default: the sweep file's, else no limit)")
    sweep.add_argument("--keep-going", action="store_true",
                       help="exit 0 even when runs failed (they are recorded)")
    sweep.add_argument("--log-level", default="INFO")
    table = sub.add_parser("table", help="results table from the run records")
    table.add_argument("config", nargs="?", default=None,
                       help="sweep YAML file: only its runs (default: every run)")
    table.add_argument("--runs-dir", default=None)
    table.add_argument("--name", default=None,
                       help="file name under figures/tables/ (default: the sweep's name)")
    table.add_argument("--metrics", nargs="+", default=["srcc", "plcc"])
    table.add_argument("--no-save", action="store_true", help="print only")
    table.add_argument("--layout", choices=("long", "paper"), default="long",
                       help="long: one row per dataset/model/fraction/method (default); paper: "
                            "also the supplement's Table 2 layout, one table per model")
    table.add_argument("--model", action="append", default=None,
                       help="with --layout paper: only this model ('maniqa' or 'maniqa/tiny'; "
                            "repeatable)")
    table.add_argument("--latex", action="store_true",
                       help="with --layout paper: print the LaTeX source instead of Markdown")
    table.add_argument("--decimals", type=int, default=4,
                       help="with --layout paper: decimals shown (default 4)")
    table.add_argument("--log-level", default="WARNING")
    return parser


def _sweep(args) -> int:
    from qd_lib.runner import run_sweep

    client = cluster = None
    if args.scheduler or args.workers:
        from dask.distributed import Client, LocalCluster

        if args.scheduler:
            client = Client(args.scheduler)
        else:
            cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                   processes=True, dashboard_address=None)
            client = Client(cluster)
    try:
        report = run_sweep(args.config, runs_root=args.runs_dir, force=args.force,
                           dry_run=args.dry_run, client=client, device=args.device,
                           keep_checkpoint=args.keep_checkpoint, torch_threads=args.threads,
                           executor=args.executor, cell_timeout=args.cell_timeout)
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    if args.dry_run:
        print(f"sweep {report.name}: {len(report.plan)} runs")
        for row in report.plan:
            print(f"  {row['status']:>7}  budget {row['budget']!s:>6}  {row['run_id']}")
        return 0
    counts = report.counts
    print(f"sweep {report.name}: {counts['ok']} ok, {counts['failed']} failed, "
          f"{counts['skipped']} finished earlier ({report.seconds:.0f} s)")
    for record in report.failed:
        print(f"  FAILED {record['run_id']}: {record['error']['type']}: "
              f"{record['error']['message'][:300]}")
    return 1 if counts["failed"] and not args.keep_going else 0


def _table(args) -> int:
    from qd_lib.runner import collect_runs, format_table, load_sweep, save_table, summarise
    from qd_lib.runner.tables import sweep_runs

    sweep_name = load_sweep(args.config).get("name") if args.config else None
    # with a sweep file: its current grid only, not runs of an older version of it
    runs = sweep_runs(args.config, args.runs_dir) if args.config else collect_runs(args.runs_dir)
    if runs.empty:
        print("no finished runs", file=sys.stderr)
        return 1
    if args.layout == "paper":
        return _paper_table(args, runs, sweep_name)
    from qd_lib.runner import RunRecordError

    try:
        summary = summarise(runs, metrics=args.metrics)
    except RunRecordError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    note = _proxy_note(runs)
    if note:
        print(note + "\n")
    print(format_table(summary, metrics=args.metrics), end="")
    if not args.no_save:
        paths = save_table(summary, args.name or sweep_name or "results", runs=runs,
                           metrics=args.metrics, note=note)
        print(f"\nsaved {paths['md']}")
    return 0


def _proxy_note(runs) -> str | None:
    if not runs["proxy"].fillna(False).any():
        return None
    from qd_lib.data.synthetic import PROXY_LABEL

    return f"{PROXY_LABEL}. Features: {', '.join(sorted(runs['features'].dropna().unique()))}."


def _paper_table(args, runs, sweep_name) -> int:
    from qd_lib.paths import display_path
    from qd_lib.runner import RunRecordError, save_table, summarise
    from qd_lib.runner.tables import paper_tables, save_paper_tables

    name = args.name or sweep_name or "results"
    try:
        tables = paper_tables(runs, models=args.model, metrics=args.metrics,
                              decimals=args.decimals)
        summary = summarise(runs, metrics=args.metrics)
    except (RunRecordError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for table in tables.values():
        print(table.to_latex() if args.latex else table.to_markdown())
    if not args.no_save:
        save_table(summary, name, runs=runs, metrics=args.metrics, note=_proxy_note(runs))
        for paths in save_paper_tables(tables, name).values():
            print(f"saved {display_path(paths['md'])} (.tex, .csv, _long.csv, .json)")
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    setup(args.log_level)
    return _sweep(args) if args.command == "sweep" else _table(args)


if __name__ == "__main__":
    sys.exit(main())

"""``python -m qd_lib.classification run|table GRID``: the Table 4 experiment from the shell.

``run`` trains every unfinished run of a grid file (finished ones are skipped, interrupted ones
resume, failed ones are recorded and retried next time); ``table`` rebuilds the Table 4 layout
from the grid's run records into ``figures/cifar10/<grid name>_table4.{csv,md,tex,json}``.
"""
from __future__ import annotations

import argparse
import sys

from qd_lib.utils.logging import setup


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m qd_lib.classification",
                                     description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train the grid's unfinished runs")
    run.add_argument("grid", help="grid file, e.g. notebooks/sweeps/cifar10/digits.yaml")
    run.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:<i>")
    run.add_argument("--threads", type=int, default=None,
                     help="torch intra-op threads (1 is fastest on a busy shared CPU)")
    run.add_argument("--dry-run", action="store_true", help="list runs, budgets and status")
    run.add_argument("--force", action="store_true", help="rerun finished runs")
    table = sub.add_parser("table", help="Table 4 layout from the grid's run records")
    table.add_argument("grid")
    table.add_argument("--folder", default=None, help="default figures/cifar10")
    table.add_argument("--no-quoted", action="store_true",
                       help="leave out the supplement's quoted rows")
    table.add_argument("--decimals", type=int, default=2)
    for p in (run, table):
        p.add_argument("--log-level", default="INFO")
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    setup(args.log_level)
    from qd_lib.classification import grid_table, load_grid, run_grid, save_table4
    from qd_lib.paths import display_path

    grid = load_grid(args.grid)
    if args.command == "run":
        report = run_grid(grid, device=args.device, force=args.force, dry_run=args.dry_run,
                          torch_threads=args.threads)
        if args.dry_run:
            for r in report.records:
                print(f"{r['status']:8s} budget {r['budget']:6d}  {r['run_id']}")
        print(f"grid {grid.name}: {report.counts}")
        return 1 if report.counts.get("failed") else 0
    table = grid_table(grid, quoted=not args.no_quoted, decimals=args.decimals)
    files = save_table4(table, grid.name, folder=args.folder)
    print(table.to_markdown())
    print("wrote " + ", ".join(display_path(p) for p in files.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

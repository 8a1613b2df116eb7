"""``python -m qd_lib.pruning``: run the calibration-set pruning experiment, or build Table 3.

::

    python -m qd_lib.pruning run [--dataset proxy-default] [--methods all] [--seeds 0 1 2]
                                 [--config small] [--epochs N] [--target 0.2]
                                 [--levels 0.05 0.1 ...] [--no-early-stop]
                                 [--finetune-epochs 0] [--runs-dir DIR] [--force]
                                 [--threads N] [--device auto]
    python -m qd_lib.pruning table [--dataset proxy-default ...] [--config small]
                                   [--seeds ...] [--methods ...] [--runs-dir DIR]
                                   [--records figures/pruning/table3_pruning_records]
                                   [--name table3_pruning] [--folder figures/pruning]
                                   [--latex]

``run`` trains each seed's base model once (reused by every method), then prunes it with each
method's calibration set; finished runs are skipped, failed ones recorded (exit 1 unless
``--keep-going``). ``--methods all`` is every selection method plus ``uniform``. ``table``
prints Table 3 (Markdown, or LaTeX with ``--latex``) and writes
``<folder>/<name>.{csv,md,tex,json}`` plus ``<name>_runs.csv``; it exits with 2 when the runs
cannot share a table.
"""
from __future__ import annotations

import argparse
import sys

from qd_lib.utils.logging import setup


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m qd_lib.pruning",
                                     description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the pruning runs of a methods x seeds grid")
    run.add_argument("--dataset", default="proxy-default")
    run.add_argument("--methods", nargs="+", default=["all"],
                     help="selection methods and/or 'uniform'; 'all' = every one")
    run.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    run.add_argument("--model", default="basecnn")
    run.add_argument("--config", default="small")
    run.add_argument("--epochs", type=int, default=None,
                     help="base-model epochs (default: the configuration's)")
    run.add_argument("--target", type=float, default=0.2)
    run.add_argument("--fraction", type=float, default=None,
                     help="calibration fraction (default: 10 %%; 5 %% for KADID/KonIQ)")
    run.add_argument("--levels", nargs="+", type=float, default=None)
    run.add_argument("--no-early-stop", action="store_true")
    run.add_argument("--finetune-epochs", type=int, default=0)
    run.add_argument("--runs-dir", default=None, help="runs folder (default: QD_RUNS_DIR)")
    run.add_argument("--force", action="store_true", help="redo finished runs")
    run.add_argument("--keep-going", action="store_true", help="exit 0 even if a run failed")
    run.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    run.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda")
    run.add_argument("--log-level", default="INFO")
    table = sub.add_parser("table", help="Table 3 from the run records")
    table.add_argument("--dataset", nargs="+", default=None)
    table.add_argument("--config", default=None)
    table.add_argument("--seeds", nargs="+", type=int, default=None)
    table.add_argument("--methods", nargs="+", default=None)
    table.add_argument("--runs-dir", default=None)
    table.add_argument("--records", default=None,
                       help="read the records from this folder of <run_id>.json files (e.g. "
                            "figures/pruning/table3_pruning_records, committed) instead of "
                            "runs/pruning")
    table.add_argument("--name", default="table3_pruning")
    table.add_argument("--folder", default=None, help="default: figures/pruning")
    table.add_argument("--no-save", action="store_true", help="print only")
    table.add_argument("--latex", action="store_true", help="print LaTeX instead of Markdown")
    table.add_argument("--log-level", default="WARNING")
    return parser


def _methods(names) -> list[str]:
    from qd_lib.pruning.experiment import UNIFORM
    from qd_lib.runner.tables import order_methods
    from qd_lib.selection import available_methods

    if "all" in names:
        return [*order_methods(available_methods()), UNIFORM]
    return list(dict.fromkeys(names))


def _run(args) -> int:
    import torch

    from qd_lib.pruning.experiment import grid_specs, run_pruning_grid

    if args.threads:
        torch.set_num_threads(args.threads)
    options = {"model": args.model, "config": args.config, "target": args.target,
               "early_stop": not args.no_early_stop, "finetune_epochs": args.finetune_epochs}
    if args.epochs is not None:
        options["train_overrides"] = {"epochs": args.epochs}
    if args.levels is not None:
        options["levels"] = tuple(args.levels)
    if args.fraction is not None:
        options["fraction"] = args.fraction
    specs = grid_specs(args.dataset, _methods(args.methods), args.seeds, **options)
    report = run_pruning_grid(specs, runs_root=args.runs_dir, force=args.force,
                              device=args.device)
    print(f"pruning runs: {report['counts']}")
    return 0 if report["counts"]["failed"] == 0 or args.keep_going else 1


def _table(args) -> int:
    from qd_lib.paths import figures_dir
    from qd_lib.pruning.experiment import load_records
    from qd_lib.pruning.tables import save_table3, table3
    from qd_lib.viz.pruning import save_pruning_figure

    try:
        records = load_records(args.runs_dir, folder=args.records)
        table = table3(records, datasets=args.dataset, config=args.config, seeds=args.seeds,
                       methods=args.methods)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table.to_latex() if args.latex else table.to_markdown())
    if not args.no_save:
        used = [r for r in records if r["run_id"] in set(table.provenance["run_ids"])]
        files = save_table3(table, args.name, folder=args.folder, records=used)
        folder = args.folder if args.folder is not None else figures_dir() / "pruning"
        for dataset in table.provenance["datasets"]:
            files.update({f"{dataset}_{k}": v for k, v in save_pruning_figure(
                [r for r in used if r["dataset"] == dataset], f"pruning_{dataset}",
                folder=folder, provenance={"table": args.name}).items()})
        print("wrote:", ", ".join(sorted(str(p) for p in files.values())))
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    setup(args.log_level)
    return _run(args) if args.command == "run" else _table(args)


if __name__ == "__main__":
    sys.exit(main())

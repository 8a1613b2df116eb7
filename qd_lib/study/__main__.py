"""``python -m qd_lib.study``: the evidence study, resumable, one command per step.

::

    python -m qd_lib.study run SWEEP [SWEEP ...] [--workers N] [--threads 1]
        [--methods M ...] [--models M ...] [--fractions F ...] [--seeds S ...]
        train the runs of the sweep files that neither figures/study/runs.csv nor runs/ hold
        yet, in rounds of --workers runs, rewriting runs.csv and summary.csv after each round;
        --methods/--models/--fractions/--seeds train one stage of the grid first
    python -m qd_lib.study status SWEEP [SWEEP ...] [--workers N] [--methods ...] ...
        per cell of the grid: seeds done and missing, and the time the missing runs take at
        the measured minutes per run
    python -m qd_lib.study report SWEEP [SWEEP ...]
        runs.csv (committed rows + finished records), summary.csv/.md, the figures
    python -m qd_lib.study --out figures/study/epochs run notebooks/sweeps/study_epochs.yaml
    python -m qd_lib.study epochs       (figures/study/epochs/runs.csv -> epochs.csv)
    python -m qd_lib.study diagnostics [--dataset proxy-default] [--seeds 10] [--jobs 2]
    python -m qd_lib.study ablation [--dataset proxy-default] [--seeds 10] [--jobs 2]
    python -m qd_lib.study readme [--readme README.md]

Every output goes to ``figures/study/`` (``--out``); ``make study`` runs them all in order.
Training-free steps skip the rows their CSV already holds for the same dataset and features.
"""
from __future__ import annotations

import argparse
import logging
import sys

from qd_lib.utils.logging import setup

DEFAULT_SWEEPS = ("notebooks/sweeps/study.yaml",)


def _add_stage_arguments(parser: argparse.ArgumentParser) -> None:
    stage = parser.add_argument_group("one stage of the grid (the tables still cover all of it)")
    stage.add_argument("--methods", nargs="+", default=None,
                       help="methods or variants, e.g. random qdiverse")
    stage.add_argument("--models", nargs="+", default=None, help="e.g. maniqa or maniqa/small")
    stage.add_argument("--fractions", type=float, nargs="+", default=None)
    stage.add_argument("--seeds", type=int, nargs="+", default=None)


def _stage(args) -> dict:
    from qd_lib.study.commands import STAGE_AXES

    return {axis: getattr(args, axis) for axis in STAGE_AXES if getattr(args, axis) is not None}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m qd_lib.study",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=None, help="output folder (default figures/study)")
    parser.add_argument("--runs-dir", default=None, help="runs folder (default QD_RUNS_DIR)")
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train what is missing, updating runs.csv as it goes")
    run.add_argument("sweeps", nargs="*", default=list(DEFAULT_SWEEPS))
    run.add_argument("--workers", type=int, default=1)
    run.add_argument("--threads", type=int, default=None)
    run.add_argument("--device", default="auto")
    _add_stage_arguments(run)
    status = sub.add_parser("status", help="what the grid holds and what is left, with times")
    status.add_argument("sweeps", nargs="*", default=list(DEFAULT_SWEEPS))
    status.add_argument("--workers", type=int, default=2,
                        help="runs in parallel, for the wall time left (default 2)")
    _add_stage_arguments(status)
    report = sub.add_parser("report", help="runs.csv, summary.csv/.md and figures")
    report.add_argument("sweeps", nargs="*", default=list(DEFAULT_SWEEPS))
    epochs = sub.add_parser("epochs", help="validation SRCC by schedule length")
    epochs.add_argument("--source", default=None,
                        help="the epoch sweep's runs.csv (default OUT/epochs/runs.csv)")
    for name in ("diagnostics", "ablation"):
        p = sub.add_parser(name, help=f"training-free {name}")
        p.add_argument("--dataset", default="proxy-default")
        p.add_argument("--feature-set", default="offline")
        p.add_argument("--seeds", type=int, default=10)
        p.add_argument("--fractions", type=float, nargs="*", default=None)
        p.add_argument("--jobs", type=int, default=1, help="worker processes (split by seed)")
    readme = sub.add_parser("readme", help="rewrite the README's evidence section")
    readme.add_argument("--readme", default="README.md")
    return parser


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    setup(args.log_level)
    try:
        return _dispatch(args)
    except (ValueError, FileNotFoundError) as exc:  # bad input: the message, not a traceback
        logging.getLogger("qd_lib.study").debug("the traceback", exc_info=True)
        parser.error(f"{exc} (--log-level DEBUG shows the traceback)")


def _dispatch(args) -> int:
    from qd_lib.study import commands

    out = commands.output_dir(args.out)
    if args.command == "run":
        done = commands.run_missing(args.sweeps, out, runs_root=args.runs_dir,
                                    workers=args.workers, threads=args.threads,
                                    device=args.device, only=_stage(args))
        print(f"study: {done['trained']} run(s) trained, {done['failed']} failed, "
              f"{done['held']} already held; runs.csv has {done['rows']} rows")
        return 1 if done["failed"] else 0
    if args.command == "status":
        table = commands.study_status(args.sweeps, out, runs_root=args.runs_dir,
                                      only=_stage(args))
        print(commands.status_text(table, workers=args.workers))
        return 0
    if args.command == "report":
        paths = commands.report(args.sweeps, out, runs_root=args.runs_dir)
    elif args.command == "epochs":
        paths = commands.epochs(out, source=args.source)
    elif args.command == "diagnostics":
        paths = commands.diagnostics(args.dataset, out, seeds=args.seeds,
                                     fractions=args.fractions, feature_set=args.feature_set,
                                     jobs=args.jobs)
    elif args.command == "ablation":
        paths = commands.ablation(args.dataset, out, seeds=args.seeds, fractions=args.fractions,
                                  feature_set=args.feature_set, jobs=args.jobs)
    else:
        paths = {"readme": commands.write_readme_section(out, args.readme)}
    for key, path in paths.items():
        print(f"{key}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Command line: ``python -m qd_lib.data.synthetic --preset default``.

``python -m qd_lib.data.synthetic --composition`` writes the composition figure and table of
``proxy-default`` and ``proxy-authentic`` (building a missing preset first) into
``figures/study/`` instead (:func:`~qd_lib.data.synthetic.composition.write_proxy_composition`).
"""
from __future__ import annotations

import argparse

from qd_lib.data.synthetic.builder import PRESETS, build_proxy_benchmark
from qd_lib.data.synthetic.composition import DEFAULT_HUMAN, DEFAULT_PRESETS
from qd_lib.paths import display_path
from qd_lib.utils.logging import setup


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Build the offline proxy IQA benchmark "
                                                 "(MOS from full-reference metrics: a proxy).")
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", default=None)
    parser.add_argument("--n-jobs", type=int, default=None)
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--composition", nargs="*", metavar="DATASET", default=None,
                        help="instead of building, write the composition figure and CSV of "
                             f"these proxy benchmarks (default: {' '.join(DEFAULT_PRESETS)})")
    parser.add_argument("--human", nargs="*", metavar="DATASET", default=list(DEFAULT_HUMAN),
                        help="human-rated label lists drawn for comparison in --composition "
                             f"(default: {' '.join(DEFAULT_HUMAN)}; none: an empty list)")
    parser.add_argument("--figures-dir", default=None,
                        help="folder of --composition's files (default: figures/study)")
    args = parser.parse_args(argv)
    setup("INFO")
    if args.composition is not None:
        from qd_lib.data.synthetic.composition import write_proxy_composition

        files = write_proxy_composition(args.composition or DEFAULT_PRESETS, human=args.human,
                                        folder=args.figures_dir)
        for path in files.values():
            print(display_path(path))
        return
    bench = build_proxy_benchmark(args.preset, output_dir=args.output_dir, seed=args.seed,
                                  n_jobs=args.n_jobs, overwrite=args.overwrite)
    m = bench.manifest
    took = "" if bench.build_seconds is None else f" (built in {bench.build_seconds:.1f} s)"
    print(f"{m.info.name}: {len(m)} images, manifest hash {m.content_hash[:12]}{took}")
    print(f"  at {display_path(bench.root)}")
    print(m.split_counts().to_string())


if __name__ == "__main__":
    main()

"""Command line: ``python -m qd_lib.data.synthetic --preset default``."""
from __future__ import annotations

import argparse

from qd_lib.data.synthetic.builder import PRESETS, build_proxy_benchmark
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
    args = parser.parse_args(argv)
    setup("INFO")
    bench = build_proxy_benchmark(args.preset, output_dir=args.output_dir, seed=args.seed,
                                  n_jobs=args.n_jobs, overwrite=args.overwrite)
    m = bench.manifest
    took = "" if bench.build_seconds is None else f" (built in {bench.build_seconds:.1f} s)"
    print(f"{m.info.name}: {len(m)} images, manifest hash {m.content_hash[:12]}{took}")
    print(f"  at {display_path(bench.root)}")
    print(m.split_counts().to_string())


if __name__ == "__main__":
    main()

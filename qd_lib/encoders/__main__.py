"""Command line: list the encoders, or extract (cached) embeddings for a dataset.

Examples::

    python -m qd_lib.encoders list
    python -m qd_lib.encoders extract --dataset proxy-default --encoders mobilenet_v2 nss
    python -m qd_lib.encoders extract --dataset data_manifests/x.csv --root /data/x \\
        --encoders resnet50 --batch-size 64 --device cuda --dask-workers 2
"""
from __future__ import annotations

import argparse
import sys

from qd_lib.paths import display_path
from qd_lib.utils.logging import setup


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m qd_lib.encoders",
                                     description="Image encoders and cached embedding "
                                                 "extraction.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the registered encoders")
    ex = sub.add_parser("extract", help="extract embeddings (reusing cached ones)")
    ex.add_argument("--dataset", required=True,
                    help="what qd_lib.data.open_dataset accepts: 'proxy-tiny', 'proxy-small', "
                         "'proxy-default' (built if missing), a registered dataset name or "
                         "alias, or a manifest CSV path")
    ex.add_argument("--root", default=None, help="image root (default: the dataset's own)")
    ex.add_argument("--encoders", nargs="+", default=["mobilenet_v2", "nss"])
    ex.add_argument("--batch-size", type=int, default=32)
    ex.add_argument("--device", default="auto")
    ex.add_argument("--num-workers", default="auto",
                    help="DataLoader workers, an int or 'auto'")
    ex.add_argument("--cache-dir", default=None)
    ex.add_argument("--on-error", choices=["raise", "skip"], default="raise")
    ex.add_argument("--overwrite", action="store_true")
    ex.add_argument("--dask-workers", type=int, default=0,
                    help="shard over a local Dask cluster with this many worker processes")
    ex.add_argument("--log-level", default="INFO")
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    from qd_lib.data import open_dataset
    from qd_lib.encoders import describe_encoders, extract

    if args.command == "list":
        for name, text in describe_encoders().items():
            print(f"{name:14s} {text}")
        return 0
    setup(args.log_level)
    dataset = open_dataset(args.dataset, args.root)
    workers = args.num_workers if args.num_workers == "auto" else int(args.num_workers)
    client = cluster = None
    if args.dask_workers:
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=args.dask_workers, threads_per_worker=1,
                               processes=True, dashboard_address=None)
        client = Client(cluster)
    try:
        for name in args.encoders:
            emb = extract(dataset, name, batch_size=args.batch_size,
                          device=args.device, cache_dir=args.cache_dir, num_workers=workers,
                          overwrite=args.overwrite, client=client, on_error=args.on_error)
            how = "cached" if emb.from_cache else f"computed in {emb.meta['seconds']:.1f} s"
            print(f"{emb.meta['encoder_key']}: {emb.array.shape[0]} x {emb.array.shape[1]} "
                  f"({how}) -> {display_path(emb.path)}")
    finally:
        if client is not None:
            client.close()
            cluster.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Embedding extraction speed: the whole pipeline against the raw forward pass.

For each encoder, in one run on the same images:

full extraction
    ``qd_lib.encoders.extract`` with ``overwrite=True`` into a temporary folder: PIL decode,
    resize/crop in DataLoader workers, forward pass, chunk files, assembly of the ``.npy`` and
    the sidecar. Images per second over the wall time of the call.
raw forward
    The encoder's forward pass alone (``Encoder.encode``: uint8 → float, normalisation, model)
    on the very same preprocessed tensors, already in memory, in the same batches.

The ratio full / raw says how much of the model's speed survives the data pipeline (target:
at least 0.9 for ``mobilenet_v2`` on 2 cores) and ``nss`` should be at least as fast as
``mobilenet_v2``. ``nss`` computes its statistics inside the transform, one image per call on
one thread, spread over one loader worker per core; its raw number is that computation on
decoded images in this process alone, so its ratio can exceed 1. Each measurement is
repeated (``--repeats``, raw and full interleaved) and the best is kept, since the machine may
be shared.

Usage::

    python benchmarks/extract.py                      # tiny proxy benchmark (160 images)
    python benchmarks/extract.py --preset small       # 1,440 images
    python benchmarks/extract.py --threads 1          # on a machine shared with other jobs
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch


def _load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def _raw_batches(encoder, bench, batch_size: int) -> tuple[list, int]:
    """What the timed computation consumes, for every image, in extraction's batches: the
    encoder's preprocessed inputs, or for ``nss`` (whose statistics run inside the transform)
    the decoded uint8 images."""
    from PIL import Image

    from qd_lib.encoders.base import pil_to_uint8
    from qd_lib.encoders.extract import _collate

    transform = encoder.transform()
    items = []
    for rel in bench.manifest.table["relpath"]:
        with Image.open(bench.root / rel) as img:
            rgb = img.convert("RGB")
        inputs = {"image": pil_to_uint8(rgb)} if encoder.cpu_heavy_transform else \
            transform(rgb)["inputs"]
        items.append({"pos": 0, "id": "", "inputs": inputs, "note": None, "error": None})
    if encoder.cpu_heavy_transform:
        return [it["inputs"]["image"] for it in items], len(items)
    return [_collate(items[i:i + batch_size])["inputs"]
            for i in range(0, len(items), batch_size)], len(items)


def _raw_forward(encoder, batches) -> float:
    """The model's forward pass (``nss``: the statistics, per image, one thread, in this
    process) on tensors already in memory."""
    from qd_lib.encoders.nss import single_thread

    start = time.perf_counter()
    with torch.inference_mode():
        if encoder.cpu_heavy_transform:
            with single_thread():
                for image in batches:
                    encoder.computer(image[None])
        else:
            for batch in batches:
                encoder.encode(batch)
    return time.perf_counter() - start


def _full_extraction(encoder, bench, batch_size: int, folder: str) -> tuple[float, dict]:
    from qd_lib.encoders import extract

    start = time.perf_counter()
    emb = extract(bench, encoder, cache_dir=folder, batch_size=batch_size, overwrite=True,
                  show_progress=False)
    return time.perf_counter() - start, emb.meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="tiny", choices=["tiny", "small", "default"])
    parser.add_argument("--encoders", nargs="+", default=["mobilenet_v2", "nss"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's, one per core)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from qd_lib.data.synthetic import build_proxy_benchmark
    from qd_lib.encoders import load_encoder
    from qd_lib.weights import install_offline_weights

    install_offline_weights()
    bench = build_proxy_benchmark(args.preset)
    n = len(bench.manifest)
    print(f"proxy-{args.preset}: {n} images; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} cores, load average "
          f"{_load_average()}; batch {args.batch_size}; best of {args.repeats}")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.encoders:
            encoder = load_encoder(name, device="cpu")
            batches, count = _raw_batches(encoder, bench, args.batch_size)
            _raw_forward(encoder, batches[:2])  # warm-up
            raw_times, full_times = [], []
            for _ in range(args.repeats):  # interleaved, so both see the same machine load
                raw_times.append(_raw_forward(encoder, batches))
                took, meta = _full_extraction(encoder, bench, args.batch_size, folder)
                full_times.append(took)
            print(f"  {name}: raw forward s {[round(t, 2) for t in raw_times]}, full "
                  f"extraction s {[round(t, 2) for t in full_times]}")
            rows.append((name, count / min(full_times), count / min(raw_times),
                         meta["n_workers"]))
            del batches
    print(f"{'encoder':14s} {'full img/s':>11s} {'forward img/s':>14s} {'ratio':>6s} "
          f"{'workers':>8s}")
    for name, full, raw, workers in rows:
        print(f"{name:14s} {full:11.1f} {raw:14.1f} {full / raw:6.2f} {workers:8d}")
    speeds = {name: full for name, full, _, _ in rows}
    if {"mobilenet_v2", "nss"} <= set(speeds):
        print(f"nss / mobilenet_v2 full-extraction speed: "
              f"{speeds['nss'] / speeds['mobilenet_v2']:.2f} (target >= 1)")
    print(f"load average after: {_load_average()}")


if __name__ == "__main__":
    main()

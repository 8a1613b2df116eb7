"""GPU extraction throughput of ``resnet50`` and ``arniqa`` (RANDOM WEIGHTS: speed only).

For a machine with a CUDA device (well under 3 minutes). No network and no real checkpoints
are needed: the script writes its own **random-initialised** checkpoints in the official key
layouts (torchvision's ResNet-50 layout, passed as ``checkpoint=``; ARNIQA's ``model.``/
``projector.`` layout as ``ARNIQA.pth`` in a temporary ``QD_WEIGHTS_DIR``). The embeddings are
meaningless; only the throughput is measured, and every line of output says so.

It writes ``--n-images`` 512×384 JPEGs (KADID-10k's size) cut from the photos bundled with
scikit-image, then for each encoder reports images per second of

- full extraction (``qd_lib.encoders.extract``: decode and resize in DataLoader workers,
  forward under autocast, chunk files, assembly), and
- the raw forward pass (``Encoder.encode``) on the same tensors already on the GPU side of the
  loader, in the same batches.

Usage::

    python benchmarks/gpu_extract.py                  # CUDA required
    python benchmarks/gpu_extract.py --device cpu --n-images 64 --batch-size 16   # smoke test
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from _shared import write_photo_dataset

LABEL = "RANDOM-INIT WEIGHTS (throughput only, embeddings meaningless)"


def _random_checkpoints(folder: Path) -> Path:
    import torchvision

    torch.manual_seed(0)
    resnet = torchvision.models.resnet50()
    resnet_path = folder / "resnet50_RANDOM_INIT.pth"
    torch.save(resnet.state_dict(), resnet_path)
    trunk = torch.nn.Sequential(*list(resnet.children())[:-1])
    head = torch.nn.Sequential(torch.nn.Linear(2048, 2048), torch.nn.ReLU(),
                               torch.nn.Linear(2048, 128))
    state = {f"model.{k}": v for k, v in trunk.state_dict().items()}
    state.update({f"projector.{k}": v for k, v in head.state_dict().items()})
    torch.save(state, folder / "ARNIQA.pth")
    return resnet_path


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _raw_forward(encoder, manifest, root, batch_size, amp, device) -> float:
    from PIL import Image

    from qd_lib.encoders.extract import _collate

    transform = encoder.transform()
    items = []
    for rel in manifest.table["relpath"]:
        with Image.open(root / rel) as img:
            items.append({"pos": 0, "id": "", "inputs": transform(img.convert("RGB"))["inputs"],
                          "note": None, "error": None})
    batches = [_collate(items[i:i + batch_size])["inputs"]
               for i in range(0, len(items), batch_size)]
    if device.type == "cuda":  # keep the transfer out of the raw number
        batches = [{k: v.to(device, non_blocking=True) for k, v in b.items()} for b in batches]
    with torch.inference_mode():
        encoder.encode(batches[0], amp=amp)
        _sync(device)
        start = time.perf_counter()
        for batch in batches:
            encoder.encode(batch, amp=amp)
        _sync(device)
    return len(items) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--n-images", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--encoders", nargs="+", default=["resnet50", "arniqa"])
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("No CUDA device here; run with --device cpu for a smoke test.")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["QD_WEIGHTS_DIR"] = str(tmp / "weights")
        os.environ["QD_RUNS_DIR"] = str(tmp / "runs")
        (tmp / "weights").mkdir()
        resnet_path = _random_checkpoints(tmp / "weights")
        manifest = write_photo_dataset(tmp / "data", args.n_images)
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        print(f"{LABEL}\n{args.n_images} JPEGs 512x384 written in "
              f"{time.perf_counter() - started:.1f} s; device {name}; torch {torch.__version__}; "
              f"batch {args.batch_size}")
        from qd_lib.encoders import extract, load_encoder

        options = {"resnet50": {"checkpoint": resnet_path}, "arniqa": {}}
        for enc_name in args.encoders:
            encoder = load_encoder(enc_name, device=device, **options.get(enc_name, {}))
            amp = ("bfloat16" if torch.cuda.is_bf16_supported() else "float16") \
                if device.type == "cuda" else None
            raw = _raw_forward(encoder, manifest, tmp / "data", args.batch_size, amp, device)
            t0 = time.perf_counter()
            emb = extract(manifest, encoder, root=tmp / "data", cache_dir=tmp / "emb",
                          batch_size=args.batch_size, device=device, show_progress=False)
            full = args.n_images / (time.perf_counter() - t0)
            print(f"[{LABEL}] {enc_name:9s} {emb.array.shape[1]}-d: full extraction "
                  f"{full:8.1f} img/s, raw forward {raw:8.1f} img/s, ratio {full / raw:.2f}, "
                  f"{emb.meta['n_workers']} loader workers, amp {emb.meta['amp']}")
    print(f"total {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()

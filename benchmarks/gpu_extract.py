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


def _raw_forward(encoder, manifest, root, batch_size, amp, device, repeats: int = 1) -> float:
    """Images per second of ``encoder.encode`` on decoded, collated batches already on the
    device (``repeats`` passes over the images, after one untimed batch)."""
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
        for _ in range(repeats):
            for batch in batches:
                encoder.encode(batch, amp=amp)
        _sync(device)
    return repeats * len(items) / (time.perf_counter() - start)


def _device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} ({device})"
    from qd_lib.training.throughput import device_name

    return device_name(device)


def measure_extraction(manifest, root: Path, device, *, encoders=("resnet50", "arniqa"),
                       batch_size: int = 128, repeats: int = 1, work_dir: Path,
                       encoder_options: dict | None = None) -> list[dict]:
    """Extraction throughput records of ``encoders`` (random-init weights, speed only).

    Parameters
    ----------
    manifest : Manifest
        The images (JPEGs under ``root``).
    root : Path
        Image root.
    device : str or torch.device
        Where the encoders run.
    encoders : sequence of str, default=("resnet50", "arniqa")
    batch_size : int, default=128
    repeats : int, default=1
        Passes over the images for the raw-forward figure.
    work_dir : Path
        An empty folder for the random checkpoints (``QD_WEIGHTS_DIR`` is pointed there) and
        the extraction cache.
    encoder_options : dict, optional
        Extra options per encoder name (recorded in the figures), e.g. a smaller
        ``max_short_side`` for ARNIQA in a CPU smoke test.

    Returns
    -------
    list of dict
        Per encoder two records (``measure`` ``extract_full``: decode and resize in DataLoader
        workers, forward, assembly; ``extract_raw_forward``: ``Encoder.encode`` on decoded
        tensors already on the device), each with ``img_s``, ``device``, ``weights``, ``amp``,
        ``channels_last``, ``batch_size``, ``n_images`` and ``dim``.
    """
    from qd_lib.encoders import extract, load_encoder

    device = torch.device(device)
    weights = work_dir / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    os.environ["QD_WEIGHTS_DIR"] = str(weights)
    resnet_path = _random_checkpoints(weights)
    extra = encoder_options or {}
    options = {"resnet50": {"checkpoint": resnet_path}, "arniqa": {}}
    amp = (("bfloat16" if torch.cuda.is_bf16_supported() else "float16")
           if device.type == "cuda" else None)
    label = _device_label(device)
    n = len(manifest.table)
    records = []
    for name in encoders:
        encoder = load_encoder(name, device=device, **options.get(name, {}),
                               **extra.get(name, {}))
        raw = _raw_forward(encoder, manifest, root, batch_size, amp, device, repeats)
        t0 = time.perf_counter()
        emb = extract(manifest, encoder, root=root, cache_dir=work_dir / f"emb_{name}",
                      batch_size=batch_size, device=device, show_progress=False)
        full = n / (time.perf_counter() - t0)
        common = {"encoder": name, "device": label, "weights": LABEL, "batch_size": batch_size,
                  "n_images": n, "dim": int(emb.array.shape[1]),
                  "channels_last": bool(encoder.channels_last),
                  "amp": amp if encoder.supports_amp else None,
                  "input_policy": encoder.input_policy, "options": extra.get(name, {})}
        records.append({**common, "measure": "extract_raw_forward", "img_s": raw,
                        "repeats": repeats})
        records.append({**common, "measure": "extract_full", "img_s": full,
                        "amp": emb.meta.get("amp", common["amp"]),
                        "workers": emb.meta["n_workers"], "full_over_raw": full / raw})
        del encoder
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return records


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
        os.environ["QD_RUNS_DIR"] = str(tmp / "runs")
        manifest = write_photo_dataset(tmp / "data", args.n_images)
        print(f"{LABEL}\n{args.n_images} JPEGs 512x384 written in "
              f"{time.perf_counter() - started:.1f} s; device {_device_label(device)}; "
              f"torch {torch.__version__}; batch {args.batch_size}")
        records = measure_extraction(manifest, tmp / "data", device, encoders=args.encoders,
                                     batch_size=args.batch_size, work_dir=tmp / "work")
        for name in args.encoders:
            raw, full = (next(r for r in records if r["encoder"] == name and r["measure"] == m)
                         for m in ("extract_raw_forward", "extract_full"))
            print(f"[{LABEL}] {name:9s} {full['dim']}-d: full extraction "
                  f"{full['img_s']:8.1f} img/s, raw forward {raw['img_s']:8.1f} img/s, ratio "
                  f"{full['full_over_raw']:.2f}, {full['workers']} loader workers, amp "
                  f"{full['amp']}")
    print(f"total {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()

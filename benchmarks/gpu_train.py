"""MANIQA and MUSIQ training/evaluation throughput (RANDOM-INIT WEIGHTS: speed only).

For a machine with a CUDA device (a few minutes). No weights are needed: the models are built
with ``pretrained=False`` in their paper configurations (MANIQA: ViT-B/8 at 224×224, 135.7 M
parameters; MUSIQ: Google's architecture, 27 M), so the scores are meaningless; only the speed
is measured, and every line and record says so. The measurement is
:func:`qd_lib.training.throughput.measure_throughput`:

1. **Steps** on inputs already on the GPU, made by each model's own pipeline from 512×384
   images: the paper recipe's training step (optimiser, loss, batch size, AMP) and a no-grad
   evaluation pass with the test-time policy, in images per second, with peak GPU memory.
2. **End to end** through :func:`qd_lib.training.train_on_coreset`: ``--n-images`` 512×384
   JPEGs (KADID-10k's size) cut from the photos bundled with scikit-image, decoded and
   transformed in DataLoader workers, one epoch on the training part, then the test part; the
   input pipeline alone is timed too, and the epoch is called decode-bound when it delivers
   fewer images per second than the model's training step consumes.

Usage::

    python benchmarks/gpu_train.py --json runs/gpu_train.json          # CUDA required
    python benchmarks/gpu_train.py --device cpu --config tiny --steps 3 --n-images 48  # smoke
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from _shared import write_photo_dataset

LABEL = "RANDOM-INIT WEIGHTS (throughput only, scores meaningless)"


def _line(f: dict) -> str:
    head = f"{f['model']}/{f['config']} {f['measure']:<16} on {f['device']}: "
    if f["measure"] == "end_to_end_epoch":
        verdict = {True: "decode-bound", False: "not decode-bound", None: "no step figure"}
        share = f"{f['compute_share']:.2f}" if f["compute_share"] is not None else "n/a"
        return (head + f"{f['n_train']} train + {f['n_test']} test JPEGs, {f['workers']} "
                f"workers: {f['img_s']:.1f} img/s (epoch {f['epoch_s']:.1f} s; input "
                f"pipeline alone {f['loader_img_s']:.1f} img/s; pure-step share "
                f"{share}; {verdict[f['decode_bound']]}; amp {f['amp']}) -- {LABEL}")
    peak = (f", peak {f['peak_memory_GiB']:.2f} GiB" if f["peak_memory_GiB"] is not None
            else "")
    return (head + f"{f['img_s']:.1f} img/s (batch {f['batch_size']}, {f['params_M']:.1f} M "
            f"parameters, amp {f['amp']}{peak}) -- {LABEL}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--config", default="paper", choices=("paper", "tiny"),
                        help="model configurations (tiny: CPU smoke test)")
    parser.add_argument("--models", nargs="+", default=["maniqa", "musiq"])
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per measurement (default 20; tiny 2)")
    parser.add_argument("--n-images", type=int, default=256, help="end-to-end dataset size")
    parser.add_argument("--workers", default="auto", help="DataLoader workers (auto or int)")
    parser.add_argument("--no-amp", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args(argv)
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device; run with --device cpu --config tiny for a smoke test")
        return 2
    from qd_lib.training.throughput import measure_throughput

    workers = args.workers if args.workers == "auto" else int(args.workers)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        manifest = write_photo_dataset(folder, args.n_images, random_mos=True, train_share=0.75)
        result = measure_throughput(
            manifest, folder, tiny=args.config == "tiny", models=args.models,
            device=args.device, amp=False if args.no_amp else "auto", steps=args.steps,
            workers=workers)
    print(f"{result['config']} configurations on {result['device']}, torch {result['torch']} "
          f"-- {LABEL}")
    for figure in result["figures"]:
        print(_line(figure))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, allow_nan=False) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

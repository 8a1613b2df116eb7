"""MANIQA training and evaluation throughput on CUDA (RANDOM-INIT BACKBONE: speed only).

For a machine with a CUDA device (well under 3 minutes). No weights are needed: the model is
``build_model("maniqa", "paper", pretrained=False)`` (the paper's architecture, ViT-B/8 at
224×224, 135.7 M parameters) with a **random-initialised** backbone, so the scores are
meaningless; only the speed is measured, and every line of output says so.

Two measurements:

1. **Step throughput** on tensors already on the GPU: the paper recipe's training step (Adam
   1e-5, weight decay 1e-5, batch 8, MSE, AMP) and a no-grad evaluation pass (batch 32), in
   images per second, with peak GPU memory.
2. **End to end** through :func:`qd_lib.training.train_on_coreset`: ``--n-images`` 512×384
   JPEGs (KADID-10k's size) cut from the photos bundled with scikit-image, decoded and resized
   to 224×224 in DataLoader workers, one epoch on the training part, then the test part with
   the paper's inference policy (five-point crops; after the 224 resize they coincide, so one
   pass per image), in images per second.

Usage::

    python benchmarks/gpu_train.py                                   # CUDA required
    python benchmarks/gpu_train.py --device cpu --config tiny --steps 3 --n-images 48  # smoke
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from _shared import write_photo_dataset

LABEL = "RANDOM-INIT BACKBONE (throughput only, scores meaningless)"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_throughput(config: str, device: torch.device, steps: int, amp: bool) -> dict:
    from qd_lib.models import build_model, count_parameters

    torch.manual_seed(0)
    model = build_model("maniqa", config, pretrained=False).to(device)
    recipe, size = model.config.recipe, model.img_size
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr,
                                 weight_decay=recipe.weight_decay)
    dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() \
        else torch.float16
    autocast = torch.autocast(device.type, dtype=dtype, enabled=amp and device.type == "cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=amp and dtype == torch.float16
                                  and device.type == "cuda")
    x = torch.randn(recipe.batch_size, 3, size, size, device=device)
    y = torch.rand(recipe.batch_size, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def train_step():
        with autocast:
            pred = model(x)
        loss = torch.nn.functional.mse_loss(pred.float(), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    model.train()
    for _ in range(2):  # warm-up (cuDNN/cuBLAS setup, allocator)
        train_step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        train_step()
    _sync(device)
    train_s = time.perf_counter() - t0
    model.eval()
    xe = torch.randn(32, 3, size, size, device=device)
    with torch.no_grad(), autocast:
        model(xe)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            model(xe)
        _sync(device)
    eval_s = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else None
    return {"params_M": count_parameters(model) / 1e6,
            "train_img_s": steps * recipe.batch_size / train_s,
            "eval_img_s": steps * 32 / eval_s, "peak_GiB": peak,
            "amp": str(dtype).replace("torch.", "") if amp and device.type == "cuda" else None}


def end_to_end(config: str, device: torch.device, n_images: int, workers) -> dict:
    from qd_lib.training import train_on_coreset

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        manifest = write_photo_dataset(folder, n_images, random_mos=True, train_share=0.75)
        train_ids = manifest.subset("paper", "train")["image_id"].tolist()
        t0 = time.perf_counter()
        result = train_on_coreset(manifest, folder, train_ids, model="maniqa", config=config,
                                  seed=0, out_dir=folder / "run", device=str(device),
                                  pretrained=False, num_workers=workers, show_progress=False,
                                  overrides={"epochs": 1})
        total = time.perf_counter() - t0
    seconds = result.history[0]["seconds"]
    return {"n_train": result.info["n_train"], "n_test": result.info["n_test"],
            "epoch_s": seconds, "total_s": total,
            "img_s": (result.info["n_train"] + result.info["n_test"]) / seconds,
            "resize": result.info["inference_policy"]["resize"], "amp": result.info["amp"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--config", default="paper", help="maniqa configuration (paper, tiny)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    parser.add_argument("--n-images", type=int, default=256, help="end-to-end dataset size")
    parser.add_argument("--workers", default="auto", help="DataLoader workers (auto or int)")
    parser.add_argument("--no-amp", action="store_true")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device; run with --device cpu --config tiny for a smoke test")
        return 2
    workers = args.workers if args.workers == "auto" else int(args.workers)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"MANIQA/{args.config} on {name}, torch {torch.__version__} -- {LABEL}")
    s = step_throughput(args.config, device, args.steps, not args.no_amp)
    peak = f", peak {s['peak_GiB']:.1f} GiB" if s["peak_GiB"] is not None else ""
    print(f"step   : {s['params_M']:.1f} M parameters, amp {s['amp']}: train "
          f"{s['train_img_s']:.1f} img/s (batch 8), eval {s['eval_img_s']:.1f} img/s "
          f"(batch 32){peak} -- {LABEL}")
    e = end_to_end(args.config, device, args.n_images, workers)
    print(f"end2end: {e['n_train']} train + {e['n_test']} test images (512x384 JPEG -> "
          f"{e['resize']}), "
          f"1 epoch + test pass in {e['epoch_s']:.1f} s = {e['img_s']:.1f} img/s "
          f"(run {e['total_s']:.1f} s incl. model build; amp {e['amp']}) -- {LABEL}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

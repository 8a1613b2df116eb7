"""Training and evaluation throughput of MANIQA and MUSIQ (speed only: random initialisation).

:func:`measure_throughput` measures, on one device,

1. **steps**: for each model in its paper configuration (MANIQA ViT-B/8 at 224×224, MUSIQ on
   the multi-scale patches of ``image_size`` images), the recipe's training step (optimiser,
   loss, AMP and batch size of the recipe) and a no-grad evaluation pass with the test-time
   policy, on inputs made by the model's own pipeline and already on the device, in images per
   second, with the peak device memory of each phase;
2. **end to end** (when a dataset is given): one epoch and the test pass through
   :func:`~qd_lib.training.train_on_coreset`, with JPEG decoding in DataLoader workers; the
   input pipeline alone (the same loader, no model) is timed as well, and the epoch is called
   *decode-bound* when that pipeline delivers fewer images per second than the model's pure
   training step consumes.

Weights are randomly initialised (``pretrained=False``): the scores mean nothing and every
record says so. AMP follows :func:`train_on_coreset`: bfloat16 (or float16 with loss scaling)
autocast on CUDA, off on the CPU. Steps run under the same determinism switches as training
(:func:`~qd_lib.training.seeding.seeded`), so the two measurements are comparable.

``tiny=True`` uses the ``tiny`` configurations and a few steps, for a CPU check in seconds.

>>> from qd_lib.training.throughput import measure_throughput
>>> result = measure_throughput(tiny=True, device="cpu")          # doctest: +SKIP
>>> [(f["model"], f["measure"], f["device"]) for f in result["figures"]]  # doctest: +SKIP
"""
from __future__ import annotations

import logging
import numbers
import os
import time
from collections.abc import Sequence
from contextlib import nullcontext

import numpy as np
import torch
from PIL import Image

from qd_lib.models import build_model, count_parameters
from qd_lib.training.loop import (
    _amp_dtype,
    _loader,
    _loss,
    _optimizer,
    _targets,
    _unwrap_dataset,
    _Views,
    coreset_rows,
    train_on_coreset,
)
from qd_lib.training.pipelines import make_pipeline
from qd_lib.training.seeding import seeded
from qd_lib.utils.device import resolve_device
from qd_lib.utils.machine import cpu_model
from qd_lib.utils.validation import check_scalar

logger = logging.getLogger(__name__)

__all__ = ["WEIGHTS_LABEL", "device_name", "measure_throughput"]

#: Stated in every record: the weights are random, only the speed means something.
WEIGHTS_LABEL = "random-init (throughput only, scores meaningless)"
_MODELS = ("maniqa", "musiq")


def device_name(device: torch.device) -> str:
    """A readable name of ``device``: the GPU model, or the CPU and its torch thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = cpu_model()
    return f"cpu ({cpu}, {torch.get_num_threads()} torch threads)"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float | None:
    """Peak allocated device memory since the last reset (CUDA only; None on the CPU)."""
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 3)


def _timed(fn, *, steps: int, warmup: int, device: torch.device) -> float:
    """Seconds for ``steps`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return time.perf_counter() - start


def _inputs(pipeline, batch_size: int, image_size: tuple[int, int], rng: np.random.Generator,
            *, train: bool) -> torch.Tensor:
    """A batch made by ``pipeline`` from random RGB images of ``image_size`` (H, W)."""
    views = []
    for _ in range(batch_size):
        pixels = rng.integers(0, 256, (*image_size, 3), dtype=np.uint8)
        img = pipeline.load(Image.fromarray(pixels))
        views.append(pipeline.train_view(img, rng) if train else pipeline.eval_view(img))
    return pipeline.collate_train(views) if train else pipeline.collate_eval(views)


def _autocast(amp_dtype: torch.dtype | None):
    return torch.autocast("cuda", dtype=amp_dtype) if amp_dtype is not None else nullcontext()


def _time_train_steps(net, recipe, x: torch.Tensor, y: torch.Tensor, amp_dtype, *,
                      device: torch.device, steps: int, warmup: int) -> tuple[float, float | None]:
    """Seconds for ``steps`` training steps of the recipe (optimiser, loss, AMP, loss scaling)
    on the batch ``x``, and the peak device memory (GiB; None on the CPU)."""
    optimizer = _optimizer(recipe, [p for p in net.parameters() if p.requires_grad])
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    def train_step():
        with _autocast(amp_dtype):
            pred = net(x)
        loss = _loss(recipe, pred, y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    net.train()
    _reset_peak(device)
    seconds = _timed(train_step, steps=steps, warmup=warmup, device=device)
    peak = _peak_gib(device)
    optimizer.zero_grad(set_to_none=True)
    return seconds, peak


def _time_eval(net, pipeline, x: torch.Tensor, amp_dtype, *, device: torch.device, steps: int,
               warmup: int) -> tuple[float, float | None]:
    """Seconds for ``steps`` no-grad test passes (the pipeline's test-time policy) on ``x``,
    and the peak device memory (GiB; None on the CPU)."""
    @torch.no_grad()
    def eval_pass():
        with _autocast(amp_dtype):
            pipeline.predict(net, x)

    net.eval()
    _reset_peak(device)
    seconds = _timed(eval_pass, steps=steps, warmup=warmup, device=device)
    return seconds, _peak_gib(device)


def _step_figures(model: str, config: str, device: torch.device, amp, *, steps: int,
                  warmup: int, eval_batch_size: int | None, image_size: tuple[int, int],
                  seed: int, name: str) -> tuple[list[dict], object]:
    """Train-step and evaluation throughput of ``model/config`` on pre-made device tensors.

    Returns
    -------
    figures : list of dict
        The ``train_step`` and ``eval`` records.
    pipeline : ImagePipeline or MusiqPipeline
        The model's input pipeline (for the end-to-end loader measurement).
    """
    amp_dtype = _amp_dtype(device, amp)
    timing = dict(device=device, steps=steps, warmup=warmup)
    with seeded(seed):
        net = build_model(model, config, pretrained=False).to(device)
        recipe = net.config.recipe
        pipeline = make_pipeline(net, net.config.inputs)
        rng = np.random.default_rng(seed)
        x = _inputs(pipeline, recipe.batch_size, image_size, rng, train=True).to(device)
        y = torch.from_numpy(rng.random(recipe.batch_size, dtype=np.float32)).to(device)
        train_s, train_peak = _time_train_steps(net, recipe, x, y, amp_dtype, **timing)
        eval_bs = eval_batch_size or recipe.eval_batch_size or recipe.batch_size
        xe = _inputs(pipeline, eval_bs, image_size, rng, train=False).to(device)
        eval_s, eval_peak = _time_eval(net, pipeline, xe, amp_dtype, **timing)
    common = {"model": model, "config": config, "device": name, "weights": WEIGHTS_LABEL,
              "amp": str(amp_dtype).replace("torch.", "") if amp_dtype is not None else None,
              "params_M": round(count_parameters(net) / 1e6, 3),
              "image_size": list(image_size), "input_shape": list(x.shape[1:])}
    crops = int(xe.shape[1]) if xe.ndim == 5 else None  # MANIQA's test crops per image
    return [
        {**common, "measure": "train_step", "batch_size": recipe.batch_size, "steps": steps,
         "seconds": round(train_s, 4), "img_s": steps * recipe.batch_size / train_s,
         "peak_memory_GiB": train_peak},
        {**common, "measure": "eval", "batch_size": eval_bs, "test_crops": crops,
         "steps": steps, "seconds": round(eval_s, 4), "img_s": steps * eval_bs / eval_s,
         "peak_memory_GiB": eval_peak},
    ], pipeline


def _pipeline(model: str, config: str):
    """The input pipeline of ``model/config`` (built from a throw-away model)."""
    net = build_model(model, config, pretrained=False)
    return make_pipeline(net, net.config.inputs)


def _loader_img_s(manifest, root, train_ids, pipeline, recipe: dict, *, scheme: str,
                  workers: int, device: torch.device, seed: int) -> float:
    """Images per second of the training input pipeline alone (decode, resize, views, collate
    in ``workers`` DataLoader workers), as :func:`train_on_coreset` builds it for ``recipe``
    (a run record's recipe dict)."""
    rows, _ = coreset_rows(manifest, train_ids, scheme=scheme)
    views = _Views(manifest, root, rows, _targets(manifest, rows, recipe["label_norm"]),
                   pipeline, train=True, seed=seed)
    loader = _loader(views, recipe["batch_size"], order=list(range(len(views))),
                     drop_last=recipe["train_drop_last"], num_workers=workers,
                     pin_memory=device.type == "cuda")
    start = time.perf_counter()
    count = sum(len(batch[1]) for batch in loader)
    return count / (time.perf_counter() - start)


def _end_to_end_figure(manifest, root, model: str, config: str, device: torch.device, amp, *,
                       scheme: str, workers, seed: int, name: str, pipeline,
                       steps: list[dict]) -> dict:
    """One epoch and the test pass through :func:`train_on_coreset`, and whether decoding
    limits it (the input pipeline alone is slower than the model's pure training step)."""
    train_ids = manifest.subset(scheme, "train")["image_id"].tolist()
    start = time.perf_counter()
    # per_dataset={} keeps a per-dataset recipe (MUSIQ) from replacing epochs=1
    result = train_on_coreset(manifest, root, train_ids, model=model, config=config,
                              scheme=scheme, seed=seed, device=str(device), amp=amp,
                              pretrained=False, num_workers=workers, show_progress=False,
                              overrides={"epochs": 1, "per_dataset": {}})
    total_s = time.perf_counter() - start
    info, epoch_s = result.info, result.history[0]["seconds"]
    n_train, n_test = info["n_train"], info["n_test"]
    loader_img_s = _loader_img_s(manifest, root, train_ids, pipeline, result.info["recipe"],
                                 scheme=scheme, workers=_workers(workers, device),
                                 device=device, seed=seed)
    step = {f["measure"]: f["img_s"] for f in steps if f["model"] == model}
    compute_s = n_train / step["train_step"] + n_test / step["eval"] if step else None
    return {
        "model": model, "config": config, "measure": "end_to_end_epoch", "device": name,
        "weights": WEIGHTS_LABEL, "amp": info["amp"], "n_train": n_train, "n_test": n_test,
        "workers": _workers(workers, device), "inference_policy": info["inference_policy"],
        "epoch_s": epoch_s, "run_s": round(total_s, 3),
        "img_s": (n_train + n_test) / epoch_s,
        "loader_img_s": loader_img_s,
        "step_train_img_s": step.get("train_step"),
        "compute_share": compute_s / epoch_s if step else None,
        "decode_bound": loader_img_s < step["train_step"] if step else None,
    }


def _workers(workers, device: torch.device) -> int:
    """The DataLoader worker count :func:`train_on_coreset` uses for ``workers``."""
    if workers != "auto":
        return int(workers)
    return min(8, max(1, (os.cpu_count() or 1) - 1)) if device.type == "cuda" else 0


def measure_throughput(dataset=None, root=None, *, tiny: bool = False,
                       models: Sequence[str] = _MODELS, device: str = "auto",
                       amp: bool | str = "auto", steps: int | None = None,
                       warmup: int | None = None, eval_batch_size: int | None = None,
                       image_size: tuple[int, int] | None = None, scheme: str = "paper",
                       workers: int | str = "auto",
                       end_to_end_models: Sequence[str] | None = None, seed: int = 0) -> dict:
    """Training-step, evaluation and end-to-end throughput of MANIQA and MUSIQ on one device.

    Parameters
    ----------
    dataset : Manifest, ProxyBenchmark or LoadedDataset, optional
        Images for the end-to-end epoch (JPEGs, say), with a ``scheme`` split into ``train``
        and ``test``. Without it only the steps are measured.
    root : path, optional
        Image root (required with a bare Manifest).
    tiny : bool, default=False
        The ``tiny`` configurations (CPU check in seconds) instead of ``paper``.
    models : sequence of {"maniqa", "musiq"}, default=("maniqa", "musiq")
        Models whose steps are measured.
    device : str, default="auto"
        ``"auto"`` picks CUDA when available.
    amp : bool or "auto", default="auto"
        Autocast (bfloat16 where supported, else float16 with loss scaling); CUDA only.
    steps, warmup : int, optional
        Timed and untimed calls per measurement (default 20 and 3; ``tiny``: 2 and 1).
    eval_batch_size : int, optional
        Evaluation batch (default: the recipe's, as :func:`train_on_coreset` uses).
    image_size : (int, int), optional
        (H, W) of the random images the step inputs are made from, through each model's own
        pipeline (default (384, 512), KADID-10k's size; ``tiny``: (96, 128)).
    scheme : str, default="paper"
        Split scheme of ``dataset``.
    workers : int or "auto", default="auto"
        DataLoader workers of the end-to-end epoch (as in :func:`train_on_coreset`).
    end_to_end_models : sequence of str, optional
        Models run end to end (default: ``models``).
    seed : int, default=0
        Seed of the initialisation, the inputs and the data order.

    Returns
    -------
    dict
        JSON-able: ``device``, ``device_type``, ``torch``, ``config``, ``weights`` and
        ``figures``, a list of records, each naming ``model``, ``config``, ``measure``
        (``train_step``, ``eval`` or ``end_to_end_epoch``), ``device``, ``weights``, ``amp``
        and ``img_s``; step records add ``batch_size``, ``seconds`` and
        ``peak_memory_GiB`` (None on the CPU); end-to-end records add ``epoch_s``,
        ``loader_img_s`` (input pipeline alone), ``step_train_img_s``, ``compute_share``
        (the epoch's share explained by the pure steps) and ``decode_bound``.

    Raises
    ------
    ValueError
        For an unknown model, a non-positive ``steps`` and the like (naming the parameter).
    """
    for label, names in (("models", models), ("end_to_end_models", end_to_end_models or ())):
        if isinstance(names, str) or any(m not in _MODELS for m in names):
            raise ValueError(f"The '{label}' parameter must be a sequence of names from "
                             f"{list(_MODELS)}. Got {names!r} instead.")
    steps = (2 if tiny else 20) if steps is None else steps
    warmup = (1 if tiny else 3) if warmup is None else warmup
    check_scalar(steps, "steps", numbers.Integral, min_val=1)
    check_scalar(warmup, "warmup", numbers.Integral, min_val=0)
    check_scalar(seed, "seed", numbers.Integral, min_val=0)
    if eval_batch_size is not None:
        check_scalar(eval_batch_size, "eval_batch_size", numbers.Integral, min_val=1)
    image_size = tuple(image_size or ((96, 128) if tiny else (384, 512)))
    if len(image_size) != 2 or not all(isinstance(v, numbers.Integral) and v >= 1
                                       for v in image_size):
        raise ValueError(f"The 'image_size' parameter must be (height, width) with positive "
                         f"sides. Got {image_size!r} instead.")
    config = "tiny" if tiny else "paper"
    dev = resolve_device(device)
    _amp_dtype(dev, amp)  # checks 'amp'
    name = device_name(dev)
    logger.info("throughput of %s/%s on %s (%s)", list(models), config, name, WEIGHTS_LABEL)
    figures: list[dict] = []
    pipelines = {}
    for model in models:
        records, pipelines[model] = _step_figures(
            model, config, dev, amp, steps=steps, warmup=warmup,
            eval_batch_size=eval_batch_size, image_size=image_size, seed=seed, name=name)
        figures += records
        if dev.type == "cuda":
            torch.cuda.empty_cache()  # the next model starts from a clean allocator
    if dataset is not None:
        manifest, root = _unwrap_dataset(dataset, root)
        for model in (models if end_to_end_models is None else end_to_end_models):
            pipeline = pipelines.get(model) or _pipeline(model, config)
            figures.append(_end_to_end_figure(manifest, root, model, config, dev, amp,
                                              scheme=scheme, workers=workers, seed=seed,
                                              name=name, pipeline=pipeline, steps=figures))
    return {"device": name, "device_type": dev.type, "torch": torch.__version__,
            "config": config, "weights": WEIGHTS_LABEL, "figures": figures}

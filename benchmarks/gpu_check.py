"""One command for a device machine: speed, memory and device-independence checks in one report.

``make gpu-check`` (``python benchmarks/gpu_check.py --device auto``) needs no download and no
weights file, and keeps to a global time budget (``--budget-s``, default 420 s, so the whole
command ends within 8 minutes on one device). It runs five parts, each in its own process
(forked from a server that has imported torch, so one crash or CUDA error cannot take the
others down) with its share of the budget; a part that fails is recorded and the rest still
run, and a part that runs out of time keeps what it measured so far:

(a) ``train``: MANIQA (ViT-B/8 at 224×224) and MUSIQ in their paper configurations: the
    recipe's training step and the evaluation pass, with AMP, in images per second, and the
    peak device memory of each (:func:`qd_lib.training.throughput.measure_throughput`).
(b) ``end_to_end``: one epoch and the test pass of the paper MANIQA through
    :func:`qd_lib.training.train_on_coreset` on 512×384 JPEGs cut from the photos bundled with
    scikit-image, decoded in DataLoader workers; the input pipeline alone is timed too, and the
    epoch is called decode-bound when it delivers fewer images per second than the pure
    training step consumes.
(c) ``extract``: ResNet-50 and ARNIQA-architecture encoders (random init, speed only, said on
    every line): the raw forward pass on decoded tensors already on the device (channels_last,
    AMP) and the full extraction with JPEG decoding in DataLoader workers.
(d) ``selection``: Q-Diverse (``content`` + ``quality``, 512 + 512 dimensions, 10 %), k-Center
    and classic Herding (on the 512-d ``content`` rows, 1 %: every pick is a pass over the
    rows) at N = 100k and 1M, seeded clustered float16 features memory-mapped from disk, with
    ``backend="torch"`` on the device and the numpy path (``select()``'s defaults: one BLAS
    thread, ``n_jobs=1``) on this machine's CPU, in the same run: seconds, peak device memory,
    whether the coresets are the same (Herding: always; k-Center and Q-Diverse: up to their
    documented float32 near ties), and numpy seconds / device seconds. The Q-Diverse pair at
    100k runs first, then the device cases, then the numpy ones; a case whose time,
    extrapolated from the smaller N or from a pilot at N/10, would not fit the time left is
    skipped with a note (the numpy path at 1M, typically).
(e) ``smoke``: the smoke sweep (``notebooks/sweeps/smoke.yaml``: tiny MANIQA on the tiny proxy
    benchmark, Random and k-Center at 25 % and 50 %) end to end on the CPU, then on the device
    (training there), in-process executor. **Selections equal** means: the coreset of every
    run (image ids in pick order) is the same in both sweeps (the sweep selects with numpy, so
    this checks that nothing device-dependent reaches selection), and for every method with a
    torch backend (k-Center) the coreset selected with ``backend="torch"`` on the device equals
    the CPU sweep's. The training metrics differ by device arithmetic and are listed side by
    side.

Every figure names the device it was measured on (``device``). The report goes to ``--out``
(default ``runs/gpu/report.json``, written atomically): the device, torch/CUDA versions, the
git commit (``--commit`` or ``QD_GIT_COMMIT`` where the copy has no ``.git``), every part's
status, ``checks``, ``figures``, ``qdiverse_speedup_100k`` (numpy seconds / device seconds for
Q-Diverse at N = 100k; null when not measured) and the printed ``summary``.

``--tiny`` runs the same code at toy sizes (tiny model configurations, a few images, N = 2,000
and 6,000, d = 16 + 16, the smoke sweep's first fraction) so that ``--device cpu --tiny``
checks the script on a CPU in about a minute (CI runs it). Exit status: 0 when every part ran
and every check held, 1 otherwise, 2 for a device that is not there.

Usage::

    python benchmarks/gpu_check.py                          # device auto, full sizes
    python benchmarks/gpu_check.py --device cpu --tiny --out runs/gpu/report-tiny.json
    python benchmarks/gpu_check.py --parts selection        # one part
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
for _path in (str(ROOT), str(HERE)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

logger = logging.getLogger("gpu_check")

SCHEMA_VERSION = 1
PARTS = ("train", "end_to_end", "extract", "selection", "smoke")
PART_TITLES = {
    "train": "(a) MANIQA/MUSIQ training step and evaluation (AMP, peak memory)",
    "end_to_end": "(b) one epoch through train_on_coreset, JPEG decode in workers",
    "extract": "(c) ResNet-50 / ARNIQA extraction (random init, speed only)",
    "selection": "(d) Q-Diverse, k-Center, Herding: device vs numpy",
    "smoke": "(e) smoke sweep on the CPU and on the device, selections compared",
}
#: Seconds each part may use (time a part leaves unused goes to the next ones).
CAPS = {False: {"train": 70, "end_to_end": 50, "extract": 50, "selection": 180, "smoke": 70},
        True: {"train": 60, "end_to_end": 60, "extract": 60, "selection": 60, "smoke": 150}}
DEFAULT_BUDGET_S = {False: 420.0, True: 300.0}
#: Checks whose failure makes the exit status 1 (the others are informational).
HARD_CHECKS = ("selection_exact_where_proven", "smoke_runs_ok", "smoke_selections_equal",
               "smoke_torch_backend_within_tie_rule")
MIN_PART_S = 10.0  # a part is not started with less time than this
LABEL = "random-init weights (speed only, scores meaningless)"


@dataclass(frozen=True)
class Sizes:
    """The sizes of one mode."""

    photos: int  # JPEGs written for (b) and (c)
    e2e_images: int  # of which (b) uses the first ones (75 % train, 25 % test)
    extract_images: int
    extract_batch: int
    extract_repeats: int
    extract_options: dict  # encoder options (tiny: ARNIQA on small images)
    train_steps: int | None
    train_warmup: int | None
    e2e_workers: int | str
    select_sizes: tuple[int, int]
    select_dims: tuple[int, int]
    select_fraction: float  # Q-Diverse
    greedy_fraction: float  # k-Center and Herding (a pass over the rows per pick)
    smoke_fractions: int | None  # how many of the smoke sweep's fractions (None: all)


SIZES = {
    False: Sizes(photos=1024, e2e_images=384, extract_images=1024, extract_batch=128,
                 extract_repeats=3, extract_options={}, train_steps=10, train_warmup=3,
                 e2e_workers="auto", select_sizes=(100_000, 1_000_000), select_dims=(512, 512),
                 select_fraction=0.10, greedy_fraction=0.01, smoke_fractions=None),
    True: Sizes(photos=16, e2e_images=16, extract_images=4, extract_batch=2, extract_repeats=1,
                extract_options={"arniqa": {"max_short_side": 64}}, train_steps=None,
                train_warmup=None, e2e_workers=1, select_sizes=(2_000, 6_000),
                select_dims=(16, 16), select_fraction=0.10, greedy_fraction=0.01,
                smoke_fractions=1),
}
SELECT_METHODS = ("qdiverse", "kcenter", "herding")


@dataclass
class Config:
    """What a part needs (picklable: it travels to the part's process)."""

    device: str
    tiny: bool
    work: str
    photos_dir: str | None
    deadline: float = 0.0  # time.time() by which the part must have finished
    smoke_executor: str = "python"
    result_path: str = ""
    extra: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------ labels
def device_label(device) -> str:
    """``"NVIDIA H200 (cuda:0)"`` or ``"<CPU model>, torch cpu, <n> threads"``."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"{torch.cuda.get_device_name(index)} (cuda:{index})"
    threads = torch.get_num_threads()
    from qd_lib.utils.machine import cpu_model

    return f"{cpu_model()}, torch cpu, {threads} thread{'s' if threads != 1 else ''}"


def numpy_label() -> str:
    """The numpy path's label: this machine's CPU, one BLAS thread (as select() runs it)."""
    from qd_lib.utils.machine import cpu_model

    return f"{cpu_model()}, numpy, 1 BLAS thread"


# ------------------------------------------------------------------------- part helpers
def _emit(cfg: Config, result: dict) -> None:
    """Write the part's result so far (atomically): a part stopped at its deadline keeps it."""
    from qd_lib.utils.io import atomic_write_json

    atomic_write_json(cfg.result_path, result)


def _photo_manifest(folder: Path, n: int, *, split: bool):
    """The first ``n`` photos written by the parent, as a Manifest (75/25 train/test split)."""
    import pandas as pd

    from qd_lib.data import DatasetInfo, Manifest

    table = pd.read_csv(folder / "photos.csv", dtype={"image_id": str}).iloc[:n].copy()
    if split:
        table["split_paper"] = ["train" if i < int(n * 0.75) else "test" for i in range(n)]
    return Manifest(table.reset_index(drop=True), DatasetInfo(name="gpu-bench",
                                                              mos_range=(1, 5)))


def part_train(cfg: Config) -> dict:
    """(a) Training-step and evaluation throughput of the paper (``--tiny``: tiny) configs."""
    from qd_lib.training.throughput import measure_throughput

    s = SIZES[cfg.tiny]
    label = device_label(cfg.device)
    res = measure_throughput(tiny=cfg.tiny, device=cfg.device, steps=s.train_steps,
                             warmup=s.train_warmup)
    figures = [{**f, "device": label} for f in res["figures"]]
    return {"figures": figures, "config": res["config"], "torch": res["torch"]}


def part_end_to_end(cfg: Config) -> dict:
    """(b) One epoch through train_on_coreset with JPEG decoding in DataLoader workers."""
    from qd_lib.training.throughput import measure_throughput

    s = SIZES[cfg.tiny]
    folder = Path(cfg.photos_dir)
    manifest = _photo_manifest(folder, s.e2e_images, split=True)
    label = device_label(cfg.device)
    res = measure_throughput(manifest, folder, tiny=cfg.tiny, models=("maniqa",),
                             device=cfg.device, steps=3 if not cfg.tiny else None, warmup=1,
                             workers=s.e2e_workers)
    figures = [{**f, "device": label} for f in res["figures"]]
    return {"figures": figures, "config": res["config"]}


def part_extract(cfg: Config) -> dict:
    """(c) Extraction throughput of ResNet-50 and the ARNIQA architecture (random init)."""
    from gpu_extract import measure_extraction

    s = SIZES[cfg.tiny]
    folder = Path(cfg.photos_dir)
    manifest = _photo_manifest(folder, s.extract_images, split=False)
    work = Path(cfg.work) / "extract"
    os.environ["QD_RUNS_DIR"] = str(work / "runs")
    records = measure_extraction(manifest, folder, cfg.device, batch_size=s.extract_batch,
                                 repeats=s.extract_repeats, work_dir=work,
                                 encoder_options=s.extract_options)
    label = device_label(cfg.device)
    return {"figures": [{**r, "device": label} for r in records]}


# ------------------------------------------------------------------------ (d) selection
def write_selection_features(path: Path, n: int, dims: tuple[int, int], device: str, *,
                             seed: int = 0, n_clusters: int = 40) -> None:
    """``n`` seeded clustered rows, float16, ``content`` then ``quality`` columns, to ``path``
    (a ``.npy`` written chunk by chunk through ``open_memmap``). The rows are drawn by torch on
    ``device`` (seconds for a million rows; the stream depends on the device type)."""
    import numpy as np
    import torch

    d = sum(dims)
    gen = torch.Generator(device=device).manual_seed(seed)
    centres = torch.randn((n_clusters, d), generator=gen, device=device) * 3.0
    scales = torch.rand(n_clusters, generator=gen, device=device) + 0.5  # U(0.5, 1.5)
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n, d))
    step = 65536
    for start in range(0, n, step):
        k = min(step, n - start)
        labels = torch.randint(n_clusters, (k,), generator=gen, device=device)
        block = torch.randn((k, d), generator=gen, device=device)
        block = block * scales[labels, None] + centres[labels]
        X[start:start + k] = block.to(torch.float16).cpu().numpy()
    X.flush()
    del X


def _selection_plan(sizes: tuple[int, int]) -> list[tuple[int, str, str]]:
    """(N, method, backend) in the order run: the Q-Diverse pair at the smaller N first (the
    headline figure), then every device case, then the numpy cases (the slowest)."""
    small, large = sizes
    plan = [(small, "qdiverse", "torch"), (small, "qdiverse", "numpy")]
    plan += [(small, m, "torch") for m in SELECT_METHODS[1:]]
    plan += [(large, m, "torch") for m in SELECT_METHODS]
    plan += [(small, m, "numpy") for m in SELECT_METHODS[1:]]
    plan += [(large, m, "numpy") for m in SELECT_METHODS]
    return plan


def _scale(method: str, n: int, budget: int, n0: int, b0: int) -> float:
    """Cost ratio of (n, budget) to (n0, b0): linear in N for Q-Diverse (fixed batch size),
    in N × budget for the greedy methods (a pass over the rows per pick)."""
    return n / n0 if method == "qdiverse" else (n * budget) / (n0 * b0)


def part_selection(cfg: Config) -> dict:
    """(d) Q-Diverse, k-Center and Herding with backend="torch" on the device against numpy."""
    import numpy as np
    import torch

    from qd_lib.selection import select

    s = SIZES[cfg.tiny]
    dev = torch.device(cfg.device)
    cuda = dev.type == "cuda"
    label, host = device_label(dev), numpy_label()
    dc, dq = s.select_dims
    path = Path(cfg.work) / "selection_features.npy"
    t0 = time.perf_counter()
    write_selection_features(path, s.select_sizes[-1], s.select_dims, cfg.device)
    X = np.load(path, mmap_mode="r")
    result: dict = {"data": {
        "rows": s.select_sizes[-1], "content_dim": dc, "quality_dim": dq, "dtype": "float16",
        "storage": "memory-mapped .npy", "clusters": 40, "seed": 0,
        "generator": f"torch on {dev.type}", "written_s": round(time.perf_counter() - t0, 2),
        "qdiverse": f"content = first {dc} columns, quality = last {dq}; fraction "
                    f"{s.select_fraction:g}; default options",
        "kcenter_herding": f"the {dc}-d content rows; fraction {s.greedy_fraction:g} (every "
                           "pick is a pass over the rows); herding variant classic",
        "numpy_path": "select() defaults on this machine's CPU: one BLAS thread, n_jobs=1",
        "estimates": "a case is skipped when its time, extrapolated from the smaller N or from "
                     "a pilot at N/10 (linear in N for Q-Diverse, in N x budget for the "
                     "greedy methods), exceeds the time left"},
        "cases": [], "pairs": [], "figures": []}
    _emit(cfg, result)

    def features(method: str, n: int):
        if method == "qdiverse":
            return {"content": X[:n, :dc], "quality": X[:n, dc:]}
        return X[:n, :dc]

    def fraction_of(method: str) -> float:
        return s.select_fraction if method == "qdiverse" else s.greedy_fraction

    def run(method, n, budget, backend):
        opts = {"seed": 0, "progress": False}
        if backend == "torch":
            opts.update(backend="torch", device=cfg.device)
        if cuda:
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
        start = time.perf_counter()
        sel = select(method, features(method, n), budget, **opts)
        if cuda:
            torch.cuda.synchronize(dev)
        seconds = time.perf_counter() - start
        peak = (round(torch.cuda.max_memory_allocated(dev) / 2**30, 3)
                if cuda and backend == "torch" else None)
        return sel, seconds, peak

    for method in SELECT_METHODS:  # warm-up: CUDA context, cuBLAS/cuSOLVER handles, imports
        run(method, 600, 60, "torch")
    done: dict = {}  # (method, backend) -> (n, budget, seconds) of the last case measured
    picks: dict = {}
    for n, method, backend in _selection_plan(s.select_sizes):
        fraction = fraction_of(method)
        budget = math.floor(fraction * n)
        dims = f"{dc}+{dq}" if method == "qdiverse" else str(dc)
        case = {"part": "selection", "method": method, "n": n, "dims": dims,
                "fraction": fraction, "budget": budget, "backend": backend,
                "device": label if backend == "torch" else host}
        estimate = None
        prev = done.get((method, backend))
        if prev is not None:
            estimate = prev[2] * _scale(method, n, budget, prev[0], prev[1])
        elif backend == "numpy":  # a pilot at N/10 before a possibly long host run
            n_p = max(n // 10, 100)
            b_p = max(1, math.floor(fraction * n_p))
            _, pilot_s, _ = run(method, n_p, b_p, backend)
            case["pilot"] = {"n": n_p, "budget": b_p, "seconds": round(pilot_s, 4)}
            estimate = pilot_s * _scale(method, n, budget, n_p, b_p)
        left = cfg.deadline - time.time()
        if estimate is not None:
            case["estimated_s"] = round(estimate, 2)
        if estimate is not None and estimate > left:
            case.update(status="skipped", note=f"estimated {estimate:.0f} s exceeds the "
                        f"{max(left, 0):.0f} s left")
            result["cases"].append(case)
            _emit(cfg, result)
            continue
        try:
            sel, seconds, peak = run(method, n, budget, backend)
        except Exception as exc:  # recorded; the other cases still run
            case.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:500])
            result["cases"].append(case)
            _emit(cfg, result)
            if cuda:
                torch.cuda.empty_cache()
            continue
        done[(method, backend)] = (n, budget, seconds)
        picks[(method, n, backend)] = sel.indices
        case.update(status="ok", measure="select_seconds", seconds=round(seconds, 4),
                    rows_s=n / seconds, peak_device_memory_GiB=peak)
        if "near_ties" in sel.info:
            case["near_ties"] = sel.info["near_ties"]
        result["cases"].append(case)
        result["figures"].append(case)
        if cuda:
            torch.cuda.empty_cache()
        other = "numpy" if backend == "torch" else "torch"
        if (method, n, other) in picks:
            both = {c["backend"]: c for c in result["cases"]
                    if c["method"] == method and c["n"] == n and c["status"] == "ok"}
            a, b = picks[(method, n, "numpy")], picks[(method, n, "torch")]
            result["pairs"].append({
                "method": method, "n": n, "dims": dims, "fraction": fraction,
                "budget": budget, "numpy_s": both["numpy"]["seconds"],
                "device_s": both["torch"]["seconds"],
                "speedup": both["numpy"]["seconds"] / both["torch"]["seconds"],
                "same_coreset": bool(np.array_equal(a, b)),
                "overlap": len(np.intersect1d(a, b)) / max(1, len(a)),
                "first_difference": (None if np.array_equal(a, b)
                                     else int(np.flatnonzero(a != b)[0])),
                "near_ties": both["torch"].get("near_ties"),
                "peak_device_memory_GiB": both["torch"]["peak_device_memory_GiB"],
                "numpy_device": host, "device": label})
        _emit(cfg, result)
    return result


# ---------------------------------------------------------------------------- (e) smoke
def part_smoke(cfg: Config) -> dict:
    """(e) The smoke sweep on the CPU and on the device; selections compared."""
    import torch

    work = Path(cfg.work) / "smoke"
    os.environ["QD_RUNS_DIR"] = str(work / "cache")  # embeddings of the sweep: not in runs/
    from qd_lib.runner import expand, load_sweep, run_sweep
    from qd_lib.runner.experiment import SELECTION, open_run_dataset
    from qd_lib.selection import get_method
    from qd_lib.selection.records import select_on_dataset
    from qd_lib.utils.io import read_verified_json

    s = SIZES[cfg.tiny]
    data = load_sweep(ROOT / "notebooks" / "sweeps" / "smoke.yaml")
    if s.smoke_fractions is not None:
        data = {**data, "fractions": list(data["fractions"])[:s.smoke_fractions]}
    specs = expand(data)
    dev = torch.device(cfg.device)
    labels = {"cpu": device_label("cpu"), "device": device_label(dev)}
    result: dict = {"sweep": "notebooks/sweeps/smoke.yaml", "runs": [], "figures": [],
                    "executor": cfg.smoke_executor,
                    "fractions": list(data["fractions"]), "checks": {}}

    def sweep(where: str, device: str) -> dict:
        root = work / where
        report = run_sweep(specs, runs_root=root, device=device, executor=cfg.smoke_executor,
                           show_progress=False, force=True)
        records = {r["run_id"]: r for r in report.records}
        out = {}
        for spec in specs:
            record = records.get(spec.run_id, {"status": "missing"})
            ids = None
            path = root / spec.run_id / SELECTION
            if path.is_file():
                ids = read_verified_json(path, "run selection record")["image_ids"]
            out[spec.run_id] = (record, ids)
        return out

    cpu = sweep("cpu", "cpu")
    on_device = sweep("device", cfg.device)
    if dev.type == "cpu":
        result["note"] = "the device is the CPU: the second sweep repeats the first"
    equal, torch_equal, torch_consistent = [], [], []
    for spec in specs:
        rec, ids = cpu[spec.run_id]
        row = {"run_id": spec.run_id, "method": spec.method, "fraction": spec.fraction,
               "seed": spec.seed, "cpu": _run_summary(rec, labels["cpu"])}
        result["figures"].append({"part": "smoke", "measure": "train_seconds",
                                  "run_id": spec.run_id, "device": labels["cpu"],
                                  "seconds": rec.get("train_seconds")})
        drec, dids = on_device[spec.run_id]
        row["device"] = _run_summary(drec, labels["device"])
        row["selection_equal"] = ids is not None and ids == dids
        equal.append(row["selection_equal"])
        result["figures"].append({"part": "smoke", "measure": "train_seconds",
                                  "run_id": spec.run_id, "device": labels["device"],
                                  "seconds": drec.get("train_seconds")})
        if "backend" in get_method(spec.method).options and ids is not None:
            loaded = open_run_dataset(spec)
            options = {**spec.method_params, "backend": "torch", "device": cfg.device}
            res = select_on_dataset(loaded, spec.method, spec.fraction,
                                    feature_set=spec.features, seed=spec.seed,
                                    options=options, scheme=spec.scheme)
            same = list(res.image_ids) == list(ids)
            row["torch_backend_selection_equal"] = same
            row["torch_backend_device"] = labels["device"]
            near = res.selection.info.get("near_ties")
            if near is not None:
                row["near_ties"] = near
            torch_equal.append(same)
            # a difference is within the documented tie rule only where near ties were flagged
            torch_consistent.append(same or bool(near))
        result["runs"].append(row)
        _emit(cfg, result)
    failed = [r["run_id"] for r in result["runs"]
              if r["cpu"]["status"] != "ok" or r.get("device", {}).get("status", "ok") != "ok"]
    result["checks"] = {
        "smoke_runs_ok": not failed,
        "smoke_selections_equal": all(equal) if equal else None,
        "smoke_torch_backend_selections_equal": all(torch_equal) if torch_equal else None,
        "smoke_torch_backend_within_tie_rule": (all(torch_consistent) if torch_consistent
                                                 else None),
    }
    if failed:
        result["failed_runs"] = failed
    return result


def _run_summary(record: dict, label: str) -> dict:
    metrics = record.get("metrics") or {}
    return {"status": record.get("status"), "device": label,
            "srcc": metrics.get("srcc"), "plcc": metrics.get("plcc"),
            "train_seconds": record.get("train_seconds"),
            "error": (record.get("error") or {}).get("message")}


PART_FUNCS = {"train": part_train, "end_to_end": part_end_to_end, "extract": part_extract,
              "selection": part_selection, "smoke": part_smoke}


# ------------------------------------------------------------------------- the parent
def _child(part: str, cfg: Config) -> None:
    """Body of a part's process: its own process group (so the parent can stop all of it)."""
    try:
        os.setpgrp()  # its own process group: the parent stops it and its workers together
    except OSError:  # pragma: no cover - a sandbox that refuses it: only this process is stopped
        pass
    # a process started by the forkserver inherits its start method; DataLoader workers and
    # the rest of this part start the platform's default way, as in a plain process
    multiprocessing.set_start_method(None, force=True)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format=f"[{part}] %(levelname)s %(name)s: %(message)s")
    if cfg.tiny and cfg.device == "cpu":
        import torch

        torch.set_num_threads(1)  # a check of the script: OpenMP threads stall on busy cores
    try:
        result = PART_FUNCS[part](cfg)
        result["status"] = "ok"
    except BaseException as exc:  # recorded: the parent carries on with the next part
        partial = {}
        if os.path.isfile(cfg.result_path):
            with open(cfg.result_path) as fh:
                partial = json.load(fh)
        result = {**partial, "status": "failed", "error": f"{type(exc).__name__}: {exc}"[:2000],
                  "traceback": traceback.format_exc()[-4000:]}
    _emit(cfg, result)
    sys.stdout.flush()
    sys.stderr.flush()


def run_part(part: str, cfg: Config, timeout: float, ctx) -> dict:
    """Run one part in its own process; stop it (and its workers) at ``timeout``."""
    proc = ctx.Process(target=_child, args=(part, cfg), name=f"gpu-check-{part}")
    start = time.perf_counter()
    proc.start()
    proc.join(timeout)
    timed_out = proc.is_alive()
    if timed_out:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                if os.getpgid(proc.pid) == proc.pid:
                    os.killpg(proc.pid, sig)  # the part's process group: only what it started
                else:  # pragma: no cover - no group of its own
                    os.kill(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                break
            proc.join(5)
            if not proc.is_alive():
                break
    seconds = time.perf_counter() - start
    result: dict = {}
    if os.path.isfile(cfg.result_path):
        with open(cfg.result_path) as fh:
            result = json.load(fh)
    if timed_out:
        result.update(status="timeout", error=f"stopped after {timeout:.0f} s, its share of "
                      "the time budget; what it measured before is kept")
    elif not result.get("status"):
        result.update(status="failed", error=f"the part's process exited with code "
                      f"{proc.exitcode} and no result")
    result.update(seconds=round(seconds, 2), timeout_s=round(timeout, 1))
    return result


def git_info(commit: str | None) -> dict:
    """The commit the check ran on: ``--commit``/``QD_GIT_COMMIT``, else ``git rev-parse``."""
    given = commit or os.environ.get("QD_GIT_COMMIT")
    info = {"commit": given, "source": "given" if given else None, "dirty": None}
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10)
        if head.returncode == 0:
            status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                    cwd=ROOT, capture_output=True, text=True, timeout=10)
            info["git_head"] = head.stdout.strip()
            info["dirty"] = bool(status.stdout.strip()) if status.returncode == 0 else None
            if not given:
                info.update(commit=head.stdout.strip(), source="git")
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def environment(device: str) -> dict:
    import numpy as np
    import torch

    dev = torch.device(device)
    info = {"requested": None, "resolved": device, "type": dev.type, "name": device_label(dev)}
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        info.update(gpu=props.name, capability=f"{props.major}.{props.minor}",
                    memory_GiB=round(props.total_memory / 2**30, 1),
                    multiprocessors=props.multi_processor_count,
                    count=torch.cuda.device_count())
    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "cuda": torch.version.cuda, "cudnn": (torch.backends.cudnn.version()
                                                      if torch.backends.cudnn.is_available()
                                                      else None),
                "numpy": np.__version__}
    try:
        import torchvision

        versions["torchvision"] = torchvision.__version__
    except Exception:  # noqa: BLE001 - recorded as missing
        versions["torchvision"] = None
    from qd_lib.utils.machine import machine_record

    machine = machine_record()
    host = {"cpu": machine["cpu"], "cores": machine["usable_cpus"],
            "platform": platform.platform()}
    return {"device": info, "versions": versions, "host": host}


def resolve_check_device(name: str) -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``; CUDA asked for and absent → error."""
    import torch

    from qd_lib.selection._backend import resolve_backend

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return resolve_backend("torch", name, "gpu_check")


# ----------------------------------------------------------------------------- summary
def _fmt(x, digits=1) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def summary_lines(report: dict) -> list[str]:
    d, v, g = report["device"], report["versions"], report["git"]
    lines = [
        f"gpu-check ({report['mode']}) on {d['name']} -- torch {v['torch']}, CUDA "
        f"{v['cuda'] or '-'}, commit {(g.get('commit') or 'unknown')[:12]}"
        f"{' (uncommitted changes)' if g.get('dirty') else ''}; {report['seconds']:.0f} s of a "
        f"{report['budget_s']:.0f} s budget",
        f"{'part':<68} {'status':<8} {'seconds':>8}",
    ]
    for name, part in report["parts"].items():
        note = f"  {part.get('error') or part.get('note') or ''}".rstrip()
        lines.append(f"{PART_TITLES[name]:<68} {part['status']:<8} "
                     f"{_fmt(part.get('seconds')):>8}{note[:150]}")
    lines.append("figures (each on the device in brackets; models and encoders: " + LABEL + ")")
    parts = report["parts"]
    for f in parts.get("train", {}).get("figures", []) + \
            parts.get("end_to_end", {}).get("figures", []):
        if f["measure"] == "end_to_end_epoch":
            verdict = {True: "decode-bound", False: "not decode-bound", None: "n/a"}
            lines.append(
                f"  [{f['device']}] {f['model']}/{f['config']} end-to-end epoch: "
                f"{f['n_train']} train + {f['n_test']} test JPEGs, {f['workers']} workers: "
                f"{_fmt(f['img_s'])} img/s (input pipeline alone {_fmt(f['loader_img_s'])} "
                f"img/s, pure step {_fmt(f['step_train_img_s'])} img/s): "
                f"{verdict[f['decode_bound']]}")
        else:
            peak = f", peak {f['peak_memory_GiB']:.2f} GiB" if f.get("peak_memory_GiB") else ""
            lines.append(f"  [{f['device']}] {f['model']}/{f['config']} {f['measure']}: "
                         f"{_fmt(f['img_s'])} img/s (batch {f['batch_size']}, amp {f['amp']}"
                         f"{peak})")
    for f in parts.get("extract", {}).get("figures", []):
        what = ("raw forward on decoded tensors" if f["measure"] == "extract_raw_forward"
                else f"full extraction, decode in {f.get('workers')} workers")
        lines.append(f"  [{f['device']}] {f['encoder']} ({f['input_policy']}, channels_last "
                     f"{f['channels_last']}, amp {f['amp']}) {what}: {_fmt(f['img_s'])} img/s "
                     f"-- random init, speed only")
    sel = parts.get("selection", {})
    for p in sel.get("pairs", []):
        peak = next((c.get("peak_device_memory_GiB") for c in sel["cases"]
                     if c["method"] == p["method"] and c["n"] == p["n"]
                     and c["backend"] == "torch" and c["status"] == "ok"), None)
        lines.append(f"  {p['method']} N={p['n']:,} d={p['dims']} {p['fraction']:.0%}: numpy "
                     f"[{p['numpy_device']}] {p['numpy_s']:.2f} s | torch [{p['device']}] "
                     f"{p['device_s']:.2f} s"
                     f"{f' (peak {peak:.2f} GiB)' if peak is not None else ''} | x"
                     f"{p['speedup']:.1f} | "
                     f"{'same coreset' if p['same_coreset'] else 'DIFFERENT coreset'}")
    paired = {(p["method"], p["n"]) for p in sel.get("pairs", [])}
    for c in sel.get("cases", []):
        if (c["method"], c["n"]) in paired:
            continue
        what = (f"{c['seconds']:.2f} s" + (f" (peak {c['peak_device_memory_GiB']:.2f} GiB)"
                                          if c.get("peak_device_memory_GiB") else "")
                if c["status"] == "ok" else f"{c['status']}: {c.get('note') or c.get('error')}")
        lines.append(f"  {c['method']} N={c['n']:,} d={c['dims']} {c['fraction']:.0%} "
                     f"{c['backend']} [{c['device']}]: {what}")
    smoke = parts.get("smoke", {})
    if smoke.get("runs"):
        checks = smoke.get("checks", {})
        n_runs = len(smoke["runs"])
        lines.append(f"  smoke sweep, {n_runs} runs: "
                     f"{'all ok' if checks.get('smoke_runs_ok') else 'FAILED runs'}; "
                     f"selections equal (CPU vs device sweep): "
                     f"{checks.get('smoke_selections_equal')}; torch-backend selections "
                     f"equal: {checks.get('smoke_torch_backend_selections_equal')}")
    speed = report.get("qdiverse_speedup")
    if speed:
        lines.append(f"qdiverse_speedup_100k = {_fmt(report['qdiverse_speedup_100k'], 2)} "
                     f"(Q-Diverse at N = {speed['n']:,}: numpy {speed['numpy_s']:.2f} s / "
                     f"torch on {speed['device']} {speed['device_s']:.2f} s = "
                     f"{speed['value']:.2f})")
    return lines


def collect(report: dict) -> None:
    """Fill ``figures``, ``checks`` and the Q-Diverse speedup from the parts."""
    figures, checks = [], {}
    for name, part in report["parts"].items():
        for f in part.get("figures", []):
            figures.append({"part": name, **f})
    report["figures"] = figures
    sel = report["parts"].get("selection", {})
    pairs = sel.get("pairs", [])
    if sel:
        # informational: Q-Diverse's and k-Center's float32 picks may differ at near ties
        checks["selection_same_coreset"] = {f"{p['method']}@{p['n']}": p["same_coreset"]
                                            for p in pairs}
        # Herding is exact on every device; k-Center where no near tie was flagged
        checks["selection_exact_where_proven"] = all(
            p["same_coreset"] for p in pairs
            if p["method"] == "herding" or (p["method"] == "kcenter" and not p["near_ties"]))
    smoke = report["parts"].get("smoke", {})
    checks.update(smoke.get("checks", {}))
    report["checks"] = checks
    qd = next((p for p in pairs if p["method"] == "qdiverse"), None)
    report["qdiverse_speedup"] = None if qd is None else {
        "n": qd["n"], "value": qd["speedup"], "numpy_s": qd["numpy_s"],
        "device_s": qd["device_s"], "numpy_device": qd["numpy_device"], "device": qd["device"]}
    report["qdiverse_speedup_100k"] = (qd["speedup"] if qd is not None and qd["n"] == 100_000
                                       else None)


#: Top-level keys every report has.
REPORT_KEYS = ("schema_version", "mode", "device", "versions", "host", "git", "budget_s",
               "seconds", "parts", "checks", "figures", "qdiverse_speedup",
               "qdiverse_speedup_100k", "summary")


def validate_report(report: dict) -> list[str]:
    """What is wrong with a report (empty when nothing): missing keys, a figure without the
    device it was measured on, a part that ran without figures, an unknown commit."""
    problems = [f"missing key {k!r}" for k in REPORT_KEYS if k not in report]
    for name, part in report.get("parts", {}).items():
        if part.get("status") == "ok" and not part.get("figures"):
            problems.append(f"part {name!r} ran but has no figures")
    for i, f in enumerate(report.get("figures", [])):
        if not isinstance(f.get("device"), str) or not f["device"].strip():
            problems.append(f"figure {i} ({f.get('part')}, {f.get('measure')}) names no device")
    for p in report.get("parts", {}).get("selection", {}).get("pairs", []):
        if not (p.get("device") and p.get("numpy_device")):
            problems.append(f"selection pair {p.get('method')}@{p.get('n')} lacks a device")
    if not report.get("git", {}).get("commit"):
        problems.append("the commit is unknown (no git here: pass --commit or QD_GIT_COMMIT)")
    return problems


README_BLOCK = "gpu"
README_COMMAND = "python benchmarks/gpu_check.py --readme figures/gpu/report.json"


def readme_summary(report_path: Path) -> str:
    """The README's GPU block body: ``report_path``'s summary as the check printed it, fenced
    (``python -m qd_lib.readme`` writes it too)."""
    report = json.loads(Path(report_path).read_text())
    return "\n".join(["```", *summary_lines(report), "```"])


def write_readme_summary(report_path: Path, readme: Path) -> int:
    """Replace the README's GPU summary (between the ``gpu`` markers) with ``report_path``'s
    summary, as the check printed it: no figure is typed by hand."""
    from qd_lib.utils.io import atomic_write_text
    from qd_lib.utils.readme_blocks import ReadmeBlockError, replace_block

    try:
        text = replace_block(readme.read_text(encoding="utf-8"), README_BLOCK,
                             readme_summary(report_path), command=README_COMMAND)
    except ReadmeBlockError as exc:
        print(f"gpu_check: {readme}: {exc}", file=sys.stderr)
        return 2
    atomic_write_text(readme, text)
    print(f"wrote the summary of {report_path} into {readme}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, "
                                                     "cuda:<i>")
    ap.add_argument("--tiny", action="store_true",
                    help="toy sizes: a CPU check of the script itself in about a minute")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "gpu" / "report.json")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="global time budget in seconds (default 420; --tiny 300)")
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    ap.add_argument("--commit", default=None,
                    help="the commit the working tree is (where it has no .git)")
    ap.add_argument("--smoke-executor", choices=("python", "papermill"), default="python")
    ap.add_argument("--readme", type=Path, default=None, metavar="REPORT",
                    help="run nothing: write REPORT's summary into README.md's GPU section")
    args = ap.parse_args(argv)
    if args.readme is not None:
        return write_readme_summary(args.readme, ROOT / "README.md")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    started = time.time()
    budget = args.budget_s if args.budget_s is not None else DEFAULT_BUDGET_S[args.tiny]
    try:
        device = resolve_check_device(args.device)
    except (ValueError, TypeError) as exc:
        print(f"gpu_check: {exc}", file=sys.stderr)
        return 2
    if args.tiny and device == "cpu":
        import torch

        torch.set_num_threads(1)  # as the parts run (see _child): the labels say so
    report = {"schema_version": SCHEMA_VERSION, "tool": "benchmarks/gpu_check.py",
              "mode": "tiny" if args.tiny else "full", "budget_s": budget,
              "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
              **environment(device), "git": git_info(args.commit), "sizes": asdict(
                  SIZES[args.tiny]), "weights": LABEL, "parts": {}}
    report["device"]["requested"] = args.device
    logger.info("gpu-check (%s) on %s, budget %.0f s", report["mode"], report["device"]["name"],
                budget)
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["numpy", "torch"])
    s = SIZES[args.tiny]
    with tempfile.TemporaryDirectory(prefix="qd_gpu_check_") as tmp:
        tmp = Path(tmp)
        photos = None
        if {"end_to_end", "extract"} & set(args.parts):
            from _shared import write_photo_dataset

            t0 = time.perf_counter()
            photos = tmp / "photos"
            manifest = write_photo_dataset(photos, s.photos, random_mos=True)
            manifest.table.to_csv(photos / "photos.csv", index=False)
            logger.info("%d JPEGs 512x384 written in %.1f s", s.photos, time.perf_counter() - t0)
        carry = 0.0
        for part in args.parts:
            left = budget - (time.time() - started)
            timeout = min(CAPS[args.tiny][part] + carry, left)
            if timeout < MIN_PART_S:
                report["parts"][part] = {"status": "skipped", "note": f"time budget: "
                                         f"{max(left, 0):.0f} s left of {budget:.0f} s"}
                logger.info("%s: skipped (%.0f s left)", part, left)
                continue
            work = tmp / part
            work.mkdir()
            cfg = Config(device=device, tiny=args.tiny, work=str(work),
                         photos_dir=str(photos) if photos else None,
                         deadline=time.time() + timeout - 3.0,
                         smoke_executor=args.smoke_executor,
                         result_path=str(tmp / f"{part}.json"))
            logger.info("%s: %s (up to %.0f s) ...", part, PART_TITLES[part], timeout)
            result = run_part(part, cfg, timeout, ctx)
            carry = max(0.0, timeout - result["seconds"])
            report["parts"][part] = {"title": PART_TITLES[part], **result}
            logger.info("%s: %s in %.1f s%s", part, result["status"], result["seconds"],
                        f" ({result.get('error')})" if result.get("error") else "")
    report["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    report["seconds"] = round(time.time() - started, 1)
    collect(report)
    report["summary"] = summary_lines(report)
    from qd_lib.utils.io import atomic_write_json, to_jsonable

    report["problems"] = validate_report(report)
    atomic_write_json(args.out, to_jsonable(report, nan_to_none=True))
    print("\n".join(report["summary"]))
    print(f"wrote {Path(args.out).name}")
    bad_parts = [p for p, r in report["parts"].items() if r["status"] != "ok"]
    bad_checks = [k for k in HARD_CHECKS if report["checks"].get(k) is False]
    if bad_parts or bad_checks or report["problems"]:
        print(f"gpu-check: not ok: parts {bad_parts or '-'}, checks {bad_checks or '-'}, "
              f"report {report['problems'] or '-'}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

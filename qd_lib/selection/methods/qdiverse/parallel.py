"""Q-Diverse batch execution: serial, a process pool, or a Dask-like client; memmap transport.

Design note ``qdiverse.md`` §2.2 ("batches are processed independently"), §2.12 (per-batch
spawned seeds, so every executor gives the same result) and §5 (one BLAS thread per batch; two
single-threaded workers), plus the design decisions' scale-out item (Dask, memory-mappable
``.npy`` embeddings streamed batch by batch).

Each batch becomes a picklable :class:`BatchTask`. Serially it reads its rows straight from
the caller's arrays; in workers, a C-contiguous memory-mapped input travels as file name +
offset (:class:`MemmapRef`) and each worker maps the file itself, any other input as the
batch's pickled rows. The backend (:mod:`.backends`) takes each batch's rows as stored and
widens float16 per batch (on the device, for torch), never the whole input.
"""
from __future__ import annotations

import contextlib
import logging
import mmap
import multiprocessing
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from qd_lib.selection.methods.qdiverse.backends import get_backend
from qd_lib.selection.methods.qdiverse.batches import batch_seed
from qd_lib.selection.methods.qdiverse.options import resolve_n_jobs
from qd_lib.selection.methods.qdiverse.pipeline import select_in_batch

logger = logging.getLogger(__name__)

__all__ = ["BatchTask", "MemmapRef", "choose_executor", "make_tasks", "memmap_ref",
           "run_batches", "run_task"]


@dataclass(frozen=True)
class MemmapRef:
    """Enough to re-open a C-contiguous memory-mapped array in another process."""

    filename: str
    offset: int
    dtype: str
    shape: tuple[int, ...]

    def open(self) -> np.memmap:
        return np.memmap(self.filename, dtype=np.dtype(self.dtype), mode="r",
                         offset=self.offset, shape=self.shape, order="C")


def memmap_ref(arr: np.ndarray) -> MemmapRef | None:
    """Describe ``arr`` by file position if it is a C-contiguous view of a shared file mapping."""
    if not arr.flags.c_contiguous:
        return None
    root = arr
    while isinstance(root, np.ndarray) and not (
            isinstance(root, np.memmap) and isinstance(root.base, mmap.mmap)):
        root = root.base
    if not isinstance(root, np.memmap) or not root.filename:
        return None
    if root.mode not in ("r", "r+", "w+"):  # "c" (copy-on-write) edits are not in the file
        return None
    position = int(root.offset) + (arr.ctypes.data - root.ctypes.data)
    return MemmapRef(os.fspath(root.filename), position, arr.dtype.str, tuple(arr.shape))


@dataclass
class BatchTask:
    """One batch's work: which rows, its budget and seed, where to read its data."""

    index: int
    rows: slice | np.ndarray        # rows of the full input (for mapping picks back)
    source_rows: slice | np.ndarray  # rows to read from ``content``/``quality``
    budget: int
    seed: np.random.SeedSequence
    content: np.ndarray | MemmapRef | None
    quality: np.ndarray | MemmapRef | None
    options: dict = field(repr=False)
    initial: np.ndarray | None = None  # batch-local rows already selected (conditioning)


def read_rows(source, rows, xp):
    """One batch's rows as a backend array (``None`` for an unused embedding). Only this
    batch is read from a memmap; ``xp.from_host`` widens float16 rows, so a half-precision
    memmap is never converted as a whole and every later stage sees float32/float64."""
    if source is None:
        return None
    array = source.open() if isinstance(source, MemmapRef) else source
    return xp.from_host(array[rows])


_THREADPOOL_CONTROLLER = None


def _single_blas_thread():
    """Context limiting BLAS to one thread (bit-identical results in every execution mode)."""
    global _THREADPOOL_CONTROLLER
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        return contextlib.nullcontext()
    if _THREADPOOL_CONTROLLER is None:
        _THREADPOOL_CONTROLLER = ThreadpoolController()
    return _THREADPOOL_CONTROLLER.limit(limits=1, user_api="blas")


def run_task(task: BatchTask) -> dict:
    """Select inside one batch (runs in the caller, a worker process or a Dask worker)."""
    xp = get_backend(task.options)
    with _single_blas_thread():
        Xc = read_rows(task.content, task.source_rows, xp)
        Xq = read_rows(task.quality, task.source_rows, xp)
        rng = np.random.default_rng(task.seed)
        result = select_in_batch(Xc, Xq, task.budget, rng, task.options, xp,
                                 initial=task.initial)
    local = result.pop("local")
    if isinstance(task.rows, slice):
        result["indices"] = (task.rows.start or 0) + local
    else:
        result["indices"] = np.asarray(task.rows, dtype=np.int64)[local]
    result["index"] = task.index
    return result


def choose_executor(o: dict, n_batches: int, Xc, Xq) -> tuple[str, int, str]:
    """``(executor, n_workers, transport)`` for the resolved options and inputs.

    ``executor`` is "serial", "processes" or "client"; ``transport`` is "in-process" (serial),
    "path" (every used input is a shareable memory mapping) or "array" (pickled batch rows).
    """
    n_workers = min(resolve_n_jobs(o["n_jobs"]), n_batches)
    if o["client"] is not None:
        executor = "client"
    elif n_workers > 1:
        executor = "processes"
    else:
        return "serial", 1, "in-process"
    used = [X for X in (Xc, Xq) if X is not None]
    refs = [memmap_ref(X) for X in used]
    transport = "path" if refs and all(ref is not None for ref in refs) else "array"
    if transport == "array" and any(isinstance(X, np.memmap) for X in used):
        logger.info("Q-Diverse: the memory-mapped input is not a C-contiguous shared file "
                    "mapping; sending the batches' rows to the workers instead")
    return executor, n_workers, transport


def make_tasks(Xc, Xq, plan, budgets, root, o, transport: str,
               initial=None) -> Iterator[BatchTask]:
    """Build the batches' tasks lazily, their data per ``transport``; ``initial`` holds each
    batch's local rows already selected (or is ``None``)."""
    options = {k: v for k, v in o.items() if k not in ("client", "progress")}
    refs = (None, None)
    if transport == "path":
        refs = tuple(None if X is None else memmap_ref(X) for X in (Xc, Xq))
    for i, (rows, m) in enumerate(zip(plan, budgets)):
        if transport == "in-process":
            content, quality, source_rows = Xc, Xq, rows
        elif transport == "path":
            content, quality, source_rows = refs[0], refs[1], rows
        else:  # pickle only this batch's rows
            content = None if Xc is None else np.ascontiguousarray(Xc[rows])
            quality = None if Xq is None else np.ascontiguousarray(Xq[rows])
            source_rows = slice(None)
        yield BatchTask(i, rows, source_rows, int(m), batch_seed(root, i), content, quality,
                        options, None if initial is None else initial[i])


def _run_processes(tasks: Iterator[BatchTask], n_workers: int,
                   start_method: str) -> Iterator[dict]:
    """Run tasks on a process pool, at most ``2·n_workers`` in flight, results in order."""
    context = multiprocessing.get_context(start_method)
    pool = ProcessPoolExecutor(max_workers=n_workers, mp_context=context)
    try:
        pending = deque()
        for task in tasks:
            pending.append(pool.submit(run_task, task))
            if len(pending) >= 2 * n_workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    except BaseException:  # a failed batch, or the caller stopped: drop the queued batches
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _run_client(tasks: Iterator[BatchTask], client) -> Iterator[dict]:
    futures = client.map(run_task, list(tasks))
    yield from client.gather(futures)


def run_batches(tasks: Iterator[BatchTask], executor: str, n_workers: int,
                o: dict) -> Iterator[dict]:
    """The batches' results, in batch order, from the chosen executor."""
    if executor == "serial":
        return map(run_task, tasks)
    if executor == "processes":
        return _run_processes(tasks, n_workers, o["start_method"])
    return _run_client(tasks, o["client"])

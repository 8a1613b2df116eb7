"""Cached, resumable embedding extraction, in one process or sharded over a Dask cluster.

:func:`extract` encodes rows of a manifest with one encoder and stores the result as
memory-mappable ``.npy`` files plus a JSON sidecar::

    runs_dir()/embeddings/<dataset>/<encoder key>__<hash8>.npy          # main embedding
    runs_dir()/embeddings/<dataset>/<encoder key>__<hash8>.<output>.npy # further outputs (LIQE)
    runs_dir()/embeddings/<dataset>/<encoder key>__<hash8>.json         # sidecar

``hash8`` identifies the data (manifest hash and the requested rows); the sidecar records the
manifest hash, rows hash, encoder, options, input policy, weights files and their sha256,
library versions, device and timing. A later call with the same data and encoder reuses the
files without computing anything; one whose sidecar disagrees (other weights file, other
options) raises :class:`~qd_lib.utils.errors.CacheMismatchError` unless ``overwrite=True``.

Integrity: the sidecar also records the sha256 and size of every output file
(``checksums``), and a cached result is checked against them before it is reused
(``verify_cache=True``, the default; :func:`load_embeddings` checks too). A file that was changed
after it was written is recomputed with a warning naming it, or, with ``on_bad_cache="raise"``
(and in :func:`load_embeddings`, which cannot recompute), raises
:class:`~qd_lib.utils.errors.CacheMismatchError` naming it. A cache written before checksums
were kept cannot be checked and is treated the same way (recomputed, with a message saying why):
its values may be fine, but nothing shows that they are. The check hashes each file once
(sha256, 1 MiB reads): measured 65-70 ms per 100 MB from the page cache on the 2-core
development machine (OpenSSL with SHA-NI; about 105 ms while other jobs load the cores), plus
the disk read when the file is not cached. For scale, an ARNIQA embedding of KADID-10K's
training split (7086 x 4096 float32, 116 MB) costs about 80 ms per open; ``verify_cache=False``
skips the check.

Work is done in fixed chunks of rows, each written atomically to ``<stem>.parts/`` as soon as it
is finished, with the sha256 of its files in its marker; an interrupted run resumes from the
finished chunks whose files still match (others are recomputed) and, since batches never cross
chunk boundaries, produces byte-identical files. The final arrays are assembled and checksummed
at the end and the sidecar is written last, so a sidecar means a complete result.

With ``client=`` (a ``dask.distributed.Client``) the pending chunks become tasks; each worker
loads the encoder once (from the same verified weights) and writes its chunk files into the
shared parts folder, so the output equals the single-process run's.

Bad images: missing, undecodable (corrupt, truncated) and too-small files are reported by image
id with the reason. The run never stops half-way on them: every other chunk is finished and
kept on disk. With ``on_error="raise"`` (default) an :class:`~qd_lib.utils.errors.ImageReadError`
listing them is raised at the end (fix the files and call again: only the chunks that held them
are recomputed); with ``on_error="skip"`` they are left out, and the sidecar's ``rows`` and
``bad_images`` say which rows the arrays hold. Greyscale, palette, CMYK and 16-bit images are
converted to 8-bit RGB by the dataset reader; images smaller than an encoder's input are resized
as the encoder documents (counted under ``conversions`` in the sidecar).
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import multiprocessing
import os
import platform
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qd_lib.data.dataset import IQADataset, check_images
from qd_lib.data.manifest import Manifest
from qd_lib.encoders.base import Encoder, ImageTooSmallError
from qd_lib.paths import display_path, runs_dir
from qd_lib.utils.device import resolve_device
from qd_lib.utils.errors import CacheMismatchError, ImageReadError
from qd_lib.utils.io import atomic_write_bytes, atomic_write_json, sha256_bytes, sha256_file
from qd_lib.utils.progress import progress
from qd_lib.utils.validation import check_option, check_scalar

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
# Sidecar fields that must agree for a cached result to be reused.
_CHECKED = ("schema_version", "manifest_hash", "rows_hash", "encoder_key", "encoder_version",
            "encoder_options", "outputs", "input_policy", "weights_sha256")


# -- results -----------------------------------------------------------------------------------
@dataclass
class Embeddings:
    """A stored extraction: memory-mapped arrays and their sidecar.

    Attributes
    ----------
    path : Path
        The main ``.npy`` file.
    meta : dict
        The sidecar.
    from_cache : bool
        True when this call reused an earlier result without computing.
    """

    path: Path
    meta: dict
    from_cache: bool = False
    _arrays: dict = field(default_factory=dict, repr=False)

    @property
    def sidecar_path(self) -> Path:
        return self.path.with_suffix(".json")

    @property
    def outputs(self) -> list[str]:
        return list(self.meta["outputs"])

    def __getitem__(self, name: str) -> np.ndarray:
        """Memory-mapped array of output ``name`` (read-only)."""
        if name not in self.meta["outputs"]:
            raise KeyError(f"No output {name!r}; this extraction has {self.outputs}.")
        if name not in self._arrays:
            file = self.path.parent / self.meta["outputs"][name]["file"]
            self._arrays[name] = np.load(file, mmap_mode="r")
        return self._arrays[name]

    @property
    def array(self) -> np.ndarray:
        """The main embedding, shape (n_rows, dim), float32, memory-mapped."""
        return self[self.outputs[0]]

    @property
    def rows(self) -> np.ndarray:
        """Manifest row positions of the array's rows, in order."""
        return np.asarray(self.meta["rows"], dtype=np.int64)

    @property
    def files(self) -> list[Path]:
        return [self.path.parent / o["file"] for o in self.meta["outputs"].values()] + [
            self.sidecar_path]

    def verify(self) -> Embeddings:
        """Check every output file against the sha256 recorded in the sidecar; return self.

        Raises
        ------
        CacheMismatchError
            Naming the first file that is missing, has another size or another hash, or the
            sidecar if it records no checksums (written before they were kept).
        """
        problem = _integrity_problem(self)
        if problem is not None:
            raise CacheMismatchError(
                f"Embedding {problem}, so its values cannot be trusted. Compute it again "
                "(qd_lib.encoders.extract recomputes it by default), or open it with "
                "verify=False to read it unchecked.")
        return self

    def __repr__(self) -> str:
        shape = (self.meta["n_rows"], self.meta["outputs"][self.outputs[0]]["dim"])
        src = "cached" if self.from_cache else "computed"
        return (f"<Embeddings {self.meta['encoder_key']} on {self.meta['dataset']}: {shape}, "
                f"{src}, {display_path(self.path)}>")


def load_embeddings(path: str | os.PathLike, *, verify: bool = True) -> Embeddings:
    """Open a stored extraction from its ``.npy`` or ``.json`` path.

    Parameters
    ----------
    path : path
        The main ``.npy`` file or the sidecar.
    verify : bool, default=True
        Check the arrays against the sidecar's checksums first (:meth:`Embeddings.verify`;
        it hashes each file once, about 70 ms per 100 MB from the page cache).

    Raises
    ------
    CacheMismatchError
        With ``verify``, if a file does not match its checksum (nothing can be recomputed here).
    """
    path = Path(path)
    sidecar = path.with_suffix(".json") if path.suffix == ".npy" else path
    if not sidecar.is_file():
        raise FileNotFoundError(f"No embedding sidecar at {display_path(sidecar)}.")
    meta = json.loads(sidecar.read_text())
    emb = Embeddings(sidecar.with_suffix(".npy"), meta, from_cache=True)
    return emb.verify() if verify else emb


# -- integrity ---------------------------------------------------------------------------------
def _file_checksum(path: Path) -> dict:
    """What the sidecar records about one array file."""
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def _integrity_problem(emb: Embeddings) -> str | None:
    """Why ``emb``'s array files cannot be trusted (a phrase naming the file), or ``None``."""
    sums = emb.meta.get("checksums")
    if not sums:
        return (f"{display_path(emb.sidecar_path)} records no checksum (written before "
                "checksums were kept)")
    for name, spec in emb.meta["outputs"].items():
        file = emb.path.parent / spec["file"]
        expected = sums.get(name)
        if not expected:
            return f"{display_path(emb.sidecar_path)} records no checksum for {file.name}"
        if not file.is_file():
            return f"{display_path(file)} is missing"
        size = file.stat().st_size
        if size != expected["bytes"]:
            return (f"{display_path(file)} has {size} bytes, but its sidecar "
                    f"{emb.sidecar_path.name} recorded {expected['bytes']}")
        digest = sha256_file(file)
        if digest != expected["sha256"]:
            return (f"{display_path(file)} has sha256 {digest[:16]}…, but its sidecar "
                    f"{emb.sidecar_path.name} recorded {expected['sha256'][:16]}…")
    return None


# -- small helpers -----------------------------------------------------------------------------
def _rows_hash(rows: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(rows, dtype="<i8").tobytes()).hexdigest()


def _data_hash8(manifest_hash: str, rows_hash: str) -> str:
    return hashlib.sha256(f"{manifest_hash}:{rows_hash}".encode()).hexdigest()[:8]


def _check_rows(rows, n: int) -> np.ndarray:
    if rows is None:
        return np.arange(n, dtype=np.int64)
    arr = np.asarray(rows)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer) or (
            len(arr) and (arr.min() < 0 or arr.max() >= n)) or len(np.unique(arr)) != len(arr):
        raise ValueError(f"The 'rows' parameter must be unique 1-D integer positions in [0, {n}). "
                         f"Got {rows!r:.80} instead.")
    if len(arr) == 0:
        raise ValueError("The 'rows' parameter must hold at least one row.")
    return arr.astype(np.int64)


def embedding_path(manifest: Manifest, encoder_key: str, *, rows=None,
                   cache_dir: str | os.PathLike | None = None) -> Path:
    """Where :func:`extract` stores ``encoder_key``'s embedding of ``rows`` of ``manifest``."""
    positions = _check_rows(rows, len(manifest))
    folder = Path(cache_dir) if cache_dir is not None else runs_dir() / "embeddings" / manifest.name
    hash8 = _data_hash8(manifest.content_hash, _rows_hash(positions))
    return folder / f"{encoder_key}__{hash8}.npy"


def _versions() -> dict[str, str]:
    import PIL
    import torchvision

    try:
        from importlib.metadata import version

        workbench = version("qd-workbench")
    except Exception:  # not installed as a distribution
        workbench = "unknown"
    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": np.__version__,
            "pillow": PIL.__version__, "qd_workbench": workbench}


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _chunk_written(chunk: int) -> None:
    """Called after each chunk is on disk (a hook for tests and progress watchers)."""


# -- the per-item dataset and the batch plan ---------------------------------------------------
class _Items(torch.utils.data.Dataset):
    """The manifest's images through the encoder's transform; failures become records."""

    def __init__(self, manifest: Manifest, root: Path, positions: np.ndarray, transform):
        self.base = IQADataset(manifest, root, rows=positions, transform=transform,
                               target="raw")
        self.ids = manifest.table["image_id"].to_numpy()

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        pos = int(self.base.positions[i])
        try:
            item = self.base[i]
        except (ImageReadError, ImageTooSmallError) as exc:
            return {"pos": pos, "id": str(self.ids[pos]), "inputs": None, "note": None,
                    "error": str(exc)}
        return {"pos": pos, "id": item["image_id"], "inputs": item["image"]["inputs"],
                "note": item["image"]["note"], "error": None}


def _collate(items: list[dict]) -> dict:
    ok = [it for it in items if it["error"] is None]
    inputs = {}
    for key in (ok[0]["inputs"] if ok else {}):
        tensors = [it["inputs"][key] for it in ok]
        same = all(t.shape == tensors[0].shape for t in tensors)
        inputs[key] = torch.stack(tensors) if same else tensors
    return {"pos": [it["pos"] for it in items], "ids": [it["id"] for it in items],
            "errors": [it["error"] for it in items], "notes": [it["note"] for it in items],
            "inputs": inputs}


@dataclass
class _Plan:
    """Fixed chunk and batch layout over the requested rows."""

    rows: np.ndarray
    chunk_size: int
    batch_size: int

    @property
    def n_chunks(self) -> int:
        return -(-len(self.rows) // self.chunk_size)

    def chunk_rows(self, c: int) -> np.ndarray:
        return self.rows[c * self.chunk_size:(c + 1) * self.chunk_size]


def _chunk_files(parts: Path, c: int, outputs) -> tuple[Path, list[Path]]:
    return parts / f"c{c:06d}.json", [parts / f"c{c:06d}.{name}.npy" for name in outputs]


def _chunk_done(parts: Path, c: int, outputs, on_error: str) -> dict | None:
    """The record of finished chunk ``c``, or ``None`` if it must be (re)computed: missing,
    holding bad images that may have been fixed, or with files that fail their checksums."""
    marker, files = _chunk_files(parts, c, outputs)
    if not marker.is_file() or not all(f.is_file() for f in files):
        return None
    record = json.loads(marker.read_text())
    if on_error == "raise" and record["bad"]:
        return None  # recompute: the files may have been fixed
    sums = record.get("sha256") or {}
    for file, name in zip(files, outputs):
        if sums.get(name) != sha256_file(file):
            logger.warning("chunk file %s does not match its checksum; recomputing chunk %d",
                           display_path(file), c)
            return None
    return record


def _compute_chunks(encoder: Encoder, manifest: Manifest, root: Path, plan: _Plan,
                    chunks: list[int], parts: Path, *, missing: dict[int, str], num_workers: int,
                    amp, bar=None) -> list[dict]:
    """Encode ``chunks`` of ``plan`` and write each one's files as soon as it is complete."""
    outputs = encoder.outputs
    present = [p for c in chunks for p in plan.chunk_rows(c) if int(p) not in missing]
    items = _Items(manifest, root, np.asarray(present, dtype=np.int64), encoder.transform()) \
        if present else None
    index_of = {int(p): i for i, p in enumerate(present)}
    batches, layout = [], []  # layout[b] = (chunk, offsets in chunk)
    for c in chunks:
        offsets = [o for o, p in enumerate(plan.chunk_rows(c)) if int(p) not in missing]
        for start in range(0, len(offsets), plan.batch_size):
            part = offsets[start:start + plan.batch_size]
            batches.append([index_of[int(plan.chunk_rows(c)[o])] for o in part])
            layout.append((c, part))
    remaining = Counter(c for c, _ in layout)
    buffers: dict[int, dict] = {}
    records = []

    def buffer(c):
        if c not in buffers:
            n = len(plan.chunk_rows(c))
            buffers[c] = {"arrays": {k: np.full((n, d), np.nan, np.float32)
                                     for k, d in outputs.items()},
                          "bad": [[int(p), str(manifest.table["image_id"].iat[int(p)]),
                                   missing[int(p)]] for p in plan.chunk_rows(c)
                                  if int(p) in missing],
                          "notes": [], "started": time.perf_counter()}
        return buffers[c]

    def finish(c):
        buf = buffer(c)
        del buffers[c]
        marker, files = _chunk_files(parts, c, outputs)
        data = {name: _npy_bytes(buf["arrays"][name]) for name in outputs}
        for file, name in zip(files, outputs):
            atomic_write_bytes(file, data[name])
        record = {"chunk": c, "n": len(plan.chunk_rows(c)), "bad": buf["bad"],
                  "notes": buf["notes"], "seconds": round(time.perf_counter() - buf["started"], 4),
                  "sha256": {name: sha256_bytes(blob) for name, blob in data.items()}}
        atomic_write_json(marker, record)
        records.append(record)
        _chunk_written(c)

    for c in chunks:  # chunks whose every row is missing have no batches
        if remaining[c] == 0:
            finish(c)
    if batches:
        device = encoder.device
        loader = torch.utils.data.DataLoader(
            items, batch_sampler=batches, num_workers=num_workers, collate_fn=_collate,
            pin_memory=device.type == "cuda", persistent_workers=False)
        for (c, offsets), batch in zip(layout, loader):
            buf = buffer(c)
            ok = [i for i, e in enumerate(batch["errors"]) if e is None]
            for i, e in enumerate(batch["errors"]):
                if e is not None:
                    buf["bad"].append([batch["pos"][i], batch["ids"][i], e])
                elif batch["notes"][i]:
                    buf["notes"].append([batch["ids"][i], batch["notes"][i]])
            if ok:
                with torch.inference_mode():
                    result = encoder.encode(batch["inputs"], amp=amp)
                rows_in_chunk = [offsets[i] for i in ok]
                for name in outputs:
                    buf["arrays"][name][rows_in_chunk] = result[name].numpy()
            remaining[c] -= 1
            if bar is not None:
                bar.update(len(offsets))
            if remaining[c] == 0:
                finish(c)
    return records


# -- Dask ----------------------------------------------------------------------------------------
_WORKER_ENCODERS: dict[str, Encoder] = {}


def _dask_chunk_task(spec: dict, device: str, manifest: Manifest, root: str, plan: _Plan,
                     chunk: int, parts: str, missing: dict[int, str], amp,
                     weights_sha256: list[str]) -> dict:
    """One chunk on a Dask worker (the encoder is loaded once per worker process)."""
    from qd_lib.encoders import load_encoder

    key = json.dumps({"spec": spec, "device": device}, sort_keys=True, default=str)
    if key not in _WORKER_ENCODERS:
        _WORKER_ENCODERS.clear()
        _WORKER_ENCODERS[key] = load_encoder(spec["name"], device=device, **spec["kwargs"])
    encoder = _WORKER_ENCODERS[key]
    found = [w.sha256 for w in encoder.weights_records]
    if found != weights_sha256:
        raise CacheMismatchError(f"A Dask worker loaded {spec['name']} from other weights files "
                                 f"(sha256 {[h[:12] for h in found]}) than the client "
                                 f"({[h[:12] for h in weights_sha256]}).")
    (record,) = _compute_chunks(encoder, manifest, Path(root), plan, [chunk], Path(parts),
                                missing=missing, num_workers=0, amp=amp)
    return record


def _run_dask(client, encoder: Encoder, device: torch.device, manifest: Manifest, root: Path,
              plan: _Plan, chunks: list[int], parts: Path, missing, amp, bar) -> list[dict]:
    from distributed import as_completed

    spec = encoder.spec()
    manifest_ref = client.scatter(manifest, broadcast=True)
    plan_ref = client.scatter(plan, broadcast=True)
    futures = [client.submit(_dask_chunk_task, spec, str(device), manifest_ref, str(root),
                             plan_ref, c, str(parts), missing, amp,
                             [w.sha256 for w in encoder.weights_records], pure=False,
                             key=f"extract-{encoder.key}-{parts.name}-c{c}")
               for c in chunks]
    records = []
    try:
        for future in as_completed(futures):
            record = future.result()
            records.append(record)
            if bar is not None:
                bar.update(record["n"])
            _chunk_written(record["chunk"])
    finally:
        for future in futures:
            future.cancel()
    return records


# -- the steps of an extraction ----------------------------------------------------------------
def _sidecar_fields(manifest: Manifest, rows: np.ndarray, encoder: Encoder, stem: str) -> dict:
    outputs = {name: {"file": f"{stem}.npy" if i == 0 else f"{stem}.{name}.npy", "dim": dim,
                      "dtype": "float32"}
               for i, (name, dim) in enumerate(encoder.outputs.items())}
    return {"schema_version": SCHEMA_VERSION, "dataset": manifest.name,
            "manifest_hash": manifest.content_hash, "rows_hash": _rows_hash(rows),
            "encoder": encoder.name, "encoder_key": encoder.key,
            "encoder_version": encoder.version, "encoder_options": encoder.options(),
            "outputs": outputs,
            "input_policy": encoder.input_policy, "preprocessing": encoder.preprocessing,
            "weights": [w.as_dict() for w in encoder.weights_records],
            "weights_sha256": [w.sha256 for w in encoder.weights_records]}


def _differences(old: dict, new: dict) -> list[str]:
    # JSON round-trip so tuples and lists compare equal
    norm = json.loads(json.dumps({k: new.get(k) for k in _CHECKED}, default=str))
    return [k for k in _CHECKED if old.get(k) != norm[k]]


def _auto_workers(n_items: int, batch_size: int, device: torch.device, heavy: bool) -> int:
    """Loader workers: none for tiny jobs; one per core for transform-heavy encoders (nss);
    up to 8 feeding a GPU; on a CPU, none up to 2 cores (the forward pass already keeps every
    core busy, and a loader process only preempts its threads: measured slower than decoding
    in turn), else one. None inside a daemonic process (a Dask or multiprocessing-pool
    worker), which may not start child processes."""
    cores = os.cpu_count() or 1
    if n_items < 2 * batch_size:
        return 0
    if multiprocessing.current_process().daemon:  # a Dask/pool worker may not have children
        logger.info("extracting in this process: it is a daemonic worker (no loader workers)")
        return 0
    if heavy:
        return max(1, min(cores, 16))
    if device.type == "cuda":
        return min(8, max(1, cores - 1))
    return 0 if cores <= 2 else 1


@dataclass
class _Job:
    """One resolved request: checked arguments, the loaded encoder and where the result goes."""

    manifest: Manifest
    root: Path
    positions: np.ndarray
    encoder: Encoder
    device: torch.device
    amp_dtype: str | None
    batch_size: int
    chunk_size: int
    num_workers: int | str
    on_error: str
    path: Path
    fields: dict  # the sidecar fields that identify the result

    @property
    def sidecar_path(self) -> Path:
        return self.path.with_suffix(".json")

    @property
    def parts(self) -> Path:
        return self.path.with_name(self.path.stem + ".parts")

    @property
    def output_files(self) -> list[Path]:
        return [self.path.parent / o["file"] for o in self.fields["outputs"].values()]


@dataclass
class _Work:
    """The chunk layout of a job and how far it has got."""

    plan: _Plan
    records: dict[int, dict]  # finished chunks
    pending: list[int]
    pending_rows: np.ndarray
    missing: dict[int, str]  # manifest row -> reason, for files known to be absent


def _resolve_job(manifest, encoder, *, root, rows, batch_size, device, cache_dir, num_workers,
                 chunk_size, on_error, amp, encoder_options) -> _Job:
    """Check :func:`extract`'s arguments, load the encoder and name the result's files.

    Cheap checks come first, so a bad argument fails before any weights are read.
    """
    if hasattr(manifest, "manifest") and hasattr(manifest, "root"):  # ProxyBenchmark, ...
        root = manifest.root if root is None else root
        manifest = manifest.manifest
    if not isinstance(manifest, Manifest):
        raise TypeError(f"The 'manifest' parameter must be a Manifest, ProxyBenchmark or "
                        f"LoadedDataset. Got "
                        f"{type(manifest).__name__} instead.")
    if root is None:
        raise ValueError("The 'root' parameter is required: the folder that the manifest's "
                         "'relpath' values are relative to.")
    check_scalar(batch_size, "batch_size", int, min_val=1)
    if chunk_size is None:
        chunk_size = batch_size * max(1, 256 // batch_size)
    check_scalar(chunk_size, "chunk_size", int, min_val=1)
    check_option(on_error, "on_error", ("raise", "skip"))
    if num_workers != "auto":
        check_scalar(num_workers, "num_workers", int, min_val=0)
    if amp != "auto" and not isinstance(amp, bool):
        raise ValueError(f"The 'amp' parameter must be True, False or 'auto'. Got {amp!r}.")
    positions = _check_rows(rows, len(manifest))
    dev = resolve_device(device)
    if isinstance(encoder, str):
        from qd_lib.encoders import load_encoder

        encoder = load_encoder(encoder, device=dev, **(encoder_options or {}))
    elif isinstance(encoder, Encoder):
        if encoder_options:
            raise ValueError("'encoder_options' only applies when 'encoder' is a name.")
        encoder.prepare(dev)
    else:
        raise TypeError(f"The 'encoder' parameter must be a registered name or an Encoder. Got "
                        f"{type(encoder).__name__} instead.")
    use_amp: Any = (dev.type == "cuda") if amp == "auto" else amp
    use_amp = bool(use_amp and dev.type == "cuda" and encoder.supports_amp)
    amp_dtype = None
    if use_amp:
        amp_dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    path = embedding_path(manifest, encoder.key, rows=positions, cache_dir=cache_dir)
    return _Job(manifest, Path(root), positions, encoder, dev, amp_dtype, batch_size, chunk_size,
                num_workers, on_error, path,
                _sidecar_fields(manifest, positions, encoder, path.stem))


def _clear_result(job: _Job, *, parts: bool = False) -> None:
    """Delete the stored result of ``job`` (sidecar first), and its chunks if ``parts``."""
    for file in [job.sidecar_path, *job.output_files]:
        file.unlink(missing_ok=True)
    if parts:
        shutil.rmtree(job.parts, ignore_errors=True)


def _open_cache(job: _Job, *, overwrite: bool, verify_cache: bool,
                on_bad_cache: str) -> Embeddings | None:
    """The stored result of ``job`` if it can be reused, else ``None``.

    A sidecar that disagrees with the request raises (unless ``overwrite``, which clears the
    result and its chunks). A result whose arrays fail their checksums (or have none) is
    cleared for recomputation with a warning, or raises with ``on_bad_cache="raise"``.
    """
    if overwrite:
        _clear_result(job, parts=True)
        return None
    if not job.sidecar_path.is_file():
        return None
    old = json.loads(job.sidecar_path.read_text())
    diff = _differences(old, job.fields)
    if diff:
        shown = "; ".join(f"{k}: cached {old.get(k)!r:.60} vs now {job.fields.get(k)!r:.60}"
                          for k in diff)
        raise CacheMismatchError(
            f"Cached embedding {display_path(job.sidecar_path)} does not match this request "
            f"({shown}). Pass overwrite=True to recompute it, or use another cache_dir.")
    cached = Embeddings(job.path, old, from_cache=True)
    if not all(f.is_file() for f in cached.files):
        logger.warning("cached %s has a sidecar but misses array files; recomputing",
                       display_path(job.sidecar_path))
        return None
    problem = _integrity_problem(cached) if verify_cache else None
    if problem is None:
        logger.info("%s on %s: reusing %s", job.encoder.key, job.manifest.name,
                    display_path(job.path))
        return cached
    if on_bad_cache == "raise":
        raise CacheMismatchError(
            f"Cached embedding {problem}, so its values cannot be trusted. Pass "
            "on_bad_cache='recompute' (or overwrite=True) to compute it again, or "
            "verify_cache=False to use it unchecked.")
    logger.warning("cached embedding %s; recomputing it", problem)
    _clear_result(job)
    return None


def _plan_chunks(job: _Job) -> _Work:
    """Lay out the chunks, keep the finished (and intact) ones of an interrupted run with the
    same settings, and list the pending rows whose image files are missing."""
    plan = _Plan(job.positions, job.chunk_size, job.batch_size)
    parts = job.parts
    state = {**{k: job.fields[k] for k in _CHECKED}, "chunk_size": job.chunk_size,
             "batch_size": job.batch_size, "device_type": job.device.type, "amp": job.amp_dtype}
    state = json.loads(json.dumps(state, default=str))
    state_path = parts / "state.json"
    if parts.is_dir():
        old_state = json.loads(state_path.read_text()) if state_path.is_file() else None
        if old_state != state:
            logger.warning("discarding unfinished chunks in %s: they were made with other "
                           "settings", display_path(parts))
            shutil.rmtree(parts)
    parts.mkdir(parents=True, exist_ok=True)
    if not state_path.is_file():
        atomic_write_json(state_path, state)

    records = {}
    for c in range(plan.n_chunks):
        record = _chunk_done(parts, c, job.encoder.outputs, job.on_error)
        if record is not None:
            records[c] = record
    pending = [c for c in range(plan.n_chunks) if c not in records]
    pending_rows = np.concatenate([plan.chunk_rows(c) for c in pending]) if pending else \
        np.zeros(0, np.int64)
    if records:
        logger.info("%s on %s: resuming, %d of %d chunks already done", job.encoder.key,
                    job.manifest.name, len(records), plan.n_chunks)
    manifest = job.manifest
    check = check_images(manifest, job.root, rows=pending_rows, decode=False,
                         show_progress=False)
    id_to_pos = {str(manifest.table["image_id"].iat[int(p)]): int(p) for p in pending_rows}
    missing = {id_to_pos[i]: f"missing file {manifest.table['relpath'].iat[id_to_pos[i]]}"
               for i in check.missing}
    return _Work(plan, records, pending, pending_rows, missing)


def _run_chunks(job: _Job, work: _Work, *, client, show_progress) -> tuple[float, int]:
    """Compute the pending chunks, in this process or on ``client``'s Dask workers; add their
    records to ``work``. Returns the seconds taken and the number of workers used."""
    started = time.perf_counter()
    workers = 0
    if work.pending:
        encoder = job.encoder
        bar = progress(total=len(work.pending_rows),
                       desc=f"{encoder.key} on {job.manifest.name}", enabled=show_progress)
        try:
            if client is not None:
                workers = len(client.scheduler_info().get("workers", {}))
                new = _run_dask(client, encoder, job.device, job.manifest, job.root, work.plan,
                                work.pending, job.parts, work.missing, job.amp_dtype, bar)
            else:
                workers = (_auto_workers(len(work.pending_rows), job.batch_size, job.device,
                                         encoder.cpu_heavy_transform)
                           if job.num_workers == "auto" else job.num_workers)
                new = _compute_chunks(encoder, job.manifest, job.root, work.plan, work.pending,
                                      job.parts, missing=work.missing, num_workers=workers,
                                      amp=job.amp_dtype, bar=bar)
        finally:
            bar.close()
        work.records.update({r["chunk"]: r for r in new})
    return time.perf_counter() - started, workers


def _finalise(job: _Job, work: _Work, *, seconds: float, workers: int,
              executor: str) -> Embeddings:
    """Report bad images, assemble the arrays, checksum them and write the sidecar (last, so
    a sidecar means a complete result); then drop the chunks."""
    manifest, encoder, positions, plan = job.manifest, job.encoder, job.positions, work.plan
    records = work.records
    bad = [b for c in sorted(records) for b in records[c]["bad"]]
    notes = [n for c in sorted(records) for n in records[c]["notes"]]
    if bad and job.on_error == "raise":
        shown = "; ".join(f"{image_id} ({reason})" for _, image_id, reason in bad[:10])
        raise ImageReadError(
            f"{len(bad)} of {len(positions)} images of {manifest.name} could not be encoded by "
            f"{encoder.key}: {shown}{' …' if len(bad) > 10 else ''}. All {plan.n_chunks} "
            f"chunks are saved in {display_path(job.parts)}; fix or drop these images and call "
            "again: only the chunks holding them are recomputed (on_error='skip' leaves them "
            "out).")
    bad_pos = {b[0] for b in bad}
    keep = np.array([int(p) not in bad_pos for p in positions], dtype=bool)
    if not keep.any():
        raise ImageReadError(f"None of the {len(positions)} images of {manifest.name} could be "
                             f"encoded (first: {bad[0][1]}: {bad[0][2]}).")
    checksums = {}
    for name, spec in job.fields["outputs"].items():
        target = job.path.parent / spec["file"]
        _assemble(target, job.parts, plan, name, spec["dim"], keep)
        checksums[name] = _file_checksum(target)
    n_rows = int(keep.sum())
    n_computed = len(work.pending_rows)
    meta = {**job.fields, "n_requested": len(positions), "n_rows": n_rows,
            "rows": positions[keep].tolist(), "checksums": checksums,
            "bad_images": [{"row": p, "image_id": i, "reason": r} for p, i, r in bad],
            "conversions": {"count": len(notes), "examples": notes[:20]},
            "versions": _versions(), "device": str(job.device), "amp": job.amp_dtype,
            "batch_size": job.batch_size, "chunk_size": job.chunk_size,
            "executor": executor, "n_workers": workers, "seconds": round(seconds, 3),
            "images_per_second": round(n_computed / seconds, 3) if seconds > 0 else None,
            "resumed_chunks": plan.n_chunks - len(work.pending),
            "created": datetime.now(UTC).isoformat(timespec="seconds")}
    if bad:
        logger.warning("%s on %s: left out %d bad image(s): %s", encoder.key, manifest.name,
                       len(bad), ", ".join(b[1] for b in bad[:5]))
    if notes:
        logger.info("%s on %s: %d image(s) resized to fit the encoder (e.g. %s: %s)",
                    encoder.key, manifest.name, len(notes), notes[0][0], notes[0][1])
    atomic_write_json(job.sidecar_path, meta)
    shutil.rmtree(job.parts, ignore_errors=True)
    logger.info("%s on %s: %d rows x %d in %.1f s -> %s", encoder.key, manifest.name, n_rows,
                encoder.dim, seconds, display_path(job.path))
    return Embeddings(job.path, meta, from_cache=False)


# -- the public entry point ----------------------------------------------------------------------
def extract(manifest, encoder, *, root=None, rows=None, batch_size: int = 32,
            device: str = "auto", cache_dir=None, num_workers: int | str = "auto",
            chunk_size: int | None = None, overwrite: bool = False, client=None,
            on_error: str = "raise", amp: bool | str = "auto",
            show_progress: bool | None = None, encoder_options: dict | None = None,
            verify_cache: bool = True, on_bad_cache: str = "recompute") -> Embeddings:
    """Encode ``rows`` of ``manifest`` with ``encoder``, cached on disk.

    Parameters
    ----------
    manifest : Manifest, ProxyBenchmark or LoadedDataset
        The label table (a ``ProxyBenchmark`` or ``qd_lib.data.LoadedDataset``, from
        :func:`qd_lib.data.open_dataset`, also supplies ``root``).
    encoder : str or Encoder
        A registered name (loaded with ``encoder_options``) or a loaded encoder.
    root : path, optional
        Dataset root that the manifest's ``relpath`` is relative to.
    rows : array-like of int, optional
        Manifest row positions to encode, in output order (default: all rows).
    batch_size : int, default=32
        Images per forward pass.
    device : str, default="auto"
        ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``.
    cache_dir : path, optional
        Folder of the result (default ``runs_dir()/embeddings/<dataset>``).
    num_workers : int or "auto", default="auto"
        DataLoader worker processes for decoding and resizing (``auto``: 0 for jobs of under
        two batches; one per core for ``nss``, whose statistics run in the workers; up to 8
        feeding a GPU; on a CPU none up to 2 cores, else 1).
    chunk_size : int, optional
        Rows per resumable chunk (and per Dask task); default ``batch_size × (256 //
        batch_size)``. Batches never cross chunks.
    overwrite : bool, default=False
        Recompute even if a cached result exists (also when its sidecar does not match).
    client : dask.distributed.Client, optional
        Shard the chunks over this cluster's workers (they must see the same filesystem).
    on_error : {"raise", "skip"}, default="raise"
        What to do about bad images once every other chunk is done (see the module docstring).
    amp : bool or "auto", default="auto"
        Autocast on CUDA (bfloat16 where supported, else float16); ``auto``: on for CUDA. Never
        used on the CPU or for encoders that do not support it (``nss``).
    show_progress : bool, optional
        Progress bar switch (``None``: tqdm's default, honouring ``TQDM_DISABLE``).
    encoder_options : dict, optional
        Options for :func:`~qd_lib.encoders.load_encoder` when ``encoder`` is a name.
    verify_cache : bool, default=True
        Check a cached result's arrays against the sha256 checksums in its sidecar before
        reusing it. It hashes every output file once: about 70 ms per 100 MB from the page
        cache on the 2-core development machine (see the module docstring).
    on_bad_cache : {"recompute", "raise"}, default="recompute"
        What to do when a cached result fails that check, or predates checksums: compute it
        again (with a warning naming the file), or raise.

    Returns
    -------
    Embeddings

    Raises
    ------
    CacheMismatchError
        A result exists at the same path but its sidecar disagrees (and not ``overwrite``); or,
        with ``on_bad_cache="raise"``, its arrays do not match their checksums.
    ImageReadError
        With ``on_error="raise"``, after all other chunks are stored, listing the bad images.
    OfflineWeightsError
        The encoder's weights are missing or do not match their published hash.
    """
    if not isinstance(verify_cache, bool):
        raise TypeError(f"The 'verify_cache' parameter must be a bool. Got {verify_cache!r} "
                        "instead.")
    check_option(on_bad_cache, "on_bad_cache", ("recompute", "raise"))
    job = _resolve_job(manifest, encoder, root=root, rows=rows, batch_size=batch_size,
                       device=device, cache_dir=cache_dir, num_workers=num_workers,
                       chunk_size=chunk_size, on_error=on_error, amp=amp,
                       encoder_options=encoder_options)
    cached = _open_cache(job, overwrite=overwrite, verify_cache=verify_cache,
                         on_bad_cache=on_bad_cache)
    if cached is not None:
        return cached
    work = _plan_chunks(job)
    seconds, workers = _run_chunks(job, work, client=client, show_progress=show_progress)
    return _finalise(job, work, seconds=seconds, workers=workers,
                     executor="dask" if client is not None else "local")


def _assemble(target: Path, parts: Path, plan: _Plan, name: str, dim: int,
              keep: np.ndarray) -> None:
    """Concatenate the chunk files of output ``name`` into ``target`` (atomic replace)."""
    tmp = target.with_name(f".{target.name}.tmp")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                    shape=(int(keep.sum()), dim))
    at = 0
    for c in range(plan.n_chunks):
        block = np.load(parts / f"c{c:06d}.{name}.npy")
        mask = keep[c * plan.chunk_size:c * plan.chunk_size + len(block)]
        block = block[mask]
        out[at:at + len(block)] = block
        at += len(block)
    out.flush()
    del out
    os.replace(tmp, target)

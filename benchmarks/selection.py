"""Speed and memory of coreset selection (Q-Diverse) against a dense reference implementation.

One run prints, for every N in ``--sizes`` and coreset fraction in ``--fractions``:

* the wall time of ``select("qdiverse", {"content": Fc, "quality": Fq}, fraction)`` with the
  default options (b = 1000 rows per batch, l = 600 landmarks, energy 0.95, n_jobs = 1), on
  seeded clustered float32 embeddings of 2048 (content, like ResNet-50) + 4096 (quality, like
  ARNIQA, rows of unit norm) dimensions, stored as ``.npy`` files in a temporary folder and
  opened with ``numpy.load(mmap_mode="r")`` (100k rows are 2.4 GB on disk, not in RAM);
* the target (0.3 ms per row: 3 s at 10k, 12 s at 40k, 30 s at 100k) and the cost per row, whose
  flatness across N shows that the cost is linear in N at fixed b;
* peak memory, measured in a fresh child process per case so that cases do not pollute each
  other: the process peak RSS (``VmHWM``; it includes the pages of the memory-mapped inputs the
  selection has read, which the kernel can drop at any time), the sampled peak of anonymous
  (heap) RSS, and, in a second identical call, the selector's own ``tracemalloc`` peak
  (numpy's buffers; the mapped file is not an allocation);
* the time of a straightforward dense reference on the same data and its ratio to Q-Diverse.

The reference (also in its own child process, with the same per-batch budget split) does, for
every batch of b rows: float64 Gram-identity distances in both embeddings, max-normalised and
combined, RBF with the median bandwidth, ``S = D^-1/2 W D^-1/2``, a dense ``scipy.linalg.eigh``
of the whole b x b matrix (exact spectral embedding instead of Nyström, r by the same energy
rule), the RBF kernel K on the embedding, then greedy log-det where every step inverts
``K_S + eps*I`` explicitly (``numpy.linalg.inv``) and scores every candidate with
``K_jj + eps - k_jS^T (K_S + eps*I)^-1 k_jS``. Batches are run in order until ``--ref-seconds``
have passed (at least one batch); the rest is extrapolated linearly per batch and marked so.
Both the selector and the reference run their linear algebra on one BLAS thread per batch
(threadpoolctl): with two OpenBLAS threads, eigh(600 x 600) was measured at anywhere from 0.05 to
3.8 s on this kind of 2-vCPU machine (design note §5); ``--blas-check`` re-measures it.

``--million`` instead writes a 1,000,000 x (512 + 512) float16 pair of memmaps (about 1 GB each),
runs ``select`` at 10 % with the default batch size in a child process, and reports the wall time
and the peak RSS against the 4 GB limit (PASS/FAIL, exit status 1 on FAIL), plus the time and
``tracemalloc`` peak of select()'s finiteness check on those inputs.

``--backend torch --device cpu|cuda|cuda:<i>`` adds, for every case (and for ``--million``), the
same selection with ``backend="torch"`` on that device, in its own child process: its wall time,
the ratio numpy seconds / torch seconds measured in this run, whether the two coresets are the
same (same picks in the same order), and the device's peak allocated memory on CUDA. Before the
timed call the child warms the device up (a small selection: CUDA context, cuBLAS and cuSOLVER
handles) and synchronises it; the clock is read after another synchronisation, so queued device
work is never left out of the time.

Usage::

    python benchmarks/selection.py                        # N = 10k, 40k, 100k; f = 10 %, 95 %
    python benchmarks/selection.py --quick                # small smoke run
    python benchmarks/selection.py --sizes 20000 --fractions 0.3 --no-reference
    python benchmarks/selection.py --million
    python benchmarks/selection.py --sizes 10000 --no-reference --backend torch --device cpu
    python benchmarks/selection.py --backend torch --device cuda      # on a GPU machine

Timings depend on the machine and its other load; the ratio is measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from _shared import RssSampler, proc_status

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

D_CONTENT, D_QUALITY = 2048, 4096
TARGET_S_PER_ROW = 3.0 / 10_000  # 3 s at 10k, 12 s at 40k, 30 s at 100k
MILLION_ROWS, MILLION_DIM = 1_000_000, 512
MILLION_LIMIT = 4 * 10**9  # bytes
DEFAULT_SIZES = (10_000, 40_000, 100_000)
DEFAULT_FRACTIONS = (0.10, 0.95)
MIB = 2**20


# ------------------------------------------------------------------------------------ data
def write_clustered(path: Path, n: int, d: int, *, dtype=np.float32, n_clusters: int = 40,
                    seed: int = 0, normalize: bool = False) -> None:
    """Write ``n x d`` seeded rows around ``n_clusters`` centres to a ``.npy`` file, in chunks."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, d), dtype=np.float32) * 3.0
    scales = rng.uniform(0.5, 1.5, size=n_clusters).astype(np.float32)
    labels = rng.integers(n_clusters, size=n)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(n, d))
    step = max(1, (1 << 23) // d)
    for start in range(0, n, step):
        lab = labels[start:start + step]
        block = rng.standard_normal((len(lab), d), dtype=np.float32)
        block *= scales[lab, None]
        block += centres[lab]
        if normalize:
            block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start:start + step] = block
    out.flush()
    del out


# ------------------------------------------------------------------------------- memory
def peak_rss() -> int:
    """Process peak resident set size in bytes (VmHWM, else getrusage)."""
    return proc_status().get("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ------------------------------------------------------------------------------- reference
def _ref_sq_distances(X) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    sq = np.einsum("ij,ij->i", X, X)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (X @ X.T)
    np.maximum(d2, 0.0, out=d2)
    np.fill_diagonal(d2, 0.0)
    return d2


def _ref_median(D: np.ndarray) -> float:
    value = float(np.median(D[np.triu_indices(D.shape[0], 1)]))
    return value if value > 0 else 1.0


def reference_greedy(K: np.ndarray, m: int, eps: float) -> list[int]:
    """Greedy log-det, inverting ``K_S + eps*I`` from scratch at every step."""
    chosen: list[int] = []
    diag = np.diag(K) + eps
    for k in range(m):
        if k:
            inv = np.linalg.inv(K[np.ix_(chosen, chosen)] + eps * np.eye(k))
            KS = K[:, chosen]
            gains = diag - np.einsum("ij,ij->i", KS @ inv, KS)
        else:
            gains = diag.copy()
        gains[chosen] = -np.inf
        chosen.append(int(np.argmax(gains)))
    return chosen


def reference_batch(Xc, Xq, m: int, *, gamma=0.5, energy=0.95, eps=1e-6) -> list[int]:
    """Dense Q-Diverse in one batch: exact eigh of the normalised affinity, explicit inverses."""
    import scipy.linalg

    from qd_lib.selection.methods.qdiverse.spectral import energy_rank

    b = Xc.shape[0]
    if m >= b:
        return list(range(b))
    Dc = np.sqrt(_ref_sq_distances(Xc))
    Dq = np.sqrt(_ref_sq_distances(Xq))
    Dc /= Dc.max() if Dc.max() > 0 else 1.0
    Dq /= Dq.max() if Dq.max() > 0 else 1.0
    D = gamma * Dc + (1.0 - gamma) * Dq
    sigma = _ref_median(D)
    W = np.exp(-D ** 2 / (2.0 * sigma ** 2))
    deg = W.sum(axis=1)
    S = W / np.sqrt(np.outer(deg, deg))
    lam, U = scipy.linalg.eigh(S)
    lam, U = np.maximum(lam[::-1], 0.0), U[:, ::-1]
    Z = U[:, :energy_rank(lam, energy)]
    Dz = np.sqrt(_ref_sq_distances(Z))
    sigma_z = _ref_median(Dz)
    K = np.exp(-Dz ** 2 / (2.0 * sigma_z ** 2))
    np.fill_diagonal(K, 1.0)
    return reference_greedy(K, m, eps)


# ------------------------------------------------------------------------- child processes
def _open(job: dict):
    n = job["n"]
    return (np.load(job["content"], mmap_mode="r")[:n],
            np.load(job["quality"], mmap_mode="r")[:n])


def _backend_options(job: dict) -> dict:
    if job.get("backend", "numpy") == "numpy":
        return {"n_jobs": job["n_jobs"], "progress": False}
    return {"backend": "torch", "device": job["device"], "progress": False}


def _prepare_device(job: dict):
    """Warm the torch device up (a small selection) and return ``(sync, device_peak)``:
    ``sync()`` waits for the device's queued work, ``device_peak()`` is the peak allocated
    device memory since the warm-up (None off CUDA). No-ops for the numpy backend."""
    if job.get("backend", "numpy") == "numpy":
        return (lambda: None), (lambda: None)
    import torch

    from qd_lib.selection import select

    if job.get("torch_threads"):
        torch.set_num_threads(job["torch_threads"])

    rng = np.random.default_rng(1)
    warm = {k: rng.standard_normal((600, 64), dtype=np.float32) for k in ("content", "quality")}
    select("qdiverse", warm, 60, batch_size=300, n_landmarks=150, **_backend_options(job))
    device = torch.device(job["device"])
    if device.type != "cuda":
        return (lambda: None), (lambda: None)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    return (lambda: torch.cuda.synchronize(device)), (
        lambda: int(torch.cuda.max_memory_allocated(device)))


def child_qdiverse(job: dict) -> dict:
    from qd_lib.selection import select

    Fc, Fq = _open(job)
    feats = {"content": Fc, "quality": Fq}
    opts = _backend_options(job)
    sync, device_peak = _prepare_device(job)
    rss_start = proc_status().get("VmRSS", 0)
    with RssSampler() as sampled:
        sync()
        t0 = time.perf_counter()
        sel = select("qdiverse", feats, job["fraction"], seed=job["seed"], **opts)
        sync()
        seconds = time.perf_counter() - t0
    hwm = peak_rss()
    dev_peak = device_peak()
    tracemalloc.start()
    try:
        again = select("qdiverse", feats, job["fraction"], seed=job["seed"], **opts)
        traced = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.save(job["picks"], sel.indices)
    rs = [r for r in sel.info["r"] if r is not None]
    return {"seconds": seconds, "budget": sel.budget, "n_batches": sel.info["n_batches"],
            "r_median": float(np.median(rs)) if rs else None, "rss_start": rss_start,
            "rss_peak": hwm, "anon_peak": sampled.anon, "file_peak": sampled.file,
            "traced_peak": traced, "device_peak": dev_peak,
            "deterministic": bool(np.array_equal(sel.indices, again.indices))}


def child_reference(job: dict) -> dict:
    from threadpoolctl import threadpool_limits

    from qd_lib.selection.methods.qdiverse.batches import allocate_budget

    Fc, Fq = _open(job)
    n, b = job["n"], job["batch_size"]
    starts = list(range(0, n, b))
    sizes = [min(s + b, n) - s for s in starts]
    budgets = allocate_budget(sizes, job["budget"])
    ours = np.load(job["picks"])
    done, picks, ours_done = 0, [], []
    t0 = time.perf_counter()
    with threadpool_limits(1, user_api="blas"):
        for start, size, m in zip(starts, sizes, budgets):
            Xc = np.asarray(Fc[start:start + size], dtype=np.float64)
            Xq = np.asarray(Fq[start:start + size], dtype=np.float64)
            picks.extend(start + j for j in reference_batch(Xc, Xq, int(m)))
            ours_done.append(ours[(ours >= start) & (ours < start + size)])
            done += 1
            if time.perf_counter() - t0 >= job["ref_seconds"]:
                break
    measured = time.perf_counter() - t0
    ours_done = np.concatenate(ours_done)
    overlap = len(np.intersect1d(picks, ours_done)) / max(1, len(ours_done))
    return {"measured": measured, "batches_done": done, "n_batches": len(starts),
            "seconds": measured * len(starts) / done, "extrapolated": done < len(starts),
            "overlap": overlap, "rss_peak": peak_rss()}


def child_million(job: dict) -> dict:
    from qd_lib.selection import select
    from qd_lib.utils.validation import check_array_2d

    Fc, Fq = _open(job)
    sync, device_peak = _prepare_device(job)
    rss_start = proc_status().get("VmRSS", 0)
    tracemalloc.start()
    t0 = time.perf_counter()
    check_array_2d(Fc, "content")
    check_array_2d(Fq, "quality")
    check_seconds = time.perf_counter() - t0
    check_traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rss_after_check = peak_rss()
    with RssSampler() as sampled:
        sync()
        t0 = time.perf_counter()
        sel = select("qdiverse", {"content": Fc, "quality": Fq}, job["fraction"],
                     seed=job["seed"], **_backend_options(job))
        sync()
        seconds = time.perf_counter() - t0
    np.save(job["picks"], sel.indices)
    rs = [r for r in sel.info["r"] if r is not None]
    return {"seconds": seconds, "budget": sel.budget, "n_batches": sel.info["n_batches"],
            "batch_size": sel.params["batch_size"], "r_median": float(np.median(rs)),
            "rss_start": rss_start, "rss_after_check": rss_after_check,
            "rss_peak": peak_rss(), "anon_peak": sampled.anon, "file_peak": sampled.file,
            "check_seconds": check_seconds, "check_traced": check_traced,
            "unique": int(len(np.unique(sel.indices))), "device_peak": device_peak()}


CHILDREN = {"qdiverse": child_qdiverse, "reference": child_reference, "million": child_million}


def run_child(job: dict) -> dict:
    """Run one case in a fresh interpreter; returns its result dict (or {"error": ...})."""
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(job)],
                          capture_output=True, text=True,
                          env={**os.environ, "TQDM_DISABLE": "1"})
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-2000:]}"}


# ------------------------------------------------------------------------------- reporting
def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def header(args, reference: bool = True) -> None:
    from threadpoolctl import threadpool_info

    blas = [f"{i['internal_api']} {i['version']} ({i['threading_layer']}, "
            f"{i['num_threads']} threads by default)" for i in threadpool_info()
            if i["user_api"] == "blas"]
    print(f"cores: {os.cpu_count()}  numpy {np.__version__}  BLAS: {'; '.join(blas) or '?'}")
    who = "Q-Diverse and the reference run" if reference else "Q-Diverse runs"
    print(f"{who} each batch on 1 BLAS thread (threadpoolctl); n_jobs={args.n_jobs}. "
          "Timings on a shared machine are noisy.")
    if args.backend == "torch":
        import torch

        where = args.device
        if torch.cuda.is_available() and torch.device(args.device).type == "cuda":
            where += f" ({torch.cuda.get_device_name(torch.device(args.device))})"
        threads = args.torch_threads or torch.get_num_threads()
        print(f"torch {torch.__version__} on {where}; {threads} intra-op CPU thread(s) "
              "(torch.set_num_threads; the torch backend does not pin them to one).")


def blas_check() -> None:
    """Time a 600 x 600 symmetric eigendecomposition with 1 and with the default BLAS threads."""
    from threadpoolctl import threadpool_limits

    A = np.random.default_rng(0).standard_normal((600, 600))
    A = A @ A.T
    for threads in (None, 1):
        times = []
        with threadpool_limits(threads, user_api="blas"):
            for _ in range(7):
                t0 = time.perf_counter()
                np.linalg.eigh(A)
                times.append(time.perf_counter() - t0)
        print(f"eigh(600x600), {'default' if threads is None else 1} BLAS thread(s): "
              f"min {min(times):.3f} s, median {np.median(times):.3f} s, "
              f"max {max(times):.3f} s")


def mib(x) -> str:
    return f"{x / MIB:.0f}"


def _torch_cells(q: dict, t: dict | None) -> list[str]:
    if t is None or "error" in t:
        return ["ERROR" if t else "-", "", "", ""]
    same = "yes" if t["same_order"] else f"no ({t['n_differ']})"
    return [f"{t['seconds']:.2f}", f"{q['seconds'] / t['seconds']:.2f}", same,
            mib(t["device_peak"]) if t.get("device_peak") else "-"]


def _reference_cells(q: dict, ref: dict | None) -> list[str]:
    if ref is None or "error" in ref:
        return ["ERROR" if ref else "-", "", "", "", ""]
    mark = "*" if ref["extrapolated"] else ""
    return [f"{ref['seconds']:.1f}{mark}", f"{ref['batches_done']}/{ref['n_batches']}",
            f"{ref['seconds'] / q['seconds']:.1f}x{mark}", f"{ref['overlap']:.2f}",
            mib(ref["rss_peak"])]


def print_table(rows: list[dict], with_reference: bool) -> None:
    with_torch = any("t" in row for row in rows)
    cols = ["N", "frac", "M", "batches", "r med", "qdiverse s", "target s", "ok",
            "us/row", "peak RSS MiB", "anon pk MiB", "tracemalloc MiB"]
    if with_torch:
        cols += ["torch s", "np/torch", "same", "dev pk MiB"]
    if with_reference:
        cols += ["reference s", "ref batches", "ratio", "overlap", "ref RSS MiB"]
    table = [cols]
    for row in rows:
        q = row["q"]
        if "error" in q:
            table.append([str(row["n"]), f"{row['f']:.2f}", "ERROR: " + q["error"][-200:]])
            continue
        target = TARGET_S_PER_ROW * row["n"]
        line = [f"{row['n']}", f"{row['f']:.2f}", f"{q['budget']}", f"{q['n_batches']}",
                f"{q['r_median']:.0f}" if q["r_median"] is not None else "-",
                f"{q['seconds']:.2f}", f"{target:.3g}",
                "yes" if q["seconds"] <= target else "NO",
                f"{1e6 * q['seconds'] / row['n']:.0f}", mib(q["rss_peak"]), mib(q["anon_peak"]),
                mib(q["traced_peak"])]
        if with_torch:
            line += _torch_cells(q, row.get("t"))
        if with_reference:
            line += _reference_cells(q, row.get("ref"))
        table.append(line)
    widths = [max(len(r[i]) for r in table if i < len(r)) for i in range(len(cols))]
    for r in table:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)).rstrip())


def print_linearity(rows: list[dict]) -> None:
    print("\nCost per row at fixed b (linear in N if flat):")
    for f in sorted({r["f"] for r in rows}):
        ok = [r for r in rows if r["f"] == f and "error" not in r["q"]]
        if not ok:
            continue
        base = ok[0]["q"]["seconds"] / ok[0]["n"]
        parts = []
        for r in ok:
            per_row = r["q"]["seconds"] / r["n"]
            per_batch = r["q"]["seconds"] / r["q"]["n_batches"]
            parts.append(f"N={r['n']}: {1e6 * per_row:.0f} us/row, "
                         f"{1e3 * per_batch:.0f} ms/batch (x{per_row / base:.2f})")
        spread = max(r["q"]["seconds"] / r["n"] for r in ok) / min(
            r["q"]["seconds"] / r["n"] for r in ok)
        print(f"  f={f:.2f}: " + "; ".join(parts) + f"  | max/min per-row cost {spread:.2f}")


# ------------------------------------------------------------------------------- main runs
def _write_table_data(args, folder: Path, n_max: int) -> tuple[Path, Path]:
    log(f"writing {n_max} x ({D_CONTENT} + {D_QUALITY}) float32 features to {folder} "
        f"({n_max * (D_CONTENT + D_QUALITY) * 4 / 1e9:.1f} GB) ...")
    t0 = time.perf_counter()
    content, quality = folder / "content.npy", folder / "quality.npy"
    write_clustered(content, n_max, D_CONTENT, seed=args.seed)
    write_clustered(quality, n_max, D_QUALITY, seed=args.seed + 1, normalize=True)
    log(f"  done in {time.perf_counter() - t0:.1f} s; smaller N use the leading rows")
    return content, quality


def compare_picks(numpy_picks: Path, torch_picks: Path) -> dict:
    """Whether the two backends chose the same coreset, in the same order."""
    a, b = np.load(numpy_picks), np.load(torch_picks)
    same_set = len(a) == len(b) and bool(np.array_equal(np.sort(a), np.sort(b)))
    return {"same_order": bool(np.array_equal(a, b)), "same_set": same_set,
            "n_differ": int(np.count_nonzero(a != b)) if len(a) == len(b) else None}


def run_case(args, job: dict) -> dict:
    """One (N, fraction): Q-Diverse (numpy), optionally torch and the dense reference."""
    n, f = job["n"], job["fraction"]
    row = {"n": n, "f": f, "q": run_child({"kind": "qdiverse", **job})}
    q = row["q"]
    if "error" in q:
        log(f"N={n} f={f}: qdiverse failed: {q['error']}")
        return row
    log(f"N={n} f={f}: qdiverse {q['seconds']:.2f} s, peak RSS "
        f"{mib(q['rss_peak'])} MiB, tracemalloc {mib(q['traced_peak'])} MiB")
    if not q["deterministic"]:
        log("  WARNING: the second (traced) run picked different rows")
    if args.backend == "torch":
        torch_picks = job["picks"].replace(".npy", "_torch.npy")
        row["t"] = t = run_child({"kind": "qdiverse", **job, "backend": "torch",
                                  "device": args.device, "torch_threads": args.torch_threads,
                                  "picks": torch_picks})
        if "error" in t:
            log(f"  torch ({args.device}) failed: {t['error']}")
        else:
            t.update(compare_picks(Path(job["picks"]), Path(torch_picks)))
            log(f"  torch ({args.device}) {t['seconds']:.2f} s, numpy/torch "
                f"{q['seconds'] / t['seconds']:.2f}, same picks: {t['same_order']}")
    if not args.no_reference:
        row["ref"] = ref = run_child({"kind": "reference", **job, "budget": q["budget"],
                                      "batch_size": 1000, "ref_seconds": args.ref_seconds})
        if "error" in ref:
            log(f"  reference failed: {ref['error']}")
        else:
            log(f"  reference {ref['measured']:.1f} s for "
                f"{ref['batches_done']}/{ref['n_batches']} batches")
    return row


def print_table_notes(args) -> None:
    print(f"Data: seeded clustered float32 embeddings, content {D_CONTENT} + quality "
          f"{D_QUALITY} dims, .npy memmaps (just written, so in the OS page cache). "
          "Q-Diverse defaults: b=1000, l=600, energy 0.95, gamma 0.5.")
    if not args.no_reference:
        print("Reference: per batch of 1000, float64 distances, dense scipy eigh of the whole "
              "normalised affinity (no Nyström), greedy log-det with numpy.linalg.inv(K_S + "
              "eps I) recomputed at every step; same per-batch budgets. "
              f"Run for >= {args.ref_seconds:g} s of whole batches, "
              "* = extrapolated linearly per batch from the batches run.")
    if args.backend == "torch":
        print(f"torch: backend='torch', device={args.device!r}, after a warm-up selection; "
              "np/torch = numpy seconds / torch seconds in this run; same = identical picks "
              "in identical order (else the number of positions that differ); dev pk = peak "
              "allocated CUDA memory.")
    print("peak RSS = VmHWM of the case's own child process (includes memory-mapped input "
          "pages read); anon pk = sampled peak heap RSS; tracemalloc = the selector call's "
          "peak allocation (second, identical call). target = 0.3 ms/row (3 s at 10k, 12 s "
          "at 40k, 30 s at 100k). overlap = share of Q-Diverse's picks that the reference "
          "also picks, in the batches it ran.\n")


def run_table(args) -> int:
    sizes = sorted(args.sizes)
    tmp = tempfile.TemporaryDirectory(prefix="qd-bench-", dir=args.tmpdir)
    try:
        folder = Path(tmp.name)
        content, quality = _write_table_data(args, folder, sizes[-1])
        rows = []
        for n in sizes:
            for f in args.fractions:
                job = {"content": str(content), "quality": str(quality), "n": n, "fraction": f,
                       "seed": args.seed, "n_jobs": args.n_jobs,
                       "picks": str(folder / f"picks_{n}_{f}.npy")}
                rows.append(run_case(args, job))
    finally:
        tmp.cleanup()

    print()
    header(args, reference=not args.no_reference)
    print_table_notes(args)
    print_table(rows, not args.no_reference)
    print_linearity(rows)
    failed = any("error" in r["q"] or "error" in r.get("ref", {}) or "error" in r.get("t", {})
                 for r in rows)
    return 1 if failed else 0


def print_million(res: dict, label: str) -> bool:
    """Print one 1M case; True when it ran and its peak RSS is under the limit."""
    if "error" in res:
        print(f"1M float16 case, {label}: FAIL (the child process failed)\n{res['error']}")
        return False
    ok = res["rss_peak"] < MILLION_LIMIT
    print(f"1M x ({MILLION_DIM} + {MILLION_DIM}) float16 memmaps, select('qdiverse', 10 %), "
          f"default b={res['batch_size']}, {label}:")
    print(f"  M={res['budget']} ({res['unique']} unique), {res['n_batches']} batches, "
          f"r median {res['r_median']:.0f}, wall time {res['seconds']:.1f} s "
          f"({1e6 * res['seconds'] / MILLION_ROWS:.0f} us/row)")
    print(f"  finiteness check (check_array_2d, both inputs): {res['check_seconds']:.2f} s, "
          f"tracemalloc peak {mib(res['check_traced'])} MiB")
    print(f"  RSS: {mib(res['rss_start'])} MiB before, {mib(res['rss_after_check'])} MiB peak "
          f"after the check, peak {mib(res['rss_peak'])} MiB (VmHWM; sampled peaks: anon "
          f"{mib(res['anon_peak'])} MiB, file-backed {mib(res['file_peak'])} MiB)"
          + (f", device peak {mib(res['device_peak'])} MiB" if res.get("device_peak") else ""))
    print(f"  peak RSS {res['rss_peak'] / 1e9:.2f} GB < 4 GB: {'PASS' if ok else 'FAIL'}")
    return ok


def run_million(args) -> int:
    tmp = tempfile.TemporaryDirectory(prefix="qd-million-", dir=args.tmpdir)
    try:
        folder = Path(tmp.name)
        log(f"writing {MILLION_ROWS} x ({MILLION_DIM} + {MILLION_DIM}) float16 features to "
            f"{folder} ({2 * MILLION_ROWS * MILLION_DIM * 2 / 1e9:.1f} GB) ...")
        t0 = time.perf_counter()
        content, quality = folder / "content.npy", folder / "quality.npy"
        write_clustered(content, MILLION_ROWS, MILLION_DIM, dtype=np.float16, seed=args.seed)
        write_clustered(quality, MILLION_ROWS, MILLION_DIM, dtype=np.float16,
                        seed=args.seed + 1, normalize=True)
        log(f"  done in {time.perf_counter() - t0:.1f} s; selecting (a few minutes) ...")
        job = {"kind": "million", "content": str(content), "quality": str(quality),
               "n": MILLION_ROWS, "fraction": 0.10, "seed": args.seed, "n_jobs": args.n_jobs,
               "picks": str(folder / "picks_numpy.npy")}
        res = run_child(job)
        res_t = None
        if args.backend == "torch":
            res_t = run_child({**job, "backend": "torch", "device": args.device,
                               "torch_threads": args.torch_threads,
                               "picks": str(folder / "picks_torch.npy")})
            if "error" not in res and "error" not in res_t:
                res_t.update(compare_picks(folder / "picks_numpy.npy",
                                           folder / "picks_torch.npy"))
    finally:
        tmp.cleanup()
    header(args, reference=False)
    ok = print_million(res, f"numpy, n_jobs={args.n_jobs}")
    if res_t is not None:
        ok = print_million(res_t, f"torch on {args.device!r}") and ok
        if "error" not in res and "error" not in res_t:
            print(f"  numpy/torch {res['seconds'] / res_t['seconds']:.2f} (same run); same "
                  f"picks in the same order: {res_t['same_order']}, same set: "
                  f"{res_t['same_set']}")
    return 0 if ok else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES),
                        help="dataset sizes N (default: 10000 40000 100000)")
    parser.add_argument("--fractions", type=float, nargs="+", default=list(DEFAULT_FRACTIONS),
                        help="coreset fractions (default: 0.1 0.95)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: N = 2000, 5000 and a 5 s reference budget")
    parser.add_argument("--million", action="store_true",
                        help="only the 1,000,000 x (512 + 512) float16 memmap case")
    parser.add_argument("--no-reference", action="store_true", help="skip the dense reference")
    parser.add_argument("--ref-seconds", type=float, default=30.0,
                        help="run the reference for at least this long per case, then "
                             "extrapolate (default: 30)")
    parser.add_argument("--n-jobs", type=int, default=1, help="Q-Diverse worker processes")
    parser.add_argument("--backend", choices=("numpy", "torch"), default="numpy",
                        help="torch: also run backend='torch' and compare with numpy")
    parser.add_argument("--device", default="cpu",
                        help="device of the torch backend: cpu, cuda or cuda:<i> (default: cpu)")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch.set_num_threads in the torch child (default: torch's own)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tmpdir", default=None, help="where to write the memmaps")
    parser.add_argument("--blas-check", action="store_true",
                        help="first time eigh(600x600) with default vs 1 BLAS thread")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        job = json.loads(args.child)
        print("RESULT " + json.dumps(CHILDREN[job["kind"]](job)), flush=True)
        return 0
    if args.quick:
        args.sizes, args.ref_seconds = [2000, 5000], 5.0
    if args.blas_check:
        blas_check()
    if args.million:
        return run_million(args)
    return run_table(args)


if __name__ == "__main__":
    raise SystemExit(main())

"""Selection time and peak memory of every coreset selector, with its ratio to Q-Diverse.

One run prints, for every N in ``--sizes`` (default 10k, 40k, 100k) at coreset fraction
``--fraction`` (default 10 %), the wall time of one ``qd_lib.selection.select()`` call and the
memory it used, for every registered method, and each time's ratio to Q-Diverse's on the same
data (``×QD`` = method seconds / qdiverse seconds at the same N).

Data (identical for every method at a given N; the N-row data set is the first N rows of one
file): seeded clustered float32 features, 512-d, 40 Gaussian clusters, written in chunks to a
``.npy`` file in a temporary folder and opened by every case with ``numpy.load(mmap_mode="r")``.
Derived from the same rows:

* MOS (moderate, contextual_diversity): a per-cluster quality level plus noise, clipped to
  [1, 5], so the MOS bins are correlated with the clusters;
* probabilities (contextual_diversity): softmax of a fixed random projection of the features
  to 5 logits;
* Q-Diverse: ``content`` = the first 256 columns, ``quality`` = the last 256 columns of the
  same 512-d rows (column views of the mapped file, no copy);
* PGCS is timed twice: with its own 3-D openTSNE (only at N <= ``--pgcs-tsne-max`` unless
  ``--pgcs-tsne-all``; larger N print "skipped (t-SNE)"), and with ``embedding_3d`` = a fixed
  random 3-D projection of the features at every N, which times the partitioning alone.

Every case runs in a fresh interpreter (``subprocess``) so cases cannot pollute each other.
The child maps the data, runs one small warm-up selection (imports, first-call costs), resets
its peak-RSS counter (``/proc/self/clear_refs``), then times the ``select()`` call. Reported:

* ``peak RSS``: the child's ``VmHWM`` during the call; it includes the interpreter and
  libraries (``start RSS``, resident when the call began) and the pages of the mapped file
  that the method read (page cache, droppable);
* ``anon peak``: peak anonymous (heap) RSS sampled every 5 ms: the memory the method allocated;
* ``tracemalloc``: peak of numpy/Python allocations in a second, identical, traced call, made
  only when the timed call took at most ``--trace-max-s`` seconds ("-" otherwise).

All methods run with the library defaults (``n_jobs=1`` for PGCS and Q-Diverse, seed 0,
progress bars off). ``select()`` runs every method with BLAS and OpenMP on one thread (so no
result depends on the thread count); Herding's picks are those of the float64 greedy (float32
screening passes, float64 decisions).

``--backend torch --device cpu|cuda|cuda:<i>`` adds, for every method with a torch backend
(Q-Diverse, k-Center, both Herding variants), the same ``select()`` call with
``backend="torch"`` on that device, in its own child process after a warm-up selection on the
device: a ``[torch <device>]`` row with its wall time, ``numpy/torch`` = numpy seconds / torch
seconds measured in this run, whether the two coresets are the same (same picks in the same
order), k-Center's ``near_ties`` (see ``qd_lib/selection/_torch_kernels.py``) and, on CUDA,
the device's peak allocated memory.

``--naive`` adds the naive reference transcriptions (DeepCore's k-Center and Herding loops with
their per-step gathers and preallocated ``(B-1) x N`` matrix; Moderate in one float64 block;
Contextual Diversity with a full per-bin divergence matrix; PGCS's official partitioning with a
full ``N x N`` distance matrix and every row argsorted) on one BLAS thread, each in its own
child. They run on at most ``--naive-max`` rows (``--pgcs-naive-max`` for PGCS) of the same
data and are scaled to N by their complexity: ``(N/n)^2`` for the ``O(B N)`` greedy loops,
``(N/n)^2 log N / log n`` for the PGCS row sorts, linear for Moderate. ``naive/ours`` is that
time over the library's time (PGCS: over the precomputed-3-D case).

Usage::

    python benchmarks/baselines.py                       # N = 10k, 40k, 100k, fraction 10 %
    python benchmarks/baselines.py --quick               # N = 2000, 5000
    python benchmarks/baselines.py --sizes 40000 --methods kcenter herding --naive
    python benchmarks/baselines.py --pgcs-tsne-all       # also PGCS's t-SNE at 40k / 100k
    python benchmarks/baselines.py --sizes 20000 --methods kcenter herding --backend torch \
        --device cpu                                     # numpy vs CPU torch, same run
    python benchmarks/baselines.py --sizes 100000 --methods kcenter herding --backend torch \
        --device cuda                                    # numpy vs the GPU, same run

Timings depend on the machine and on its other load; the ratios are measured in the same run.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from _shared import RssSampler, proc_status

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DIM = 512
N_CLUSTERS = 40
N_LEVELS = 5
DATA_SEED = 0
SELECT_SEED = 0
MIB = 2**20
DEFAULT_SIZES = (10_000, 40_000, 100_000)
QUICK_SIZES = (2_000, 5_000)

# case name -> (registry method, fixed options); qdiverse first: the others' ratios need it.
CASES = {
    "qdiverse": ("qdiverse", {}),
    "random": ("random", {}),
    "kcenter": ("kcenter", {}),
    "herding_classic": ("herding", {"variant": "classic"}),
    "herding_deepcore": ("herding", {"variant": "deepcore"}),
    "moderate": ("moderate", {}),
    "contextual_diversity": ("contextual_diversity", {}),
    "pgcs_tsne": ("pgcs", {}),
    "pgcs_3d": ("pgcs", {}),
}
ALIASES = {
    "herding": ("herding_classic", "herding_deepcore"),
    "pgcs": ("pgcs_tsne", "pgcs_3d"),
    "cd": ("contextual_diversity",),
}
LABELS = {
    "pgcs_tsne": "pgcs (own t-SNE)",
    "pgcs_3d": "pgcs (given 3-D)",
}
NAIVE = ("kcenter", "herding_classic", "herding_deepcore", "moderate", "contextual_diversity",
         "pgcs_3d")
#: Cases whose method takes ``backend="torch"`` and ``device=``.
TORCH_CASES = ("qdiverse", "kcenter", "herding_classic", "herding_deepcore")


# ------------------------------------------------------------------------------------- data
def write_data(folder: Path, n: int, *, seed: int = DATA_SEED) -> dict[str, str]:
    """Write ``n`` rows of every input to ``.npy`` files in ``folder``; returns their paths.

    ``features.npy`` (float32, ``n x 512``) is written in chunks through ``open_memmap``; MOS,
    probabilities and the 3-D projection are small and derived from the same rows.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((N_CLUSTERS, DIM), dtype=np.float32) * 3.0
    scales = rng.uniform(0.5, 1.5, size=N_CLUSTERS).astype(np.float32)
    cluster_quality = rng.uniform(1.5, 4.5, size=N_CLUSTERS)
    to_logits = rng.standard_normal((DIM, N_LEVELS)) / math.sqrt(DIM)
    to_3d = rng.standard_normal((DIM, 3)) / math.sqrt(DIM)
    labels = rng.integers(N_CLUSTERS, size=n)

    paths = {k: str(folder / f"{k}.npy") for k in ("features", "mos", "probs", "emb3d")}
    X = np.lib.format.open_memmap(paths["features"], mode="w+", dtype=np.float32,
                                  shape=(n, DIM))
    probs = np.empty((n, N_LEVELS))
    emb3d = np.empty((n, 3))
    step = 8192
    for start in range(0, n, step):
        lab = labels[start:start + step]
        block = rng.standard_normal((len(lab), DIM), dtype=np.float32)
        block *= scales[lab, None]
        block += centres[lab]
        X[start:start + step] = block
        logits = block.astype(np.float64) @ to_logits
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        probs[start:start + step] = p / p.sum(axis=1, keepdims=True)
        emb3d[start:start + step] = block.astype(np.float64) @ to_3d
    X.flush()
    del X
    mos = np.clip(cluster_quality[labels] + 0.35 * rng.standard_normal(n), 1.0, 5.0)
    np.save(paths["mos"], mos)
    np.save(paths["probs"], probs)
    np.save(paths["emb3d"], emb3d)
    return paths


def load_inputs(paths: dict[str, str], n: int) -> dict[str, np.ndarray]:
    """The first ``n`` rows of every input; the features stay memory-mapped."""
    X = np.load(paths["features"], mmap_mode="r")[:n]
    return {"X": X, "mos": np.load(paths["mos"])[:n], "probs": np.load(paths["probs"])[:n],
            "emb3d": np.load(paths["emb3d"])[:n]}


def select_call(case: str, data: dict, budget: int, device: str | None = None):
    """A zero-argument function running ``select()`` for ``case`` on ``data`` (with
    ``backend="torch"`` on ``device`` when one is given)."""
    from qd_lib.selection import get_method, select

    method, options = CASES[case]
    options = dict(options)
    if device is not None:
        options.update(backend="torch", device=device)
    if "progress" in get_method(method).options:
        options["progress"] = False
    X = data["X"]
    kwargs: dict = {"seed": SELECT_SEED}
    if method == "qdiverse":
        features = {"content": X[:, :DIM // 2], "quality": X[:, DIM // 2:]}
    elif method == "contextual_diversity":
        features = {"embedding": X, "probs": data["probs"]}
    else:
        features = X
    if get_method(method).needs_mos:
        kwargs["mos"] = data["mos"]
    if case == "pgcs_3d":
        options["embedding_3d"] = data["emb3d"]
    return lambda: select(method, features, budget, **kwargs, **options)


# --------------------------------------------------------------------------- naive versions
def _deepcore_euclidean(x, Y):
    """DeepCore's ``euclidean_dist``: expanded square, clamp at 1e-12, square root."""
    xx = np.einsum("ij,ij->i", x, x)[:, None]
    yy = np.einsum("ij,ij->i", Y, Y)[None, :]
    return np.sqrt(np.maximum(xx + yy - 2.0 * (x @ Y.T), 1e-12))


def naive_kcenter(X, budget, first=0):
    """DeepCore's k-Center loop: preallocated (B-1) x N matrix, boolean-mask gathers per step."""
    n = len(X)
    selected = np.zeros(n, dtype=bool)
    selected[first] = True
    dis = -np.ones((budget - 1, n), dtype=np.float32)
    mins = _deepcore_euclidean(X[[first]], X)[0]
    order = [first]
    for i in range(budget - 1):
        mins[selected] = -1
        p = int(np.argmax(mins))
        selected[p] = True
        order.append(p)
        dis[i, ~selected] = _deepcore_euclidean(X[[p]], X[~selected])[0]
        dis[i, selected] = 0
        mins = np.minimum(mins, dis[i])
    return np.array(order)


def naive_herding(X, budget, farthest):
    """DeepCore's Herding loop: re-sum the selected rows and gather the unselected ones."""
    n = len(X)
    idx = np.arange(n)
    mu = X.mean(axis=0)
    selected = np.zeros(n, dtype=bool)
    order = []
    for i in range(budget):
        r = (i + 1) * mu - X[selected].sum(axis=0)
        dist = _deepcore_euclidean(r[None, :], X[~selected])[0]
        p = idx[~selected][int(np.argmax(dist) if farthest else np.argmin(dist))]
        selected[p] = True
        order.append(p)
    return np.array(order)


def naive_moderate(X, mos, budget):
    """Moderate in one float64 block: distance to the class median, middle window of ranks."""
    from qd_lib.selection.binning import mos_bins

    bins = mos_bins(mos)
    Z = X.astype(np.float64)
    centres = np.stack([np.median(Z[bins.labels == c], axis=0) for c in range(bins.n_bins)])
    s = np.linalg.norm(Z - centres[bins.labels], axis=1)
    order = np.argsort(s, kind="stable")
    start = (len(s) - budget) // 2
    return order[start:start + budget]


def naive_cd(probs, mos, budget):
    """Per-bin k-Center on a full pairwise half-Jeffreys matrix (CDAL builds the full matrix)."""
    from qd_lib.selection.binning import mos_bins, split_budget

    bins = mos_bins(mos)
    quotas = split_budget(bins.counts, budget)
    P = np.maximum(probs, 1e-12)
    P /= P.sum(axis=1, keepdims=True)
    L = np.log(P)
    out = []
    for c in range(bins.n_bins):
        rows = bins.members(c)
        Pc, Lc = P[rows], L[rows]
        h = np.einsum("ij,ij->i", Pc, Lc)
        D = 0.5 * (h[:, None] + h[None, :] - Pc @ Lc.T - Lc @ Pc.T)
        m = D[0].copy()
        m[0] = -1
        picks = [0]
        for _ in range(int(quotas[c]) - 1):
            p = int(np.argmax(m))
            picks.append(p)
            m = np.minimum(m, D[p])
            m[picks] = -1
        out.append(rows[picks[:int(quotas[c])]])
    return np.concatenate(out)


def naive_pgcs_partition(Y, K=5):
    """The official partitioning: full N x N distances, every row argsorted, bins by position."""
    n = len(Y)
    D = np.sqrt(((Y[:, None, :] - Y[None, :, :]) ** 2).sum(-1))
    q = n // K
    value = np.minimum(np.arange(n) // q, K - 1) + 1
    cov = np.zeros(n, dtype=np.int64)
    for i in range(n):
        cov[np.argsort(D[i])] += value
    return cov


def naive_call(case: str, data: dict, budget: int):
    X = np.asarray(data["X"])  # the naive code works on an in-memory copy
    if case == "kcenter":
        return lambda: naive_kcenter(X, budget)
    if case.startswith("herding"):
        return lambda: naive_herding(X, budget, farthest=case.endswith("deepcore"))
    if case == "moderate":
        return lambda: naive_moderate(X, data["mos"], budget)
    if case == "contextual_diversity":
        return lambda: naive_cd(data["probs"], data["mos"], budget)
    if case == "pgcs_3d":
        return lambda: naive_pgcs_partition(data["emb3d"])
    raise ValueError(case)


def naive_scale(case: str, n_small: int, n: int) -> float:
    r = n / n_small
    if case == "moderate":
        return r
    if case == "pgcs_3d":
        return r * r * math.log(n) / math.log(n_small)
    return r * r


# ------------------------------------------------------------------------------- the child
def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def run_case(job: dict) -> dict:
    """Body of a child process: time one (case, N) and measure its memory."""
    data = load_inputs(job["paths"], job["n"])
    budget = math.floor(job["fraction"] * job["n"])
    if job["naive"]:
        from qd_lib.selection._kernels import single_thread_blas

        fn = naive_call(job["case"], data, budget)
        with single_thread_blas():
            t0 = time.perf_counter()
            fn()
            seconds = time.perf_counter() - t0
        return {"seconds": seconds, "rss_peak": proc_status().get("VmHWM")}

    # Warm-up on a small prefix: imports (openTSNE, scipy, ...) and first-call costs (on a
    # device: the CUDA context and the library handles).
    device = job.get("device")
    small = {k: v[:min(job["n"], 300)] for k, v in data.items()}
    select_call(job["case"], small, max(1, len(small["X"]) // 10), device)()
    fn = select_call(job["case"], data, budget, device)
    cuda = device is not None and device.startswith("cuda")
    if cuda:
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rss_start = proc_status().get("VmRSS")
    reset = _reset_peak_rss()
    with RssSampler(interval=0.005) as anon:
        t0 = time.perf_counter()
        sel = fn()
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    status = proc_status()
    result = {"seconds": seconds, "budget": sel.budget, "rss_start": rss_start,
              "rss_peak": status.get("VmHWM") if reset else None, "anon_peak": anon.anon,
              "traced_peak": None, "picks": hashlib.sha256(sel.indices.tobytes()).hexdigest(),
              "near_ties": sel.info.get("near_ties"),
              "device_peak": torch.cuda.max_memory_allocated() if cuda else None}
    if device is not None:
        return result  # no tracemalloc pass: the device's memory is what matters
    if seconds <= job["trace_max_s"]:
        tracemalloc.start()
        try:
            fn()
            result["traced_peak"] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    return result


def child_main(job_json: str) -> int:
    job = json.loads(job_json)
    result = run_case(job)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


def spawn_case(job: dict, timeout: float) -> dict:
    """Run one case in a fresh interpreter and return its result (or {"error": ...})."""
    env = {**os.environ, "TQDM_DISABLE": "1"}
    try:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child",
                               json.dumps(job)], capture_output=True, text=True, env=env,
                              timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = proc.stderr.strip().splitlines()[-1:] or [""]
    return {"error": f"exit {proc.returncode}: {tail[0][-160:]}"}


# ------------------------------------------------------------------------------- reporting
def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def machine_facts() -> list[str]:
    from threadpoolctl import threadpool_info

    from qd_lib.utils.machine import cpu_model

    cpu = cpu_model()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count()
    mem = "?"
    try:
        with open("/proc/meminfo") as fh:
            kb = int(next(ln.split()[1] for ln in fh if ln.startswith("MemTotal")))
        mem = f"{kb / 2**20:.1f} GiB"
    except (OSError, StopIteration):
        pass
    blas = sorted({f"{i['internal_api']} {i['version']} ({i['threading_layer']}, "
                   f"{i['num_threads']} threads by default)"
                   for i in threadpool_info() if i["user_api"] == "blas"})
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return [
        f"machine: {cpu}; {os.cpu_count()} logical cores ({usable} usable); RAM {mem}; "
        f"load average at start {load}",
        f"python {platform.python_version()}, numpy {np.__version__}; "
        f"BLAS: {'; '.join(blas) or '?'}",
    ]


def data_facts(args) -> list[str]:
    return [
        f"data: seeded (seed {DATA_SEED}) float32 features, {DIM}-d, {N_CLUSTERS} Gaussian "
        f"clusters (centres N(0, 9), per-cluster scale U(0.5, 1.5)), .npy memory-mapped from a "
        f"temp dir; the N-row set is the first N rows of one file",
        f"coreset fraction {args.fraction:g} (B = floor(fraction x N)); select(seed="
        f"{SELECT_SEED}), library-default options, progress off, one process per case",
        "MOS = per-cluster level U(1.5, 4.5) + N(0, 0.35^2), clipped to [1, 5] (moderate, CD); "
        "CD probs = softmax of a fixed random 512->5 projection",
        f"qdiverse: content = columns 0-{DIM // 2 - 1}, quality = columns {DIM // 2}-{DIM - 1} "
        "of the same features",
        "pgcs (own t-SNE): openTSNE 3-D inside select(); pgcs (given 3-D): embedding_3d = a "
        "fixed random 512->3 projection of the features (partitioning only)",
        "xQD = method seconds / qdiverse seconds at the same N; peak RSS = child VmHWM during the "
        "call (interpreter + touched mmap pages included); anon = sampled peak RssAnon; "
        f"tracemalloc = second traced call, made only when the first took <= "
        f"{args.trace_max_s:g} s (else '-')",
    ]


def _secs(x: float) -> str:
    return f"{x:.3f}" if x < 1 else f"{x:.2f}"


def _ratio(x: float) -> str:
    return f"{x:.3f}" if x < 0.1 else f"{x:.2f}"


def _times(x: float) -> str:
    return f"{x:.1f}x" if x < 10 else f"{x:.0f}x"


def _mib(x) -> str:
    return "-" if x is None else f"{x / MIB:.0f}"


COLUMNS = [("method", 20, "<"), ("N", 7, ">"), ("B", 6, ">"), ("seconds", 9, ">"),
           ("xQD", 8, ">"), ("peak RSS MiB", 13, ">"), ("start RSS", 10, ">"),
           ("anon MiB", 9, ">"), ("tracemalloc", 12, ">")]
NAIVE_COLUMNS = [("naive s", 9, ">"), ("naive@n", 8, ">"), ("naive/ours", 11, ">")]


def _fmt(cells, columns) -> str:
    parts = []
    for (_, width, align), cell in zip(columns, cells):
        parts.append(f"{cell:{align}{width}}")
    return "  ".join(parts).rstrip()


def table_row(case: str, n: int, budget: int, r: dict | None, qd_seconds: float | None,
              naive: dict | None, columns) -> str:
    label = LABELS.get(case, case)
    if r is None:
        cells = [label, str(n), str(budget), "skipped (t-SNE)"]
    elif "error" in r:
        cells = [label, str(n), str(budget), "ERROR " + r["error"]]
        return _fmt(cells[:3], columns) + "  " + cells[3]
    else:
        ratio = "-" if not qd_seconds else _ratio(r["seconds"] / qd_seconds)
        cells = [label, str(n), str(r["budget"]), _secs(r["seconds"]), ratio,
                 _mib(r["rss_peak"]), _mib(r["rss_start"]), _mib(r["anon_peak"]),
                 _mib(r["traced_peak"])]
    if naive is not None and r is not None:
        if "error" in naive:
            cells += ["ERROR", "", ""]
        else:
            cells += [_secs(naive["seconds"]), str(naive["n"]),
                      _times(naive["seconds"] / r["seconds"])]
    if r is None:
        return _fmt(cells[:3], columns) + "  " + cells[3]
    return _fmt(cells, columns)


def torch_row(case: str, n: int, device: str, r: dict, ref: dict | None) -> str:
    """The ``[torch <device>]`` line: seconds, numpy/torch, same coreset, near ties, peak."""
    label = f"  {LABELS.get(case, case)} [torch {device}]"
    if "error" in r:
        return f"{label:<22}{n:>7}  ERROR {r['error']}"
    parts = [f"{label:<22}{n:>7}  {r['budget']:>6}  {_secs(r['seconds']):>9}"]
    if ref is not None and "error" not in ref:
        parts.append(f"numpy/torch {ref['seconds'] / r['seconds']:.2f}")
        parts.append("same coreset" if ref.get("picks") == r["picks"] else "DIFFERENT coreset")
    if r.get("near_ties") is not None:
        parts.append(f"near ties {r['near_ties']}")
    if r.get("device_peak") is not None:
        parts.append(f"device peak {_mib(r['device_peak'])} MiB")
    return "  ".join(parts)


def summary(results: dict, cases: list[str], sizes: list[int]) -> None:
    print("\nsummary: seconds (x Q-Diverse) / peak RSS MiB")
    width = 26
    print(f"{'method':<20}" + "".join(f"{'N=' + str(n):>{width}}" for n in sizes))
    for case in cases:
        line = f"{LABELS.get(case, case):<20}"
        for n in sizes:
            r, qd = results.get((case, n)), results.get(("qdiverse", n))
            if r is None:
                cell = "skipped (t-SNE)" if case == "pgcs_tsne" else "-"
            elif "error" in r:
                cell = "ERROR"
            else:
                ratio = (f" (x{_ratio(r['seconds'] / qd['seconds'])})"
                         if qd and "error" not in qd else "")
                cell = f"{_secs(r['seconds'])}{ratio} / {_mib(r['rss_peak'])}"
            line += f"{cell:>{width}}"
        print(line)


# ------------------------------------------------------------------------------------ main
def parse_cases(names: list[str] | None, parser) -> list[str]:
    if not names:
        return list(CASES)
    chosen = {"qdiverse"}  # always measured: every ratio is to it
    for name in names:
        for part in name.split(","):
            if not part:
                continue
            if part in ALIASES:
                chosen.update(ALIASES[part])
            elif part in CASES:
                chosen.add(part)
            else:
                parser.error(f"unknown method {part!r}; choose from "
                             f"{sorted(set(CASES) | set(ALIASES))}")
    return [c for c in CASES if c in chosen]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES),
                    help="numbers of rows N (default: %(default)s)")
    ap.add_argument("--fraction", type=float, default=0.10, help="coreset fraction")
    ap.add_argument("--methods", nargs="+", default=None,
                    help=f"cases to run (qdiverse is always included); any of {list(CASES)} "
                         f"or the groups {list(ALIASES)} (default: all)")
    ap.add_argument("--quick", action="store_true",
                    help=f"sizes {' '.join(map(str, QUICK_SIZES))} (overrides --sizes)")
    ap.add_argument("--naive", action="store_true",
                    help="also time the naive reference transcriptions (scaled from a cap)")
    ap.add_argument("--naive-max", type=int, default=10_000,
                    help="rows the naive greedy / moderate / CD references run on at most")
    ap.add_argument("--pgcs-naive-max", type=int, default=4_000,
                    help="rows the naive PGCS partitioning runs on at most")
    ap.add_argument("--pgcs-tsne-max", type=int, default=10_000,
                    help="largest N at which PGCS runs its own t-SNE")
    ap.add_argument("--pgcs-tsne-all", action="store_true",
                    help="run PGCS's own t-SNE at every N")
    ap.add_argument("--trace-max-s", type=float, default=20.0,
                    help="make the second, tracemalloc'd call only when the timed one took at "
                         "most this long")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per case")
    ap.add_argument("--backend", choices=("numpy", "torch"), default="numpy",
                    help="torch: also time qdiverse, kcenter and herding with backend='torch' "
                         "on --device, against numpy in the same run")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:<i> (with --backend "
                                                    "torch)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child is not None:
        return child_main(args.child)
    if not 0.0 < args.fraction <= 1.0:
        ap.error("--fraction must lie in (0, 1]")
    sizes = sorted(set(QUICK_SIZES if args.quick else args.sizes))
    if sizes[0] < 300:
        ap.error("--sizes must be at least 300")
    cases = parse_cases(args.methods, ap)
    if args.backend == "numpy" and args.device != "cpu":
        ap.error("--device needs --backend torch")
    if args.backend == "torch":
        from qd_lib.selection._backend import resolve_backend

        try:
            args.device = resolve_backend("torch", args.device, "baselines.py")
        except ValueError as exc:
            ap.error(str(exc))

    for line in machine_facts() + data_facts(args):
        print("# " + line)
    if args.naive:
        print(f"# --naive: references on 1 BLAS thread at n = min(N, {args.naive_max}) "
              f"(PGCS: {args.pgcs_naive_max}), scaled to N by (N/n)^2 (greedy loops, CD), "
              "(N/n)^2 log N/log n (PGCS), N/n (moderate)")
    columns = COLUMNS + (NAIVE_COLUMNS if args.naive else [])
    print()
    print(_fmt([c[0] for c in columns], columns))
    print("-" * (sum(c[1] for c in columns) + 2 * (len(columns) - 1)))

    results: dict = {}
    naive_cache: dict = {}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="qd_baselines_") as tmp:
        log(f"writing {sizes[-1]} x {DIM} float32 features to {tmp} ...")
        paths = write_data(Path(tmp), sizes[-1])
        for n in sizes:
            budget = math.floor(args.fraction * n)
            for case in cases:
                if case == "pgcs_tsne" and n > args.pgcs_tsne_max and not args.pgcs_tsne_all:
                    r = None
                else:
                    log(f"N={n}: {case} ...")
                    job = {"case": case, "n": n, "fraction": args.fraction, "paths": paths,
                           "naive": False, "trace_max_s": args.trace_max_s}
                    r = spawn_case(job, args.timeout)
                    results[(case, n)] = r
                naive = None
                if args.naive and case in NAIVE and r is not None and "error" not in r:
                    cap = args.pgcs_naive_max if case == "pgcs_3d" else args.naive_max
                    n_small = min(n, cap)
                    if (case, n_small) not in naive_cache:
                        log(f"N={n}: naive {case} at n={n_small} ...")
                        job = {"case": case, "n": n_small, "fraction": args.fraction,
                               "paths": paths, "naive": True}
                        naive_cache[(case, n_small)] = spawn_case(job, args.timeout)
                    raw = naive_cache[(case, n_small)]
                    naive = dict(raw)
                    if "error" not in raw:
                        naive["seconds"] = raw["seconds"] * naive_scale(case, n_small, n)
                        naive["n"] = n_small
                qd = results.get(("qdiverse", n))
                qd_seconds = qd["seconds"] if qd and "error" not in qd else None
                print(table_row(case, n, budget, r, qd_seconds, naive, columns), flush=True)
                if args.backend == "torch" and case in TORCH_CASES:
                    log(f"N={n}: {case} on torch {args.device} ...")
                    job = {"case": case, "n": n, "fraction": args.fraction, "paths": paths,
                           "naive": False, "trace_max_s": 0.0, "device": args.device}
                    t = spawn_case(job, args.timeout)
                    results[(case + "@torch", n)] = t
                    print(torch_row(case, n, args.device, t, r), flush=True)
            print()
    summary(results, cases, sizes)
    print(f"\n# total wall time of the benchmark: {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

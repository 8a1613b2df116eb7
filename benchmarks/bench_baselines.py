"""Speed and memory of the baseline selectors against DeepCore/official-style transcriptions.

Seeded clustered float32 features (d = 512 by default, 40 clusters), MOS from a smooth function
of the features, LIQE-like 5-level probabilities, coreset fraction 10 %. For each N it times
``select()`` for k-Center, Herding (classic and DeepCore variants), Moderate, Contextual
Diversity (per-bin) and PGCS's coverage partitioning (on a 3-D embedding given to it, so the
t-SNE is not timed unless ``--tsne-n`` asks for it), and prints each with:

* peak memory: the largest allocation total during a second, traced call (``tracemalloc``
  sees numpy's buffers); ``--no-peak`` skips that second call;
* a naive baseline measured in the same run: a direct numpy transcription of what the
  reference code does (DeepCore's k-Center and Herding loops with their per-step gathers and
  preallocated ``(B−1) × N`` distance matrix; CD as a full per-bin matrix; Moderate in one
  float64 block; PGCS's full ``N × N`` matrix with a sorted row per point). Naive runs are
  capped at ``--naive-max`` rows and scaled to N by their complexity: ``(N/n)²`` for the
  ``O(B·N)`` loops, ``(N/n)² · log N / log n`` for PGCS's row sorts, linear for Moderate.
  "same picks" runs both once more in float64 at ``--check-n`` rows and compares them.

BLAS runs single-threaded for both sides of every comparison (the greedy loops are many small
memory-bound products where threads only add synchronisation); PGCS's partitioning uses
``--n-jobs`` worker threads.

Usage::

    python benchmarks/bench_baselines.py                      # N = 40000
    python benchmarks/bench_baselines.py 10000 40000          # several N
    python benchmarks/bench_baselines.py 100000 --methods pgcs_partition --no-naive --n-jobs 2
    python benchmarks/bench_baselines.py 10000 --methods pgcs_partition --tsne-n 10000

Targets (design README): k-Center and Herding at 40k in at most 3 s; PGCS able to run at 100k.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qd_lib.selection import select  # noqa: E402
from qd_lib.selection._kernels import single_thread_blas  # noqa: E402
from qd_lib.selection.binning import mos_bins, split_budget  # noqa: E402
from qd_lib.selection.methods.pgcs import coverage_scores  # noqa: E402

ALL = ("kcenter", "herding_classic", "herding_deepcore", "moderate", "cd", "pgcs_partition")


# ------------------------------------------------------------------------------------ data
def make_data(n: int, d: int, *, seed: int = 0, n_clusters: int = 40) -> dict:
    """Clustered float32 features, a MOS, 5-level probabilities and a 3-D layout."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, d), dtype=np.float32) * 3.0
    scales = rng.uniform(0.5, 1.5, size=n_clusters).astype(np.float32)
    labels = rng.integers(n_clusters, size=n)
    X = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, 8192):
        lab = labels[start:start + 8192]
        block = rng.standard_normal((len(lab), d), dtype=np.float32)
        block *= scales[lab, None]
        block += centres[lab]
        X[start:start + 8192] = block
    u = rng.standard_normal(d).astype(np.float32) / np.sqrt(d)
    raw = X @ u
    mos = 1.0 + 4.0 / (1.0 + np.exp(-(raw - raw.mean()) / raw.std()))
    levels = np.arange(1, 6)
    logits = -((mos[:, None] - levels[None, :]) ** 2) / 0.5 + 0.3 * rng.standard_normal((n, 5))
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    Y = centres[labels, :3].astype(np.float64) * 5 + rng.standard_normal((n, 3))  # 3-D layout
    return {"X": X, "mos": mos, "probs": probs, "Y": Y}


# --------------------------------------------------------------------------- naive versions
def _deepcore_euclidean(x, Y):
    """DeepCore's ``euclidean_dist``: expanded square, clamp at 1e-12, square root."""
    xx = np.einsum("ij,ij->i", x, x)[:, None]
    yy = np.einsum("ij,ij->i", Y, Y)[None, :]
    return np.sqrt(np.maximum(xx + yy - 2.0 * (x @ Y.T), 1e-12))


def naive_kcenter(X, budget, first):
    """DeepCore's k-Center loop: preallocated (B−1)×N matrix, boolean-mask gathers per step."""
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
    bins = mos_bins(mos)
    Z = X.astype(np.float64)
    centres = np.stack([np.median(Z[bins.labels == c], axis=0) for c in range(bins.n_bins)])
    s = np.linalg.norm(Z - centres[bins.labels], axis=1)
    order = np.argsort(s, kind="stable")
    start = (len(s) - budget) // 2
    return order[start:start + budget]


def naive_cd(probs, mos, budget):
    """Per-bin k-Center on a full pairwise ½-Jeffreys matrix (CDAL builds the full matrix)."""
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
    """The official partitioning: full N×N distances, every row argsorted, bins by position."""
    n = len(Y)
    D = np.sqrt(((Y[:, None, :] - Y[None, :, :]) ** 2).sum(-1))
    q = n // K
    value = np.minimum(np.arange(n) // q, K - 1) + 1
    cov = np.zeros(n, dtype=np.int64)
    for i in range(n):
        cov[np.argsort(D[i])] += value
    return cov


# ------------------------------------------------------------------------------- harness
def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def peak_mb(fn) -> float:
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


def ours(method: str, data: dict, budget: int, n_jobs: int, dtype: str = "float32"):
    X, mos = data["X"], data["mos"]
    if method == "kcenter":
        return lambda: select("kcenter", X, budget, first_index=0, dtype=dtype,
                              progress=False).indices
    if method.startswith("herding"):
        variant = method.split("_")[1]
        return lambda: select("herding", X, budget, variant=variant, dtype=dtype,
                              progress=False).indices
    if method == "moderate":
        return lambda: select("moderate", X, budget, mos=mos).indices
    if method == "cd":
        feats = {"embedding": X, "probs": data["probs"]}
        return lambda: select("contextual_diversity", feats, budget, mos=mos,
                              progress=False).indices
    if method == "pgcs_partition":
        return lambda: coverage_scores(data["Y"], 5, n_jobs=n_jobs)[0]
    raise ValueError(method)


def naive(method: str, data: dict, budget: int):
    X, mos = data["X"], data["mos"]
    if method == "kcenter":
        return lambda: naive_kcenter(X, budget, 0)
    if method.startswith("herding"):
        return lambda: naive_herding(X, budget, method.endswith("deepcore"))
    if method == "moderate":
        return lambda: naive_moderate(X, mos, budget)
    if method == "cd":
        return lambda: naive_cd(data["probs"], mos, budget)
    if method == "pgcs_partition":
        return lambda: naive_pgcs_partition(data["Y"])
    raise ValueError(method)


def scale(method: str, n_small: int, n: int) -> float:
    r = n / n_small
    if method == "moderate":
        return r
    if method == "pgcs_partition":
        return r * r * math.log(n) / math.log(n_small)
    return r * r


def same(method, a, b) -> str:
    if method == "cd":
        return "-"  # the naive run starts every bin at its first row, ours at a random one
    if method in ("kcenter", "herding_classic", "herding_deepcore", "pgcs_partition"):
        return "yes" if np.array_equal(a, b) else "NO"
    return "yes" if set(np.asarray(a).tolist()) == set(np.asarray(b).tolist()) else "NO"


def check_picks(method: str, n: int, args) -> str:
    """Same picks as the naive transcription at ``n`` rows, both in float64 (float32 round-off
    reorders near-ties among the concentrated distances of high-dimensional data)."""
    data = make_data(n, args.d)
    data["X"] = data["X"].astype(np.float64)
    budget = math.floor(args.fraction * n)
    return same(method, ours(method, data, budget, args.n_jobs, dtype="float64")(),
                naive(method, data, budget)())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("n", nargs="*", type=int, default=[40000])
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--fraction", type=float, default=0.10)
    ap.add_argument("--methods", default=",".join(ALL))
    ap.add_argument("--naive-max", type=int, default=10000,
                    help="largest N at which naive baselines run (then scaled)")
    ap.add_argument("--pgcs-naive-max", type=int, default=4000)
    ap.add_argument("--check-n", type=int, default=3000,
                    help="rows of the float64 same-picks check against the naive version")
    ap.add_argument("--no-naive", action="store_true")
    ap.add_argument("--no-peak", action="store_true")
    ap.add_argument("--n-jobs", type=int, default=2, help="PGCS partitioning threads")
    ap.add_argument("--tsne-n", type=int, default=0, help="also time openTSNE 3-D at this N")
    args = ap.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(ALL)
    if unknown:
        ap.error(f"unknown methods {sorted(unknown)}; choose from {ALL}")
    print(f"# d={args.d}, fraction={args.fraction}, BLAS single-threaded, "
          f"PGCS partition threads={args.n_jobs}")
    header = (f"{'method':<18}{'N':>8}{'B':>7}{'ours s':>9}{'peak MB':>9}{'naive s':>10}"
              f"{'naive@n':>9}{'ratio':>8}  same picks (f64 check)")
    for n in args.n:
        data = make_data(n, args.d)
        budget = math.floor(args.fraction * n)
        print(header)
        for method in methods:
            with single_thread_blas():
                result, t_ours = timed(ours(method, data, budget, args.n_jobs))
                peak = float("nan") if args.no_peak else peak_mb(ours(method, data, budget,
                                                                      args.n_jobs))
                naive_s, naive_at, check = float("nan"), "-", "-"
                if not args.no_naive:
                    cap = args.pgcs_naive_max if method == "pgcs_partition" else args.naive_max
                    n_small = min(n, cap)
                    small = data if n_small == n else make_data(n_small, args.d)
                    b_small = math.floor(args.fraction * n_small)
                    _, t_ref = timed(naive(method, small, b_small))
                    naive_s = t_ref * scale(method, n_small, n)
                    naive_at = str(n_small)
                    check = check_picks(method, min(n_small, args.check_n), args)
            ratio = naive_s / t_ours if naive_s == naive_s else float("nan")
            print(f"{method:<18}{n:>8}{budget:>7}{t_ours:>9.2f}{peak:>9.0f}{naive_s:>10.1f}"
                  f"{naive_at:>9}{ratio:>7.0f}x  {check}", flush=True)
    if args.tsne_n:
        from qd_lib.selection.methods.pgcs import tsne_3d

        data = make_data(args.tsne_n, args.d)
        _, t = timed(lambda: tsne_3d(data["X"], n_components=3, perplexity=30.0,
                                     random_state=0, n_jobs=args.n_jobs, verbose=False))
        print(f"openTSNE 3-D (Barnes-Hut) at N={args.tsne_n}: {t:.1f} s with "
              f"n_jobs={args.n_jobs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Speed and memory of Q-Diverse against a straightforward reference implementation.

Seeded clustered float32 features (content d=2048, quality d=4096 by default, like ResNet-50
and ARNIQA), coreset fraction 10 %, batch 1000, 600 landmarks. For each N it prints the wall
time of ``select("qdiverse", ...)`` and the time of a reference measured in the same run, with
the ratio. Memory is the peak of the allocations made during a call (``tracemalloc``, which
sees numpy's buffers; worker processes are not included) and the growth of the resident set
(which allocator reuse can hide). The reference is what a direct transcription of the method
looks like: float64 distances, a dense ``scipy.linalg.eigh`` of each batch's whole normalised
affinity (exact spectral embedding, no Nyström), and a greedy log-det that keeps
``(K_S + εI)^{-1}`` explicitly and re-scores every candidate with it. Both run with
single-threaded BLAS (see the Q-Diverse module notes).

Usage::

    python benchmarks/bench_qdiverse.py                  # N = 10000
    python benchmarks/bench_qdiverse.py 10000 40000      # several N
    python benchmarks/bench_qdiverse.py 40000 --small    # d = 256 / 512
    python benchmarks/bench_qdiverse.py 100000 --no-baseline --memmap --n-jobs 2
    python benchmarks/bench_qdiverse.py 3000 --check     # also: same picks as the reference
                                                         # when every row is a landmark

Targets (design README): 3 s at 10k, 12 s at 40k, 30 s at 100k on 2 cores.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import scipy.linalg
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qd_lib.selection import select  # noqa: E402
from qd_lib.selection.spectral import allocate_budget, energy_rank  # noqa: E402


# ------------------------------------------------------------------------------------ data
def clustered_features(n: int, d: int, *, n_clusters: int = 40, seed: int = 0,
                       normalize: bool = False) -> np.ndarray:
    """``n × d`` float32 rows around ``n_clusters`` centres, generated in chunks."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, d), dtype=np.float32) * 3.0
    scales = rng.uniform(0.5, 1.5, size=n_clusters).astype(np.float32)
    labels = rng.integers(n_clusters, size=n)
    out = np.empty((n, d), dtype=np.float32)
    step = 8192
    for start in range(0, n, step):
        lab = labels[start:start + step]
        block = rng.standard_normal((len(lab), d), dtype=np.float32)
        block *= scales[lab, None]
        block += centres[lab]
        if normalize:
            block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start:start + step] = block
    return out


# ------------------------------------------------------------------------------- reference
def _ref_distances(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    sq = np.einsum("ij,ij->i", X, X)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (X @ X.T)
    d = np.sqrt(np.maximum(d2, 0.0))
    np.fill_diagonal(d, 0.0)
    return d


def _ref_median(D: np.ndarray) -> float:
    v = float(np.median(D[np.triu_indices(D.shape[0], 1)]))
    return v if v > 0 else 1.0


def _ref_greedy(K: np.ndarray, m: int, eps: float) -> list[int]:
    """Greedy log-det with an explicit inverse of (K_S + eps I), updated by blocks."""
    selected: list[int] = []
    inv = np.zeros((0, 0))
    diag = np.diag(K) + eps
    for _ in range(m):
        if selected:
            Ks = K[:, selected]
            scores = diag - np.einsum("ij,jk,ik->i", Ks, inv, Ks)
        else:
            scores = diag.copy()
        scores[selected] = -np.inf
        j = int(np.argmax(scores))
        # block inverse update for adding j
        if selected:
            b = K[selected, j]
            u = inv @ b
            s = diag[j] - b @ u
            new = np.empty((len(selected) + 1,) * 2)
            new[:-1, :-1] = inv + np.outer(u, u) / s
            new[:-1, -1] = new[-1, :-1] = -u / s
            new[-1, -1] = 1.0 / s
            inv = new
        else:
            inv = np.array([[1.0 / diag[j]]])
        selected.append(j)
    return selected


def reference_qdiverse(Fc, Fq, budget: int, *, gamma=0.5, energy=0.95, eps=1e-6,
                       batch_size=1000) -> np.ndarray:
    """Direct transcription of Q-Diverse (exact eigh, explicit-inverse greedy)."""
    n = Fc.shape[0]
    starts = list(range(0, n, batch_size))
    sizes = [min(s + batch_size, n) - s for s in starts]
    budgets = allocate_budget(sizes, budget)
    picks = []
    for start, size, m in zip(starts, sizes, budgets):
        if m == 0:
            continue
        if m >= size:
            picks.extend(range(start, start + size))
            continue
        Dc = _ref_distances(Fc[start:start + size])
        Dq = _ref_distances(Fq[start:start + size])
        Dc /= Dc.max() if Dc.max() > 0 else 1.0
        Dq /= Dq.max() if Dq.max() > 0 else 1.0
        D = gamma * Dc + (1 - gamma) * Dq
        sigma = _ref_median(D)
        W = np.exp(-D ** 2 / (2 * sigma ** 2))
        deg = W.sum(axis=1)
        S = W / np.sqrt(np.outer(deg, deg))
        lam, U = scipy.linalg.eigh(S)
        lam, U = np.maximum(lam[::-1], 0.0), U[:, ::-1]
        r = energy_rank(lam, energy)
        Z = U[:, :r]
        Dz = _ref_distances(Z)
        sz = _ref_median(Dz)
        K = np.exp(-Dz ** 2 / (2 * sz ** 2))
        picks.extend(start + j for j in _ref_greedy(K, int(m), eps))
    return np.asarray(picks, dtype=np.int64)


# ------------------------------------------------------------------------------- measuring
class PeakRSS:
    """Samples the resident set size every few ms; ``extra`` = peak above the start."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.page = os.sysconf("SC_PAGE_SIZE")

    def _rss(self) -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * self.page

    def _loop(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.interval)

    def __enter__(self):
        self.start = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())
        self.extra = self.peak - self.start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", nargs="*", type=int, default=[10_000], help="dataset sizes")
    parser.add_argument("--fraction", type=float, default=0.10)
    parser.add_argument("--small", action="store_true", help="d = 256 / 512 instead of 2048 / 4096")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--landmarks", type=int, default=600)
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--memmap", action="store_true",
                        help="write the features to .npy and select from np.load(mmap_mode='r')")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--check", action="store_true",
                        help="also run Q-Diverse with every row a landmark (float64 distances) "
                             "and count the picks identical to the reference")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    dc, dq = (256, 512) if args.small else (2048, 4096)

    print(f"Q-Diverse benchmark: d_content={dc} d_quality={dq} fraction={args.fraction} "
          f"b={args.batch_size} l={args.landmarks} n_jobs={args.n_jobs} "
          f"memmap={args.memmap} cores={os.cpu_count()}")
    for n in args.n:
        Fc = clustered_features(n, dc, seed=args.seed)
        Fq = clustered_features(n, dq, seed=args.seed + 1, normalize=True)
        tmp = None
        if args.memmap:
            tmp = tempfile.TemporaryDirectory()
            np.save(Path(tmp.name) / "c.npy", Fc)
            np.save(Path(tmp.name) / "q.npy", Fq)
            del Fc, Fq
            Fc = np.load(Path(tmp.name) / "c.npy", mmap_mode="r")
            Fq = np.load(Path(tmp.name) / "q.npy", mmap_mode="r")
        feats = {"content": Fc, "quality": Fq}
        opts = dict(batch_size=args.batch_size, n_landmarks=args.landmarks, n_jobs=args.n_jobs,
                    progress=False)
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            sel = select("qdiverse", feats, args.fraction, seed=args.seed, **opts)
            t_q = time.perf_counter() - t0
        tracemalloc.start()  # allocations (numpy reports its buffers), timed apart
        select("qdiverse", feats, args.fraction, seed=args.seed, **opts)
        alloc = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        rs = [r for r in sel.info["r"] if r is not None]
        line = (f"N={n:>6}  M={sel.budget:>5}  qdiverse {t_q:7.2f} s  peak alloc "
                f"{alloc / 2**20:5.0f} MiB, RSS +{mem.extra / 2**20:4.0f} MiB, "
                f"r median {int(np.median(rs)) if rs else '-'}")
        if not args.no_baseline:
            with threadpool_limits(1, user_api="blas"):
                tracemalloc.start()
                t0 = time.perf_counter()
                ref = reference_qdiverse(Fc, Fq, sel.budget, batch_size=args.batch_size)
                t_ref = time.perf_counter() - t0
                ref_alloc = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
            overlap = len(np.intersect1d(ref, sel.indices)) / max(1, sel.budget)
            line += (f"  | reference {t_ref:7.2f} s, peak alloc {ref_alloc / 2**20:.0f} MiB | "
                     f"speed-up x{t_ref / t_q:4.1f}, overlap {overlap:.2f}")
        print(line, flush=True)
        if args.check:
            exact = select("qdiverse", feats, args.fraction, seed=args.seed,
                           **{**opts, "n_landmarks": args.batch_size,
                              "distance_dtype": "float64"})
            if args.no_baseline:
                ref = reference_qdiverse(Fc, Fq, sel.budget, batch_size=args.batch_size)
            same = int(np.sum(exact.indices == ref))
            print(f"          check (l = b): {same}/{sel.budget} picks identical to the "
                  f"reference, in the same order", flush=True)
        if tmp is not None:
            del feats, Fc, Fq
            tmp.cleanup()
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    print(f"process peak RSS {usage:.0f} MiB (includes the features themselves)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

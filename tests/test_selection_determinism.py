"""Selections must not depend on how many BLAS/OpenMP threads the process has, nor on the CPU.

Each registered method runs on the same seeded fixture in two fresh interpreters, one started
with ``OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = MKL_NUM_THREADS = 1`` and one with ``2`` (the
thread pools read these once, at load time, so a subprocess is the honest way to vary them).
The indices of every selection must hash the same. 400 rows of 512 columns: PGCS's t-SNE
initialisation (a PCA through BLAS) gave a different coreset on one thread than on two. The
same children run under two forced OpenBLAS kernels (``OPENBLAS_CORETYPE``): the CPU model
changes BLAS round-off as a thread count does.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qd_lib.selection import available_methods

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import hashlib, json
import numpy as np
from threadpoolctl import threadpool_info
from qd_lib.selection import available_methods, get_method, select

n, d = 400, 512
rng = np.random.default_rng(0)
centres = 3.0 * rng.standard_normal((8, d))
X = centres[rng.integers(8, size=n)] + rng.standard_normal((n, d))
z = X[:, :5] * rng.standard_normal(5)   # no BLAS in the fixture: its kernels vary too
probs = np.exp(z - z.max(axis=1, keepdims=True))
probs /= probs.sum(axis=1, keepdims=True)
pool = {"embedding": X, "probs": probs, "content": X[:, : d // 2], "quality": X[:, d // 2 :]}
mos = rng.uniform(1.0, 5.0, n)
out = {"blas_threads": sorted({i["num_threads"] for i in threadpool_info()
                               if i["user_api"] == "blas"}),
       "hashes": {}, "threads": {}}
for method in available_methods():
    spec = get_method(method)
    options = {"progress": False} if "progress" in spec.options else {}
    sel = select(method, {k: pool[k] for k in spec.inputs}, n // 10, mos=mos, seed=0,
                 **options)
    out["hashes"][method] = hashlib.sha256(sel.indices.tobytes()).hexdigest()
    out["threads"][method] = sel.info.get("threads")
print(json.dumps(out))
"""


def run_child(threads: int, kernel: str | None = None) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), TQDM_DISABLE="1")
    if kernel is not None:
        env["OPENBLAS_CORETYPE"] = kernel
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_method_selects_the_same_rows_on_one_and_two_threads():
    one, two = run_child(1), run_child(2)
    assert one["blas_threads"] == [1]
    if two["blas_threads"] != [2]:
        pytest.skip(f"BLAS did not start with 2 threads here: {two['blas_threads']}")
    assert sorted(one["hashes"]) == available_methods()
    differ = [m for m in one["hashes"] if one["hashes"][m] != two["hashes"][m]]
    assert not differ, f"selections depend on the thread count: {differ}"
    for method, threads in one["threads"].items():  # the setting is recorded with the result
        assert threads == {"blas": 1, "openmp": 1}, (method, threads)
        assert two["threads"][method] == threads


def test_every_method_selects_the_same_rows_with_two_blas_kernels():
    """OpenBLAS picks its kernels per CPU model, so two machines round BLAS results
    differently; forcing two kernels on one machine stands in for two machines. PGCS's t-SNE
    gave another coreset under each (its PCA start and exact neighbours went through BLAS)."""
    fma, no_fma = run_child(1, "Haswell"), run_child(1, "Sandybridge")
    assert sorted(fma["hashes"]) == available_methods()
    differ = [m for m in fma["hashes"] if fma["hashes"][m] != no_fma["hashes"][m]]
    assert not differ, f"selections depend on the BLAS kernel (the CPU model): {differ}"

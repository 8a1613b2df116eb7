"""k-Center and Herding with ``backend="torch"`` (here on CPU torch): the same coresets as the
numpy path on seeded fixtures (clustered, tight clusters far from the origin, float16 memmaps,
duplicates, MOS-balanced), streamed in chunks, with the options checked and named.

The CUDA test at the end runs only where a GPU is present (``-m gpu``).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from qd_lib.selection import _torch_kernels as tk
from qd_lib.selection import get_method, select

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TORCH_CPU = dict(backend="torch", device="cpu")
HERDING_VARIANTS = ("classic", "deepcore")


# ------------------------------------------------------------------------------- fixtures
def clustered(n, d, *, n_clusters=6, seed=0, spread=0.5):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, d)) * 4.0
    return centres[rng.integers(n_clusters, size=n)] + spread * rng.standard_normal((n, d))


def offset_clusters(n, d, *, n_clusters, seed, offset, spread):
    """Tight float32 clusters far from the origin (scores that nearly tie)."""
    rng = np.random.default_rng(seed)
    centres = 3.0 * rng.standard_normal((n_clusters, d))
    scale = spread * rng.uniform(0.5, 1.5, n_clusters)
    labels = rng.integers(n_clusters, size=n)
    X = centres[labels] + scale[labels, None] * rng.standard_normal((n, d)) + offset
    return X.astype(np.float32)


def float16_memmap(tmp_path, X):
    path = tmp_path / "x16.npy"
    np.save(path, np.asarray(X, dtype=np.float16))
    return np.load(path, mmap_mode="r")


def herding_float64(X, budget, farthest):
    """Herding in float64, every ‖(t+1)μ − S_t − x_i‖² recomputed from scratch."""
    X = np.asarray(X, dtype=np.float64)
    mu = X.mean(axis=0)
    S = np.zeros(X.shape[1])
    free = np.ones(len(X), dtype=bool)
    picks = []
    for t in range(budget):
        d2 = ((X - ((t + 1) * mu - S)) ** 2).sum(axis=1)
        key = -d2 if farthest else d2
        key[~free] = np.inf
        p = int(np.argmin(key))
        picks.append(p)
        free[p] = False
        S += X[p]
    return np.array(picks)


def both(method, X, budget, **opts):
    """The numpy and the CPU-torch selection with the same options."""
    ref = select(method, X, budget, progress=False, **opts)
    dev = select(method, X, budget, progress=False, **opts, **TORCH_CPU)
    return ref, dev


FLOAT32_GAIN_RTOL = 1e-4


def assert_same_picks_but_round_off_swaps(ref, dev, rtol=FLOAT32_GAIN_RTOL):
    """The same coreset, in the same order except where the two candidates of a step were tied
    to round-off: numpy's and torch's float32 products round differently on some CPUs
    (measured on an AMD EPYC: steps 148 and 149 of the ``wide`` case took rows 27 and 195 in
    opposite orders, gains 18.69940 and 18.69942 at step 148). Where the picks differ, each
    backend's gain must equal the other's to ``rtol``."""
    assert set(dev.indices.tolist()) == set(ref.indices.tolist())
    differ = np.nonzero(dev.indices != ref.indices)[0]
    tied = np.isclose(np.asarray(dev.gains)[differ], np.asarray(ref.gains)[differ], rtol=rtol,
                      atol=0)
    assert tied.all(), f"steps {differ[~tied]} differ beyond round-off"
    assert len(differ) <= 0.05 * len(ref.indices)


# ------------------------------------------------------------------------------- k-Center
@pytest.mark.parametrize("case", ["clustered64", "clustered32", "wide", "offset_float64"])
def test_kcenter_torch_picks_equal_numpy(case):
    opts = {}
    if case == "clustered64":
        X = clustered(1500, 24, seed=1)
    elif case == "clustered32":
        X = clustered(1500, 48, seed=2, spread=1.0).astype(np.float32)
    elif case == "wide":
        X = clustered(600, 700, seed=3, n_clusters=20).astype(np.float32)
    else:  # tight clusters at offset 300: float32 distances are round-off, float64 are not
        X = offset_clusters(1200, 32, n_clusters=6, seed=4, offset=300.0, spread=0.01)
        opts["dtype"] = "float64"
    ref, dev = both("kcenter", X, 150, seed=7, **opts)
    if opts:
        np.testing.assert_array_equal(dev.indices, ref.indices)
    else:  # float32: two picks whose gains agree to round-off may come in either order
        assert_same_picks_but_round_off_swaps(ref, dev)
    # float32 sums over up to 700 dimensions: round-off up to ~1e-5 relative (1.1e-5 measured)
    np.testing.assert_allclose(dev.gains, ref.gains, rtol=FLOAT32_GAIN_RTOL if not opts else 1e-10)
    assert dev.info["first_index"] == ref.info["first_index"]
    assert (dev.params["backend"], dev.params["device"]) == ("torch", "cpu")
    assert (ref.params["backend"], ref.params["device"]) == ("numpy", "cpu")
    assert dev.info["device"] == "cpu" and "near_ties" in dev.info
    if opts:  # float64 on this data: every pick leads far beyond round-off
        assert dev.info["near_ties"] == 0


def test_kcenter_torch_near_tie_count_flags_round_off_decided_float32_picks():
    # float32 distances inside clusters of spread 0.01 at offset 300 are below the Gram
    # identity's round-off: the tie rule says so instead of claiming numpy's picks
    X = offset_clusters(800, 32, n_clusters=4, seed=5, offset=300.0, spread=0.01)
    dev = select("kcenter", X, 100, seed=0, progress=False, **TORCH_CPU)
    assert dev.info["near_ties"] > 50
    assert dev.info["min_gap_over_max_sq"] < 1e-6
    well = select("kcenter", clustered(800, 8, seed=6), 20, seed=0, dtype="float64",
                  progress=False, **TORCH_CPU)
    assert well.info["near_ties"] == 0 and well.info["min_gap_over_max_sq"] > 1e-9


def test_kcenter_torch_duplicates_come_last_in_index_order():
    base = clustered(40, 3, seed=14)
    X = np.vstack([base, base[:25]])  # rows 40..64 duplicate rows 0..24
    # float64, as the numpy test: a float32 GEMV may round two equal rows differently
    sel = select("kcenter", X, 50, first_index=0, dtype="float64", progress=False, **TORCH_CPU)
    assert sorted(sel.indices[:40].tolist()) == list(range(40))
    assert sel.indices[40:].tolist() == list(range(40, 50))
    assert sel.gains[-1] == 0.0


def test_kcenter_torch_float16_memmap_and_balance(tmp_path):
    X = clustered(900, 16, seed=8)
    mm = float16_memmap(tmp_path, X)
    ref, dev = both("kcenter", mm, 90, seed=3)
    np.testing.assert_array_equal(dev.indices, ref.indices)
    mos = np.random.default_rng(9).uniform(1, 5, len(X))
    ref, dev = both("kcenter", mm, 90, seed=3, mos=mos, balance=True)
    np.testing.assert_array_equal(dev.indices, ref.indices)
    assert dev.info["first_index"] == ref.info["first_index"]


# ------------------------------------------------------------------------------- Herding
@pytest.mark.parametrize("variant", HERDING_VARIANTS)
@pytest.mark.parametrize("case", ["clustered", "offset", "float64"])
def test_herding_torch_picks_are_the_float64_greedy(variant, case):
    opts = {}
    if case == "clustered":
        X = clustered(1200, 40, seed=10).astype(np.float32)
    else:  # winners and runners-up within 1e-11 of each other: float64 decides
        X = offset_clusters(1500, 48, n_clusters=6, seed=0, offset=300.0, spread=0.01)
        if case == "float64":
            opts["dtype"] = "float64"
    ref, dev = both("herding", X, 120, variant=variant, **opts)
    np.testing.assert_array_equal(dev.indices, ref.indices)
    np.testing.assert_array_equal(dev.indices, herding_float64(X, 120, variant == "deepcore"))
    np.testing.assert_allclose(dev.gains, ref.gains, rtol=1e-12)
    assert dev.info["plain_steps"] == 120 and dev.info["device"] == "cpu"
    if case == "offset":
        assert dev.info["exact_checks"] > 0  # the screening left decisions to float64


def test_herding_torch_float16_memmap_duplicates_and_balance(tmp_path):
    base = clustered(500, 12, seed=11)
    X = np.vstack([base, base[:100]])
    mm = float16_memmap(tmp_path, X)
    for variant in HERDING_VARIANTS:
        ref, dev = both("herding", mm, 200, variant=variant)
        np.testing.assert_array_equal(dev.indices, ref.indices)
    mos = np.random.default_rng(12).uniform(1, 5, len(X))
    ref, dev = both("herding", mm, 150, mos=mos, balance=True)
    np.testing.assert_array_equal(dev.indices, ref.indices)
    np.testing.assert_allclose(dev.gains, ref.gains, rtol=1e-12)


# ------------------------------------------------------------------ streaming and memory
def test_float16_memmap_is_streamed_in_chunks_as_stored(tmp_path, monkeypatch):
    X = clustered(1000, 16, seed=13)
    mm = float16_memmap(tmp_path, X)
    received = []
    original = tk._upload

    def spy(X, start, stop, device):
        block = original(X, start, stop, device)
        received.append((stop - start, block.dtype))
        return block

    monkeypatch.setattr(tk, "_upload", spy)
    monkeypatch.setattr(tk, "DEFAULT_CHUNK_BYTES", 100 * 16 * 8)  # 100 float64 rows
    for method in ("kcenter", "herding"):
        received.clear()
        ref, dev = both(method, mm, 60, seed=2)
        np.testing.assert_array_equal(dev.indices, ref.indices)
        # k-Center: one pass (float16 fits the float32 working copy); Herding keeps the rows
        # as stored on the device, so it too reads the memmap once
        assert len(received) == 10
        assert all(rows <= 100 and dtype == torch.float16 for rows, dtype in received)


def test_working_copy_equals_the_numpy_one(tmp_path):
    from qd_lib.selection._kernels import working_copy

    X = offset_clusters(300, 20, n_clusters=3, seed=1, offset=50.0, spread=0.3)
    for exact in (False, True):
        rows = tk.to_device_rows(X, "cpu", "float32", exact_norms=exact, keep_stored=exact,
                                 budget_bytes=64 * 20 * 8)
        W, sq = working_copy(X, np.float32, exact_norms=exact)
        # the means agree to float64 round-off, so the rounded rows to a float32 ulp
        np.testing.assert_allclose(rows.W.numpy(), W, rtol=0, atol=2e-6 * np.abs(W).max())
        np.testing.assert_allclose(rows.sq.numpy(), sq, rtol=1e-6)
    assert rows.stored.dtype == torch.float32
    np.testing.assert_allclose(rows.exact_rows(torch.tensor([3, 7])).numpy(),
                               X[[3, 7]].astype(np.float64) - X.mean(axis=0, dtype=np.float64),
                               rtol=1e-12, atol=1e-12)


def test_float64_working_copy_where_float32_matmuls_are_reduced(monkeypatch):
    monkeypatch.setattr(tk, "_reduced_fp32_matmul", lambda device: True)
    assert tk.working_torch_dtype("float32", torch.device("cpu")) is torch.float64
    X = clustered(400, 10, seed=15).astype(np.float32)
    ref, dev = both("herding", X, 40)
    np.testing.assert_array_equal(dev.indices, ref.indices)
    monkeypatch.setattr(tk, "_reduced_fp32_matmul", lambda device: False)
    assert tk.working_torch_dtype("float32", torch.device("cpu")) is torch.float32


def test_a_device_too_small_is_named(monkeypatch):
    asked = []

    def mem_get_info(device=None):
        asked.append(device)
        return 2**30, 2**31

    monkeypatch.setattr(torch.cuda, "mem_get_info", mem_get_info)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    with pytest.raises(ValueError) as info:
        tk._check_device_memory(torch.device("cuda"), 3 * 2**30, "kcenter on 10 x 10 rows")
    message = str(info.value)
    assert "'device'" in message and "1.00 GiB free" in message and "kcenter" in message
    tk._check_device_memory(torch.device("cuda:1"), 2**29, "fits")  # no error
    tk._check_device_memory(torch.device("cpu"), 2**60, "the host is not checked")
    assert asked == [0, 1]  # an index, as torch.cuda.mem_get_info needs


# ---------------------------------------------------------------------------- options
@pytest.mark.parametrize("method", ["kcenter", "herding"])
def test_backend_and_device_options_are_checked(method, monkeypatch):
    X = clustered(50, 3, seed=16)
    assert {"backend": "numpy", "device": "cpu"}.items() <= get_method(method).options.items()
    with pytest.raises(ValueError) as info:
        select(method, X, 5, backend="jax")
    assert all(w in str(info.value) for w in ("'backend'", "'numpy'", "'torch'", "'jax'"))
    with pytest.raises(ValueError, match=r"'device'.*backend='numpy'.*'cuda'"):
        select(method, X, 5, device="cuda")
    with pytest.raises(TypeError, match=r"'device'.* 3 of type int"):
        select(method, X, 5, backend="torch", device=3)
    with pytest.raises(ValueError, match=r"'device'.*'gpu'"):
        select(method, X, 5, backend="torch", device="gpu")
    assert select(method, X, 5, backend="torch", device=torch.device("cpu")
                  ).params["device"] == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("cuda", "cuda:1"):
        with pytest.raises(ValueError) as info:
            select(method, X, 5, backend="torch", device=name)
        message = str(info.value)
        assert "'device'" in message and f"Got {name!r}" in message
        assert "CUDA is not available" in message
    assert select(method, X, 5, backend="torch", device="auto").params["device"] == "cpu"


# -------------------------------------------------------------------------------- CUDA
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_picks_equal_numpy(tmp_path):
    X = clustered(3000, 64, seed=17).astype(np.float32)
    mm = float16_memmap(tmp_path, X)
    for data in (X, mm):
        for method, opts in (("kcenter", {}), ("kcenter", {"dtype": "float64"}),
                             ("herding", {"variant": "classic"}),
                             ("herding", {"variant": "deepcore"})):
            ref = select(method, data, 300, seed=1, progress=False, **opts)
            dev = select(method, data, 300, seed=1, progress=False, backend="torch",
                         device="cuda", **opts)
            np.testing.assert_array_equal(dev.indices, ref.indices)
            assert dev.params["device"] == "cuda"

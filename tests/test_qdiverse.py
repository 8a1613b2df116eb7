"""Q-Diverse: the properties of design note ``qdiverse.md`` §7 (PGCS items excluded), golden
pick orders, and the torch backend against the numpy one.

Small seeded fixtures only (N <= 400, a few dimensions) so the file runs in seconds; the
process-pool tests pay the workers' start-up once each. torch runs on one thread (results,
not speed, are checked here).
"""
from __future__ import annotations

import itertools
import json
import logging
import tracemalloc

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.spatial.distance import cdist

from qd_lib.selection import available_methods, get_method, select
from qd_lib.selection.methods.qdiverse import (
    QDIVERSE_DEFAULTS,
    QDIVERSE_PRESETS,
    qdiverse_preset,
)
from qd_lib.selection.methods.qdiverse.affinity import squared_distances
from qd_lib.selection.methods.qdiverse.batches import allocate_budget, batch_seed
from qd_lib.selection.methods.qdiverse.greedy import greedy_logdet
from qd_lib.selection.methods.qdiverse.spectral import (
    energy_rank,
    nystrom_eigenvectors,
    symmetric_normalize_inplace,
)
from qd_lib.utils.errors import UnknownNameError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------------------ fixtures
def clustered(n, d, *, n_clusters=5, seed=0, spread=0.6):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, d)) * 3.0
    labels = rng.integers(n_clusters, size=n)
    return centres[labels] + spread * rng.standard_normal((n, d))


def features(n=240, dc=12, dq=8, seed=0):
    return {"content": clustered(n, dc, seed=seed), "quality": clustered(n, dq, seed=seed + 100)}


def run(feats, budget, seed=0, **opts):
    opts.setdefault("progress", False)
    return select("qdiverse", feats, budget, seed=seed, **opts)


def rbf_kernel(n, d=5, seed=0):
    X = np.random.default_rng(seed).standard_normal((n, d))
    D2 = cdist(X, X, "sqeuclidean")
    return np.exp(-D2 / np.median(D2[np.triu_indices(n, 1)]))


def brute_force_greedy(K, m, eps):
    """argmax of slogdet over every candidate at every step (lowest index on ties)."""
    chosen = []
    for _ in range(m):
        best, best_val = None, -np.inf
        for j in range(K.shape[0]):
            if j in chosen:
                continue
            idx = chosen + [j]
            val = np.linalg.slogdet(K[np.ix_(idx, idx)] + eps * np.eye(len(idx)))[1]
            if val > best_val + 1e-12:
                best, best_val = j, val
        chosen.append(best)
    return chosen


def explicit_inverse_greedy(K, m, eps):
    chosen = []
    for _ in range(m):
        if chosen:
            Ks = K[:, chosen]
            inv = np.linalg.inv(K[np.ix_(chosen, chosen)] + eps * np.eye(len(chosen)))
            g = np.diag(K) + eps - np.einsum("ij,jk,ik->i", Ks, inv, Ks)
        else:
            g = np.diag(K) + eps
        g[chosen] = -np.inf
        chosen.append(int(np.argmax(g)))
    return chosen


def batch_of(indices, batch_size):
    return np.asarray(indices) // batch_size


# ------------------------------------------------------------------------- registry / API
def test_registered_with_the_spec_defaults():
    assert "qdiverse" in available_methods()
    spec = get_method("qdiverse")
    assert spec.inputs == ("content", "quality") and not spec.needs_mos
    opts = spec.options
    assert (opts["gamma"], opts["energy"], opts["eps"]) == (0.5, 0.95, 1e-6)
    assert (opts["n_landmarks"], opts["batch_size"]) == (600, 1000)
    assert opts["distance_norm"] == "max" and opts["bandwidth"] == "median"
    assert opts["laplacian"] == "sym" and opts["landmarks"] == "uniform"
    assert opts["batch_order"] == "contiguous" and opts["first_pick"] == "lowest_index"
    assert opts["allocation"] == "largest_remainder"
    assert set(opts) == set(QDIVERSE_DEFAULTS)



def test_the_former_import_path_says_where_things_went():
    import importlib

    import qd_lib.selection.methods.qdiverse as package

    with pytest.raises(ImportError, match="qdiverse.affinity.*greedy_logdet in .greedy"):
        importlib.import_module("qd_lib.selection.spectral")
    assert get_method("qdiverse").func is package.qdiverse_selection
    assert set(package.__all__) == {"qdiverse_selection", "qdiverse_preset", "QDIVERSE_PRESETS",
                                    "QDiversePreset", "QDIVERSE_DEFAULTS",
                                    "qdiverse_qdpp_selection", "qdiverse_density_selection",
                                    "qdiverse_rownorm_selection", "NAMED_VARIANTS"}


def test_selection_records_params_info_and_gains():
    sel = run(features(250), 0.2, batch_size=100, n_landmarks=40)
    assert sel.method == "qdiverse" and sel.budget == 50
    assert sel.params["batch_size"] == 100 and sel.params["n_landmarks"] == 40
    assert sel.params["gamma"] == 0.5 and sel.params["energy"] == 0.95
    assert sel.info["batch_sizes"] == [100, 100, 50]
    assert sel.info["batch_budgets"] == [20, 20, 10]
    assert len(sel.info["r"]) == 3 and all(1 <= r <= 40 for r in sel.info["r"])
    assert sel.gains.shape == (50,) and np.isfinite(sel.gains).all()
    json.dumps(sel.to_record())  # JSON-serialisable end to end


# ------------------------------------------------------------------------ budget / output
@pytest.mark.parametrize("n, batch_size, budget", [
    (240, 100, 1), (240, 100, 7), (240, 100, 120), (240, 100, 239), (240, 100, 240),
    (240, None, 24), (97, 10, 13), (50, 7, 49), (61, 1000, 60),
])
def test_exact_budget_unique_in_range(n, batch_size, budget):
    sel = run(features(n), budget, batch_size=batch_size, n_landmarks=30)
    assert len(sel.indices) == budget
    assert len(np.unique(sel.indices)) == budget
    assert sel.indices.min() >= 0 and sel.indices.max() < n
    assert sel.indices.dtype == np.int64


def test_allocation_is_exact_and_picks_stay_in_their_batch():
    n, b, budget = 230, 40, 37
    sel = run(features(n), budget, batch_size=b, n_landmarks=25)
    sizes, budgets = sel.info["batch_sizes"], sel.info["batch_budgets"]
    assert sizes == [40] * 5 + [30]
    assert sum(budgets) == budget
    for size, m in zip(sizes, budgets):
        assert 0 <= m <= size and abs(m - budget * size / n) < 1
    counts = np.bincount(batch_of(sel.indices, b), minlength=len(sizes))
    assert counts.tolist() == budgets
    # pick order: batch by batch
    assert np.all(np.diff(batch_of(sel.indices, b)) >= 0)


def test_allocate_budget_rules():
    # KADID-10K train split (7086 rows) at 10 % in batches of 1000
    assert allocate_budget([1000] * 7 + [86], 708).tolist() == [100] * 7 + [8]
    shares = allocate_budget([3, 3, 3], 4)
    assert shares.tolist() == [2, 1, 1]  # ties go to the lower index
    shares = allocate_budget([5, 1], 6)
    assert shares.tolist() == [5, 1]
    for total in range(0, 13):
        lr = allocate_budget([7, 4, 1], total)
        sl = allocate_budget([7, 4, 1], total, method="sainte_lague")
        assert lr.sum() == sl.sum() == total
        assert np.all(lr <= [7, 4, 1]) and np.all(sl <= [7, 4, 1])
        assert np.all(np.abs(lr - total * np.array([7, 4, 1]) / 12) < 1)
        if total:  # Sainte-Laguë is house-monotone
            assert np.all(sl >= allocate_budget([7, 4, 1], total - 1, method="sainte_lague"))
    with pytest.raises(ValueError, match="total"):
        allocate_budget([3, 3], 7)
    with pytest.raises(ValueError, match="'method'"):
        allocate_budget([3, 3], 2, method="dhondt")


def test_largest_remainder_is_not_house_monotone_but_sums_exactly():
    # the Alabama paradox exists for Hamilton's method: documented, not a bug
    sizes = [6, 6, 2]
    found = any(np.any(allocate_budget(sizes, t + 1) < allocate_budget(sizes, t))
                for t in range(13))
    assert found
    assert all(allocate_budget(sizes, t).sum() == t for t in range(15))


# ---------------------------------------------------------------- determinism / structure
def test_same_seed_same_result_and_seed_matters_when_landmarks_are_sampled():
    feats = features(300)
    a = run(feats, 30, seed=3, batch_size=100, n_landmarks=20)
    b = run(feats, 30, seed=3, batch_size=100, n_landmarks=20)
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.gains, b.gains)
    others = [run(feats, 30, seed=s, batch_size=100, n_landmarks=20).indices for s in (4, 5, 6)]
    assert any(not np.array_equal(a.indices, o) for o in others)


def test_seed_independent_when_every_row_is_a_landmark():
    feats = features(300)
    runs = [run(feats, 30, seed=s, batch_size=100, n_landmarks=100) for s in (0, 1, 99)]
    for other in runs[1:]:
        assert np.array_equal(runs[0].indices, other.indices)
        assert np.array_equal(runs[0].gains, other.gains)


def test_each_batch_draws_from_its_own_spawned_seed():
    root = np.random.SeedSequence(5)
    for i in range(3):
        assert np.array_equal(batch_seed(root, i).generate_state(4),
                              np.random.SeedSequence(5).spawn(3)[i].generate_state(4))
    block = features(100, seed=6)
    twice = {k: np.vstack([v, v]) for k, v in block.items()}  # batch 1 repeats batch 0
    sampled = run(twice, 20, batch_size=100, n_landmarks=15)
    local = [sampled.indices[:10], sampled.indices[10:] - 100]
    assert not np.array_equal(*local)  # different landmark draws per batch
    exact = run(twice, 20, batch_size=100, n_landmarks=100)
    assert np.array_equal(exact.indices[:10], exact.indices[10:] - 100)


def test_batch_mode_with_large_batch_equals_non_batch_mode():
    feats = features(150)
    nb = run(feats, 20, seed=2, batch_size=None, n_landmarks=60)
    for b in (150, 151, 10_000):
        bm = run(feats, 20, seed=2, batch_size=b, n_landmarks=60)
        assert np.array_equal(nb.indices, bm.indices) and np.array_equal(nb.gains, bm.gains)
    assert nb.info["mode"] == "non-batch" and nb.info["n_batches"] == 1


def test_batches_are_independent():
    feats = features(300, seed=1)
    base = run(feats, 45, seed=0, batch_size=100, n_landmarks=30)
    changed = {k: v.copy() for k, v in feats.items()}
    rng = np.random.default_rng(9)
    changed["content"][100:200] = rng.standard_normal((100, 12)) * 5
    changed["quality"][100:200] = rng.standard_normal((100, 8))
    other = run(changed, 45, seed=0, batch_size=100, n_landmarks=30)
    for batch in (0, 2):
        keep_a = base.indices[batch_of(base.indices, 100) == batch]
        keep_b = other.indices[batch_of(other.indices, 100) == batch]
        assert np.array_equal(keep_a, keep_b)
    mid_a = base.indices[batch_of(base.indices, 100) == 1]
    mid_b = other.indices[batch_of(other.indices, 100) == 1]
    assert not np.array_equal(mid_a, mid_b)


def test_prefix_property_within_a_batch():
    feats = features(200, seed=4)
    full = run(feats, 40, seed=1, batch_size=None, n_landmarks=50)
    for k in (1, 5, 17, 39):
        part = run(feats, k, seed=1, batch_size=None, n_landmarks=50)
        assert np.array_equal(part.indices, full.indices[:k])
        assert np.allclose(part.gains, full.gains[:k], rtol=0, atol=1e-12)


def test_gains_non_increasing_within_each_batch():
    sel = run(features(300, seed=5), 90, batch_size=100, n_landmarks=40)
    for batch in range(3):
        g = sel.gains[batch_of(sel.indices, 100) == batch]
        assert g[0] == pytest.approx(1 + 1e-6)
        assert np.all(np.diff(g) <= 1e-12)


# --------------------------------------------------------------------- greedy log-det math
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_logdet_identity_and_non_increasing_gains(seed):
    K = rbf_kernel(60, seed=seed)
    picks, gains = greedy_logdet(K, 25, eps=1e-6)
    sub = K[np.ix_(picks, picks)] + 1e-6 * np.eye(25)
    sign, logdet = np.linalg.slogdet(sub)
    assert sign > 0
    assert np.sum(np.log(gains)) == pytest.approx(logdet, rel=1e-8)
    assert np.all(np.diff(gains) <= 1e-12)
    assert len(set(picks.tolist())) == 25


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_greedy_matches_brute_force_and_explicit_inverse(seed):
    K = rbf_kernel(30, seed=seed)
    picks, gains = greedy_logdet(K, 10, eps=1e-6)
    assert picks.tolist() == brute_force_greedy(K, 10, 1e-6)
    assert picks.tolist() == explicit_inverse_greedy(K, 10, 1e-6)
    # each gain is the determinant ratio
    for k in range(1, 10):
        S, T = picks[:k], picks[:k + 1]
        ratio = np.exp(np.linalg.slogdet(K[np.ix_(T, T)] + 1e-6 * np.eye(k + 1))[1]
                       - np.linalg.slogdet(K[np.ix_(S, S)] + 1e-6 * np.eye(k))[1])
        assert gains[k] == pytest.approx(ratio, rel=1e-7)


def test_greedy_beats_random_subsets_in_logdet():
    K = rbf_kernel(80, seed=7)
    picks, gains = greedy_logdet(K, 15, eps=1e-6)
    greedy_val = np.sum(np.log(gains))
    rng = np.random.default_rng(0)
    for _ in range(20):
        S = rng.choice(80, 15, replace=False)
        val = np.linalg.slogdet(K[np.ix_(S, S)] + 1e-6 * np.eye(15))[1]
        assert greedy_val >= val


def test_greedy_never_stops_early_and_fills_rank_deficient_kernels():
    K = np.ones((12, 12))  # rank one
    picks, gains = greedy_logdet(K, 12, eps=1e-6)
    assert sorted(picks.tolist()) == list(range(12))
    assert np.all(np.isfinite(gains)) and np.all(gains > 0)
    assert np.sum(np.log(gains)) == pytest.approx(
        np.linalg.slogdet(K + 1e-6 * np.eye(12))[1], rel=1e-6)


def test_exact_duplicates_are_never_both_picked():
    base = features(60, seed=8)
    feats = {k: np.vstack([v, v[:30]]) for k, v in base.items()}  # rows 60..89 copy 0..29
    n_distinct = 60
    sel = run(feats, 40, batch_size=None, n_landmarks=90)
    chosen = set(sel.indices.tolist())
    assert not any(i in chosen and i + 60 in chosen for i in range(30))
    full = run(feats, n_distinct + 10, batch_size=None, n_landmarks=90)  # more than distinct
    assert len(np.unique(full.indices)) == n_distinct + 10 and np.isfinite(full.gains).all()


@pytest.mark.parametrize("case", ["constant", "constant_content", "b1", "b_lt_l", "m_eq_b"])
def test_degenerate_batches_give_valid_finite_output(case):
    rng = np.random.default_rng(0)
    if case == "constant":
        feats = {"content": np.ones((50, 4)), "quality": np.full((50, 3), 2.0)}
        sel = run(feats, 10, batch_size=None)
        assert sel.indices.tolist() == list(range(10))  # all ties: index order
        assert np.isfinite(sel.gains).all() and np.all(sel.gains > 0)
    elif case == "constant_content":
        feats = {"content": np.zeros((50, 4)), "quality": rng.standard_normal((50, 3))}
        sel = run(feats, 10, batch_size=None)
        assert np.isfinite(sel.gains).all() and len(set(sel.indices.tolist())) == 10
    elif case == "b1":  # last batch has one row
        sel = run(features(41), 20, batch_size=10)
        assert sel.info["batch_sizes"][-1] == 1 and len(np.unique(sel.indices)) == 20
        assert np.isfinite(sel.gains[batch_of(sel.indices, 10) < 4]).all()
    elif case == "b_lt_l":
        sel = run(features(30), 9, batch_size=None, n_landmarks=600)
        assert sel.info["n_landmarks"] == [30] and np.isfinite(sel.gains).all()
    else:  # M = N: every batch taken whole, without computation
        sel = run(features(30), 30, batch_size=10)
        assert sel.indices.tolist() == list(range(30))
        assert sel.info["r"] == [None, None, None] and np.isnan(sel.gains).all()


# ------------------------------------------------------------------------- spectral stage
def test_energy_rank_bounds_and_monotonicity():
    lam = np.array([0.9, 0.5, 0.3, 0.1, 0.05, 1e-14, 0.0])
    ranks = [energy_rank(lam, e) for e in np.linspace(0.01, 1.0, 60)]
    assert all(1 <= r <= 5 for r in ranks)  # 5 numerically positive eigenvalues
    assert all(a <= b for a, b in itertools.pairwise(ranks))
    assert energy_rank(lam, 1.0) == 5
    assert energy_rank(lam, 0.9 / lam.sum()) == 1
    assert energy_rank(np.zeros(4), 0.95) == 1


def test_r_is_bounded_and_grows_with_energy_through_select():
    feats = features(200, seed=3)
    rs = []
    for e in (0.3, 0.6, 0.8, 0.95, 0.99, 1.0):
        sel = run(feats, 20, batch_size=100, n_landmarks=50, energy=e)
        rs.append(sel.info["r"])
        assert all(1 <= r <= 50 for r in sel.info["r"])
    for batch in range(2):
        col = [r[batch] for r in rs]
        assert all(a <= b for a, b in itertools.pairwise(col)) and col[0] < col[-1]


def _normalised_affinity(n=80, seed=0):
    X = np.random.default_rng(seed).standard_normal((n, 6))
    D2 = squared_distances(X, dtype=np.float64)
    W = np.exp(-D2 / (2 * np.median(np.sqrt(D2[np.triu_indices(n, 1)])) ** 2))
    S, _ = symmetric_normalize_inplace(W)
    return S


def test_nystrom_with_all_landmarks_is_the_exact_eigenspace():
    S = _normalised_affinity()
    lam_all = scipy.linalg.eigvalsh(S)
    assert lam_all.min() >= -1e-12 and lam_all.max() <= 1 + 1e-10  # PSD, normalised
    Z, lam, r = nystrom_eigenvectors(S, np.arange(80), 0.95)
    w, U = scipy.linalg.eigh(S)
    U_r = U[:, ::-1][:, :r]
    assert 1 <= r < 80
    assert np.allclose(lam, w[::-1].clip(0), atol=1e-10)
    assert np.allclose(Z @ Z.T, U_r @ U_r.T, atol=1e-8)  # same subspace (sign/rotation free)
    assert np.allclose(Z.T @ Z, np.eye(r), atol=1e-8)


def test_nystrom_reproduces_landmark_eigenvectors():
    S = _normalised_affinity(seed=1)
    marks = np.sort(np.random.default_rng(0).choice(80, 30, replace=False))
    Z, lam, r = nystrom_eigenvectors(S, marks, 0.9)
    w, U = scipy.linalg.eigh(S[np.ix_(marks, marks)])
    U_r = U[:, ::-1][:, :r]
    assert np.allclose(Z[marks] @ Z[marks].T, U_r @ U_r.T, atol=1e-8)
    assert np.allclose(lam, w[::-1].clip(0), atol=1e-12)


def reference_affinity(Fc, Fq, gamma=0.5):
    Dc, Dq = cdist(Fc, Fc), cdist(Fq, Fq)
    D = gamma * Dc / Dc.max() + (1 - gamma) * Dq / Dq.max()
    sigma = np.median(D[np.triu_indices(len(D), 1)])
    return np.exp(-D ** 2 / (2 * sigma ** 2))


def reference_embedding(W, energy=0.95):
    deg = W.sum(axis=1)
    S = W / np.sqrt(np.outer(deg, deg))
    w, U = scipy.linalg.eigh(S)
    w, U = w[::-1].clip(0), U[:, ::-1]
    r = int(np.argmax(np.cumsum(w) / w.sum() >= energy)) + 1
    return U[:, :r], r


def reference_qdiverse(Fc, Fq, m, *, gamma=0.5, energy=0.95, eps=1e-6):
    """Independent transcription: scipy distances, dense eigh, brute-force greedy."""
    n = len(Fc)
    Z, r = reference_embedding(reference_affinity(Fc, Fq, gamma), energy)
    Dz = cdist(Z, Z)
    sz = np.median(Dz[np.triu_indices(n, 1)])
    K = np.exp(-Dz ** 2 / (2 * sz ** 2))
    return brute_force_greedy(K, m, eps), r


@pytest.mark.parametrize("gamma", [0.0, 0.5, 0.7, 1.0])
def test_pipeline_matches_an_independent_reference_when_l_equals_b(gamma):
    feats = features(70, seed=11)
    sel = run(feats, 9, batch_size=None, n_landmarks=70, gamma=gamma, distance_dtype="float64")
    ref, r = reference_qdiverse(feats["content"], feats["quality"], 9, gamma=gamma)
    assert sel.indices.tolist() == ref
    assert sel.info["r"] == [r]
    # the float32 default agrees as well on this generic data
    sel32 = run(feats, 9, batch_size=None, n_landmarks=70, gamma=gamma)
    assert sel32.indices.tolist() == ref


# ---------------------------------------------------------------------------- invariances
def test_scaling_by_a_power_of_two_is_bit_exact():
    feats = features(200, seed=12)
    a = run(feats, 30, batch_size=100, n_landmarks=40)
    b = run({"content": feats["content"] * 4.0, "quality": feats["quality"] / 8.0}, 30,
            batch_size=100, n_landmarks=40)
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.gains, b.gains)


def test_scale_translation_rotation_invariance():
    feats = features(200, seed=13)
    opts = dict(batch_size=100, n_landmarks=40, distance_dtype="float64")
    a = run(feats, 30, **opts)
    Q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((12, 12)))
    variants = [
        {"content": feats["content"] * 3.7, "quality": feats["quality"]},
        {"content": feats["content"], "quality": feats["quality"] * 0.013 + 5.0},
        {"content": feats["content"] @ Q + 2.0, "quality": feats["quality"]},
    ]
    for v in variants:
        assert np.array_equal(run(v, 30, **opts).indices, a.indices)


def test_permutation_consistency_without_order_dependence():
    feats = features(120, seed=14)
    opts = dict(batch_size=None, n_landmarks=120, first_pick="max_degree",
                distance_dtype="float64")
    a = run(feats, 15, **opts)
    perm = np.random.default_rng(1).permutation(120)
    b = run({k: v[perm] for k, v in feats.items()}, 15, **opts)
    assert np.array_equal(perm[b.indices], a.indices)
    # with the default first pick (lowest index), the order matters: not asserted in general


@pytest.mark.parametrize("gamma, replaced", [(1.0, "quality"), (0.0, "content")])
def test_gamma_extremes_ignore_one_embedding(gamma, replaced):
    feats = features(200, seed=15)
    a = run(feats, 25, gamma=gamma, batch_size=100, n_landmarks=30)
    noise = np.random.default_rng(5).standard_normal(feats[replaced].shape) * 10
    b = run({**feats, replaced: noise}, 25, gamma=gamma, batch_size=100, n_landmarks=30)
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.gains, b.gains)
    c = run(feats, 25, gamma=0.5, batch_size=100, n_landmarks=30)
    d = run({**feats, replaced: noise}, 25, gamma=0.5, batch_size=100, n_landmarks=30)
    assert not np.array_equal(c.indices, d.indices)  # the embedding matters otherwise


# ------------------------------------------------------------------------ coverage checks
def mos_fixture(n=400, seed=0):
    """Content clusters unrelated to MOS; quality a smooth monotone function of a skewed MOS."""
    rng = np.random.default_rng(seed)
    mos = rng.beta(2.0, 5.0, size=n)
    content = clustered(n, 10, n_clusters=6, seed=seed + 1)
    basis = np.stack([mos, mos ** 2, np.sin(2.5 * mos), np.sqrt(mos)], axis=1)
    quality = basis @ rng.standard_normal((4, 8)) + 0.01 * rng.standard_normal((n, 8))
    return {"content": content, "quality": quality}, mos


def deciles_hit(mos, picks):
    edges = np.linspace(mos.min(), mos.max(), 11)
    bins = np.clip(np.searchsorted(edges, mos[picks], side="right") - 1, 0, 9)
    return len(np.unique(bins))


def test_mos_decile_coverage_beats_random():
    feats, mos = mos_fixture()
    budget = 40
    rand = [deciles_hit(mos, np.random.default_rng(s).choice(400, budget, replace=False))
            for s in range(30)]
    qd = [deciles_hit(mos, run(feats, budget, seed=s, batch_size=None, n_landmarks=200).indices)
          for s in range(3)]
    assert np.mean(qd) >= np.mean(rand) + 1.0
    assert min(qd) >= 9
    content_only = [deciles_hit(mos, run(feats, budget, seed=s, batch_size=None,
                                         n_landmarks=200, gamma=1.0).indices) for s in range(3)]
    assert np.mean(content_only) < np.mean(qd)  # the quality embedding is what covers MOS
    sel = run(feats, budget, batch_size=None, n_landmarks=200)
    covered = np.ptp(mos[sel.indices]) / np.ptp(mos)
    assert covered >= 0.9


def test_coverage_radius_not_worse_than_random():
    feats = features(300, seed=16)
    D = 0.5 * cdist(feats["content"], feats["content"]) / cdist(
        feats["content"], feats["content"]).max()
    Dq = cdist(feats["quality"], feats["quality"])
    D += 0.5 * Dq / Dq.max()
    sel = run(feats, 30, batch_size=None, n_landmarks=300)
    radius = D[:, sel.indices].min(axis=1).max()
    rand = [D[:, np.random.default_rng(s).choice(300, 30, replace=False)].min(axis=1).max()
            for s in range(20)]
    assert radius <= np.mean(rand)


# ------------------------------------------------------------------ parallel / out of core
class FakeClient:
    """Duck-typed stand-in for dask.distributed.Client (map + gather, run in process)."""

    def __init__(self):
        self.mapped = 0

    def map(self, func, tasks):
        tasks = list(tasks)
        self.mapped += len(tasks)
        return [func(t) for t in reversed(tasks)][::-1]  # run out of order

    def gather(self, futures):
        return list(futures)


def test_fake_client_gives_the_serial_result():
    feats = features(300, seed=17)
    serial = run(feats, 40, seed=4, batch_size=70, n_landmarks=30)
    client = FakeClient()
    par = run(feats, 40, seed=4, batch_size=70, n_landmarks=30, client=client)
    assert client.mapped == 5 and par.info["executor"] == "client"
    assert np.array_equal(serial.indices, par.indices)
    assert np.array_equal(serial.gains, par.gains)
    assert par.params["client"] == "FakeClient"


def test_process_pool_gives_the_serial_result():
    feats = {k: v.astype(np.float32) for k, v in features(400, seed=18).items()}
    opts = dict(seed=6, batch_size=60, n_landmarks=25, batch_order="shuffle")
    serial = run(feats, 57, **opts)
    par = run(feats, 57, n_jobs=2, **opts)
    assert par.info["executor"] == "processes" and par.info["n_workers"] == 2
    assert par.info["data_transport"] == "array"
    assert np.array_equal(serial.indices, par.indices)
    assert np.array_equal(serial.gains, par.gains)


def test_memmap_input_matches_in_memory_and_ships_paths_to_workers(tmp_path):
    feats = {k: v.astype(np.float32) for k, v in features(400, seed=19).items()}
    for key, arr in feats.items():
        np.save(tmp_path / f"{key}.npy", arr)
    mm = {k: np.load(tmp_path / f"{k}.npy", mmap_mode="r") for k in feats}
    assert all(isinstance(v, np.memmap) for v in mm.values())
    opts = dict(seed=2, batch_size=50, n_landmarks=20)
    mem = run(feats, 33, **opts)
    ser = run(mm, 33, **opts)
    assert np.array_equal(mem.indices, ser.indices) and np.array_equal(mem.gains, ser.gains)
    # a row slice of the mapping (non-zero offset into the file), through two workers
    sliced = {k: v[37:] for k, v in mm.items()}
    ref = run({k: v[37:] for k, v in feats.items()}, 33, **opts)
    par = run(sliced, 33, n_jobs=2, **opts)
    assert par.info["data_transport"] == "path"
    assert np.array_equal(ref.indices, par.indices) and np.array_equal(ref.gains, par.gains)


def test_memmap_streaming_keeps_memory_per_batch(tmp_path):
    n, d, b = 3000, 1024, 150
    rng = np.random.default_rng(0)
    for key in ("content", "quality"):
        np.save(tmp_path / f"{key}.npy", rng.standard_normal((n, d), dtype=np.float32))
    mm = {k: np.load(tmp_path / f"{k}.npy", mmap_mode="r") for k in ("content", "quality")}
    func = get_method("qdiverse").func
    tracemalloc.start()
    try:
        out = func(mm, 300, random_state=np.random.default_rng(0), batch_size=b,
                   n_landmarks=100, progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(np.unique(out.indices)) == 300
    one_copy = n * d * 4  # 12 MB: one embedding read into memory
    per_batch = b * d * 4 + 4 * b * b * 8  # one batch of rows + four b x b float64 matrices
    assert peak < 2 * per_batch < one_copy / 4
    assert peak < n * n * 8 / 20  # nowhere near an N x N matrix


# -------------------------------------------------------------------- options and presets

def test_float16_memmap_gives_the_float32_in_memory_selection(tmp_path):
    feats = features(500, dc=24, dq=16, seed=23)
    mm = {}
    for key, arr in feats.items():
        np.save(tmp_path / f"{key}.npy", arr.astype(np.float16))
        mm[key] = np.load(tmp_path / f"{key}.npy", mmap_mode="r")
    assert all(isinstance(v, np.memmap) and v.dtype == np.float16 for v in mm.values())
    cast = {k: np.array(v, dtype=np.float32) for k, v in mm.items()}  # the same values, in RAM
    for extra in ({}, {"batch_order": "shuffle", "distance_dtype": "float64"}):
        opts = dict(seed=3, batch_size=120, n_landmarks=40, **extra)
        ref = run(cast, 61, **opts)
        half = run(mm, 61, **opts)
        assert np.array_equal(ref.indices, half.indices)
        assert np.array_equal(ref.gains, half.gains, equal_nan=True)
    # the workers re-open the float16 file by path and cast their batches themselves
    opts = dict(seed=3, batch_size=120, n_landmarks=40)
    par = run(mm, 61, n_jobs=2, **opts)
    assert par.info["data_transport"] == "path"
    assert np.array_equal(run(cast, 61, **opts).indices, par.indices)


def test_select_does_not_copy_a_float16_memmap(tmp_path):
    n, dc, dq = 24_576, 1024, 256  # content: 48 MiB of float16, several finiteness-check chunks
    rng = np.random.default_rng(5)
    for key, d in (("content", dc), ("quality", dq)):
        out = np.lib.format.open_memmap(tmp_path / f"{key}.npy", mode="w+", dtype=np.float16,
                                        shape=(n, d))
        for start in range(0, n, 4096):
            out[start:start + 4096] = rng.standard_normal((4096, d), dtype=np.float32)
        out.flush()
        del out
    mm = {k: np.load(tmp_path / f"{k}.npy", mmap_mode="r") for k in ("content", "quality")}
    tracemalloc.start()
    try:
        sel = run(mm, 0.05, seed=0, batch_size=256, n_landmarks=64)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sel.budget == n // 20 and len(np.unique(sel.indices)) == sel.budget
    # a whole copy of the content would take n*dc*2 bytes (float16) or twice that (float32)
    assert peak < n * dc * 2 / 2
@pytest.mark.parametrize("option, value", [
    ("distance_norm", "median"), ("distance_norm", "none"), ("combine", "squared"),
    ("combine", "kernel"), ("bandwidth", 0.3), ("z_bandwidth", 0.5), ("self_loops", False),
    ("laplacian", "rw"), ("laplacian", "none"), ("landmarks", "first"),
    ("landmarks", "kmeans++"), ("eigen_power", 1.0), ("drop_leading", True),
    ("row_normalize", True), ("first_pick", "max_degree"), ("first_pick", "nearest_mean"),
    ("batch_order", "shuffle"), ("allocation", "sainte_lague"), ("distance_dtype", "float64"),
])
def test_every_alternative_option_runs_deterministically(option, value):
    feats = features(230, seed=20)
    a = run(feats, 31, seed=1, batch_size=80, n_landmarks=30, **{option: value})
    b = run(feats, 31, seed=1, batch_size=80, n_landmarks=30, **{option: value})
    assert len(np.unique(a.indices)) == 31 and np.isfinite(a.gains).all()
    assert np.array_equal(a.indices, b.indices)
    assert a.params[option] == value
    if option not in ("drop_leading", "allocation", "distance_dtype"):
        # the alternatives are wired in: they change the coreset on this fixture (dropping
        # the near-constant leading eigenvector, the divisor allocation and float64 GEMMs
        # happen not to)
        default = run(feats, 31, seed=1, batch_size=80, n_landmarks=30)
        assert not np.array_equal(a.indices, default.indices)


def test_first_pick_options_choose_the_documented_row():
    feats = features(100, seed=21)
    opts = dict(batch_size=None, n_landmarks=100, distance_dtype="float64")
    assert run(feats, 5, **opts).indices[0] == 0
    W = reference_affinity(feats["content"], feats["quality"])
    hub = run(feats, 5, first_pick="max_degree", **opts)
    assert hub.indices[0] == np.argmax(W.sum(axis=1)) != 0
    assert hub.gains[0] == pytest.approx(1 + 1e-6)
    Z, _ = reference_embedding(W)  # distances to the mean do not see signs or rotations
    central = run(feats, 5, first_pick="nearest_mean", **opts)
    assert central.indices[0] == np.argmin(np.linalg.norm(Z - Z.mean(axis=0), axis=1)) != 0


@pytest.mark.parametrize("option, value, exc, words", [
    ("gamma", 1.5, ValueError, ["'gamma'", "[0.0, 1.0]", "1.5"]),
    ("gamma", "high", TypeError, ["'gamma'", "'high'"]),
    ("energy", 0.0, ValueError, ["'energy'", "(0.0, 1.0]", "0.0"]),
    ("eps", -1e-6, ValueError, ["'eps'", "-1e-06"]),
    ("eps", 0.0, ValueError, ["'eps'"]),
    ("n_landmarks", 0, ValueError, ["'n_landmarks'", "range [1, inf", "Got 0"]),
    ("n_landmarks", 2.5, TypeError, ["'n_landmarks'", "2.5"]),
    ("batch_size", 0, ValueError, ["'batch_size'", "0"]),
    ("distance_norm", "l2", ValueError, ["'distance_norm'", "'max'", "'l2'"]),
    ("combine", "concat", ValueError, ["'combine'", "'distance'", "'concat'"]),
    ("bandwidth", "scott", ValueError, ["'bandwidth'", "'median'", "'scott'"]),
    ("bandwidth", -1.0, ValueError, ["'bandwidth'", "-1.0"]),
    ("z_bandwidth", [1], TypeError, ["'z_bandwidth'"]),
    ("laplacian", "unnormalised", ValueError, ["'laplacian'", "'sym'"]),
    ("landmarks", "random", ValueError, ["'landmarks'", "'uniform'", "'random'"]),
    ("first_pick", "random", ValueError, ["'first_pick'", "'lowest_index'"]),
    ("batch_order", "sorted", ValueError, ["'batch_order'", "'contiguous'"]),
    ("allocation", "dhondt", ValueError, ["'allocation'", "'largest_remainder'"]),
    ("distance_dtype", "float16", ValueError, ["'distance_dtype'", "'float32'"]),
    ("self_loops", 1, TypeError, ["'self_loops'", "bool"]),
    ("eigen_power", -1.0, ValueError, ["'eigen_power'"]),
    ("n_jobs", 0, ValueError, ["'n_jobs'", "0"]),
    ("n_jobs", 1.5, TypeError, ["'n_jobs'"]),
    ("start_method", "fork", ValueError, ["'start_method'", "'spawn'", "'fork'"]),
    ("client", object(), TypeError, ["'client'", "map()"]),
    ("progress", "yes", TypeError, ["'progress'"]),
])
def test_bad_options_name_the_parameter(option, value, exc, words):
    with pytest.raises(exc) as info:
        run(features(50), 5, **{option: value})
    for word in words:
        assert word in str(info.value)


def test_client_and_n_jobs_are_exclusive_and_unknown_options_rejected():
    with pytest.raises(ValueError, match="'n_jobs' and 'client'"):
        run(features(50), 5, client=FakeClient(), n_jobs=2)
    with pytest.raises(TypeError, match="gama"):
        run(features(50), 5, gama=0.5)
    with pytest.raises(ValueError, match="content"):
        select("qdiverse", {"content": np.zeros((5, 2))}, 2)


def test_presets_hold_the_papers_values():
    assert qdiverse_preset("kadid10k") == {"gamma": 0.5, "energy": 0.95, "eps": 1e-6,
                                           "n_landmarks": 600, "batch_size": 1000}
    assert qdiverse_preset("KonIQ-10k")["batch_size"] == 1000
    assert (qdiverse_preset("SPAQ")["n_landmarks"], qdiverse_preset("spaq")["batch_size"]) == \
        (600, 1500)
    cifar = qdiverse_preset("CIFAR-10")
    assert (cifar["gamma"], cifar["n_landmarks"], cifar["batch_size"]) == (0.7, 500, 1500)
    tid = qdiverse_preset("tid2013")
    assert tid["gamma"] == 0.7 and tid["batch_size"] is None
    assert qdiverse_preset("AGIQA-3K")["batch_size"] is None
    for name in ("pipal", "flive"):
        assert (qdiverse_preset(name)["n_landmarks"], qdiverse_preset(name)["batch_size"]) == \
            (600, 1500)
        assert set(QDIVERSE_PRESETS[name].inferred) == {"n_landmarks", "batch_size"}
    assert QDIVERSE_PRESETS["kadid10k"].inferred == ()
    with pytest.raises(UnknownNameError, match="livec"):
        qdiverse_preset("livec")
    with pytest.raises(UnknownNameError):
        run(features(50), 5, preset="livec")


def test_preset_option_sets_values_and_explicit_options_win():
    feats = features(120, seed=22)
    sel = run(feats, 12, preset="TID2013")
    assert sel.params["preset"] == "tid2013" and sel.params["gamma"] == 0.7
    assert sel.info["mode"] == "non-batch"
    assert set(sel.info["preset_inferred"]) == {"batch_size", "n_landmarks"}
    same = run(feats, 12, **qdiverse_preset("tid2013"))
    assert np.array_equal(sel.indices, same.indices)
    override = run(feats, 12, preset="tid2013", gamma=0.5, batch_size=50)
    assert override.params["gamma"] == 0.5 and override.info["n_batches"] == 3
    assert override.info["preset_inferred"] == ["n_landmarks"]


def test_logs_the_retained_dimension_per_batch(caplog):
    with caplog.at_level(logging.INFO, logger="qd_lib.selection.methods.qdiverse"):
        sel = run(features(200), 20, batch_size=100, n_landmarks=30)
    messages = [r.getMessage() for r in caplog.records]
    for batch, r in enumerate(sel.info["r"]):
        assert any(m.startswith(f"batch {batch}: r={r} of 30 landmarks (energy 0.95)")
                   for m in messages)


# ------------------------------------------------------------------------- golden pick order
# Exact pick orders (and log-determinants) of seeded configurations, recorded from the
# single-module implementation before it was split into the ``qdiverse`` package: any change
# to the output of any stage (batching, allocation, landmarks, spectral embedding, greedy)
# shows up here. The fixture is generic (no exact ties), so the order does not depend on BLAS
# round-off.
GOLDEN = {
    "non_batch_all_landmarks": (
        24, dict(seed=0, batch_size=None, n_landmarks=300), -35.08971171028957,
        [0, 298, 289, 229, 1, 272, 248, 169, 129, 28, 266, 267, 181, 179, 26, 185, 167, 79, 19,
         29, 75, 49, 43, 216]),
    "batches_100_nystrom_40": (
        36, dict(seed=7, batch_size=100, n_landmarks=40), -31.52429476860663,
        [0, 13, 28, 78, 84, 1, 67, 99, 16, 3, 4, 83, 100, 163, 109, 106, 118, 169, 129, 125, 153,
         166, 121, 108, 200, 289, 229, 253, 267, 266, 272, 222, 299, 248, 261, 298]),
    "batches_70_uneven_nystrom_25": (
        45, dict(seed=3, batch_size=70, n_landmarks=25), -35.47701924512335,
        [0, 16, 57, 60, 49, 32, 29, 64, 14, 52, 26, 70, 104, 71, 92, 112, 131, 125, 95, 102, 136,
         77, 140, 166, 158, 169, 152, 181, 203, 149, 178, 179, 210, 233, 266, 215, 267, 241, 222,
         246, 253, 272, 280, 299, 289]),
    "batches_128_all_landmarks": (
        30, dict(seed=0, batch_size=128, n_landmarks=128), -25.963875923946166,
        [0, 84, 112, 29, 22, 10, 120, 19, 79, 4, 94, 125, 92, 128, 179, 216, 167, 140, 224, 192,
         175, 199, 248, 149, 181, 211, 256, 274, 289, 267]),
    "shuffle_float64": (
        33, dict(seed=11, batch_size=120, n_landmarks=50, batch_order="shuffle",
                 distance_dtype="float64"), -27.21489147879953,
        [2, 216, 83, 130, 169, 43, 276, 34, 282, 222, 29, 88, 148, 1, 233, 11, 299, 99, 94, 272,
         118, 172, 298, 269, 134, 185, 0, 75, 258, 286, 85, 142, 19]),
    "alternatives_a": (
        40, dict(seed=5, batch_size=90, n_landmarks=30, combine="kernel", laplacian="rw",
                 landmarks="kmeans++", eigen_power=1.0, row_normalize=True,
                 first_pick="max_degree", allocation="sainte_lague"), -33.8021159924892,
        [76, 10, 33, 28, 67, 3, 84, 43, 36, 14, 15, 88, 93, 94, 118, 112, 140, 106, 95, 167, 175,
         152, 163, 102, 209, 266, 222, 245, 208, 253, 226, 238, 196, 189, 181, 193, 278, 275, 295,
         273]),
    "alternatives_b": (
        50, dict(seed=9, batch_size=150, n_landmarks=60, combine="squared",
                 distance_norm="median", drop_leading=True, first_pick="nearest_mean"),
        -72.16017212027967,
        [62, 106, 41, 135, 10, 130, 91, 28, 26, 144, 29, 114, 43, 84, 1, 16, 33, 19, 99, 90, 4,
         129, 61, 75, 92, 209, 298, 299, 248, 208, 233, 226, 272, 276, 179, 151, 163, 175, 252,
         264, 219, 167, 185, 293, 224, 222, 172, 261, 192, 181]),
}
#: float16 storage rounds the fixture: the same picks here, slightly different gains.
GOLDEN_FLOAT16_LOGDET = {"batches_100_nystrom_40": -31.520684652459824,
                         "batches_70_uneven_nystrom_25": -35.477009129255485}


def golden_features():
    return features(300, seed=31)


def golden_float16_memmaps(folder):
    """The golden fixture stored as float16 ``.npy`` files, opened as memmaps."""
    mm = {}
    for key, arr in golden_features().items():
        np.save(folder / f"{key}.npy", arr.astype(np.float16))
        mm[key] = np.load(folder / f"{key}.npy", mmap_mode="r")
    return mm


def assert_golden(sel, name, logdet=None):
    _, _, expected_logdet, expected = GOLDEN[name]
    assert sel.indices.tolist() == expected
    assert np.isfinite(sel.gains).all()
    assert np.sum(np.log(sel.gains)) == pytest.approx(
        expected_logdet if logdet is None else logdet, rel=1e-9, abs=0)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_pick_order(name):
    budget, opts, _, _ = GOLDEN[name]
    assert_golden(run(golden_features(), budget, **opts), name)


def test_golden_pick_order_from_a_fake_client():
    budget, opts, _, _ = GOLDEN["batches_100_nystrom_40"]
    sel = run(golden_features(), budget, client=FakeClient(), **opts)
    assert sel.info["executor"] == "client"
    assert_golden(sel, "batches_100_nystrom_40")


def test_golden_pick_order_from_float16_memmaps_serial_and_in_workers(tmp_path):
    mm = golden_float16_memmaps(tmp_path)
    for name, logdet in GOLDEN_FLOAT16_LOGDET.items():
        budget, opts, _, _ = GOLDEN[name]
        assert_golden(run(mm, budget, **opts), name, logdet)
    name = "batches_70_uneven_nystrom_25"
    budget, opts, _, _ = GOLDEN[name]
    par = run(mm, budget, n_jobs=2, **opts)
    assert par.info["executor"] == "processes" and par.info["data_transport"] == "path"
    assert_golden(par, name, GOLDEN_FLOAT16_LOGDET[name])


# ------------------------------------------------------------------------------ torch backend
# backend="torch" runs the kernels in torch (here on the CPU; the CUDA test runs where a GPU
# is present). The BLAS/LAPACK kernels round differently from numpy's, so gains agree to
# round-off and the picks are the same on these tie-free fixtures (exact ties are broken the
# same way by both backends: lowest index within the same tolerance).
TORCH_CPU = dict(backend="torch", device="cpu")
# Distances are float32 by default, and numpy's and torch's float32 products round differently
# on some CPUs: measured 5e-7 relative (b1 case below) on an AMD EPYC, 1e-13 on earlier CI hosts;
# with distance_dtype="float64" they agree to 1e-14 on both. The picks must still be identical.
GAIN_RTOL = 1e-5


def assert_same_selection(a, b):
    assert np.array_equal(a.indices, b.indices)
    assert a.info["r"] == b.info["r"]
    np.testing.assert_allclose(b.gains, a.gains, rtol=GAIN_RTOL, atol=0)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_torch_backend_reproduces_the_golden_pick_order(name):
    budget, opts, _, _ = GOLDEN[name]
    sel = run(golden_features(), budget, **opts, **TORCH_CPU)
    assert_golden(sel, name)
    assert (sel.params["backend"], sel.params["device"]) == ("torch", "cpu")


@pytest.mark.parametrize("option, value", [
    ("distance_norm", "none"), ("combine", "kernel"), ("bandwidth", 0.3), ("self_loops", False),
    ("laplacian", "rw"), ("laplacian", "none"), ("landmarks", "kmeans++"), ("eigen_power", 1.0),
    ("drop_leading", True), ("row_normalize", True), ("first_pick", "max_degree"),
    ("first_pick", "nearest_mean"), ("gamma", 0.0), ("gamma", 1.0), ("energy", 1.0),
    ("distance_dtype", "float64"),
])
def test_torch_backend_matches_numpy_for_every_option(option, value):
    feats = features(230, seed=20)
    opts = dict(seed=1, batch_size=80, n_landmarks=30, **{option: value})
    assert_same_selection(run(feats, 31, **opts), run(feats, 31, **opts, **TORCH_CPU))


def test_torch_backend_streams_float16_memmaps_batch_by_batch(tmp_path, monkeypatch):
    from qd_lib.selection.methods.qdiverse.torch_backend import TorchBackend

    mm = golden_float16_memmaps(tmp_path)
    received = []
    original = TorchBackend.from_host

    def spy(self, block):
        received.append((block.shape, block.dtype))
        return original(self, block)

    monkeypatch.setattr(TorchBackend, "from_host", spy)
    name = "batches_70_uneven_nystrom_25"
    budget, opts, _, _ = GOLDEN[name]
    assert_golden(run(mm, budget, **opts, **TORCH_CPU), name, GOLDEN_FLOAT16_LOGDET[name])
    # each embedding goes to the device once per batch, as stored (float16), <= 70 rows
    assert len(received) == 2 * 5
    assert all(dtype == np.float16 and shape[0] <= 70 for shape, dtype in received)
    client = run(mm, budget, client=FakeClient(), **opts, **TORCH_CPU)
    assert_golden(client, name, GOLDEN_FLOAT16_LOGDET[name])


@pytest.mark.parametrize("case", ["constant", "duplicates", "b1", "m_eq_b"])
def test_torch_backend_matches_numpy_on_degenerate_batches(case):
    if case == "constant":
        feats, budget, opts = ({"content": np.ones((50, 4)), "quality": np.full((50, 3), 2.0)},
                               10, dict(batch_size=None))
    elif case == "duplicates":
        base = features(60, seed=8)
        feats = {k: np.vstack([v, v[:30]]) for k, v in base.items()}
        budget, opts = 70, dict(batch_size=None, n_landmarks=90)
    elif case == "b1":
        feats, budget, opts = features(41), 20, dict(batch_size=10)
    else:
        feats, budget, opts = features(30), 30, dict(batch_size=10)
    ref = run(feats, budget, **opts)
    dev = run(feats, budget, **opts, **TORCH_CPU)
    assert np.array_equal(ref.indices, dev.indices)
    np.testing.assert_allclose(dev.gains, ref.gains, rtol=GAIN_RTOL, equal_nan=True)
    if case == "constant":
        assert dev.indices.tolist() == list(range(10))


def _torch_kernels():
    from qd_lib.selection.methods.qdiverse.torch_backend import torch_backend

    return torch_backend("cpu")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_torch_greedy_logdet_matches_the_numpy_kernel(seed):
    xp = _torch_kernels()
    K = rbf_kernel(60, seed=seed)
    for first in (None, 7):
        picks, gains = greedy_logdet(K, 25, eps=1e-6, first=first)
        t_picks, t_gains = xp.greedy_logdet(torch.from_numpy(K), 25, eps=1e-6, first=first)
        assert t_picks.tolist() == picks.tolist() and t_picks.dtype == np.int64
        np.testing.assert_allclose(t_gains, gains, rtol=1e-12)
    ones = torch.ones((12, 12), dtype=torch.float64)  # every step an exact tie
    assert xp.greedy_logdet(ones, 12)[0].tolist() == list(range(12))
    near = np.diag([1.0 - 1e-14, 1.0, 0.5])  # within the tie tolerance: the lower index wins
    assert greedy_logdet(near, 2)[0].tolist() == [0, 1]
    assert xp.greedy_logdet(torch.from_numpy(near), 2)[0].tolist() == [0, 1]
    assert xp.greedy_logdet(ones, 0)[0].shape == (0,)
    with pytest.raises(ValueError, match="n_select"):
        xp.greedy_logdet(ones, 13)


@pytest.mark.parametrize("n", [2, 4, 5, 7, 40])  # 1, 6, 10, 21, 780 values above the diagonal
def test_torch_median_and_distances_follow_the_numpy_kernels(n):
    from qd_lib.selection.methods.qdiverse.affinity import offdiag_median

    xp = _torch_kernels()
    X = np.random.default_rng(n).standard_normal((n, 5))
    D2 = squared_distances(X, dtype=np.float64)
    T2 = xp.squared_distances(torch.from_numpy(X), "float64")
    assert not T2.diagonal().any() and (T2 >= 0).all()
    np.testing.assert_allclose(T2.numpy(), D2, rtol=1e-10, atol=1e-12)
    for sqrt in (False, True):  # numpy's median: the mean of the two middle values
        assert xp.offdiag_median(torch.from_numpy(D2), sqrt=sqrt) == \
            offdiag_median(D2.copy(), sqrt=sqrt)


def test_torch_nystrom_spans_the_numpy_subspace():
    xp = _torch_kernels()
    S = _normalised_affinity(seed=1)
    marks = np.sort(np.random.default_rng(0).choice(80, 30, replace=False))
    Z, lam, r = nystrom_eigenvectors(S.copy(), marks, 0.9)
    tZ, t_lam, t_r = xp.nystrom_eigenvectors(torch.from_numpy(S), marks, 0.9)
    assert t_r == r
    np.testing.assert_allclose(t_lam.numpy(), lam, atol=1e-12)
    np.testing.assert_allclose((tZ @ tZ.T).numpy(), Z @ Z.T, atol=1e-8)  # sign/rotation free


def test_backend_and_device_options_are_checked(monkeypatch):
    feats = features(50)
    with pytest.raises(ValueError) as info:
        run(feats, 5, backend="jax")
    assert all(w in str(info.value) for w in ("'backend'", "'numpy'", "'torch'", "'jax'"))
    with pytest.raises(ValueError, match=r"'device'.*backend='numpy'.*'cuda'"):
        run(feats, 5, device="cuda")
    with pytest.raises(TypeError, match=r"'device'.* 3 of type int"):
        run(feats, 5, device=3, backend="torch")
    with pytest.raises(ValueError, match=r"'device'.*'gpu'"):
        run(feats, 5, device="gpu", backend="torch")
    with pytest.raises(ValueError, match=r"'n_jobs'.*backend='torch'.*n_jobs=2"):
        run(feats, 5, n_jobs=2, **TORCH_CPU)
    assert run(feats, 5, device="auto").params["device"] == "cpu"  # numpy runs on the host
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("cuda", "cuda:1"):
        with pytest.raises(ValueError) as info:
            run(feats, 5, backend="torch", device=name)
        message = str(info.value)
        assert "'device'" in message and f"Got {name!r}" in message
        assert "CUDA is not available" in message
    assert run(feats, 5, backend="torch", device="auto").params["device"] == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match=r"1 CUDA device.*Got 'cuda:3'"):
        run(feats, 5, backend="torch", device="cuda:3")


def test_float32_gemm_falls_back_to_float64_under_reduced_precision(monkeypatch):
    from qd_lib.selection.methods.qdiverse import torch_backend as tb

    xp = tb.TorchBackend("cpu")
    assert xp._gemm_dtype("float32") is torch.float32
    monkeypatch.setattr(tb, "_reduced_fp32_matmul", lambda device: True)
    assert xp._gemm_dtype("float32") is torch.float64
    assert xp._gemm_dtype("float64") is torch.float64


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_backend_reproduces_the_golden_pick_order(tmp_path):
    for name, (budget, opts, _, _) in sorted(GOLDEN.items()):
        sel = run(golden_features(), budget, **opts, backend="torch", device="cuda")
        assert_golden(sel, name)
        assert sel.params["device"] == "cuda"
    mm = golden_float16_memmaps(tmp_path)
    for name, logdet in GOLDEN_FLOAT16_LOGDET.items():
        budget, opts, _, _ = GOLDEN[name]
        assert_golden(run(mm, budget, **opts, backend="torch", device="cuda:0"), name, logdet)



# ------------------------------------------------------------------ labelled extensions
def _unequal_clusters(seed=0):
    """A big tight cluster (900 rows) and a small one (100 rows) far apart, in both views."""
    rng = np.random.default_rng(seed)
    big = rng.normal(0, 1, (900, 8))
    small = rng.normal(0, 1, (100, 8)) + 12
    order = rng.permutation(1000)
    X = np.vstack([big, small])[order]
    is_big = (order < 900)
    return {"content": X, "quality": X[:, ::-1] * 0.5}, is_big


@pytest.mark.parametrize("name", ["qdiverse_qdpp", "qdiverse_density"])
def test_extensions_are_labelled_and_follow_the_density(name):
    spec = get_method(name)
    assert spec.summary.startswith("EXTENSION (not in the paper)")
    assert set(spec.options) == set(get_method("qdiverse").options) - {"extension"}
    feats, is_big = _unequal_clusters()
    plain = select("qdiverse", feats, 100, seed=0, batch_size=None, n_landmarks=200)
    ext = select(name, feats, 100, seed=0, batch_size=None, n_landmarks=200)
    assert ext.params["extension"] in ("quality_dpp", "density_kernel")
    share_plain = is_big[plain.indices].mean()
    share_ext = is_big[ext.indices].mean()
    # the training distribution is 90 % big cluster: the extension gets closer to it
    assert abs(share_ext - 0.9) < abs(share_plain - 0.9), (share_plain, share_ext)
    with pytest.raises(TypeError, match=r"Unknown option\(s\) \['extension'\]"):
        select(name, feats, 10, extension=None)


def test_the_named_variant_selects_what_qdiverse_with_its_option_selects():
    """``qdiverse_rownorm`` is ``qdiverse`` with ``row_normalize=True``, pick for pick; the
    option it fixes cannot be passed, and the study labels the trained variant with its title."""
    from qd_lib.selection.methods.qdiverse import NAMED_VARIANTS
    from qd_lib.study.report import method_label, variant_name

    feats, _ = _unequal_clusters()
    named = select("qdiverse_rownorm", feats, 60, seed=4, n_landmarks=200)
    plain = select("qdiverse", feats, 60, seed=4, n_landmarks=200, row_normalize=True)
    default = select("qdiverse", feats, 60, seed=4, n_landmarks=200)
    np.testing.assert_array_equal(named.indices, plain.indices)
    assert not np.array_equal(named.indices, default.indices)
    assert named.params["row_normalize"] is True
    assert NAMED_VARIANTS["qdiverse_rownorm"] == {"row_normalize": True}
    with pytest.raises(TypeError, match=r"Unknown option\(s\) \['row_normalize'\]"):
        select("qdiverse_rownorm", feats, 10, row_normalize=False)
    assert get_method("qdiverse_rownorm").summary.startswith("VARIANT of an inferred choice")
    trained = variant_name("qdiverse", {"row_normalize": True})
    assert method_label(trained) == get_method("qdiverse_rownorm").label
    assert method_label("qdiverse[gamma=0.7]") == "qdiverse[gamma=0.7]"


def test_extension_options_are_checked():
    feats, _ = _unequal_clusters()
    with pytest.raises(ValueError, match="'extension' parameter must be one of"):
        select("qdiverse", feats, 10, extension="dpp")
    with pytest.raises(ValueError, match="numpy backend only"):
        select("qdiverse", feats, 10, extension="quality_dpp", backend="torch")
    with pytest.raises(ValueError, match="'local_k' parameter"):
        select("qdiverse", feats, 10, extension="density_kernel", local_k=0)
    default = select("qdiverse", feats, 30, seed=1, batch_size=None)
    same = select("qdiverse", feats, 30, seed=1, batch_size=None, extension=None)
    assert np.array_equal(default.indices, same.indices)  # the paper's method is untouched

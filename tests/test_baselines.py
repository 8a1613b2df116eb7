"""Baseline selectors (Herding, k-Center, Contextual Diversity, Moderate, PGCS), MOS binning
and the shared distance kernels: golden pick orders on hand-checkable fixtures, and the
properties of design notes ``baselines.md`` §10 and ``qdiverse.md`` §7 (PGCS items).

Everything runs on tiny seeded data; brute-force references are written out in full here.
"""
from __future__ import annotations

import itertools
import logging
import tracemalloc

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from scipy.stats import special_ortho_group

from qd_lib.selection import get_method, select
from qd_lib.selection._kernels import (
    coordinate_median,
    dot_error_bound,
    farthest_first,
    gram_chunks,
    jeffreys_to_point,
    sq_dists_to_point,
    working_copy,
)
from qd_lib.selection.binning import mos_bins, select_per_bin, split_budget
from qd_lib.selection.methods.contextual_diversity import prepare_probabilities
from qd_lib.selection.methods.herding import herding_greedy
from qd_lib.selection.methods.kcenter import farthest_first_pruned
from qd_lib.selection.methods.pgcs import (
    coverage_partition,
    coverage_scores,
    median_window,
    pgcs_quotas,
)


# ------------------------------------------------------------------------------- fixtures
def clustered(n, d, *, n_clusters=6, seed=0, spread=0.5):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, d)) * 4.0
    return centres[rng.integers(n_clusters, size=n)] + spread * rng.standard_normal((n, d))


def softmax_rows(n, k=5, *, seed=0, scale=2.0):
    z = scale * np.random.default_rng(seed).standard_normal((n, k))
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def line(values):
    """Points on a line (second coordinate 0), the easiest fixture to check by hand."""
    x = np.asarray(values, dtype=np.float64)
    return np.column_stack([x, np.zeros_like(x)])


def covering_radius(X, picks):
    return float(cdist(X, X[picks]).min(axis=1).max())


def offset_clusters(n, d, *, n_clusters, seed, offset, spread):
    """Tight float32 clusters far from the origin: rows whose herding scores nearly tie."""
    rng = np.random.default_rng(seed)
    centres = 3.0 * rng.standard_normal((n_clusters, d))
    scale = spread * rng.uniform(0.5, 1.5, n_clusters)
    labels = rng.integers(n_clusters, size=n)
    X = centres[labels] + scale[labels, None] * rng.standard_normal((n, d)) + offset
    return X.astype(np.float32)


def herding_oracle(X, budget, farthest):
    """Herding in float64, every ‖(t+1)μ − S_t − x_i‖² recomputed from scratch.

    Returns the picks and, per pick, the gap between the winner and the runner-up relative to
    the largest distance (how far the decision lies above float64 round-off).
    """
    X = np.asarray(X, dtype=np.float64)
    mu = X.mean(axis=0)
    S = np.zeros(X.shape[1])
    free = np.ones(len(X), dtype=bool)
    picks, gaps = [], []
    for t in range(budget):
        d2 = ((X - ((t + 1) * mu - S)) ** 2).sum(axis=1)
        key = -d2 if farthest else d2.copy()
        key[~free] = np.inf
        best, second = np.partition(key, 1)[:2] if free.sum() > 1 else (key.min(), np.inf)
        gaps.append((second - best) / d2.max())
        p = int(np.argmin(key))
        picks.append(p)
        free[p] = False
        S += X[p]
    return np.array(picks), np.array(gaps)


def brute_kcenter(X, budget, first):
    D = cdist(X, X)
    chosen = [first]
    m = D[first].copy()
    m[first] = -np.inf
    for _ in range(budget - 1):
        p = int(np.argmax(m))
        chosen.append(p)
        m = np.minimum(m, D[p])
        m[chosen] = -np.inf
    return np.array(chosen)


def half_jeffreys(a, b):
    return 0.5 * float(np.sum((a - b) * (np.log(a) - np.log(b))))


# ------------------------------------------------------------------------------- kernels
def test_distance_kernels_match_cdist():
    X = clustered(120, 7, seed=1)
    W, sq = working_copy(X, np.float64)
    np.testing.assert_allclose(W.mean(axis=0), 0.0, atol=1e-12)
    ref = cdist(X, X, "sqeuclidean")
    np.testing.assert_allclose(sq_dists_to_point(W, sq, 17), ref[17], rtol=1e-9, atol=1e-9)
    G = np.hstack([g for _, _, g in gram_chunks(W, W[[3, 50, 99]], budget_bytes=64 * 3 * 8)])
    np.testing.assert_allclose(G, W[[3, 50, 99]] @ W.T, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(coordinate_median(X, np.arange(0, 120, 3), budget_bytes=400),
                               np.median(X[::3], axis=0))


def test_dot_error_bound_covers_float32_products_of_rounded_rows():
    rng = np.random.default_rng(3)
    for d in (1, 7, 64, 512):
        c = dot_error_bound(np.float32, d)
        assert c < (d + 4) * 2.0 ** -24 * 1.05  # the worst case, not a blanket margin
        # rows with large offsets and mixed signs: products that cancel
        X = rng.standard_normal((300, d)) * rng.uniform(1e-3, 1e3, (300, 1)) + 40.0
        w = rng.standard_normal(d) - 0.02
        screened = X.astype(np.float32) @ w.astype(np.float32)
        err = np.abs(screened.astype(np.float64) - X @ w)
        assert (err <= c * np.linalg.norm(X, axis=1) * np.linalg.norm(w)).all()


def test_jeffreys_kernel_matches_a_double_loop_and_survives_zeros():
    P = softmax_rows(30, seed=2)
    P[0] = [1.0, 0.0, 0.0, 0.0, 0.0]  # one-hot: log 0 without the eps floor
    P[1] = [0.5, 0.5, 0.0, 0.0, 0.0]
    Q, logQ, h = prepare_probabilities(P, 1e-12)
    for p in (0, 1, 7):
        d = jeffreys_to_point(Q, logQ, h, p)
        ref = [half_jeffreys(Q[i], Q[p]) for i in range(30)]
        assert np.isfinite(d).all() and d[p] == 0.0 and (d >= 0).all()
        np.testing.assert_allclose(d, ref, rtol=1e-10, atol=1e-10)
    assert half_jeffreys(Q[3], Q[4]) == pytest.approx(half_jeffreys(Q[4], Q[3]))
    with pytest.raises(ValueError, match="probs.*>= 0"):
        prepare_probabilities(-P, 1e-12)


# ------------------------------------------------------------------------------- binning
def test_equal_width_bins_edges_and_inclusive_last_edge():
    b = mos_bins([1.0, 2.0, 3.0, 4.0, 5.0, 1.5, 4.99], n_bins=4)
    np.testing.assert_allclose(b.edges, [1.0, 2.0, 3.0, 4.0, 5.0])
    assert b.labels.tolist() == [0, 1, 2, 3, 3, 0, 3]  # the maximum lands in the last bin
    assert b.counts.tolist() == [2, 1, 1, 3] and b.scheme == "equal_width"
    info = b.to_info()
    assert info["edges"] == [1.0, 2.0, 3.0, 4.0, 5.0] and info["counts"] == [2, 1, 1, 3]


def test_empty_bins_are_dropped_and_relabelled(caplog):
    with caplog.at_level(logging.INFO, logger="qd_lib.selection.binning"):
        b = mos_bins([0.0, 0.1, 0.15, 0.9, 1.0], n_bins=5)
    assert b.dropped == (1, 2, 3) and b.n_bins == 2
    assert b.labels.tolist() == [0, 0, 0, 1, 1]  # contiguous labels, MOS order kept
    np.testing.assert_allclose(b.edges, [0.0, 0.8, 1.0])  # the empty range joins bin 0
    np.testing.assert_allclose(b.to_info()["requested_edges"], [0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert "dropped 3 empty MOS bin" in caplog.text


def test_quantile_bins_balance_counts_even_with_ties():
    mos = np.array([3.0] * 6 + [1.0, 2.0, 4.0, 5.0, 5.0])
    b = mos_bins(mos, n_bins=3, scheme="quantile")
    assert b.counts.max() - b.counts.min() <= 1 and b.counts.sum() == 11
    # ranks come from a stable sort on (MOS, row): labels never decrease with MOS
    order = np.lexsort((np.arange(11), mos))
    assert (np.diff(b.labels[order]) >= 0).all()
    assert b.labels.tolist() == [0, 0, 1, 1, 1, 1, 0, 0, 2, 2, 2]
    np.testing.assert_allclose(b.edges, [1.0, 3.0, 4.0, 5.0])  # first MOS of each bin, max


def test_constant_mos_gives_one_bin_and_bad_options_are_named():
    assert mos_bins(np.full(7, 2.5)).counts.tolist() == [7]
    with pytest.raises(ValueError, match="'binning'.*equal_width.*quantile.*'median'"):
        mos_bins([1.0, 2.0], scheme="median")
    with pytest.raises(ValueError, match="'n_bins'.*range \\[1, inf\\). Got 0"):
        mos_bins([1.0, 2.0], n_bins=0)
    with pytest.raises(TypeError, match="'n_bins'"):
        mos_bins([1.0, 2.0], n_bins=2.5)


def test_split_budget_largest_remainder():
    # DeepCore's round(f·n_c) gives 0 to every class of 5 at f = 0.1; ours hits the total.
    assert split_budget([5] * 10, 5).tolist() == [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    assert split_budget([10, 30, 60], 7).tolist() == [1, 2, 4]
    # equal remainders: the larger bin first (5·1/10 and 5·3/10 both leave .5) ...
    assert split_budget([1, 3, 6], 5).tolist() == [0, 2, 3]
    # ... then the lower index
    assert split_budget([3, 6, 3], 2).tolist() == [1, 1, 0]
    assert split_budget([4, 2, 4], 1).tolist() == [1, 0, 0]
    rng = np.random.default_rng(0)
    for _ in range(50):
        sizes = rng.integers(0, 20, size=6)
        sizes[0] += 1
        budget = int(rng.integers(0, sizes.sum() + 1))
        q = split_budget(sizes, budget)
        assert q.sum() == budget and (q <= sizes).all()
        assert (np.abs(q - budget * sizes / sizes.sum()) < 1).all()


def test_select_per_bin_merges_bins_in_order_and_skips_empty_shares():
    bins = mos_bins([1.0, 1.1, 1.2, 3.0, 4.9, 5.0], n_bins=2)  # rows 0-2 and 3-5
    calls = []

    def last_first(c, rows, quota):  # picks the bin's rows from the last one down
        calls.append((c, rows.tolist(), quota))
        return np.arange(len(rows))[::-1][:quota], np.full(quota, float(c)), f"bin {c}"

    out = select_per_bin(bins, 4, last_first)
    assert calls == [(0, [0, 1, 2], 2), (1, [3, 4, 5], 2)]
    assert out.indices.tolist() == [2, 1, 5, 4] and out.gains.tolist() == [0, 0, 1, 1]
    assert out.quotas.tolist() == [2, 2] and out.extras == ["bin 0", "bin 1"]
    calls.clear()
    one = select_per_bin(bins, 1, last_first)  # bin 1 gets no share and is never run
    assert calls == [(0, [0, 1, 2], 1)] and one.indices.tolist() == [2]
    assert one.extras == ["bin 0", None]
    assert select_per_bin(bins, 2, lambda c, rows, q: (np.arange(q), None, None)).gains is None


# ------------------------------------------------------------------------------- herding
def test_herding_golden_orders_on_a_line():
    # x = 0, 1, 2, 3, 10: mean 3.2. Classic: nearest to 3.2 (3), then the residual
    # 2·3.2 − 3 = 3.4 → 2, 9.6 − 5 = 4.6 → 1, 12.8 − 6 = 6.8 → 10, then 0.
    X = line([0, 1, 2, 3, 10])
    classic = select("herding", X, 5, progress=False)
    assert classic.indices.tolist() == [3, 2, 1, 4, 0]
    # DeepCore's argmax: farthest from 3.2 (10), then from −3.6 (3), −3.4 (2), −2.2 (1), 0.
    deepcore = select("herding", X, 5, variant="deepcore", progress=False)
    assert deepcore.indices.tolist() == [4, 3, 2, 1, 0]
    np.testing.assert_allclose(classic.gains, [0.2, 0.7, 1.2, 0.8, 0.0], atol=1e-6)


@pytest.mark.parametrize("variant", ["classic", "deepcore"])
def test_herding_equals_a_transcription_of_the_loop(variant):
    X = clustered(600, 12, seed=4)
    ref, _ = herding_oracle(X, 150, variant == "deepcore")
    sel = select("herding", X, 150, variant=variant, dtype="float64", progress=False)
    np.testing.assert_array_equal(sel.indices, ref)


@pytest.mark.parametrize("variant", ["classic", "deepcore"])
def test_herding_default_equals_a_float64_oracle_on_tight_offset_clusters(variant):
    # Six tight clusters (spread 0.01) at offset 300: winners and runners-up differ by 1e-11
    # to 1e-7 of the distances. Incremental float32 scores decided such a near-tie the wrong
    # way (classic at pick 310, deepcore at pick 158).
    X = offset_clusters(2000, 64, n_clusters=6, seed=0, offset=300.0, spread=0.01)
    ref, gaps = herding_oracle(X, 600, variant == "deepcore")
    assert gaps.min() > 1e-12  # every decision lies far above float64 round-off
    sel = select("herding", X, 600, variant=variant, progress=False)
    np.testing.assert_array_equal(sel.indices, ref)


def test_herding_block_engine_exercises_blocks_corrections_and_plain_steps():
    X = clustered(800, 10, seed=5)
    W, sq = working_copy(X, np.float64)
    for farthest in (False, True):
        picks, disc, stats = herding_greedy(W, sq, 300, farthest=farthest)
        np.testing.assert_array_equal(picks, herding_oracle(X, 300, farthest)[0])
        assert stats["blocks"] > 0
    _, _, classic_stats = herding_greedy(W, sq, 300)
    assert classic_stats["corrections"] > 0 and classic_stats["plain_steps"] > 0


def test_classic_herding_each_pick_minimises_the_mean_discrepancy():
    X = np.random.default_rng(6).standard_normal((50, 4))
    mu = X.mean(axis=0)
    picks = select("herding", X, 20, dtype="float64", progress=False).indices
    for t, p in enumerate(picks):
        rest = np.setdiff1d(np.arange(50), picks[:t])
        S = X[picks[:t]].sum(axis=0)
        gaps = np.linalg.norm(mu - (S + X[rest]) / (t + 1), axis=1)
        assert p == rest[np.argmin(gaps)]


def test_herding_mean_approaches_the_data_mean_faster_than_random():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((2000, 16)) * np.linspace(0.5, 3.0, 16)
    mu = X.mean(axis=0)
    sel = select("herding", X, 200, progress=False)
    for k in (10, 50, 200):
        ours = np.linalg.norm(X[sel.indices[:k]].mean(axis=0) - mu)
        assert sel.gains[k - 1] == pytest.approx(ours, rel=1e-5)
        rand = np.median([np.linalg.norm(X[rng.choice(2000, k, replace=False)].mean(axis=0) - mu)
                          for _ in range(100)])
        assert ours < 0.5 * rand
    assert 200 * sel.gains[199] < 10 * sel.gains[9]  # O(1/k) decay, not O(1/√k)


def test_deepcore_herding_picks_one_sided_outliers_unlike_classic():
    rng = np.random.default_rng(8)
    X = rng.standard_normal((2000, 16)) * np.linspace(0.5, 3.0, 16)
    mu = X.mean(axis=0)
    dist = np.linalg.norm(X - mu, axis=1)
    classic = select("herding", X, 50, progress=False).indices
    deepcore = select("herding", X, 50, variant="deepcore", progress=False).indices
    assert classic[0] == np.argmin(dist) and deepcore[0] == np.argmax(dist)
    assert dist[deepcore[:10]].mean() > 1.3 * dist.mean() > dist[classic[:10]].mean()
    U = (X[deepcore] - mu) / dist[deepcore, None]
    V = (X[classic] - mu) / dist[classic, None]
    cos_d = (U @ U.T)[np.triu_indices(50, 1)].mean()
    cos_c = (V @ V.T)[np.triu_indices(50, 1)].mean()
    assert cos_d > 0.3 and abs(cos_c) < 0.1
    gap = np.linalg.norm(X[deepcore].mean(axis=0) - mu)
    assert gap > 2 * np.linalg.norm(X[classic].mean(axis=0) - mu)


def test_herding_prefix_nesting_and_invariances():
    X = clustered(300, 6, seed=9)
    full = select("herding", X, 40, dtype="float64", progress=False).indices
    np.testing.assert_array_equal(select("herding", X, 15, dtype="float64",
                                         progress=False).indices, full[:15])
    R = special_ortho_group.rvs(6, random_state=0)
    moved = 2.5 * X @ R + 7.0
    np.testing.assert_array_equal(select("herding", moved, 40, dtype="float64",
                                         progress=False).indices, full)


def test_balanced_herding_herds_each_bin_to_its_own_mean():
    X = clustered(300, 5, seed=10)
    mos = np.random.default_rng(10).uniform(0, 10, 300)
    sel = select("herding", X, 30, mos=mos, balance=True, progress=False)
    bins = mos_bins(mos)
    quotas = split_budget(bins.counts, 30)
    assert sel.info["quotas"] == quotas.tolist()
    assert sel.info["mos_bins"]["counts"] == bins.counts.tolist()
    start = 0
    for c, q in enumerate(quotas):
        part = sel.indices[start:start + q]
        rows = bins.members(c)
        assert set(part) <= set(rows)
        mu = X[rows].mean(axis=0)
        assert part[0] == rows[np.argmin(np.linalg.norm(X[rows] - mu, axis=1))]
        start += q
    with pytest.raises(ValueError, match="'mos'.*balance"):
        select("herding", X, 30, balance=True)


# ------------------------------------------------------------------------------- k-center
def test_kcenter_golden_order_on_a_line():
    # From 0: farthest is 16; then 7 (7 from 0), 3 (3 from 0 and 4 from 7); then 1 and 15
    # are both 1 away: the lower index (1) first.
    X = line([0, 1, 3, 7, 15, 16])
    sel = select("kcenter", X, 6, first_index=0, progress=False)
    assert sel.indices.tolist() == [0, 5, 3, 2, 1, 4]
    np.testing.assert_allclose(sel.gains, [16, 7, 3, 1, 1, 0], atol=1e-5)
    assert sel.info["first_index"] == 0


def test_kcenter_golden_order_on_a_grid():
    g = np.array([(i, j) for i in range(3) for j in range(3)], dtype=float)  # row-major
    sel = select("kcenter", g, 5, first_index=0, dtype="float64", progress=False)
    # (0,0) → (2,2) [idx 8] → (0,2)/(2,0) tie at 2: lower index (0,2) [2] → (2,0) [6]
    # → the centre (1,1) [4] is √2 from everything picked, the largest gap left.
    assert sel.indices.tolist() == [0, 8, 2, 6, 4]


def test_kcenter_is_farthest_first_and_matches_the_plain_algorithm():
    X = clustered(400, 5, seed=11)
    sel = select("kcenter", X, 60, first_index=13, dtype="float64", progress=False)
    np.testing.assert_array_equal(sel.indices, brute_kcenter(X, 60, 13))
    D = cdist(X, X)
    for t in range(1, 60):
        prev = sel.indices[:t]
        gap = D[:, prev].min(axis=1)
        gap[prev] = -1
        assert gap[sel.indices[t]] == pytest.approx(gap.max(), rel=1e-12)
        assert sel.gains[t - 1] == pytest.approx(gap.max(), rel=1e-9)
    assert (np.diff(sel.gains) <= 1e-12).all()
    assert sel.info["covering_radius"] == pytest.approx(covering_radius(X, sel.indices))


def test_kcenter_pruning_skips_work_but_not_picks():
    X = clustered(3000, 16, n_clusters=20, seed=12, spread=0.3)
    W, sq = working_copy(X, np.float64)
    plain, plain_r = farthest_first(lambda p: sq_dists_to_point(W, sq, p), 3000, 300, 7)
    picks, radii, stats = farthest_first_pruned(W, sq, 300, 7)
    np.testing.assert_array_equal(picks, plain)
    np.testing.assert_allclose(radii, plain_r, rtol=1e-9)
    assert stats["rows_examined"] < 0.3 * 300  # far fewer than one pass per pick
    f32 = select("kcenter", X, 300, first_index=7, progress=False)
    np.testing.assert_array_equal(f32.indices, plain)  # float32 Gram: same picks here


def test_kcenter_covers_clustered_data_better_than_random():
    X = clustered(1500, 8, n_clusters=12, seed=13, spread=0.4)
    rng = np.random.default_rng(13)
    for seed in range(3):
        sel = select("kcenter", X, 30, seed=seed, progress=False)
        rand = min(covering_radius(X, rng.choice(1500, 30, replace=False)) for _ in range(20))
        assert sel.info["covering_radius"] < rand


def test_kcenter_avoids_duplicates_while_distinct_points_remain():
    base = clustered(40, 3, seed=14)
    X = np.vstack([base, base[:25]])  # rows 40..64 duplicate rows 0..24
    sel = select("kcenter", X, 40, first_index=0, dtype="float64", progress=False)
    picked_dupes = sum(1 for i in sel.indices if i >= 40 or i + 40 in sel.indices)
    assert picked_dupes == 0  # all 40 distinct points first
    more = select("kcenter", X, 50, first_index=0, dtype="float64", progress=False)
    # once only duplicates remain, the lowest-index unpicked rows follow
    assert more.indices[40:].tolist() == list(range(40, 50))


def test_kcenter_seed_prefix_and_balance():
    X = clustered(200, 4, seed=15)
    a = select("kcenter", X, 30, seed=5, progress=False)
    assert a.indices[0] == np.random.default_rng(5).integers(200)
    np.testing.assert_array_equal(select("kcenter", X, 12, seed=5, progress=False).indices,
                                  a.indices[:12])
    mos = np.random.default_rng(15).uniform(1, 5, 200)
    bal = select("kcenter", X, 30, mos=mos, balance=True, progress=False)
    bins = mos_bins(mos)
    np.testing.assert_array_equal(np.bincount(bins.labels[bal.indices], minlength=bins.n_bins),
                                  split_budget(bins.counts, 30))
    with pytest.raises(ValueError, match="'first_index'.*balance"):
        select("kcenter", X, 5, mos=mos, balance=True, first_index=0)
    with pytest.raises(ValueError, match="'first_index'.*\\[0, 199\\].*200"):
        select("kcenter", X, 5, first_index=200)


def test_kcenter_can_draw_the_first_centre_from_deepcores_legacy_stream():
    # DeepCore seeds numpy's legacy RandomState and draws randint(0, n) for the first centre;
    # for n = 200 that stream gives 172, 175 and 136 for seeds 0, 7 and 2024.
    X = clustered(200, 4, seed=15)
    for seed, legacy in ((0, 172), (7, 175), (2024, 136)):
        assert np.random.RandomState(seed).randint(0, 200) == legacy  # noqa: NPY002
        sel = select("kcenter", X, 10, seed=seed, first_draw="deepcore", progress=False)
        assert sel.indices[0] == legacy and sel.info["first_index"] == legacy
        assert sel.params["first_draw"] == "deepcore"
        default = select("kcenter", X, 10, seed=seed, progress=False)
        assert default.indices[0] == np.random.default_rng(seed).integers(200) != legacy
        np.testing.assert_array_equal(sel.indices, select(
            "kcenter", X, 10, first_index=legacy, progress=False).indices)
    # balanced: DeepCore restarts the same seed in every class (here: every MOS bin)
    mos = np.random.default_rng(15).uniform(1, 5, 200)
    bal = select("kcenter", X, 30, mos=mos, balance=True, seed=7, first_draw="deepcore",
                 progress=False)
    bins = mos_bins(mos)
    expected = [int(bins.members(c)[np.random.RandomState(7).randint(0, n_c)])  # noqa: NPY002
                for c, n_c in enumerate(bins.counts)]
    assert bal.info["first_index"] == expected
    with pytest.raises(ValueError, match="'first_draw'.*'generator', 'deepcore'.*'legacy'"):
        select("kcenter", X, 5, first_draw="legacy")
    with pytest.raises(ValueError, match="'first_index'.*'first_draw'"):
        select("kcenter", X, 5, first_index=3, first_draw="deepcore")
    with pytest.raises(ValueError, match="'seed'.*first_draw='deepcore'.*seed=None"):
        select("kcenter", X, 5, seed=None, first_draw="deepcore")


# ------------------------------------------------------------------- contextual diversity
def cd_fixture(n=200, seed=16):
    rng = np.random.default_rng(seed)
    return {"embedding": rng.standard_normal((n, 4)), "probs": softmax_rows(n, seed=seed)}, \
        rng.uniform(1.0, 5.0, n)


def test_cd_per_bin_hits_the_quotas_and_is_farthest_first_inside_each_bin():
    feats, mos = cd_fixture()
    sel = select("contextual_diversity", feats, 37, mos=mos, seed=3, progress=False)
    bins = mos_bins(mos)
    quotas = split_budget(bins.counts, 37)
    assert sel.info["quotas"] == quotas.tolist()
    np.testing.assert_array_equal(np.bincount(bins.labels[sel.indices], minlength=5), quotas)
    P, logP, h = prepare_probabilities(feats["probs"], 1e-12)
    start = 0
    for c, q in enumerate(quotas):
        part = sel.indices[start:start + q]
        assert (bins.labels[part] == c).all()  # concatenated in bin order
        rows = bins.members(c)
        for t in range(1, q):
            gap = np.array([min(half_jeffreys(P[i], P[j]) for j in part[:t]) for i in rows])
            gap[np.isin(rows, part[:t])] = -1.0
            assert gap[rows == part[t]][0] == pytest.approx(gap.max(), rel=1e-9)
        assert (np.diff(sel.gains[start:start + q]) <= 1e-12).all()
        start += q


def test_cd_reaches_distinct_probability_clusters_first():
    rng = np.random.default_rng(17)
    modes = np.eye(5) * 0.9 + 0.02
    labels = rng.integers(5, size=150)
    P = modes[labels] + 0.01 * rng.random((150, 5))
    P /= P.sum(axis=1, keepdims=True)
    feats = {"embedding": rng.standard_normal((150, 3)), "probs": P}
    sel = select("contextual_diversity", feats, 5, mos=np.full(150, 3.0), seed=0,
                 progress=False)  # constant MOS: one bin
    assert len(set(labels[sel.indices])) == 5


def test_cd_bins_draw_their_first_centres_independently():
    feats, _ = cd_fixture(n=300, seed=20)
    mos = 1.0 + 4.0 * np.random.default_rng(20).beta(4.0, 1.5, 300)  # sparse low bins
    bins = mos_bins(mos)
    small = select("contextual_diversity", feats, 3, mos=mos, seed=7, progress=False)
    large = select("contextual_diversity", feats, 60, mos=mos, seed=7, progress=False)
    q_small = split_budget(bins.counts, 3)
    # a bin that draws in both runs although an earlier bin draws in only one of them
    assert any(q_small[c] and not q_small[:c].all() for c in range(bins.n_bins))
    for c in np.flatnonzero(q_small):
        assert small.info["first_index"][c] == large.info["first_index"][c]


def test_cd_exact_duplicates_come_last_in_index_order():
    base = softmax_rows(6, seed=21)
    P = np.vstack([base, base[[0, 1, 2]], base[[0]]])  # rows 6..9 repeat rows 0, 1, 2, 0
    feats = {"embedding": np.zeros((10, 2)), "probs": P}
    sel = select("contextual_diversity", feats, 10, mos=np.full(10, 3.0), seed=0,
                 progress=False)
    assert len(set(map(tuple, P[sel.indices[:6]]))) == 6  # one of each distinct row first
    distinct_first = sel.indices[:6]
    rest = [i for i in range(10) if i not in set(distinct_first)]
    assert sel.indices[6:].tolist() == rest  # then the lowest-index unpicked rows
    assert (sel.gains[5:] == 0).all()


def test_cd_global_mode_ignores_bins():
    feats, mos = cd_fixture(seed=18)
    sel = select("contextual_diversity", feats, 20, mos=mos, mode="global", seed=1,
                 progress=False)
    P, logP, h = prepare_probabilities(feats["probs"], 1e-12)
    ref, _ = farthest_first(lambda p: jeffreys_to_point(P, logP, h, p), 200, 20,
                            sel.info["first_index"])
    np.testing.assert_array_equal(sel.indices, ref)


def test_cdal_literal_reproduces_the_bin_confinement_degeneracy():
    feats, mos = cd_fixture(n=300, seed=19)
    sel = select("contextual_diversity", feats, 100, mos=mos, mode="cdal_literal", seed=2)
    bins = mos_bins(mos)
    first_bin = sel.info["first_bin"]
    size = int(bins.counts[first_bin])
    head = sel.indices[:size]
    assert (bins.labels[head] == first_bin).all() and len(head) == size  # the whole bin
    # then the literal code repeats index 0; we drop the repeats and fill by index
    assert sel.info["literal_unique"] == size + (bins.labels[0] != first_bin)
    assert sel.info["literal_duplicates"] == 100 - sel.info["literal_unique"]
    rest = [i for i in range(300) if i not in set(sel.indices[:sel.info["literal_unique"]])]
    assert sel.indices[sel.info["literal_unique"]:].tolist() == rest[:sel.info[
        "literal_duplicates"]]
    per_bin = select("contextual_diversity", feats, 100, mos=mos, seed=2, progress=False)
    assert len(set(bins.labels[per_bin.indices])) == bins.n_bins  # the default spreads


def test_cd_options_are_validated():
    feats, mos = cd_fixture(n=30)
    with pytest.raises(ValueError, match="'mode'.*per_bin.*cdal_literal.*'kcenter'"):
        select("contextual_diversity", feats, 5, mos=mos, mode="kcenter")
    with pytest.raises(ValueError, match="'eps'"):
        select("contextual_diversity", feats, 5, mos=mos, eps=0.0)
    with pytest.raises(ValueError, match="'binning'"):
        select("contextual_diversity", feats, 5, mos=mos, binning="log")


# ------------------------------------------------------------------------------- moderate
def test_moderate_picks_the_middle_window_of_distance_ranks():
    rng = np.random.default_rng(20)
    X = rng.standard_normal((101, 6))
    mos = rng.uniform(1, 5, 101)
    sel = select("moderate", X, 30, mos=mos)
    bins = mos_bins(mos)
    scores = np.empty(101)
    for c in range(bins.n_bins):  # brute force: per-dimension median centre per MOS bin
        rows = bins.members(c)
        scores[rows] = np.linalg.norm(X[rows] - np.median(X[rows], axis=0), axis=1)
    np.testing.assert_allclose(sel.gains, scores[sel.indices], rtol=1e-12)
    assert (np.diff(sel.gains) >= 0).all()  # returned in increasing score
    lo, hi = sel.gains.min(), sel.gains.max()
    outside = np.setdiff1d(np.arange(101), sel.indices)
    assert not ((scores[outside] > lo) & (scores[outside] < hi)).any()  # one contiguous block
    assert (scores < lo).sum() == (101 - 30) // 2 == 35 and (scores > hi).sum() == 36
    assert sel.info["rank_window"] == [35, 65]


def test_moderate_single_bin_equals_the_global_median_window_and_is_translation_free():
    X = clustered(80, 5, seed=21)
    mos = np.full(80, 2.0)
    sel = select("moderate", X, 20, mos=mos)
    s = np.linalg.norm(X - np.median(X, axis=0), axis=1)
    np.testing.assert_array_equal(sel.indices, np.argsort(s, kind="stable")[30:50])
    np.testing.assert_array_equal(select("moderate", X + 100.0, 20, mos=mos).indices,
                                  sel.indices)


def test_moderate_abs_window_per_bin_and_mean_centre():
    rng = np.random.default_rng(22)
    X = rng.standard_normal((120, 4))
    mos = rng.uniform(0, 1, 120)
    a = select("moderate", X, 25, mos=mos, window="abs")
    s = np.empty(120)
    bins = mos_bins(mos)
    for c in range(bins.n_bins):
        rows = bins.members(c)
        s[rows] = np.linalg.norm(X[rows] - np.median(X[rows], axis=0), axis=1)
    gap = np.abs(s - np.median(s))
    assert set(a.indices) == set(np.argsort(gap, kind="stable")[:25])
    pb = select("moderate", X, 25, mos=mos, per_bin=True)
    np.testing.assert_array_equal(np.bincount(bins.labels[pb.indices], minlength=bins.n_bins),
                                  split_budget(bins.counts, 25))
    mean = select("moderate", X, 25, mos=mos, center="mean")
    assert not np.array_equal(np.sort(mean.indices), np.sort(select(
        "moderate", X, 25, mos=mos).indices))
    with pytest.raises(ValueError, match="'window'.*'rank', 'abs'.*'middle'"):
        select("moderate", X, 5, mos=mos, window="middle")
    with pytest.raises(TypeError, match="'per_bin'.*bool"):
        select("moderate", X, 5, mos=mos, per_bin=1)


def test_moderate_records_the_binning_choice():
    rng = np.random.default_rng(23)
    X = rng.standard_normal((60, 3))
    mos = rng.uniform(1, 5, 60)
    sel = select("moderate", X, 10, mos=mos, binning="quantile", n_bins=3)
    assert sel.info["mos_bins"]["scheme"] == "quantile"
    assert sel.info["mos_bins"]["counts"] == [20, 20, 20]
    assert sel.params["binning"] == "quantile" and sel.params["n_bins"] == 3
    default = select("moderate", X, 10, mos=mos)
    assert default.info["mos_bins"]["scheme"] == "equal_width"
    assert default.info["mos_bins"]["n_bins_requested"] == 5
    np.testing.assert_allclose(default.info["mos_bins"]["edges"],
                               np.linspace(mos.min(), mos.max(), 6))


# ----------------------------------------------------------------------------------- pgcs
def brute_coverage(Y, K):
    """The official computation: full matrix, every row sorted, bins of ⌊n/K⌋ ranks."""
    n = len(Y)
    q = max(1, n // K)
    Yc = Y - Y.mean(axis=0)
    D = cdist(Yc, Yc, "sqeuclidean")
    cov = np.zeros(n, dtype=np.int64)
    for i in range(n):
        order = np.lexsort((np.arange(n), D[i]))
        pos = np.empty(n, dtype=np.int64)
        pos[order] = np.arange(n)
        cov += np.minimum(pos // q, K - 1) + 1
    return cov


@pytest.mark.parametrize("K", [1, 3, 5, 7])
def test_coverage_scores_match_the_full_sort_for_any_chunking(K):
    Y = np.random.default_rng(24).standard_normal((203, 3)) * 10
    ref = brute_coverage(Y, K)
    for chunk, jobs in ((1, 1), (17, 1), (64, 2), (None, 1)):
        got, used = coverage_scores(Y, K, chunk_size=chunk, n_jobs=jobs)
        np.testing.assert_array_equal(got, ref)
        if chunk is not None:
            assert used == chunk


def test_coverage_scores_rank_exact_ties_by_index():
    # Integer coordinates: every squared distance is exact and ties are many.
    rng = np.random.default_rng(25)
    Z = np.floor(rng.random((180, 3)) * 4)
    # 40 copies of one point: from elsewhere they tie across whole bins (several cuts)
    Z2 = np.vstack([np.full((40, 3), 2.0), np.floor(rng.random((25, 3)) * 6)])
    # q = ⌊7/5⌋ = 1: adjacent cuts, so a tie can span a cut with nothing in between
    Z3 = np.array([[0, 0, 0], [1, 0, 0], [1, 0, 0], [1, 0, 0], [0, 1, 0], [3, 3, 3], [0, 0, 0.]])
    for data in (Z, Z2, Z3):
        for K in (3, 5):
            np.testing.assert_array_equal(coverage_scores(data, K, chunk_size=11)[0],
                                          brute_coverage(data, K))


def test_strata_are_round_robin_over_sorted_coverage():
    cov = np.array([9, 3, 3, 7, 1, 5, 3, 8, 2, 6, 4])
    labels = coverage_partition(cov, 5)
    order = np.argsort(cov, kind="stable")  # ties by index
    assert (labels[order] == np.arange(11) % 5).all()
    assert np.bincount(labels).tolist() == [3, 2, 2, 2, 2]


def test_pgcs_quotas_ceil_then_trim():
    # ceil: [3, 3, 2, 2, 2] = 12, excess 2; ⌊m·2/12⌋ = 0 everywhere, so one unit at a time
    # from the largest (first on ties): [2, 3, ...] then [2, 2, ...].
    assert pgcs_quotas([21, 21, 20, 20, 20], 10).tolist() == [2, 2, 2, 2, 2]
    # ceil: [5, 5, 1] = 11, excess 1, ⌊5/11⌋ = 0: the first largest gives one back.
    assert pgcs_quotas([30, 30, 1], 10).tolist() == [4, 5, 1]
    # ceil: ten 1s and ⌈1100/110⌉ = 10, 20 in all, excess 9; ⌊10·9/20⌋ = 4 → 16; the 5 left
    # all come off the largest: the partition holding 100 of 110 rows ends with 1 of 11 (the
    # official rule's quirk, kept).
    assert pgcs_quotas([1] * 10 + [100], 11).tolist() == [1] * 11
    assert pgcs_quotas([50, 50], 51).tolist() == [25, 26]
    rng = np.random.default_rng(26)
    for _ in range(100):
        sizes = rng.integers(1, 40, size=int(rng.integers(1, 8)))
        budget = int(rng.integers(0, sizes.sum() + 1))
        q = pgcs_quotas(sizes, budget)
        assert q.sum() == budget and (q >= 0).all() and (q <= sizes).all()
    assert median_window(10, 4) == (3, 7) and median_window(7, 7) == (0, 7)
    assert median_window(9, 2) == (3, 5)
    assert median_window(10, 3) == (4, 7) and median_window(8, 1) == (4, 5)  # not (n−m)//2


def test_pgcs_with_a_precomputed_embedding():
    rng = np.random.default_rng(27)
    X = clustered(233, 8, seed=27)
    Y = rng.standard_normal((233, 3)) * 20
    sel = select("pgcs", X, 40, embedding_3d=Y, seed=0, progress=False)
    again = select("pgcs", X, 40, embedding_3d=Y, seed=99, progress=False)
    np.testing.assert_array_equal(sel.indices, again.indices)  # no t-SNE: seed-free
    labels = coverage_partition(brute_coverage(Y, 5), 5)
    sizes = np.bincount(labels)
    assert sorted(sizes.tolist()) == [46, 46, 47, 47, 47]  # ⌊233/5⌋ or ⌈233/5⌉
    assert sel.info["partition_sizes"] == sizes.tolist()
    quotas = pgcs_quotas(sizes, 40)
    assert sel.info["quotas"] == quotas.tolist() and quotas.sum() == 40
    start = 0
    for c in range(5):
        part = sel.indices[start:start + quotas[c]]
        rows = np.flatnonzero(labels == c)
        assert (labels[part] == c).all()
        d = np.linalg.norm(X[rows] - np.median(X[rows], axis=0), axis=1)
        order = rows[np.argsort(d, kind="stable")]
        lo, hi = median_window(len(rows), int(quotas[c]))
        np.testing.assert_array_equal(part, order[lo:hi])  # median window, ascending distance
        start += quotas[c]
    assert sel.info["tsne"] == "precomputed"
    with pytest.raises(ValueError, match="'embedding_3d'.*233"):
        select("pgcs", X, 40, embedding_3d=Y[:-1])


def test_pgcs_takes_every_budget_on_tiny_inputs_with_default_options():
    # The default K = 5 used to refuse every budget below 5 rows, though nobody had set it.
    for n in range(1, 7):
        X = np.random.default_rng(n).standard_normal((n, 6))
        for budget in range(1, n + 1):
            sel = select("pgcs", X, budget, seed=0, progress=False)
            assert sel.budget == budget and len(set(sel.indices.tolist())) == budget
            assert sel.params["n_partitions"] == min(5, n)
            assert sel.info["quotas"] == pgcs_quotas(sel.info["partition_sizes"],
                                                     budget).tolist()
        assert (sel.info["tsne"] == "skipped") == (n < 4)  # too few rows for t-SNE
    # a K the user set is still checked against N
    with pytest.raises(ValueError, match=r"The 'n_partitions' parameter of pgcs must be an "
                                         r"int in the range \[1, 3\]\. Got 5 instead\."):
        select("pgcs", np.eye(3), 2, n_partitions=5)


def test_pgcs_partitioning_never_builds_an_n_by_n_matrix():
    n = 6000  # an N×N float64 matrix would take 288 MB
    Y = np.random.default_rng(28).standard_normal((n, 3))
    tracemalloc.start()
    try:
        coverage, chunk = coverage_scores(Y, 5, chunk_size=50)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert chunk == 50
    assert coverage.sum() == n * 1200 * (1 + 2 + 3 + 4 + 5)  # every row hands out 1..5
    assert peak < 0.05 * n * n * 8  # under 15 MB
    auto = coverage_scores(Y[:3000], 5)[1]
    assert auto * 3000 * 17 <= 2 * (64 << 20)  # default chunks fit 64 MiB of temporaries


def test_pgcs_tsne_gets_seeded_settings(monkeypatch):
    import openTSNE

    calls = []

    class FakeTSNE:
        def __init__(self, **kwargs):
            calls.append(kwargs)

        def fit(self, X):
            rs = np.random.default_rng(calls[-1]["random_state"])
            return rs.standard_normal((len(X), calls[-1]["n_components"]))

    from qd_lib.selection.methods import pgcs as pgcs_module

    monkeypatch.setattr(openTSNE, "TSNE", FakeTSNE)
    monkeypatch.setattr(pgcs_module, "_TSNE_CACHE", {})  # no fake layout outlives this test
    X = clustered(120, 6, seed=29)
    a = select("pgcs", X, 12, seed=4, n_jobs=2, progress=False)
    pgcs_module._TSNE_CACHE.clear()  # the same seed again computes the same layout afresh
    b = select("pgcs", X, 12, seed=4, n_jobs=2, progress=False)
    c = select("pgcs", X, 12, seed=5, progress=False)
    kw = calls[0]
    assert kw["n_components"] == 3 and kw["verbose"] is False and kw["n_jobs"] == 2
    assert kw["negative_gradient_method"] == "bh" and kw["perplexity"] == 30.0
    assert calls[0]["random_state"] == calls[1]["random_state"] != calls[2]["random_state"]
    assert a.info["tsne"]["random_state"] == kw["random_state"]
    np.testing.assert_array_equal(a.indices, b.indices)
    assert not np.array_equal(a.indices, c.indices)


@pytest.mark.parametrize("option, value, exc, pattern", [
    ("n_partitions", 0, ValueError, "'n_partitions'.*range"),
    ("n_components", 4, ValueError, "'n_components'"),
    ("perplexity", -1.0, ValueError, "'perplexity'"),
    ("n_jobs", 0, ValueError, "'n_jobs'"),
    ("chunk_size", 0, ValueError, "'chunk_size'"),
    ("verbose", 1, TypeError, "'verbose'"),
])
def test_pgcs_options_are_validated(option, value, exc, pattern):
    with pytest.raises(exc, match=pattern):
        select("pgcs", np.zeros((20, 3)) + np.arange(20)[:, None], 5,
               embedding_3d=np.arange(60.0).reshape(20, 3), **{option: value})


@pytest.mark.parametrize("method, option, value, pattern", [
    ("herding", "variant", "kernel", "'variant'.*'classic', 'deepcore'.*'kernel'"),
    ("herding", "dtype", "float16", "'dtype'.*float32.*float16"),
    ("kcenter", "dtype", "half", "'dtype'"),
    ("kcenter", "n_bins", -2, "'n_bins'"),
    ("moderate", "center", "mode", "'center'.*'median', 'mean'"),
])
def test_bad_options_name_the_parameter(method, option, value, pattern):
    X = np.random.default_rng(30).standard_normal((20, 3))
    with pytest.raises(ValueError, match=pattern):
        select(method, X, 5, mos=np.linspace(1, 5, 20), **{option: value})
    assert option in get_method(method).options


def test_every_baseline_documents_reference_adaptation_and_deviations():
    for name in ("herding", "kcenter", "contextual_diversity", "moderate", "pgcs"):
        doc = get_method(name).func.__doc__
        for word in ("Reference", "IQA adaptation" if name != "pgcs" else "MOS",
                     "Deviations from", "Options"):
            assert word in doc, (name, word)


def test_float32_and_float64_agree_on_separated_data():
    X = clustered(500, 6, seed=31, spread=0.2)
    for method, extra in (("kcenter", {"first_index": 3}), ("herding", {})):
        a = select(method, X.astype(np.float32), 40, dtype="float32", progress=False, **extra)
        b = select(method, X, 40, dtype="float64", progress=False, **extra)
        np.testing.assert_array_equal(a.indices, b.indices)


def test_memmap_features_are_read_in_place(tmp_path):
    X = clustered(300, 5, seed=32).astype(np.float32)
    path = tmp_path / "x.npy"
    np.save(path, X)
    mm = np.load(path, mmap_mode="r")
    for method in ("kcenter", "herding"):
        a = select(method, mm, 30, seed=1, progress=False)
        b = select(method, X, 30, seed=1, progress=False)
        np.testing.assert_array_equal(a.indices, b.indices)


def test_brute_force_helpers_are_consistent():
    # guards the references themselves: a tiny case checked by enumeration
    X = line([0.0, 2.0, 5.0, 9.0])
    assert brute_kcenter(X, 4, 0).tolist() == [0, 3, 2, 1]
    best = min(itertools.combinations(range(4), 2), key=lambda s: covering_radius(X, list(s)))
    assert covering_radius(X, list(best)) <= covering_radius(X, [0, 3])


def test_pgcs_reuses_its_tsne_across_budgets_with_identical_results():
    """The coresets of one seed at several fractions share one t-SNE layout (kept in memory),
    and a reused layout gives exactly what a fresh one gives."""
    from unittest import mock

    from qd_lib.selection.methods import pgcs as pgcs_module

    X = np.random.default_rng(5).normal(size=(120, 6))
    pgcs_module._TSNE_CACHE.clear()  # layouts of other tests' data would not match anyway
    with mock.patch.object(pgcs_module, "_tsne_3d", wraps=pgcs_module._tsne_3d) as fresh:
        small = select("pgcs", X, 12, seed=4)
        large = select("pgcs", X, 36, seed=4)
        other_seed = select("pgcs", X, 12, seed=5)
    assert fresh.call_count == 2  # seed 4 once (two budgets), seed 5 once
    pgcs_module._TSNE_CACHE.clear()
    assert np.array_equal(select("pgcs", X, 36, seed=4).indices, large.indices)
    assert np.array_equal(select("pgcs", X, 12, seed=4).indices, small.indices)
    assert small.info == select("pgcs", X, 12, seed=4).info  # records do not depend on the cache
    assert not np.array_equal(np.sort(other_seed.indices), np.sort(small.indices))


def test_pgcs_exact_distances_match_euclidean_in_any_chunking():
    """The BLAS-free distances behind small t-SNE inputs are Euclidean distances, whatever the
    chunk size (one row per chunk here, all rows in one chunk by default)."""
    from scipy.spatial.distance import cdist

    from qd_lib.selection.methods.pgcs import exact_distances

    X = np.random.default_rng(3).normal(size=(37, 5))
    D = exact_distances(X)
    np.testing.assert_allclose(D, cdist(X, X), rtol=1e-12, atol=1e-12)
    assert np.array_equal(exact_distances(X, chunk_bytes=1), D)
    assert np.all(np.diag(D) == 0) and np.array_equal(D, D.T)

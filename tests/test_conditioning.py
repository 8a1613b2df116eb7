"""Selecting the next k given rows already selected: the shared 'initial' option."""
import numpy as np
import pytest

from qd_lib.selection import conditioning_methods, get_method, select
from qd_lib.selection.methods.qdiverse.greedy import greedy_logdet

N = 180
QD_ONE_BATCH = {"batch_size": None, "n_landmarks": 60}


@pytest.fixture(scope="module")
def data():
    """Three well-separated clusters of 60 rows; ``labels`` says which."""
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0, 0, 0], [8, 0, 0, 0], [0, 8, 0, 0]], dtype=float)
    labels = np.repeat([0, 1, 2], N // 3)
    X = centres[labels] + rng.normal(size=(N, 4))
    Q = centres[labels][:, :3] * 0.5 + rng.normal(size=(N, 3))
    return {"X": X.astype(np.float32), "Q": Q.astype(np.float32), "labels": labels}


def run(method, data, budget, **options):
    features = {"content": data["X"], "quality": data["Q"]} if method.startswith(
        "qdiverse") else data["X"]
    if method.startswith("qdiverse"):
        for key, value in QD_ONE_BATCH.items():
            options.setdefault(key, value)
    if "progress" in get_method(method).options:
        options.setdefault("progress", False)
    return select(method, features, budget, seed=options.pop("seed", 3), **options)


def test_the_greedy_methods_and_random_take_initial():
    assert set(conditioning_methods()) == {"qdiverse", "qdiverse_qdpp", "qdiverse_density",
                                           "qdiverse_rownorm", "kcenter", "herding", "random"}


@pytest.mark.parametrize("method, options", [
    ("kcenter", {}), ("kcenter", {"dtype": "float64"}), ("herding", {}),
    ("herding", {"variant": "deepcore"}), ("qdiverse", {}), ("qdiverse", {"first_pick":
                                                                          "max_degree"}),
    ("qdiverse_qdpp", {}), ("qdiverse_density", {}), ("qdiverse_rownorm", {}),
])
@pytest.mark.parametrize("prefix", [1, 7])
def test_conditioning_on_a_prefix_continues_the_run(data, method, options, prefix):
    full = run(method, data, 20, **options)
    cont = run(method, data, 20 - prefix, initial=full.indices[:prefix], **options)
    np.testing.assert_array_equal(cont.indices, full.indices[prefix:])
    np.testing.assert_allclose(cont.gains, full.gains[prefix:], rtol=1e-12)
    assert cont.info["n_initial"] == prefix


def test_qdiverse_batches_continue_from_a_smaller_run(data):
    # Batch mode: picks are per batch; conditioning on the run at 30 and asking 30 more gives
    # the run at 60 (Sainte-Laguë shares never shrink as the budget grows), batch by batch.
    opts = {"batch_size": 70, "n_landmarks": 30, "allocation": "sainte_lague"}
    small = run("qdiverse", data, 30, **opts)
    big = run("qdiverse", data, 60, **opts)
    cont = run("qdiverse", data, 30, initial=small.indices, **opts)
    assert cont.info["batch_budgets"] == [b - s for b, s in zip(big.info["batch_budgets"],
                                                                small.info["batch_budgets"])]
    assert cont.info["batch_initial"] == small.info["batch_budgets"]
    for first, last in ((0, 70), (70, 140), (140, N)):
        def in_batch(idx, first=first, last=last):
            return idx[(idx >= first) & (idx < last)]
        np.testing.assert_array_equal(np.r_[in_batch(small.indices), in_batch(cont.indices)],
                                      in_batch(big.indices))


def test_qdiverse_budgets_count_only_new_picks(data):
    # Every row of initial is in batch 0, beyond its share of the coreset: batch 0 gets no new
    # pick and the other batches share the budget; the total is exact.
    opts = {"batch_size": 60, "n_landmarks": 30}
    sel = run("qdiverse", data, 12, initial=np.arange(25), **opts)
    assert sel.info["batch_initial"] == [25, 0, 0]
    assert sel.info["batch_budgets"] == [0, 6, 6]
    assert len(sel.indices) == 12 and sel.indices.min() >= 60


@pytest.mark.parametrize("method", ["kcenter", "herding", "qdiverse"])
def test_conditioned_picks_move_away_from_the_rated_rows(data, method):
    labels = data["labels"]
    rated = np.flatnonzero(labels == 0)[:12]
    plain = run(method, data, 9)
    cond = run(method, data, 9, initial=rated)

    def nearest_rated(idx):
        X = data["X"].astype(np.float64)
        d = np.linalg.norm(X[idx][:, None] - X[rated][None], axis=2)
        return d.min(axis=1)

    assert (labels[cond.indices] == 0).sum() < (labels[plain.indices] == 0).sum()
    assert (labels[cond.indices[:6]] != 0).all()  # the first picks fill the other clusters
    assert nearest_rated(cond.indices).mean() > nearest_rated(plain.indices).mean()


@pytest.mark.parametrize("method", sorted({"qdiverse", "qdiverse_qdpp", "qdiverse_density",
                                           "kcenter", "herding", "random"}))
def test_picks_never_repeat_a_rated_row_even_when_few_are_left(data, method):
    rated = np.arange(0, N, 2)  # half of the rows
    sel = run(method, data, N - len(rated), initial=rated)
    np.testing.assert_array_equal(np.sort(sel.indices), np.arange(1, N, 2))
    with pytest.raises(ValueError, match=r"'budget'.*at most 90.*Got 91"):
        run(method, data, N - len(rated) + 1, initial=rated)


def test_random_excludes_the_rated_rows_and_is_seeded(data):
    rated = np.arange(150)
    a = run("random", data, 20, initial=rated, seed=1)
    b = run("random", data, 20, initial=rated, seed=1)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert a.indices.min() >= 150


@pytest.mark.parametrize("method", ["kcenter", "herding", "qdiverse", "random"])
def test_an_empty_initial_changes_nothing(data, method):
    a = run(method, data, 15)
    b = run(method, data, 15, initial=[])
    np.testing.assert_array_equal(a.indices, b.indices)
    assert a.params == b.params


def test_qdiverse_rows_outside_every_batch_condition_each_batch():
    # Row 150 is rated and is not a candidate; each of the three batches of rows 0-149 starts
    # with an exact copy of it. Unconditioned, a batch's first pick is its first row (all tie);
    # with row 150 in every batch, the copies add nothing and are never picked.
    rng = np.random.default_rng(1)
    X = rng.normal(size=(151, 5))
    Q = rng.normal(size=(151, 3))
    copies = [0, 50, 100]
    X[copies] = X[150]
    Q[copies] = Q[150]
    features = {"content": X, "quality": Q}
    opts = {"batch_size": 50, "n_landmarks": 20, "seed": 0}
    plain = select("qdiverse", features, 15, **opts)
    assert set(copies) <= set(plain.indices.tolist())
    cond = select("qdiverse", features, 15, initial=[150], initial_everywhere=[150], **opts)
    assert cond.info["batch_sizes"] == [50, 50, 50]
    assert cond.info["batch_budgets"] == [5, 5, 5]
    assert not set(copies) & set(cond.indices.tolist()) and 150 not in cond.indices
    # rated in its own (last) batch only: the copies in the other batches are still picked
    own = select("qdiverse", features, 15, initial=[150], **opts)
    assert own.info["batch_sizes"] == [50, 50, 50, 1]
    assert set(copies) <= set(own.indices.tolist())


def test_greedy_logdet_starts_the_factor_from_initial():
    rng = np.random.default_rng(2)
    Z = rng.normal(size=(40, 6))
    K = np.exp(-((Z[:, None] - Z[None]) ** 2).sum(-1) / 8.0)
    picks, gains = greedy_logdet(K, 12)
    rest, rest_gains = greedy_logdet(K, 8, initial=picks[:4])
    np.testing.assert_array_equal(rest, picks[4:])
    np.testing.assert_allclose(rest_gains, gains[4:], rtol=1e-12)
    # the gains are Schur complements given the initial rows: log det adds up
    S = np.r_[picks[:4], rest]
    sign, logdet = np.linalg.slogdet(K[np.ix_(S, S)] + 1e-6 * np.eye(len(S)))
    np.testing.assert_allclose(np.log(gains[:4]).sum() + np.log(rest_gains).sum(), logdet)
    with pytest.raises(ValueError, match="n_select must be in"):
        greedy_logdet(K, 37, initial=picks[:4])


def test_bad_initial_is_refused_with_the_parameter_named(data):
    with pytest.raises(ValueError, match=r"'initial'.*\[0, 180\).*180"):
        run("kcenter", data, 5, initial=[3, 180])
    with pytest.raises(ValueError, match=r"'initial'.*more than once"):
        run("kcenter", data, 5, initial=[3, 3])
    with pytest.raises(TypeError, match=r"'initial'.*row indices"):
        run("herding", data, 5, initial=[0.5, 1.5])
    with pytest.raises(ValueError, match="cannot be combined with balance"):
        run("kcenter", data, 5, initial=[1], balance=True,
            mos=np.linspace(0, 1, N))
    with pytest.raises(ValueError, match="'initial_everywhere'.*rows of 'initial'"):
        run("qdiverse", data, 5, initial=[1], initial_everywhere=[2])
    for method in ("kcenter", "herding"):  # the torch kernels do not take initial rows
        with pytest.raises(ValueError, match=f"'initial' parameter of {method} runs on "
                                             "backend='numpy' only"):
            run(method, data, 5, initial=[1], backend="torch", device="cpu")


def test_a_method_that_cannot_continue_says_which_can(data):
    mos = np.linspace(0, 1, N)
    with pytest.raises(TypeError, match=r"'moderate' cannot continue.*'kcenter'"):
        select("moderate", data["X"], 5, mos=mos, initial=[1])

"""The selector contract, checked for every registered method (scikit-learn's common-checks idea).

Features are built from ``get_method(m).inputs``: ``"embedding"``/``"content"``/``"quality"``
as seeded random arrays, ``"probs"`` as rows of a softmax. MOS is always passed (label-free
methods must accept and ignore it). N = 50 rows keep every method, PGCS's real t-SNE
included, well under a second per call.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from qd_lib.selection import available_methods, get_method, select

N = 50
METHODS = available_methods()
# Options that make a stochastic method's randomness reach the result on N = 50 rows:
# Q-Diverse draws landmarks, and with its default 600 every row is a landmark (seed-free).
SEED_SENSITIVE = {"qdiverse": {"n_landmarks": 10}, "qdiverse_qdpp": {"n_landmarks": 10},
                  "qdiverse_density": {"n_landmarks": 10}, "qdiverse_rownorm": {"n_landmarks": 10}}


def make_features(method: str, n: int = N, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((4, 6)) * 3.0
    out = {}
    for key in get_method(method).inputs:
        if key == "probs":
            z = 2.0 * rng.standard_normal((n, 5))
            e = np.exp(z - z.max(axis=1, keepdims=True))
            out[key] = e / e.sum(axis=1, keepdims=True)
        elif key == "embedding":
            out[key] = centres[rng.integers(4, size=n)] + rng.standard_normal((n, 6))
        else:
            out[key] = rng.standard_normal((n, 7 if key == "content" else 5))
    return out


def make_mos(n: int = N, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(1.0, 5.0, size=n)


def run(method, budget, *, seed=0, features=None, mos=None, **options):
    if "progress" in get_method(method).options:
        options.setdefault("progress", False)
    feats = make_features(method) if features is None else features
    return select(method, feats, budget, mos=make_mos() if mos is None else mos, seed=seed,
                  **options)


def test_registry_holds_every_baseline():
    assert {"random", "herding", "kcenter", "contextual_diversity", "moderate",
            "pgcs"} <= set(METHODS)
    assert get_method("contextual_diversity").inputs == ("embedding", "probs")
    assert not get_method("herding").stochastic and not get_method("moderate").stochastic
    assert get_method("kcenter").stochastic and get_method("pgcs").stochastic


@pytest.mark.parametrize("method", METHODS)
def test_exact_size_unique_int64_in_range(method):
    sel = run(method, 13)
    assert sel.indices.dtype == np.int64 and sel.indices.shape == (13,)
    assert len(np.unique(sel.indices)) == 13
    assert sel.indices.min() >= 0 and sel.indices.max() < N
    assert (sel.method, sel.budget, sel.n_samples) == (method, 13, N)
    json.dumps(sel.to_record())  # params and info are JSON-serialisable


@pytest.mark.parametrize("method", METHODS)
def test_deterministic_for_a_fixed_seed(method):
    a, b = run(method, 11, seed=3), run(method, 11, seed=3)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert a.params == b.params


@pytest.mark.parametrize("method", METHODS)
def test_seed_changes_exactly_the_stochastic_methods(method):
    opts = SEED_SENSITIVE.get(method, {})
    base = run(method, 11, seed=0, **opts).indices
    others = [run(method, 11, seed=s, **opts).indices for s in (1, 2, 3)]
    changed = any(not np.array_equal(base, o) for o in others)
    assert changed == get_method(method).stochastic


@pytest.mark.parametrize("method", METHODS)
def test_global_random_state_is_untouched(method):
    # the legacy global RandomState is exactly what must stay untouched
    np.random.seed(123)  # noqa: NPY002
    before = np.random.get_state()[1].copy()  # noqa: NPY002
    run(method, 9, seed=5)
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # noqa: NPY002


@pytest.mark.parametrize("method", METHODS)
def test_budget_equal_to_n_is_a_permutation(method):
    sel = run(method, N)
    np.testing.assert_array_equal(np.sort(sel.indices), np.arange(N))


@pytest.mark.parametrize("method", METHODS)
def test_budget_zero_is_empty_and_a_zero_fraction_raises(method):
    # A count of 0 means an empty coreset (qd_lib.data.resolve_budget); a fraction must give
    # at least one row.
    sel = run(method, 0)
    assert sel.indices.shape == (0,) and sel.budget == 0
    with pytest.raises(ValueError, match="'fraction'"):
        run(method, 0.0)
    with pytest.raises(ValueError, match="'fraction'.*empty coreset"):
        run(method, 0.01)  # floor(0.01 × 50) = 0


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("budget", [N + 1, -1])
def test_budget_out_of_range_raises(method, budget):
    with pytest.raises(ValueError, match="'budget'"):
        run(method, budget)


@pytest.mark.parametrize("method", METHODS)
def test_non_finite_features_raise(method):
    feats = make_features(method)
    key = get_method(method).inputs[0]
    feats[key] = feats[key].copy()
    feats[key][7, 0] = np.nan
    with pytest.raises(ValueError, match=rf"features\['{key}'\].*row 7"):
        run(method, 5, features=feats)


@pytest.mark.parametrize("method", METHODS)
def test_wrong_length_mos_raises(method):
    with pytest.raises(ValueError, match="'mos'.*one score per row"):
        run(method, 5, mos=make_mos(N - 1))


@pytest.mark.parametrize("method", METHODS)
def test_unknown_option_raises_and_lists_the_valid_ones(method):
    with pytest.raises(TypeError, match=r"Unknown option\(s\) \['not_an_option'\]"):
        run(method, 5, not_an_option=1)


@pytest.mark.parametrize("method", METHODS)
def test_fraction_budget_uses_the_exact_floor(method):
    assert int(0.58 * N) == 28  # the float product falls short of 29
    sel = run(method, 0.58)
    assert sel.budget == 29 and len(np.unique(sel.indices)) == 29


@pytest.mark.parametrize("method", [m for m in METHODS if get_method(m).needs_mos])
def test_methods_needing_mos_refuse_to_run_without_it(method):
    with pytest.raises(ValueError, match="needs MOS"):
        select(method, make_features(method), 5, mos=None)


@pytest.mark.parametrize("method", [m for m in METHODS
                                    if get_method(m).inputs == ("embedding",)])
def test_single_embedding_methods_take_a_bare_array(method):
    feats = make_features(method)
    a = run(method, 9, features=feats, seed=4)
    b = run(method, 9, features=feats["embedding"], seed=4)
    np.testing.assert_array_equal(a.indices, b.indices)


@pytest.mark.parametrize("method", [m for m in METHODS if len(get_method(m).inputs) > 1])
def test_multi_input_methods_name_the_missing_key(method):
    feats = make_features(method)
    missing = get_method(method).inputs[-1]
    del feats[missing]
    with pytest.raises(ValueError, match=f"Missing \\['{missing}'\\]"):
        run(method, 5, features=feats)


def test_every_method_has_its_own_display_title():
    """Tables, figures and the README name methods from the registry alone: every method has a
    title, no two share one, and the labelled extensions say that they are extensions."""
    from qd_lib.runner.tables import method_label
    from qd_lib.selection import available_methods, get_method

    titles = {name: get_method(name).label for name in available_methods()}
    untitled = [name for name in available_methods() if not get_method(name).title]
    assert not untitled, f"registered without a title: {untitled}"
    assert len(set(titles.values())) == len(titles)
    assert titles["kcenter"] == "k-Center Greedy" and titles["qdiverse"] == "Q-Diverse"
    assert all("extension" in titles[n] for n in ("qdiverse_density", "qdiverse_qdpp"))
    assert method_label("kcenter") == "k-Center Greedy" and method_label("full") == "Full"
    assert method_label("qdiverse[gamma=0.7]") == "qdiverse[gamma=0.7]"
    assert method_label("kcenter", {"kcenter": "kCG"}) == "kCG"

"""qd_lib.metrics against scipy, with ties, invariances, the logistic fit and input checks."""
import warnings

import numpy as np
import pytest
from scipy import optimize, stats

from qd_lib import metrics
from qd_lib.metrics import (
    METRICS,
    ConstantInputWarning,
    FitWarning,
    compute_metrics,
    fit_logistic4,
    krcc,
    logistic4,
    plcc,
    plcc_logistic,
    rmse,
    srcc,
)
from qd_lib.utils.errors import UnknownNameError


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    return x, 2.0 * x + rng.normal(scale=0.7, size=200)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agree_with_scipy_including_ties(seed):
    rng = np.random.default_rng(seed)
    pred = rng.integers(0, 6, size=80).astype(float)  # many ties
    mos = pred + rng.integers(0, 4, size=80)  # ties too
    assert srcc(pred, mos) == pytest.approx(stats.spearmanr(pred, mos).statistic, abs=1e-12)
    assert plcc(pred, mos) == pytest.approx(stats.pearsonr(pred, mos).statistic, abs=1e-12)
    assert krcc(pred, mos) == pytest.approx(stats.kendalltau(pred, mos).statistic, abs=1e-12)
    assert rmse(pred, mos) == pytest.approx(np.sqrt(np.mean((pred - mos) ** 2)))


def test_tied_ranks_are_averaged():
    # with average ranks [1.5, 1.5, 3, 4] vs [1, 2, 3, 4]: r = 0.9486832980505138
    assert srcc([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486832980505138)
    assert srcc([1, 2, 3, 4], [1, 2, 3, 4]) == 1.0


def test_rank_metrics_are_invariant_to_monotone_maps_and_plcc_to_affine(pair):
    x, y = pair
    for f in (np.exp, lambda v: v ** 3, lambda v: 5 * v - 2):
        assert srcc(f(x), y) == pytest.approx(srcc(x, y), abs=1e-12)
        assert krcc(f(x), y) == pytest.approx(krcc(x, y), abs=1e-12)
    assert plcc(3.5 * x + 7, y) == pytest.approx(plcc(x, y), abs=1e-12)
    assert plcc(np.exp(x), y) != pytest.approx(plcc(x, y), abs=1e-3)  # not a monotone invariant
    # signs are never flipped silently
    assert srcc(-x, y) == pytest.approx(-srcc(x, y), abs=1e-12)
    assert plcc(-x, y) == pytest.approx(-plcc(x, y), abs=1e-12)


def test_logistic_fit_recovers_a_nonlinear_mapping():
    rng = np.random.default_rng(3)
    x = rng.uniform(-4, 4, 300)
    y = logistic4(x, 5.0, 1.0, 0.5, 0.8) + rng.normal(scale=0.05, size=300)
    params = fit_logistic4(x, y)
    assert params is not None
    assert params[:3] == pytest.approx([5.0, 1.0, 0.5], abs=0.1)
    assert abs(params[3]) == pytest.approx(0.8, abs=0.1)
    assert plcc_logistic(x, y) > plcc(x, y) + 0.02
    assert plcc_logistic(x, y) == pytest.approx(
        stats.pearsonr(logistic4(x, *params), y).statistic, abs=1e-12)
    assert rmse(x, y, fit="logistic") < 0.1 < rmse(x, y)


def test_logistic_fit_failure_gives_nan_and_a_warning(monkeypatch, pair):
    def boom(*args, **kwargs):
        raise RuntimeError("Optimal parameters not found: maxfev reached")

    monkeypatch.setattr(metrics.optimize, "curve_fit", boom)
    with pytest.warns(FitWarning, match="logistic fit failed"):
        assert np.isnan(plcc_logistic(*pair))
    with pytest.warns(FitWarning):
        assert np.isnan(rmse(*pair, fit="logistic"))
    assert optimize.curve_fit is boom  # the module attribute was patched, nothing else


def test_logistic_fit_on_fewer_than_four_points_gives_nan_and_a_warning():
    with pytest.warns(FitWarning, match="at least 4 points, got 3"):
        assert np.isnan(plcc_logistic([0.1, 0.5, 0.9], [1.0, 2.5, 4.0]))
    with pytest.warns(FitWarning, match="at least 4 points, got 2"):
        assert np.isnan(rmse([0.1, 0.9], [1.0, 4.0], fit="logistic"))


def test_constant_inputs_give_nan_with_a_warning():
    for func in (srcc, plcc, krcc, plcc_logistic):
        with pytest.warns(ConstantInputWarning, match="constant"):
            assert np.isnan(func([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    assert rmse([1.0, 1.0], [1.0, 3.0]) == pytest.approx(np.sqrt(2.0))


@pytest.mark.parametrize("pred, mos, message", [
    ([1.0, 2.0, 3.0], [1.0, 2.0], r"same length.*3 predictions and 2 MOS"),
    ([1.0, np.nan, 3.0], [1.0, 2.0, 3.0], r"'pred'.*finite.*position 1"),
    ([1.0, 2.0], [np.inf, 2.0], r"'mos'.*finite.*position 0"),
    ([1.0], [2.0], r"At least 2 points"),
    ([], [], r"At least 2 points"),
    (np.ones((2, 2)), [1.0, 2.0], r"'pred'.*1-D"),
])
def test_bad_inputs_raise_clear_errors(pred, mos, message):
    for func in (srcc, plcc, plcc_logistic, krcc, rmse, compute_metrics):
        with pytest.raises(ValueError, match=message):
            func(pred, mos)


def test_rmse_option_and_column_vectors():
    with pytest.raises(ValueError, match="'fit' parameter"):
        rmse([1, 2], [1, 2], fit="cubic")
    assert plcc(np.array([[1.0], [2.0], [4.0]]), [1.0, 2.0, 3.0]) == pytest.approx(
        stats.pearsonr([1, 2, 4], [1, 2, 3]).statistic)


def test_compute_metrics_returns_every_metric(pair):
    out = compute_metrics(*pair)
    assert list(out) == list(METRICS)
    assert out["srcc"] == pytest.approx(srcc(*pair))
    assert METRICS["rmse"].higher_is_better is False
    with pytest.raises(UnknownNameError, match="Did you mean"):
        compute_metrics(*pair, names=("srocc",))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # compute_metrics logs warnings instead of raising them
        nan_out = compute_metrics([1.0, 1.0, 1.0], [1.0, 2.0, 3.0], names=("srcc", "rmse"))
    assert np.isnan(nan_out["srcc"]) and nan_out["rmse"] > 0

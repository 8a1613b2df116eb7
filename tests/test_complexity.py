"""Q-Diverse complexity measurement: the timed stages are the selector's, the fit is NNLS."""
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from qd_lib.analysis.complexity import (
    EQ7_TERMS,
    PRESETS,
    STAGES,
    fit_complexity,
    fit_terms,
    run_complexity,
    synthetic_features,
    time_batch,
    time_configuration,
    timing_design,
    write_complexity,
)
from qd_lib.selection.methods.qdiverse.backends import NUMPY
from qd_lib.selection.methods.qdiverse.options import resolve_options
from qd_lib.selection.methods.qdiverse.pipeline import select_in_batch


@pytest.mark.parametrize("options", [{}, {"landmarks": "kmeans++", "first_pick": "max_degree"},
                                     {"gamma": 1.0, "drop_leading": True}])
def test_timed_batch_picks_what_the_selector_picks(options):
    Xc, Xq = synthetic_features(240, 24, seed=1)
    o, _ = resolve_options({"n_landmarks": 60, **options})
    timed = time_batch(Xc, Xq, 25, np.random.default_rng(5), o)
    reference = select_in_batch(Xc, Xq, 25, np.random.default_rng(5), o, NUMPY)
    assert np.array_equal(timed["local"], reference["local"])
    assert timed["r"] == reference["r"] and timed["l"] == 60 and timed["computed"]
    assert set(timed["seconds"]) == set(STAGES) and all(v >= 0 for v in timed["seconds"].values())


def test_trivial_batches_compute_nothing():
    Xc, Xq = synthetic_features(30, 8)
    o, _ = resolve_options({})
    for budget, picks in ((0, 0), (30, 30)):
        out = time_batch(Xc, Xq, budget, np.random.default_rng(0), o)
        assert not out["computed"] and len(out["local"]) == picks
        assert sum(out["seconds"].values()) == 0


def test_configuration_terms_follow_the_batches():
    row = time_configuration(n=250, d=16, batch_size=100, n_landmarks=30, energy=0.9,
                             fraction=0.2, repeats=1)
    assert row["K"] == 3 and row["M"] == 50
    sizes = [100, 100, 50]
    assert row["Nb"] == sum(b * b for b in sizes)
    assert row["Nd"] == 250 * 16 and row["Kl3"] == 3 * 30 ** 3
    assert row["total"] == pytest.approx(sum(row[s] for s in STAGES))
    assert 1 <= row["r"] <= 30


def test_design_varies_one_quantity_at_a_time():
    grid = PRESETS["toy"]
    configs = timing_design(grid)
    center = dict(grid.center)
    assert configs[0] == {**center, "axis": "center"}
    for config in configs[1:]:
        axis = config.pop("axis")
        changed = {k for k in center if config[k] != center[k]}
        assert changed == {axis}


def test_nnls_recovers_known_coefficients():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({t: rng.uniform(1, 100, 40) * 10.0 ** rng.integers(0, 6)
                          for t in EQ7_TERMS})
    truth = {"Nd": 1e-6, "Nb": 3e-8, "Nlr": 0.0, "Kl3": 2e-9, "N2r_K": 5e-10, "NM2_K2": 0.0}
    frame["total"] = sum(c * frame[t] for t, c in truth.items())
    fit = fit_terms(frame, EQ7_TERMS, "total")
    assert fit["r2"] == pytest.approx(1.0)
    for term, value in truth.items():
        assert fit["coef"][term] == pytest.approx(value, rel=1e-6, abs=1e-15)
    noisy = frame.assign(total=frame["total"] * rng.uniform(0.5, 1.5, len(frame)))
    assert 0 < fit_terms(noisy, EQ7_TERMS, "total")["r2"] < 1


def test_toy_run_writes_fit_json(tmp_path):
    grid = dataclasses.replace(PRESETS["toy"], axes={"n": (200, 800), "fraction": (0.3,)})
    timings = run_complexity(grid)
    fit = fit_complexity(timings)
    files = write_complexity(fit, grid, folder=tmp_path, seconds=1.0)
    record = json.loads((tmp_path / "fit.json").read_text())
    assert set(record["terms"]) == set(EQ7_TERMS)
    assert all(record["terms"][t]["coef"] >= 0 for t in EQ7_TERMS)
    assert np.isfinite(record["r2"]) and record["r2"] <= 1 and record["n_points"] == 4
    assert set(record["stages"]) == set(STAGES)
    assert {"png", "pdf", "json", "fit"} <= set(files)
    assert (tmp_path / "timings.csv").is_file()


def test_extensions_are_refused():
    Xc, Xq = synthetic_features(40, 8)
    o, _ = resolve_options({})
    o["extension"] = "quality_dpp"
    with pytest.raises(ValueError, match="'extension'"):
        time_batch(Xc, Xq, 5, np.random.default_rng(0), o)

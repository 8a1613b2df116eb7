from fractions import Fraction

import pytest

from qd_lib.data import coreset_size, resolve_budget

FRACTIONS = (0.01, 0.05, 0.10, 0.30, 0.50, 0.70, 0.90, 0.95)
# Supplement Table 1: the "Full" training size and the coreset size at each fraction.
TABLE_1 = {
    "KADID-10K": (7086, (70, 354, 708, 2125, 3543, 4960, 6377, 6731)),
    "TID2013": (2099, (20, 104, 209, 629, 1049, 1469, 1889, 1994)),
    "KonIQ-10k": (7051, (70, 352, 705, 2115, 3525, 4935, 6345, 6698)),
    "SPAQ": (7787, (77, 389, 778, 2336, 3893, 5450, 7008, 7397)),
    "AGIQA-3K": (2086, (20, 104, 208, 625, 1043, 1460, 1877, 1981)),
    "PIPAL": (20880, (208, 1044, 2088, 6264, 10440, 14616, 18792, 19836)),
    "FLIVE": (27866, (278, 1393, 2786, 8359, 13933, 19506, 25079, 26472)),
}


@pytest.mark.parametrize("dataset", sorted(TABLE_1))
def test_table1_coreset_sizes(dataset):
    full, sizes = TABLE_1[dataset]
    assert [coreset_size(full, f) for f in FRACTIONS] == list(sizes)


def test_exact_arithmetic_beats_float_floor():
    # int(0.7 * 20880) is 14615 in floating point; the exact answer is 14616.
    assert int(0.7 * 20880) == 14615
    assert coreset_size(20880, 0.7) == 14616
    assert coreset_size(100, Fraction(29, 100)) == 29 and coreset_size(100, 0.29) == 29
    assert coreset_size(10, 1) == 10 and coreset_size(10, "0.5") == 5


@pytest.mark.parametrize("fraction", [0, -0.1, 1.01, float("nan"), float("inf")])
def test_fraction_outside_unit_interval_rejected(fraction):
    with pytest.raises(ValueError, match="'fraction'"):
        coreset_size(100, fraction)


def test_bad_types_and_empty_coreset():
    with pytest.raises(TypeError, match="'fraction'"):
        coreset_size(100, None)
    with pytest.raises(TypeError, match="'n_train'"):
        coreset_size(10.5, 0.5)
    with pytest.raises(ValueError, match="empty coreset"):
        coreset_size(50, 0.01)


def test_resolve_budget_counts_and_fractions():
    assert resolve_budget(7086, 70) == 70
    assert resolve_budget(7086, 0.01) == 70
    assert resolve_budget(10, 0) == 0
    with pytest.raises(ValueError, match=r"'budget'.*\[0, 10\].*Got 11"):
        resolve_budget(10, 11)
    with pytest.raises(ValueError, match="'budget'"):
        resolve_budget(10, -1)


# -- the one fraction format ---------------------------------------------------------------------
def test_format_fraction_never_collides_and_keeps_two_decimals():
    from qd_lib.data import format_fraction, fraction_label

    fractions = [0.005, 0.01, 0.015, 0.05, 0.1, 0.125, 0.3, 0.95, 1.0]
    texts = [format_fraction(f) for f in fractions]
    assert texts == ["0.005", "0.01", "0.015", "0.05", "0.10", "0.125", "0.30", "0.95", "1.00"]
    assert len(set(texts)) == len(texts)
    assert [float(t) for t in texts] == fractions
    assert [fraction_label(f) for f in (0.005, 0.015, 0.07, 0.1, 1)] == [
        "0.5%", "1.5%", "7%", "10%", "100%"]
    with pytest.raises(ValueError, match="'fraction'"):
        format_fraction(0)


def test_selection_and_run_ids_use_the_same_fraction_format():
    from qd_lib.data import format_fraction
    from qd_lib.runner import RunSpec
    from qd_lib.selection.records import selection_run_id

    ids = {selection_run_id("proxy-tiny", "offline", "random", f, 0, {})
           for f in (0.005, 0.01, 0.015)}
    assert len(ids) == 3  # two decimals would give f0.01 three times
    for f in (0.005, 0.015, 0.1):
        tag = f"__f{format_fraction(f)}__"
        assert tag in RunSpec(dataset="proxy-tiny", method="random", fraction=f).run_id
        assert tag in selection_run_id("proxy-tiny", "offline", "random", f, 0, {})

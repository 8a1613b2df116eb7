import numbers
import os

import numpy as np
import pytest

from qd_lib.utils import UnknownNameError, atomic_write_json, atomic_write_text
from qd_lib.utils.validation import check_array_2d, check_option, check_random_state, check_scalar


def test_check_scalar_messages_follow_sklearn_wording():
    with pytest.raises(ValueError, match=r"The 'energy' parameter must be a float in the range "
                                         r"\(0\.0, 1\.0\]\. Got 1\.5 instead\."):
        check_scalar(1.5, "energy", numbers.Real, min_val=0.0, max_val=1.0, closed="right")
    with pytest.raises(TypeError, match=r"'n' parameter must be an instance of Integral.*True"):
        check_scalar(True, "n", numbers.Integral)
    assert check_scalar(3, "n", numbers.Integral, min_val=1) == 3
    with pytest.raises(ValueError, match="'x'.*finite"):
        check_scalar(float("nan"), "x", numbers.Real)


def test_option_random_state_and_arrays():
    with pytest.raises(ValueError, match=r"'mode' parameter must be one of \['a', 'b'\]\. Got 'c'"):
        check_option("c", "mode", ("a", "b"))
    assert check_random_state(3).integers(1000) == np.random.default_rng(3).integers(1000)
    with pytest.raises(ValueError, match="non-negative"):
        check_random_state(-1)
    with pytest.raises(TypeError, match="'seed'"):
        check_random_state("x")
    with pytest.raises(ValueError, match="row 1 holds NaN"):
        check_array_2d([[0.0, 1.0], [np.nan, 2.0]])
    with pytest.raises(ValueError, match="2-D"):
        check_array_2d(np.zeros(3))
    mm = np.zeros((4, 2), np.float32)
    assert check_array_2d(mm) is mm


def test_unknown_name_suggests_close_matches():
    err = UnknownNameError("selection method", "kcentre", ["kcenter", "herding"])
    assert "Did you mean ['kcenter']" in str(err) and isinstance(err, KeyError)


def test_atomic_writes_leave_nothing_half_written(tmp_path):
    path = atomic_write_json(tmp_path / "sub" / "r.json", {"b": 1, "a": np.int64(2)})
    assert path.read_text() == '{\n  "a": 2,\n  "b": 1\n}\n'
    atomic_write_text(path, "new")
    assert path.read_text() == "new"

    class Boom:
        def __str__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_write_json(path, {"x": Boom()})
    assert path.read_text() == "new"
    assert os.listdir(tmp_path / "sub") == ["r.json"]


def test_machine_record_reads_the_cpu_and_its_widest_vector_extension(tmp_path):
    from qd_lib.utils.machine import machine_label, machine_record

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC 7B13\n"
                       "flags\t\t: fpu sse4_2 avx avx2 fma\n\nprocessor\t: 1\n")
    record = machine_record(str(cpuinfo))
    assert record["cpu"] == "AMD EPYC 7B13" and record["simd"] == "avx2"
    assert record["usable_cpus"] >= 1
    assert machine_label(record) == f"AMD EPYC 7B13, avx2, {record['usable_cpus']} cores"
    # no cpuinfo (another OS): the platform's name, and no vector extension claimed
    elsewhere = machine_record(str(tmp_path / "absent"))
    assert elsewhere["cpu"] and elsewhere["simd"] is None
    assert machine_label(None) is None and machine_label({"cpu": None}) is None

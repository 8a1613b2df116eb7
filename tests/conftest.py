"""Shared fixtures. Progress bars are off in tests (``TQDM_DISABLE``)."""
import os

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pandas as pd
import pytest

from qd_lib.data import DatasetInfo, Manifest


@pytest.fixture(scope="session")
def tiny_bench():
    """The ``tiny`` proxy benchmark at its default location (built once, then reused)."""
    from qd_lib.data.synthetic import build_proxy_benchmark

    return build_proxy_benchmark("tiny")


@pytest.fixture
def one_torch_thread():
    """One intra-op torch thread: tests check results, not speed, and multi-threaded torch
    stalls badly when other processes share the cores. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


class KilledBetweenEpochs(BaseException):
    """A kill after a checkpoint was saved. A ``BaseException``, as a real kill is: the runner
    must not record it as a failed run, the process just ends."""


@pytest.fixture
def kill_after_first_checkpoint():
    """``arm(patch)``: the next checkpoint that training saves (through ``patch``, a
    ``monkeypatch`` or one of its contexts) is written, then the run is killed; returns the
    exception class to expect."""
    from qd_lib.training import loop as loop_module

    def arm(patch):
        original = loop_module._save_checkpoint

        def save_then_die(state, path):
            original(state, path)
            raise KilledBetweenEpochs(f"killed after epoch {state['epoch']}")

        patch.setattr(loop_module, "_save_checkpoint", save_then_die)
        return KilledBetweenEpochs

    return arm


@pytest.fixture
def small_table():
    """A valid 6-row manifest table with two split schemes."""
    return pd.DataFrame({
        "image_id": [f"I{i:02d}.png" for i in range(6)],
        "relpath": [f"images/I{i:02d}.png" for i in range(6)],
        "mos": [1.0, 2.5, 3.0, 4.5, 5.0, 2.0],
        "group": ["A", "A", "B", "B", "C", "C"],
        "split_paper": ["train", "train", "train", "val", "test", "test"],
        "split_content": ["train", "train", "val", "val", "test", "test"],
    })


@pytest.fixture
def small_info():
    return DatasetInfo(name="toy", mos_range=(1.0, 5.0))


@pytest.fixture
def small_manifest(small_table, small_info):
    return Manifest(small_table, small_info)

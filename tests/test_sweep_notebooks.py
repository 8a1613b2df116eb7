"""Sweeps through papermill: executed notebooks beside the records, and kill-safe reruns."""
import json
import os
import signal
import subprocess
import sys
import time

import nbformat
import psutil
import pytest
import yaml

from qd_lib.paths import repo_root
from qd_lib.runner import collect_runs, run_notebook, run_sweep
from qd_lib.runner.notebook import EXECUTED_NOTEBOOK, PARTIAL_NOTEBOOK
from qd_lib.runner.spec import SCHEMA_VERSION, RunSpec

pytestmark = pytest.mark.usefixtures("tiny_bench")

SWEEP = {"name": "nb", "datasets": ["proxy-tiny"], "model": "maniqa", "config": "tiny",
         "overrides": {"epochs": 1}, "fractions": [0.25], "seeds": [0],
         "features": {"source": "pixels"}}


def _outputs_text(path) -> str:
    nb = nbformat.read(path, 4)
    return "\n".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                     for out in cell.get("outputs", []))


def test_papermill_runs_keep_their_notebook_and_match_in_process_runs(tmp_path):
    sweep = {**SWEEP, "methods": ["kcenter", {"name": "moderate", "params": {"n_bins": 0}}]}
    report = run_sweep(sweep, runs_root=tmp_path / "nb", torch_threads=1)
    assert report.counts == {"ok": 1, "failed": 1, "skipped": 0}
    ok = next(r for r in report.records if r["status"] == "ok")
    failed = report.failed[0]
    for record in (ok, failed):  # the executed notebook is kept, also after a failure
        notebook = tmp_path / "nb" / record["run_id"] / EXECUTED_NOTEBOOK
        assert notebook.is_file() and record["executed_notebook"] == EXECUTED_NOTEBOOK
        assert not notebook.with_name(PARTIAL_NOTEBOOK).exists()
    assert "kcenter coreset of 28 / 112 training images" in _outputs_text(
        tmp_path / "nb" / ok["run_id"] / EXECUTED_NOTEBOOK)
    assert "n_bins" in failed["error"]["message"]
    # the notebook computes exactly what the in-process runner computes
    direct = run_sweep({**sweep, "methods": ["kcenter"]}, runs_root=tmp_path / "py",
                       executor="python", torch_threads=1)
    assert direct.records[0]["run_id"] == ok["run_id"]
    assert direct.records[0]["metrics"] == ok["metrics"]
    again = run_sweep(sweep, runs_root=tmp_path / "nb")  # finished skipped, failed redone
    assert again.counts == {"ok": 0, "failed": 1, "skipped": 1}


def test_a_notebook_that_never_records_is_recorded_as_failed(tmp_path):
    broken = tmp_path / "broken.ipynb"
    nb = nbformat.v4.new_notebook()
    names = ("SPEC", "RUNS_DIR", "DEVICE", "KEEP_CHECKPOINT", "TORCH_THREADS")
    declared = "\n".join(f"{name} = None" for name in names)
    nb.cells = [nbformat.v4.new_code_cell(declared, metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("raise SystemError('boom')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, broken)
    spec = RunSpec(method="random", fraction=0.25, **{k: SWEEP[k] for k in (
        "model", "config", "overrides", "features")}, dataset="proxy-tiny")
    run_dir = tmp_path / spec.run_id  # an earlier failure must not pass for this one
    run_dir.mkdir()
    (run_dir / "metrics.json").write_text(json.dumps({
        "schema_version": SCHEMA_VERSION, "run_id": spec.run_id, "spec_hash": spec.spec_hash,
        "status": "failed", "error": {"type": "X", "message": "OLD failure"}}))
    record = run_notebook(spec, runs_root=tmp_path, notebook=broken)
    assert record["status"] == "failed" and "boom" in record["error"]["message"]
    assert (tmp_path / spec.run_id / EXECUTED_NOTEBOOK).is_file()
    nb.cells[0].source = "\n".join(f"{name} = None" for name in names[:3])
    nbformat.write(nb, tmp_path / "undeclared.ipynb")
    with pytest.raises(ValueError, match=r"does not declare the parameters \['KEEP_CHECKPOINT', "
                                         r"'TORCH_THREADS'\]"):
        run_notebook(spec, runs_root=tmp_path / "u", notebook=tmp_path / "undeclared.ipynb")
    with pytest.raises(FileNotFoundError, match="'notebook' parameter"):
        run_notebook(spec, runs_root=tmp_path, notebook=tmp_path / "missing.ipynb")
    with pytest.raises(ValueError, match="executor"):
        run_sweep({**SWEEP, "methods": ["random"]}, runs_root=tmp_path, executor="shell")


@pytest.mark.slow
def test_a_killed_sweep_finishes_only_what_is_missing(tmp_path):
    runs = tmp_path / "runs"
    path = tmp_path / "kill.yaml"
    # four epochs, killed once the second run has checkpointed its first: the kernel (which
    # exits within about a second of its parent's death) is then surely mid-training
    path.write_text(yaml.safe_dump({**SWEEP, "name": "kill", "fractions": [0.25, 0.5],
                                    "methods": ["random", "kcenter"],
                                    "overrides": {"epochs": 4}}))
    env = dict(os.environ, TQDM_DISABLE="1", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "qd_lib.runner", "sweep", str(path), "--runs-dir", str(runs),
           "--threads", "1"]
    proc = subprocess.Popen(cmd, cwd=repo_root(), env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children: list = []
    try:  # kill the driver's process group while the second run is going
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            done = list(runs.glob("*/metrics.json"))
            started = [p for p in runs.glob("*/checkpoint.pt")
                       if not (p.parent / "metrics.json").exists()]
            if done and started:
                break
            assert proc.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.2)
        else:
            pytest.fail("the sweep never reached its second run")
        # the kernel runs in a session of its own (jupyter_client), so killpg does not reach
        # it: it must notice that its parent is gone and exit by itself
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "no kernel process under the sweep"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        _, alive = psutil.wait_procs(children, timeout=15)
        assert not alive, f"processes left running after the sweep was killed: {alive}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for child in children:
            if child.is_running():
                child.kill()
    finished_before = {p.parent.name for p in runs.glob("*/metrics.json")}
    interrupted = {p.parent.name for p in runs.glob("*/params.json")} - finished_before
    assert finished_before and interrupted  # killed mid-run: a folder without a record
    report = run_sweep(path, runs_root=runs, torch_threads=1)
    assert report.counts == {"ok": 4 - len(finished_before), "failed": 0,
                             "skipped": len(finished_before)}
    assert {r["run_id"] for r in report.records if r["skipped"]} == finished_before
    table = collect_runs(runs, sweep="kill")
    assert len(table) == 4 and (table["status"] == "ok").all()
    for run_dir in runs.iterdir():
        if run_dir.is_dir():
            assert (run_dir / EXECUTED_NOTEBOOK).is_file()
            assert not (run_dir / PARTIAL_NOTEBOOK).exists()
            assert json.loads((run_dir / "metrics.json").read_text())["status"] == "ok"


def test_notebook_04_refuses_spec_mixed_with_single_run_parameters():
    from qd_lib.runner import RunSpec, notebook_run_spec
    from qd_lib.utils.errors import UnknownNameError

    spec = RunSpec(dataset="proxy-tiny", method="kcenter", fraction=0.25, features="pixels")
    assert notebook_run_spec(spec.to_dict()) == spec
    assert notebook_run_spec(None, method="kcenter", fraction=0.25) == spec
    default = notebook_run_spec(None)
    assert (default.method, default.fraction, default.features) == ("random", 0.5,
                                                                    {"set": "pixels"})
    with pytest.raises(ValueError, match=r"not both\. Got SPEC and \['epochs', 'method'\]"):
        notebook_run_spec(spec.to_dict(), method="random", epochs=3)
    with pytest.raises(UnknownNameError, match="notebook 04 parameter"):
        notebook_run_spec(None, fractions=0.1)

"""``benchmarks/gpu_check.py`` (``make gpu-check``): the tiny CPU mode writes a report whose
every figure names its device; failures, timeouts and the time budget are recorded, not fatal.

``make gpu-check-tiny`` (part of ``make test``) runs all five parts in the tiny CPU mode; here
the selection part runs end to end through the script, and the machinery is tested in-process.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402


def fabricated_report(**parts) -> dict:
    report = {"schema_version": 1, "mode": "full", "device": {"name": "GPU X (cuda:0)"},
              "versions": {"torch": "2", "cuda": "13"}, "host": {}, "budget_s": 420.0,
              "seconds": 400.0, "git": {"commit": "a" * 40}, "parts": parts}
    gpu_check.collect(report)
    report["summary"] = gpu_check.summary_lines(report)
    return report


def pair(method, n, numpy_s, device_s, same=True, near_ties=None):
    return {"method": method, "n": n, "dims": "512", "fraction": 0.1, "budget": n // 10,
            "numpy_s": numpy_s, "device_s": device_s, "speedup": numpy_s / device_s,
            "same_coreset": same, "overlap": 1.0 if same else 0.9, "near_ties": near_ties,
            "first_difference": None, "peak_device_memory_GiB": 1.5,
            "numpy_device": "CPU Y, numpy, 1 BLAS thread", "device": "GPU X (cuda:0)"}


@pytest.fixture(scope="module")
def tiny_selection_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu") / "report.json"
    env = {**os.environ, "TQDM_DISABLE": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"),
                           "--device", "cpu", "--tiny", "--parts", "selection", "--out",
                           str(out)], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=600)
    return proc, json.loads(out.read_text()) if out.is_file() else None


def test_tiny_selection_part_writes_a_device_labelled_report(tiny_selection_report):
    proc, report = tiny_selection_report
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert report is not None and report["problems"] == []
    assert set(gpu_check.REPORT_KEYS) <= set(report)
    assert report["mode"] == "tiny" and report["device"]["resolved"] == "cpu"
    assert set(report["parts"]) == {"selection"}
    assert report["parts"]["selection"]["status"] == "ok"
    assert re.fullmatch(r"[0-9a-f]{40}", report["git"]["commit"])
    assert report["versions"]["torch"] and report["host"]["cores"] >= 1
    torch_label = report["device"]["name"]
    assert "torch cpu" in torch_label
    sel = report["parts"]["selection"]
    cases = [c for c in sel["cases"] if c["status"] == "ok"]
    assert {(c["method"], c["n"], c["backend"]) for c in cases} == {
        (m, n, b) for m in ("qdiverse", "kcenter", "herding") for n in (2000, 6000)
        for b in ("numpy", "torch")}
    for c in cases:  # every figure names where it was measured
        assert c["device"] == (torch_label if c["backend"] == "torch" else gpu_check.numpy_label())
    assert all(f["device"] and f["part"] == "selection" for f in report["figures"])
    assert len(sel["pairs"]) == 6 and all(p["same_coreset"] for p in sel["pairs"])
    speed = report["qdiverse_speedup"]
    assert speed["n"] == 2000 and speed["value"] > 0 and speed["device"] == torch_label
    assert report["qdiverse_speedup_100k"] is None  # tiny sizes: no 100k figure
    assert report["checks"]["selection_exact_where_proven"] is True
    text = "\n".join(report["summary"])
    assert "qdiverse N=2,000 d=16+16 10%" in text and torch_label in text
    assert report["summary"][0] in proc.stdout


def test_collect_takes_the_qdiverse_speedup_at_100k_and_judges_the_pairs():
    sel = {"status": "ok", "figures": [{"device": "GPU X (cuda:0)", "measure": "s"}],
           "cases": [], "pairs": [pair("qdiverse", 100_000, 30.0, 1.5),
                                  pair("kcenter", 100_000, 8.0, 0.5, same=False, near_ties=3),
                                  pair("herding", 100_000, 9.0, 0.3)]}
    report = fabricated_report(selection=sel)
    assert report["qdiverse_speedup_100k"] == pytest.approx(20.0)
    assert report["checks"]["selection_same_coreset"]["kcenter@100000"] is False
    # a k-Center difference with flagged near ties is within the documented tie rule
    assert report["checks"]["selection_exact_where_proven"] is True
    sel["pairs"][2]["same_coreset"] = False  # Herding is exact on every device
    assert fabricated_report(selection=sel)["checks"]["selection_exact_where_proven"] is False
    sel["pairs"][2]["same_coreset"] = True
    sel["pairs"][1]["near_ties"] = 0  # a difference the bound cannot explain
    assert fabricated_report(selection=sel)["checks"]["selection_exact_where_proven"] is False
    text = "\n".join(report["summary"])
    assert "qdiverse_speedup_100k = 20.00" in text and "DIFFERENT coreset" in text


def test_validate_report_flags_unlabelled_figures_and_an_unknown_commit():
    report = fabricated_report(train={"status": "ok", "figures": [
        {"model": "maniqa", "config": "paper", "measure": "train_step", "img_s": 1.0,
         "batch_size": 8, "amp": "bfloat16", "device": "GPU X (cuda:0)"}]})
    assert gpu_check.validate_report(report) == []
    report["figures"][0]["device"] = ""
    report["git"]["commit"] = None
    report["parts"]["extract"] = {"status": "ok", "figures": []}
    problems = gpu_check.validate_report(report)
    assert any("names no device" in p for p in problems)
    assert any("commit is unknown" in p for p in problems)
    assert any("'extract' ran but has no figures" in p for p in problems)
    del report["qdiverse_speedup_100k"]
    assert "missing key 'qdiverse_speedup_100k'" in gpu_check.validate_report(report)


def _raises(cfg):
    raise RuntimeError("CUDA error: an illegal memory access was encountered")


def _partial_then_hang(cfg):
    gpu_check._emit(cfg, {"cases": [{"method": "qdiverse", "seconds": 1.0}]})
    time.sleep(600)


def test_a_failed_or_stopped_part_is_recorded_with_what_it_measured(tmp_path, monkeypatch):
    monkeypatch.setitem(gpu_check.PART_FUNCS, "train", _raises)
    monkeypatch.setitem(gpu_check.PART_FUNCS, "selection", _partial_then_hang)
    ctx = multiprocessing.get_context("fork")  # the children see the patched functions

    def cfg(name):
        return gpu_check.Config(device="cpu", tiny=False, work=str(tmp_path), photos_dir=None,
                                result_path=str(tmp_path / f"{name}.json"))

    failed = gpu_check.run_part("train", cfg("train"), 60, ctx)
    assert failed["status"] == "failed" and "illegal memory access" in failed["error"]
    assert "RuntimeError" in failed["traceback"]
    start = time.perf_counter()
    stopped = gpu_check.run_part("selection", cfg("selection"), 8, ctx)
    assert time.perf_counter() - start < 30
    assert stopped["status"] == "timeout" and "stopped after 8 s" in stopped["error"]
    assert stopped["cases"] == [{"method": "qdiverse", "seconds": 1.0}]  # kept


def test_parts_that_would_exceed_the_budget_are_skipped_with_a_note(tmp_path):
    out = tmp_path / "report.json"
    code = gpu_check.main(["--device", "cpu", "--tiny", "--budget-s", "1", "--parts",
                           "selection", "smoke", "--out", str(out), "--commit", "b" * 40])
    report = json.loads(out.read_text())
    assert code == 1  # nothing ran: not a passing check
    assert {p["status"] for p in report["parts"].values()} == {"skipped"}
    assert all("time budget" in p["note"] for p in report["parts"].values())
    assert report["git"] == {**report["git"], "commit": "b" * 40, "source": "given"}


def test_cuda_asked_for_where_there_is_none_names_the_device(monkeypatch, capsys, tmp_path):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--device", "cuda", "--out", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert "'device'" in err and "CUDA is not available" in err and "'cuda'" in err
    assert not (tmp_path / "r.json").exists()
    assert gpu_check.resolve_check_device("auto") == "cpu"


def test_selection_plan_runs_the_headline_pair_first_and_host_cases_last():
    plan = gpu_check._selection_plan((100_000, 1_000_000))
    assert plan[:2] == [(100_000, "qdiverse", "torch"), (100_000, "qdiverse", "numpy")]
    assert len(plan) == len(set(plan)) == 12
    first_host = min(i for i, (_, _, b) in enumerate(plan[2:], 2) if b == "numpy")
    assert all(b == "torch" for _, _, b in plan[2:first_host])
    assert plan[-1] == (1_000_000, "herding", "numpy")
    assert gpu_check._scale("qdiverse", 1_000_000, 100_000, 100_000, 10_000) == 10
    assert gpu_check._scale("kcenter", 1_000_000, 10_000, 100_000, 1_000) == 100

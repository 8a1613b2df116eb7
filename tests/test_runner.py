"""Runner: run records, resumable sweeps (locally, on a fake client and on Dask), tables."""
import json

import numpy as np
import pandas as pd
import pytest
import yaml

from qd_lib.runner import (
    SCHEMA_VERSION,
    RunRecordError,
    RunSpec,
    collect_runs,
    expand,
    format_table,
    migrate_legacy_run,
    run_experiment,
    run_sweep,
    save_table,
    summarise,
)
from qd_lib.runner.__main__ import main as cli_main
from qd_lib.utils.errors import UnknownNameError

TINY = dict(dataset="proxy-tiny", model="maniqa", config="tiny", overrides={"epochs": 1},
            features="pixels")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def finished(tiny_bench, tmp_path_factory):
    """One finished tiny run (shared by the record tests)."""
    root = tmp_path_factory.mktemp("runs")
    spec = RunSpec(method="kcenter", fraction=0.25, seed=0, **TINY)
    return root, spec, run_experiment(spec, runs_root=root)


def test_run_ids_and_spec_hashes():
    spec = RunSpec(method="random", fraction=0.1, seed=2, **TINY)
    assert spec.run_id.startswith("proxy-tiny__maniqa-tiny__random__f0.10__s2__")
    assert spec.run_id.endswith(spec.spec_hash[:6])
    same = RunSpec(method="random", fraction=0.1, seed=2, sweep="other", root="/elsewhere", **TINY)
    assert same.spec_hash == spec.spec_hash  # name and root do not change the result
    for changed in (dict(seed=3), dict(fraction=0.2), dict(method_params={"x": 1}),
                    dict(overrides={"epochs": 2}), dict(features={"source": "encoders"})):
        kwargs = {**TINY, "method": "random", "fraction": 0.1, "seed": 2, **changed}
        assert RunSpec(**kwargs).spec_hash != spec.spec_hash
    assert RunSpec(method="full", fraction=0.3, **TINY).fraction == 1.0
    assert RunSpec(method="random", fraction=0.1, **TINY).features == {"set": "pixels"}
    assert RunSpec(method="random", fraction=0.1, seed=2, **{**TINY, "features": {
        "source": "pixels"}}).spec_hash == spec.spec_hash  # an old sweep file's spelling
    with pytest.raises(ValueError, match="'fraction' parameter"):
        RunSpec(method="random", fraction=1.5, **TINY)


def test_run_writes_its_records(finished, tiny_bench):
    root, spec, record = finished
    run_dir = root / spec.run_id
    assert {p.name for p in run_dir.iterdir()} == {"params.json", "selection.json",
                                                   "metrics.json", "predictions.csv"}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    m = tiny_bench.manifest
    assert metrics["status"] == "ok" and metrics["schema_version"] == SCHEMA_VERSION
    assert metrics["spec_hash"] == spec.spec_hash
    assert metrics["test_split_hash"] == m.split_hash("paper", "test")
    assert metrics["n_test"] == len(m.split_indices("paper", "test"))
    assert metrics["inference_policy"]["test_crops"] == "five_point"
    assert metrics["epoch_rule"] == "final" and metrics["plcc_variant"] == "raw"
    assert {"torch", "numpy", "timm"} <= set(metrics["versions"]) and "git_commit" in metrics
    assert set(metrics["metrics"]) >= {"srcc", "plcc", "plcc_logistic", "krcc", "rmse"}
    selection = json.loads((run_dir / "selection.json").read_text())
    train_ids = set(m.table["image_id"].to_numpy()[m.split_indices("paper", "train")])
    assert len(selection["image_ids"]) == selection["budget"] == 28  # floor(0.25 × 112)
    assert set(selection["image_ids"]) <= train_ids
    assert "pixels" in selection["features"]["label"]
    assert metrics["n_train"] == 28 and metrics["features"]["set"] == "pixels"


def test_finished_runs_are_skipped(finished):
    root, spec, record = finished
    path = root / spec.run_id / "metrics.json"
    before = path.stat().st_mtime_ns
    again = run_experiment(spec, runs_root=root)
    assert again["skipped"] and again["metrics"] == record["metrics"]
    assert path.stat().st_mtime_ns == before


def test_incompatible_run_folders_are_refused(finished, tmp_path):
    root, spec, _ = finished
    old = tmp_path / spec.run_id
    old.mkdir()
    record = json.loads((root / spec.run_id / "metrics.json").read_text())
    (old / "metrics.json").write_text(json.dumps({**record, "schema_version": 0}))
    with pytest.raises(RunRecordError, match=r"schema_version 0.*reads version 1.*--force"):
        collect_runs(tmp_path)
    with pytest.raises(RunRecordError, match="schema_version"):
        run_experiment(spec, runs_root=tmp_path)
    (old / "metrics.json").write_text("{not json")
    with pytest.raises(RunRecordError, match="cannot be read"):
        collect_runs(tmp_path)


def test_sweep_records_a_failure_and_carries_on(tiny_bench, tmp_path):
    sweep = {"name": "t", "datasets": ["proxy-tiny"], "model": "maniqa", "config": "tiny",
             "executor": "python", "features": "pixels",
             "overrides": {"epochs": 1}, "fractions": [0.2], "seeds": [0],
             "methods": ["random", {"name": "moderate", "params": {"n_bins": 0}}]}
    report = run_sweep(sweep, runs_root=tmp_path)
    assert report.counts == {"ok": 1, "failed": 1, "skipped": 0}
    failed = report.failed[0]
    stored = json.loads((tmp_path / failed["run_id"] / "metrics.json").read_text())
    assert stored["status"] == "failed" and "n_bins" in stored["error"]["message"]
    again = run_sweep(sweep, runs_root=tmp_path)  # the finished run is skipped, the failed redone
    assert again.counts == {"ok": 0, "failed": 1, "skipped": 1}
    assert collect_runs(tmp_path)["method"].tolist() == ["random"]
    assert len(collect_runs(tmp_path, status=None)) == 2
    lines = (tmp_path / "index.jsonl").read_text().splitlines()
    assert [json.loads(x)["status"] for x in lines] == ["ok", "failed", "failed"]


def test_sweep_files_expand_and_validate(tmp_path):
    path = tmp_path / "s.yaml"
    sweep = {"datasets": ["proxy-tiny"], "model": "maniqa", "config": "tiny",
             "fractions": [0.1, 0.2], "seeds": [0, 1],
             "methods": ["random", {"name": "qdiverse", "params": {"gamma": 0.7}}, "full"]}
    path.write_text(yaml.safe_dump(sweep))
    specs = expand(path)
    assert len(specs) == 2 * 2 * 2 + 2  # full runs ignore the fractions
    assert {s.sweep for s in specs} == {"s"}
    assert specs[4].method_params == {"gamma": 0.7}
    for bad, kind in ((dict(methods=["kcentre"]), "kcenter"), (dict(config="tinny"), "tiny"),
                      (dict(model="maniq"), "maniqa"), (dict(seed=[0]), "seeds"),
                      (dict(methods=[{"name": "qdiverse", "params": {"gama": 1}}]), "gamma"),
                      (dict(features={"set": "pixel"}), "pixels")):
        with pytest.raises(UnknownNameError, match=rf"Did you mean \[.*'{kind}'"):
            expand({**sweep, **bad})


def test_sweeps_over_several_models():
    sweep = {"datasets": ["proxy-tiny"], "fractions": [0.1], "methods": ["random", "full"],
             "overrides": {"epochs": 1},
             "models": ["musiq/tiny", {"model": "maniqa", "config": "tiny",
                                       "overrides": {"epochs": 2}}]}
    specs = expand(sweep)
    assert [(s.model, s.config, s.method, s.overrides["epochs"]) for s in specs] == [
        ("musiq", "tiny", "random", 1), ("musiq", "tiny", "full", 1),
        ("maniqa", "tiny", "random", 2), ("maniqa", "tiny", "full", 2)]
    with pytest.raises(ValueError, match="either 'model' and 'config' or 'models'"):
        expand({**sweep, "model": "maniqa"})
    with pytest.raises(UnknownNameError, match="models entry key"):
        expand({**sweep, "models": [{"model": "maniqa", "cfg": "tiny"}]})
    with pytest.raises(UnknownNameError, match="config"):
        expand({**sweep, "models": ["maniqa/tinny"]})
    with pytest.raises(ValueError, match="'model' and 'config'"):  # no silent default config
        expand({**sweep, "models": ["maniqa"]})
    for key in ("models", "datasets", "seeds", "methods"):
        with pytest.raises(ValueError, match=rf"'{key}' must not be empty"):
            expand({**sweep, key: []})


def test_cli_dry_run_and_table(finished, tmp_path, capsys):
    root, spec, _ = finished
    path = tmp_path / "one.yaml"
    path.write_text(yaml.safe_dump({"name": None, "datasets": ["proxy-tiny"],
                                    "model": "maniqa", "config": "tiny", "features": "pixels",
                                    "overrides": {"epochs": 1}, "fractions": [0.25],
                                    "seeds": [0], "methods": ["kcenter", "random"]}))
    assert cli_main(["sweep", str(path), "--dry-run", "--runs-dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"done  budget     28  {spec.run_id}" in out
    assert "new  budget     28  proxy-tiny__maniqa-tiny__random__f0.25" in out
    assert cli_main(["table", "--runs-dir", str(root), "--no-save"]) == 0
    out = capsys.readouterr().out
    assert "PROXY" in out and "| proxy-tiny | maniqa | tiny | 25% | kcenter |" in out


class FakeClient:
    """Runs submitted tasks at once; enough of dask's Client for run_sweep."""

    def __init__(self):
        self.keys = []

    def submit(self, func, *args, key=None, pure=True, **kwargs):
        self.keys.append(key)
        return func(*args, **kwargs)

    def gather(self, futures):
        return list(futures)


def test_sweep_on_a_client(tiny_bench, tmp_path):
    client = FakeClient()
    sweep = {"name": "d", "datasets": ["proxy-tiny"], "model": "maniqa", "config": "tiny",
             "executor": "python", "features": "pixels",
             "overrides": {"epochs": 1}, "fractions": [0.1], "seeds": [0, 1],
             "methods": ["random"]}
    report = run_sweep(sweep, runs_root=tmp_path, client=client)
    assert report.counts["ok"] == 2 and len(client.keys) == 2
    assert all(k.startswith("qd-run-proxy-tiny__") for k in client.keys)
    local = run_sweep(sweep, runs_root=tmp_path / "local")
    remote = {r["run_id"]: r["metrics"] for r in report.records}
    assert {r["run_id"]: r["metrics"] for r in local.records} == remote


@pytest.mark.slow
def test_sweep_on_a_local_dask_cluster(tiny_bench, tmp_path, monkeypatch):
    from dask.distributed import Client, LocalCluster

    # the offline feature set: nss extracts with loader workers in a plain process, and none
    # may be started inside a (daemonic) Dask worker; the driver prepares the caches first
    monkeypatch.setenv("QD_RUNS_DIR", str(tmp_path / "cache"))
    sweep = {"name": "dask", "datasets": ["proxy-tiny"], "model": "maniqa", "config": "tiny",
             "executor": "python", "features": "offline",
             "overrides": {"epochs": 1}, "fractions": [0.1], "seeds": [0, 1],
             "methods": ["random", "qdiverse"]}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        report = run_sweep(sweep, runs_root=tmp_path, client=client)
    assert report.counts == {"ok": 4, "failed": 0, "skipped": 0}, report.failed
    assert len(list((tmp_path / "cache" / "embeddings" / "proxy-tiny").glob("*.parts"))) == 0
    local = run_sweep(sweep, runs_root=tmp_path / "local")
    assert sorted(r["metrics"]["srcc"] for r in report.records) == sorted(
        r["metrics"]["srcc"] for r in local.records)


def _record(dataset, method, fraction, seed, srcc, split="h1", **extra):
    return {"run_id": f"{dataset}-{method}-{fraction}-{seed}", "dataset": dataset,
            "model": "maniqa", "config": "tiny", "method": method, "fraction": fraction,
            "seed": seed, "srcc": srcc, "plcc": srcc + 0.01, "n_test": 10,
            "test_split_hash": split, "inference_policy": "p", "epoch_rule": "final",
            "label_norm": "fixed_range", "plcc_variant": "raw", "proxy": True,
            "features": "pixels", **extra}


def test_summary_mean_std_over_seeds_and_bold_best(tmp_path):
    runs = pd.DataFrame([_record("a", "random", 0.1, s, v) for s, v in enumerate([0.5, 0.7])] +
                        [_record("a", "qdiverse", 0.1, s, v) for s, v in enumerate([0.8, 0.9])] +
                        [_record("a", "qdiverse", 0.3, 0, 0.95)])
    summary = summarise(runs)
    row = summary[(summary.method == "random")].iloc[0]
    assert row["srcc_mean"] == pytest.approx(0.6)
    assert row["srcc_std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert row["n_seeds"] == 2
    single = summary[(summary.fraction == 0.3)].iloc[0]
    assert single["n_seeds"] == 1 and np.isnan(single["srcc_std"])
    text = format_table(summary)
    assert "| a | maniqa | tiny | 10% | qdiverse | **0.8500 ± 0.0707** |" in text
    assert "| a | maniqa | tiny | 10% | random | 0.6000 ± 0.1414 |" in text
    paths = save_table(summary, "t", folder=tmp_path, runs=runs)
    assert all(p.is_file() for p in paths.values())
    provenance = json.loads(paths["json"].read_text())
    assert len(provenance["run_ids"]) == 5 and provenance["proxy"] is True


def test_summary_refuses_mixed_test_splits_and_policies():
    runs = pd.DataFrame([_record("a", "random", 0.1, 0, 0.5, split="h1"),
                         _record("a", "random", 0.1, 1, 0.6, split="h2")])
    with pytest.raises(RunRecordError, match="2 different test splits"):
        summarise(runs)
    runs = pd.DataFrame([_record("a", "random", 0.1, 0, 0.5),
                         _record("a", "random", 0.1, 1, 0.6, epoch_rule="best_on_test")])
    with pytest.raises(RunRecordError, match="differ in epoch_rule"):
        summarise(runs)
    with pytest.raises(ValueError, match="No runs"):
        summarise(pd.DataFrame())


def test_feature_sets_are_pluggable(tiny_bench):
    from qd_lib.data import open_dataset
    from qd_lib.features import FEATURE_SETS, FeatureSet, register_feature_set
    from qd_lib.runner import select_coreset

    register_feature_set(FeatureSet("test-swapped", "pixels.stats", "pixels", ("pixels.stats",),
                                    None, "pixel statistics with the roles swapped"))
    try:
        spec = RunSpec(method="herding", fraction=0.1, **{**TINY, "features": "test-swapped"})
        record = select_coreset(spec, open_dataset("proxy-tiny"))
        assert record["features"]["roles"] == {"embedding": "pixels.stats"}
        assert record["budget"] == 11
        with pytest.raises(ValueError, match="already registered"):
            register_feature_set(FEATURE_SETS["test-swapped"])
    finally:
        FEATURE_SETS.pop("test-swapped")


def test_dataset_aliases_resolve_before_hashing():
    canonical = RunSpec(method="random", fraction=0.1, **{**TINY, "dataset": "kadid10k"})
    for alias in ("kadid", "KADID-10K", "kadid-10k"):
        spec = RunSpec(method="random", fraction=0.1, **{**TINY, "dataset": alias})
        assert spec.dataset == "kadid10k" and spec.alias == alias
        assert spec.spec_hash == canonical.spec_hash and spec.run_id == canonical.run_id
        assert RunSpec.from_dict(spec.to_dict()) == spec
    assert RunSpec(method="random", fraction=0.1, **{**TINY, "dataset": "Proxy-Tiny"}).run_id \
        .startswith("proxy-tiny__")
    specs = expand({"datasets": ["kadid", "kadid10k"], "model": "maniqa", "config": "tiny",
                    "features": "pixels", "fractions": [0.1], "methods": ["random"]})
    assert len(specs) == 1  # one dataset, one run: never trained twice


def test_run_folders_of_earlier_ids_are_moved_to_the_current_id(finished, tmp_path, caplog):
    """A folder written when the dataset was hashed as given and the features spelled
    ``{source: pixels}`` holds the same run: it is found and moved, not trained again."""
    import shutil

    root, spec, record = finished
    alias = RunSpec(method=spec.method, fraction=spec.fraction, seed=spec.seed,
                    **{**TINY, "dataset": "PROXY-tiny"})
    legacy = alias.legacy_run_ids()
    assert len(legacy) == 2 and alias.run_id not in legacy  # as given, and canonical name
    old_id, old_hash = next((i, h) for i, h in legacy.items() if i.startswith("PROXY-tiny__"))
    shutil.copytree(root / spec.run_id, tmp_path / old_id)
    for name in ("params.json", "metrics.json"):  # as the earlier version wrote them
        path = tmp_path / old_id / name
        data = json.loads(path.read_text())
        data.update({"run_id": old_id, "spec_hash": old_hash})
        path.write_text(json.dumps(data))
    selection = json.loads((tmp_path / old_id / "selection.json").read_text())
    selection.update({"run_id": old_id, "spec_hash": old_hash})
    selection.pop("sha256")
    (tmp_path / old_id / "selection.json").write_text(json.dumps(selection))
    with caplog.at_level("WARNING"):
        again = run_experiment(alias, runs_root=tmp_path)
    assert again["skipped"] and again["metrics"] == record["metrics"]
    assert not (tmp_path / old_id).exists() and "moved run folder" in caplog.text
    moved = json.loads((tmp_path / spec.run_id / "metrics.json").read_text())
    assert moved["spec_hash"] == spec.spec_hash and moved["migrated_from"] == old_id
    assert migrate_legacy_run(alias, tmp_path) is None  # nothing left to move


def test_an_edited_run_coreset_is_never_trained_on(finished, tmp_path):
    import shutil

    root, spec, _ = finished
    shutil.copytree(root / spec.run_id, tmp_path / spec.run_id)
    (tmp_path / spec.run_id / "metrics.json").unlink()  # as if interrupted before the end
    path = tmp_path / spec.run_id / "selection.json"
    selection = json.loads(path.read_text())
    selection["image_ids"][0] = selection["image_ids"][-1]
    path.write_text(json.dumps(selection))
    record = run_experiment(spec, runs_root=tmp_path)
    assert record["status"] == "failed"
    assert "selection.json does not match its sha256" in record["error"]["message"]


@pytest.mark.parametrize("name", ["smoke", "demo", "proxy", "paper"])
def test_shipped_sweep_files_expand_and_validate(name):
    from qd_lib.paths import repo_root

    specs = expand(repo_root() / "notebooks" / "sweeps" / f"{name}.yaml")
    assert specs and {s.sweep for s in specs} == {name}
    if name in ("paper", "proxy"):  # Table 2's grid: 7 fractions x 7 methods + Full, 3 seeds
        assert {s.fraction for s in specs if s.method != "full"} == {
            0.05, 0.1, 0.3, 0.5, 0.7, 0.9, 0.95}
        assert {s.model for s in specs} == {"musiq", "maniqa"}
        assert len(specs) == 2 * len({s.dataset for s in specs}) * (7 * 7 + 1) * 3


def test_a_mean_over_seeds_never_mixes_settings(tmp_path):
    from qd_lib.runner.records import _settings
    from qd_lib.runner.tables import paper_table

    spec = RunSpec(method="random", fraction=0.1, **TINY).to_dict()
    rows = []
    for seed, epochs in ((0, 1), (1, 3)):  # same cell, different seeds AND different epochs
        settings = _settings({**spec, "seed": seed, "overrides": {"epochs": epochs}})
        rows.append(_record("a", "random", 0.1, seed, 0.5 + seed / 10, **settings))
    runs = pd.DataFrame(rows)
    for build in (summarise, lambda r: paper_table(r, model="maniqa")):
        with pytest.raises(RunRecordError, match=r"differ in more than their seed: "
                                                 r"\{'overrides': \['\{\"epochs\": 1\}', "
                                                 r"'\{\"epochs\": 3\}'\]\}"):
            build(runs)
    same = pd.DataFrame([_record("a", "random", 0.1, seed, 0.5, **_settings({**spec,
                                                                             "seed": seed}))
                         for seed in (0, 1)])
    assert summarise(same)["n_seeds"].tolist() == [2]  # seeds alone differ: averaged


def test_a_resumed_run_counts_the_time_of_its_earlier_attempts(
        tiny_bench, tmp_path, monkeypatch, kill_after_first_checkpoint):
    """A run stopped after its first epoch and resumed records what the whole run took (the
    first attempt's epoch included), and records written before that rule are read the same
    way; a run trained in one go keeps its own time."""
    from qd_lib.runner.records import run_seconds

    spec = RunSpec(method="random", fraction=0.25, seed=0,
                   **{**TINY, "overrides": {"epochs": 2}})
    with monkeypatch.context() as patch:
        killed = kill_after_first_checkpoint(patch)
        with pytest.raises(killed):
            run_experiment(spec, runs_root=tmp_path)
    record = run_experiment(spec, runs_root=tmp_path)
    assert record["status"] == "ok" and record["resumed_from_epoch"] == 1
    first_epoch = record["history"][0]["seconds"]
    assert first_epoch > 0
    assert record["seconds"] == pytest.approx(record["attempt_seconds"] + first_epoch, abs=2e-3)
    assert collect_runs(tmp_path)["seconds"].iloc[0] == record["seconds"]
    # an older record (no attempt_seconds, "seconds" of the last attempt only)
    old = {k: v for k, v in record.items() if k != "attempt_seconds"}
    old["seconds"] = record["attempt_seconds"]
    assert run_seconds(old) == pytest.approx(record["seconds"], abs=2e-3)
    assert run_seconds({"seconds": 5.0, "resumed_from_epoch": None,
                        "history": [{"epoch": 1, "seconds": 3.0}]}) == 5.0
    assert run_seconds({"seconds": None}) is None

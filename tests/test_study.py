"""The evidence study: paired statistics, runs.csv → summary.csv, diagnostics, figures."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from qd_lib.study.report import summarise_study, summary_markdown, variant_name
from qd_lib.study.stats import (
    MIN_PAIRS_FOR_VERDICT,
    bootstrap_ci,
    min_wilcoxon_p,
    paired_comparison,
    significance_marker,
)


def test_bootstrap_interval_covers_the_mean_and_is_reproducible():
    x = np.random.default_rng(0).normal(0.7, 0.05, 8)
    low, high = bootstrap_ci(x, seed=1)
    assert low < x.mean() < high and high - low < 0.1
    assert bootstrap_ci(x, seed=1) == (low, high)
    assert all(math.isnan(v) for v in bootstrap_ci([0.5]))
    with pytest.raises(ValueError, match="finite"):
        bootstrap_ci([0.5, float("nan")])
    with pytest.raises(ValueError, match="'confidence' parameter"):
        bootstrap_ci(x, confidence=1.0)


def test_expanded_interval_keeps_its_coverage_with_few_seeds():
    # six seeds, as in the study: the plain percentile interval of the mean is too narrow
    rng = np.random.default_rng(7)
    samples = rng.normal(0.0, 1.0, size=(600, 6))
    cover = {method: np.mean([low <= 0.0 <= high for low, high in (
        bootstrap_ci(x, method=method, seed=i) for i, x in enumerate(samples))])
        for method in ("percentile", "expanded")}
    # about 0.86 and 0.94 (2,000 samples); the nominal rate is 0.95
    assert cover["percentile"] < 0.90 and cover["expanded"] > 0.91
    x = samples[0]
    plain, expanded = bootstrap_ci(x, method="percentile"), bootstrap_ci(x)
    assert expanded[0] < plain[0] and plain[1] < expanded[1]
    # with three values the expanded interval is the range of the values
    assert bootstrap_ci([0.1, 0.2, 0.4]) == pytest.approx((0.1, 0.4))
    with pytest.raises(ValueError, match="'method' parameter"):
        bootstrap_ci(x, method="bca")


def test_paired_comparison_uses_the_pairs():
    base = np.array([0.60, 0.70, 0.65, 0.75, 0.62, 0.68])
    better = base + np.array([0.02, 0.03, 0.01, 0.02, 0.04, 0.02])  # always a bit better
    cmp = paired_comparison(better, base)
    assert cmp["diff_mean"] == pytest.approx(0.02333, abs=1e-4) and cmp["wins"] == 6
    assert cmp["diff_low"] > 0 and cmp["p_wilcoxon"] == pytest.approx(2 / 64)
    assert cmp["p_min"] == pytest.approx(2 / 64) and min_wilcoxon_p(5) == 0.0625
    assert significance_marker(cmp["diff_low"], cmp["diff_high"], cmp["p_wilcoxon"]) == "▲"
    # the same values unpaired would be hopeless: the spread between seeds is larger
    shuffled = paired_comparison(better, base[::-1])
    assert shuffled["diff_low"] < 0 < shuffled["diff_high"]
    assert significance_marker(-0.02, -0.01, 0.2) == "▽"
    assert significance_marker(-0.02, 0.01, 0.01) == ""
    # too few pairs for any marker: the same interval and p with five pairs give none
    assert significance_marker(cmp["diff_low"], cmp["diff_high"], cmp["p_wilcoxon"],
                               n_pairs=MIN_PAIRS_FOR_VERDICT) == "▲"
    assert significance_marker(cmp["diff_low"], cmp["diff_high"], cmp["p_wilcoxon"],
                               n_pairs=MIN_PAIRS_FOR_VERDICT - 1) == ""
    assert paired_comparison(base, base)["p_wilcoxon"] == 1.0
    with pytest.raises(ValueError, match="paired by seed"):
        paired_comparison(base, base[:3])


def _runs():
    rows = []
    rng = np.random.default_rng(3)
    for model in ("maniqa", "musiq"):
        for fraction in (0.05, 0.1):
            for seed in range(6):
                luck = rng.normal(0, 0.03)  # shared by every method of this seed
                for method, effect in (("random", 0.0), ("qdiverse", -0.05), ("herding", 0.0)):
                    srcc = 0.7 + fraction + effect + luck + rng.normal(0, 0.002)
                    rows.append({"dataset": "proxy-default", "model": model,
                                 "feature_set": "offline", "method": method,
                                 "fraction": fraction, "seed": seed, "srcc": srcc,
                                 "plcc": srcc + 0.01, "run_id": f"{model}-{method}-{fraction}-"
                                                                f"{seed}"})
    return pd.DataFrame(rows)


def test_summary_is_computed_from_the_runs_and_pairs_by_seed():
    runs = _runs()
    summary = summarise_study(runs)
    assert len(summary) == 2 * 2 * 3
    q = summary[(summary["method"] == "qdiverse") & (summary["model"] == "maniqa")
                & (summary["fraction"] == 0.1)].iloc[0]
    part = runs[(runs["model"] == "maniqa") & (runs["fraction"] == 0.1)]
    mean = part[part["method"] == "qdiverse"]["srcc"].mean()
    assert q["srcc_mean"] == pytest.approx(mean)
    assert q["srcc_diff"] == pytest.approx(mean - part[part["method"] == "random"]["srcc"].mean())
    assert q["srcc_diff_high"] < 0 and q["marker"] == "▼" and q["srcc_wins"] == 0
    assert q["n_pairs"] == 6 and q["srcc_p"] == pytest.approx(2 / 64)
    r = summary[summary["method"] == "random"].iloc[0]
    assert pd.isna(r.get("srcc_diff")) and r["n_seeds"] == 6
    text = summary_markdown(summary)
    assert "PROXY" in text and "| 10% | Q-Diverse | 6 |" in text and "▼" in text
    with pytest.raises(ValueError, match="share a cell and a seed"):
        summarise_study(pd.concat([runs, runs.iloc[:1]]))
    # one seed fewer: the same clear loss gets no marker, the table says why
    fewer = summarise_study(runs[runs["seed"] < MIN_PAIRS_FOR_VERDICT - 1])
    q5 = fewer[(fewer["method"] == "qdiverse") & (fewer["model"] == "maniqa")
               & (fewer["fraction"] == 0.1)].iloc[0]
    assert q5["srcc_diff_high"] < 0 and q5["n_pairs"] == 5 and q5["marker"] == ""
    assert f"no marker below {MIN_PAIRS_FOR_VERDICT} pairs" in summary_markdown(fewer)


def test_variants_carry_their_options_in_the_name():
    assert variant_name("qdiverse", {}) == "qdiverse"
    assert variant_name("qdiverse", {"gamma": 0.7, "batch_order": "shuffle"}) == \
        "qdiverse[batch_order=shuffle,gamma=0.7]"


def test_the_study_commands_end_to_end_on_the_tiny_sweep(tiny_bench, tmp_path, monkeypatch):
    """run → runs.csv/summary.csv (summary exactly what runs.csv says), a second run trains
    nothing, diagnostics and their correlation with SRCC, the README section from the files."""
    from qd_lib.paths import repo_root
    from qd_lib.study import commands
    from qd_lib.study.readme import BEGIN, END

    monkeypatch.setenv("QD_RUNS_DIR", str(tmp_path / "runs"))
    sweep = repo_root() / "notebooks" / "sweeps" / "study_tiny.yaml"
    out = tmp_path / "study"
    done = commands.run_missing([sweep], out)
    assert done["trained"] == 6 and done["failed"] == 0 and done["rows"] == 6
    runs = pd.read_csv(out / "runs.csv")
    assert set(runs["method"]) == {"random", "qdiverse", "kcenter"}
    assert runs["val_srcc"].notna().all() and (runs["epochs"] == 1).all()
    assert (out / "summary.csv").read_text() == commands.summary_from_runs(out)
    again = commands.run_missing([sweep], out)
    assert again["trained"] == 0 and again["held"] == 6
    # a fresh machine: no records under runs/, only the committed CSV; nothing is retrained
    monkeypatch.setenv("QD_RUNS_DIR", str(tmp_path / "fresh"))
    assert commands.run_missing([sweep], out)["trained"] == 0
    paths = commands.report([sweep], out)
    assert paths["srcc_vs_fraction"].is_file() and paths["paired_forest"].is_file()
    assert (f"- proxy-tiny: build {tiny_bench.manifest.content_hash[:8]}: 6 run(s)."
            in (out / "summary.md").read_text())
    assert len(pd.read_csv(out / "runs.csv")) == 6  # the committed rows survive
    diag = commands.diagnostics("proxy-tiny", out, seeds=2, fractions=[0.25],
                                feature_set="pixels")
    table = pd.read_csv(diag["diagnostics"])
    methods = json.loads((out / "diagnostics.json").read_text())["methods"]
    assert {"qdiverse", "random", "qdiverse_density"} <= set(methods)
    assert len(table) == len(methods) * 2 and set(table["seed"]) == {0, 1}
    # a method missing from the committed rows costs only its own selections when resumed
    table[table["method"] != "kcenter"].to_csv(diag["diagnostics"], index=False)
    measured = []
    real_measure = commands._measure
    monkeypatch.setattr(commands, "_measure", lambda name, entries, *a: (
        measured.append(list(entries)), real_measure(name, entries, *a))[1])
    commands.diagnostics("proxy-tiny", out, seeds=2, fractions=[0.25], feature_set="pixels")
    assert measured == [["kcenter"], ["kcenter"]]  # one round per seed (jobs=1)
    pd.testing.assert_frame_equal(pd.read_csv(diag["diagnostics"]).drop(columns="seconds"),
                                  table.drop(columns="seconds"), check_dtype=False)
    assert table["ks"].between(0, 1).all() and (table["covering_radius_content"] > 0).all()
    corr = pd.read_csv(diag["correlations"])
    # per trained setting (model, schedule, fraction), never pooled across SRCC scales
    assert "all" not in set(corr["model"]) and set(corr["fraction"]) == {0.25}
    assert corr["spearman"].between(-1, 1).all()
    assert corr["n_methods"].between(2, 3).all()
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\nintro\n")
    commands.write_readme_section(out, readme)
    text = readme.read_text()
    assert BEGIN in text and END in text and "PROXY" in text and "Q-Diverse is" in text
    commands.write_readme_section(out, readme)  # idempotent: one section, replaced
    assert readme.read_text() == text



def test_random_pairs_across_feature_sets_and_cells_keep_them_apart():
    """A method run under another feature set is a cell of its own, paired with the same
    seed's Random (which reads no feature), wherever that Random run was filed."""
    runs = _runs()
    deep = runs[runs["method"] == "qdiverse"].assign(feature_set="offline-deep",
                                                     srcc=lambda d: d["srcc"] + 0.1)
    summary = summarise_study(pd.concat([runs, deep], ignore_index=True))
    cells = summary[(summary["method"] == "qdiverse") & (summary["model"] == "maniqa")
                    & (summary["fraction"] == 0.1)].set_index("feature_set")
    assert set(cells.index) == {"offline", "offline-deep"}
    assert cells.loc["offline-deep", "n_pairs"] == 6
    assert cells.loc["offline-deep", "srcc_diff"] == pytest.approx(
        cells.loc["offline", "srcc_diff"] + 0.1)


def test_a_study_stage_trains_only_its_cells_and_names_bad_values(tiny_bench, tmp_path,
                                                                  monkeypatch):
    """``run --methods/--seeds``: only the stage's runs are trained, they are the grid's own
    (a wider stage trains only the rest), a run listed by two sweeps counts once, and a value
    outside the grid is refused with the axis and the value named."""
    from qd_lib.paths import repo_root
    from qd_lib.study import commands

    monkeypatch.setenv("QD_RUNS_DIR", str(tmp_path / "runs"))
    sweep = repo_root() / "notebooks" / "sweeps" / "study_tiny.yaml"
    specs = commands._sweep_specs([sweep, sweep])
    assert len(specs) == 6 and len({s.run_id for s in specs}) == 6
    stage = commands.select_stage(specs, {"methods": ["qdiverse"], "seeds": [1]})
    assert [(s.method, s.seed) for s in stage] == [("qdiverse", 1)]
    assert len(commands.select_stage(specs, {"models": ["maniqa/tiny"]})) == 6
    assert len(commands.select_stage(specs, {"fractions": [0.25], "seeds": [0]})) == 3
    with pytest.raises(ValueError, match=r"'methods'.*Got 'qdivers'"):
        commands.select_stage(specs, {"methods": ["qdivers"]})
    with pytest.raises(ValueError, match=r"'seeds'.*Got 7"):
        commands.select_stage(specs, {"seeds": [7]})
    with pytest.raises(ValueError, match=r"'only'.*Got 'method'"):
        commands.select_stage(specs, {"method": ["random"]})
    out = tmp_path / "study"
    done = commands.run_missing([sweep], out, only={"methods": ["random"], "seeds": [0]})
    assert done["trained"] == 1 and done["held"] == 0 and done["rows"] == 1
    # every row says which build of the dataset it trained on; a machine whose build differs
    # is told before it pairs new runs with those
    held = pd.read_csv(out / "runs.csv")
    assert held["manifest_hash"].tolist() == [tiny_bench.manifest.content_hash]
    assert commands.build_mismatches(specs, held) == []
    other = held.assign(manifest_hash="f" * 64)
    assert commands.build_mismatches(specs, other) == [
        ("proxy-tiny", tiny_bench.manifest.content_hash, {"f" * 64: 1},
         ["maniqa/tiny 25 % seed 0"])]
    assert commands.build_mismatches(specs, held.assign(manifest_hash=None)) == []
    # a block trained wholly here pairs within itself: another block's build does not count
    seed_1 = commands.select_stage(specs, {"seeds": [1]})
    assert seed_1 and commands.build_mismatches(seed_1, other) == []
    # a wider stage finds the first one's run held and trains only the other seed
    wider = commands.run_missing([sweep], out, only={"methods": ["random"]})
    assert wider["trained"] == 1 and wider["held"] == 1 and wider["rows"] == 2
    # status: what is held and what is left, timed by the runs that were trained
    status = commands.study_status([sweep], out).set_index("method")
    assert status.loc["random", ["planned", "done", "missing"]].tolist() == [2, 2, 0]
    assert status.loc["random", "timing"] == "" and status.loc["random", "minutes_left"] == 0
    per_run = pd.read_csv(out / "runs.csv")["seconds"].mean() / 60
    assert status.loc["qdiverse", "missing_seeds"] == "0 1"
    assert status.loc["qdiverse", "timing"] == "measured"
    assert status.loc["qdiverse", "minutes_left"] == pytest.approx(2 * per_run)
    assert "2 of 6 runs done; the other 4 need about" in commands.status_text(
        status.reset_index(), workers=2)
    staged = commands.study_status([sweep], out, only={"seeds": [1]})
    assert staged["planned"].sum() == 3 and staged["done"].sum() == 1
    # a new output folder (no runs.csv yet) is timed by the runs finished here under runs/
    fresh = commands.study_status([sweep], tmp_path / "fresh").set_index("method")
    assert fresh.loc["random", "done"] == 2 and fresh.loc["qdiverse", "timing"] == "measured"
    assert fresh.loc["qdiverse", "minutes_left"] == pytest.approx(2 * per_run, rel=1e-3)
    # two sweeps listing the same runs: one row per run
    commands._write_tables([sweep, sweep], out)
    assert pd.read_csv(out / "runs.csv")["run_id"].is_unique
    # tables written for a sweep that lists none of these runs keep the committed rows
    narrow = tmp_path / "narrow.yaml"
    narrow.write_text(sweep.read_text().replace("methods: [random, qdiverse, kcenter]",
                                                "methods: [kcenter]"))
    commands._write_tables([narrow], out)
    assert sorted(pd.read_csv(out / "runs.csv")["seed"]) == [0, 1]


def test_a_missing_runs_time_is_measured_scaled_from_a_neighbour_or_unknown():
    from qd_lib.study.commands import _estimate_minutes, _minutes_per_run

    held = pd.DataFrame({"dataset": ["a", "a", "b"], "model": ["maniqa"] * 3,
                         "fraction": [0.1, 0.1, 0.05], "epochs": [12, 12, 12],
                         "seconds": [1200.0, 1800.0, 300.0]})
    timings = _minutes_per_run(held)
    assert _estimate_minutes(timings, "a", "maniqa", 0.1, 12) == (25.0, "measured")
    # its own dataset first, scaled by the coreset's size
    assert _estimate_minutes(timings, "a", "maniqa", 0.05, 12) == (12.5, "estimated")
    assert _estimate_minutes(timings, "c", "maniqa", 0.05, 12) == (5.0, "estimated")
    minutes, how = _estimate_minutes(timings, "a", "musiq", 0.1, 12)
    assert how == "unknown" and math.isnan(minutes)
    assert _estimate_minutes(timings, "a", "maniqa", 0.1, 4)[1] == "unknown"
    # a machine that timed a cell itself goes by its own runs; elsewhere by everyone's
    on_two = held.assign(machine=["slow", "fast", "slow"])
    assert _minutes_per_run(on_two, "fast")[("a", "maniqa", 0.1, 12)] == 30.0
    assert _minutes_per_run(on_two, "fast")[("b", "maniqa", 0.05, 12)] == 5.0
    assert _minutes_per_run(on_two, None)[("a", "maniqa", 0.1, 12)] == 25.0


def test_the_study_cli_names_a_bad_stage_value_without_a_traceback(capsys):
    from qd_lib.paths import repo_root
    from qd_lib.study.__main__ import main

    sweep = str(repo_root() / "notebooks" / "sweeps" / "study_tiny.yaml")
    with pytest.raises(SystemExit) as exit_info:
        main(["status", sweep, "--methods", "qdivers"])
    assert exit_info.value.code == 2
    assert "'methods' parameter" in capsys.readouterr().err


def test_the_readme_section_computes_wall_time_robustness_and_the_epoch_cap(tmp_path):
    """Every number of the generated section comes from the files: the wall-time estimate is
    grid size × measured minutes / workers, the robustness lines rank Q-Diverse by KS, and a
    schedule still rising at the longest length measured is called a compute cap."""
    from qd_lib.study.readme import evidence_section

    out = tmp_path / "study"
    (out / "epochs").mkdir(parents=True)
    pd.DataFrame({"run_id": ["a", "b"], "model": ["maniqa"] * 2, "fraction": [0.1, 0.1],
                  "epochs": [12, 12], "seconds": [600.0, 1200.0]}).to_csv(
        out / "epochs" / "runs.csv", index=False)
    grid = pd.DataFrame({"model": ["maniqa"] * 4 + ["musiq"], "fraction": [0.1] * 5,
                         "epochs": [12] * 5})
    pd.DataFrame({"model": ["maniqa"] * 2, "fraction": [0.1] * 2, "epochs": [4, 12],
                  "val_srcc": [0.70, 0.78], "chosen_epochs": [12, 12]}).to_csv(
        out / "epochs.csv", index=False)
    rows = [{"method": m, "fraction": 0.1, "seed": s, "ks": ks, "covering_radius_content": 1.0}
            for s in range(2) for m, ks in (("random", 0.05), ("qdiverse", 0.3), ("kcenter", 0.4))]
    pd.DataFrame(rows).to_csv(out / "diagnostics.csv", index=False)
    (out / "features").mkdir()
    deep = [dict(r, ks=0.02 if r["method"] == "qdiverse" else r["ks"]) for r in rows]
    pd.DataFrame(deep).to_csv(out / "features" / "diagnostics.csv", index=False)
    text = evidence_section(out, grid)
    # 4 maniqa runs × 15 min mean / 2 workers = 0.5 h; musiq not timed
    assert "maniqa 10% (4 runs in the grid), per run: 15 min (2 timed)" in text
    assert "needs 0.5 h" in text
    assert "not yet timed: musiq 10% (1 run)" in text and "one 10-hour night" not in text
    long_grid = pd.DataFrame({"model": ["maniqa"] * 80, "fraction": [0.1] * 80,
                              "epochs": [12] * 80})   # 80 × 15 min / 2 = 10 h: still one night
    one_night = evidence_section(out, long_grid)
    assert "one 10-hour night" not in one_night
    assert "the whole main grid needs 10.0 h, and the study resumes" in one_night
    longer = pd.concat([long_grid] * 2, ignore_index=True)   # 20 h
    assert "the whole main grid needs 20.0 h. That is" in evidence_section(out, longer)
    assert "more than one 10-hour night" in evidence_section(out, longer)
    # timed on two machines: one time per machine, the grid costed on the fastest and slowest
    pd.DataFrame({"run_id": ["c", "d", "e"], "model": ["maniqa"] * 3, "fraction": [0.1] * 3,
                  "epochs": [12] * 3, "seconds": [300.0, 900.0, 1800.0],
                  "machine": ["Fast CPU, avx512f, 2 cores", None, None],
                  "manifest_hash": [None, "ab" * 32, None]}).to_csv(out / "runs.csv",
                                                                    index=False)
    mixed = evidence_section(out, long_grid)
    # (the epoch sweep's two runs above recorded no machine either: 600, 1200 and 1800 s)
    assert ("maniqa 10% (80 runs in the grid), per run: 5 min on Fast CPU, avx512f, 2 cores "
            "(1 timed), 15 min on the build-abababab machine (1 timed), 20 min on an unrecorded "
            "machine (3 timed)"
            in mixed)
    assert "needs 3.3 h on the fastest machine that timed each cell and 13.3 h on the " \
        "slowest" in mixed and "one 10-hour night" not in mixed
    (out / "runs.csv").unlink()
    assert "MOS KS 0.020 against Random's 0.050, rank 1 of 3" in text
    assert "(main setting: 0.300 against 0.050, rank 2 of 3)" in text
    assert "still rising" in text and "does not reproduce here" in text


def test_the_readme_section_says_when_the_study_trains_short_of_the_chosen_schedule(tmp_path):
    """When the epoch sweep chooses a longer schedule than the study trains, the section names
    the shortfall with Random's validation SRCC at both lengths; when the study trains the
    chosen length it says nothing of the kind."""
    from qd_lib.study.readme import evidence_section

    out = tmp_path / "study"
    out.mkdir()
    pd.DataFrame({"model": ["maniqa"] * 3 + ["musiq"] * 2, "fraction": [0.1] * 5,
                  "epochs": [4, 12, 24, 4, 12], "val_srcc": [0.70, 0.78, 0.81, 0.55, 0.60],
                  "chosen_epochs": [24, 24, 24, 12, 12],
                  "n_seeds": [2, 2, 1, 2, 2]}).to_csv(out / "epochs.csv", index=False)
    pd.DataFrame({"model": ["maniqa", "musiq"], "epochs": [12, 12]}).to_csv(
        out / "runs.csv", index=False)
    text = evidence_section(out)
    assert ("The study trains maniqa for 12 epochs, short of the chosen 24 (Random's "
            "validation SRCC at 10%: 0.780 against 0.810): a compute cap") in text
    assert "musiq for 12 epochs" not in text
    # the schedule measured on one seed of two says so; the others do not
    assert "maniqa 10%: 24 (val SRCC 4: 0.700, 12: 0.780, 24: 0.810 (1 seed))" in text
    assert "musiq 10%: 12 (val SRCC 4: 0.550, 12: 0.600)" in text
    pd.DataFrame({"model": ["maniqa"], "epochs": [24]}).to_csv(out / "runs.csv", index=False)
    assert "The study trains" not in evidence_section(out)


def test_the_readme_section_sets_the_long_block_beside_the_same_seeds_at_the_study_length(
        tmp_path):
    """The block trained at the chosen schedule (``long/``) gives each Q-Diverse variant's
    verdict there and its mean paired difference on the same seeds at the study's shorter
    length; seeds without a Random partner at either length stay out of that mean."""
    from qd_lib.study.readme import evidence_section
    from qd_lib.study.report import write_study_tables

    out = tmp_path / "study"
    setting = {"dataset": "proxy-default", "model": "maniqa", "feature_set": "offline",
               "fraction": 0.1}

    def rows(epochs, table):
        return pd.DataFrame([{**setting, "epochs": epochs, "method": m, "seed": seed,
                              "srcc": v, "plcc": v, "run_id": f"{m}-{seed}-{epochs}"}
                             for m, values in table.items() for seed, v in values.items()])

    # the study (12 epochs): Q-Diverse 0.10 behind Random on seeds 0-1; seed 2 has no Random
    write_study_tables(rows(12, {"random": {0: 0.80, 1: 0.70},
                                 "qdiverse": {0: 0.70, 1: 0.60, 2: 0.99}}), out)
    # 24 epochs, seeds 0-1: Q-Diverse 0.02 behind on average; seed 2 of Random has no pair;
    # a second setting (MUSIQ) gets its own label
    long_runs = rows(24, {"random": {0: 0.85, 1: 0.75, 2: 0.50},
                          "qdiverse": {0: 0.85, 1: 0.71}})
    write_study_tables(pd.concat([long_runs, long_runs.assign(
        model="musiq", run_id=long_runs["run_id"] + "-musiq")]), out / "long")
    text = evidence_section(out)
    assert "**At the chosen schedule**" in text
    assert "maniqa 10% proxy-default, 24 epochs: Q-Diverse is not yet decided: 2 paired seeds" \
        in text
    assert ". musiq 10% proxy-default, 24 epochs: Q-Diverse is not yet decided: 2 paired " \
        "seeds" in text
    assert ("on the same 2 seeds (mean) at the study's 12 epochs its Δ SRCC was -0.100 "
            "against -0.020 at 24") in text
    (out / "long" / "runs.csv").unlink()
    with pytest.raises(FileNotFoundError, match="long/runs.csv"):
        evidence_section(out)
    (out / "long" / "summary.csv").unlink()
    assert "At the chosen schedule" not in evidence_section(out)


def test_trained_variants_pair_by_seed_and_reject_mixed_cells():
    """A variant's paired difference uses only the seeds Random shares with it, on each split,
    and runs of two cells (two models, say) are refused rather than averaged together."""
    from qd_lib.study.ablation import trained_variants

    runs = pd.DataFrame({
        "dataset": ["d"] * 5, "model": ["maniqa"] * 5, "fraction": [0.1] * 5,
        "method": ["random", "random", "qdiverse_density", "qdiverse_density",
                   "qdiverse_density"],
        "seed": [0, 1, 0, 1, 2],
        "val_srcc": [0.80, 0.70, 0.85, 0.60, 0.99],
        "srcc": [0.50, 0.60, 0.55, 0.50, 0.99]})
    table = trained_variants(runs).set_index("method")
    density = table.loc["qdiverse_density"]
    assert density["n_trained"] == 3 and density["n_pairs"] == 2
    # seed 2 has no Random partner: (0.05 - 0.10) / 2 on val, (0.05 - 0.10) / 2 on test
    assert density["val_srcc_diff"] == pytest.approx(-0.025)
    assert density["srcc_diff"] == pytest.approx(-0.025)
    assert density["srcc_trained"] == pytest.approx((0.55 + 0.50 + 0.99) / 3)
    assert table.loc["random", "srcc_diff"] == 0.0
    mixed = pd.concat([runs, runs.assign(model="musiq")], ignore_index=True)
    with pytest.raises(ValueError, match="'runs' parameter of trained_variants.*2 cells"):
        trained_variants(mixed)


def test_refresh_ablation_merges_only_the_ablation_sweeps_runs(tmp_path, monkeypatch):
    """ablation.csv is rebuilt from ablation_seeds.csv and the runs the ablation sweep lists;
    a trained run of another sweep (a MUSIQ run of the same method) stays out, and the README
    block reports the paired validation difference."""
    from qd_lib.study import commands
    from qd_lib.study.readme import _ablation

    out = tmp_path / "study"
    out.mkdir()
    seeds = [{"option": o, "value": v, "method": m, "fraction": 0.1, "seed": s, "ks": ks,
              "seconds": 1.0}
             for s in range(2) for o, v, m, ks in (
                 ("reference", "random", "random", 0.05),
                 ("default", "faithful defaults", "qdiverse", 0.3),
                 ("extension", "qdiverse_density", "qdiverse_density", 0.04))]
    pd.DataFrame(seeds).to_csv(out / "ablation_seeds.csv", index=False)
    runs = pd.DataFrame({
        "dataset": ["d"] * 5, "model": ["maniqa"] * 4 + ["musiq"], "fraction": [0.1] * 5,
        "method": ["random", "random", "qdiverse_density", "qdiverse_density", "random"],
        "seed": [0, 1, 0, 1, 0], "val_srcc": [0.8, 0.7, 0.9, 0.8, 0.1],
        "srcc": [0.8, 0.8, 0.7, 0.7, 0.1], "run_id": ["r0", "r1", "d0", "d1", "m0"]})
    runs.to_csv(out / "runs.csv", index=False)

    class Spec:
        def __init__(self, run_id):
            self.run_id = run_id

    monkeypatch.setattr(commands, "_sweep_specs",
                        lambda sweeps: [Spec(i) for i in ("r0", "r1", "d0", "d1")])
    sweep = tmp_path / "ablation.yaml"
    sweep.write_text("name: x\n")
    path = commands.refresh_ablation(out, sweep)
    table = pd.read_csv(path).set_index("method")
    assert list(table.index) == ["qdiverse_density", "random", "qdiverse"]   # by KS
    assert table.loc["random", "n_trained"] == 2                             # not the MUSIQ run
    assert table.loc["qdiverse_density", "val_srcc_diff"] == pytest.approx(0.1)
    assert table.loc["qdiverse_density", "srcc_diff"] == pytest.approx(-0.1)
    assert pd.isna(table.loc["qdiverse", "n_trained"])
    text = "\n".join(_ablation(out))
    assert "extension qdiverse_density (2 seeds): validation Δ +0.100, test Δ -0.100" in text
    assert commands.refresh_ablation(tmp_path / "none") is None


def test_the_readme_verdict_follows_the_table_markers_and_names_variants():
    """Better/worse only with the interval and p < 0.05 (▲/▼), "leaning" with the interval
    alone (△/▽), undecided below six pairs (where p < 0.05 is out of reach); an ablation
    variant is named by its option."""
    from qd_lib.study.readme import _variant, _verdict

    row = {"srcc_diff": 0.03, "srcc_diff_low": 0.02, "srcc_diff_high": 0.04, "srcc_p": 0.5,
           "srcc_wins": 2, "n_pairs": 2}
    assert _verdict(row).startswith("not yet decided: 2 paired seeds")
    row.update(n_pairs=MIN_PAIRS_FOR_VERDICT, srcc_wins=5, srcc_p=0.09)
    assert _verdict(row).startswith("leaning better than Random (Δ SRCC +0.030 [+0.020, +0.040]")
    row.update(srcc_p=0.031)
    assert _verdict(row).startswith("better than Random")
    row.update(srcc_diff=-0.03, srcc_diff_low=-0.04, srcc_diff_high=-0.02)
    assert _verdict(row).startswith("worse than Random")
    row.update(srcc_diff_high=0.01)
    assert _verdict(row).startswith("not distinguishable from Random")
    assert _variant("row_normalize", True) == "row_normalize = True"
    assert _variant("extension", "qdiverse_density") == "extension qdiverse_density"
    assert _variant("default", "faithful defaults") == "faithful defaults"


def test_the_readme_states_every_trained_qdiverse_variant_even_when_it_loses():
    """Q-Diverse, each variant or extension of it with pairs, every other method with enough
    pairs for a verdict, then the best method if it is none of those, and the methods still too
    few pairs: a variant is reported whether or not it wins."""
    from qd_lib.study.readme import _trained

    runs = _runs()
    runs = runs[(runs["model"] == "maniqa") & (runs["fraction"] == 0.1)]
    variant = runs[runs["method"] == "qdiverse"].assign(
        method="qdiverse_rownorm", srcc=lambda d: d["srcc"] + 0.01,
        run_id=lambda d: d["run_id"] + "-rownorm")
    herding = runs["method"] == "herding"
    runs = pd.concat([runs.assign(srcc=np.where(herding, runs["srcc"] + 0.02, runs["srcc"])),
                      variant], ignore_index=True)
    lines = _trained(summarise_study(runs), runs)
    said = [line.strip() for line in lines if line.startswith("  ")]
    assert said[0].startswith("Q-Diverse is worse than Random")
    assert said[1].startswith("Q-Diverse unit-length rows (variant) is worse than Random")
    assert said[2].startswith("Herding is better than Random")      # six pairs: a verdict
    assert len(said) == 3
    # a baseline with too few pairs gets no verdict sentence but is named as undecided; the
    # best of the cell, when it has too few pairs, says so
    kcenter = runs[(runs["method"] == "herding") & (runs["seed"] < 2)].assign(
        method="kcenter", srcc=lambda d: d["srcc"] - 0.2, run_id=lambda d: d["run_id"] + "-k")
    pgcs = runs[(runs["method"] == "herding") & (runs["seed"] < 1)].assign(
        method="pgcs", srcc=lambda d: d["srcc"] + 0.5, run_id=lambda d: d["run_id"] + "-p")
    runs = pd.concat([runs, kcenter, pgcs], ignore_index=True)
    said = [line.strip() for line in _trained(summarise_study(runs), runs)
            if line.startswith("  ")]
    assert said[2].startswith("Herding is better than Random")
    assert said[3].startswith("The best, PGCS, is not yet decided: 1 paired seed,")
    assert said[4] == ("Too few paired seeds for a verdict (fewer than 6): "
                       "k-Center Greedy (2 pairs).")
    assert len(said) == 5


def test_mos_shift_gives_the_direction_of_a_skew_and_the_readme_shows_it(tmp_path):
    """KS says how far a coreset's MOS is from the training split's; mos_shift says which way
    (negative: low-quality images over-picked), and the README table prints it in brackets."""
    from qd_lib.study.diagnostics import coreset_diagnostics
    from qd_lib.study.readme import _training_free

    mos = np.array([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    low = coreset_diagnostics([0, 1], mos, {})
    high = coreset_diagnostics([4, 5], mos, {})
    assert low["mos_shift"] == pytest.approx(0.1 - 0.5) and high["mos_shift"] == pytest.approx(0.4)
    assert low["ks"] == high["ks"]                    # KS alone cannot tell the two apart
    out = tmp_path / "study"
    out.mkdir()
    pd.DataFrame([{"method": m, "fraction": 0.1, "seed": s, "ks": ks, "mos_shift": shift,
                   "covering_radius_content": 1.0}
                  for s in range(2) for m, ks, shift in (("random", 0.05, 0.01),
                                                         ("qdiverse", 0.3, -0.17))]).to_csv(
        out / "diagnostics.csv", index=False)
    text = "\n".join(_training_free(out))
    assert "| Q-Diverse | 0.300 (-0.17) |" in text and "| Random | 0.050 (+0.01) |" in text


def test_the_committed_summary_says_exactly_what_the_committed_runs_say():
    """figures/study/summary.{csv,md} are recomputed from figures/study/runs.csv alone."""
    from qd_lib.paths import repo_root
    from qd_lib.study import commands

    out = repo_root() / "figures" / "study"
    if not (out / "runs.csv").is_file():
        pytest.skip("no committed study results in this checkout")
    assert (out / "summary.csv").read_text() == commands.summary_from_runs(out)
    runs = pd.read_csv(out / "runs.csv")
    assert (out / "summary.md").read_text() == summary_markdown(summarise_study(runs),
                                                                 runs=runs)


def test_the_forest_plot_labels_variants_and_marks_cells_too_small_for_a_verdict():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qd_lib.viz.study import plot_paired_forest

    runs = _runs()
    runs = runs[(runs["model"] == "maniqa") & (runs["fraction"] == 0.1)]
    variant = runs[(runs["method"] == "qdiverse") & (runs["seed"] < 2)].assign(
        method="qdiverse[row_normalize=True]", run_id=lambda d: d["run_id"] + "-rownorm")
    # another dataset files the same variant under its registered name: still one row
    other = pd.concat([runs[runs["method"] == "random"], variant.assign(
        method="qdiverse_rownorm")]).assign(dataset="proxy-other")
    fig = plot_paired_forest(summarise_study(pd.concat([runs, variant, other],
                                                       ignore_index=True)))
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert sorted(labels) == ["Herding", "Q-Diverse", "Q-Diverse unit-length rows (variant)"]
    notes = sorted(t.get_text() for t in ax.texts)
    assert notes == ["n=2", "n=2", "n=6", "n=6"]
    hollow = [line for line in ax.lines if line.get_markerfacecolor() == "white"]
    assert len(hollow) == 2 and all(len(line.get_xdata()) == 1 for line in hollow)
    variant_row = labels.index("Q-Diverse unit-length rows (variant)")
    assert sorted(round(float(line.get_ydata()[0])) for line in hollow) == [variant_row] * 2
    assert len(ax.get_legend().get_texts()) == 2  # one entry per dataset, below the axes
    plt.close(fig)


def test_correlations_match_variant_runs_their_dataset_and_feature_set(tmp_path):
    """A named variant's runs (filed as ``qdiverse[row_normalize=True]``) are matched to its
    diagnostic rows; each training-free table is correlated only with runs of its own dataset
    and feature set (Random, which reads no feature, counts once); one method alone gives no
    correlation; the README quotes per-model correlations and the out-of-sample check."""
    from qd_lib.study import commands
    from qd_lib.study.readme import _diagnostics

    out = tmp_path / "study"
    (out / "authentic").mkdir(parents=True)
    rng = np.random.default_rng(0)
    methods = ["random", "qdiverse", "qdiverse_rownorm"]
    diag = pd.DataFrame([{"method": m, "fraction": 0.1, "seed": s,
                          "mean_nearest_quality": q + 0.01 * s, "ks": rng.uniform()}
                         for s in range(4) for m, q in zip(methods, (0.2, 0.3, 0.1))])
    settings = {"dataset": "proxy-default", "feature_set": {"set": "offline"}}
    diag.to_csv(out / "diagnostics.csv", index=False)
    (out / "diagnostics.json").write_text(json.dumps({"settings": settings}))
    diag.to_csv(out / "authentic" / "diagnostics.csv", index=False)
    (out / "authentic" / "diagnostics.json").write_text(json.dumps(
        {"settings": dict(settings, dataset="proxy-authentic")}))
    srcc = {"random": 0.80, "qdiverse": 0.70, "qdiverse[row_normalize=True]": 0.90}
    runs = [{"dataset": d, "model": "maniqa", "config": "small", "epochs": 12,
             "feature_set": f, "method": m, "fraction": 0.1, "seed": s,
             "srcc": srcc[m] - 0.001 * s, "run_id": f"{d}-{f}-{m}-{s}"}
            for d in ("proxy-default", "proxy-authentic") for s in range(4)
            for m in srcc for f in ("offline", "offline-deep")
            if not (f == "offline-deep" and m == "qdiverse[row_normalize=True]")]
    pd.DataFrame(runs).to_csv(out / "runs.csv", index=False)
    paths = commands.refresh_correlations(out)
    assert {"correlations", "authentic_correlations"} <= set(paths)
    corr = pd.read_csv(paths["correlations"]).set_index(["model", "diagnostic"])
    # 4 seeds × (Random once, Q-Diverse offline, the variant): not the offline-deep Q-Diverse
    assert corr.loc[("maniqa", "mean_nearest_quality"), "n"] == 12
    assert corr.loc[("maniqa", "mean_nearest_quality"), "spearman"] < -0.9
    # over the 3 method means: rank -1, and an exact permutation p of 2/3! (not a run-level p)
    assert corr.loc[("maniqa", "mean_nearest_quality"), "spearman_methods"] == pytest.approx(-1)
    assert corr.loc[("maniqa", "mean_nearest_quality"), "p_methods"] == pytest.approx(1 / 3)
    assert corr.loc[("maniqa", "mean_nearest_quality"), "n_methods"] == 3
    # Random alone (no other method of its feature set) says nothing
    only_random = pd.DataFrame([r for r in runs if r["method"] == "random"])
    only_random.to_csv(out / "runs.csv", index=False)
    assert "correlations" not in commands.refresh_correlations(out)
    # and the earlier table and figure are gone, not quoted as current
    assert not (out / "correlations.csv").exists()
    assert not list(out.glob("diagnostics_scatter.*"))
    pd.DataFrame(runs).to_csv(out / "runs.csv", index=False)
    commands.refresh_correlations(out)
    from qd_lib.study import readme as readme_module

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(readme_module, "MIN_RUNS_FOR_CORRELATION", 12)
        text = "\n".join(_diagnostics(out))
    assert "maniqa 10% (12 runs): `mean_nearest_quality` -" in text and "`ks`" in text
    assert "-1.00 over 3 method means (p = 0.333)" in text
    assert "proxy-authentic" in text and "best predictor: `mean_nearest_quality`" in text
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(readme_module, "MIN_RUNS_FOR_CORRELATION", 13)
        assert _diagnostics(out) == []


def test_data_builds_count_runs_per_build_and_warn_when_pairs_cross_builds():
    runs = pd.DataFrame({"dataset": ["a", "a", "a", "b"],
                         "manifest_hash": ["1" * 64, "2" * 64, None, "3" * 64],
                         "model": "m", "fraction": 0.1, "seed": [0, 0, 1, 0]})
    from qd_lib.study.report import data_build_notes, data_builds, mixed_build_seeds

    table = data_builds(runs)
    assert table.values.tolist() == [["a", "1" * 64, 1], ["a", "2" * 64, 1], ["a", "", 1],
                                     ["b", "3" * 64, 1]]
    notes = data_build_notes(runs)
    assert notes[0].startswith("- a: build 11111111: 1 run(s); build 22222222: 1 run(s); 1 "
                               "run(s) recorded before") and "**2 different builds**" in notes[0]
    assert notes[0].endswith("Seeds whose runs span builds: m 10% seed 0.")
    assert notes[1] == "- b: build 33333333: 1 run(s)."
    # seed 1's second run has no recorded build: unknown, not a second build
    runs.loc[1, "seed"] = 1
    assert mixed_build_seeds(runs).empty
    assert data_build_notes(runs)[0].endswith("No seed's runs span builds.")


def test_within_method_correlation_ignores_what_only_separates_methods():
    """A diagnostic that only tells methods apart has a strong across-method correlation and
    none within a method; one that also ranks a method's seeds has both."""
    from qd_lib.study.diagnostics import within_method_spearman

    rng = np.random.default_rng(0)
    rows = []
    for method, level in [("a", 0.0), ("b", 1.0), ("c", 2.0)]:
        for seed in range(20):
            noise = rng.normal()
            rows.append({"method": method, "seed": seed, "srcc": level + 0.1 * noise,
                         "separates": level + 0.1 * rng.normal(),
                         "ranks": level + 0.1 * noise})
    rows.append({"method": "d", "seed": 0, "srcc": 5.0, "separates": 5.0, "ranks": 5.0})
    group = pd.DataFrame(rows)
    rho, p, n = within_method_spearman(group, "ranks")
    assert rho == pytest.approx(1.0) and p < 0.01 and n == 60  # the one-run method left out
    rho, p, n = within_method_spearman(group, "separates")
    assert abs(rho) < 0.3 and p > 0.05
    again = within_method_spearman(group, "separates")
    assert again == (rho, p, n)  # seeded permutations
    assert np.isnan(within_method_spearman(group[group["method"] == "d"], "ranks")[0])


def test_the_readme_orders_the_ablation_by_the_best_predictor_too(tmp_path):
    """Besides KS, the ablation is ordered by the diagnostic that best predicts trained SRCC
    across methods (lower first for a negative correlation), for the model with most runs."""
    from qd_lib.study.readme import MIN_RUNS_FOR_CORRELATION, _ablation

    pd.DataFrame({
        "option": ["default", "reference", "gamma", "energy", "laplacian"],
        "value": ["faithful defaults", "random", "0.3", "0.80", "rw"],
        "method": ["qdiverse", "random", "qdiverse", "qdiverse", "qdiverse"],
        "ks": [0.3, 0.05, 0.1, 0.2, 0.4],
        "mean_nearest_quality": [0.25, 0.22, 0.30, 0.18, 0.20]}).to_csv(
        tmp_path / "ablation.csv", index=False)
    n = MIN_RUNS_FOR_CORRELATION
    pd.DataFrame({"model": ["musiq", "maniqa", "maniqa"], "epochs": 12, "fraction": 0.1,
                  "diagnostic": ["ks", "mean_nearest_quality", "ks"],
                  "spearman": [0.9, -0.8, -0.2], "p": [0.01, 0.001, 0.3],
                  "n": [n, n + 5, n + 5]}).to_csv(tmp_path / "correlations.csv", index=False)
    lines = _ablation(tmp_path)
    assert "ordered by the MOS KS distance" in lines[1] and lines[1].index(
        "gamma = 0.3") < lines[1].index("energy = 0.80")
    lead = next(line for line in lines if line.startswith("Ordered instead"))
    assert "`mean_nearest_quality`" in lead and "maniqa 10%" in lead and "-0.80" in lead
    assert lead.index("energy = 0.80") < lead.index("laplacian = rw") < lead.index("gamma = 0.3")
    assert "faithful default 0.250" in lead and "Random 0.220" in lead


def test_method_level_correlation_counts_methods_not_runs():
    """Ten seeds of three methods in perfect order are three points: the exact p is 1/3, not
    the tiny run-level p; with 9 methods in order it is 2/9!."""
    from math import factorial

    from qd_lib.study.diagnostics import method_level_spearman

    rows = [{"method": m, "seed": s, "srcc": level + 0.01 * s, "d": -level + 0.001 * s}
            for m, level in zip("abc", (0.6, 0.7, 0.8)) for s in range(10)]
    rho, p, n = method_level_spearman(pd.DataFrame(rows), "d")
    assert (rho, n) == (pytest.approx(-1.0), 3) and p == pytest.approx(1 / 3)
    rows = [{"method": str(k), "srcc": k, "d": k} for k in range(9)]
    rho, p, n = method_level_spearman(pd.DataFrame(rows), "d")
    assert rho == pytest.approx(1.0) and p == pytest.approx(2 / factorial(9)) and n == 9
    assert np.isnan(method_level_spearman(pd.DataFrame(rows[:2]), "d")[0])


def test_readme_tallies_each_method_s_verdicts_across_trained_settings():
    from qd_lib.study.readme import _across_settings

    def cell(dataset, model, method, low, high, p, n=6):
        return {"dataset": dataset, "model": model, "fraction": 0.1, "method": method,
                "srcc_diff": (low + high) / 2, "srcc_diff_low": low, "srcc_diff_high": high,
                "srcc_p": p, "n_pairs": n}

    summary = pd.DataFrame([
        cell("a", "maniqa", "qdiverse", -0.1, -0.05, 0.03),
        cell("b", "maniqa", "qdiverse", -0.1, -0.05, 0.03),
        cell("a", "musiq", "qdiverse", -0.1, -0.05, 0.06, n=5),  # too few pairs: left out
        cell("a", "maniqa", "qdiverse[row_normalize=True]", 0.01, 0.03, 0.03),
        cell("b", "maniqa", "qdiverse_rownorm", -0.01, 0.05, 0.4),  # the same method
        {**cell("a", "maniqa", "random", 0, 0, 1.0), "srcc_diff": float("nan")},
    ])
    line = _across_settings(summary)[0]
    assert "Q-Diverse, 2 settings: worse in 2;" in line
    assert ("Q-Diverse unit-length rows (variant), 2 settings: better in 1 (maniqa 10% a), "
            "not distinguishable in 1.") in line
    assert "Random" not in line.split("):", 1)[1]
    assert _across_settings(summary[summary["n_pairs"] < 6]) == []


def test_the_long_block_reuses_the_epoch_sweeps_24_epoch_random_runs():
    """``study_long.yaml`` pairs Random with Q-Diverse and its row-normalised variant at the
    epoch sweep's longest schedule, and its Random runs of seeds 0-1 are the epoch sweep's own
    (same spec, same run id: never trained twice)."""
    from qd_lib.paths import repo_root
    from qd_lib.runner import expand

    sweeps = repo_root() / "notebooks" / "sweeps"
    long_specs = expand(sweeps / "study_long.yaml")
    epochs = {s.run_id for s in expand(sweeps / "study_epochs.yaml")}
    assert {s.overrides["epochs"] for s in long_specs} == {24}
    random_ids = {s.seed: s.run_id for s in long_specs if s.method == "random"}
    assert {random_ids[0], random_ids[1]} <= epochs
    assert not {s.run_id for s in long_specs if s.method != "random"} & epochs
    assert {(s.method, tuple(sorted(s.method_params.items()))) for s in long_specs} == {
        ("random", ()), ("qdiverse", ()), ("qdiverse", (("row_normalize", True),))}

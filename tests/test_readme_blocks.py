"""The README's generated blocks: the marker helper, each generator against the committed result
files it reads (the expected numbers are recomputed here from those files, not typed), and the
repository's README being up to date with them."""
from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest

from qd_lib.paths import repo_root
from qd_lib.utils.readme_blocks import (
    ReadmeBlock,
    ReadmeBlockError,
    begin_marker,
    block_body,
    end_marker,
    refresh_blocks,
    replace_block,
)

ROOT = repo_root()
FIGURES = ROOT / "figures"
TEXT = ("# title\n\nintro\n\n" + begin_marker("demo") + "\n\nold body\n\n" + end_marker("demo")
        + "\n\noutro\n")


# -- the marker helper -----------------------------------------------------------------------------
def test_replace_block_round_trip_keeps_everything_outside_the_markers():
    new = replace_block(TEXT, "demo", "\nnew body\nline 2\n\n")
    assert block_body(new, "demo") == "new body\nline 2"
    head, tail = TEXT.split(begin_marker("demo"))[0], TEXT.split(end_marker("demo"))[1]
    assert new.startswith(head) and new.endswith(tail)
    assert f"{begin_marker('demo')}\n\nnew body\nline 2\n\n{end_marker('demo')}" in new
    assert replace_block(new, "demo", "new body\nline 2") == new  # idempotent
    assert replace_block(new, "demo", "old body") == TEXT  # and back


def test_replace_block_rewrites_the_command_of_the_begin_marker():
    bare = "<!-- demo:begin -->\nx\n<!-- demo:end -->\n"
    own = replace_block(bare, "demo", "y", command="python tool.py --readme")
    assert own.startswith(begin_marker("demo", "python tool.py --readme"))
    assert replace_block(own, "demo", "y") == begin_marker("demo") + "\n\ny\n\n" + \
        end_marker("demo") + "\n"


@pytest.mark.parametrize("text, problem", [
    ("intro\n", "no begin marker"),
    (begin_marker("demo") + "\nbody\n", "no end marker"),
    (end_marker("demo") + "\n" + begin_marker("demo") + "\n", "before the begin marker"),
    (TEXT + begin_marker("demo") + "\n", "2 begin markers"),
    (TEXT + end_marker("demo") + "\n", "2 end markers"),
])
def test_broken_markers_raise_a_value_error_naming_the_block(text, problem):
    with pytest.raises(ValueError, match=rf"README block 'demo': .*{problem}"):
        replace_block(text, "demo", "body")
    with pytest.raises(ReadmeBlockError, match="'demo'"):
        block_body(text, "demo")


def test_wrap_markdown_fills_prose_and_items_but_keeps_tables_and_code():
    from qd_lib.utils.readme_blocks import wrap_markdown

    long = " ".join(["word"] * 40)
    text = "\n".join([long, "- " + long, "| " + long + " |", "```", long, "```", ""])
    lines = wrap_markdown(text, width=50).splitlines()
    assert max(len(line) for line in lines[:lines.index("| " + long + " |")]) <= 50
    assert any(line.startswith("  word") for line in lines)
    assert "| " + long + " |" in lines and lines.count(long) == 1
    assert _flat(wrap_markdown(text, width=50)) == _flat(text)


def test_markers_of_other_blocks_do_not_count():
    text = TEXT + begin_marker("demo2") + "\n\n" + end_marker("demo2") + "\n"
    assert block_body(replace_block(text, "demo", "b"), "demo2") == ""


def test_refresh_blocks_reports_changed_and_skips_missing_optional_blocks(tmp_path):
    blocks = [ReadmeBlock("demo", lambda root: f"from {root.name}"),
              ReadmeBlock("later", lambda root: "never", required=False)]
    new, changed, skipped = refresh_blocks(TEXT, blocks, tmp_path)
    assert block_body(new, "demo") == f"from {tmp_path.name}"
    assert (changed, skipped) == (["demo"], ["later"])
    assert refresh_blocks(new, blocks, tmp_path)[1:] == ([], ["later"])
    with pytest.raises(ReadmeBlockError, match="'later'"):
        refresh_blocks(TEXT, [ReadmeBlock("later", lambda root: "x")], tmp_path)


# -- the generators, on the committed files --------------------------------------------------------
def _signed(value: float) -> str:
    return f"{value:+.4f}"


def _flat(text: str) -> str:
    """``text`` with its line breaks and indents as single spaces (the prose is wrapped)."""
    return " ".join(text.split())


def test_pruning_block_states_the_committed_numbers():
    from qd_lib.pruning.readme import pruning_block
    from qd_lib.runner.tables import method_label

    folder = FIGURES / "pruning"
    raw = pruning_block(folder)
    for line in (folder / "table3_pruning.md").read_text().splitlines():
        if line.startswith("|"):
            assert line in raw.splitlines()
    text = _flat(raw)
    runs = pd.read_csv(folder / "table3_pruning_runs.csv")
    srcc = runs.pivot(index="seed", columns="method", values="srcc")
    flops = runs.pivot(index="seed", columns="method", values="flops")
    calibrated = [m for m in srcc.columns if m != "uniform"]
    for method in calibrated:
        if method == "random":
            continue
        diff = srcc[method] - srcc["random"]
        assert (f"{method_label(method)} {_signed(diff.mean())} [{_signed(diff.min())}, "
                f"{_signed(diff.max())}], {int((diff > 0).sum())}/{len(diff)}") in text
    spread = srcc[calibrated].std(ddof=1).mean()
    assert f"is {spread:.4f}." in text
    gain = srcc[calibrated].sub(srcc["uniform"], axis=0).to_numpy()
    assert f"{_signed(gain.mean())} SRCC on average" in text
    assert f"{_signed(gain.min())} to {_signed(gain.max())}" in text
    worst = max(abs(srcc[m] - srcc["random"]).max() for m in calibrated if m != "random")
    matters = "does not matter measurably" in text
    assert matters == (worst < spread)
    means = flops[calibrated].mean()
    assert f"means {means.min():.4f}" in text and f"to {means.max():.4f}" in text
    check = json.loads((folder / "early_stop_check.json").read_text())
    assert (f"identical allocation in {check['identical_allocations']} of {check['pairs']}"
            in text)
    timing = json.loads((folder / "rd_timing_cpu.json").read_text())["early_stop"]
    assert f"{timing['seconds']:.0f} s on" in text
    assert f"{timing['measured_points']} of {timing['points']} curve points" in text
    assert f"{runs['rd_seconds'].mean():.1f} s on average" in text
    record = json.loads(next((folder / "table3_pruning_records").glob("*qdiverse*")).read_text())
    assert f"{record['curves']['n_calibration']} calibration images" in text
    assert f"{record['n_test']} test images" in text
    assert f"{record['prunable_weights']:,} prunable weights" in text
    meta = json.loads((folder / "table3_pruning.json").read_text())
    assert f"{meta['n_runs']} source records" in text
    for note in meta["code_notes"]:
        assert _flat(note) in text


def test_curve_steps_counts_only_steps_between_measured_levels():
    from qd_lib.pruning.readme import curve_steps

    inf = float("inf")
    record = {"curves": {"distortion": [[0.0, 1.0, 0.5, inf], [0.0, 0.0, 2.0, 3.0]],
                         "measured": [[True, True, True, False], [True, True, True, True]]}}
    assert curve_steps([record, {"curves": None}]) == {"rising": 3, "level": 1, "falling": 1,
                                                       "n_records": 1}


def test_complexity_block_states_the_committed_fit():
    from qd_lib.analysis.complexity_readme import complexity_block

    folder = FIGURES / "complexity"
    raw = complexity_block(folder)
    text = _flat(raw)
    fit = json.loads((folder / "fit.json").read_text())
    assert f"**R² = {fit['r2']:.3f}**" in text
    assert f"{100 * fit['median_rel_error']:.1f} %" in text
    assert f"over {fit['n_points']} configurations" in text
    assert f"The grid took {fit['seconds']:.0f} s" in text and _flat(fit["note"]) in text
    rows = {line.split(" | ")[0].lstrip("| "): line for line in raw.splitlines()
            if line.startswith("| ")}
    for stage, label in (("distances", "distances"), ("kernel", "kernel"),
                         ("nystrom", "Nyström"), ("sampling", "sampling")):
        fits = fit["stages"][stage]
        assert f"| {fits['supplement']['r2']:.3f} (" in rows[label]
        assert f"| {fits['implementation']['r2']:.3f} (" in rows[label]
    ex = fit["exponents"]
    assert f"slope in d is {ex['distances']['d']['measured']:.2f}" in text
    assert f"Slopes {ex['kernel']['n']['measured']:.2f} in N" in text
    assert f"slope {ex['nystrom']['l']['measured']:.2f} against" in text
    assert f"supplement fit's {ex['sampling']['r']['supplement']:.2f}" in text
    timings = pd.read_csv(folder / "timings.csv")
    d = timings[timings["axis"].isin(["d", "center"])].sort_values("d")
    assert f"{d['distances'].iloc[0]:.3f} → {d['distances'].iloc[-1]:.3f} s" in text
    optimistic = (fit["stages"]["distances"]["implementation"]["r2"]
                  - fit["stages"]["distances"]["supplement"]["r2"]) >= 0.02
    assert ("the bound is optimistic" in text) == optimistic


def test_cifar10_block_is_the_committed_table():
    from qd_lib.readme import BLOCKS

    text = BLOCKS["cifar10"].generate(ROOT)
    table = pd.read_csv(FIGURES / "cifar10" / "digits_table4.csv", dtype=str)
    for _, row in table.iterrows():
        for value in row.to_numpy():
            assert str(value) in text
    long = pd.read_csv(FIGURES / "cifar10" / "digits_table4_long.csv")
    run = long[long["source"] == "run"]
    assert np.all([f"{m:.2f} ± {s:.2f}" in text for m, s in zip(run["mean"], run["std"])])


def test_gpu_block_is_the_report_summary_as_gpu_check_prints_it():
    from qd_lib.readme import BLOCKS, GPU_COMMAND

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    report = json.loads((FIGURES / "gpu" / "report.json").read_text())
    assert BLOCKS["gpu"].generate(ROOT) == "\n".join(
        ["```", *gpu_check.summary_lines(report), "```"])
    assert BLOCKS["gpu"].command == GPU_COMMAND == gpu_check.README_COMMAND


def test_study_section_keeps_its_own_command_and_appends_once(tmp_path):
    from qd_lib.study.readme import BEGIN, END, evidence_body, evidence_section, replace_section

    out = FIGURES / "study"
    section = evidence_section(out)
    assert section == f"{BEGIN}\n\n{evidence_body(out)}\n\n{END}"
    assert "`python -m qd_lib.study readme`" in BEGIN
    once = replace_section("# x\n\nintro\n", section)
    assert once.count(BEGIN) == 1 and "## What the evidence says" in once
    assert replace_section(once, section) == once
    assert block_body(replace_section(once, f"{BEGIN}\n\nnew\n\n{END}"), "study") == "new"


# -- the repository's README -----------------------------------------------------------------------
def test_the_readme_is_up_to_date_with_the_committed_results(capsys):
    """Fails when a result file under figures/ changed without ``python -m qd_lib.readme``."""
    from qd_lib.readme import main

    code = main(["--check"])
    assert code == 0, capsys.readouterr().err


def test_check_names_a_stale_block_and_the_command_rewrites_it(tmp_path, capsys):
    from qd_lib.readme import main

    readme = tmp_path / "README.md"
    original = (ROOT / "README.md").read_text(encoding="utf-8")
    readme.write_text(replace_block(original, "complexity", "R² = 1.000 (typed by hand)"))
    for folder in ("figures", "benchmarks", "notebooks"):
        (tmp_path / folder).symlink_to(ROOT / folder)
    assert main(["--check", "--readme", str(readme)]) == 1
    assert "block 'complexity' is stale" in capsys.readouterr().err
    assert main(["--readme", str(readme)]) == 0
    assert readme.read_text(encoding="utf-8") == original
    readme.write_text(original.replace(end_marker("pruning"), ""))
    assert main(["--check", "--readme", str(readme)]) == 2
    assert "README block 'pruning': no end marker" in capsys.readouterr().err


def test_gpu_check_readme_writes_the_same_block(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    original = (ROOT / "README.md").read_text(encoding="utf-8")
    readme = tmp_path / "README.md"
    readme.write_text(replace_block(original, "gpu", "stale"))
    assert gpu_check.write_readme_summary(FIGURES / "gpu" / "report.json", readme) == 0
    assert readme.read_text(encoding="utf-8") == original
    readme.write_text("# no markers\n")
    assert gpu_check.write_readme_summary(FIGURES / "gpu" / "report.json", readme) == 2
    assert "README block 'gpu': no begin marker" in capsys.readouterr().err

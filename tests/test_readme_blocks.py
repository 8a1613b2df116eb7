"""The README's generated blocks: the marker helper, and the study and GPU blocks written through
it with their own commands."""
from __future__ import annotations

import sys

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


def _flat(text: str) -> str:
    """``text`` with its line breaks and indents as single spaces (the prose is wrapped)."""
    return " ".join(text.split())


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

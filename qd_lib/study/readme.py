"""The README's "What the evidence says" section, written from the committed study files only
(no number typed by hand): ``python -m qd_lib.study readme``."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from qd_lib.data.budget import fraction_label
from qd_lib.study.report import BASELINE, method_label
from qd_lib.utils.readme_blocks import begin_marker, end_marker, has_block, replace_block

#: The README block's name and the command its begin marker names.
BLOCK = "study"
COMMAND = "python -m qd_lib.study readme"
BEGIN = begin_marker(BLOCK, COMMAND)
END = end_marker(BLOCK)


def _f(value, digits=3, signed=False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _verdict(row) -> str:
    diff = (f"Δ SRCC {_f(row['srcc_diff'], signed=True)} "
            f"[{_f(row['srcc_diff_low'], signed=True)}, {_f(row['srcc_diff_high'], signed=True)}]"
            f", p = {_f(row['srcc_p'])}, wins {int(row['srcc_wins'])}/{int(row['n_pairs'])}")
    if row["srcc_diff_high"] < 0:
        return f"worse than Random ({diff})"
    if row["srcc_diff_low"] > 0:
        return f"better than Random ({diff})"
    return f"not distinguishable from Random ({diff})"


def _trained(summary: pd.DataFrame, runs: pd.DataFrame) -> list[str]:
    n_seeds = int(summary["n_seeds"].max())
    seconds = runs["seconds"].sum() if "seconds" in runs else math.nan
    lines = [f"{len(runs)} trained runs ({runs['model'].nunique()} models × "
             f"{runs['fraction'].nunique()} fractions × {runs['method'].nunique()} methods × up "
             f"to {n_seeds} paired seeds) on {', '.join(sorted(runs['dataset'].unique()))}; "
             f"training time {_f(seconds / 3600, 1)} h of 2-core CPU in total. Mean test SRCC "
             "with a bootstrap 95 % interval, and every method's paired difference with Random "
             "(same seed) with a Wilcoxon signed-rank p-value "
             f"(the smallest p attainable with {n_seeds} pairs is {_f(2 / 2 ** n_seeds)}); the "
             "full table is `figures/study/summary.md`.", ""]
    for (dataset, model, fraction), cell in summary.groupby(["dataset", "model", "fraction"],
                                                            sort=False):
        ranked = cell.sort_values("srcc_mean", ascending=False)
        order = ", ".join(f"{method_label(m)} {_f(v)}" for m, v in
                          zip(ranked["method"], ranked["srcc_mean"]))
        lines.append(f"- **{model}, {fraction_label(fraction)}** ({dataset}): {order}.")
        q = cell[cell["method"] == "qdiverse"]
        if len(q) and not pd.isna(q.iloc[0].get("srcc_diff")):
            lines.append(f"  Q-Diverse is {_verdict(q.iloc[0])}.")
        best = ranked.iloc[0]
        if best["method"] not in (BASELINE, "qdiverse") and not pd.isna(best.get("srcc_diff")):
            lines.append(f"  The best, {method_label(best['method'])}, is {_verdict(best)}.")
    return lines


def _diagnostics(out: Path) -> list[str]:
    path = out / "correlations.csv"
    if not path.is_file():
        return []
    corr = pd.read_csv(path)
    pooled = corr[corr["model"] == "all"].head(4)
    if pooled.empty:
        return []
    parts = [f"`{r.diagnostic}` (Spearman {_f(r.spearman, 2, signed=True)}, n = {r.n})"
             for r in pooled.itertuples()]
    return ["", "**Which cheap number predicts trained SRCC** (training-free diagnostics of the "
            "very coresets that were trained, `figures/study/correlations.csv`): "
            + "; ".join(parts) + "."]


def _ablation(out: Path) -> list[str]:
    path = out / "ablation.csv"
    if not path.is_file():
        return []
    table = pd.read_csv(path)
    default = table[table["option"] == "default"]
    rows = table[~table["option"].isin(["default", "reference"])].head(3)
    ref = table[table["option"] == "reference"]
    text = ["", "**Ablation** (training-free, `figures/study/ablation.csv`, ordered by the MOS "
            "KS distance to the training split, lower is closer): "]
    items = [f"{r.option} = {r.value} (KS {_f(r.ks)})" for r in rows.itertuples()]
    if len(default):
        items.append(f"faithful default KS {_f(default.iloc[0]['ks'])}")
    if len(ref):
        items.append(f"Random KS {_f(ref.iloc[0]['ks'])}")
    if "srcc_trained" in table:
        trained = table[table["srcc_trained"].notna()]
        items += [f"{r.value} trained: SRCC {_f(r.srcc_trained)} (val {_f(r.val_srcc_trained)})"
                  for r in trained.itertuples() if r.option != "reference"]
    return text[:1] + [text[1] + "; ".join(items) + "."]


def _epochs(out: Path) -> list[str]:
    path = out / "epochs.csv"
    if not path.is_file():
        return []
    table = pd.read_csv(path)
    chosen = table.drop_duplicates(["model", "fraction"])
    parts = [f"{r.model} {fraction_label(r.fraction)}: {int(r.chosen_epochs)}"
             for r in chosen.itertuples()]
    return ["", "**Epochs** (shortest schedule within 0.005 of the best final validation SRCC, "
            "`figures/study/epochs.csv`): " + "; ".join(parts) + "."]


def evidence_body(out: Path) -> str:
    """The generated Markdown between :data:`BEGIN` and :data:`END`, from the study files in
    ``out`` (``figures/study``) only."""
    out = Path(out)
    lines = ["**PROXY benchmark** (MOS from full-reference metrics, not human "
             "ratings), CPU `small` models: evidence about this workbench's offline setting, "
             "not about the paper's claim on human-rated datasets.", ""]
    summary_path = out / "summary.csv"
    if summary_path.is_file():
        lines += _trained(pd.read_csv(summary_path), pd.read_csv(out / "runs.csv"))
    else:
        lines.append("No trained study results are committed yet.")
    lines += _diagnostics(out) + _ablation(out) + _epochs(out)
    return "\n".join(lines)


def evidence_section(out: Path) -> str:
    """The whole block: :data:`BEGIN`, :func:`evidence_body` and :data:`END`."""
    return f"{BEGIN}\n\n{evidence_body(out)}\n\n{END}"


def replace_section(readme: str, section: str) -> str:
    """``readme`` with the study block holding ``section`` (a whole block, as
    :func:`evidence_section` writes it), appended under a heading when the README has no
    study markers yet; broken markers raise
    :class:`~qd_lib.utils.readme_blocks.ReadmeBlockError`."""
    if has_block(readme, BLOCK):
        body = section.removeprefix(BEGIN).removesuffix(END)
        return replace_block(readme, BLOCK, body, command=COMMAND)
    return readme.rstrip() + "\n\n## What the evidence says\n\n" + section + "\n"

"""Table 3 of the supplement from pruning run records: method × (FLOPs, SRCC, PLCC) per dataset.

One block of rows per dataset (labelled with its calibration fraction), one row per
calibration method in the supplement's order (Random, Herding, k-Center Greedy, CD, Moderate,
PGCS, Q-Diverse), then two reference rows that need no calibration set: *Uniform* (the same
sparsity in every layer) and *Unpruned* (the base models before pruning). Cells are mean ± std
(ddof 1) over seeds; the best calibration method per dataset and column is bold (lowest
remaining FLOPs, highest SRCC and PLCC). Written by :func:`qd_lib.viz.save_table` as CSV,
Markdown, LaTeX and a JSON provenance file listing every source run, the seeds, the test-split
hashes and the paired differences to Random per seed (does the calibration set matter?).

Runs with different targets, model configurations, test splits, fine-tuning or sparsity grids
are never mixed: :func:`table3` refuses and names the column that differs.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from qd_lib.pruning.experiment import UNIFORM, load_records
from qd_lib.runner.tables import METHOD_ORDER, dataset_label, latex_escape, method_label

logger = logging.getLogger(__name__)

__all__ = ["records_frame", "save_table3", "table3"]

COLUMNS = ("flops", "srcc", "plcc")
COLUMN_NAMES = {"flops": "FLOPs", "srcc": "SRCC", "plcc": "PLCC"}
#: Lower is better for the remaining FLOPs fraction, higher for the correlations.
HIGHER_IS_BETTER = {"flops": False, "srcc": True, "plcc": True}
UNPRUNED = "unpruned"
REFERENCE_NAMES = {UNIFORM: "Uniform (no calibration)", UNPRUNED: "Unpruned"}
#: Settings that must be equal across one table.
TABLE_KEYS = ("target", "model", "config", "finetune_epochs", "levels", "early_stop",
              "train_overrides")
PROXY_NOTE = ("PROXY: the proxy benchmark's MOS come from full-reference metrics, not from "
              "human ratings.")


def records_frame(records: Sequence[dict]) -> pd.DataFrame:
    """One row per finished run: dataset, method, seed, metrics and the settings."""
    rows = []
    for r in records:
        spec = r["spec"]
        rows.append({
            "run_id": r["run_id"], "dataset": r["dataset"], "method": r["method"],
            "seed": int(r["seed"]), "fraction": r["fraction"], "flops": r["flops"],
            "srcc": r["srcc"], "plcc": r["plcc"], "dense_srcc": r["dense_metrics"]["srcc"],
            "dense_plcc": r["dense_metrics"]["plcc"], "sparsity": r["sparsity"],
            "rd_seconds": r.get("rd_seconds"), "base_id": r["base_id"],
            "test_split_hash": r["test_split_hash"], "proxy": bool(r.get("proxy")),
            "target": r["target"], "model": spec["model"], "config": spec["config"],
            "finetune_epochs": spec["finetune_epochs"], "levels": tuple(spec["levels"]),
            "early_stop": spec["early_stop"],
            "train_overrides": repr(sorted(spec.get("train_overrides", {}).items())),
            "git_commit": r.get("git_commit"), "device": r.get("device"),
            "code_note": r.get("code_note")})
    return pd.DataFrame(rows)


def _check_mixable(frame: pd.DataFrame) -> None:
    for key in TABLE_KEYS:
        values = frame[key].map(repr).unique()
        if len(values) > 1:
            raise ValueError(f"Pruning runs with different {key!r} cannot share one table: "
                             f"{sorted(values)}. Select runs of one setting (run_ids=...).")
    for dataset, group in frame.groupby("dataset"):
        if group["test_split_hash"].nunique() > 1:
            raise ValueError(f"Pruning runs on {dataset!r} were evaluated on different test "
                             "splits; they cannot share one table.")
    dup = frame.duplicated(["dataset", "method", "seed"], keep=False)
    if dup.any():
        raise ValueError("Several runs of one (dataset, method, seed): "
                         f"{sorted(frame.loc[dup, 'run_id'])[:4]}; select one setting.")


def _order(methods) -> list[str]:
    known = [m for m in METHOD_ORDER if m in methods]
    other = sorted(m for m in methods if m not in METHOD_ORDER and m != UNIFORM)
    return known + other + ([UNIFORM] if UNIFORM in methods else [])


def _cell(values: np.ndarray, decimals: int) -> str:
    if len(values) == 0:
        return "–"
    mean = f"{np.mean(values):.{decimals}f}"
    if len(values) > 1:
        return f"{mean} ± {np.std(values, ddof=1):.{decimals}f}"
    return mean


class Table3:
    """The summary (``cells``: one row per dataset × method with mean, std and n per column),
    its renderings and provenance."""

    def __init__(self, frame: pd.DataFrame, cells: pd.DataFrame, provenance: dict,
                 decimals: int):
        self.frame, self.cells, self.provenance, self.decimals = (frame, cells, provenance,
                                                                  decimals)

    @property
    def proxy(self) -> bool:
        return bool(self.provenance.get("proxy"))

    def _rows(self):
        """The row blocks, one per dataset in table order."""
        return [group for _, group in self.cells.groupby("dataset", sort=False)]

    def _caption(self) -> str:
        p = self.provenance
        text = (f"Coresets as calibration sets for rate-distortion pruning of {p['model_label']}"
                f" at {100 * p['target']:.0f} % sparsity of the prunable weights: remaining "
                f"FLOPs fraction, SRCC and PLCC on the fixed test split, mean ± std over seeds "
                f"{p['seeds']}; best calibration method per column in bold.")
        return f"{text} {PROXY_NOTE}" if self.proxy else text

    def paired_notes(self) -> list[str]:
        """One line per dataset: each method's SRCC minus Random's, paired by seed (same base
        model), mean and range, and the wins; the direct answer to "does the calibration set
        matter?"."""
        lines = []
        for dataset, effect in self.provenance["calibration_effect"].items():
            parts = []
            for method in _order(effect["vs_random"]):
                e = effect["vs_random"][method]
                diffs = e["srcc_diff_per_seed"]
                if not diffs or method == UNIFORM:
                    continue
                parts.append(f"{method_label(method)} {e['srcc_diff_mean']:+.4f} "
                             f"[{min(diffs):+.4f}, {max(diffs):+.4f}], {e['wins']}/"
                             f"{e['n_pairs']} wins")
            if parts:
                lines.append(f"{dataset_label(dataset)}: SRCC minus Random's, paired by seed "
                             f"(mean [min, max]): " + "; ".join(parts) + ".")
        return lines

    def to_markdown(self) -> str:
        lines = [f"**Table 3.** {self._caption()}", "",
                 "| Calibration set | Method | " + " | ".join(COLUMN_NAMES[c] for c in COLUMNS)
                 + " | n |", "|---|---|" + "---|" * (len(COLUMNS) + 1)]
        for group in self._rows():
            for i, row in enumerate(group.itertuples(index=False)):
                first = row.block_label if i == 0 else ""
                cells = [f"**{row._asdict()[c + '_text']}**" if row._asdict()[c + "_best"]
                         else row._asdict()[c + "_text"] for c in COLUMNS]
                lines.append(f"| {first} | {row.label} | " + " | ".join(cells) +
                             f" | {row.n} |")
        notes = self.paired_notes()
        return "\n".join(lines + ([""] + notes if notes else [])) + "\n"

    def to_latex(self) -> str:
        out = [r"\begin{table}[t]", r"\centering", r"\small",
               r"\begin{tabular}{llccc}", r"\toprule",
               r"Calibration set & Method & FLOPs & SRCC & PLCC \\", r"\midrule"]
        blocks = self._rows()
        for b, group in enumerate(blocks):
            for i, row in enumerate(group.itertuples(index=False)):
                d = row._asdict()
                first = (rf"\multirow{{{len(group)}}}{{*}}{{{latex_escape(row.block_label)}}}"
                         if i == 0 else "")
                cells = [(rf"\textbf{{{d[c + '_text']}}}" if d[c + "_best"] else d[c + "_text"])
                         .replace("±", r"$\pm$") for c in COLUMNS]
                out.append(f"{first} & {latex_escape(row.label)} & " + " & ".join(cells)
                           + r" \\")
            if b < len(blocks) - 1:
                out.append(r"\midrule")
        out += [r"\bottomrule", r"\end{tabular}",
                r"\caption{" + latex_escape(self._caption()).replace("±", r"$\pm$") + "}",
                r"\label{tab:pruning}",
                r"\end{table}"]
        return "\n".join(out) + "\n"

    def to_frame(self) -> pd.DataFrame:
        """The CSV form: one row per dataset × method, mean/std/n per column."""
        keep = ["dataset", "fraction", "method", "label", "n"]
        for c in COLUMNS:
            keep += [f"{c}_mean", f"{c}_std"]
        return self.cells[keep].reset_index(drop=True)


def table3(records: Sequence[dict] | None = None, *, runs_root=None,
           run_ids: Sequence[str] | None = None, datasets: Sequence[str] | None = None,
           config: str | None = None, seeds: Sequence[int] | None = None,
           methods: Sequence[str] | None = None, decimals: int = 4) -> Table3:
    """Build Table 3 from pruning run records (default: every finished run under
    ``runs/pruning``, or those of ``run_ids``), optionally only those of ``datasets``,
    ``config``, ``seeds`` and ``methods``.

    Raises
    ------
    ValueError
        No records, or records that cannot share a table (see the module docstring).
    """
    if records is None:
        records = load_records(runs_root, run_ids=run_ids)
    frame = records_frame(records) if records else pd.DataFrame()
    if len(frame):
        keep = np.ones(len(frame), dtype=bool)
        if datasets is not None:
            keep &= frame["dataset"].isin(list(datasets)).to_numpy()
        if config is not None:
            keep &= (frame["config"] == config).to_numpy()
        if seeds is not None:
            keep &= frame["seed"].isin([int(s) for s in seeds]).to_numpy()
        if methods is not None:
            keep &= frame["method"].isin(list(methods)).to_numpy()
        frame = frame[keep].reset_index(drop=True)
    if not len(frame):
        raise ValueError("No finished pruning runs to tabulate (run 'python -m qd_lib.pruning "
                         "run ...' first, or loosen the filters).")
    _check_mixable(frame)
    cells = []
    for dataset in dict.fromkeys(frame["dataset"]):
        group = frame[frame["dataset"] == dataset]
        calibrated = group[group["method"] != UNIFORM]
        fraction = calibrated["fraction"].iloc[0] if len(calibrated) else None
        block = dataset_label(dataset) + (f" ({100 * fraction:.0f}%)" if fraction else "")
        for method in _order(group["method"].unique()):
            sub = group[group["method"] == method]
            cells.append(_summary_row(dataset, block, method, fraction, sub, decimals))
        bases = group.drop_duplicates("base_id")
        cells.append(_summary_row(dataset, block, UNPRUNED, None, pd.DataFrame({
            "flops": np.ones(len(bases)), "srcc": bases["dense_srcc"].to_numpy(),
            "plcc": bases["dense_plcc"].to_numpy()}), decimals))
    cells = pd.DataFrame(cells)
    _mark_best(cells, decimals)
    return Table3(frame, cells, _provenance(frame, decimals), decimals)


def _summary_row(dataset, block, method, fraction, sub: pd.DataFrame, decimals) -> dict:
    row = {"dataset": dataset, "block_label": block,
           "fraction": fraction if method not in (UNIFORM, UNPRUNED) else None,
           "method": method, "n": int(len(sub)),
           "label": REFERENCE_NAMES.get(method) or method_label(method)}
    for c in COLUMNS:
        values = sub[c].to_numpy(dtype=float)
        row[f"{c}_mean"] = float(np.mean(values)) if len(values) else np.nan
        row[f"{c}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else np.nan
        row[f"{c}_text"] = _cell(values, decimals)
        row[f"{c}_best"] = False
    return row


def _mark_best(cells: pd.DataFrame, decimals: int) -> None:
    ranked = cells[~cells["method"].isin([UNIFORM, UNPRUNED])]
    for _, group in ranked.groupby("dataset"):
        if len(group) < 2:
            continue
        for c in COLUMNS:
            shown = group[f"{c}_mean"].round(decimals)
            best = shown.max() if HIGHER_IS_BETTER[c] else shown.min()
            cells.loc[shown.index[shown == best], f"{c}_best"] = True


def _provenance(frame: pd.DataFrame, decimals: int) -> dict:
    first = frame.iloc[0]
    from qd_lib.runner.tables import MODEL_NAMES

    effect = {}
    for dataset, group in frame.groupby("dataset"):
        wide = group.pivot(index="seed", columns="method", values="srcc")
        per = {}
        if "random" in wide.columns:
            for method in wide.columns:
                if method == "random":
                    continue
                pair = wide[[method, "random"]].dropna()
                diff = (pair[method] - pair["random"]).to_numpy()
                per[method] = {"srcc_diff_per_seed": diff.round(6).tolist(),
                               "srcc_diff_mean": float(diff.mean()) if len(diff) else None,
                               "wins": int((diff > 0).sum()), "n_pairs": int(len(diff))}
        means = group[group["method"] != UNIFORM].groupby("method")["srcc"]
        effect[dataset] = {
            "vs_random": per,
            "srcc_range_of_method_means": float(means.mean().max() - means.mean().min()),
            "srcc_mean_within_method_std": float(means.std(ddof=1).mean()),
            "flops_range_of_method_means": float(
                group[group["method"] != UNIFORM].groupby("method")["flops"].mean().agg(
                    lambda s: s.max() - s.min()))}
    return {
        "layout": "supplement Table 3: rows = dataset (calibration fraction) x calibration "
                  "method (+ Uniform, Unpruned references), columns = FLOPs, SRCC, PLCC",
        "model": first["model"], "config": first["config"],
        "model_label": f"{MODEL_NAMES.get(first['model'], first['model'])}/{first['config']}",
        "target": float(first["target"]), "finetune_epochs": int(first["finetune_epochs"]),
        "levels": list(first["levels"]), "early_stop": bool(first["early_stop"]),
        "datasets": list(dict.fromkeys(frame["dataset"])),
        "methods": _order(frame["method"].unique()),
        "seeds": sorted(int(s) for s in frame["seed"].unique()),
        "run_ids": sorted(frame["run_id"]), "n_runs": int(len(frame)),
        "base_ids": sorted(frame["base_id"].unique()),
        "test_split_hashes": {d: sorted(g.unique()) for d, g in
                              frame.groupby("dataset")["test_split_hash"]},
        "proxy": bool(frame["proxy"].any()), "decimals": decimals,
        "rd_seconds": {"where": "each run's device (see 'devices')",
                       "mean": float(frame["rd_seconds"].dropna().mean())
                       if frame["rd_seconds"].notna().any() else None,
                       "max": float(frame["rd_seconds"].dropna().max())
                       if frame["rd_seconds"].notna().any() else None},
        "calibration_effect": effect,
        "git_commits": sorted({c for c in frame["git_commit"].dropna()}),
        "devices": sorted({str(d) for d in frame["device"].dropna()}),
        "code_notes": sorted({str(c) for c in frame["code_note"].dropna()}),
        "flops": "remaining fraction of the prunable layers' dense multiply-accumulates, "
                 "weighted by kept weights",
        "bold": "best mean per dataset and column among the calibration methods (lowest "
                "FLOPs, highest SRCC/PLCC); Uniform and Unpruned are not ranked"}


def save_table3(table: Table3, name: str = "table3_pruning", *, folder=None,
                records: Sequence[dict] | None = None) -> dict:
    """Write ``<name>.{csv,md,tex,json}`` (and ``<name>_runs.csv``, one row per run) through
    :func:`qd_lib.viz.save_table`; default folder ``figures/pruning``.

    With ``records`` (the run records the table was built from), a copy of each is kept as
    ``<folder>/<name>_records/<run_id>.json`` (the folder is rewritten), so the table can be
    rebuilt from a fresh clone: ``table3(load_records(folder=<that folder>))``.
    """
    from pathlib import Path

    from qd_lib.paths import figures_dir
    from qd_lib.utils.io import write_verified_json
    from qd_lib.viz import save_table

    folder = Path(folder) if folder is not None else figures_dir() / "pruning"
    written = save_table(table.to_frame(), name, folder=folder, provenance=table.provenance,
                         markdown=table.to_markdown(), latex=table.to_latex(),
                         csv_float_format="%.6f",
                         extra_csv={"runs_csv": table.frame.drop(columns=["levels"])})
    if records is not None:
        keep = set(table.provenance["run_ids"])
        chosen = {r["run_id"]: r for r in records if r["run_id"] in keep}
        missing = sorted(keep - set(chosen))
        if missing:
            raise ValueError(f"The 'records' parameter lacks runs of the table: {missing[:4]}.")
        target = folder / f"{name}_records"
        target.mkdir(parents=True, exist_ok=True)
        for stale in target.glob("*.json"):
            if stale.stem not in keep:
                stale.unlink()
        for run_id, record in sorted(chosen.items()):
            write_verified_json(target / f"{run_id}.json", record)
        written["records"] = target
    return written

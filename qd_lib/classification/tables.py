"""Table 4 of the supplement (CIFAR-10 accuracy by method and fraction), from run records.

Layout (as the supplement's Table 4): one row per dataset fraction, one column per selection
method, cells "mean ± std" of the top-1 test accuracy in percent over seeds (sample standard
deviation, ``ddof=1``; a single seed shows no ±), the best mean of each row in bold.

Two kinds of rows, never mixed:

``run here``
    Built only from the grid's ``metrics.json`` records (:func:`~qd_lib.classification.
    experiment.grid_runs`): the dataset (the digits stand-in says it is **not CIFAR-10**),
    the recipe, the number of seeds. Runs with different recipes, features, test splits or
    training data are refused with an error that names what differs.
``quoted``
    :data:`SUPPLEMENT_TABLE4`, the numbers printed in the supplement's Table 4 for CIFAR-10 and
    ResNet-18, labelled "quoted from the supplement, not run here": Herding, k-Center and CD
    marked * (the supplement took them from DeepCore), Moderate and ZCore marked # (taken from
    ZCore), Q-Diverse unmarked (the supplement's own result). ZCore is not implemented here
    (design decision 10), so its column is filled only by the quoted rows.

:func:`table4` builds a :class:`Table4`; :func:`save_table4` writes it with
:func:`qd_lib.viz.save_table` as ``<name>_table4.{csv,md,tex,json}`` plus ``_long.csv`` (one
line per row and method with mean, std, number of seeds and source) under
``figures/cifar10/``; the JSON lists every source run id.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from qd_lib.data.budget import fraction_label
from qd_lib.paths import figures_dir
from qd_lib.utils.errors import QDError

logger = logging.getLogger(__name__)

__all__ = ["METHOD_COLUMNS", "QUOTED_LABEL", "SUPPLEMENT_TABLE4", "Table4", "TableMixError",
           "save_table4", "table4"]

#: Column order and headers (Table 4's methods plus Random and PGCS, which it does not show).
METHOD_COLUMNS = {"random": "Random", "herding": "Herding", "kcenter": "K-center",
                  "contextual_diversity": "CD", "moderate": "Moderate", "pgcs": "PGCS",
                  "zcore": "ZCore", "qdiverse": "Q-Diverse"}

#: The supplement's Table 4 (CIFAR-10, ResNet-18), accuracy in percent: (mean, std, mark).
#: Marks as printed: * from DeepCore, # from ZCore; Q-Diverse is the supplement's own result.
SUPPLEMENT_TABLE4 = {
    0.1: {"herding": (63.5, 3.4, "*"), "kcenter": (75.8, 2.4, "*"),
          "contextual_diversity": (58.5, 2.0, "*"), "moderate": (83.61, 0.09, "#"),
          "zcore": (84.18, 0.21, "#"), "qdiverse": (84.93, 0.23, "")},
    0.3: {"herding": (80.1, 2.2, "*"), "kcenter": (90.9, 0.4, "*"),
          "contextual_diversity": (90.8, 0.5, "*"), "moderate": (89.71, 0.14, "#"),
          "zcore": (90.97, 0.44, "#"), "qdiverse": (91.02, 0.28, "")},
}
QUOTED_DECIMALS = {"herding": 1, "kcenter": 1, "contextual_diversity": 1}  # as printed
QUOTED_LABEL = "quoted from the supplement, not run here"
QUOTED_SOURCE = ("CIFAR-10, ResNet-18: supplement Table 4 (* DeepCore, # ZCore, as the "
                 "supplement cites them; Q-Diverse the supplement's own result)")

# Fields that must agree between all the runs of one table.
_SAME = ("dataset", "train_hash", "test_hash", "recipe", "features", "stand_in")


class TableMixError(QDError, ValueError):
    """Runs that cannot share one table (other recipe, test split, training data, features)."""


@dataclass
class Table4:
    """A Table 4 built from run records (and the quoted rows).

    Attributes
    ----------
    cells : pandas.DataFrame
        The rendered table: ``fraction``, ``source`` and one column per method (text cells).
    long : pandas.DataFrame
        One line per row and method: fraction, source, method, mean, std, n_seeds (percent).
    provenance : dict
        Run ids, grid, recipe, dataset title, stand-in flag, quoted source.
    caption : str
    """

    cells: pd.DataFrame
    long: pd.DataFrame
    provenance: dict
    caption: str
    notes: list = field(default_factory=list)

    @property
    def methods(self) -> list[str]:
        return [c for c in self.cells.columns if c not in ("Dataset fraction", "Source")]

    def to_markdown(self) -> str:
        header = "| " + " | ".join(self.cells.columns) + " |"
        rule = "|" + "|".join("---" for _ in self.cells.columns) + "|"
        body = ["| " + " | ".join(str(v) for v in row) + " |"
                for row in self.cells.itertuples(index=False, name=None)]
        notes = "\n".join(f"- {n}" for n in self.notes)
        return (f"**Table 4 layout.** {self.caption}\n\n" + "\n".join([header, rule, *body])
                + "\n\n" + notes + "\n")

    def to_latex(self) -> str:
        def tex(text: str) -> str:
            text = str(text).replace("%", r"\%").replace("#", r"\#").replace("±", r"$\pm$")
            text = text.replace("_", r"\_").replace("×", r"$\times$")
            if text.startswith("**") and text.endswith("**"):
                text = r"\textbf{" + text[2:-2] + "}"
            return text

        cols = list(self.cells.columns)
        lines = [r"\begin{table}[t]", r"\centering", r"\small",
                 r"\caption{" + tex(self.caption) + "}",
                 r"\begin{tabular}{ll" + "c" * (len(cols) - 2) + "}", r"\toprule",
                 " & ".join(tex(c) for c in cols) + r" \\", r"\midrule"]
        previous = None
        for row in self.cells.itertuples(index=False, name=None):
            if previous is not None and row[1] != previous:
                lines.append(r"\midrule")
            previous = row[1]
            lines.append(" & ".join(tex(v) for v in row) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
        lines += [r"\par\footnotesize " + tex(n) for n in self.notes]
        lines.append(r"\end{table}")
        return "\n".join(lines) + "\n"


def _fmt(mean: float, std: float, n: int, decimals: int) -> str:
    if n <= 1 or not math.isfinite(std):
        return f"{mean:.{decimals}f}"
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def _check_one_table(records: Sequence[dict]) -> None:
    import json

    for key in _SAME:
        values = {json.dumps(r.get(key) if key != "features" else r["spec"].get("features"),
                             sort_keys=True) for r in records}
        if len(values) > 1:
            raise TableMixError(f"The runs differ in {key!r} ({sorted(values)[:3]}); one table "
                                "holds runs of one dataset, test split and recipe only.")
    seen: dict = {}
    for r in records:
        cell = (r["method"], r["fraction"])
        seen.setdefault(cell, set()).add(r["settings_hash"])
    mixed = {k: v for k, v in seen.items() if len(v) > 1}
    if mixed:
        raise TableMixError(f"Cells mix runs with different settings: {mixed}.")


def table4(records: Sequence[dict], *, fractions=None, methods=None, quoted: bool = True,
           decimals: int = 2, grid_name: str | None = None) -> Table4:
    """Build the Table 4 layout from ``metrics.json`` records (status ``ok``).

    Parameters
    ----------
    records : sequence of dict
        Run records of one grid (:func:`~qd_lib.classification.experiment.grid_runs`).
    fractions : sequence of float, optional
        Rows to show (default: the fractions in the records); quoted rows only at these.
    methods : sequence of str, optional
        Columns to show (default: every column of :data:`METHOD_COLUMNS`, "–" where a method
        has no value).
    quoted : bool, default=True
        Append the supplement's quoted CIFAR-10 rows, labelled as such.
    decimals : int, default=2
    grid_name : str, optional
        Recorded in the provenance.

    Returns
    -------
    Table4

    Raises
    ------
    TableMixError
        When the records do not belong in one table.
    ValueError
        When there is nothing to show.
    """
    records = [r for r in records if r.get("status") == "ok"]
    if records:
        _check_one_table(records)
    if not records and not quoted:
        raise ValueError("No finished runs to tabulate (and quoted=False).")
    frame = pd.DataFrame([{"method": r["method"], "fraction": float(r["fraction"]),
                           "seed": r["seed"], "accuracy": 100.0 * r["accuracy"]}
                          for r in records], columns=["method", "fraction", "seed", "accuracy"])
    shown = list(methods) if methods is not None else list(METHOD_COLUMNS)
    unknown = [m for m in shown if m not in METHOD_COLUMNS]
    if unknown:
        raise ValueError(f"The 'methods' parameter holds unknown methods {unknown}; known: "
                         f"{list(METHOD_COLUMNS)}.")
    run_fracs = sorted(set(frame["fraction"])) if fractions is None else sorted(
        float(f) for f in fractions)
    first = records[0] if records else {}
    dataset_title = first.get("dataset_title", "")
    stand_in = bool(first.get("stand_in", False))
    recipe_line = _recipe_line(first.get("recipe")) if records else ""
    n_seeds = frame.groupby(["method", "fraction"])["seed"].nunique()
    source_run = (f"run here: {dataset_title}" if records else "")
    rows, long = [], []
    for f in run_fracs:
        sub = frame[frame["fraction"] == f]
        if sub.empty:
            continue
        stats = sub.groupby("method")["accuracy"].agg(["mean", "std", "count"])
        best = stats["mean"].max()
        row = {"Dataset fraction": fraction_label(f), "Source": source_run}
        for m in shown:
            if m in stats.index:
                mean, std, n = stats.loc[m, "mean"], stats.loc[m, "std"], int(stats.loc[m,
                                                                                         "count"])
                text = _fmt(mean, std, n, decimals)
                row[METHOD_COLUMNS[m]] = f"**{text}**" if np.isclose(mean, best) else text
                long.append({"fraction": f, "source": "run", "method": m, "mean": mean,
                             "std": std if n > 1 else np.nan, "n_seeds": n})
            else:
                row[METHOD_COLUMNS[m]] = "–"
        rows.append(row)
    if quoted:
        for f, values in SUPPLEMENT_TABLE4.items():
            if fractions is not None and not any(np.isclose(f, x) for x in run_fracs):
                continue
            row = {"Dataset fraction": fraction_label(f),
                   "Source": f"{QUOTED_LABEL} (CIFAR-10)"}
            for m in shown:
                if m in values:
                    mean, std, mark = values[m]
                    d = QUOTED_DECIMALS.get(m, 2)
                    row[METHOD_COLUMNS[m]] = f"{mean:.{d}f} ± {std:.{d}f}{mark}"
                    long.append({"fraction": f, "source": "quoted", "method": m, "mean": mean,
                                 "std": std, "n_seeds": None})
                else:
                    row[METHOD_COLUMNS[m]] = "–"
            rows.append(row)
    if not rows:
        raise ValueError("No finished runs at the requested fractions and no quoted rows.")
    cells = pd.DataFrame(rows, columns=["Dataset fraction", "Source",
                                        *[METHOD_COLUMNS[m] for m in shown]])
    seeds = sorted({int(r["seed"]) for r in records})
    what = dataset_title + (" (a stand-in, NOT CIFAR-10)" if stand_in and "NOT CIFAR-10"
                            not in dataset_title else "")
    caption = (f"Top-1 test accuracy (%) after the last epoch, mean ± std over seeds {seeds}, "
               f"of classifiers trained on coresets of the {what}: {recipe_line}. Best "
               "run-here mean per row in bold." if records else
               "Top-1 test accuracy (%) on CIFAR-10 as quoted by the supplement.")
    notes = []
    if records:
        counts = sorted(set(n_seeds.tolist()))
        notes.append(f"Run here: {len(records)} runs, {counts} seed(s) per cell, recipe "
                     f"{recipe_line}; selection features MobileNet-V2 (content, baselines' "
                     "embedding) + NSS (quality); CD probabilities from a cross-fitted linear "
                     "probe; class labels as the selectors' bins; '–': not run (ZCore is not "
                     "implemented here).")
        if stand_in:
            notes.append(f"The run-here rows are on the {dataset_title}: they are NOT CIFAR-10 "
                         "results and are not comparable with the quoted rows.")
    if quoted:
        notes.append(f"Rows marked '{QUOTED_LABEL}': {QUOTED_SOURCE}. They were not run here.")
    provenance = {"grid": grid_name, "dataset": first.get("dataset"),
                  "dataset_title": dataset_title, "stand_in": stand_in,
                  "recipe": first.get("recipe"), "features": (first.get("spec") or {}).get(
                      "features"),
                  "train_hash": first.get("train_hash"), "test_hash": first.get("test_hash"),
                  "n_runs": len(records), "run_ids": [r["run_id"] for r in records],
                  "seeds": seeds, "metric": "top-1 test accuracy (%) after the last epoch",
                  "std": "sample standard deviation over seeds (ddof=1)",
                  "quoted": ({"label": QUOTED_LABEL, "source": QUOTED_SOURCE,
                              "values": {str(k): v for k, v in SUPPLEMENT_TABLE4.items()}}
                             if quoted else None),
                  "git_commits": sorted({str(r.get("git_commit")) for r in records})}
    long_frame = pd.DataFrame(long, columns=["fraction", "source", "method", "mean", "std",
                                             "n_seeds"])
    long_frame["n_seeds"] = long_frame["n_seeds"].astype("Int64")
    return Table4(cells=cells, long=long_frame, provenance=provenance, caption=caption,
                  notes=notes)


def _recipe_line(recipe: dict | None) -> str:
    from qd_lib.classification.training import TrainRecipe

    return TrainRecipe.from_mapping(recipe).describe() if recipe else ""


def save_table4(table: Table4, name: str, *, folder=None) -> dict[str, Path]:
    """Write ``<name>_table4.{csv,md,tex,json}`` and ``<name>_table4_long.csv`` through
    :func:`qd_lib.viz.save_table` (default folder ``figures/cifar10/``)."""
    from qd_lib.viz import save_table

    folder = Path(folder) if folder is not None else figures_dir() / "cifar10"
    return save_table(table.cells, f"{name}_table4", folder=folder,
                      provenance={"layout": "supplement Table 4", "caption": table.caption,
                                  "notes": table.notes, **table.provenance},
                      markdown=table.to_markdown(), latex=table.to_latex(),
                      extra_csv={"long_csv": table.long})

"""Publication tables in the layout of the supplement's Table 2, built from run records.

Table 2 of the supplementary material compares the coreset methods for one IQA model (MUSIQ
there; MANIQA the same way): one block of rows per dataset fraction (5 %, 10 %, …, 95 %), one
row per method inside each block (Herding, k-Center, CD, Moderate, then Q-Diverse last), a
final *Full* row (training on the whole training split), and one group of columns per dataset
(KADID-10K, TID2013, KonIQ-10k, SPAQ, AGIQA-3K, PIPAL, FLIVE) with an SRCC and a PLCC
sub-column. The best value of each fraction block, dataset and metric is bold.

>>> from qd_lib.runner import collect_runs
>>> from qd_lib.runner.tables import paper_table, save_paper_table
>>> table = paper_table(collect_runs(sweep="paper"), model="musiq")      # doctest: +SKIP
>>> print(table.to_markdown())                                           # doctest: +SKIP
>>> save_paper_table(table, "paper_table2_musiq-paper")                  # doctest: +SKIP

Cells show the mean over seeds, with the standard deviation (ddof 1) when a cell has more than
one seed, and ``–`` where no run finished. A table refuses (:class:`RunRecordError`) to mix
runs evaluated on different test splits, with different inference policies, PLCC variants,
epoch rules or label normalisations, several models or configurations, or two runs of one
cell with the same seed (runs of different settings under one name).
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from qd_lib.data.budget import fraction_label
from qd_lib.metrics import METRICS
from qd_lib.paths import figures_dir
from qd_lib.runner.experiment import RunRecordError
from qd_lib.runner.records import (
    _POLICY_KEYS,
    _check_consistent,
    check_one_setting_per_cell,
    collect_runs,
    summarise,
)
from qd_lib.runner.spec import FULL_METHOD

logger = logging.getLogger(__name__)

#: Row order inside a fraction block: Random first, the baselines, Q-Diverse last (the
#: supplement's order; methods not listed go between the baselines and Q-Diverse).
METHOD_ORDER = ("random", "herding", "kcenter", "contextual_diversity", "moderate", "pgcs",
                "qdiverse")
MODEL_NAMES = {"maniqa": "MANIQA", "musiq": "MUSIQ", "basecnn": "BaseCNN"}
METRIC_NAMES = {"srcc": "SRCC", "plcc": "PLCC", "plcc_logistic": "PLCC (logistic)",
                "krcc": "KRCC", "rmse": "RMSE"}
#: Shown in a cell without a finished run.
MISSING = "–"
#: Settings one caption describes: they must be equal across the whole table.
TABLE_KEYS = ("plcc_variant", "epoch_rule", "label_norm")
CELL_KEYS = ("dataset", "fraction", "method")
LAYOUT = "supplement Table 2: rows = fraction x method (+ Full), columns = dataset x metric"


def method_label(method: str, names: Mapping[str, str] | None = None) -> str:
    """Display name of a selection method: ``names[method]`` when given, else the registry's
    title (``kcenter`` → ``k-Center Greedy``); ``full`` is "Full", other names stay as they
    are (variants such as ``qdiverse[gamma=0.7]`` keep their own)."""
    if names and method in names:
        return names[method]
    if method == FULL_METHOD:
        return "Full"
    from qd_lib.selection import available_methods, get_method

    return get_method(method).label if method in available_methods() else str(method)


def dataset_label(dataset: str, names: Mapping[str, str] | None = None) -> str:
    """Display name of a dataset: its title for a registered one (``kadid10k`` →
    ``KADID-10K``), else the name itself (``proxy-tiny``)."""
    if names and dataset in names:
        return names[dataset]
    from qd_lib.data.builders import get_spec

    try:
        return get_spec(dataset).title
    except (KeyError, ValueError, TypeError):
        return str(dataset)


def order_methods(methods) -> list[str]:
    """Methods in the table's row order: :data:`METHOD_ORDER`, unknown names (sorted) before
    ``qdiverse``; ``full`` is left out (it is the bottom row)."""
    methods = [m for m in dict.fromkeys(methods) if m != FULL_METHOD]
    known = [m for m in METHOD_ORDER if m in methods and m != "qdiverse"]
    other = sorted(m for m in methods if m not in METHOD_ORDER)
    return known + other + (["qdiverse"] if "qdiverse" in methods else [])


def order_datasets(datasets) -> list[str]:
    """Datasets in the supplement's column order (Table 1's), others after them, sorted."""
    from qd_lib.data.builders import available_datasets, resolve_name

    order = {name: i for i, name in enumerate(available_datasets())}

    def key(name):
        try:
            return (0, order[resolve_name(name)], str(name))
        except (KeyError, ValueError, TypeError):
            return (1, 0, str(name))

    return sorted(dict.fromkeys(datasets), key=key)


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}"}


def latex_escape(text) -> str:
    """``text`` with LaTeX's special characters escaped (``_`` → ``\\_``, ``%`` → ``\\%``…)."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def markdown_escape(text) -> str:
    """``text`` safe inside a Markdown table cell (``|``, ``*``, ``_`` and backticks)."""
    return re.sub(r"([\\|*_`])", r"\\\1", str(text))


def _key(fraction) -> float:
    return round(float(fraction), 10)


@dataclass
class PaperTable:
    """One model's results in the supplement's Table 2 layout.

    Attributes
    ----------
    model, config : str
        The model and its configuration (one per table).
    metrics : tuple of str
        The metric sub-columns of each dataset, in order.
    datasets : list of str
        The dataset column groups, in order.
    rows : list of tuple
        ``(fraction, method)`` per row, in order; the Full row is ``(None, "full")``.
    cells : pandas.DataFrame
        One row per table cell: fraction (NaN for Full), method, dataset, metric, mean, std,
        n_seeds, best (bold).
    proxy : bool
        The runs are on a PROXY benchmark (MOS from full-reference metrics); the caption says so.
    provenance : dict
        Run ids, test-split hashes, PLCC variant, epoch rule, seeds, versions, git commits.
    decimals : int
        Decimals shown.
    with_std : bool
        Show ``± std`` in cells with more than one seed.
    """

    model: str
    config: str
    metrics: tuple
    datasets: list
    rows: list
    cells: pd.DataFrame
    proxy: bool = False
    provenance: dict = field(default_factory=dict)
    decimals: int = 4
    with_std: bool = True
    method_names: dict = field(default_factory=dict)
    dataset_names: dict = field(default_factory=dict)

    # -- what the renderers share -------------------------------------------------------------
    @property
    def key(self) -> str:
        """``"<model>-<config>"``, used in file names."""
        return f"{self.model}-{self.config}"

    @property
    def fractions(self) -> list[float]:
        """The fraction blocks, in order."""
        return list(dict.fromkeys(f for f, _ in self.rows if f is not None))

    @property
    def methods(self) -> list[str]:
        """The methods of the rows, in order (``full`` last when present)."""
        return list(dict.fromkeys(m for _, m in self.rows))

    def _cell(self, fraction, method, dataset, metric) -> pd.Series:
        c = self.cells
        hit = c[(c["method"] == method) & (c["dataset"] == dataset) & (c["metric"] == metric)
                & ((c["fraction"].isna()) if fraction is None else
                   (c["fraction"].round(10) == _key(fraction)))]
        return hit.iloc[0]

    def caption(self, *, latex: bool = False) -> str:
        """The table's caption (model, metrics, seeds, PLCC variant, epoch rule, bold rule and,
        for a proxy benchmark, the PROXY note)."""
        pm = r"$\pm$" if latex else "±"
        esc = latex_escape if latex else (lambda s: s)
        model = MODEL_NAMES.get(self.model, self.model)
        metrics = " and ".join(METRIC_NAMES.get(m, m.upper()) for m in self.metrics)
        present = self.cells.dropna(subset=["mean"])
        counts = sorted({int(n) for n in present["n_seeds"]}) if len(present) else [0]
        seeds = (f"{counts[0]} seed{'s' * (counts[0] != 1)}" if len(counts) == 1 else
                 f"{counts[0]}–{counts[-1]} seeds per cell")
        stat = f"mean {pm} std over {seeds}" if self.with_std and counts[-1] > 1 else (
            f"mean over {seeds}" if counts[-1] > 1 else f"{seeds}, no std")
        prov = self.provenance
        settings = ", ".join(f"{label} {esc(str(prov[key]))}" for key, label in (
            ("plcc_variant", "PLCC variant"), ("epoch_rule", "epoch rule"),
            ("label_norm", "labels")) if prov.get(key) is not None)
        full = "; Full, the whole training split, is not ranked" if any(
            f is None for f, _ in self.rows) else ""
        text = (f"Coreset selection methods for {esc(model)} (configuration "
                f"{esc(self.config)}), trained on the dataset fraction chosen by each method and "
                f"evaluated on each dataset's fixed test split: {metrics}, {stat}"
                f"{' (' + settings + ')' if settings else ''}. Bold: the best value per "
                f"fraction, dataset and metric (ties all bold{full})"
                + (f"; {'--' if latex else MISSING}: no finished run."
                   if self.cells["mean"].isna().any() else "."))
        if self.proxy:
            from qd_lib.data.synthetic import PROXY_LABEL

            flag = r"\textbf{PROXY}" if latex else "**PROXY**"
            text += " " + esc(PROXY_LABEL).replace("PROXY", flag, 1) + "."
        return text

    def _text(self, cell: pd.Series, *, latex: bool) -> str:
        mean, std, n = cell["mean"], cell["std"], cell["n_seeds"]
        if pd.isna(mean):
            return "--" if latex else MISSING
        value = f"{mean:.{self.decimals}f}"
        if latex and value.startswith("-"):
            value = "$-$" + value[1:]  # a minus sign, not a hyphen
        if cell["best"]:
            value = rf"\textbf{{{value}}}" if latex else f"**{value}**"
        if self.with_std and not pd.isna(std) and n > 1:
            spread = f"{std:.{self.decimals}f}"
            value += rf"{{\scriptsize\,$\pm$\,{spread}}}" if latex else f" ± {spread}"
        return value

    def _body(self, *, latex: bool) -> list[tuple[str, str, list[str], bool]]:
        """(fraction label, method label, cells, starts a block) per row."""
        esc = latex_escape if latex else markdown_escape
        out, previous = [], object()
        for fraction, method in self.rows:
            first = fraction != previous
            previous = fraction
            if fraction is None:
                label, name = method_label(FULL_METHOD, self.method_names), ""
            else:
                label = fraction_label(fraction) if first else ""
                name = method_label(method, self.method_names)
            cells = [self._text(self._cell(fraction, method, d, m), latex=latex)
                     for d in self.datasets for m in self.metrics]
            out.append((esc(label), esc(name), cells, first))
        return out

    def column_labels(self) -> list[str]:
        """Flat column labels, ``"<dataset> <METRIC>"`` after the two row-label columns."""
        return ["Dataset fraction", "Methods"] + [
            f"{dataset_label(d, self.dataset_names)} {METRIC_NAMES.get(m, m.upper())}"
            for d in self.datasets for m in self.metrics]

    # -- renderers ----------------------------------------------------------------------------
    def to_markdown(self, *, caption: bool = True) -> str:
        """GitHub-flavoured Markdown: the caption (with the PROXY note) above the table."""
        header = [markdown_escape(c) for c in self.column_labels()]
        lines = ["| " + " | ".join(header) + " |",
                 "|---|---|" + "---:|" * (len(header) - 2)]
        for label, name, cells, _ in self._body(latex=False):
            lines.append("| " + " | ".join([label, name, *cells]) + " |")
        text = "\n".join(lines) + "\n"
        if caption:
            title = f"**Table 2 layout: {MODEL_NAMES.get(self.model, self.model)} " \
                    f"({self.config}).** {self.caption()}"
            text = f"{title}\n\n{text}"
        return text

    def to_latex(self, *, environment: str | None = "table*", label: str | None = None) -> str:
        """LaTeX with booktabs rules (``\\usepackage{booktabs}``; nothing else needed).

        Parameters
        ----------
        environment : str or None, default="table*"
            Float environment with caption and label around the tabular (``None``: the
            tabular alone).
        label : str, optional
            ``\\label``; default ``tab:table2-<model>-<config>``.
        """
        n_metrics = len(self.metrics)
        spec = "ll" + "c" * (len(self.datasets) * n_metrics)
        groups = [rf"\multicolumn{{{n_metrics}}}{{c}}"
                  rf"{{{latex_escape(dataset_label(d, self.dataset_names))}}}"
                  for d in self.datasets]
        rules = " ".join(rf"\cmidrule(lr){{{3 + i * n_metrics}-{2 + (i + 1) * n_metrics}}}"
                         for i in range(len(self.datasets)))
        metric_row = [latex_escape(METRIC_NAMES.get(m, m.upper()))
                      for _ in self.datasets for m in self.metrics]
        lines = [r"\begin{tabular}{" + spec + "}", r"\toprule",
                 " & ".join(["Dataset fraction", "Methods", *groups]) + r" \\"]
        if rules:
            lines.append(rules)
        lines += [" & ".join(["", "", *metric_row]) + r" \\", r"\midrule"]
        for i, (frac, name, cells, first) in enumerate(self._body(latex=True)):
            if first and i > 0:
                lines.append(r"\midrule")
            lines.append(" & ".join([frac, name, *cells]) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
        head = [f"% {LAYOUT}; generated by qd_lib.runner.tables from "
                f"{len(self.provenance.get('run_ids', []))} run records (regenerate, do not "
                "edit). Needs \\usepackage{booktabs}."]
        if self.proxy:
            head.append("% PROXY benchmark: MOS from full-reference metrics, not human ratings.")
        if environment is None:
            return "\n".join(head + lines) + "\n"
        label = label or "tab:table2-" + re.sub(r"[^A-Za-z0-9-]+", "-", self.key)
        return "\n".join([
            *head, rf"\begin{{{environment}}}[t]", r"\centering", r"\small",
            r"\setlength{\tabcolsep}{3pt}", rf"\caption{{{self.caption(latex=True)}}}",
            rf"\label{{{label}}}", *lines, rf"\end{{{environment}}}"]) + "\n"

    def to_frame(self) -> pd.DataFrame:
        """Wide numbers: one row per table row (fraction, method), columns
        ``<dataset>_<metric>_{mean,std,n}``."""
        records = []
        for fraction, method in self.rows:
            row = {"fraction": "full" if fraction is None else fraction, "method": method}
            for d in self.datasets:
                for m in self.metrics:
                    cell = self._cell(fraction, method, d, m)
                    row[f"{d}_{m}_mean"] = cell["mean"]
                    row[f"{d}_{m}_std"] = cell["std"]
                    row[f"{d}_{m}_n"] = int(cell["n_seeds"])
                    row[f"{d}_{m}_best"] = bool(cell["best"])
            records.append(row)
        return pd.DataFrame(records)


# -- building -------------------------------------------------------------------------------
def _check_metrics(metrics) -> tuple[str, ...]:
    if isinstance(metrics, str):
        metrics = (metrics,)
    metrics = tuple(metrics)
    if not metrics:
        raise ValueError("The 'metrics' parameter must name at least one metric. Got () instead.")
    for m in metrics:
        if m not in METRICS:
            raise ValueError(f"The 'metrics' parameter must hold names from {list(METRICS)}. "
                             f"Got {m!r} instead.")
    return metrics


def _one_model(frame: pd.DataFrame, model, config) -> tuple[pd.DataFrame, str, str]:
    if model is not None and "/" in str(model) and config is None:
        model, config = str(model).split("/", 1)
    for name, value in (("model", model), ("config", config)):
        if value is None:
            continue
        if name not in frame.columns:
            raise ValueError(f"The {name!r} parameter needs a {name!r} column in the runs.")
        present = sorted(frame[name].dropna().astype(str).unique())
        if str(value) not in present:
            raise ValueError(f"The {name!r} parameter must be one of {present}. Got {value!r} "
                             "instead.")
        frame = frame[frame[name].astype(str) == str(value)]
    if not {"model", "config"} <= set(frame.columns):
        return frame, str(model), str(config)
    pairs = sorted({(str(m), str(c)) for m, c in zip(frame["model"], frame["config"])})
    if len(pairs) > 1:
        listed = ", ".join(f"{m}/{c}" for m, c in pairs)
        raise RunRecordError(
            f"The runs hold {len(pairs)} model/configuration pairs ({listed}); a Table 2 shows "
            f"one model. Pass model={pairs[0][0]!r} and config={pairs[0][1]!r} (or "
            f"model='{pairs[0][0]}/{pairs[0][1]}'), or call paper_tables() for one table per "
            "model.")
    return frame, pairs[0][0], pairs[0][1]


def _check_table_wide(runs: pd.DataFrame) -> None:
    for column in TABLE_KEYS:
        values = runs[column].dropna().unique()
        if len(values) > 1:
            counts = runs.groupby(column)["run_id"].count().to_dict()
            raise RunRecordError(
                f"The runs of this table differ in {column} ({counts} runs per value); one "
                "Table 2 must not mix them. Filter the runs (e.g. by sweep) or re-run them.")


def _check_one_run_per_seed(runs: pd.DataFrame) -> None:
    dup = runs.duplicated(["dataset", "fraction", "method", "seed"], keep=False)
    if dup.any():
        first = runs[dup].sort_values(["dataset", "fraction", "method", "seed"]).iloc[0]
        same = runs[dup & (runs["dataset"] == first["dataset"]) & (runs["method"] ==
                    first["method"]) & (runs["fraction"] == first["fraction"]) &
                    (runs["seed"] == first["seed"])]
        raise RunRecordError(
            f"{int(dup.sum())} runs share a table cell and seed, e.g. dataset "
            f"{first['dataset']!r}, fraction {first['fraction']}, method {first['method']!r}, "
            f"seed {first['seed']}: run_id {sorted(same['run_id'])}. They differ in other "
            "settings (method options, overrides, features); filter the runs (sweep_runs() "
            "keeps the runs of a sweep file's current grid) so each cell has one run per seed.")


def _in(values: pd.Series, wanted) -> pd.Series:
    wanted = {_key(v) for v in wanted}
    return values.astype(float).round(10).isin(wanted)


def paper_table(data: pd.DataFrame, *, model: str | None = None, config: str | None = None,
                metrics: Sequence[str] = ("srcc", "plcc"), datasets: Sequence[str] | None = None,
                fractions: Sequence[float] | None = None, methods: Sequence[str] | None = None,
                include_full: bool = True, decimals: int = 4, with_std: bool = True,
                proxy: bool | None = None, method_names: Mapping[str, str] | None = None,
                dataset_names: Mapping[str, str] | None = None) -> PaperTable:
    """One model's results in the layout of the supplement's Table 2.

    Parameters
    ----------
    data : pandas.DataFrame
        Runs as :func:`qd_lib.runner.collect_runs` returns them (checked for consistency), or
        a :func:`qd_lib.runner.summarise` output grouped by at least dataset, fraction and
        method (checked when it was made; no provenance beyond its run ids).
    model, config : str, optional
        The model (``"musiq"``, or ``"musiq/paper"`` for both) and configuration; needed when
        the runs hold more than one.
    metrics : sequence of str, default=("srcc", "plcc")
        Sub-columns of each dataset.
    datasets, fractions, methods : sequence, optional
        Columns, fraction blocks and method rows to show (default: those in the runs).
        Datasets and methods keep the order given; fraction blocks are always shown in
        increasing order, as in the supplement. A requested one without runs shows ``–``.
        ``"full"`` among ``methods`` forces the Full row.
    include_full : bool, default=True
        Add the Full row (method ``full``) at the bottom when such runs exist.
    decimals : int, default=4
        Decimals shown; ties are decided on the shown values.
    with_std : bool, default=True
        Show ``± std`` (ddof 1) in cells with more than one seed.
    proxy : bool, optional
        Override the records' ``proxy`` flag (for a summary without it).
    method_names, dataset_names : mapping, optional
        Display names replacing the registry titles of methods or the dataset titles.

    Returns
    -------
    PaperTable
        Render with ``to_markdown()`` / ``to_latex()``; save with :func:`save_paper_table`.

    Raises
    ------
    RunRecordError
        If the runs hold several models or configurations (pass ``model=``), differ in
        test-split hash or inference policy within a dataset, in PLCC variant, epoch rule or
        label normalisation anywhere in the table, or hold two runs of one cell and seed.
    ValueError
        If ``data`` is empty or lacks a column, or ``model``, ``config``, ``metrics`` or
        ``decimals`` is invalid.

    Notes
    -----
    Bold marks the best shown value of each fraction block, dataset and metric (the highest,
    or the lowest for RMSE), ties included, when the block has at least two values to compare;
    the Full row is a reference and is not ranked.
    """
    metrics = _check_metrics(metrics)
    if isinstance(decimals, bool) or not isinstance(decimals, (int, np.integer)) or \
            not 1 <= decimals <= 8:
        raise ValueError(f"The 'decimals' parameter must be an int in the range [1, 8]. Got "
                         f"{decimals!r} instead.")
    if data is None or len(data) == 0:
        raise ValueError("No runs to tabulate: the 'data' parameter is empty.")
    is_summary = "run_id" not in data.columns and all(f"{m}_mean" in data.columns
                                                      for m in metrics)
    need = (*CELL_KEYS, *((f"{m}_mean" for m in metrics) if is_summary else
                          ("run_id", "model", "config", "seed", "n_test", "test_split_hash",
                           *_POLICY_KEYS, *metrics)))
    missing = [c for c in need if c not in data.columns]
    if missing:
        raise ValueError(f"The 'data' parameter lacks the column(s) {missing}.")
    frame, model, config = _one_model(data, model, config)

    # what to show
    force_full = methods is not None and FULL_METHOD in methods
    if datasets is not None:
        frame = frame[frame["dataset"].isin(list(datasets))]
    if methods is not None:
        methods = list(methods)
        frame = frame[frame["method"].isin(methods) | (frame["method"] == FULL_METHOD)]
    if fractions is not None:
        frame = frame[(frame["method"] == FULL_METHOD) | _in(frame["fraction"], fractions)]
    include_full = include_full or force_full
    if not include_full:
        frame = frame[frame["method"] != FULL_METHOD]
    is_full = frame["method"] == FULL_METHOD
    if len(frame) == 0:
        raise ValueError("No runs left to tabulate after the datasets/fractions/methods filters.")
    show_datasets = list(datasets) if datasets is not None else order_datasets(frame["dataset"])
    show_methods = ([m for m in methods if m != FULL_METHOD] if methods is not None else
                    order_methods(frame.loc[~is_full, "method"]))
    show_fractions = sorted({_key(f) for f in (fractions if fractions is not None else
                                                frame.loc[~is_full, "fraction"])})
    rows = [(f, m) for f in show_fractions for m in show_methods]
    if include_full and (is_full.any() or force_full):
        rows.append((None, FULL_METHOD))

    # the numbers
    if is_summary:
        summary, runs = frame, None
        if "n_seeds" not in summary.columns:
            summary = summary.assign(n_seeds=1)
        if summary.duplicated(list(CELL_KEYS)).any():
            raise ValueError("The 'data' parameter (a summary) has several rows per dataset, "
                             "fraction and method; summarise the runs by those keys (and "
                             "model/config) only.")
    else:
        runs = frame
        _check_consistent(runs)
        _check_table_wide(runs)
        _check_one_run_per_seed(runs)
        check_one_setting_per_cell(runs, ("dataset", "fraction", "method"))
        summary = summarise(runs, by=CELL_KEYS, metrics=metrics)
    index = {(r["dataset"], r["method"], None if r["method"] == FULL_METHOD else
              _key(r["fraction"])): r for _, r in summary.iterrows()}
    records = []
    for fraction, method in rows:
        for d in show_datasets:
            hit = index.get((d, method, fraction))
            for m in metrics:
                records.append({
                    "fraction": np.nan if fraction is None else fraction, "method": method,
                    "dataset": d, "metric": m,
                    "mean": np.nan if hit is None else float(hit[f"{m}_mean"]),
                    "std": np.nan if hit is None or f"{m}_std" not in hit else
                    float(hit[f"{m}_std"]),
                    "n_seeds": 0 if hit is None or pd.isna(hit[f"{m}_mean"]) else
                    int(hit["n_seeds"]),
                    "best": False})
    cells = pd.DataFrame(records, columns=["fraction", "method", "dataset", "metric", "mean",
                                           "std", "n_seeds", "best"])
    _mark_best(cells, decimals)

    if proxy is None:
        proxy = bool("proxy" in frame.columns and frame["proxy"].fillna(False).astype(bool).any())
    provenance = _provenance(frame, runs, model=model, config=config, metrics=metrics,
                             datasets=show_datasets, fractions=show_fractions,
                             methods=[m for _, m in dict.fromkeys(
                                 (None, m) for _, m in rows)], decimals=decimals, proxy=proxy)
    return PaperTable(model=model, config=config, metrics=metrics, datasets=show_datasets,
                      rows=rows, cells=cells, proxy=proxy, provenance=provenance,
                      decimals=decimals, with_std=with_std, method_names=dict(method_names or {}),
                      dataset_names=dict(dataset_names or {}))


def _mark_best(cells: pd.DataFrame, decimals: int) -> None:
    ranked = cells[cells["method"] != FULL_METHOD].dropna(subset=["mean"])
    for (_, _, metric), group in ranked.groupby(["fraction", "dataset", "metric"]):
        if len(group) < 2:
            continue  # nothing to compare
        shown = group["mean"].round(decimals)
        higher = METRICS[metric].higher_is_better
        best = shown.max() if higher else shown.min()
        cells.loc[shown.index[shown == best], "best"] = True


def _provenance(frame, runs, *, model, config, metrics, datasets, fractions, methods,
                decimals, proxy) -> dict:
    if runs is None:  # a summary: its run ids only
        ids = sorted(r for ids in frame.get("run_ids", pd.Series(dtype=object)).dropna()
                     for r in ids)
        return {"layout": LAYOUT, "model": model, "config": config, "metrics": list(metrics),
                "datasets": datasets, "fractions": fractions, "methods": methods,
                "run_ids": ids, "n_runs": len(ids), "proxy": proxy, "decimals": decimals}

    def unique(column):
        if column not in runs.columns:
            return []
        return sorted({v for v in runs[column].dropna().tolist()}, key=str)

    def single(column):
        values = unique(column)
        return values[0] if len(values) == 1 else (values or None)

    policies = {d: json.loads(p) for d, p in
                runs.dropna(subset=["inference_policy"]).groupby("dataset")["inference_policy"]
                .first().items()}
    versions = [json.loads(v) for v in unique("versions")]
    dirty = runs["git_dirty"].dropna() if "git_dirty" in runs.columns else pd.Series([])
    return {
        "layout": LAYOUT, "model": model, "config": config, "metrics": list(metrics),
        "datasets": datasets, "fractions": fractions, "methods": methods,
        "run_ids": sorted(runs["run_id"]), "n_runs": int(len(runs)),
        "seeds": [int(s) for s in unique("seed")], "sweeps": unique("sweep"),
        "test_split_hashes": {d: sorted(g.dropna().unique().tolist()) for d, g in
                              runs.groupby("dataset")["test_split_hash"]},
        "plcc_variant": single("plcc_variant"), "epoch_rule": single("epoch_rule"),
        "label_norm": single("label_norm"), "inference_policy": policies,
        "features": unique("features"), "proxy": proxy,
        "git_commits": unique("git_commit"),
        "git_dirty": bool(dirty.astype(bool).any()) if len(dirty) else None,
        "versions": [v for v in versions if v], "decimals": decimals,
        "bold": "best shown value per fraction, dataset and metric; ties all bold; Full not "
                "ranked; a block with one value has no bold"}


def paper_tables(data: pd.DataFrame, *, models: Sequence[str] | None = None,
                 **kwargs) -> dict[str, PaperTable]:
    """One :func:`paper_table` per model/configuration in ``data``.

    Parameters
    ----------
    data : pandas.DataFrame
        Runs (or a summary) holding one or more models.
    models : sequence of str, optional
        Only these (``"maniqa"`` or ``"maniqa/tiny"``), in this order; default: every
        model/configuration in the runs, sorted.
    **kwargs
        Passed to :func:`paper_table`.

    Returns
    -------
    dict of str to PaperTable
        Keyed ``"<model>-<config>"``.
    """
    if data is None or len(data) == 0:
        raise ValueError("No runs to tabulate: the 'data' parameter is empty.")
    pairs = sorted({(str(m), str(c)) for m, c in zip(data["model"], data["config"])})
    if models is not None:
        if isinstance(models, str):
            models = [models]
        chosen = []
        for entry in models:
            name, _, cfg = str(entry).partition("/")
            hits = [p for p in pairs if p[0] == name and (not cfg or p[1] == cfg)]
            if not hits:
                raise ValueError(f"The 'models' parameter must hold names from "
                                 f"{[f'{m}/{c}' for m, c in pairs]}. Got {entry!r} instead.")
            chosen += [p for p in hits if p not in chosen]
        pairs = chosen
    return {f"{m}-{c}": paper_table(data, model=m, config=c, **kwargs) for m, c in pairs}


# -- saving ---------------------------------------------------------------------------------
def save_paper_table(table: PaperTable, name: str, *, folder=None) -> dict[str, Path]:
    """Write ``<name>.md``, ``.tex``, ``.csv`` (wide), ``_long.csv`` (one row per cell) and
    ``.json`` (provenance) atomically under ``figures/tables/`` (or ``folder``), with the one
    table writer :func:`qd_lib.viz.save_table`.

    Returns
    -------
    dict of str to Path
        Keys ``md``, ``tex``, ``csv``, ``long_csv``, ``json``.
    """
    from qd_lib.viz.figures import save_table as write_table

    return write_table(table.to_frame(), name,
                       folder=folder if folder is not None else figures_dir() / "tables",
                       provenance={**table.provenance, "caption": table.caption()},
                       markdown=table.to_markdown(), latex=table.to_latex(),
                       csv_float_format="%.10g", extra_csv={"long_csv": table.cells})


def save_paper_tables(tables: Mapping[str, PaperTable], name: str, *,
                      folder=None) -> dict[str, dict[str, Path]]:
    """:func:`save_paper_table` for each table as ``<name>_table2_<model>-<config>``."""
    return {key: save_paper_table(table, f"{name}_table2_{key}", folder=folder)
            for key, table in tables.items()}


def sweep_runs(sweep, runs_root=None, *, status: str | None = "ok") -> pd.DataFrame:
    """The finished runs of a sweep file's current grid (:func:`qd_lib.runner.expand`), not
    runs left over from an earlier version of the file under the same sweep name.

    Parameters
    ----------
    sweep : path or mapping
        A sweep file or its content.
    runs_root : path, optional
        Default :func:`qd_lib.paths.runs_dir`.
    status : {"ok", "failed", None}, default="ok"
        As in :func:`qd_lib.runner.collect_runs`.
    """
    from qd_lib.runner.spec import expand

    ids = {spec.run_id for spec in expand(sweep)}
    runs = collect_runs(runs_root, status=status)
    if runs.empty:
        return runs
    runs = runs[runs["run_id"].isin(ids)].reset_index(drop=True)
    if len(runs) < len(ids):
        logger.info("%d of the sweep's %d runs have no %s record yet", len(ids) - len(runs),
                    len(ids), status or "")
    return runs

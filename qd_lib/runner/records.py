"""Results tables built from run records only (never typed in).

1. :func:`collect_runs` reads every ``<runs>/<run_id>/metrics.json``, checks its schema version,
   keeps the ``ok`` runs (the count of others is logged) and returns one row per run.
2. :func:`summarise` gives mean ± std over seeds per dataset × model × fraction × method and
   refuses to mix runs evaluated on different test splits (or with different inference
   policies or epoch rules) of one dataset.
3. :func:`format_table` renders it as Markdown (best value per dataset, fraction and metric in
   bold); :func:`save_table` writes ``.md``, ``.csv`` and a ``.json`` with the source run ids
   under ``figures/tables/``.

The supplement's Table 2 layout (fractions × methods by datasets × metrics, one model, Markdown
and LaTeX) is built from the same records by :mod:`qd_lib.runner.tables`.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from qd_lib.data.budget import fraction_label
from qd_lib.data.catalog import canonical_dataset_name
from qd_lib.metrics import METRICS
from qd_lib.paths import display_path, figures_dir, runs_dir
from qd_lib.runner.experiment import METRICS as METRICS_FILE
from qd_lib.runner.experiment import RunRecordError, earlier_attempt_seconds, read_record
from qd_lib.utils.machine import machine_label

logger = logging.getLogger(__name__)

DEFAULT_BY = ("dataset", "model", "config", "fraction", "method")
_POLICY_KEYS = ("inference_policy", "epoch_rule", "label_norm", "plcc_variant")


def collect_runs(runs_root=None, *, status: str | None = "ok", sweep: str | None = None,
                 model: str | None = None) -> pd.DataFrame:
    """One row per run record under ``runs_root``.

    Parameters
    ----------
    runs_root : path, optional
        Default :func:`qd_lib.paths.runs_dir`.
    status : {"ok", "failed", None}, default="ok"
        Keep runs with this status (``None``: all); the number left out is logged.
    sweep, model : str, optional
        Keep only runs of this sweep name or model.

    Returns
    -------
    pandas.DataFrame
        Columns: run_id, sweep, dataset, scheme, model, config, method, fraction, seed, status,
        the metrics (srcc, plcc, plcc_logistic, krcc, rmse), val_srcc/val_plcc/val_epoch (the
        last validation, where the recipe had ``val_every``), best_srcc/best_plcc/best_epoch
        (best on test, where recorded), n_train, n_test, test_split_hash, manifest_hash (the
        build of the dataset the run trained on), inference_policy
        (JSON text), epoch_rule, label_norm, plcc_variant, proxy, features, seconds (what the
        run took, a resumed run's earlier attempts included: :func:`run_seconds`), machine
        (where the run ran, :func:`~qd_lib.utils.machine.machine_label`; empty for runs
        recorded before machines were kept), load_15min (the machine's 15-minute load average
        when the run finished), error,
        spec_hash, git_commit, git_dirty, versions (JSON text), settings (JSON text of the run
        spec without its seed) and settings_hash: runs that may share a table cell.

    Raises
    ------
    RunRecordError
        For a record that cannot be read or comes from an incompatible schema version.
    """
    root = Path(runs_root) if runs_root is not None else runs_dir()
    rows = []
    for path in sorted(root.glob(f"*/{METRICS_FILE}")):
        record = read_record(path)
        metrics = record.get("metrics") or {}
        best = record.get("best_on_test") or {}
        features = record.get("features") or {}
        rows.append({
            "run_id": record.get("run_id"), "sweep": record.get("sweep"),
            "dataset": canonical_dataset_name(record.get("dataset")),
            "scheme": record.get("scheme"),
            "model": record.get("model"), "config": record.get("config"),
            "method": record.get("method"), "fraction": record.get("fraction"),
            "seed": record.get("seed"), "status": record.get("status"),
            **{name: _num(metrics.get(name)) for name in METRICS},
            **_last_val(record.get("history")),
            "best_srcc": _num(best.get("srcc")), "best_plcc": _num(best.get("plcc")),
            "best_epoch": best.get("epoch"),
            "n_train": record.get("n_train"), "n_test": record.get("n_test"),
            "test_split_hash": record.get("test_split_hash"),
            "manifest_hash": record.get("manifest_hash"),
            "inference_policy": json.dumps(record.get("inference_policy"), sort_keys=True),
            "epoch_rule": record.get("epoch_rule"), "label_norm": record.get("label_norm"),
            "plcc_variant": record.get("plcc_variant"), "proxy": record.get("proxy"),
            "features": features.get("label") or features.get("source"),
            "seconds": run_seconds(record),
            "machine": machine_label(record.get("machine")),
            "load_15min": _num((record.get("load_average") or [None] * 3)[-1]),
            "error": (record.get("error") or {}).get("message"),
            "spec_hash": record.get("spec_hash"), "git_commit": record.get("git_commit"),
            "git_dirty": record.get("git_dirty"),
            "versions": json.dumps(record.get("versions"), sort_keys=True),
            **_settings(record.get("spec"))})
    table = pd.DataFrame(rows)
    if table.empty:
        logger.warning("no run records under %s", display_path(root))
        return table
    if sweep is not None:
        table = table[table["sweep"] == sweep]
    if model is not None:
        table = table[table["model"] == model]
    if status is not None:
        left_out = int((table["status"] != status).sum())
        if left_out:
            logger.info("left out %d run(s) whose status is not %r", left_out, status)
        table = table[table["status"] == status]
    dup = table["spec_hash"].duplicated(keep=False)
    if dup.any():
        logger.warning("%d records share a spec_hash (copied run folders?)", int(dup.sum()))
    return table.reset_index(drop=True)


_NOT_SETTINGS = ("seed", "sweep", "root", "alias")


def run_seconds(record: dict) -> float | None:
    """What a run took, resumed or not: ``seconds`` of its record, plus, for a resumed run
    recorded before records counted earlier attempts (no ``attempt_seconds``), the epoch
    times of those attempts (:func:`earlier_attempt_seconds`). Without this a run stopped in
    its last epoch and resumed looks a few minutes long, and wall-time estimates sink."""
    seconds = record.get("seconds")
    if seconds is None or "attempt_seconds" in record:
        return seconds
    return round(seconds + earlier_attempt_seconds(record.get("history"),
                                                   record.get("resumed_from_epoch")), 3)


def _last_val(history) -> dict:
    """SRCC/PLCC on the validation split after the last epoch that was validated (NaN when
    the run had no validation: recipe ``val_every``)."""
    for entry in reversed(history or []):
        if isinstance(entry, dict) and "val" in entry:
            return {"val_srcc": _num(entry["val"].get("srcc")),
                    "val_plcc": _num(entry["val"].get("plcc")), "val_epoch": entry.get("epoch")}
    return {"val_srcc": float("nan"), "val_plcc": float("nan"), "val_epoch": None}


def _settings(spec) -> dict:
    """The run spec without what may differ between runs averaged in one cell (the seed)."""
    if not isinstance(spec, dict):
        return {"settings": None, "settings_hash": None}
    kept = {k: v for k, v in spec.items() if k not in _NOT_SETTINGS}
    text = json.dumps(kept, sort_keys=True)
    return {"settings": text, "settings_hash": hashlib.sha256(text.encode()).hexdigest()[:16]}


def check_one_setting_per_cell(runs: pd.DataFrame, by: Sequence[str]) -> None:
    """Refuse to average runs that differ in anything but the seed (method options, model
    overrides, features, ...) in one cell of ``by``.

    Raises
    ------
    RunRecordError
        Naming the cell, the settings that differ and their values.
    """
    if "settings_hash" not in runs.columns:
        return
    for key, group in runs.groupby(list(by), sort=True, dropna=False):
        if group["settings_hash"].dropna().nunique() <= 1:
            continue
        specs = [json.loads(t) for t in group["settings"].dropna().unique()]
        fields = sorted({f for sp in specs for f in sp
                         if len({json.dumps(x.get(f), sort_keys=True) for x in specs}) > 1})
        shown = {f: sorted({json.dumps(x.get(f), sort_keys=True) for x in specs})
                 for f in fields}
        cell = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        raise RunRecordError(
            f"The runs of cell {cell} differ in more than their seed: {shown}. A mean over "
            "seeds must not mix settings; filter the runs (e.g. sweep_runs() for a sweep "
            "file's current grid) or give the variants their own method name.")


def _num(value) -> float:
    return float("nan") if value is None else float(value)


def _check_consistent(runs: pd.DataFrame) -> None:
    for dataset, group in runs.groupby("dataset", sort=False):
        hashes = group["test_split_hash"].dropna().unique()
        if len(hashes) > 1:
            counts = group.groupby("test_split_hash")["run_id"].count().to_dict()
            width = 8  # the shortest prefix (from 8 characters) that tells the hashes apart
            while len({str(h)[:width] for h in hashes}) < len(hashes):
                width += 4
            raise RunRecordError(
                f"Runs of dataset {dataset!r} were evaluated on {len(hashes)} different test "
                f"splits (test_split_hash: { {h[:width]: n for h, n in counts.items()} } runs per "
                "split hash); a table must not mix them. Filter the runs (e.g. by sweep) or "
                "re-run them.")
    for key, group in runs.groupby(["dataset", "model", "config"], sort=False):
        for column in _POLICY_KEYS:
            values = group[column].dropna().unique()
            if len(values) > 1:
                raise RunRecordError(f"Runs of {'/'.join(map(str, key))} differ in {column} "
                                     f"({list(values)[:3]}); a table must not mix them.")


def summarise(runs: pd.DataFrame, *, by: Sequence[str] = DEFAULT_BY,
              metrics: Sequence[str] = ("srcc", "plcc")) -> pd.DataFrame:
    """Mean, standard deviation (ddof 1; NaN for one seed) and number of seeds per group.

    Raises
    ------
    RunRecordError
        If runs of one dataset carry different test-split hashes, or runs of one
        dataset/model/configuration differ in inference policy, epoch rule, label
        normalisation or PLCC variant.
    ValueError
        If ``runs`` is empty or lacks a column.
    """
    if runs is None or len(runs) == 0:
        raise ValueError("No runs to summarise.")
    missing = [c for c in (*by, *metrics) if c not in runs.columns]
    if missing:
        raise ValueError(f"The runs table lacks the column(s) {missing}.")
    _check_consistent(runs)
    check_one_setting_per_cell(runs, by)
    grouped = runs.groupby(list(by), sort=True, dropna=False)
    out = grouped[list(metrics)].agg(["mean", "std"])
    out.columns = [f"{m}_{stat}" for m, stat in out.columns]
    out["n_seeds"] = grouped["seed"].nunique()
    out["n_test"] = grouped["n_test"].first()
    out["run_ids"] = grouped["run_id"].agg(lambda s: sorted(s))
    return out.reset_index()


def format_table(summary: pd.DataFrame, *, metrics: Sequence[str] = ("srcc", "plcc"),
                 decimals: int = 4, with_std: bool = True) -> str:
    """Markdown table: one row per dataset × model × fraction × method, mean ± std per metric,
    the best per (dataset, model, fraction, metric) in bold."""
    keys = [c for c in ("dataset", "model", "config", "fraction", "method") if c in
            summary.columns]
    header = keys + [m.upper() for m in metrics] + ["seeds", "n_test"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    group_keys = [k for k in keys if k != "method"]
    best = {}
    for m in metrics:
        higher = METRICS[m].higher_is_better if m in METRICS else True
        for key, group in summary.groupby(group_keys, sort=False, dropna=False):
            values = group[f"{m}_mean"]
            if values.notna().any():
                best[(m, key if isinstance(key, tuple) else (key,))] = (
                    values.max() if higher else values.min())
    for _, row in summary.iterrows():
        cells = [fraction_label(row[k]) if k == "fraction" else str(row[k]) for k in keys]
        gkey = tuple(row[k] for k in group_keys)
        for m in metrics:
            mean, std = row[f"{m}_mean"], row[f"{m}_std"]
            text = "nan" if pd.isna(mean) else f"{mean:.{decimals}f}"
            if with_std and not pd.isna(std):
                text += f" ± {std:.{decimals}f}"
            if not pd.isna(mean) and np.isclose(mean, best.get((m, gkey), np.nan)):
                text = f"**{text}**"
            cells.append(text)
        cells += [str(int(row["n_seeds"])), str(row["n_test"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def save_table(summary: pd.DataFrame, name: str, *, folder=None, runs: pd.DataFrame | None = None,
               metrics: Sequence[str] = ("srcc", "plcc"), note: str | None = None
               ) -> dict[str, Path]:
    """Write the summary as ``<name>.md`` (:func:`format_table`), ``.csv`` and ``.json``
    (provenance: source run ids, test-split hashes, features) under ``figures/tables/`` (or
    ``folder``) with :func:`qd_lib.viz.save_table`; return the paths."""
    from qd_lib.viz.figures import save_table as write_table

    text = format_table(summary, metrics=metrics)
    if note:
        text = f"{note}\n\n{text}"
    provenance = {"metrics": list(metrics), "note": note,
                  "run_ids": sorted(r for ids in summary.get("run_ids", []) for r in ids)}
    if runs is not None and len(runs):
        provenance["test_split_hashes"] = sorted(runs["test_split_hash"].dropna().unique())
        provenance["proxy"] = bool(runs["proxy"].fillna(False).any())
        provenance["features"] = sorted(runs["features"].dropna().unique())
    return write_table(summary.drop(columns=["run_ids"], errors="ignore"), name,
                       folder=folder if folder is not None else figures_dir() / "tables",
                       provenance=provenance, markdown=text, latex=False,
                       csv_float_format="%.6g")

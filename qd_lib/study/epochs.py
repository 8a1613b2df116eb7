"""How many epochs the study trains: validation SRCC against the schedule length.

From the runs of ``notebooks/sweeps/study_epochs.yaml`` (Random coresets, one cosine schedule
per epoch count, validation scored after every epoch): per model × fraction × epoch count, the
final validation SRCC (mean over seeds) and, for the longest schedule, the validation curve.
:func:`choose_epochs` takes the shortest schedule whose mean final validation SRCC is within
``tolerance`` of the best schedule's: SRCC has stopped rising there. The test split is never
looked at.
"""
from __future__ import annotations

import json

import pandas as pd


def epoch_table(runs_root=None, sweep="notebooks/sweeps/study_epochs.yaml") -> pd.DataFrame:
    """One row per run × validated epoch: ``model``, ``fraction``, ``seed``, ``epochs`` (the
    schedule length), ``epoch``, ``val_srcc``, ``val_plcc``, ``final`` (last epoch of the
    run)."""
    from pathlib import Path

    from qd_lib.paths import runs_dir
    from qd_lib.runner import sweep_runs
    from qd_lib.runner.experiment import METRICS, read_record

    runs = sweep_runs(sweep, runs_root)
    root = Path(runs_root) if runs_root is not None else runs_dir()
    rows = []
    for _, run in runs.iterrows():
        record = read_record(root / run["run_id"] / METRICS)
        epochs = (json.loads(run["settings"]).get("overrides") or {}).get("epochs")
        for entry in record.get("history") or []:
            if "val" in entry:
                rows.append({"model": run["model"], "fraction": run["fraction"],
                             "seed": run["seed"], "epochs": epochs, "epoch": entry["epoch"],
                             "val_srcc": entry["val"]["srcc"], "val_plcc": entry["val"]["plcc"],
                             "final": entry["epoch"] == epochs, "run_id": run["run_id"]})
    if not rows:
        raise ValueError(f"No validated run of {sweep} was found; run it first.")
    return pd.DataFrame(rows).sort_values(["model", "fraction", "epochs", "seed", "epoch"]) \
        .reset_index(drop=True)


def choose_epochs(table: pd.DataFrame, *, tolerance: float = 0.005) -> pd.DataFrame:
    """Per model × fraction: mean final validation SRCC per schedule length, and the chosen
    length (the shortest within ``tolerance`` of the best)."""
    final = table[table["final"]]
    means = final.groupby(["model", "fraction", "epochs"], as_index=False).agg(
        val_srcc=("val_srcc", "mean"), val_srcc_std=("val_srcc", "std"),
        n_seeds=("seed", "nunique"))
    chosen = []
    for (model, fraction), group in means.groupby(["model", "fraction"]):
        best = group["val_srcc"].max()
        ok = group[group["val_srcc"] >= best - tolerance]
        chosen.append({"model": model, "fraction": fraction,
                       "chosen_epochs": int(ok["epochs"].min())})
    return means.merge(pd.DataFrame(chosen), on=["model", "fraction"])

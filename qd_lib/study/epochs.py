"""How many epochs the study trains: final validation SRCC against the schedule length.

From the runs of ``notebooks/sweeps/study_epochs.yaml`` (Random coresets, one cosine schedule
per epoch count, the validation split scored after the last epoch), as held in its
``runs.csv``: per model × fraction × epoch count the mean final validation SRCC over seeds.
:func:`choose_epochs` takes the shortest schedule whose mean is within ``tolerance`` of the best
one's: SRCC has stopped rising there. The test split is never looked at.
"""
from __future__ import annotations

import pandas as pd


def choose_epochs(runs: pd.DataFrame, *, tolerance: float = 0.005) -> pd.DataFrame:
    """Per model × fraction × schedule length: mean and std of the final validation SRCC and
    the number of seeds, with the chosen length of the model × fraction.

    Raises
    ------
    ValueError
        If no run has a validation score (the sweep must set ``val_every``).
    """
    runs = runs[runs["val_srcc"].notna()]
    if runs.empty:
        raise ValueError("No run has a validation SRCC: the epoch sweep must set val_every.")
    means = runs.groupby(["model", "fraction", "epochs"], as_index=False).agg(
        val_srcc=("val_srcc", "mean"), val_srcc_std=("val_srcc", "std"),
        n_seeds=("seed", "nunique"), seconds=("seconds", "mean"))
    chosen = []
    for (model, fraction), group in means.groupby(["model", "fraction"]):
        ok = group[group["val_srcc"] >= group["val_srcc"].max() - tolerance]
        chosen.append({"model": model, "fraction": fraction,
                       "chosen_epochs": int(ok["epochs"].min())})
    return means.merge(pd.DataFrame(chosen), on=["model", "fraction"])

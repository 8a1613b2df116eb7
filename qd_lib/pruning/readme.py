"""The README's committed Table 3 result, written from ``figures/pruning/`` only.

``python -m qd_lib.readme`` puts :func:`pruning_block` between the ``pruning`` markers of the
README's "Coresets as pruning calibration sets" section: the table as
``table3_pruning.md`` has it, and every statement about it computed here from one row per run
(``table3_pruning_runs.csv``, paired by seed: the runs of one seed share their base model), the
run records (``table3_pruning_records/``), the CPU timing (``rd_timing_cpu.json``) and the
whole-grid check of the early stop (``early_stop_check.json``). The verdict sentence is chosen
by :func:`calibration_effect`'s numbers, not typed.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from qd_lib.pruning.experiment import UNIFORM, load_records
from qd_lib.runner.tables import METHOD_ORDER, method_label
from qd_lib.utils.readme_blocks import percent, wrap_markdown

__all__ = ["calibration_effect", "curve_steps", "pruning_block"]

REFERENCE = "random"


def _signed(value: float, digits: int = 4) -> str:
    return f"{value:+.{digits}f}"


def calibration_effect(runs: pd.DataFrame) -> dict:
    """What the choice of calibration set does to SRCC, from one row per run.

    Parameters
    ----------
    runs : DataFrame
        One row per pruning run of one dataset (``table3_pruning_runs.csv``): ``method``,
        ``seed``, ``srcc`` and ``flops``; Uniform's rows have ``method == "uniform"``.

    Returns
    -------
    dict
        ``methods`` (the calibration methods, Random first), ``vs_random`` (method → ``mean``,
        ``min``, ``max`` of the SRCC difference from Random's run of the same seed, ``wins``:
        seeds above Random, ``n``), ``max_abs_diff`` and ``max_abs_method``, ``seed_spread``
        (the SRCC's standard deviation over seeds, ddof 1, averaged over the calibration
        methods), ``vs_uniform`` (every calibration run minus Uniform's run of its seed:
        ``mean``, ``min``, ``max``, ``wins``, ``n``), ``flops_means`` (method → mean remaining
        FLOPs fraction) and ``flops_lowest`` (per seed, the methods with the lowest FLOPs: more
        than one where they tie).
    """
    order = [m for m in METHOD_ORDER if m in set(runs["method"])]
    order += sorted(set(runs["method"]) - set(order) - {UNIFORM})
    methods = [m for m in order if m != UNIFORM]
    srcc = runs.pivot(index="seed", columns="method", values="srcc")
    flops = runs.pivot(index="seed", columns="method", values="flops")
    vs_random = {}
    for method in methods:
        if method == REFERENCE:
            continue
        pair = srcc[[method, REFERENCE]].dropna()
        diff = (pair[method] - pair[REFERENCE]).to_numpy()
        vs_random[method] = {"mean": float(diff.mean()), "min": float(diff.min()),
                             "max": float(diff.max()), "wins": int((diff > 0).sum()),
                             "n": int(len(diff)), "max_abs": float(np.abs(diff).max())}
    worst = max(vs_random, key=lambda m: vs_random[m]["max_abs"])
    gains = srcc[methods].sub(srcc[UNIFORM], axis=0).to_numpy().ravel()
    gains = gains[~np.isnan(gains)]
    lowest = [sorted(m for m in methods if flops.loc[s, m] == flops.loc[s, methods].min())
              for s in sorted(flops.index)]
    return {
        "methods": methods,
        "seeds": sorted(int(s) for s in srcc.index),
        "vs_random": vs_random,
        "max_abs_diff": vs_random[worst]["max_abs"],
        "max_abs_method": worst,
        "max_abs_mean_diff": max(abs(v["mean"]) for v in vs_random.values()),
        "seed_spread": float(srcc[methods].std(ddof=1).mean()),
        "vs_uniform": {"mean": float(gains.mean()), "min": float(gains.min()),
                       "max": float(gains.max()), "wins": int((gains > 0).sum()),
                       "n": int(len(gains))},
        "flops_means": {m: float(flops[m].mean()) for m in methods},
        "flops_lowest": lowest,
    }


def curve_steps(records: list[dict]) -> dict:
    """Steps between consecutive measured levels of every distortion curve in ``records``.

    Returns
    -------
    dict
        ``rising`` (higher distortion at the next level), ``level`` (equal), ``falling`` and
        ``n_records`` (records with curves).
    """
    counts = {"rising": 0, "level": 0, "falling": 0, "n_records": 0}
    for record in records:
        curves = record.get("curves")
        if not curves:
            continue
        counts["n_records"] += 1
        distortion = np.asarray(curves["distortion"], dtype=float)
        measured = np.asarray(curves["measured"], dtype=bool)
        both = measured[:, :-1] & measured[:, 1:]
        step = np.diff(distortion, axis=1)[both]
        counts["rising"] += int((step > 0).sum())
        counts["level"] += int((step == 0).sum())
        counts["falling"] += int((step < 0).sum())
    return counts


def _verdict(effect: dict, target: float) -> str:
    spread, worst = effect["seed_spread"], effect["max_abs_diff"]
    if worst < spread:
        choice = (f"every paired difference from Random (at most {worst:.4f}, "
                  f"{method_label(effect['max_abs_method'])}) is smaller than the seed spread "
                  f"({spread:.4f}): on this benchmark the calibration set's choice does not "
                  f"matter measurably for the {percent(target)} target")
    elif effect["max_abs_mean_diff"] < spread:
        choice = (f"the mean paired differences from Random are smaller than the seed spread "
                  f"({spread:.4f}), single seeds differ by up to {worst:.4f} "
                  f"({method_label(effect['max_abs_method'])}): no consistent effect of the "
                  f"choice for the {percent(target)} target")
    else:
        method = max(effect["vs_random"], key=lambda m: abs(effect["vs_random"][m]["mean"]))
        choice = (f"{method_label(method)}'s mean paired difference from Random "
                  f"({_signed(effect['vs_random'][method]['mean'])}) exceeds the seed spread "
                  f"({spread:.4f}): the calibration set's choice matters measurably for the "
                  f"{percent(target)} target")
    gain = effect["vs_uniform"]
    if gain["wins"] == gain["n"] and gain["mean"] > spread:
        return (f"{choice}; what matters is having a calibration set at all (the allocation "
                f"beats Uniform in every pair, on average by {gain['mean'] / spread:.0f} times "
                "the seed spread).")
    return (f"{choice}; the allocation's gain over Uniform is not consistent "
            f"({gain['wins']}/{gain['n']} pairs above Uniform).")


def _flops_sentence(effect: dict) -> str:
    means = effect["flops_means"]
    low, high = min(means, key=means.get), max(means, key=means.get)
    lowest = effect["flops_lowest"]
    always = set.intersection(*(set(tied) for tied in lowest))
    if always:
        who = (f"{' and '.join(method_label(m) for m in sorted(always))} "
               "have the lowest FLOPs in every seed")
    else:
        who = ("no method has the lowest FLOPs in every seed (the lowest per seed: "
               + ", ".join(" = ".join(method_label(m) for m in tied) for tied in lowest) + ")")
    return (f"- **FLOPs**: the remaining fraction varies by method (means {means[low]:.4f}, "
            f"{method_label(low)}, to {means[high]:.4f}, {method_label(high)}) only through "
            f"where the allocation puts the sparsity; {who}.")


def _dataset_lines(dataset: str, runs: pd.DataFrame, target: float) -> list[str]:
    effect = calibration_effect(runs)
    pairs = "; ".join(
        f"{method_label(m)} {_signed(v['mean'])} [{_signed(v['min'])}, {_signed(v['max'])}], "
        f"{v['wins']}/{v['n']}" for m, v in effect["vs_random"].items())
    gain = effect["vs_uniform"]
    return [
        f"- **{dataset}: SRCC minus Random's**, paired by seed (same base model), mean [min, "
        f"max], seeds above Random: {pairs}.",
        f"- **Seed spread**: the SRCC's standard deviation over seeds, averaged over the "
        f"{len(effect['methods'])} calibration methods, is {effect['seed_spread']:.4f}.",
        f"- **Rate-distortion allocation vs Uniform** magnitude pruning at the same sparsity: "
        f"{_signed(gain['mean'])} SRCC on average over the calibration methods (paired by "
        f"seed: {_signed(gain['min'])} to {_signed(gain['max'])}; {gain['wins']}/{gain['n']} "
        f"pairs above Uniform).",
        "- **Verdict** (chosen by these numbers): " + _verdict(effect, target),
        _flops_sentence(effect),
    ]


def _table_lines(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith("|")]


def pruning_block(folder: str | Path) -> str:
    """The README block of the committed Table 3 result in ``folder`` (``figures/pruning``).

    Parameters
    ----------
    folder : str or Path
        The committed result folder: ``table3_pruning.{md,json}``,
        ``table3_pruning_runs.csv``, ``table3_pruning_records/``, ``rd_timing_cpu.json`` and
        ``early_stop_check.json``.

    Returns
    -------
    str
        Markdown: what was run, the table, the paired statements per dataset, the early-stop
        check, the timings of the distortion measurement and the records' code notes.
    """
    folder = Path(folder)
    meta = json.loads((folder / "table3_pruning.json").read_text(encoding="utf-8"))
    runs = pd.read_csv(folder / "table3_pruning_runs.csv")
    records = load_records(folder=folder / "table3_pruning_records")
    timing = json.loads((folder / "rd_timing_cpu.json").read_text(encoding="utf-8"))
    check = json.loads((folder / "early_stop_check.json").read_text(encoding="utf-8"))
    target = float(meta["target"])
    calibrated = [r for r in records if r.get("curves")]
    n_cal = sorted({int(r["curves"]["n_calibration"]) for r in calibrated})
    n_test = sorted({int(r["n_test"]) for r in records})
    weights = sorted({int(r["prunable_weights"]) for r in records})
    layers = sorted({len(r["curves"]["layers"]) for r in calibrated})
    n_methods = len([m for m in meta["methods"] if m != UNIFORM])

    def listed(values):
        return " / ".join(f"{v:,}" for v in values)

    lines = [
        f"{n_methods} calibration methods plus Uniform × {len(meta['seeds'])} seeds "
        f"({', '.join(meta['datasets'])}; {listed(n_cal)} calibration images, {listed(n_test)} "
        f"test images; {meta['model_label']}: {listed(weights)} prunable weights in "
        f"{listed(layers)} layers; {meta['n_runs']} source records):", "",
        *_table_lines((folder / "table3_pruning.md").read_text(encoding="utf-8")), ""]
    for dataset, group in runs.groupby("dataset", sort=False):
        lines += _dataset_lines(dataset, group, target)
    steps = curve_steps(records)
    total = steps["rising"] + steps["level"] + steps["falling"]
    held = steps["rising"] + steps["level"]
    lines.append(
        f"- **Early stop of the curves**: {percent(held / total, 1)} of the steps between "
        f"consecutive measured levels rise or stay level ({held:,} of {total:,}, over "
        f"{steps['n_records']} records), {percent(steps['falling'] / total, 1)} go down; "
        f"re-running {check['pairs']} of the committed runs on the whole grid (`--no-early-stop`) "
        "gave the "
        f"identical allocation in {check['identical_allocations']} of {check['pairs']} "
        f"(largest SRCC difference {check['max_abs_srcc_difference']:.4f}; "
        "`early_stop_check.json`).")
    rd = runs["rd_seconds"].dropna()
    devices = ", ".join(sorted(runs["device"].dropna().astype(str).unique()))
    cpu = timing["early_stop"]
    lines.append(
        f"- **Time of the distortion measurement** for one calibration set: {rd.mean():.1f} s "
        f"on average (at most {rd.max():.1f} s) on the runs' device ({devices}); "
        f"{cpu['seconds']:.0f} s on {timing['threads']} CPU threads (`rd_timing_cpu.json`: "
        f"{cpu['measured_points']} of {cpu['points']} curve points measured, "
        f"{cpu['n_calibration']} images; cores: {timing['cores']}).")
    notes = "; ".join(f"\"{note}\"" for note in meta.get("code_notes", []))
    if notes:
        lines.append(f"- **Code** (the records' `code_note`): {notes}.")
    return wrap_markdown("\n".join(lines))

"""The steps behind ``python -m qd_lib.study`` (see its module docstring).

Trained results are held in two places: run records under ``runs/`` (git-ignored, lost with the
machine) and the committed ``figures/study/runs.csv``. A run is trained only when neither holds
it, so a fresh clone with the committed CSV retrains nothing.
"""
from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import multiprocessing
from pathlib import Path

import pandas as pd

from qd_lib.paths import display_path, figures_dir
from qd_lib.study.report import study_runs, summarise_study, variant_name, write_study_tables
from qd_lib.utils.io import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

RUNS_CSV = "runs.csv"


def output_dir(out=None) -> Path:
    """``figures/study`` (or ``out``)."""
    return Path(out) if out is not None else figures_dir() / "study"


def _sweep_specs(sweeps) -> list:
    from qd_lib.runner import expand

    specs = {}
    for sweep in sweeps:
        for spec in expand(sweep):
            specs.setdefault(spec.run_id, spec)   # a run shared by two sweeps is trained once
    return list(specs.values())


def held_runs(out) -> pd.DataFrame:
    """The committed ``runs.csv`` (empty when there is none)."""
    path = Path(out) / RUNS_CSV
    return pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=["run_id"])


def merged_runs(sweeps, out, runs_root=None) -> pd.DataFrame:
    """The committed rows, updated and extended by the sweeps' finished records under ``runs/``
    (same run id, same spec hash: the same result).

    Committed rows of runs that none of ``sweeps`` lists are kept (a report over fewer sweep
    files never drops trained results); they stay in cells of their own.
    """
    ids = {s.run_id for s in _sweep_specs(sweeps)}
    held = held_runs(out)
    others = int((~held["run_id"].isin(ids)).sum())
    if others:
        logger.info("study: keeping %d committed row(s) of runs that %s do not list", others,
                    ", ".join(Path(s).name for s in map(str, sweeps)))
    try:
        fresh = study_runs(sweeps, runs_root)
    except ValueError:  # no finished record under runs/: the committed rows are all there is
        fresh = pd.DataFrame(columns=held.columns)
    kept = held[~held["run_id"].isin(fresh["run_id"])]
    merged = pd.concat([t for t in (kept, fresh) if len(t)], ignore_index=True) \
        if len(kept) or len(fresh) else fresh
    for column in ("seed", "epochs", "n_train", "n_test"):  # integers, never "0.000000"
        if column in merged and merged[column].notna().all():
            merged[column] = merged[column].astype(int)
    if merged.empty:
        raise ValueError(f"No finished run of {list(map(str, sweeps))}: run `python -m "
                         "qd_lib.study run` first.")
    from qd_lib.study.report import RUN_COLUMNS, _method_rank

    # committed rows written before a column existed: the column joins in its place
    merged = merged[[c for c in RUN_COLUMNS if c in merged]
                    + [c for c in merged if c not in RUN_COLUMNS]]
    merged["_rank"] = [_method_rank(m) for m in merged["method"]]
    merged = merged.sort_values(["dataset", "model", "fraction", "_rank", "seed"]).drop(
        columns="_rank")
    return merged.reset_index(drop=True)


def _write_tables(sweeps, out, runs_root=None) -> dict:
    runs = merged_runs(sweeps, out, runs_root)
    proxy = bool(runs["proxy"].fillna(True).all()) if "proxy" in runs else True
    return write_study_tables(runs, out, proxy=proxy, provenance={
        "sweeps": [str(s) for s in sweeps], "n_runs": int(len(runs)),
        "command": "python -m qd_lib.study report " + " ".join(map(str, sweeps))})


#: the grid axes ``run --only`` can restrict, and how a RunSpec shows each
STAGE_AXES = {
    "methods": lambda s: {variant_name(s.method, s.method_params)},
    "models": lambda s: {s.model, f"{s.model}/{s.config}"},
    "fractions": lambda s: {float(s.fraction)},
    "seeds": lambda s: {int(s.seed)},
}


def select_stage(specs: list, only: dict | None) -> list:
    """The specs of one stage of a study: those whose value on every axis of ``only`` (a
    mapping of :data:`STAGE_AXES` names to allowed values) is allowed.

    A study too long for one sitting is trained in stages (Q-Diverse and Random of one model
    first, say); the stage's runs are the grid's own, so they count for the whole study.
    """
    if not only:
        return list(specs)
    for axis, allowed in only.items():
        if axis not in STAGE_AXES:
            raise ValueError(f"The 'only' parameter of run_missing must have keys among "
                             f"{sorted(STAGE_AXES)}. Got {axis!r}.")
        in_grid = set().union(*(STAGE_AXES[axis](s) for s in specs)) if specs else set()
        for value in allowed:
            if value not in in_grid:
                raise ValueError(f"The {axis!r} parameter of the study run must be among "
                                 f"{sorted(map(str, in_grid))} (the sweeps' grid). Got "
                                 f"{value!r}.")
    return [s for s in specs
            if all(STAGE_AXES[axis](s) & set(allowed) for axis, allowed in only.items())]


def run_missing(sweeps, out, *, runs_root=None, workers: int = 1, threads=None,
                device: str = "auto", only: dict | None = None) -> dict:
    """Train the runs of ``sweeps`` that ``runs.csv`` and the records do not hold, in rounds
    of ``workers`` runs (a local Dask cluster when ``workers > 1``), rewriting ``runs.csv``
    and ``summary.csv`` after each round. Largest fraction first, then seed by seed (Random first
    within a seed), so that a study stopped at any point holds complete paired blocks.
    ``only`` trains one stage of the grid (:func:`select_stage`); tables always cover it all."""
    from qd_lib.runner import run_status, run_sweep

    specs = select_stage(_sweep_specs(sweeps), only)
    held = set(held_runs(out)["run_id"])
    pending = [s for s in specs if s.run_id not in held and run_status(s, runs_root) != "done"]
    # largest fraction first, then seed-major: whenever the study stops, what it holds is
    # complete paired blocks (every method of a seed), the most informative fraction first
    pending.sort(key=lambda s: (-s.fraction, s.seed, s.model, s.method != "random"))
    for dataset, here, before, blocks in build_mismatches(pending, held_runs(out)):
        logger.warning(
            "study: %s here is build %s, but %d held run(s) of the paired blocks trained now "
            "(%s) trained on build(s) %s: their paired differences would compare coresets of "
            "different data (builds differ across CPU families: float32 metric kernels move a "
            "few proxy MOS values). Train those blocks on the machine kind of the held runs, "
            "or train here only blocks that are wholly new (`run --seeds/--fractions`).",
            dataset, here[:8], sum(before.values()), ", ".join(blocks),
            ", ".join(f"{h[:8]} ({n})" for h, n in before.items()))
    logger.info("study: %d runs in the grid, %d held, %d to train", len(specs),
                len(specs) - len(pending), len(pending))
    counts = {"trained": 0, "failed": 0, "held": len(specs) - len(pending)}
    client = cluster = None
    if workers > 1 and pending:
        from dask.distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    try:
        for start in range(0, len(pending), max(1, workers)):
            chunk = pending[start:start + max(1, workers)]
            report = run_sweep(chunk, runs_root=runs_root, client=client, executor="python",
                               torch_threads=threads if threads is not None else
                               (1 if workers > 1 else None), device=device)
            counts["trained"] += report.counts["ok"]
            counts["failed"] += report.counts["failed"]
            _write_tables(sweeps, out, runs_root)
    finally:
        if client is not None:
            client.close()
            cluster.close()
    counts["rows"] = len(held_runs(out))
    return counts


def _block_key(dataset, model, config, fraction, seed) -> tuple:
    """The paired block a run belongs to: runs of one block are compared seed by seed."""
    return (str(dataset), str(model), str(config), round(float(fraction), 6), int(seed))


def build_mismatches(specs, held: pd.DataFrame) -> list[tuple[str, str, dict, list]]:
    """The datasets of ``specs`` whose build on this machine (its ``manifest_hash``) differs
    from the build of a ``held`` run in the same paired block (dataset, model, configuration,
    fraction and seed) as one of ``specs``: training them here would pair runs on
    different data. Held runs of other blocks do not count (a block trained wholly here is
    paired within itself), nor do held runs that recorded no build.

    Returns
    -------
    list of (dataset, hash here, {held hash: number of runs}, [block labels])
        Empty when every block matches. A block label reads ``"musiq/small 10 % seed 2"``.
    """
    from qd_lib.data.catalog import canonical_dataset_name, load_manifest

    if held.empty or "manifest_hash" not in held:
        return []
    known = held.dropna(subset=["manifest_hash"])
    held_blocks = {}
    for row in known.itertuples(index=False):
        key = _block_key(row.dataset, row.model, row.config, row.fraction, row.seed)
        held_blocks.setdefault(key, []).append(str(row.manifest_hash))
    pending_blocks = {}
    for spec in specs:
        key = _block_key(canonical_dataset_name(spec.dataset), spec.model, spec.config,
                         spec.fraction, spec.seed)
        if key in held_blocks:
            pending_blocks.setdefault(key[0], set()).add(key)
    found = []
    for dataset, blocks in sorted(pending_blocks.items()):
        try:
            here = load_manifest(dataset).manifest.content_hash
        except (FileNotFoundError, ValueError):  # not built here: the run itself says so
            continue
        before: dict[str, int] = {}
        labels = []
        for key in sorted(blocks):
            other = [h for h in held_blocks[key] if h != here]
            if other:
                labels.append(f"{key[1]}/{key[2]} {100 * key[3]:g} % seed {key[4]}")
                for h in other:
                    before[h] = before.get(h, 0) + 1
        if labels:
            found.append((dataset, here, before, labels))
    return found


def _minutes_per_run(held: pd.DataFrame, machine: str | None = None) -> dict:
    """Mean measured minutes per run by ``(dataset, model, fraction, epochs)`` from
    ``runs.csv`` rows; where ``machine`` (a :func:`~qd_lib.utils.machine.machine_label`) timed
    a key itself, its own runs only, since machines differ."""
    keys = ["dataset", "model", "fraction", "epochs"]
    if held.empty or not {*keys, "seconds"} <= set(held.columns):
        return {}
    timed = held.dropna(subset=["seconds", "epochs"])

    def means(rows):
        return {(d, m, round(float(f), 6), int(e)): float(sec) / 60 for (d, m, f, e), sec in
                rows.groupby(keys)["seconds"].mean().items()}

    timings = means(timed)
    if machine is not None and "machine" in timed:
        timings.update(means(timed[timed["machine"] == machine]))
    return timings


def _estimate_minutes(timings: dict, dataset: str, model: str, fraction: float, epochs
                      ) -> tuple[float, str]:
    """Minutes one run takes and how that is known: ``"measured"`` for its own ``(dataset,
    model, fraction, epochs)``; ``"estimated"`` when scaled linearly (training steps grow with
    the coreset) from the nearest timed fraction of the same model and schedule, its own
    dataset first; ``"unknown"`` (NaN) when nothing comparable was timed."""
    key = (dataset, model, round(float(fraction), 6), epochs)
    if key in timings:
        return timings[key], "measured"
    same = [(d != dataset, abs(f - fraction), f, minutes)
            for (d, m, f, e), minutes in timings.items() if m == model and e == epochs]
    if not same:
        return float("nan"), "unknown"
    _, _, f, minutes = min(same)
    return minutes * fraction / f, "estimated"


def study_status(sweeps, out, *, runs_root=None, only: dict | None = None) -> pd.DataFrame:
    """Where a study stands: one row per cell of the sweeps' grid (``dataset, model,
    feature_set, fraction, method``) with the seeds planned, ``done`` (in ``runs.csv`` or
    finished under ``runs/``), ``missing`` (their seeds listed in ``missing_seeds``) and
    ``minutes_left``, the CPU minutes the missing runs take at the time per run measured in
    ``runs.csv`` and the records finished under ``runs/``, on this machine where it timed the
    cell (``timing``: ``measured``, ``estimated`` or ``unknown``, see
    :func:`_estimate_minutes`; empty when nothing is missing).

    ``only`` restricts the grid to one stage as in :func:`run_missing`.
    """
    from qd_lib.runner import run_status

    specs = select_stage(_sweep_specs(sweeps), only)
    held = held_runs(out)
    held_ids = set(held["run_id"])
    from qd_lib.utils.machine import machine_label, machine_record

    try:  # the committed rows and the runs finished here since (a new block's first timings)
        timed = merged_runs(sweeps, out, runs_root)
    except ValueError:
        timed = held
    timings = _minutes_per_run(timed, machine_label(machine_record()))
    rows = {}
    for s in specs:
        epochs = s.overrides.get("epochs")
        features = s.features.get("set") if set(s.features) == {"set"} else json.dumps(
            s.features, sort_keys=True)
        key = (s.dataset, f"{s.model}/{s.config}", features, float(s.fraction),
               variant_name(s.method, s.method_params))
        row = rows.setdefault(key, {"planned": 0, "done": 0, "missing_seeds": [],
                                    "minutes_left": 0.0, "timing": ""})
        row["planned"] += 1
        if s.run_id in held_ids or run_status(s, runs_root) == "done":
            row["done"] += 1
            continue
        row["missing_seeds"].append(int(s.seed))
        minutes, row["timing"] = _estimate_minutes(
            timings, s.dataset, s.model, s.fraction, int(epochs) if epochs is not None else None)
        row["minutes_left"] += minutes
    table = pd.DataFrame([
        {"dataset": k[0], "model": k[1], "feature_set": k[2], "fraction": k[3],
         "method": k[4], "planned": r["planned"], "done": r["done"],
         "missing": len(r["missing_seeds"]),
         "missing_seeds": " ".join(map(str, sorted(r["missing_seeds"]))),
         "minutes_left": r["minutes_left"], "timing": r["timing"]}
        for k, r in rows.items()], columns=["dataset", "model", "feature_set", "fraction",
                                             "method", "planned", "done", "missing",
                                             "missing_seeds", "minutes_left", "timing"])
    return table


def status_text(table: pd.DataFrame, *, workers: int = 2) -> str:
    """:func:`study_status` as the ``status`` command prints it, with the wall time left when
    ``workers`` runs train in parallel."""
    from qd_lib.data.budget import fraction_label

    if table.empty:
        return "study: the sweeps list no runs"
    shown = table.assign(fraction=[fraction_label(f) for f in table["fraction"]],
                         minutes_left=[f"{m:.0f}" if m == m else "?" for m in
                                       table["minutes_left"]])
    planned, done = int(table["planned"].sum()), int(table["done"].sum())
    left = table["minutes_left"].sum(skipna=False) / 60 / max(1, workers)
    unknown = int((table["timing"] == "unknown").sum())
    total = (f"{done} of {planned} runs done; the other {planned - done} need "
             + (f"about {left:.1f} h with {workers} in parallel" if left == left else
                f"an unknown time ({unknown} cells never timed)"))
    return shown.to_string(index=False) + "\n" + total


def report(sweeps, out, *, runs_root=None) -> dict:
    """``runs.csv`` → ``summary.csv``/``.md``, the two figures, and the diagnostics'
    correlations with the trained runs (:func:`refresh_correlations`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qd_lib.viz import save_figure
    from qd_lib.viz.study import plot_paired_forest, plot_srcc_vs_fraction

    paths = _write_tables(sweeps, out, runs_root)
    if (ablation_table := refresh_ablation(out)) is not None:
        paths["ablation"] = ablation_table
    paths.update(refresh_correlations(out))
    summary = pd.read_csv(paths["summary"])
    provenance = {"from": display_path(paths["summary"]), "command": "python -m qd_lib.study "
                  "report"}
    for name, plot in (("srcc_vs_fraction", plot_srcc_vs_fraction),
                       ("paired_forest", plot_paired_forest)):
        fig = plot(summary)
        paths[name] = save_figure(fig, name, folder=out, provenance=provenance)["png"]
        plt.close(fig)
    return paths


def epochs(out, *, source=None) -> dict:
    """``epochs.csv``: final validation SRCC by schedule length and the chosen length, from the
    epoch sweep's ``runs.csv`` (``source``, default ``<out>/epochs/runs.csv``)."""
    from qd_lib.study.epochs import choose_epochs

    source = Path(source) if source is not None else Path(out) / "epochs" / RUNS_CSV
    if not source.is_file():
        raise FileNotFoundError(f"{display_path(source)} does not exist: run `python -m "
                                "qd_lib.study --out figures/study/epochs run "
                                "notebooks/sweeps/study_epochs.yaml` first.")
    chosen = choose_epochs(pd.read_csv(source))
    path = atomic_write_text(Path(out) / "epochs.csv", chosen.to_csv(index=False,
                                                                       float_format="%.6f"))
    return {"epochs": path}


# -- training-free steps ---------------------------------------------------------------------
def _settings(dataset, feature_set) -> dict:
    """What a committed training-free table must have been made with to be reused (a table
    of other diagnostics, say without a column added since, is recomputed)."""
    from qd_lib.features import feature_spec
    from qd_lib.study.diagnostics import DIAGNOSTICS

    return {"dataset": dataset.name, "manifest_hash": dataset.manifest.content_hash,
            "scheme": dataset.scheme, "feature_set": feature_spec(feature_set),
            "diagnostics": list(DIAGNOSTICS)}


def _step_command(step: str, out: Path, dataset_name: str, feature_set, seeds: int) -> str:
    """The command that regenerates a training-free table, as recorded in its JSON."""
    where = "" if Path(out).resolve() == output_dir().resolve() else \
        f" --out {display_path(out)}"
    features = "" if feature_set == "offline" else \
        f" --feature-set {feature_set if isinstance(feature_set, str) else json.dumps(feature_set)}"
    return (f"python -m qd_lib.study{where} {step} --dataset {dataset_name}{features} "
            f"--seeds {seeds}")


def _existing(path: Path, settings: dict) -> pd.DataFrame | None:
    """The rows of a committed table made with the same settings (else ``None``)."""
    meta = path.with_suffix(".json")
    if not (path.is_file() and meta.is_file()):
        return None
    if json.loads(meta.read_text()).get("settings") != settings:
        logger.info("%s was made with other settings: recomputed", display_path(path))
        return None
    return pd.read_csv(path)


def _diagnostics_worker(args) -> pd.DataFrame:
    name, entries, fractions, seeds, feature_set = args
    from qd_lib.data import open_dataset
    from qd_lib.study.diagnostics import run_diagnostics

    return run_diagnostics(open_dataset(name), entries, fractions, seeds,
                           feature_set=feature_set, show_progress=False)


def _measure(name, entries, fractions, seeds, feature_set, jobs: int) -> pd.DataFrame:
    """Diagnostics of ``entries`` over ``seeds``, split by seed over ``jobs`` processes."""
    if not seeds:
        return pd.DataFrame()
    groups = [list(seeds[i::jobs]) for i in range(jobs) if seeds[i::jobs]]
    tasks = [(name, entries, fractions, g, feature_set) for g in groups]
    if len(tasks) == 1:
        return _diagnostics_worker(tasks[0])
    with cf.ProcessPoolExecutor(len(tasks), mp_context=multiprocessing.get_context(
            "spawn")) as pool:
        return pd.concat(list(pool.map(_diagnostics_worker, tasks)), ignore_index=True)


def _incremental(path: Path, settings: dict, name, entries, fractions, seeds, feature_set,
                 jobs: int, meta: dict) -> pd.DataFrame:
    """Compute the (method, fraction, seed) rows ``path`` does not hold yet, ``jobs`` seeds at
    a time, rewriting ``path`` (and its ``.json``) after each round: a stopped run resumes."""
    old = _existing(path, settings)
    labels = [e if isinstance(e, str) else e[1] for e in entries]
    wanted = {(m, float(f), int(s)) for m in labels for f in fractions for s in seeds}
    table = old if old is not None else pd.DataFrame()

    def have() -> set:
        if table.empty:
            return set()
        return {(m, float(f), int(s)) for m, f, s in
                zip(table["method"], table["fraction"], table["seed"])}

    missing_seeds = sorted({s for (_, _, s) in wanted - have()})
    for start in range(0, len(missing_seeds), max(1, jobs)):
        batch = missing_seeds[start:start + max(1, jobs)]
        keep = wanted - have()
        # only the methods with rows missing in these seeds (a method added later costs its
        # own selections); every fraction of such a method is redone, and only missing rows kept
        todo = {m for (m, _, s) in keep if s in batch}
        fresh = _measure(name, [e for e, label in zip(entries, labels) if label in todo],
                         fractions, batch, feature_set, jobs)
        fresh = fresh[[(m, float(f), int(s)) in keep for m, f, s in
                       zip(fresh["method"], fresh["fraction"], fresh["seed"])]]
        table = pd.concat([t for t in (table, fresh) if len(t)], ignore_index=True)
        _save_rows(path, table, {**meta, "settings": settings})
    table = table[[(m, float(f), int(s)) in wanted for m, f, s in
                   zip(table["method"], table["fraction"], table["seed"])]]
    return table.sort_values(["method", "fraction", "seed"]).reset_index(drop=True)


def _save_rows(path: Path, table: pd.DataFrame, meta: dict) -> None:
    table = table.sort_values(["method", "fraction", "seed"]).reset_index(drop=True)
    atomic_write_text(path, table.to_csv(index=False, float_format="%.6f"))
    atomic_write_json(path.with_suffix(".json"), {
        **meta, "selection_seconds": float(table["seconds"].sum())})


def diagnostics(dataset_name: str, out, *, seeds: int = 10, fractions=None,
                feature_set="offline", jobs: int = 1) -> dict:
    """``diagnostics.csv`` (+ ``.json``), and with ``runs.csv`` present, ``correlations.csv``
    and the scatter figure."""
    from qd_lib.data import open_dataset
    from qd_lib.study.diagnostics import DIAGNOSTIC_FRACTIONS
    from qd_lib.study.report import METHOD_ORDER

    out = Path(out)
    dataset = open_dataset(dataset_name)
    fractions = tuple(fractions or DIAGNOSTIC_FRACTIONS)
    methods = [m for m in METHOD_ORDER if m != "full"]
    settings = _settings(dataset, feature_set)
    path = out / "diagnostics.csv"
    meta = {"methods": methods, "fractions": list(fractions), "seeds": seeds,
            "command": _step_command("diagnostics", out, dataset_name, feature_set, seeds)}
    table = _incremental(path, settings, dataset_name, methods, fractions,
                         list(range(seeds)), feature_set, jobs, meta)
    _save_rows(path, table, {**meta, "settings": settings})
    paths = {"diagnostics": path}
    study_out = out if (out / RUNS_CSV).is_file() else out.parent
    paths.update(refresh_correlations(study_out, folders=[out]))
    return paths


def _matching_runs(runs: pd.DataFrame, settings: dict) -> pd.DataFrame:
    """The runs whose coresets a training-free table measured: same dataset, same feature set
    (Random reads no feature: its runs under any set are the same selections, counted once)."""
    from qd_lib.study.report import feature_set_name

    features = feature_set_name(settings.get("feature_set") or {})
    same = (runs["dataset"] == settings.get("dataset")) & (
        (runs["feature_set"] == features) | (runs["method"] == "random"))
    keys = [c for c in ("model", "config", "epochs", "method", "fraction", "seed") if c in runs]
    return runs[same].sort_values("feature_set", key=lambda f: f != features,
                                  kind="stable").drop_duplicates(keys)


def refresh_correlations(out, *, folders=None) -> dict:
    """``correlations.csv`` and the scatter figure of every training-free table of the study
    (``out/diagnostics.csv`` and those in its sub-folders, e.g. ``authentic/``, ``features/``),
    each against the trained runs of ``out/runs.csv`` of its own dataset and feature set. Runs
    from the committed tables alone (no data needed), so that ``report`` keeps them current
    as runs land."""
    from qd_lib.study.diagnostics import diagnostic_correlations

    out = Path(out)
    runs_path = out / RUNS_CSV
    if not runs_path.is_file():
        return {}
    runs = pd.read_csv(runs_path)
    folders = [Path(f) for f in folders] if folders is not None else \
        [out, *sorted(p for p in out.iterdir() if p.is_dir())]
    paths = {}
    for folder in folders:
        table_path, meta_path = folder / "diagnostics.csv", folder / "diagnostics.json"
        if not (table_path.is_file() and meta_path.is_file()):
            continue
        settings = json.loads(meta_path.read_text()).get("settings") or {}
        table = pd.read_csv(table_path)
        matched = _matching_runs(runs, settings)
        correlations = diagnostic_correlations(table, matched)
        if not len(correlations):
            # no longer two methods trained here: an older table would be quoted as current
            for stale in [folder / "correlations.csv",
                          *folder.glob("diagnostics_scatter.*")]:
                stale.unlink(missing_ok=True)
            continue
        key = "" if folder == out else f"{folder.name}_"
        paths[f"{key}correlations"] = atomic_write_text(
            folder / "correlations.csv", correlations.to_csv(index=False, float_format="%.6f"))
        paths[f"{key}scatter"] = _scatter(table, matched, correlations, folder)
    return paths


def _scatter(table, runs, correlations, out) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qd_lib.study.report import named_method
    from qd_lib.viz import save_figure
    from qd_lib.viz.study import plot_diagnostic_scatter

    runs = runs.assign(method=[named_method(m) for m in runs["method"]])
    merged = runs.merge(table, on=["method", "fraction", "seed"], how="inner")
    fig = plot_diagnostic_scatter(merged, correlations)
    path = save_figure(fig, "diagnostics_scatter", folder=out, provenance={
        "from": ["diagnostics.csv", "runs.csv", "correlations.csv"]})["png"]
    plt.close(fig)
    return path


def ablation(dataset_name: str, out, *, seeds: int = 10, fractions=None,
             feature_set="offline", jobs: int = 1) -> dict:
    """``ablation_seeds.csv`` (every variant × fraction × seed) and ``ablation.csv`` (per
    option value: the diagnostics' means, and trained SRCC where ``runs.csv`` holds it)."""
    from qd_lib.data import open_dataset
    from qd_lib.study.ablation import ABLATION_GRID, ablation_entries

    out = Path(out)
    dataset = open_dataset(dataset_name)
    fractions = tuple(fractions or (0.05, 0.1))
    entries = ablation_entries() + [("random", "random", {})]
    settings = _settings(dataset, feature_set)
    path = out / "ablation_seeds.csv"
    meta = {"fractions": list(fractions), "seeds": seeds,
            "command": _step_command("ablation", out, dataset_name, feature_set, seeds)}
    table = _incremental(path, settings, dataset_name, entries, fractions,
                         list(range(seeds)), feature_set, jobs, meta)
    labels = {label: (opt, value) for (opt, value, _, _), (_, label, _) in
              zip(ABLATION_GRID, ablation_entries())}
    labels["random"] = ("reference", "random")
    table["option"] = [labels[m][0] for m in table["method"]]
    table["value"] = [labels[m][1] for m in table["method"]]
    _save_rows(path, table, {**meta, "settings": settings})
    return {"ablation_seeds": path, "ablation": refresh_ablation(out)}


def ablation_sweep() -> Path:
    """The sweep file of the ablation's trained variants (``notebooks/sweeps/
    study_ablation.yaml``)."""
    from qd_lib.paths import repo_root

    return repo_root() / "notebooks" / "sweeps" / "study_ablation.yaml"


def refresh_ablation(out, sweep=None) -> Path | None:
    """Rewrite ``ablation.csv`` from ``ablation_seeds.csv`` (the diagnostics' means per
    variant) and ``runs.csv`` (trained SRCC of the variants the ablation sweep lists, paired
    with Random: :func:`~qd_lib.study.ablation.trained_variants`); nothing is recomputed, so
    ``report`` calls it after every round of training. ``None`` when there is no
    ``ablation_seeds.csv``."""
    from qd_lib.study.ablation import rank_variants, trained_variants

    out = Path(out)
    seeds_path = out / "ablation_seeds.csv"
    if not seeds_path.is_file():
        return None
    ranked = rank_variants(pd.read_csv(seeds_path).drop(columns=["seconds"], errors="ignore"))
    runs_path = out / RUNS_CSV
    sweep = Path(sweep) if sweep is not None else ablation_sweep()
    if runs_path.is_file() and sweep.is_file():
        ids = {s.run_id for s in _sweep_specs([sweep])}
        runs = pd.read_csv(runs_path)
        runs = runs[runs["run_id"].isin(ids)]
        if len(runs):
            ranked = ranked.merge(trained_variants(runs), on="method", how="left")
            for column in ("n_trained", "n_pairs"):   # counts, blank where not trained
                ranked[column] = ranked[column].astype("Int64")
    return atomic_write_text(out / "ablation.csv", ranked.to_csv(index=False,
                                                                   float_format="%.6f"))


def study_grid(sweep=None) -> pd.DataFrame:
    """One row per run of the main study sweep (``notebooks/sweeps/study.yaml``):
    ``dataset, model, fraction, epochs``."""
    from qd_lib.paths import repo_root

    sweep = sweep or repo_root() / "notebooks" / "sweeps" / "study.yaml"
    return pd.DataFrame([{"dataset": s.dataset, "model": s.model, "fraction": float(s.fraction),
                          "epochs": s.overrides.get("epochs")} for s in _sweep_specs([sweep])])


def write_readme_section(out, readme="README.md", grid: pd.DataFrame | None = None) -> Path:
    """Rewrite the README's "What the evidence says" section from the committed CSVs (and the
    main sweep's grid, for the wall-time estimate)."""
    from qd_lib.study.readme import evidence_section, replace_section

    path = Path(readme)
    grid = study_grid() if grid is None else grid
    text = replace_section(path.read_text(encoding="utf-8"), evidence_section(Path(out), grid))
    return atomic_write_text(path, text)


def summary_from_runs(out) -> str:
    """The text ``summary.csv`` must have, recomputed from ``runs.csv`` alone (the check that
    the committed summary says exactly what the committed runs say)."""
    from qd_lib.study.report import summary_csv_text

    return summary_csv_text(summarise_study(pd.read_csv(Path(out) / RUNS_CSV)))

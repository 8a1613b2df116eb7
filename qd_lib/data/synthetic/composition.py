"""What a proxy benchmark is made of: MOS histogram, compound distortions, severities, types.

:func:`composition_table` summarises manifests (one row each: size, references, how many
distortions per image, MOS quantiles, skewness, the share of near-pristine images, ...);
:func:`distortion_components` lists each image's distortion components (type, severity, order)
for both modes (grid: one component per image); :func:`write_proxy_composition` draws
:func:`qd_lib.viz.plot_proxy_composition` for ``proxy-default`` and ``proxy-authentic`` and
writes ``figures/study/proxy_composition.{png,pdf,json}`` and ``proxy_composition.csv``.
Human-rated datasets whose label lists are committed (KonIQ-10k, SPAQ) can be added as
reference rows, their MOS rescaled to 1–5 through their nominal range (labels only).

Command line: ``python -m qd_lib.data.synthetic --composition`` (see ``--help``).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from qd_lib.data.manifest import Manifest
from qd_lib.paths import display_path, figures_dir
from qd_lib.utils.io import atomic_write_text

logger = logging.getLogger(__name__)

NEAR_PRISTINE = 4.5  # proxy MOS (1–5) at or above which an image counts as near-pristine
LOW_QUALITY = 2.0
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
DEFAULT_PRESETS = ("proxy-default", "proxy-authentic")
DEFAULT_HUMAN = ("koniq10k", "spaq")
NO_DISTORTION = "none"


def _mos_1_5(manifest: Manifest) -> np.ndarray:
    """MOS on the 1–5 scale (higher is better) through the manifest's nominal range."""
    return 1.0 + 4.0 * manifest.normalized_mos()


def distortion_components(manifest: Manifest) -> pd.DataFrame:
    """One row per (image, distortion component).

    Grid manifests give one component per distorted image (its type and level); authentic
    ones split ``distortion`` and ``severities`` on ``+``. Pristine images (no component)
    are left out.

    Returns
    -------
    pandas.DataFrame
        Columns ``image_id``, ``mos``, ``type``, ``severity``, ``position`` (0 = applied
        first) and ``n_distortions``.
    """
    table = manifest.table
    if "distortion" not in table.columns or "level" not in table.columns:
        raise ValueError(f"Manifest {manifest.name!r} has no 'distortion'/'level' columns.")
    has_parts = "severities" in table.columns
    rows = []
    for record in table.itertuples(index=False):
        name = record.distortion
        if name is None or (isinstance(name, float) and np.isnan(name)) or \
                name == NO_DISTORTION:
            continue
        types = str(name).split("+")
        if has_parts and isinstance(record.severities, str) and record.severities:
            severities = [float(s) for s in record.severities.split("+")]
        else:
            severities = [float(record.level)] * len(types)
        for position, (kind, severity) in enumerate(zip(types, severities)):
            rows.append((record.image_id, float(record.mos), kind, severity, position,
                         len(types)))
    return pd.DataFrame(rows, columns=["image_id", "mos", "type", "severity", "position",
                                       "n_distortions"])


def n_distortions(manifest: Manifest) -> np.ndarray:
    """Number of composed distortion types per image (grid: 1; pristine: 0)."""
    table = manifest.table
    if "n_distortions" in table.columns:
        return pd.to_numeric(table["n_distortions"]).to_numpy(int)
    if "distortion" not in table.columns:
        return np.full(len(table), -1)
    names = table["distortion"]
    return np.where(names.isna() | (names == NO_DISTORTION), 0,
                    names.fillna("").str.count(r"\+") + 1).astype(int)


def composition_row(manifest: Manifest, *, kind: str | None = None) -> dict:
    """The composition summary of one manifest (see :func:`composition_table`)."""
    mos = _mos_1_5(manifest)
    table = manifest.table
    row = {"dataset": manifest.name,
           "kind": kind or ("proxy MOS" if manifest.info.proxy else "human MOS, rescaled to 1-5"),
           "n_images": len(table),
           "n_references": int(table["group"].nunique()) if "group" in table.columns and
           table["group"].notna().any() else np.nan}
    if "distortion" in table.columns and table["distortion"].notna().any():
        counts = n_distortions(manifest)
        components = distortion_components(manifest)
        levels = table["level"].dropna().to_numpy(float)
        row.update({
            "n_distortion_types": int(components["type"].nunique()),
            "share_pristine": float(np.mean(counts == 0)),
            "share_compound": float(np.mean(counts >= 2)),
            "mean_n_distortions": float(counts.mean()),
            "n_distinct_levels": int(len(np.unique(levels))),
            "level_max": float(levels.max()),
        })
    row.update({"mos_mean": float(mos.mean()), "mos_std": float(mos.std(ddof=1))})
    row.update({f"mos_q{int(round(q * 100)):02d}": float(v)
                for q, v in zip(QUANTILES, np.quantile(mos, QUANTILES))})
    row.update({
        "mos_skewness": float(stats.skew(mos, bias=False)),
        f"share_mos_ge_{NEAR_PRISTINE:g}": float(np.mean(mos >= NEAR_PRISTINE)),
        f"share_mos_lt_{LOW_QUALITY:g}": float(np.mean(mos < LOW_QUALITY)),
        "share_mos_above_midpoint": float(np.mean(mos > 3.0)),
    })
    return row


def composition_table(manifests: Mapping[str, Manifest] | Sequence[Manifest]) -> pd.DataFrame:
    """One row per manifest describing its make-up.

    Columns: ``dataset``, ``kind``, ``n_images``, ``n_references``; where distortions are
    recorded ``n_distortion_types``, ``share_pristine`` (no distortion), ``share_compound``
    (two or more composed types), ``mean_n_distortions``, ``n_distinct_levels``,
    ``level_max``; then the MOS on the 1–5 scale: ``mos_mean``, ``mos_std``, the 5/25/50/75/95 %
    quantiles ``mos_q05`` … ``mos_q95``, ``mos_skewness`` (adjusted Fisher–Pearson),
    ``share_mos_ge_4.5`` (near-pristine), ``share_mos_lt_2`` and ``share_mos_above_midpoint``
    (MOS > 3).

    Parameters
    ----------
    manifests : mapping of str to Manifest, or sequence of Manifest
        The manifests (a mapping's keys become the ``dataset`` column).
    """
    items = manifests.items() if isinstance(manifests, Mapping) else \
        [(m.name, m) for m in manifests]
    rows = []
    for name, manifest in items:
        if not isinstance(manifest, Manifest):
            raise TypeError(f"The 'manifests' parameter must hold Manifest objects. Got "
                            f"{type(manifest).__name__} for {name!r} instead.")
        rows.append({**composition_row(manifest), "dataset": name})
    if not rows:
        raise ValueError("The 'manifests' parameter must hold at least one manifest. Got none.")
    table = pd.DataFrame(rows)
    for col in ("n_references", "n_distortion_types", "n_distinct_levels"):
        if col in table.columns:  # counts stay integers beside the rows that lack them
            table[col] = table[col].astype("Int64")
    return table


def write_proxy_composition(datasets: Sequence[str] = DEFAULT_PRESETS, *,
                            human: Sequence[str] = DEFAULT_HUMAN, folder=None,
                            name: str = "proxy_composition") -> dict[str, Path]:
    """Write the composition figure and CSV of proxy benchmarks.

    Parameters
    ----------
    datasets : sequence of str, default=("proxy-default", "proxy-authentic")
        Proxy benchmarks (names :func:`qd_lib.data.open_dataset` knows; missing presets are
        built under ``QD_DATA_ROOT``).
    human : sequence of str, default=("koniq10k", "spaq")
        Human-rated datasets with committed label lists, added to the CSV and drawn in the
        histogram panel for comparison (MOS rescaled to 1–5; no images needed). Empty: none.
    folder : path, optional
        Default ``<figures>/study``.
    name : str, default="proxy_composition"
        File stem: ``<name>.png``, ``.pdf``, ``.json`` (the figure and its provenance) and
        ``<name>.csv`` (:func:`composition_table`).

    Returns
    -------
    dict of str to Path
        The written files by kind (``png``, ``pdf``, ``json``, ``csv``).
    """
    import matplotlib.pyplot as plt

    from qd_lib.data.catalog import load_manifest, open_dataset
    from qd_lib.viz.figures import save_figure, use_style
    from qd_lib.viz.mos import plot_proxy_composition

    if isinstance(datasets, str) or not datasets:
        raise ValueError(f"The 'datasets' parameter must be a non-empty sequence of dataset "
                         f"names. Got {datasets!r} instead.")
    if isinstance(human, str):
        raise ValueError(f"The 'human' parameter must be a sequence of dataset names. Got "
                         f"{human!r} instead.")
    folder = Path(folder) if folder is not None else figures_dir() / "study"
    proxies = {d: open_dataset(d).manifest for d in datasets}
    references = {h: load_manifest(h).manifest for h in human}
    table = composition_table({**proxies, **references})
    use_style()
    fig = plot_proxy_composition(proxies, human=references)
    provenance = {
        "what": "make-up of the proxy benchmarks (PROXY MOS from full-reference metrics); human "
                "label lists for comparison, rescaled to 1-5",
        "datasets": {d: {"manifest_hash": m.content_hash, "n_images": len(m),
                         "description": m.info.description} for d, m in proxies.items()},
        "human": {h: {"manifest_hash": m.content_hash, "mos_range": list(m.info.mos_range)}
                  for h, m in references.items()},
        "near_pristine_threshold": NEAR_PRISTINE,
        "table": table.to_dict(orient="records"),
    }
    written = save_figure(fig, name, folder=folder, provenance=provenance)
    plt.close(fig)
    written["csv"] = atomic_write_text(folder / f"{name}.csv",
                                       table.to_csv(index=False, float_format="%.4f"))
    logger.info("wrote %s", ", ".join(display_path(p) for p in written.values()))
    return written

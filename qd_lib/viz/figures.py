"""The workbench's figure style and atomic, provenance-stamped figure saving."""
from __future__ import annotations

import io
import logging
import platform
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

from qd_lib import __version__
from qd_lib.paths import display_path, figures_dir
from qd_lib.utils.io import atomic_write_bytes, atomic_write_json

logger = logging.getLogger(__name__)

# Okabe–Ito: readable in print and for colour-blind readers.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
           "#000000")

STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
    "image.cmap": "viridis",
    "pdf.fonttype": 42,
}


def use_style() -> None:
    """Apply the workbench style to matplotlib's global settings."""
    matplotlib.rcParams.update(STYLE)


def save_figure(fig, name: str, *, folder=None, provenance: dict | None = None,
                formats=("png", "pdf")) -> dict[str, Path]:
    """Save ``fig`` as ``<folder>/<name>.<fmt>`` for each format plus ``<name>.json``.

    The files are reproducible: the PDF carries no creation date, and a figure whose files
    and record would come out identical to the ones on disk is left untouched (its record
    keeps its ``created`` time), so regenerating unchanged figures leaves no diff.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    name : str
        File stem, e.g. ``"proxy-tiny_mos_hist"``.
    folder : str or Path, optional
        Default: :func:`qd_lib.paths.figures_dir`.
    provenance : dict, optional
        Inputs, hashes and parameters the figure was made from; versions and time are added.

    Returns
    -------
    dict of str to Path
        The figure's files by format (``"json"`` included), written or already current.
    """
    import json

    folder = Path(folder) if folder is not None else figures_dir()
    rendered = {}
    for fmt in formats:
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, metadata={"Creator": f"qd-workbench {__version__}",
                                               "CreationDate": None}
                    if fmt == "pdf" else None)
        rendered[fmt] = buf.getvalue()
    paths = {fmt: folder / f"{name}.{fmt}" for fmt in formats}
    # repository-relative inside the repository, else the bare names (the record lies next to
    # the files): never a path of the machine that drew it
    inside = not Path(display_path(folder)).is_absolute()
    record = {
        "figure": name,
        "files": {fmt: display_path(p) if inside else p.name for fmt, p in paths.items()},
        "provenance": provenance or {},
        "versions": {"qd_lib": __version__, "matplotlib": matplotlib.__version__,
                     "python": platform.python_version()},
    }
    json_path = folder / f"{name}.json"
    try:
        previous = json.loads(json_path.read_text())
        unchanged = ({k: v for k, v in previous.items() if k != "created"}
                     == json.loads(json.dumps(record))
                     and all(paths[fmt].read_bytes() == data for fmt, data in rendered.items()))
    except (OSError, ValueError):
        unchanged = False
    if unchanged:
        logger.debug("%s: unchanged, not rewritten", display_path(json_path))
        return {**paths, "json": json_path}
    written = {fmt: atomic_write_bytes(paths[fmt], data) for fmt, data in rendered.items()}
    record["created"] = datetime.now(UTC).isoformat(timespec="seconds")
    written["json"] = atomic_write_json(json_path, record)
    return written


def markdown_table(table, float_format: str = "%.4f") -> str:
    """A GitHub-flavoured Markdown table of a DataFrame (no extra dependency)."""
    def cell(value):
        if isinstance(value, float):
            return float_format % value
        return str(value)

    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |"
            for row in table.itertuples(index=False, name=None)]
    return "\n".join([header, rule, *body]) + "\n"


def save_table(table, name: str, *, folder=None, provenance: dict | None = None,
               float_format: str = "%.4f", markdown: str | None = None,
               latex: str | bool | None = None, csv_float_format: str | None = None,
               extra_csv: dict | None = None) -> dict[str, Path]:
    """Write a table as ``<name>.csv``, ``.md``, ``.tex`` (booktabs) and ``.json`` provenance,
    each atomically: the one table writer of the workbench (coverage tables, run summaries and
    the supplement's Table 2 layout all go through it).

    Parameters
    ----------
    table : pandas.DataFrame
        The values; written as CSV as they are (full precision unless ``csv_float_format``).
    name : str
        File stem (no folder separators).
    folder : path, optional
        Default :func:`qd_lib.paths.figures_dir`.
    provenance : dict, optional
        Merged into the JSON file (source runs, settings, ...).
    float_format : str, default="%.4f"
        Number format of the default Markdown and LaTeX renderings.
    markdown, latex : str, optional
        Renderings to write instead of the defaults (a results table formats its own cells:
        mean ± std, bold best); ``latex=False`` writes no ``.tex``.
    csv_float_format : str, optional
        ``float_format`` of the CSV files.
    extra_csv : dict of str to DataFrame, optional
        More CSV files, ``{"long_csv": frame}`` → ``<name>_long.csv``.

    Returns
    -------
    dict of str to Path
        The written files by kind (``csv``, ``md``, ``tex``, extra keys, ``json``).
    """
    if not isinstance(name, str) or not name or "/" in name or "\\" in name:
        raise ValueError(f"The 'name' parameter must be a non-empty file stem. Got {name!r} "
                         "instead.")
    folder = Path(folder) if folder is not None else figures_dir()
    texts = {"csv": table.to_csv(index=False, float_format=csv_float_format),
             "md": markdown if markdown is not None else markdown_table(table, float_format)}
    if latex is not False:
        texts["tex"] = latex if isinstance(latex, str) else table.to_latex(
            index=False, float_format=float_format.__mod__)
    for key, frame in (extra_csv or {}).items():
        texts[key] = frame.to_csv(index=False, float_format=csv_float_format)
    written = {}
    for key, text in texts.items():
        stem, _, suffix = key.rpartition("_")
        filename = f"{name}_{stem}.{suffix}" if stem else f"{name}.{key}"
        written[key] = atomic_write_bytes(folder / filename, text.encode("utf-8"))
    record = {"table": name, **(provenance or {}),
              "files": {key: path.name for key, path in written.items()} | {
                  "json": f"{name}.json"},
              "written_by": {"qd_lib": __version__, "python": platform.python_version()},
              "generated_at": datetime.now(UTC).isoformat(timespec="seconds")}
    written["json"] = atomic_write_json(folder / f"{name}.json", record)
    logger.info("wrote %s", ", ".join(display_path(p) for p in written.values()))
    return written

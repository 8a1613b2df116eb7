"""The workbench's figure style and atomic, provenance-stamped figure saving."""
from __future__ import annotations

import io
import platform
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

from qd_lib import __version__
from qd_lib.paths import display_path, figures_dir
from qd_lib.utils.io import atomic_write_bytes, atomic_write_json

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
        The written files by format (``"json"`` included).
    """
    folder = Path(folder) if folder is not None else figures_dir()
    written = {}
    for fmt in formats:
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, metadata={"Creator": f"qd-workbench {__version__}"}
                    if fmt == "pdf" else None)
        written[fmt] = atomic_write_bytes(folder / f"{name}.{fmt}", buf.getvalue())
    record = {
        "figure": name,
        "files": {fmt: display_path(p) for fmt, p in written.items()},
        "provenance": provenance or {},
        "versions": {"qd_lib": __version__, "matplotlib": matplotlib.__version__,
                     "python": platform.python_version()},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    written["json"] = atomic_write_json(folder / f"{name}.json", record)
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
               float_format: str = "%.4f") -> dict[str, Path]:
    """Save a DataFrame as ``<name>.csv``, ``.md`` and ``.tex`` (booktabs) plus ``.json``.

    Returns
    -------
    dict of str to Path
        The written files by format.
    """
    folder = Path(folder) if folder is not None else figures_dir()
    written = {
        "csv": atomic_write_bytes(folder / f"{name}.csv",
                                  table.to_csv(index=False).encode("utf-8")),
        "md": atomic_write_bytes(folder / f"{name}.md",
                                 markdown_table(table, float_format).encode("utf-8")),
        "tex": atomic_write_bytes(folder / f"{name}.tex", table.to_latex(
            index=False, float_format=float_format.__mod__).encode("utf-8")),
    }
    written["json"] = atomic_write_json(folder / f"{name}.json", {
        "table": name, "files": {fmt: display_path(p) for fmt, p in written.items()},
        "provenance": provenance or {},
        "versions": {"qd_lib": __version__, "python": platform.python_version()},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    })
    return written

"""Contact sheets: thumbnails of chosen images in a grid, in order, each with its rank."""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from qd_lib.paths import display_path
from qd_lib.utils.validation import check_scalar

logger = logging.getLogger(__name__)


def _thumbnail(path: Path, size: int) -> np.ndarray | None:
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.draft("RGB", (size, size))  # JPEG: decode at a reduced scale (much faster)
            img = img.convert("RGB")
            img.thumbnail((size, size))
            return np.asarray(img)
    except Exception as exc:  # any decoding failure: the cell says so
        logger.debug("contact sheet: cannot read %s: %s", display_path(path), exc)
        return None


def plot_contact_sheet(paths, *, labels=None, ncols: int | None = None, thumb_px: int = 96,
                       title: str | None = None, figure_width: float | None = None):
    """A grid of thumbnails, in the order given, each captioned with its label.

    The thumbnails are pasted into one mosaic image (drawn with a single ``imshow``), so a
    sheet of a few hundred images takes about as long as reading them.

    Parameters
    ----------
    paths : sequence of path
        The images, in display order (row by row).
    labels : sequence of str, optional
        One caption per image (default: ``"1"``, ``"2"``, ...). Long captions are cut.
    ncols : int, optional
        Thumbnails per row (default: about the square root of their number, at most 10).
    thumb_px : int, default=96
        Longest side of a thumbnail in pixels, in [16, 512].
    title : str, optional
    figure_width : float, optional
        In inches (default: from ``ncols`` and ``thumb_px`` at 100 pixels per inch).

    Returns
    -------
    matplotlib.figure.Figure
        Not attached to pyplot (save it with :func:`qd_lib.viz.save_figure`). An image that
        cannot be read gets a grey cell marked "unreadable".
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("The 'paths' parameter must name at least one image.")
    check_scalar(thumb_px, "thumb_px", int, min_val=16, max_val=512)
    labels = [str(i + 1) for i in range(len(paths))] if labels is None else [str(v) for v in
                                                                               labels]
    if len(labels) != len(paths):
        raise ValueError(f"The 'labels' parameter must have one entry per image ({len(paths)}). "
                         f"Got {len(labels)} instead.")
    if ncols is None:
        ncols = min(10, max(1, math.ceil(math.sqrt(len(paths)))))
    check_scalar(ncols, "ncols", int, min_val=1)
    nrows = math.ceil(len(paths) / ncols)
    pad, caption = 4, 16  # pixels around a thumbnail, pixels of caption under it
    cell_w, cell_h = thumb_px + 2 * pad, thumb_px + 2 * pad + caption
    mosaic = np.full((nrows * cell_h, ncols * cell_w, 3), 255, dtype=np.uint8)
    unreadable = []
    for k, path in enumerate(paths):
        r, c = divmod(k, ncols)
        top, left = r * cell_h + pad, c * cell_w + pad
        thumb = _thumbnail(path, thumb_px)
        if thumb is None:
            mosaic[top:top + thumb_px, left:left + thumb_px] = 200
            unreadable.append(k)
            continue
        h, w = thumb.shape[:2]  # bottom-aligned, so the caption sits right under it
        y, x = top + thumb_px - h, left + (thumb_px - w) // 2
        mosaic[y:y + h, x:x + w] = thumb
    width = figure_width or max(3.0, mosaic.shape[1] / 100)
    height = width * mosaic.shape[0] / mosaic.shape[1] + (0.35 if title else 0.0)
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, mosaic.shape[0] / (mosaic.shape[0] + (35 if title else 0))))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_axis_off()
    max_chars = max(6, thumb_px // 6)
    for k, label in enumerate(labels):
        r, c = divmod(k, ncols)
        text = label if len(label) <= max_chars else label[:max_chars - 1] + "…"
        ax.text(c * cell_w + cell_w / 2, r * cell_h + 2 * pad + thumb_px + caption / 2 - 2,
                text, ha="center", va="center", fontsize=6.5, color="black")
        if k in unreadable:
            ax.text(c * cell_w + cell_w / 2, r * cell_h + pad + thumb_px / 2, "unreadable",
                    ha="center", va="center", fontsize=6.5, color="0.3")
    if title:
        fig.suptitle(title, fontsize=9, y=0.995, va="top")
    return fig

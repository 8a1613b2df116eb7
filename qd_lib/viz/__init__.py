"""Figures: one style for all plots, every plot a function taking ``ax``, every saved figure
written as PNG and PDF with a JSON provenance file."""
from qd_lib.viz.figures import save_figure, use_style
from qd_lib.viz.mos import plot_mos_by_level, plot_mos_histogram

__all__ = ["plot_mos_by_level", "plot_mos_histogram", "save_figure", "use_style"]

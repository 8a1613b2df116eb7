"""Figures: one style for all plots, every plot a function taking ``ax``, every saved figure
written as PNG and PDF with a JSON provenance file. ``CoresetExplorer``/``explore`` (the
interactive notebook explorer) import ipywidgets, so they are loaded on first use."""
from qd_lib.viz.contact import plot_contact_sheet
from qd_lib.viz.coverage import plot_coverage_panels, plot_mos_coverage
from qd_lib.viz.figures import markdown_table, save_figure, save_table, use_style
from qd_lib.viz.mos import plot_mos_by_level, plot_mos_histogram, plot_proxy_composition
from qd_lib.viz.tsne import plot_coreset_grid, plot_coreset_map

__all__ = ["save_figure", "save_table", "markdown_table", "use_style", "plot_mos_histogram",
           "plot_mos_by_level", "plot_proxy_composition",
           "plot_mos_coverage", "plot_coverage_panels", "plot_coreset_map", "plot_coreset_grid",
           "plot_contact_sheet",
           "CoresetExplorer", "explore"]

_LAZY = {"CoresetExplorer", "explore"}


def __getattr__(name):
    # The explorer imports ipywidgets; plain plotting code does not pay for it.
    if name in _LAZY:
        from qd_lib.viz import explorer

        return getattr(explorer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Training-free analysis of coresets: how well a coreset covers the MOS scale and the
embedding space, compared with the full training split; t-SNE layouts for the maps."""
from qd_lib.analysis.coverage import (
    coverage_table,
    covering_radius,
    embedding_coverage,
    mos_coverage,
    nearest_selected_distances,
    reference_distances,
)
from qd_lib.analysis.tsne import tsne_layout

__all__ = ["mos_coverage", "covering_radius", "coverage_table", "embedding_coverage",
           "nearest_selected_distances", "reference_distances", "tsne_layout"]

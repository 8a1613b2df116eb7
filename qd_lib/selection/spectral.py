"""Removed: the spectral and log-determinant building blocks live in the Q-Diverse package."""
raise ImportError(
    "qd_lib.selection.spectral was split into the Q-Diverse package, next to the design-note "
    "section each implements: squared_distances/offdiag_median/rbf_inplace in "
    "qd_lib.selection.methods.qdiverse.affinity, symmetric_normalize_inplace/energy_rank/"
    "nystrom_eigenvectors in .spectral, greedy_logdet in .greedy, allocate_budget in .batches.")

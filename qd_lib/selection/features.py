"""Removed: merged into :mod:`qd_lib.features` and :mod:`qd_lib.selection.records`."""
raise ImportError(
    "qd_lib.selection.features was split into qd_lib.features (FEATURE_SETS, FeatureSet, "
    "feature_inputs, baseline_embedding, standardize_blocks, soft_cluster_probabilities, "
    "selection_mos) and qd_lib.selection.records (run_selections, select_grid, save_selection, "
    "load_selection, find_selection, selection_run_id, select_on_dataset). Import from there; "
    "get_feature_set is qd_lib.features.resolve_feature_set and selection_features is "
    "qd_lib.selection.records.selection_inputs.")

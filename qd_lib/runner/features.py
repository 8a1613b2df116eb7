"""Removed: feature sources were merged into :mod:`qd_lib.features` (one vocabulary).

A sweep file's ``features`` key now names a feature set (``offline``, ``paper``, ``pixels``) or
a mapping overriding its roles; ``{source: encoders, set: X}`` and ``{source: pixels}`` still
work and mean the same sets.
"""
raise ImportError(
    "qd_lib.runner.features was merged into qd_lib.features: feature sources are feature sets "
    "now (qd_lib.features.FEATURE_SETS: offline, paper, pixels). Use "
    "qd_lib.features.feature_inputs(roles, dataset, rows, feature_set=...) instead of "
    "get_features, qd_lib.features.check_feature_spec instead of check_feature_spec, "
    "qd_lib.features.register_feature_set(FeatureSet(...)) instead of register_feature_source, "
    "and the 'pixels' feature set (encoder 'pixels') instead of pixel_features.")

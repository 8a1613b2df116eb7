"""Features: which arrays a coreset selector sees for a dataset (the one room for them).

A selection method reads named input roles (``content``/``quality`` for Q-Diverse,
``embedding`` for the baselines, ``probs`` for Contextual Diversity) and, for the MOS-binned
methods, the MOS. This package decides where each comes from:

:mod:`qd_lib.features.sets`
    :class:`FeatureSet` (encoder output per role), the registry :data:`FEATURE_SETS`
    (``offline``, the default; ``paper``; ``pixels`` for tests), and the feature *spec* that
    notebooks, sweep files and run specs use to name one (:func:`feature_spec`).
:mod:`qd_lib.features.inputs`
    :func:`feature_inputs` (the arrays, extracted or read from the embedding cache;
    :func:`stacked_feature_inputs` for the rows of several datasets at once),
    :func:`baseline_embedding`, :func:`selection_mos` (normalised MOS, the selection API's
    convention), :func:`describe_features` (what a record says about them), and the two derived
    inputs :func:`standardize_blocks` and :func:`soft_cluster_probabilities`.

>>> from qd_lib.data import open_dataset
>>> from qd_lib.features import feature_inputs, selection_mos
>>> ds = open_dataset("proxy-tiny")                                    # doctest: +SKIP
>>> rows = ds.indices("train")                                         # doctest: +SKIP
>>> arrays = feature_inputs(("content", "quality"), ds, rows)          # doctest: +SKIP
"""
from qd_lib.features.inputs import (
    NORMALIZED_MOS_RANGE,
    baseline_embedding,
    describe_features,
    feature_inputs,
    selection_mos,
    soft_cluster_probabilities,
    stacked_feature_inputs,
    standardize_blocks,
)
from qd_lib.features.sets import (
    DEFAULT_FEATURE_SET,
    FEATURE_SETS,
    ROLES,
    SOFT_CLUSTERS,
    FeatureSet,
    check_feature_spec,
    feature_spec,
    register_feature_set,
    resolve_feature_set,
    split_output,
)

__all__ = [
    "DEFAULT_FEATURE_SET",
    "FEATURE_SETS",
    "NORMALIZED_MOS_RANGE",
    "ROLES",
    "SOFT_CLUSTERS",
    "FeatureSet",
    "baseline_embedding",
    "check_feature_spec",
    "describe_features",
    "feature_inputs",
    "feature_spec",
    "register_feature_set",
    "resolve_feature_set",
    "selection_mos",
    "soft_cluster_probabilities",
    "split_output",
    "stacked_feature_inputs",
    "standardize_blocks",
]

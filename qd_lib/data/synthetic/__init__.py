"""The offline proxy IQA benchmark (KADID-style; MOS from full-reference metrics, a PROXY).

No IQA dataset can be downloaded on an offline machine, so the workbench makes its own from the
natural photos bundled with scikit-image, scikit-learn and matplotlib: reference crops ×
25 KADID-style distortion types × 5 levels, scored by a fixed ensemble of full-reference metrics.
It is what ``make demo``, the tests and CI run on. Its scores are not human ratings; every
manifest, figure and table made from it says so.

A second mode, the ``authentic`` preset (:mod:`qd_lib.data.synthetic.authentic`), composes 0–3
distortion types at continuous, mostly mild severities per image, for an uneven,
authentic-dataset-like MOS histogram; :mod:`qd_lib.data.synthetic.composition` compares the
presets' make-up.

>>> from qd_lib.data.synthetic import build_proxy_benchmark
>>> bench = build_proxy_benchmark("tiny")          # doctest: +SKIP
>>> bench.manifest.split_counts()                  # doctest: +SKIP
"""
from qd_lib.data.synthetic.authentic import AuthenticConfig
from qd_lib.data.synthetic.builder import (
    PRESETS,
    PROXY_LABEL,
    ProxyBenchmark,
    ProxyConfig,
    build_proxy_benchmark,
    default_output_dir,
    load_proxy_benchmark,
)
from qd_lib.data.synthetic.distortions import DISTORTIONS, DistortionType
from qd_lib.data.synthetic.references import PHOTOS

__all__ = [
    "AuthenticConfig",
    "DISTORTIONS",
    "PHOTOS",
    "PRESETS",
    "PROXY_LABEL",
    "DistortionType",
    "ProxyBenchmark",
    "ProxyConfig",
    "build_proxy_benchmark",
    "default_output_dir",
    "load_proxy_benchmark",
]

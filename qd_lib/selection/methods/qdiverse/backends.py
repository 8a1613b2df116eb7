"""Array backends of the per-batch pipeline: numpy (the reference) and torch on a device.

Design note ``qdiverse.md`` §5 ("numpy; torch is equivalent") and §2.12 (float64 from the
kernel on; distance GEMMs may be float32). The pipeline steps of :mod:`.affinity`,
:mod:`.spectral` and :mod:`.greedy` are written once and call their heavy kernels through a
backend object ``xp``; a backend provides:

==============================  ================================================================
method                          does
==============================  ================================================================
``from_host(block)``            a batch's rows (host numpy, maybe float16) as a backend array
``to_host(a)``                  a backend array as a numpy array
``squared_distances(X, dtype)`` pairwise squared distances, GEMM in ``"float32"``/``"float64"``,
                                result float64, zero diagonal, no negative round-off (§2.4)
``offdiag_median(M, sqrt)``     median above the diagonal, numpy's definition (§2.6)
``rbf_inplace(M, sigma)``       ``M ← exp(−M / 2σ²)``
``sqrt_(M)``,                   in-place square root; set the diagonal
``fill_diagonal_(M, value)``
``row_sums(W)``, ``inv_sqrt``   degrees; ``1/√d`` (0 where ``d = 0``)
``symmetric_normalize_inplace`` ``W ← D^{-1/2} W D^{-1/2}`` (§2.7)
``nystrom_eigenvectors``        landmark eigendecomposition, energy rule, extension (§2.8)
``row_norms(Z)``, ``argmax``,   small reductions for the options
``nearest_to_mean(Z)``
``greedy_logdet(K, m, ...)``    greedy log-det by incremental Cholesky (§2.10); host results
==============================  ================================================================

In-place arithmetic with Python scalars and other arrays (``*=``, ``+=``, ``/=``), slicing and
``float(a.max())`` are spelled the same in numpy and torch and are used directly.
"""
from __future__ import annotations

import numpy as np

from qd_lib.selection.methods.qdiverse.affinity import (
    offdiag_median,
    rbf_inplace,
    squared_distances,
)
from qd_lib.selection.methods.qdiverse.greedy import greedy_logdet
from qd_lib.selection.methods.qdiverse.spectral import (
    inv_sqrt_degrees,
    nystrom_eigenvectors,
    symmetric_normalize_inplace,
)

__all__ = ["NUMPY", "NumpyBackend", "get_backend"]


class NumpyBackend:
    """The reference kernels: numpy on the host, float64 from the kernel on."""

    name = "numpy"
    device = "cpu"

    @staticmethod
    def from_host(block: np.ndarray) -> np.ndarray:
        # float16 storage is widened here, batch by batch (exactly)
        return block.astype(np.float32) if block.dtype == np.float16 else block

    @staticmethod
    def to_host(a: np.ndarray) -> np.ndarray:
        return a

    @staticmethod
    def squared_distances(X: np.ndarray, dtype: str) -> np.ndarray:
        return squared_distances(X, dtype=np.dtype(dtype).type)

    offdiag_median = staticmethod(offdiag_median)
    rbf_inplace = staticmethod(rbf_inplace)
    symmetric_normalize_inplace = staticmethod(symmetric_normalize_inplace)
    inv_sqrt = staticmethod(inv_sqrt_degrees)
    nystrom_eigenvectors = staticmethod(nystrom_eigenvectors)
    greedy_logdet = staticmethod(greedy_logdet)

    @staticmethod
    def sqrt_(M: np.ndarray) -> np.ndarray:
        return np.sqrt(M, out=M)

    @staticmethod
    def fill_diagonal_(M: np.ndarray, value: float) -> None:
        np.fill_diagonal(M, value)

    @staticmethod
    def row_sums(W: np.ndarray) -> np.ndarray:
        return W.sum(axis=1)


    @staticmethod
    def row_norms(Z: np.ndarray) -> np.ndarray:
        return np.linalg.norm(Z, axis=1)

    @staticmethod
    def argmax(v: np.ndarray) -> int:
        return int(np.argmax(v))

    @staticmethod
    def nearest_to_mean(Z: np.ndarray) -> int:
        centred = Z - Z.mean(axis=0)
        return int(np.argmin(np.einsum("ij,ij->i", centred, centred)))


#: The numpy backend (stateless).
NUMPY = NumpyBackend()


def get_backend(options: dict):
    """The backend for resolved options (``backend``, ``device``).

    The torch backend is imported only here, so the numpy path never imports torch.
    """
    if options.get("backend", "numpy") == "numpy":
        return NUMPY
    from qd_lib.selection.methods.qdiverse.torch_backend import torch_backend

    return torch_backend(options["device"])

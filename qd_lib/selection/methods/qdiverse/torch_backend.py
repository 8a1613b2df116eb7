"""Q-Diverse's heavy kernels in torch, on a CPU or a CUDA device (``backend="torch"``).

Design note ``qdiverse.md`` §5 ("numpy; torch is equivalent"): the kernels of
:class:`~qd_lib.selection.methods.qdiverse.backends.NumpyBackend` (distances §2.4, RBF and
median bandwidth §2.6, normalisation §2.7, Nyström eigensolve and energy rule §2.8, greedy
log-det §2.10), written for a device:

* **Precision.** The distance GEMM runs in ``distance_dtype`` (float32 by default), never in
  a reduced format: where TF32/bf16 float32 matmuls are enabled for the device
  (``torch.backends.cuda.matmul.fp32_precision`` or ``allow_tf32``), that GEMM runs in
  float64 instead, so no global setting is touched. Everything from the kernel on is float64,
  as in numpy.
* **Same coreset as numpy.** Landmarks are drawn on the host by the batch's numpy generator,
  the median is numpy's (mean of the two middle values), ties go to the lowest index with the
  same tolerance. Only the BLAS/LAPACK kernels round differently (gains within about 1e-6
  relative with float32 GEMMs over 6144 dimensions, 1e-13 with float64 on small fixtures), so
  the picks are the numpy picks unless two candidates' gains differ by less than that (a
  near tie); exact ties go to the lowest index in both.
* **Streaming.** A batch's rows go to the device as stored (float16 stays float16 on the way)
  and are widened there, so a memory-mapped input of any length streams through one device
  holding ``O(b² + b·d)`` per batch. The greedy loop issues no host synchronisation per
  step; the picks come back with ``.cpu()``, which waits for the device, so a timer read after
  ``select`` returns measures the device's work.
* **CPU threads.** On the CPU the kernels use torch's intra-op threads
  (``torch.set_num_threads``), unlike the numpy path, which pins BLAS to one thread per batch.
  On a machine whose cores are busy with other work, fewer threads can be much faster
  (OpenMP threads wait for each other at every parallel region).
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from qd_lib.selection.methods.qdiverse.greedy import TIE_TOLERANCE, greedy_plan
from qd_lib.selection.methods.qdiverse.spectral import energy_rank

logger = logging.getLogger(__name__)

__all__ = ["TorchBackend", "resolve_torch_device", "torch_backend"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
_MASK_CACHE_SIZE = 4


def resolve_torch_device(device: str) -> str:
    """Check a ``device`` option for the torch backend; returns its canonical name.

    Parameters
    ----------
    device : str
        ``"auto"`` (CUDA when available, else the CPU), ``"cpu"``, ``"cuda"`` or
        ``"cuda:<index>"``.

    Returns
    -------
    str
        ``"cpu"``, ``"cuda"`` or ``"cuda:<index>"``.

    Raises
    ------
    ValueError
        If ``device`` is not one of those, names CUDA while CUDA is not available, or names a
        CUDA index this machine does not have.
    """
    from qd_lib.utils.device import resolve_device

    dev = resolve_device(device)
    if dev.type == "cpu":
        return "cpu"
    if dev.type != "cuda":
        raise ValueError("The 'device' parameter must be 'auto', 'cpu', 'cuda' or "
                         f"'cuda:<index>' with backend='torch'. Got {device!r} instead.")
    if not torch.cuda.is_available():
        raise ValueError("The 'device' parameter must name an available device, and CUDA is "
                         "not available here (torch.cuda.is_available() is False); use "
                         f"device='cpu'. Got {device!r} instead.")
    count = torch.cuda.device_count()
    if dev.index is not None and dev.index >= count:
        raise ValueError(f"The 'device' parameter must name an available device; this machine "
                         f"has {count} CUDA device(s), 'cuda:0' to 'cuda:{count - 1}'. "
                         f"Got {device!r} instead.")
    return str(dev)


def _reduced_fp32_matmul(device: torch.device) -> bool:
    """Whether float32 matmuls on ``device`` may run in TF32/bf16 (the user's global setting)."""
    flags = (torch.backends.cuda.matmul if device.type == "cuda"
             else getattr(torch.backends.mkldnn, "matmul", None))
    precision = getattr(flags, "fp32_precision", None)
    if precision is None:  # torch before the fp32_precision settings
        return device.type == "cuda" and bool(torch.backends.cuda.matmul.allow_tf32)
    if precision == "none":  # inherits the global setting
        precision = getattr(torch.backends, "fp32_precision", "none")
    return precision not in ("none", "ieee")


def _mirror_lower_(M: torch.Tensor) -> torch.Tensor:
    """Make ``M`` exactly symmetric from its lower triangle (a GEMM ``X Xᵀ`` may not be)."""
    lower = torch.tril(M, -1)
    M.tril_()
    M += lower.T
    return M


class TorchBackend:
    """The kernels of the numpy backend, in torch on one device.

    Parameters
    ----------
    device : str
        A device name checked by :func:`resolve_torch_device`.
    """

    name = "torch"

    def __init__(self, device: str):
        self.device = torch.device(device)
        self._masks: dict[int, torch.Tensor] = {}
        self._logged_float64_gemm = False

    # ------------------------------------------------------------------ transfer
    def from_host(self, block: np.ndarray) -> torch.Tensor:
        host = np.array(block, order="C")  # a writable copy of the batch, dtype as stored
        return torch.from_numpy(host).to(self.device)

    @staticmethod
    def to_host(a: torch.Tensor) -> np.ndarray:
        return a.detach().cpu().numpy()

    # --------------------------------------------------------- §2.4-§2.6 affinity
    def _gemm_dtype(self, dtype: str) -> torch.dtype:
        wanted = _DTYPES[dtype]
        if wanted is torch.float32 and _reduced_fp32_matmul(self.device):
            if not self._logged_float64_gemm:
                logger.info("Q-Diverse (torch, %s): reduced-precision float32 matmuls are "
                            "enabled; distance GEMMs run in float64 instead", self.device)
                self._logged_float64_gemm = True
            return torch.float64
        return wanted

    def squared_distances(self, X: torch.Tensor, dtype: str) -> torch.Tensor:
        """Centred Gram-identity squared distances (see the numpy kernel), float64."""
        dt = self._gemm_dtype(dtype)
        work = X.to(dtype=dt, copy=True)
        work -= work.mean(dim=0, dtype=torch.float64).to(dt)
        d2 = (work @ work.T).to(torch.float64)
        del work
        _mirror_lower_(d2)
        sq = d2.diagonal().clone()
        d2 *= -2.0
        d2 += sq[:, None]
        d2 += sq[None, :]
        d2.clamp_(min=0.0)
        d2.fill_diagonal_(0.0)
        return d2

    def _upper_mask(self, n: int) -> torch.Tensor:
        mask = self._masks.get(n)
        if mask is None:
            if len(self._masks) >= _MASK_CACHE_SIZE:
                self._masks.pop(next(iter(self._masks)))
            mask = torch.ones((n, n), dtype=torch.bool, device=self.device).triu_(1)
            self._masks[n] = mask
        return mask

    def offdiag_median(self, M: torch.Tensor, *, sqrt: bool = False) -> float:
        """numpy's median of the entries above the diagonal (of ``sqrt(M)`` if asked)."""
        n = M.shape[0]
        if n < 2:
            return 0.0
        values = M[self._upper_mask(n)]
        m = values.numel()
        if m % 2:
            middle = values.kthvalue((m + 1) // 2).values.reshape(1)
        else:
            middle = torch.stack([values.kthvalue(m // 2).values,
                                  values.kthvalue(m // 2 + 1).values])
        if sqrt:  # monotone: the middle of the roots is the root of the middle
            middle = middle.sqrt()
        return float(middle.sum() / middle.numel())

    @staticmethod
    def rbf_inplace(sq_dist: torch.Tensor, sigma: float) -> torch.Tensor:
        sq_dist *= -1.0 / (2.0 * sigma * sigma)
        return sq_dist.exp_()

    @staticmethod
    def sqrt_(M: torch.Tensor) -> torch.Tensor:
        return M.sqrt_()

    @staticmethod
    def fill_diagonal_(M: torch.Tensor, value: float) -> None:
        M.fill_diagonal_(value)

    # ------------------------------------------------------- §2.7-§2.8 spectral
    @staticmethod
    def row_sums(W: torch.Tensor) -> torch.Tensor:
        return W.sum(dim=1)

    @staticmethod
    def inv_sqrt(degrees: torch.Tensor) -> torch.Tensor:
        return torch.where(degrees > 0, 1.0 / torch.sqrt(degrees), torch.zeros_like(degrees))

    def symmetric_normalize_inplace(self, W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        degrees = W.sum(dim=1)
        inv_sqrt = self.inv_sqrt(degrees)
        W *= inv_sqrt[:, None]
        W *= inv_sqrt[None, :]
        return W, degrees

    def nystrom_eigenvectors(self, S: torch.Tensor, landmarks: np.ndarray, energy: float,
                             ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """``Z = C U_r Λ_r^{-1}`` from the landmark block (see the numpy kernel)."""
        n = S.shape[0]
        landmarks = np.asarray(landmarks, dtype=np.int64)
        if landmarks.size == n and landmarks[0] == 0 and landmarks[-1] == n - 1:
            C = A = S
        else:
            index = torch.from_numpy(landmarks).to(self.device)
            C = S.index_select(1, index)
            A = C.index_select(0, index)
        lam, U = torch.linalg.eigh(A)
        del A
        lam = lam.flip(0).clamp_(min=0.0)
        lam_host = lam.cpu().numpy()
        r = energy_rank(lam_host, energy)
        if not lam_host[0] > 0:  # a zero block: no spectral information at all
            return torch.zeros((n, 1), dtype=S.dtype, device=self.device), lam, 1
        U_r = U.flip(1)[:, :r]
        Z = C @ (U_r / lam[:r])
        return Z, lam, r

    @staticmethod
    def row_norms(Z: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(Z, dim=1)

    @staticmethod
    def argmax(v: torch.Tensor) -> int:
        return int(torch.argmax(v))  # the first maximum, as numpy

    @staticmethod
    def nearest_to_mean(Z: torch.Tensor) -> int:
        centred = Z - Z.mean(dim=0)
        return int(torch.argmin((centred * centred).sum(dim=1)))

    # ----------------------------------------------------------- §2.10 greedy
    def greedy_logdet(self, K: torch.Tensor, n_select: int, *, eps: float = 1e-6,
                      first: int | None = None, initial=None) -> tuple[np.ndarray, np.ndarray]:
        """The numpy kernel's greedy log-det on the device; picks and gains on the host.

        The pick is the first index whose gain is within ``TIE_TOLERANCE · max(diag K + eps)``
        of the maximum, which is the numpy kernel's rule, computed without leaving the device.
        ``initial`` starts the factor from items already selected, as in the numpy kernel.
        """
        n = K.shape[0]
        given, n_select = greedy_plan(n, n_select, initial)
        if n_select is None:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
        n_given = len(given)
        picks = torch.empty(n_select, dtype=torch.int64, device=self.device)
        gains = torch.empty(n_select, dtype=torch.float64, device=self.device)
        if n_select == 0:
            return self.to_host(picks), self.to_host(gains)
        g = K.diagonal().to(torch.float64) + eps  # a copy
        rows = torch.empty((n_select, n), dtype=torch.float64, device=self.device)
        tie_tol = TIE_TOLERANCE * float(g.max())
        for k in range(n_select):
            if k < n_given:
                j = torch.tensor(given[k], device=self.device)
            elif k == 0 and first is not None:
                j = torch.tensor(int(first), device=self.device)
            else:
                j = torch.argmax((g >= g.max() - tie_tol).to(torch.uint8))
            g_j = g[j]
            picks[k] = j
            gains[k] = g_j
            if k == n_select - 1:
                break
            row = rows[k]
            if k:
                torch.mv(rows[:k].T, rows[:k, j], out=row)
                torch.sub(K[j], row, out=row)
            else:
                row.copy_(K[j])
            # a non-positive gain (catastrophic round-off only) adds nothing: a zero row
            row *= torch.where(g_j > 0, 1.0 / torch.sqrt(g_j), torch.zeros_like(g_j))
            g -= row * row
            g.clamp_(min=0.0)
            g.index_fill_(0, picks[:k + 1], float("-inf"))
        return self.to_host(picks)[n_given:], self.to_host(gains)[n_given:]


_BACKENDS: dict[str, TorchBackend] = {}


def torch_backend(device: str) -> TorchBackend:
    """The (cached) torch backend of a checked device name."""
    backend = _BACKENDS.get(device)
    if backend is None:
        backend = _BACKENDS[device] = TorchBackend(device)
    return backend

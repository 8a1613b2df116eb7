"""k-Center and Herding on a torch device (``backend="torch"``, ``device="cpu"|"cuda"|...``).

The numpy kernels of :mod:`~qd_lib.selection.methods.kcenter` and
:mod:`~qd_lib.selection.methods.herding` run on the host with one BLAS thread. The kernels here
compute the same quantities on a torch device, so a selection of a million rows is a few
thousand bandwidth-bound passes over a matrix held in device memory:

* **Working copy.** The rows are streamed from the host (a ``numpy.memmap`` is read chunk by
  chunk, float16 stays float16 on the way), their column mean is summed in float64 on the
  device, and the centred rows are rounded once into the working dtype (float32 by default,
  float64 with ``dtype="float64"``), with float64 row norms, as
  :func:`~qd_lib.selection._kernels.working_copy` does. Temporaries are chunked to
  ``budget_bytes``; the device holds the working copy (``n × d`` in the working dtype), for
  Herding also the rows as stored (the float64 decisions read them), and ``O(n)`` vectors.
* **No reduced precision.** Where float32 matmuls may run in TF32/bf16 on the device (the
  user's global setting, see :func:`~qd_lib.selection.methods.qdiverse.torch_backend.
  _reduced_fp32_matmul`), the working copy is float64 instead: the round-off bounds below
  assume IEEE float32 products.
* **k-Center** (:func:`kcenter_torch`): the plain farthest-first traversal, one GEMV per pick
  (no triangle-inequality pruning: on a device a full pass is cheaper than the gathers), with
  the numpy kernel's arithmetic: working-dtype inner products, float64 Gram identity, clamp at
  0, squared distances below ``4·eps·(‖a‖² + ‖b‖²)`` snapped to 0, ties to the lowest index.
  **Tie rule.** Both backends round the same working rows' inner products, in different
  summation orders; the picks are numpy's unless at some step the largest and second-largest
  distance to the nearest centre differ by less than the proven bound on that difference
  (``2·(4c + 12·eps)·max‖w‖²``, ``c`` from :func:`~qd_lib.selection._kernels.dot_error_bound`).
  ``info["near_ties"]`` counts those steps (0 certifies the numpy picks; the bound is a worst
  case, so a positive count seldom means a different pick) and
  ``info["min_gap_over_max_sq"]`` is the smallest lead ``first − second`` seen, over
  ``max‖w‖²`` (the round-off of the Gram identity is a few ``eps`` on that scale: float32
  picks whose lead is below about ``1e-5`` of it are decided by round-off on either backend;
  use ``dtype="float64"`` there). Ties go to the lowest index in both; distances to a
  centre's duplicates are snapped to 0 in both, but a GEMV may round two equal rows' products
  with a third differently (numpy's too), so in float32 equal far points can differ by
  round-off and count as a near tie.
* **Herding** (:func:`herding_torch`): exact like the numpy engine. Every pick screens all
  rows with one working-dtype GEMV against the float64 sum of the picks, keeps every row whose
  screened score lies within the proven round-off bound of the best, and decides among those
  in float64 from the rows as stored; so the picks are those of the float64 greedy, on any
  device. The numpy engine also checks predicted blocks of picks with one GEMM; here every pick
  is one pass (a device pass is two orders of magnitude cheaper than a host one). Only ties
  within float64 round-off (about ``1e-15`` relative; device and host sum in different
  orders) may go either way; exact ties (duplicate rows) go to the lowest index.

Timing: the picks come back with ``.cpu()``, which waits for the device, so a clock read after
``select`` returns includes the device's work.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch

from qd_lib.selection._kernels import (
    DEFAULT_CHUNK_BYTES,
    chunk_rows,
    dot_error_bound,
    resolve_dtype,
)
from qd_lib.selection.methods.qdiverse.torch_backend import (
    _reduced_fp32_matmul,
    resolve_torch_device,
)

logger = logging.getLogger(__name__)

__all__ = ["DeviceRows", "herding_torch", "kcenter_torch", "resolve_torch_device",
           "to_device_rows", "working_torch_dtype"]

#: Memory budget of one float64 temporary block on a CUDA device (bytes).
CUDA_CHUNK_BYTES = 256 << 20

_TORCH_DTYPES = {np.dtype(np.float16): torch.float16, np.dtype(np.float32): torch.float32,
                 np.dtype(np.float64): torch.float64}


def working_torch_dtype(dtype, device: torch.device) -> torch.dtype:
    """The torch working dtype for a ``"float32"``/``"float64"`` option on ``device``.

    float32 becomes float64 where float32 matmuls may run in reduced precision (TF32/bf16),
    since the round-off bounds of the selectors assume IEEE float32 products.
    """
    wanted = torch.float64 if resolve_dtype(dtype) is np.float64 else torch.float32
    if wanted is torch.float32 and _reduced_fp32_matmul(device):
        logger.info("reduced-precision float32 matmuls are enabled on %s: the working copy is "
                    "float64 instead", device)
        return torch.float64
    return wanted


@dataclass
class DeviceRows:
    """A feature matrix on a device: centred working rows and what the decisions need.

    Attributes
    ----------
    W : Tensor of shape (n, d)
        ``X − mean`` rounded once into the working dtype.
    sq : Tensor of shape (n,), float64
        Squared norms: of the float64 centred rows (``exact_norms``) or of ``W``.
    mean : Tensor of shape (d,), float64
        Column mean of ``X``.
    stored : Tensor of shape (n, d) or None
        ``X`` as stored (float16/32/64), kept when exact rows are needed.
    """

    W: torch.Tensor
    sq: torch.Tensor
    mean: torch.Tensor
    stored: torch.Tensor | None = None

    def exact_rows(self, idx: torch.Tensor) -> torch.Tensor:
        """The float64 centred rows ``idx`` (``X[idx] − mean`` computed in float64)."""
        return self.stored.index_select(0, idx).to(torch.float64) - self.mean


def _chunk_budget(device: torch.device, budget_bytes: int | None) -> int:
    if budget_bytes is not None:
        return int(budget_bytes)
    return CUDA_CHUNK_BYTES if device.type == "cuda" else DEFAULT_CHUNK_BYTES


def _upload(X: np.ndarray, start: int, stop: int, device: torch.device) -> torch.Tensor:
    """Rows ``start:stop`` of ``X`` on ``device``, as stored (a memmap is read only here)."""
    host = np.array(X[start:stop], order="C")  # a writable copy of the chunk, dtype as stored
    if host.dtype not in _TORCH_DTYPES:
        host = host.astype(np.float64)
    return torch.from_numpy(host).to(device)


def _check_device_memory(device: torch.device, need: int, what: str) -> None:
    """Raise a clear error when the device cannot hold ``need`` bytes (CUDA only)."""
    if device.type != "cuda":
        return
    # mem_get_info wants an index: torch.device("cuda") has none
    index = device.index if device.index is not None else torch.cuda.current_device()
    free, total = torch.cuda.mem_get_info(index)
    if need > free:
        raise ValueError(
            f"The 'device' parameter names {device} ({free / 2**30:.2f} GiB free of "
            f"{total / 2**30:.2f} GiB), which cannot hold the {need / 2**30:.2f} GiB that "
            f"{what} needs; use backend='numpy' or a device with more memory.")


def to_device_rows(X: np.ndarray, device, dtype="float32", *, keep_stored: bool = False,
                   exact_norms: bool = False, budget_bytes: int | None = None,
                   what: str = "the selection") -> DeviceRows:
    """Stream ``X`` to ``device`` in row chunks and build its centred working copy there.

    Parameters
    ----------
    X : ndarray of shape (n, d)
        float16/32/64 rows (a ``numpy.memmap`` is read chunk by chunk).
    device : str or torch.device
        A checked device (:func:`resolve_torch_device`).
    dtype : {"float32", "float64"}, default="float32"
        Working dtype (float64 where reduced-precision float32 matmuls are enabled).
    keep_stored : bool, default=False
        Keep ``X`` as stored on the device (for :meth:`DeviceRows.exact_rows`).
    exact_norms : bool, default=False
        Norms of the float64 centred rows instead of the rounded working rows.
    budget_bytes : int, optional
        Size of one chunk's float64 temporary (default 32 MiB on the CPU, 256 MiB on CUDA).
    what : str
        Named in the error when the device is too small.

    Returns
    -------
    DeviceRows
    """
    device = torch.device(device)
    n, d = X.shape
    wdt = working_torch_dtype(dtype, device)
    sdt = _TORCH_DTYPES.get(np.dtype(X.dtype), torch.float64)
    w_size = torch.empty((), dtype=wdt).element_size()
    s_size = torch.empty((), dtype=sdt).element_size()
    step = chunk_rows(d, itemsize=8, budget_bytes=_chunk_budget(device, budget_bytes))
    need = n * d * (w_size + (s_size if keep_stored else 0)) + 2 * min(n, step) * d * 8
    _check_device_memory(device, need, what)
    # a chunk as stored fits the working dtype exactly (float16/32 into float32, anything into
    # float64): the working copy can hold it until the mean is known
    in_place = s_size <= w_size
    W = torch.empty((n, d), dtype=wdt, device=device)
    stored = torch.empty((n, d), dtype=sdt, device=device) if keep_stored else None
    colsum = torch.zeros(d, dtype=torch.float64, device=device)
    for start in range(0, n, step):
        stop = min(start + step, n)
        block = _upload(X, start, stop, device)
        colsum += block.sum(dim=0, dtype=torch.float64)
        if stored is not None:
            stored[start:stop] = block
        elif in_place:
            W[start:stop] = block
    mean = colsum / n
    sq = torch.empty(n, dtype=torch.float64, device=device)
    for start in range(0, n, step):
        stop = min(start + step, n)
        if stored is not None:
            src = stored[start:stop]
        elif in_place:
            src = W[start:stop]
        else:
            src = _upload(X, start, stop, device)
        exact = src.to(torch.float64) - mean
        W[start:stop] = exact  # rounded once into the working dtype
        if not exact_norms:
            exact = W[start:stop].to(torch.float64)
        sq[start:stop] = (exact * exact).sum(dim=1)
    return DeviceRows(W=W, sq=sq, mean=mean, stored=stored)


def _index(i, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(i, dtype=torch.int64, device=device).reshape(1)


# ---------------------------------------------------------------------------------- k-Center
def kcenter_torch(X: np.ndarray, budget: int, first: int, dtype="float32", *, device="cpu",
                  bar=None, budget_bytes: int | None = None
                  ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Farthest-first traversal (k-Center Greedy) on a torch device.

    Parameters
    ----------
    X : ndarray of shape (n, d)
        Rows as stored (float16/32/64, memory-mapped or not).
    budget : int
        Picks, ``1 ≤ budget ≤ n``, the first centre included.
    first : int
        The first centre.
    dtype : {"float32", "float64"}, default="float32"
        Precision of the inner products (see :func:`to_device_rows`).
    device : str or torch.device, default="cpu"
        A checked device name.
    bar : tqdm, optional
        Advanced once per pick.
    budget_bytes : int, optional
        Chunk size of the upload (see :func:`to_device_rows`).

    Returns
    -------
    picks : ndarray of int64, shape (budget,)
    radii : ndarray of float64, shape (budget,)
        Covering radius after each pick.
    stats : dict
        ``device``, ``near_ties`` (steps whose winner the round-off bound cannot certify
        against numpy's picks; see the module notes) and ``min_gap_over_max_sq``.
    """
    device = torch.device(device)
    rows = to_device_rows(X, device, dtype, budget_bytes=budget_bytes,
                          what=f"kcenter on {X.shape[0]} x {X.shape[1]} rows")
    W, sq = rows.W, rows.sq
    del rows
    n, d = W.shape
    eps = float(torch.finfo(W.dtype).eps)
    max_sq = float(sq.max())
    c = dot_error_bound(np.float32 if W.dtype == torch.float32 else np.float64, d)
    # |numpy value − device value| ≤ B; a pick is certified when it leads by more than 2B
    tol = 2.0 * (1.01 * (4.0 * c + 12.0 * eps) * max_sq + 64.0 * 2.0 ** -53 * max_sq)

    def d2_to(p: torch.Tensor) -> torch.Tensor:
        wp = W.index_select(0, p).reshape(-1)
        sqp = sq.index_select(0, p)
        d2 = torch.mv(W, wp).to(torch.float64)
        d2.mul_(-2.0).add_(sq).add_(sqp).clamp_(min=0.0)
        d2.masked_fill_(d2 <= (4.0 * eps) * (sq + sqp), 0.0)
        return d2

    p = _index(first, device)
    m = d2_to(p)
    m.index_fill_(0, p, -math.inf)
    picks = torch.empty(budget, dtype=torch.int64, device=device)
    radii = torch.empty(budget, dtype=torch.float64, device=device)
    picks[0] = first
    near = torch.zeros((), dtype=torch.int64, device=device)
    inf = torch.full((), math.inf, dtype=torch.float64, device=device)
    min_gap = inf.clone()
    if bar is not None:
        bar.update(1)
    for t in range(1, budget):
        p = torch.argmax(m).reshape(1)  # the first maximum: ties to the lowest index
        if n - t >= 2:
            top = torch.topk(m, 2).values
            gap = top[0] - top[1]
            leads = top[0] > 0  # all zero: only duplicates of centres left, exact ties
            near += ((gap <= tol) & leads).to(torch.int64)
            min_gap = torch.minimum(min_gap, torch.where(leads, gap, inf))
        radii[t - 1] = m.index_select(0, p)[0].clamp(min=0.0)
        picks[t] = p[0]
        m.index_fill_(0, p, -math.inf)
        torch.minimum(m, d2_to(p), out=m)
        if bar is not None:
            bar.update(1)
    radii[budget - 1] = m.max().clamp(min=0.0)  # -inf (no point left) gives 0
    gap = float(min_gap) / max_sq if max_sq > 0 else math.inf
    stats = {"device": str(device), "near_ties": int(near),
             "min_gap_over_max_sq": gap if math.isfinite(gap) else None}
    return picks.cpu().numpy(), radii.sqrt().cpu().numpy(), stats


# ----------------------------------------------------------------------------------- Herding
def herding_torch(X: np.ndarray, budget: int, dtype="float32", *, farthest: bool = False,
                  device="cpu", bar=None, budget_bytes: int | None = None
                  ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Exact greedy herding on a torch device: screened in the working dtype, decided in float64.

    With ``w_i`` the centred rows and ``S_t`` the float64 sum of the picks, the classic rule
    picks ``argmin f_i``, DeepCore's ``argmax f_i``, ``f_i = ‖w_i‖² + 2⟨S_t, w_i⟩`` (see
    :func:`~qd_lib.selection.methods.herding.herding_greedy`). Each pick: one GEMV in the
    working dtype gives every unpicked row's screened ``h_i = sign·f_i / 2``; its round-off is
    at most ``ε_t = c‖S_t‖ max‖w‖`` (:func:`~qd_lib.selection._kernels.dot_error_bound`), so
    every row within ``2ε_t`` of the best screened score is evaluated in float64 from the rows
    as stored, and the lowest-index float64 winner is picked.

    Parameters
    ----------
    X : ndarray of shape (n, d)
        Rows as stored (float16/32/64, memory-mapped or not).
    budget : int
        Number of picks, ``1 ≤ budget ≤ n``.
    dtype : {"float32", "float64"}, default="float32"
        Precision of the screening pass.
    farthest : bool, default=False
        ``True`` for DeepCore's argmax rule.
    device, bar, budget_bytes
        As for the k-Center kernel above.

    Returns
    -------
    picks : ndarray of int64, shape (budget,)
    discrepancy : ndarray of float64, shape (budget,)
        ``‖mean(picks[:t+1]) − μ‖`` after each pick.
    stats : dict
        ``device``, ``plain_steps`` (passes over the rows: one per pick) and
        ``exact_checks`` (decisions the screening left to float64).
    """
    device = torch.device(device)
    rows = to_device_rows(X, device, dtype, keep_stored=True, exact_norms=True,
                          budget_bytes=budget_bytes,
                          what=f"herding on {X.shape[0]} x {X.shape[1]} rows")
    W, sq = rows.W, rows.sq
    n, d = W.shape
    sign = -1.0 if farthest else 1.0
    c = dot_error_bound(np.float32 if W.dtype == torch.float32 else np.float64, d)
    max_sq = float(sq.max())
    w_max = math.sqrt(max_sq)
    slack = 32.0 * 2.0 ** -53 * max_sq
    half = (0.5 * sign) * sq  # +inf marks picked rows
    S = torch.zeros(d, dtype=torch.float64, device=device)
    picks = torch.empty(budget, dtype=torch.int64, device=device)
    disc = torch.empty(budget, dtype=torch.float64, device=device)
    exact_checks = 0
    for t in range(budget):
        h = torch.mv(W, (sign * S).to(W.dtype)).to(torch.float64)
        h += half
        tol = 2.0 * (c * w_max * torch.linalg.vector_norm(S) + slack)
        cand = torch.nonzero(h <= h.min() + tol).reshape(-1)  # ascending; waits for the device
        if cand.numel() == 1:
            q = cand
        else:
            exact_checks += 1
            # a row-wise reduction (not a GEMV): equal rows get equal values, exact ties
            vals = sign * (sq.index_select(0, cand) + 2.0 * (rows.exact_rows(cand) * S).sum(1))
            q = cand[torch.argmin(vals)].reshape(1)  # the first minimum: the lowest index
        S += rows.exact_rows(q)[0]
        half.index_fill_(0, q, math.inf)
        picks[t] = q[0]
        disc[t] = torch.linalg.vector_norm(S) / (t + 1)
        if bar is not None:
            bar.update(1)
    stats = {"device": str(device), "plain_steps": int(budget), "exact_checks": exact_checks}
    return picks.cpu().numpy(), disc.cpu().numpy(), stats

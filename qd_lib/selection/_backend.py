"""The ``backend`` and ``device`` options of the selectors that can run on a torch device.

``backend="numpy"`` (the default) runs the host kernels and accepts only ``device="cpu"`` (or
``"auto"``); ``backend="torch"`` runs :mod:`qd_lib.selection._torch_kernels` on ``"cpu"``,
``"cuda"``, ``"cuda:<index>"`` or ``"auto"`` (CUDA when available). torch is imported only for
``backend="torch"``, so the numpy path never loads it.
"""
from __future__ import annotations

from qd_lib.utils.validation import check_option

__all__ = ["BACKENDS", "resolve_backend"]

#: The values of the ``backend`` option.
BACKENDS = ("numpy", "torch")


def _device_name(device, method: str) -> str:
    if isinstance(device, str):
        return device
    if type(device).__module__ == "torch" and type(device).__name__ == "device":
        return str(device)
    raise TypeError(f"The 'device' parameter of {method} must be a str or a torch.device. "
                    f"Got {device!r} of type {type(device).__name__} instead.")


def resolve_backend(backend, device, method: str) -> str | None:
    """Check ``backend`` and ``device``; the canonical torch device name, or None for numpy.

    Parameters
    ----------
    backend : {"numpy", "torch"}
        Where the kernels run.
    device : str or torch.device
        ``"cpu"`` or ``"auto"`` with numpy; ``"auto"``, ``"cpu"``, ``"cuda"``,
        ``"cuda:<index>"`` (or a ``torch.device``) with torch.
    method : str
        The selector's name, for the messages.

    Returns
    -------
    str or None
        ``None`` for the numpy backend, else ``"cpu"``, ``"cuda"`` or ``"cuda:<index>"``.

    Raises
    ------
    ValueError
        For an unknown backend, a device other than the CPU with numpy, an unknown device name,
        or CUDA requested where it is not available (the message names ``device``).
    TypeError
        If ``device`` is neither a str nor a torch.device.
    """
    check_option(backend, "backend", BACKENDS)
    name = _device_name(device, method)
    if backend == "numpy":
        if name not in ("cpu", "auto"):
            raise ValueError(f"The 'device' parameter of {method} must be 'cpu' (or 'auto') "
                             "with backend='numpy'; only backend='torch' runs on other devices. "
                             f"Got {name!r} instead.")
        return None
    try:
        from qd_lib.selection._torch_kernels import resolve_torch_device
    except ImportError as exc:  # pragma: no cover - torch is a dependency of qd_lib
        raise ImportError(f"The 'backend' parameter 'torch' of {method} needs PyTorch, which "
                          f"cannot be imported here ({exc}); use backend='numpy'.") from exc
    return resolve_torch_device(name)

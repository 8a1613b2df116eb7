"""What machine a measurement ran on: CPU model, vector extensions and usable cores.

Timings and float32 results depend on the machine: the proxy benchmark's build differs between
CPU families (AVX-512 or AVX2 kernels), and one training run of the study takes twice as long on
one 2-core machine as on another. Every run record therefore says where it ran
(:func:`machine_record`), and tables group timings by :func:`machine_label`.
"""
from __future__ import annotations

import os
import platform

__all__ = ["cpu_model", "machine_label", "machine_record"]

_CPUINFO = "/proc/cpuinfo"
#: the widest vector extension named, checked widest first
_SIMD_LEVELS = ("avx512f", "avx2", "avx", "sse4_2", "neon", "asimd")


def _cpuinfo_field(name: str, path: str = _CPUINFO) -> str | None:
    try:
        with open(path) as fh:
            for line in fh:
                key, sep, value = line.partition(":")
                if sep and key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_model(path: str = _CPUINFO) -> str:
    """The CPU's model name (``/proc/cpuinfo``; the platform's processor string elsewhere)."""
    return (_cpuinfo_field("model name", path) or platform.processor() or platform.machine()
            or "unknown CPU")


def _simd(path: str = _CPUINFO) -> str | None:
    flags = set((_cpuinfo_field("flags", path) or _cpuinfo_field("Features", path) or "")
                .split())
    return next((level for level in _SIMD_LEVELS if level in flags), None)


def machine_record(path: str = _CPUINFO) -> dict:
    """The facts a run record keeps about its machine.

    Returns
    -------
    dict
        ``cpu`` (model name), ``simd`` (widest vector extension among ``avx512f, avx2, avx,
        sse4_2, neon, asimd``, or ``None``), ``logical_cpus`` (``os.cpu_count()``) and
        ``usable_cpus`` (those this process may run on).
    """
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        usable = os.cpu_count()
    return {"cpu": cpu_model(path), "simd": _simd(path), "logical_cpus": os.cpu_count(),
            "usable_cpus": usable}


def machine_label(record: dict | None) -> str | None:
    """A short name of a :func:`machine_record`: ``"Intel(R) Xeon(R) Processor, avx512f, 2
    cores"``; ``None`` for a record without one (runs recorded before machines were kept)."""
    if not record or not record.get("cpu"):
        return None
    parts = [str(record["cpu"])]
    if record.get("simd"):
        parts.append(str(record["simd"]))
    if record.get("usable_cpus"):
        parts.append(f"{record['usable_cpus']} cores")
    return ", ".join(parts)

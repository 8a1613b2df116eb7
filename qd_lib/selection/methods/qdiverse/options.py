"""Q-Diverse options: defaults, the paper's per-dataset presets, and option validation.

Design note ``qdiverse.md`` §4 (hyperparameters from the supplement: ``gamma``, ``energy``,
``eps``, ``(n_landmarks, batch_size)`` per dataset) and §3 (what is stated vs inferred: every
inferred choice of §2 is a named option whose default is the note's recommendation).

Options resolve as defaults < ``preset`` < options passed explicitly; every value is checked
here, at the boundary, with scikit-learn's wording (the parameter's name, what is allowed, the
value received).
"""
from __future__ import annotations

import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from qd_lib.utils.errors import UnknownNameError
from qd_lib.utils.validation import check_option, check_scalar

__all__ = ["QDIVERSE_DEFAULTS", "QDIVERSE_PRESETS", "QDiversePreset", "qdiverse_preset",
           "resolve_n_jobs", "resolve_options"]

#: Every option of the selector with its default (the design note's recommendation).
QDIVERSE_DEFAULTS: Mapping[str, object] = MappingProxyType({
    # hyperparameters named by the paper (supplement §E.1)
    "preset": None,
    "gamma": 0.5,
    "energy": 0.95,
    "eps": 1e-6,
    "n_landmarks": 600,
    "batch_size": 1000,
    # choices the paper leaves open (inferred; design note §2-§3)
    "distance_norm": "max",
    "combine": "distance",
    "bandwidth": "median",
    "self_loops": True,
    "laplacian": "sym",
    "landmarks": "uniform",
    "eigen_power": 0.0,
    "drop_leading": False,
    "row_normalize": False,
    "z_bandwidth": "median",
    "first_pick": "lowest_index",
    "batch_order": "contiguous",
    "allocation": "largest_remainder",
    "distance_dtype": "float32",
    # labelled extensions beyond the paper (qdiverse_qdpp, qdiverse_density; None = the paper)
    "extension": None,
    "quality_power": 0.5,
    "local_k": 7,
    # where the kernels run (the same coreset, up to round-off: see torch_backend.py)
    "backend": "numpy",
    "device": "cpu",
    # execution (never changes the result)
    "n_jobs": 1,
    "start_method": "spawn",
    "client": None,
    "progress": None,
    # conditioning on rows already selected (checked by the selector; recorded only when given)
    "initial": None,
    "initial_everywhere": None,
})

#: The allowed values of the string options.
CHOICES = MappingProxyType({
    "distance_norm": ("max", "median", "none"),
    "combine": ("distance", "squared", "kernel"),
    "laplacian": ("sym", "rw", "none"),
    "landmarks": ("uniform", "first", "kmeans++"),
    "first_pick": ("lowest_index", "max_degree", "nearest_mean"),
    "batch_order": ("contiguous", "shuffle"),
    "allocation": ("largest_remainder", "sainte_lague"),
    "distance_dtype": ("float32", "float64"),
    "start_method": ("spawn", "forkserver"),
    "backend": ("numpy", "torch"),
    "extension": (None, "quality_dpp", "density_kernel"),
})

#: The options a preset sets, in the order :func:`_preset` takes them.
PRESET_KEYS = ("gamma", "energy", "eps", "n_landmarks", "batch_size")

# ----------------------------------------------------------------------------------- presets


@dataclass(frozen=True)
class QDiversePreset:
    """Per-dataset hyperparameters of Q-Diverse.

    Attributes
    ----------
    options : mapping
        ``gamma``, ``energy``, ``eps``, ``n_landmarks`` and ``batch_size``
        (``None`` = non-batch mode).
    inferred : tuple of str
        The options the paper does not state for this dataset (our choice).
    source : str
        Where the stated values come from.
    """

    options: Mapping[str, object]
    inferred: tuple[str, ...] = ()
    source: str = ""


def _preset(gamma, n_landmarks, batch_size, inferred=(), source="supplement §E.1"):
    values = (gamma, 0.95, 1e-6, n_landmarks, batch_size)  # energy and eps: §E.1, everywhere
    return QDiversePreset(MappingProxyType(dict(zip(PRESET_KEYS, values))), tuple(inferred),
                          source)


_NON_BATCH_NOTE = ("supplement §E.1 (γ, ε, energy); non-batch mode inferred for this small set, "
                   "landmark count not stated")
_NOT_STATED_NOTE = "supplement §E.1 (γ, ε, energy); (l, b) not stated, SPAQ's (600, 1500) used"

#: The paper's per-dataset settings. ``energy = 0.95`` and ``eps = 1e-6`` everywhere (§E.1);
#: γ = 0.7 for TID2013 (§E.1) and CIFAR-10 (§F.3), else 0.5.
QDIVERSE_PRESETS: Mapping[str, QDiversePreset] = MappingProxyType({
    "kadid10k": _preset(0.5, 600, 1000),
    "koniq10k": _preset(0.5, 600, 1000),
    "spaq": _preset(0.5, 600, 1500),
    "tid2013": _preset(0.7, 600, None, ("batch_size", "n_landmarks"), _NON_BATCH_NOTE),
    "agiqa3k": _preset(0.5, 600, None, ("batch_size", "n_landmarks"), _NON_BATCH_NOTE),
    "pipal": _preset(0.5, 600, 1500, ("batch_size", "n_landmarks"), _NOT_STATED_NOTE),
    "flive": _preset(0.5, 600, 1500, ("batch_size", "n_landmarks"), _NOT_STATED_NOTE),
    "cifar10": _preset(0.7, 500, 1500, (), "supplement §F.3"),
})

_PRESET_ALIASES = {"kadid": "kadid10k", "koniq": "koniq10k", "agiqa": "agiqa3k",
                   "pipal22": "pipal", "tid": "tid2013"}


def preset_key(name) -> str:
    """The :data:`QDIVERSE_PRESETS` key of a dataset name (case, dashes, underscores ignored)."""
    if not isinstance(name, str):
        raise TypeError(f"The 'preset' parameter must be None or a str. Got {name!r} of type "
                        f"{type(name).__name__} instead.")
    key = "".join(ch for ch in name.lower() if ch.isalnum())
    key = _PRESET_ALIASES.get(key, key)
    if key not in QDIVERSE_PRESETS:
        raise UnknownNameError("Q-Diverse preset", name, QDIVERSE_PRESETS)
    return key


def qdiverse_preset(dataset_name: str) -> dict:
    """The paper's Q-Diverse hyperparameters for a dataset, as options for ``select``.

    Parameters
    ----------
    dataset_name : str
        ``"kadid10k"``, ``"koniq10k"``, ``"spaq"``, ``"tid2013"``, ``"agiqa3k"``, ``"pipal"``,
        ``"flive"`` or ``"cifar10"``. Case, dashes and underscores are ignored
        (``"KADID-10K"`` works).

    Returns
    -------
    dict
        ``gamma``, ``energy``, ``eps``, ``n_landmarks`` and ``batch_size``. Which of them the
        paper does not state is in ``QDIVERSE_PRESETS[name].inferred``.

    Raises
    ------
    UnknownNameError
        If the dataset has no preset.

    Examples
    --------
    >>> qdiverse_preset("KADID-10k")["batch_size"]
    1000
    >>> opts = {**qdiverse_preset("tid2013"), "n_jobs": 2}   # then select("qdiverse", F, b, **opts)
    """
    return dict(QDIVERSE_PRESETS[preset_key(dataset_name)].options)


# -------------------------------------------------------------------------------- validation

def _check_bool(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"The {name!r} parameter must be a bool. Got {value!r} of type "
                        f"{type(value).__name__} instead.")
    return bool(value)


def _check_bandwidth(value, name: str):
    if isinstance(value, str):
        if value != "median":
            raise ValueError(f"The {name!r} parameter must be 'median' or a positive float. "
                             f"Got {value!r} instead.")
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"The {name!r} parameter must be 'median' or a positive float. "
                        f"Got {value!r} of type {type(value).__name__} instead.")
    return float(check_scalar(value, name, numbers.Real, min_val=0.0, closed="neither"))


def resolve_n_jobs(n_jobs) -> int:
    """Number of worker processes for ``n_jobs`` (``None`` = 1, ``-1`` = all cores)."""
    if n_jobs is None:
        return 1
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral):
        raise TypeError(f"The 'n_jobs' parameter must be None or a non-zero int. Got {n_jobs!r} "
                        f"of type {type(n_jobs).__name__} instead.")
    if n_jobs == 0:
        raise ValueError("The 'n_jobs' parameter must be None or a non-zero int "
                         "(-1 = all cores). Got 0 instead.")
    cores = os.cpu_count() or 1
    return int(n_jobs) if n_jobs > 0 else max(1, cores + 1 + int(n_jobs))


def _merge(given: Mapping) -> tuple[dict, tuple[str, ...]]:
    """Defaults < preset < explicit options (unchecked); the preset's unstated options."""
    unknown = sorted(set(given) - set(QDIVERSE_DEFAULTS))
    if unknown:
        raise TypeError(f"Unknown option(s) {unknown} for method 'qdiverse'. "
                        f"Valid options: {sorted(QDIVERSE_DEFAULTS)}.")
    o = dict(QDIVERSE_DEFAULTS)
    inferred: tuple[str, ...] = ()
    if given.get("preset") is not None:
        key = preset_key(given["preset"])
        o.update(QDIVERSE_PRESETS[key].options)
        inferred = tuple(k for k in QDIVERSE_PRESETS[key].inferred if k not in given)
        given = {**given, "preset": key}
    o.update(given)
    return o, inferred


def _check_hyperparameters(o: dict) -> None:
    """The paper's hyperparameters (§4), in place."""
    o["gamma"] = float(check_scalar(o["gamma"], "gamma", numbers.Real, min_val=0.0, max_val=1.0))
    o["energy"] = float(check_scalar(o["energy"], "energy", numbers.Real, min_val=0.0,
                                     max_val=1.0, closed="right"))
    o["eps"] = float(check_scalar(o["eps"], "eps", numbers.Real, min_val=0.0, closed="neither"))
    o["n_landmarks"] = int(check_scalar(o["n_landmarks"], "n_landmarks", numbers.Integral,
                                        min_val=1))
    if o["batch_size"] is not None:
        o["batch_size"] = int(check_scalar(o["batch_size"], "batch_size", numbers.Integral,
                                           min_val=1))


def _check_inferred_choices(o: dict) -> None:
    """The choices the paper leaves open (§3), in place."""
    for name, choices in CHOICES.items():
        check_option(o[name], name, choices)
    o["bandwidth"] = _check_bandwidth(o["bandwidth"], "bandwidth")
    o["z_bandwidth"] = _check_bandwidth(o["z_bandwidth"], "z_bandwidth")
    o["eigen_power"] = float(check_scalar(o["eigen_power"], "eigen_power", numbers.Real,
                                          min_val=0.0))
    o["quality_power"] = float(check_scalar(o["quality_power"], "quality_power", numbers.Real,
                                            min_val=0.0))
    o["local_k"] = int(check_scalar(o["local_k"], "local_k", numbers.Integral, min_val=1))
    if o["extension"] is not None and o.get("backend", "numpy") != "numpy":
        raise ValueError(f"The 'extension' option {o['extension']!r} runs on the numpy backend "
                         f"only. Got backend={o['backend']!r}.")
    for name in ("self_loops", "drop_leading", "row_normalize"):
        o[name] = _check_bool(o[name], name)


def _check_execution(o: dict) -> None:
    """``n_jobs``, ``client`` and ``progress`` (they never change the result)."""
    if o["progress"] is not None:
        o["progress"] = _check_bool(o["progress"], "progress")
    resolve_n_jobs(o["n_jobs"])  # validates
    client = o["client"]
    if client is None:
        return
    if not (callable(getattr(client, "map", None)) and callable(getattr(client, "gather", None))):
        raise TypeError("The 'client' parameter must be None or a Dask-like client with "
                        f"map() and gather() methods. Got {client!r} instead.")
    if o["n_jobs"] not in (None, 1):
        raise ValueError("The 'n_jobs' and 'client' parameters are exclusive: with a client "
                         f"the cluster decides the parallelism. Got n_jobs={o['n_jobs']!r}.")


def _device_name(device) -> str:
    if isinstance(device, str):
        return device
    if type(device).__module__ == "torch" and type(device).__name__ == "device":
        return str(device)
    raise TypeError("The 'device' parameter must be a str ('auto', 'cpu', 'cuda' or "
                    f"'cuda:<index>') or a torch.device. Got {device!r} of type "
                    f"{type(device).__name__} instead.")


def _check_backend(o: dict) -> None:
    """``backend`` and ``device``, in place (``device`` becomes its canonical name)."""
    device = _device_name(o["device"])
    if o["backend"] == "numpy":
        if device not in ("cpu", "auto"):
            raise ValueError("The 'device' parameter must be 'cpu' (or 'auto') with "
                             "backend='numpy'; only backend='torch' runs on other devices. "
                             f"Got {device!r} instead.")
        o["device"] = "cpu"
        return
    try:
        from qd_lib.selection.methods.qdiverse.torch_backend import resolve_torch_device
    except ImportError as exc:  # pragma: no cover - torch is a dependency of qd_lib
        raise ImportError(f"The 'backend' parameter 'torch' needs PyTorch, which cannot be "
                          f"imported here ({exc}); use backend='numpy'.") from exc
    o["device"] = resolve_torch_device(device)
    if resolve_n_jobs(o["n_jobs"]) != 1:
        raise ValueError("The 'n_jobs' parameter must be 1 with backend='torch': the batches "
                         "run one after another on the device (a Dask-like 'client' can spread "
                         f"them over several). Got n_jobs={o['n_jobs']!r} instead.")


def resolve_options(given: Mapping) -> tuple[dict, tuple[str, ...]]:
    """Resolve and validate the options passed to the selector.

    Parameters
    ----------
    given : mapping
        The options passed explicitly (a subset of :data:`QDIVERSE_DEFAULTS`).

    Returns
    -------
    options : dict
        Every option, resolved as defaults < ``preset`` < ``given`` and checked.
    inferred : tuple of str
        The preset's options that the paper does not state and ``given`` does not override.

    Raises
    ------
    TypeError, ValueError
        For an unknown option or a value of the wrong type or range, naming the parameter.
    UnknownNameError
        For an unknown preset.
    """
    o, inferred = _merge(given)
    _check_hyperparameters(o)
    _check_inferred_choices(o)
    _check_execution(o)
    _check_backend(o)
    return o, inferred

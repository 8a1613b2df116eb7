"""Run specifications and sweep files.

A :class:`RunSpec` names one experiment: dataset × selection method × fraction × seed, with the
model, its configuration and the feature set. Its ``spec_hash`` (sha256 of the canonical JSON
of everything that changes the result, plus the record schema version) decides whether a
finished run can be skipped; its ``run_id`` is readable and unique::

    <dataset>__<model>-<config>__<method>__f0.10__s0__<hash6>

A sweep file (YAML) lists the grid::

    name: demo                      # recorded in every run, used by `table`
    datasets: [proxy-default]
    scheme: paper                   # split scheme (the test split is its "test" part)
    model: maniqa
    config: small
    overrides: {epochs: 4}          # ModelConfig overrides (optional)
    # or several models, each "name/config" or {model, config, overrides}:
    # models: [musiq/paper, maniqa/paper]
    fractions: [0.1]
    seeds: [0, 1, 2]
    features: offline               # a feature set (offline, offline-deep, paper, pixels) or
                                    # a mapping overriding its roles: {set: offline,
                                    # content: resnet50}
    methods:
      - qdiverse                    # a name ...
      - name: herding               # ... or a mapping with params and/or features
        params: {variant: deepcore}
      - full                        # the whole training split (fraction ignored: 1.0)
    executor: papermill             # each run executes notebooks/04 (default); or python
    cell_timeout: 7200              # seconds a notebook cell may run (optional)

:func:`expand` turns it into RunSpecs after validating every name, so a typo fails in seconds.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import numbers
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from qd_lib.data.budget import format_fraction
from qd_lib.data.catalog import canonical_dataset_name
from qd_lib.features.sets import DEFAULT_FEATURE_SET, check_feature_spec, feature_spec
from qd_lib.utils.errors import UnknownNameError

SCHEMA_VERSION = 1
FULL_METHOD = "full"
SWEEP_KEYS = ("name", "datasets", "scheme", "model", "config", "overrides", "fractions",
              "seeds", "features", "methods", "description", "executor", "notebook",
              "models", "cell_timeout")
METHOD_KEYS = ("name", "params", "features")


def _canonical(obj) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        return float(obj)
    return str(obj)


@dataclass(frozen=True)
class RunSpec:
    """One experiment of a sweep.

    Attributes
    ----------
    dataset : str
        A name :func:`qd_lib.data.open_dataset` accepts (``proxy-tiny``, ``kadid``, a CSV path).
        Stored under its canonical name (:func:`qd_lib.data.canonical_dataset_name`), so an
        alias and the registry name give the same hash, run id and table column.
    method : str
        A selection method (:func:`qd_lib.selection.available_methods`) or ``"full"``.
    fraction : float
        Coreset fraction of the training split, in (0, 1].
    seed : int
        Seed of the selection and of the training run.
    model, config : str
        Model registry name and configuration name.
    scheme : str
        Split scheme.
    method_params : dict
        Options of the selection method.
    overrides : dict
        Model configuration overrides.
    features : str or dict, default="offline"
        The feature set selection reads: a set name or a mapping that overrides its roles
        (:mod:`qd_lib.features.sets`); stored in canonical form.
    sweep : str or None
        Name of the sweep this run belongs to (recorded, not hashed).
    root : str or None
        Image root override (not hashed: it does not change the result).
    alias : str or None
        The dataset name as it was given when it differs from the canonical one (recorded, not
        hashed; used to find run folders written before names were canonical).
    """

    dataset: str
    method: str
    fraction: float
    seed: int = 0
    model: str = "maniqa"
    config: str = "tiny"
    scheme: str = "paper"
    method_params: dict = field(default_factory=dict)
    overrides: dict = field(default_factory=dict)
    features: dict = field(default_factory=lambda: {"set": DEFAULT_FEATURE_SET})
    sweep: str | None = None
    root: str | None = None
    alias: str | None = None

    def __post_init__(self):
        if isinstance(self.fraction, bool) or not isinstance(self.fraction, numbers.Real) or \
                not 0 < float(self.fraction) <= 1:
            raise ValueError(f"The 'fraction' parameter must be a float in (0, 1]. Got "
                             f"{self.fraction!r} instead.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral) or \
                self.seed < 0:
            raise ValueError(f"The 'seed' parameter must be a non-negative int. Got "
                             f"{self.seed!r} instead.")
        object.__setattr__(self, "fraction", float(self.fraction))
        object.__setattr__(self, "seed", int(self.seed))
        canonical = canonical_dataset_name(self.dataset)
        if canonical != self.dataset:
            object.__setattr__(self, "alias", self.alias or str(self.dataset))
            object.__setattr__(self, "dataset", canonical)
        for name in ("method_params", "overrides"):
            value = getattr(self, name)
            if value is None:
                value = {}
            if not isinstance(value, Mapping):
                raise TypeError(f"The {name!r} parameter must be a mapping. Got "
                                f"{type(value).__name__} instead.")
            object.__setattr__(self, name, dict(value))
        object.__setattr__(self, "features", feature_spec(self.features))
        if self.method == FULL_METHOD and self.fraction != 1.0:
            object.__setattr__(self, "fraction", 1.0)

    def key(self) -> dict:
        """Everything that changes the result (what the hash covers)."""
        return _canonical({
            "schema_version": SCHEMA_VERSION, "dataset": self.dataset, "scheme": self.scheme,
            "method": self.method, "method_params": self.method_params,
            "fraction": self.fraction, "seed": self.seed, "model": self.model,
            "config": self.config, "overrides": self.overrides,
            "features": {} if self.method == FULL_METHOD else self.features})

    @property
    def spec_hash(self) -> str:
        return _hash(self.key())

    @property
    def run_id(self) -> str:
        return _run_id(self.dataset, self, self.spec_hash)

    def legacy_run_ids(self) -> dict[str, str]:
        """``{run_id: spec_hash}`` this run had under earlier versions of the workbench: the
        dataset as given (before names were canonical) and the feature spec in the sweep
        vocabulary of that time (``{source: encoders, set: ...}`` / ``{source: pixels}``)."""
        old_features = {} if self.method == FULL_METHOD else (
            {"source": "pixels"} if self.features == {"set": "pixels"} else
            {"source": "encoders", **self.features})
        out = {}
        for dataset in dict.fromkeys([self.alias or self.dataset, self.dataset]):
            key = {**self.key(), "dataset": dataset, "features": _canonical(old_features)}
            digest = _hash(key)
            out[_run_id(dataset, self, digest)] = digest
        out.pop(self.run_id, None)
        return out

    def to_dict(self) -> dict:
        return _canonical(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping) -> RunSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UnknownNameError("run spec field", unknown[0], known)
        return cls(**dict(data))


def _hash(key: Mapping) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _run_id(dataset: str, spec: RunSpec, spec_hash: str) -> str:
    """``<dataset>__<model>-<config>__<method>__f0.10__s0__<hash6>``."""
    name = re.sub(r"[^A-Za-z0-9.\-]+", "-", Path(dataset).stem
                  if str(dataset).endswith(".csv") else str(dataset))
    return (f"{name}__{spec.model}-{spec.config}__{spec.method}__"
            f"f{format_fraction(spec.fraction)}__s{spec.seed}__{spec_hash[:6]}")


def validate_spec(spec: RunSpec) -> None:
    """Check every name in ``spec`` against its registry (fast; loads no data).

    Raises
    ------
    UnknownNameError
        Unknown model, configuration, override, selection method, method option or feature
        source.
    """
    from qd_lib.models import get_config
    from qd_lib.selection import get_method

    get_config(spec.model, spec.config, **spec.overrides)
    if spec.method != FULL_METHOD:
        try:
            method = get_method(spec.method)
        except UnknownNameError:
            from qd_lib.selection import available_methods

            raise UnknownNameError("selection method", spec.method,
                                   available_methods() + [FULL_METHOD]) from None
        unknown = sorted(set(spec.method_params) - set(method.options))
        if unknown:
            raise UnknownNameError(f"option of method {spec.method!r}", unknown[0],
                                   method.options)
        check_feature_spec(spec.features, method.inputs)


def _as_list(value, name: str) -> list:
    if value is None:
        raise ValueError(f"The sweep needs {name!r}.")
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise ValueError(f"The sweep's {name!r} must not be empty. Got {value!r}.")
    return values


def load_sweep(source) -> dict:
    """Read a sweep from a YAML file path, YAML text or a mapping; check its keys."""
    if isinstance(source, Mapping):
        data = dict(source)
        origin = "sweep"
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"Sweep file not found: {source}")
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        origin = str(source)
        data.setdefault("name", path.stem)
    if not isinstance(data, Mapping):
        raise ValueError(f"{origin}: a sweep must be a mapping of {list(SWEEP_KEYS)}.")
    for key in data:
        if key not in SWEEP_KEYS:
            raise UnknownNameError(f"sweep key in {origin}", key, SWEEP_KEYS)
    return data


def _models(data: Mapping) -> list[dict]:
    """``model``/``config``/``overrides``, or each entry of ``models``, as RunSpec fields."""
    scheme = data.get("scheme", "paper")
    overrides = data.get("overrides") or {}
    if "models" not in data:
        return [{"model": data.get("model", "maniqa"), "config": data.get("config", "tiny"),
                 "scheme": scheme, "overrides": overrides}]
    if "model" in data or "config" in data:
        raise ValueError("A sweep takes either 'model' and 'config' or 'models', not both.")
    out = []
    for entry in _as_list(data["models"], "models"):
        if isinstance(entry, str) and "/" in entry:
            model, _, config = entry.partition("/")
            entry = {"model": model, "config": config}
        if isinstance(entry, Mapping):
            unknown = sorted(set(entry) - {"model", "config", "overrides"})
            if unknown:
                raise UnknownNameError("models entry key", unknown[0], ("model", "config",
                                                                       "overrides"))
        if not isinstance(entry, Mapping) or "model" not in entry or "config" not in entry:
            raise ValueError(f"Each entry of 'models' must be 'name/config' or a mapping with "
                             f"'model' and 'config' (no default: 'tiny' and 'paper' differ by "
                             f"orders of magnitude). Got {entry!r}.")
        out.append({"model": str(entry["model"]), "config": str(entry["config"]),
                    "scheme": scheme, "overrides": {**overrides,
                                                    **(entry.get("overrides") or {})}})
    return out


def expand(sweep, *, validate: bool = True) -> list[RunSpec]:
    """The RunSpecs of a sweep: models × datasets × methods × fractions × seeds (in that
    nesting order).

    ``full`` runs ignore the fractions (one per dataset and seed).
    """
    data = load_sweep(sweep)
    name = data.get("name")
    datasets = _as_list(data.get("datasets"), "datasets")
    methods = _as_list(data.get("methods"), "methods")
    fractions = _as_list(data.get("fractions", [1.0]), "fractions")
    seeds = _as_list(data.get("seeds", [0]), "seeds")
    default_features = data.get("features") or DEFAULT_FEATURE_SET
    specs: list[RunSpec] = []
    seen: set[str] = set()
    for common, dataset in [(m, d) for m in _models(data) for d in datasets]:
        for entry in methods:
            if isinstance(entry, str):
                entry = {"name": entry}
            if not isinstance(entry, Mapping) or "name" not in entry:
                raise ValueError(f"A sweep method must be a name or a mapping with 'name'. Got "
                                 f"{entry!r}.")
            for key in entry:
                if key not in METHOD_KEYS:
                    raise UnknownNameError("method entry key", key, METHOD_KEYS)
            method = str(entry["name"])
            for fraction in ([1.0] if method == FULL_METHOD else fractions):
                for seed in seeds:
                    spec = RunSpec(dataset=str(dataset), method=method, fraction=fraction,
                                   seed=seed, method_params=entry.get("params") or {},
                                   features=entry.get("features") or default_features,
                                   sweep=name, **common)
                    if spec.run_id in seen:
                        continue
                    seen.add(spec.run_id)
                    specs.append(spec)
    if validate:
        for spec in specs:
            validate_spec(spec)
    return specs


def environment_record() -> dict:
    """Library versions, git commit and dirty flag of the workbench checkout, and the machine
    (:func:`qd_lib.utils.machine.machine_record`: timings and float32 results depend on it)."""
    import platform
    import subprocess

    import numpy as np
    import torch

    from qd_lib.paths import repo_root

    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "numpy": np.__version__}
    for module in ("torchvision", "timm", "scipy", "pandas"):
        try:
            versions[module] = __import__(module).__version__
        except Exception:  # pragma: no cover - optional
            versions[module] = None
    try:
        from importlib.metadata import version

        versions["qd_workbench"] = version("qd-workbench")
    except Exception:  # pragma: no cover
        versions["qd_workbench"] = None
    commit, dirty = None, None
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")
    try:
        root = repo_root()
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10, env=env).stdout.strip() or None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=root, capture_output=True, text=True, timeout=20, env=env)
        dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
    except Exception:  # no git, or not a checkout
        pass
    from qd_lib.utils.machine import machine_record

    return {"versions": versions, "git_commit": commit, "git_dirty": dirty,
            "machine": machine_record()}

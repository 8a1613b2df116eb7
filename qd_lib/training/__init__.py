"""Training IQA models on coresets: seeded, checkpointed, resumable, CPU or CUDA.

>>> from qd_lib.training import train_on_coreset
>>> result = train_on_coreset(bench, image_ids=ids, model="maniqa", config="tiny",
...                           out_dir="runs/x")                       # doctest: +SKIP
>>> result.metrics["srcc"], result.info["n_test"]                     # doctest: +SKIP

``seed_everything`` is called here and nowhere else in the library.
"""
from qd_lib.training.loop import (
    CheckpointMismatchError,
    CoresetError,
    TrainingDivergedError,
    TrainResult,
    coreset_rows,
    describe_recipe,
    load_checkpoint,
    predict_images,
    resolve_device,
    train_on_coreset,
)
from qd_lib.training.pipelines import ImagePipeline, MusiqPipeline, crop_positions, make_pipeline
from qd_lib.training.seeding import derive_seed, seed_everything, seeded

__all__ = [
    "CheckpointMismatchError",
    "CoresetError",
    "ImagePipeline",
    "MusiqPipeline",
    "TrainResult",
    "TrainingDivergedError",
    "coreset_rows",
    "crop_positions",
    "derive_seed",
    "describe_recipe",
    "load_checkpoint",
    "make_pipeline",
    "predict_images",
    "resolve_device",
    "seed_everything",
    "seeded",
    "train_on_coreset",
]

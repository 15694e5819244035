"""Training and evaluation engine: loop (DDP-aware), evaluation, atomic checkpoints, logging."""

from segcvae.engine.checkpoint import (
    CheckpointError,
    atomic_save,
    capture_rng_state,
    load_checkpoint,
    model_from_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from segcvae.engine.checkpointer import Checkpointer
from segcvae.engine.data import (
    ItemSeededTransform,
    ResumableSampler,
    SeededAugmentation,
    collate,
    eval_loader,
    select_targets,
    target_weights,
    train_loader,
    training_pairs,
)
from segcvae.engine.distributed import (
    DistInfo,
    cleanup_distributed,
    init_distributed,
    resolve_device,
)
from segcvae.engine.divergence import DivergenceError, DivergenceGuard, NonFiniteLossError
from segcvae.engine.evaluation import EvalResult, VisBatch, eval_settings, evaluate
from segcvae.engine.logger import RunLogger
from segcvae.engine.optim import build_optimizer, build_scheduler
from segcvae.engine.report import format_markdown, format_table, save_sample_grid
from segcvae.engine.run import train
from segcvae.engine.run_dir import RunDirError, RunExistsError, check_run_dir
from segcvae.engine.trainer import Trainer
from segcvae.engine.validation import ValidationHook

__all__ = [
    "CheckpointError",
    "Checkpointer",
    "DivergenceError",
    "DivergenceGuard",
    "RunExistsError",
    "RunDirError",
    "ValidationHook",
    "check_run_dir",
    "eval_settings",
    "DistInfo",
    "EvalResult",
    "ItemSeededTransform",
    "NonFiniteLossError",
    "ResumableSampler",
    "RunLogger",
    "SeededAugmentation",
    "Trainer",
    "VisBatch",
    "atomic_save",
    "build_optimizer",
    "build_scheduler",
    "capture_rng_state",
    "cleanup_distributed",
    "collate",
    "eval_loader",
    "evaluate",
    "format_markdown",
    "format_table",
    "init_distributed",
    "load_checkpoint",
    "model_from_checkpoint",
    "resolve_device",
    "restore_rng_state",
    "save_checkpoint",
    "save_sample_grid",
    "select_targets",
    "target_weights",
    "train",
    "train_loader",
    "training_pairs",
]

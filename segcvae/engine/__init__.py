"""Training and evaluation engine: loop (DDP-aware), evaluation, atomic checkpoints, logging.

The modules, by what they are:

* the run: ``run`` (config -> run folder, the call behind ``tools/train.py``), ``run_dir`` (the
  folder itself), ``trainer`` (the loop), ``optim``, ``distributed``, ``logger``, ``meters``;
* the trainer's hooks: ``hook_checkpoints`` (``last.pt``, ``best.pt``, resuming),
  ``hook_validation`` (validate every ``train.eval_every`` steps), ``hook_divergence`` (the
  non-finite-loss guard);
* data: ``loaders`` (the run's loaders from the config), ``batches`` (collation, the resumable
  order), ``targets`` (each step's rater targets), ``checks`` (the data checked before the first
  step);
* evaluation: ``eval_loop`` (the loop), ``eval_metrics`` (what it gathers per batch and the metrics
  it makes), ``eval_report`` (tables and the sample grid); ``memory`` (settings refused before
  they would allocate more than the machine has);
* files: ``checkpoint`` (the checkpoint format: atomic save, load, rebuild the model),
  ``predict`` (prediction on image files).
"""

from segcvae.engine.batches import (
    ItemSeededTransform,
    ResumableSampler,
    SeededAugmentation,
    collate,
    eval_loader,
    train_loader,
)
from segcvae.engine.checkpoint import (
    CheckpointError,
    atomic_save,
    capture_rng_state,
    load_checkpoint,
    model_from_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from segcvae.engine.distributed import (
    DistInfo,
    cleanup_distributed,
    init_distributed,
    resolve_device,
)
from segcvae.engine.eval_loop import EvalResult, VisBatch, eval_settings, evaluate
from segcvae.engine.eval_report import format_markdown, format_table, save_sample_grid
from segcvae.engine.hook_checkpoints import Checkpointer
from segcvae.engine.hook_divergence import DivergenceError, DivergenceGuard, NonFiniteLossError
from segcvae.engine.hook_validation import ValidationHook
from segcvae.engine.logger import RunLogger
from segcvae.engine.optim import build_optimizer, build_scheduler
from segcvae.engine.run import train
from segcvae.engine.run_dir import RunDirError, RunExistsError, check_run_dir
from segcvae.engine.targets import expand_raters, select_targets, target_weights, training_pairs
from segcvae.engine.trainer import Trainer

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
    "expand_raters",
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

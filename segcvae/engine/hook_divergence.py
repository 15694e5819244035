"""The divergence guard: skip non-finite steps, count exploding ones, and never let a bad state
become a checkpoint.

A step whose loss is not finite is skipped; a loss above :data:`EXPLODING_FACTOR` times the loss of
the run's first step counts as exploding (its update is applied: a healthy run may recover);
``train.max_bad_steps`` such steps in a row, or weights that are not finite or above
:data:`MAX_ABS_WEIGHT`, stop the run with a :class:`DivergenceError` that names the step of the last
good checkpoint. While the loss is exploding or the weights are bad no checkpoint is written, so
``last.pt`` is always the last healthy state.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import nn

# A loss this many times the first step's loss counts as exploding (a healthy run lowers it).
EXPLODING_FACTOR = 100.0
# No weight of a healthy network gets near this (Adam moves a weight by about lr per step).
MAX_ABS_WEIGHT = 1e6


class DivergenceError(RuntimeError):
    """Training diverged (non-finite or exploding loss, or bad weights); the message says where the
    last good checkpoint is."""


class NonFiniteLossError(DivergenceError):
    """Too many non-finite losses in a row."""


def weights_problem(model: nn.Module) -> str | None:
    """Why a model's weights are not fit to save (not finite, or exploded), or None."""
    import torch

    largest = 0.0
    for name, t in model.state_dict().items():
        if not t.is_floating_point():
            continue
        if not bool(torch.isfinite(t).all()):
            return f"{name} holds NaN or inf"
        largest = max(largest, float(t.abs().max()) if t.numel() else 0.0)
        if largest > MAX_ABS_WEIGHT:
            return f"{name} holds a value of {largest:.3g} (> {MAX_ABS_WEIGHT:g})"
    return None


class DivergenceGuard:
    """The state of the divergence checks: one object, read and written only here.

    Args:
        max_bad_steps: Non-finite or exploding losses in a row that stop the run
            (``train.max_bad_steps``).
        last_pt: The path of ``last.pt`` (named in the messages).
        advice: What to try, appended to every stop message.
        agree: Turns a local decision into the decision of every process (DDP: all ranks must
            skip or stop together, or the gradient all-reduce hangs); the identity by default.
    """

    def __init__(
        self,
        max_bad_steps: int,
        last_pt: str | Path,
        advice: str = "",
        agree: Callable[[bool], bool] = lambda flag: flag,
    ) -> None:
        self.max_bad_steps = max_bad_steps
        self.last_pt = Path(last_pt)
        self.advice = advice
        self.agree = agree
        self.bad_in_row = 0  # non-finite or exploding losses in a row
        self.exploding_in_row = 0  # finite, exploding losses in a row (their updates were applied)
        self.skipped = 0
        self.loss_reference: float | None = None  # the loss of the run's first step
        self.last_saved_step: int | None = None  # step of the newest good last.pt

    def check_loss(self, finite: bool, value: float, step: int) -> str | None:
        """Judge step ``step``'s loss (1-based); returns a warning when the update is to be skipped.

        Args:
            finite: Whether the loss is finite (on this process).
            value: The loss.
            step: The step being taken.

        Returns:
            None: apply the update; a message: skip it (a non-finite loss).

        Raises:
            NonFiniteLossError: ``max_bad_steps`` non-finite losses in a row.
            DivergenceError: ``max_bad_steps`` non-finite or exploding losses in a row.
        """
        if not self.agree(finite):
            self.bad_in_row += 1
            self.skipped += 1
            msg = (
                f"step {step}: non-finite loss ({value:.4g}); update skipped "
                f"({self.bad_in_row} in a row, {self.skipped} in total)"
            )
            if self.bad_in_row >= self.max_bad_steps:
                raise NonFiniteLossError(
                    f"{msg}. Stopping after {self.max_bad_steps} non-finite losses in a row "
                    f"(train.max_bad_steps); {self.last_good()}. {self.advice}"
                )
            return msg
        if self.loss_reference is None:
            self.loss_reference = max(value, 1e-3)
        if self.agree(value <= EXPLODING_FACTOR * self.loss_reference):
            self.bad_in_row = self.exploding_in_row = 0
            return None
        self.bad_in_row += 1
        self.exploding_in_row += 1
        if self.bad_in_row >= self.max_bad_steps:
            raise DivergenceError(
                f"training diverged at step {step}: loss {value:.4g}, over "
                f"{EXPLODING_FACTOR:g} x the first step's {self.loss_reference:.4g}, for "
                f"{self.bad_in_row} steps in a row (train.max_bad_steps); "
                f"{self.last_good()}. {self.advice}"
            )
        return None

    @property
    def exploding(self) -> bool:
        """Whether the latest losses are exploding (no checkpoint may be written now)."""
        return self.exploding_in_row > 0

    def healthy(self, model: nn.Module) -> bool:
        """Whether the model's state may be saved (the loss is not exploding, the weights are fine)."""
        return not self.exploding and weights_problem(model) is None

    def check_health(self, model: nn.Module, step: int, final: bool) -> None:
        """Raise :class:`DivergenceError` if the weights are bad, or the run ends exploding.

        Called on every rank at each checkpoint step (DDP keeps the weights identical, and the
        exploding count is agreed by all ranks, so all ranks stop together).
        """
        problem = weights_problem(model)
        if problem is not None:
            raise DivergenceError(
                f"training diverged by step {step}: {problem}; {self.last_good()}. {self.advice}"
            )
        if self.exploding and final:
            raise DivergenceError(
                f"training ended at step {step} with the loss exploding "
                f"({self.exploding_in_row} steps in a row over {EXPLODING_FACTOR:g} x the first "
                f"step's); {self.last_good()}. {self.advice}"
            )

    def last_good(self) -> str:
        """Where the last healthy state is, for the stop messages."""
        if self.last_saved_step is None:
            return "no checkpoint was written (nothing of this run is worth keeping)"
        return (
            f"the newest checkpoint is {self.last_pt} from step {self.last_saved_step}, the last "
            "one that passed these checks"
        )

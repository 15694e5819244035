"""segcvae: conditional generative models for semantic segmentation (Sohn, Lee & Yan, 2015).

``segcvae.load(checkpoint, device="cpu")`` returns a :class:`segcvae.api.Predictor`;
``segcvae.evaluate(checkpoint, split="test")`` an :class:`segcvae.evaluation.EvaluationReport`.
torch and the models are imported on first use, so ``import segcvae`` itself stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from segcvae.api import PredictionResult, Predictor
    from segcvae.evaluation import EvaluationReport, evaluate

# name -> the module that defines it, imported on first use
_LAZY = {
    "Predictor": "segcvae.api",
    "PredictionResult": "segcvae.api",
    "evaluate": "segcvae.evaluation",
    "EvaluationReport": "segcvae.evaluation",
}


def load(path: Any, device: str = "cpu", **kwargs: Any) -> Predictor:
    """Load a checkpoint as a :class:`segcvae.api.Predictor` (see ``Predictor.from_checkpoint``).

    Args:
        path: A checkpoint written by training (``RUN_DIR/best.pt``).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
        **kwargs: ``overrides``, ``batch_size``.
    """
    from segcvae.api import Predictor

    return Predictor.from_checkpoint(path, device=device, **kwargs)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'segcvae' has no attribute {name!r}")


__all__ = [
    "EvaluationReport",
    "PredictionResult",
    "Predictor",
    "__version__",
    "evaluate",
    "load",
]

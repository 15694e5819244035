"""The interface every model family shares: built from the config, encode once, then decode.

A family is one class, listed in :mod:`segcvae.registry` under its ``model.arch`` name. It owns

* its own settings: a small dataclass (``settings``, fields made with
  :func:`segcvae.settings.setting`), read from ``model.<name>`` and checked when the config loads;
* how it is built: :meth:`ModelFamily.config_kwargs` maps the config to its keyword-only
  constructor arguments, whose defaults equal the config's (``tests/models/test_registry.py``
  checks this for every family), and :meth:`ModelFamily.from_config` calls the constructor;
* its objective: :meth:`ModelFamily.build_objective` picks one of ``segcvae.losses`` by its latent
  kind (deterministic, Gaussian, categorical) or one of its own;
* inference: ``encode(x) -> ctx`` (the image-only work, done once), ``decode_mean(ctx)`` (B, K, H,
  W), ``decode_samples(ctx, n)`` (B, n, K, H, W); ``likelihood_methods`` and
  ``likelihood_samples`` for ``segcvae.metrics.conditional_log_likelihood``;
* its noise contract: :meth:`ModelFamily.noise_shape` and :meth:`ModelFamily.decode_noise`, the
  hypotheses as a deterministic function of standard-normal noise (what the ONNX sampler exports);
* what reports say about it: :meth:`ModelFamily.describe`, :meth:`ModelFamily.report_fields`.

One ``model.arch`` name may cover several classes (Sohn et al.'s model is one class per latent
kind): :meth:`ModelFamily.family_for` picks the class from the config.

Nothing outside the family branches on which family it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from torch import Tensor, nn

if TYPE_CHECKING:  # pragma: no cover
    from segcvae.config import Config


class ModelFamily(nn.Module):
    """Base class of a model family (see the module docstring).

    A subclass sets :attr:`name` (its ``model.arch``) and implements ``config_kwargs``,
    ``build_objective``, ``forward``, ``encode``, ``decode_mean``, ``decode_samples``,
    ``likelihood_samples``, ``noise_shape`` and ``decode_noise``.
    """

    #: ``model.arch`` of this family (set by the registry for families registered by decorator).
    name: ClassVar[str] = ""
    #: The family's own settings (a dataclass of :func:`segcvae.settings.setting` fields), read
    #: from ``model.<name>`` and checked when the config loads; None = it has none.
    settings: ClassVar[type | None] = None
    #: Estimators of log p(y | x) the family supports, best first (``"exact"``, ``"is"``, ``"mc"``).
    likelihood_methods: tuple[str, ...] = ("mc",)
    #: Whether ``forward`` scores a set of masks per image, y (B, M, H, W), in one pass
    #: (``train.rater: auto`` then trains on every rater of an image at once).
    scores_target_sets: bool = False
    #: Named config variants measured beside the family by ``tools/benchmark.py``: name -> overrides.
    benchmark_variants: ClassVar[dict[str, list[str]]] = {}
    #: The rows ``tools/benchmark.py`` times a training step of in place of the family's own
    #: (e.g. one per objective): row name -> config overrides; empty = one row, the family's name.
    benchmark_training_variants: ClassVar[dict[str, list[str]]] = {}

    # ------------------------------------------------------------------ built from the config
    @classmethod
    def config_kwargs(cls, cfg: Config) -> dict[str, Any]:
        """The constructor's keyword arguments (all but ``classes``) from the config."""
        raise NotImplementedError

    @classmethod
    def family_for(cls, cfg: Config) -> type[ModelFamily]:
        """The class that builds this family's model for ``cfg``: the family itself, unless its
        ``model.arch`` name covers several classes and ``cfg`` picks one (``model.arch: sohn``
        with ``model.latent: categorical`` is the categorical model). ``segcvae.models.family_of``
        asks it before anything else."""
        return cls

    @classmethod
    def from_config(cls, cfg: Config, num_classes: int) -> ModelFamily:
        """Build the family's model for an experiment with K = ``num_classes``."""
        return cls(num_classes, **cls.config_kwargs(cfg))

    @classmethod
    def build_objective(cls, cfg: Config) -> nn.Module:
        """The training objective: ``objective(out, y, step) -> {"loss": ..., ...}``."""
        raise NotImplementedError

    @classmethod
    def describe(cls, cfg: Config) -> str:
        """What logs and reports call a model of this family built from ``cfg``."""
        return cls.name

    @classmethod
    def report_fields(cls, cfg: Config) -> dict[str, Any]:
        """Settings of ``cfg`` that an evaluation report names beside ``model.arch`` (none by
        default; Sohn et al.'s models name their ``loss.objective``)."""
        return {}

    # ------------------------------------------------------------------ inference
    def predict(self, x: Tensor) -> Tensor:
        """Deterministic logits (B, K, H, W) for images x (B, C, H, W)."""
        return self.decode_mean(self.encode(x))

    def sample(self, x: Tensor, n: int) -> Tensor:
        """n hypotheses as logits (B, n, K, H, W) for images x (B, C, H, W)."""
        return self.decode_samples(self.encode(x), n)

    def noise_shape(self, height: Any, width: Any) -> tuple[Any, ...]:
        """Shape of the standard-normal noise of one hypothesis of one image of (height, width).

        Written with ``+``, ``*`` and ``//`` of the sides and integers (e.g. ``(z, height // 16,
        width // 16)``): the ONNX export calls it with symbols (``sympy`` expressions) for the
        formula of its ``noise`` input, every other caller with ints.
        """
        raise NotImplementedError

    def decode_noise(self, ctx: Any, eps: Tensor) -> Tensor:
        """Hypotheses as a deterministic function of noise: logits (B, S, K, H, W).

        Args:
            ctx: ``encode(x)``.
            eps: Standard-normal noise (S, B, *noise_shape(H, W)).
        """
        raise NotImplementedError


class DeterministicModel(ModelFamily):
    """A family without a latent: its hypotheses are the one prediction, its likelihood is exact.

    A subclass implements ``encode`` and ``decode_mean``. Its noise is one number per hypothesis
    (S, B, 1), of which only the count S is used.
    """

    likelihood_methods: tuple[str, ...] = ("exact",)

    def decode_samples(self, ctx: Any, n: int) -> Tensor:
        """The deterministic prediction repeated n times: (B, n, K, H, W)."""
        return self.decode_mean(ctx).unsqueeze(1).expand(-1, n, -1, -1, -1)

    def noise_shape(self, height: Any, width: Any) -> tuple[Any, ...]:
        """(1,): the noise only says how many hypotheses to return."""
        return (1,)

    def decode_noise(self, ctx: Any, eps: Tensor) -> Tensor:
        """The deterministic prediction repeated S = ``eps.shape[0]`` times: (B, S, K, H, W)."""
        return self.decode_samples(ctx, eps.shape[0])

    def likelihood_samples(
        self, ctx: Any, y: Tensor, n: int, method: str, chunk_size: int = 25
    ) -> Iterator[tuple[Tensor, Tensor | None]]:
        """The logits to score labels against: the one prediction (B, 1, K, H, W).

        The model-side half of ``segcvae.metrics.conditional_log_likelihood``; ``n``, ``method``
        and ``chunk_size`` are accepted for the common interface (the likelihood is exact).
        """
        yield self.decode_mean(ctx).unsqueeze(1), None

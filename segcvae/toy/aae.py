"""Adversarial autoencoder on MNIST (Makhzani et al. 2016) with a choice of 2-D prior.

A deterministic encoder and a Bernoulli decoder are trained to reconstruct, while a discriminator
on z learns to tell codes from samples of the prior and the encoder learns to fool it. Each batch
runs the three phases in turn: reconstruction (encoder + decoder), discriminator, generator
(encoder). With ``labels=True`` the discriminator also reads the one-hot digit, and prior samples
carry the label of their arm, so each digit is pushed into its own arm of the prior.
``python -m segcvae.toy aae --data DIR --out DIR --prior mixture --labels`` writes the latent
scatter over the prior, decoded prior samples and ``metrics.json``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segcvae.toy.common import (
    Stopwatch,
    finish_run,
    load_digits,
    run_epochs,
    save_grid,
    save_scatter,
)
from segcvae.toy.layers import bernoulli_log_prob, mlp
from segcvae.toy.mnist import NUM_PIXELS
from segcvae.toy.priors import NUM_ARMS, get_prior


class AAE(nn.Module):
    """Encoder x -> z, decoder z -> logits, discriminator (z[, one-hot y]) -> logit of "prior".

    Args:
        latent_dim: Size of z (the priors are 2-D).
        hidden: Width of the two hidden layers of encoder and decoder.
        disc_hidden: Width of the discriminator's two hidden layers.
        labels: The discriminator also reads the one-hot label.
    """

    def __init__(
        self, latent_dim: int = 2, hidden: int = 512, disc_hidden: int = 256, labels: bool = False
    ) -> None:
        super().__init__()
        self.latent_dim, self.labels = latent_dim, labels
        self.encoder = mlp([NUM_PIXELS, hidden, hidden, latent_dim])
        self.decoder = mlp([latent_dim, hidden, hidden, NUM_PIXELS])
        self.discriminator = mlp([latent_dim + NUM_ARMS * labels, disc_hidden, disc_hidden, 1])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Args: x (B, 784). Returns: z (B, latent_dim) and reconstruction logits (B, 784)."""
        z = self.encoder(x)
        return z, self.decoder(z)

    def discriminate(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """Logit that z (B, latent_dim) was drawn from the prior: (B,)."""
        if self.labels:
            if labels is None:
                raise ValueError("this discriminator reads labels; pass them")
            z = torch.cat([z, F.one_hot(labels, NUM_ARMS).to(z.dtype)], -1)
        return self.discriminator(z).squeeze(-1)


def _bce(logits: Tensor, target: float) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


class AAETrainer:
    """The three optimisers and phases of one AAE training step.

    Args:
        model: The AAE.
        prior: Sampler ``(n, labels, generator) -> (n, 2)`` from :mod:`segcvae.toy.priors`.
        lr: Adam learning rate of the reconstruction phase.
        disc_lr: Adam learning rate (betas 0.5, 0.999) of the discriminator.
        gen_lr: Adam learning rate (betas 0.5, 0.999) of the generator phase. Adam takes steps of
            about ``gen_lr`` whatever the size of the adversarial loss, so a generator faster than
            the discriminator moves the whole code cloud after wherever the discriminator last
            said "prior": without labels the codes collapse into a small blob that wanders around
            the plane (see :func:`default_rates`).
        seed: Seed of the prior samples.
        r1: Weight of an R1 penalty ``r1 / 2 * |d logit / d z|^2`` on prior samples in the
            discriminator phase (0: none).
    """

    def __init__(
        self,
        model: AAE,
        prior,
        lr: float = 1e-3,
        disc_lr: float = 2e-4,
        gen_lr: float = 2e-4,
        seed: int = 0,
        r1: float = 0.0,
    ) -> None:
        self.model, self.prior, self.r1 = model, prior, r1
        self.generator = torch.Generator().manual_seed(seed)
        autoencoder = list(model.encoder.parameters()) + list(model.decoder.parameters())
        self.opt_recon = torch.optim.Adam(autoencoder, lr=lr)
        self.opt_disc = torch.optim.Adam(model.discriminator.parameters(), disc_lr, (0.5, 0.999))
        self.opt_gen = torch.optim.Adam(model.encoder.parameters(), gen_lr, (0.5, 0.999))

    def step(self, x: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """One reconstruction, discriminator and generator update on a batch x (B, 784).

        Returns:
            ``{"loss": recon, "recon", "disc", "gen"}`` (detached; ``recon`` in nats per digit).
        """
        model = self.model
        arm_labels = labels if model.labels else None
        # 1. reconstruction
        _, logits = model(x)
        recon = -bernoulli_log_prob(logits, x).mean()
        self.opt_recon.zero_grad(set_to_none=True)
        recon.backward()
        self.opt_recon.step()
        # 2. discriminator: prior samples are "real", codes are "fake"
        z_prior = self.prior(len(x), arm_labels, self.generator).to(x)
        z_code = model.encoder(x).detach()
        if self.r1 > 0:
            z_prior.requires_grad_(True)
        logit_prior = model.discriminate(z_prior, arm_labels)
        disc = _bce(logit_prior, 1.0) + _bce(model.discriminate(z_code, arm_labels), 0.0)
        if self.r1 > 0:  # R1: penalise the discriminator's slope on the prior samples
            (grad,) = torch.autograd.grad(logit_prior.sum(), z_prior, create_graph=True)
            disc = disc + 0.5 * self.r1 * grad.pow(2).sum(-1).mean()
        self.opt_disc.zero_grad(set_to_none=True)
        disc.backward()
        self.opt_disc.step()
        # 3. generator: the encoder tries to pass its codes off as prior samples
        gen = _bce(model.discriminate(model.encoder(x), arm_labels), 1.0)
        self.opt_gen.zero_grad(set_to_none=True)
        gen.backward()
        self.opt_gen.step()
        return {
            "loss": recon.detach(),
            "recon": recon.detach(),
            "disc": disc.detach(),
            "gen": gen.detach(),
        }


def default_rates(prior: str, labels: bool, lr: float = 1e-3) -> tuple[float, float, float]:
    """The (discriminator lr, generator lr, R1 weight) used when none are given.

    Without labels the generator must not outrun the discriminator, nor be so slow that the
    reconstruction phase (Adam at ``lr``) drags the codes off the prior. Measured on the full data
    with the Gaussian prior: generator 1e-3 / discriminator 2e-4 (the old defaults) and 1e-3 / 1e-3
    collapsed the codes into a blob that chased the discriminator (MMD² 1.01 and 0.67,
    reconstruction ~200); 2e-4 / 2e-4 and 2e-4 / 5e-5 let the discriminator win for good (its
    loss 0.35 and 0.07, generator loss 25 and 85 when stopped); 5e-4 / 5e-4 kept it near chance but oscillated. Equal rates of
    5e-4 plus an R1 penalty (weight 1) on the discriminator's slope at prior samples, which damps
    that oscillation (Mescheder et al. 2018), is the default. With labels the encoder must carry
    each digit's cluster into its own arm, which a slow generator did not do (arm accuracy below
    chance after 5 epochs on 10,000 digits), so the generator runs at ``lr``, without R1, and the
    thin swiss-roll arms (0.05 wide) need a slower discriminator (5e-5) or it wins outright.
    """
    if not labels:
        return 5e-4, 5e-4, 1.0
    return (5e-5 if prior == "swiss_roll" else 2e-4), lr, 0.0


def rbf_mmd2(a: Tensor, b: Tensor, bandwidths: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0)) -> Tensor:
    """Unbiased squared MMD between samples a (N, d) and b (M, d), sum of RBF kernels.

    Written by hand: five lines, and no library here has it for plain tensors.
    """

    def kernel(u: Tensor, v: Tensor) -> Tensor:
        d2 = torch.cdist(u, v).pow(2)
        return sum(torch.exp(-d2 / (2 * s**2)) for s in bandwidths)

    n, m = len(a), len(b)
    kaa, kbb = kernel(a, a), kernel(b, b)
    return (
        (kaa.sum() - kaa.diagonal().sum()) / (n * (n - 1))
        + (kbb.sum() - kbb.diagonal().sum()) / (m * (m - 1))
        - 2 * kernel(a, b).mean()
    )


def run_aae(
    data: str | Path,
    out: str | Path,
    *,
    prior: str = "mixture",
    labels: bool = False,
    epochs: int = 20,
    hidden: int = 512,
    disc_hidden: int = 256,
    batch_size: int = 128,
    lr: float = 1e-3,
    disc_lr: float | None = None,
    gen_lr: float | None = None,
    r1: float | None = None,
    binarization: str = "threshold",
    train_size: int | None = None,
    test_size: int | None = None,
    seed: int = 0,
    log=print,
) -> dict:
    """Train an AAE, write figures and ``metrics.json`` to ``out``; return the metrics.

    Args:
        prior: ``gaussian``, ``mixture``, ``swiss_roll`` or ``uniform``.
        labels: Feed the label to the discriminator (not with ``gaussian``).
        lr: Learning rate of the reconstruction phase.
        disc_lr, gen_lr: Learning rates of the discriminator and generator phases; None takes
            :func:`default_rates` for this prior and ``labels``.
        r1: Weight of the R1 penalty on the discriminator (None: :func:`default_rates`).
        Others as in :func:`segcvae.toy.vae.run_vae`.
    """
    sampler = get_prior(prior)
    if labels and prior == "gaussian":
        sampler(1, torch.zeros(1, dtype=torch.long))  # raises the prior's explanation
    torch.manual_seed(seed)
    out = Path(out)
    train_set = load_digits(data, "train", binarization, train_size)
    test_set = load_digits(data, "test", binarization, test_size)
    model = AAE(2, hidden, disc_hidden, labels)
    default_disc, default_gen, default_r1 = default_rates(prior, labels, lr)
    disc_lr = default_disc if disc_lr is None else disc_lr
    gen_lr = default_gen if gen_lr is None else gen_lr
    r1 = default_r1 if r1 is None else r1
    trainer = AAETrainer(model, sampler, lr, disc_lr, gen_lr, seed, r1)
    clock = Stopwatch()
    model.train()
    history = run_epochs(
        lambda idx: trainer.step(train_set.x[idx], train_set.labels[idx]),
        len(train_set),
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        log=log,
        name="aae",
    )
    model.eval()
    timing = clock.read()

    with torch.no_grad():
        z, logits = model(test_set.x)
        recon = -bernoulli_log_prob(logits, test_set.x).mean().item()
        gen = torch.Generator().manual_seed(seed + 1)
        arm_labels = test_set.labels if labels else None
        z_prior = sampler(len(test_set), arm_labels, gen)
        n = min(2000, len(test_set))
        mmd2 = rbf_mmd2(z[:n], z_prior[:n]).item()
        metrics = {
            "model": "aae",
            "prior": prior,
            "labels": labels,
            "epochs": epochs,
            "lr": lr,
            "disc_lr": disc_lr,
            "gen_lr": gen_lr,
            "r1": r1,
            "binarization": binarization,
            "train_size": len(train_set),
            "test_size": len(test_set),
            "test_recon_nll": round(recon, 3),
            "test_mmd2_codes_vs_prior": round(mmd2, 5),
            "train_recon_first_epoch": round(history[0]["recon"], 3),
            "train_recon_last_epoch": round(history[-1]["recon"], 3),
            **{f"train_{k}": v for k, v in timing.items()},
        }
        if labels:
            # share of test codes whose nearest labelled prior sample is of their own digit's arm
            ref_labels = torch.arange(len(test_set)) % NUM_ARMS
            ref = sampler(len(test_set), ref_labels, gen)
            nearest = ref_labels[torch.cdist(z, ref).argmin(1)]
            metrics["test_arm_accuracy"] = round(
                (nearest == test_set.labels).float().mean().item(), 4
            )

        if labels:  # prior samples coloured by the digit whose arm they are
            arms = torch.arange(5000) % NUM_ARMS
            background, background_labels = sampler(5000, arms, gen), arms
        else:
            background, background_labels = sampler(5000, None, gen), None
        save_scatter(
            z,
            test_set.labels,
            out / "latent.png",
            f"AAE ({prior} prior{', labels to D' if labels else ''}): test codes",
            background=background,
            background_labels=background_labels,
        )
        cols = 10
        if labels:  # row d: samples of digit d's arm
            rows = torch.arange(NUM_ARMS).repeat_interleave(cols)
            samples = sampler(NUM_ARMS * cols, rows, gen)
        else:
            samples = sampler(NUM_ARMS * cols, None, gen)
        images = torch.sigmoid(model.decoder(samples)).reshape(NUM_ARMS, cols, NUM_PIXELS)
        save_grid(
            images,
            out / "samples.png",
            f"AAE: decoded samples of the {prior} prior" + (" (row = arm)" if labels else ""),
        )

    return finish_run("aae", metrics, out, "test_recon_nll", log)

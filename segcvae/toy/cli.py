"""``python -m segcvae.toy {vae,cvae,aae,quadrants} --data DIR --out DIR [options]``."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from segcvae.toy.aae import run_aae
from segcvae.toy.cvae import run_cvae
from segcvae.toy.priors import PRIORS
from segcvae.toy.quadrants import OBJECTIVES, run_quadrants
from segcvae.toy.vae import DECODERS, run_vae

# --quick: a subset of the data and one short epoch, so every command ends in well under a minute
QUICK = {"epochs": 1, "train_size": 3000, "test_size": 500}
QUICK_EXTRA = {
    "vae": {"n_samples": 50},
    "cvae": {"n_samples": 50},
    "aae": {},
    "quadrants": {
        "cnn_epochs": 1,
        "cnn_hidden": 256,
        "hidden": 256,
        "latent_dim": 32,
        "n_samples": 20,
    },
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (one sub-command per model); defaults of None mean "the model's"."""
    parser = argparse.ArgumentParser(
        prog="python -m segcvae.toy", description="MNIST VAE, CVAE, AAE and quadrant completion."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    subs = {
        "vae": commands.add_parser("vae", help="VAE: reconstructions, latent, manifold, denoising"),
        "cvae": commands.add_parser("cvae", help="label-conditioned VAE: styles and analogies"),
        "aae": commands.add_parser("aae", help="adversarial autoencoder with a 2-D prior"),
        "quadrants": commands.add_parser(
            "quadrants", help="Sohn et al. 2015 quadrant completion: baseline, GSNN, CVAE, hybrid"
        ),
    }
    for name, sub in subs.items():
        sub.add_argument("--data", required=True, type=Path, help="folder with the MNIST idx files")
        sub.add_argument("--out", required=True, type=Path, help="output folder (figures, JSON)")
        sub.add_argument("--quick", action="store_true", help="tiny run for smoke tests (< 1 min)")
        sub.add_argument("--epochs", type=int)
        sub.add_argument("--batch-size", type=int)
        sub.add_argument("--lr", type=float)
        sub.add_argument("--binarization", choices=["threshold", "dynamic"])
        sub.add_argument("--train-size", type=int, help="use only the first N training digits")
        sub.add_argument("--test-size", type=int, help="use only the first N test digits")
        sub.add_argument("--seed", type=int)
        sub.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
        if name in ("vae", "cvae"):
            sub.add_argument("--latent-dim", type=int)
            sub.add_argument("--n-samples", type=int, help="importance samples per test digit")
        if name != "aae" and name != "quadrants":
            sub.add_argument("--hidden", type=int)
    subs["vae"].add_argument("--decoder", choices=DECODERS)
    subs["vae"].add_argument("--noise", type=float, help="pixel flip rate in the denoising figure")
    subs["vae"].add_argument(
        "--train-noise", type=float, help="corrupt the encoder's input in training (denoising)"
    )
    subs["aae"].add_argument("--prior", choices=sorted(PRIORS))
    subs["aae"].add_argument(
        "--labels", action="store_true", help="feed the label to the discriminator"
    )
    subs["aae"].add_argument("--hidden", type=int)
    subs["aae"].add_argument(
        "--disc-lr", type=float, help="learning rate of the discriminator (default: per prior)"
    )
    subs["aae"].add_argument(
        "--gen-lr", type=float, help="learning rate of the generator phase (default: per prior)"
    )
    subs["aae"].add_argument(
        "--r1", type=float, help="R1 penalty weight on the discriminator (default: per prior)"
    )
    q = subs["quadrants"]
    q.add_argument(
        "--models", default=",".join(OBJECTIVES), help="comma list of cnn,gsnn,cvae,hybrid"
    )
    # --nn-epochs / --nn-hidden: the options' names before the baseline was "cnn" everywhere
    q.add_argument("--cnn-epochs", "--nn-epochs", type=int, help="epochs of the baseline")
    q.add_argument("--cnn-hidden", "--nn-hidden", type=int, help="width of the baseline")
    q.add_argument("--hidden", type=int, help="width of the GSNN / CVAE / hybrid nets")
    q.add_argument("--latent-dim", type=int)
    q.add_argument("--alpha", type=float, help="hybrid weight of the CVAE term")
    q.add_argument("--n-samples", type=int, help="S for the MC / importance-sampled CLL")
    q.add_argument("--kl-warmup", type=float, help="epochs of linear KL warm-up (0: none)")
    q.add_argument(
        "--quadrant-weights", help="how often training digits show 1,2,3 quadrants, e.g. 1,1,1"
    )
    q.add_argument(
        "--residual", action="store_true", help="generation net corrects the baseline's logits"
    )
    q.add_argument(
        "--baseline", type=Path, help="cnn.pt of an earlier --save run: skip training the baseline"
    )
    q.add_argument("--save", action="store_true", help="write each model's weights to OUT")
    return parser


def main(argv: list[str] | None = None) -> dict:
    """Parse ``argv``, run the command, return its metrics (also written to ``OUT/metrics.json``)."""
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    options = {
        key: value
        for key, value in vars(args).items()
        if value is not None and key not in ("command", "data", "out", "quick", "threads")
    }
    if args.quick:  # quick sizes, unless given explicitly
        options = {**QUICK, **QUICK_EXTRA[args.command], **options}
    run = {"vae": run_vae, "cvae": run_cvae, "aae": run_aae, "quadrants": run_quadrants}
    if args.command == "quadrants":
        options["models"] = tuple(m.strip() for m in options["models"].split(",") if m.strip())
        if "quadrant_weights" in options:
            options["quadrant_weights"] = tuple(
                float(w) for w in options["quadrant_weights"].split(",")
            )
    for flag in ("labels", "residual", "save"):  # store_true flags: False means "not given"
        if not options.get(flag, True):
            del options[flag]
    return run[args.command](args.data, args.out, **options)

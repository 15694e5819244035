"""Comparison figures for docs/RESULTS.md, drawn from trained checkpoints.

Three figures:

* ``lfw``: for a few test faces, clean and with the seeded test-time block omission of
  ``tools/evaluate.py --omission``: image | ground truth | CNN | CVAE deterministic | several CVAE
  samples | entropy of the mean of S CVAE samples.
* ``shapes``: for a few test images: image | every plausible mask | CNN | CVAE hypotheses.
* ``qubiq``: for each test case (multi-rater data): image | every rater's mask | the raters'
  foreground frequency | several hypotheses | the model's foreground frequency over S hypotheses
  | its uncertainty, the expected cross-entropy E_s[CE(mean, s)] of the S hypotheses (the map
  the NCC metric correlates with the raters').

Usage (paths as in docs/RESULTS.md):

    python tools/results/figures.py lfw --cnn runs/lfw_cpu_cnn/seed0/best.pt \
        --cvae runs/lfw_cpu_hybrid/seed0/best.pt --out docs/figures/results/lfw_comparison.png \
        data.root=../shared/data/lfw
    python tools/results/figures.py shapes --cnn runs/shapes_cnn/seed0/best.pt \
        --cvae runs/shapes_hybrid/seed0/best.pt --out docs/figures/results/shapes_hypotheses.png
    python tools/results/figures.py qubiq --cvae runs/qubiq_hybrid/seed0/best.pt --samples 7 \
        --uncertainty-samples 16 --indices 0 1 2 3 4 5 6 7 \
        --out docs/figures/results/qubiq_cases.png data.root=../shared/data/qubiq_brain_growth
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from segcvae import viz  # noqa: E402
from segcvae.data import build_transforms  # noqa: E402
from segcvae.engine.batches import open_dataset  # noqa: E402
from segcvae.engine.checkpoint import load_checkpoint, model_from_checkpoint  # noqa: E402
from segcvae.inference import hypothesis_labels, sample_probs, uncertainty  # noqa: E402
from segcvae.metrics import expected_cross_entropy_map, rater_frequency  # noqa: E402
from segcvae.models import family_of  # noqa: E402


def _load(path: Path, overrides: list[str]) -> tuple[torch.nn.Module, object, dict]:
    ckpt = load_checkpoint(path)
    model, cfg = model_from_checkpoint(ckpt, "cpu", overrides)
    return model.eval(), cfg, ckpt["meta"]


def _upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling so that 64x64 panels stay crisp in the PNG."""
    return image.repeat(factor, axis=0).repeat(factor, axis=1)


def _figure(rows: list[list[np.ndarray]], headers: list[str], labels: list[str], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(rows), len(rows[0])
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(1.1 * n_cols, 1.15 * n_rows + 0.3), squeeze=False
    )
    for r, row in enumerate(rows):
        for c, panel in enumerate(row):
            ax = axes[r][c]
            ax.imshow(panel, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(headers[c], fontsize=7)
        axes[r][0].set_ylabel(labels[r], fontsize=7)
    fig.tight_layout(pad=0.2, w_pad=0.1, h_pad=0.2)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _load_pair(args: argparse.Namespace) -> tuple:
    """Seed, then load the CNN and the CVAE; return them with the CVAE's config and palette."""
    torch.manual_seed(args.seed)
    cnn = _load(args.cnn, args.overrides)[0] if args.cnn is not None else None
    cvae, cfg, meta = _load(args.cvae, args.overrides)
    return cnn, cvae, cfg, [tuple(c) for c in meta["palette"]]


@torch.no_grad()
def lfw_figure(args: argparse.Namespace) -> None:
    cnn, cvae, cfg, palette = _load_pair(args)
    max_ent = math.log(len(palette))
    rows, labels = [], []
    for omission in (False, True):
        tf = build_transforms(
            cfg.data, "test", omission=omission, omission_seed=cfg.eval.omission_seed
        )
        ds = open_dataset(cfg.data, "test", tf)
        for idx in args.indices:
            item = ds[idx]
            x = item["image"][None]
            y = item["mask"]
            det_cnn = cnn.predict(x).argmax(1)[0]
            det_cvae = cvae.predict(x).argmax(1)[0]
            probs = sample_probs(cvae, x, args.uncertainty_samples)  # (1, S, K, H, W)
            hyps = probs[0, : args.samples].argmax(1)
            ent = uncertainty(probs)["entropy"][0]
            image = viz.denormalize(item["image"], cfg.data.mean, cfg.data.std)
            row = [image, viz.colorize(y, palette), viz.colorize(det_cnn, palette)]
            row.append(viz.colorize(det_cvae, palette))
            row += [viz.colorize(h, palette) for h in hyps]
            row.append(viz.heatmap(ent, vmax=max_ent))
            rows.append([_upscale(p, 2) for p in row])
            labels.append(f"{item['id'][:14]}\n{'omission' if omission else 'clean'}")
    name = args.cvae_name or family_of(cfg).describe(cfg)
    headers = ["image", "truth", "CNN", f"{name} det."]
    headers += [f"sample {i + 1}" for i in range(args.samples)]
    headers.append(f"entropy (S={args.uncertainty_samples})")
    _figure(rows, headers, labels, args.out)


@torch.no_grad()
def shapes_figure(args: argparse.Namespace) -> None:
    cnn, cvae, cfg, palette = _load_pair(args)
    ds = open_dataset(cfg.data, "test", build_transforms(cfg.data, "test"))
    rows, labels = [], []
    for idx in args.indices:
        item = ds[idx]
        x = item["image"][None]
        image = viz.denormalize(item["image"], cfg.data.mean, cfg.data.std)
        row = [image] + [viz.colorize(m, palette) for m in item["masks"]]
        if cnn is not None:
            row.append(viz.colorize(cnn.predict(x).argmax(1)[0], palette))
        hyps = sample_probs(cvae, x, args.samples)[0].argmax(1)
        row += [viz.colorize(h, palette) for h in hyps]
        rows.append([_upscale(p, 2) for p in row])
        labels.append(f"test {idx}")
    m = len(ds[args.indices[0]]["masks"])
    headers = ["image"] + [f"plausible {i + 1}" for i in range(m)] + (["CNN"] if cnn else [])
    headers += [f"hyp. {i + 1}" for i in range(args.samples)]
    _figure(rows, headers, labels, args.out)


@torch.no_grad()
def qubiq_figure(args: argparse.Namespace) -> None:
    """A row per test case: image, raters, rater frequency, hypotheses, model frequency, E[CE]."""
    torch.manual_seed(args.seed)
    model, cfg, meta = _load(args.cvae, args.overrides)
    palette = [tuple(c) for c in meta["palette"]]
    k = len(palette)
    eps = 1e-8  # expected_cross_entropy_map's default: its largest value is -log(eps) * (1 - 1/K)
    ce_max = -math.log(eps) * (1 - 1 / k)
    n = max(args.uncertainty_samples, args.samples)
    ds = open_dataset(cfg.data, "test", build_transforms(cfg.data, "test"))
    rows, labels, n_raters = [], [], 0
    for idx in args.indices:
        item = ds[idx]
        x = item["image"][None]
        gts = item["masks"][: int(item.get("num_masks", len(item["masks"])))]
        n_raters = max(n_raters, len(gts))
        # the hypotheses as the checkpoint's config draws them (eval.hypothesis_masks)
        hyps = hypothesis_labels(sample_probs(model, x, n), cfg.eval.hypothesis_masks)[0]
        row = [viz.denormalize(item["image"], cfg.data.mean, cfg.data.std)]
        row += [viz.colorize(m, palette) for m in gts]
        row.append(viz.heatmap(rater_frequency(gts, k)[0], vmax=1.0, cmap="viridis"))
        row += [viz.colorize(h, palette) for h in hyps[: args.samples]]
        row.append(viz.heatmap((hyps > 0).double().mean(0), vmax=1.0, cmap="viridis"))
        row.append(viz.heatmap(expected_cross_entropy_map(hyps, k, eps), vmax=ce_max))
        rows.append(row)
        labels.append(str(item.get("id", f"test {idx}")))
    name = args.cvae_name or family_of(cfg).describe(cfg)
    headers = ["image"] + [f"rater {i + 1}" for i in range(n_raters)] + ["rater freq."]
    headers += [f"{name} hyp. {i + 1}" for i in range(args.samples)]
    headers += [f"model freq. (S={n})", f"E[CE] (S={n})"]
    _figure(rows, headers, labels, args.out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("kind", choices=["lfw", "shapes", "qubiq"])
    p.add_argument("--cnn", type=Path, default=None, help="baseline CNN checkpoint (lfw: required)")
    p.add_argument("--cvae", type=Path, required=True, help="cvae / hybrid checkpoint")
    p.add_argument(
        "--cvae-name",
        default="",
        help="column label (default: what its family calls it: the objective for Sohn et al.'s "
        "models, model.arch for the others)",
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--indices", type=int, nargs="+", default=[0, 1, 2, 3])
    p.add_argument("--samples", type=int, default=4, help="hypotheses shown per image")
    p.add_argument("--uncertainty-samples", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("overrides", nargs="*", help="section.key=value, e.g. data.root=...")
    args = p.parse_intermixed_args(argv)
    torch.set_num_threads(1)
    if args.kind == "lfw" and args.cnn is None:
        p.error("lfw needs --cnn")
    {"lfw": lfw_figure, "shapes": shapes_figure, "qubiq": qubiq_figure}[args.kind](args)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

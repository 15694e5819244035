"""Where a shapes model's hypotheses go wrong: per-hypothesis errors against the nearest plausible mask.

For each image of a shapes split, S hypotheses are drawn (``segcvae.load(ckpt)(image, samples=S)``)
and each is compared with the plausible mask it overlaps best (foreground IoU). Printed: the mean
and median of that best IoU, the share of hypotheses at IoU >= 0.95, and the wrong pixels per
hypothesis inside the occluder band (split into those within the bar's rows, i.e. where the hidden
end lies, and outside them, i.e. the bar's edges continued under the band) and outside the band.
A hypothesis's Hungarian-matched IoU cannot beat its best IoU, so this bounds HM-IoU from above.

With ``--codes`` (a categorical latent) it also asks whether the prior or the decodings limit the
hypotheses: every code is decoded, and the prior p(c | x) is compared with the *ideal* code
probabilities for those decodings, the mean over the image's M plausible masks of the exact
posterior r(c | x, y_m) ∝ p(c | x) p(y_m | x, c) (what the prior should learn when the M masks are
equally likely). Printed: KL(ideal || prior), the probability mass each puts on codes whose
decoding is within IoU 0.9 of no plausible mask, and HM-IoU / GED of ``--samples`` systematic
draws of the codes from either.

Validation only (the mode study chooses on it):

    python tools/results/shapes_errors.py --ckpt runs/default/best.pt --split val --samples 16 --codes
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import segcvae  # noqa: E402
from segcvae.data.shapes import ShapesDataset  # noqa: E402
from segcvae.metrics import ged, hm_iou, pairwise_iou  # noqa: E402
from segcvae.models.latent import systematic_draws  # noqa: E402


def hypothesis_errors(hyps: np.ndarray, masks: np.ndarray, occluder: np.ndarray) -> list[dict]:
    """Per hypothesis: best IoU over the plausible masks and where its wrong pixels are.

    Args:
        hyps: (S, H, W) label maps.
        masks: (M, H, W) the plausible masks.
        occluder: (H, W) bool, the band.
    """
    # the bar runs across the band: along x if some column is fully occluded, else along y
    along_x = bool(occluder.all(axis=0).any())
    out = []
    for h in hyps:
        ious = [((h > 0) & (m > 0)).sum() / max(((h > 0) | (m > 0)).sum(), 1) for m in masks]
        m = masks[int(np.argmax(ious))]
        hh, mm, oo = (h, m, occluder) if along_x else (h.T, m.T, occluder.T)
        rows = np.flatnonzero((mm > 0).any(axis=1))
        in_rows = np.zeros_like(oo)
        in_rows[rows.min() : rows.max() + 1] = True
        wrong = hh != mm
        out.append(
            {
                "iou": float(max(ious)),
                "band_end": int((wrong & oo & in_rows).sum()),
                "band_edges": int((wrong & oo & ~in_rows).sum()),
                "outside_band": int((wrong & ~oo).sum()),
            }
        )
    return out


def ideal_code_probs(
    log_probs: torch.Tensor, prior: torch.Tensor, masks: torch.Tensor
) -> torch.Tensor:
    """The mean over the plausible masks of the exact posterior over codes.

    Args:
        log_probs: (Z, K, H, W) every code's per-pixel log-probabilities.
        prior: (Z,) p(c | x).
        masks: (M, H, W) long, the plausible masks (equally likely).

    Returns:
        (Z,) ``mean_m r(c | x, y_m)`` with ``r ∝ p(c | x) p(y_m | x, c)``.
    """
    z = log_probs.shape[0]
    posteriors = []
    for m in masks:
        ll = log_probs.gather(1, m[None, None].expand(z, 1, -1, -1)).sum(dim=(1, 2, 3))  # (Z,)
        posteriors.append((prior.log() + ll).softmax(0))
    return torch.stack(posteriors).mean(0)


def code_rows(predictor, item, samples: int) -> dict[str, float]:
    """Prior vs ideal code probabilities for one shapes item (a categorical latent only)."""
    model = predictor.model
    num_classes = model.num_classes
    with torch.inference_mode():
        ctx = model.encode(predictor.preprocess([item.image]))
        logits = model.decode_codes(ctx)[0].double()  # (Z, K, H, W)
        prior = ctx.prior.probs[0].double()
    masks = torch.from_numpy(item.masks.astype(np.int64))
    ideal = ideal_code_probs(logits.log_softmax(1), prior, masks)
    labels = logits.argmax(1)  # (Z, H, W)
    off = pairwise_iou(labels, masks, num_classes).max(dim=1).values < 0.9  # (Z,)
    row = {"kl_ideal_prior": float((ideal * (ideal.clamp_min(1e-12).log() - prior.log())).sum())}
    for name, probs in (("prior", prior), ("ideal", ideal)):
        idx = systematic_draws(probs[None].float(), samples)[0]
        row[f"off_mode_mass_{name}"] = float(probs[off].sum())
        row[f"hm_iou_{name}"] = hm_iou(labels[idx], masks, num_classes)
        row[f"ged_{name}"] = ged(labels[idx], masks, num_classes)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--ckpt", required=True)
    p.add_argument("--split", default="val", choices=["train", "val", "test"])
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--max-images", type=int, default=200)
    p.add_argument("--seed", type=int, default=0, help="torch seed of the hypotheses")
    p.add_argument("--json", type=Path, help="also write the summary here")
    p.add_argument(
        "--codes",
        action="store_true",
        help="a categorical latent: prior vs ideal code probabilities",
    )
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    predictor = segcvae.load(args.ckpt)
    dc = predictor.config.data
    sc = dc.settings("shapes")
    size = {"train": sc.train_size, "val": sc.val_size, "test": sc.test_size}
    ds = ShapesDataset(
        args.split,
        size=size[args.split],
        image_size=dc.image_size,
        num_shapes=sc.classes,
        completions=sc.completions,
        difficulty=sc.difficulty,
        seed=sc.seed,
    )
    if args.codes and not hasattr(predictor.model, "decode_codes"):  # a categorical latent's
        p.error(f"--codes needs a categorical latent; {args.ckpt} has none")
    rows, codes = [], []
    for i in range(min(args.max_images, len(ds))):
        item = ds.render(i)
        hyps = np.asarray(predictor(item.image, samples=args.samples).hypotheses)
        rows += hypothesis_errors(hyps, item.masks, item.occluder)
        if args.codes:
            codes.append(code_rows(predictor, item, args.samples))
    iou = np.array([r["iou"] for r in rows])
    summary = {
        "hypotheses": len(rows),
        "best_iou_mean": float(iou.mean()),
        "best_iou_median": float(np.median(iou)),
        "share_iou_ge_0.95": float((iou >= 0.95).mean()),
        **{
            k: float(np.mean([r[k] for r in rows]))
            for k in ("band_end", "band_edges", "outside_band")
        },
        **({k: float(np.mean([c[k] for c in codes])) for k in codes[0]} if codes else {}),
    }
    for k, v in summary.items():
        print(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

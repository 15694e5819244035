"""Where a model's GED comes from, per case: its three terms beside the majority mask's.

GED = 2 E[d(s, y)] - E[d(s, s')] - E[d(y, y')] with d = 1 - IoU (all pairs, as in
``segcvae.metrics.generalized_energy_distance``). For the hypotheses s of each fold's ``best.pt``
on that fold's test cases, and the raters y, this prints the pooled means of: the distance of a
hypothesis to a rater, E[d(s, y)]; between two hypotheses, E[d(s, s')]; between two raters,
E[d(y, y')]; and of the raters' majority mask m to a rater, E[d(m, y)] (the majority's GED is
2 E[d(m, y)] - E[d(y, y')]). A model beats the majority mask when its hypotheses are close enough
to the raters for their spread: 2 E[d(s, y)] - E[d(s, s')] < 2 E[d(m, y)].

    python tools/results/ged_terms.py runs/qubiq_cv/categorical_cvae runs/qubiq_cv/prob_unet \
        --hypotheses 16 data.root=../shared/data/qubiq_brain_growth
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from segcvae.data import build_transforms, majority_vote
from segcvae.engine.batches import eval_loader, open_dataset
from segcvae.engine.checkpoint import load_checkpoint, model_from_checkpoint
from segcvae.inference import hypothesis_labels
from segcvae.metrics import pairwise_iou


def terms(samples: torch.Tensor, gts: torch.Tensor, k: int, ignore: int) -> dict[str, float]:
    """The GED terms of one case: hypotheses (S, H, W), raters (R, H, W)."""
    majority = majority_vote(gts, k, ignore)[None]
    return {
        "d_sy": float((1 - pairwise_iou(samples, gts, k)).mean()),
        "d_ss": float((1 - pairwise_iou(samples, samples, k)).mean()),
        "d_yy": float((1 - pairwise_iou(gts, gts, k)).mean()),
        "d_my": float((1 - pairwise_iou(majority, gts, k)).mean()),
    }


@torch.no_grad()
def run_terms(folder: Path, hypotheses: int, overrides: list[str]) -> dict[str, float]:
    """The pooled terms over every fold's test cases of a ``segcvae crossval`` folder."""
    rows = []
    # the folds crossval has finished (test.json written), not one still training
    runs = sorted(p.parent / "best.pt" for p in folder.glob("fold*/test.json"))
    if not runs:
        raise SystemExit(
            f"error: {folder} holds no finished fold (fold*/test.json of segcvae crossval)"
        )
    for run in runs:
        ckpt = load_checkpoint(run)
        model, cfg = model_from_checkpoint(ckpt, "cpu", overrides)
        dataset = open_dataset(cfg.data, "test", build_transforms(cfg.data, "test"))
        torch.manual_seed(cfg.train.seed)
        for batch in eval_loader(dataset, 8, 0):
            ctx = model.encode(batch["image"])
            probs = model.decode_samples(ctx, hypotheses).softmax(2)  # (B, S, K, H, W)
            hyps = hypothesis_labels(probs, cfg.eval.hypothesis_masks)  # as evaluate draws them
            for i in range(hyps.shape[0]):
                gts = batch["masks"][i, : int(batch["num_masks"][i])]
                rows.append(
                    terms(hyps[i], gts, int(ckpt["meta"]["num_classes"]), cfg.data.ignore_index)
                )
    pooled = {k: statistics.fmean(r[k] for r in rows) for k in rows[0]}
    pooled["ged"] = 2 * pooled["d_sy"] - pooled["d_ss"] - pooled["d_yy"]
    pooled["majority_ged"] = 2 * pooled["d_my"] - pooled["d_yy"]
    pooled["cases"] = len(rows)
    return pooled


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("folders", nargs="+", help="segcvae crossval output folders, then overrides")
    p.add_argument("--hypotheses", type=int, default=16)
    args = p.parse_intermixed_args(argv)
    overrides = [a for a in args.folders if "=" in a]  # section.key=value, e.g. a moved data.root
    folders = [Path(a) for a in args.folders if "=" not in a]
    print("| model | cases | E d(s,y) | E d(s,s') | E d(y,y') | E d(m,y) | GED | majority GED |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for folder in folders:
        t = run_terms(folder, args.hypotheses, overrides)
        print(
            f"| {folder.name} | {t['cases']} | {t['d_sy']:.3f} | {t['d_ss']:.3f} | {t['d_yy']:.3f} "
            f"| {t['d_my']:.3f} | {t['ged']:.3f} | {t['majority_ged']:.3f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

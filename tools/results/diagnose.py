"""Why does a CVAE / hybrid model beat (or not beat) the baseline? Diagnostics on the VALIDATION split.

For a SegCVAE checkpoint (cvae, hybrid or gsnn) and, optionally, the baseline CNN, on the first
``--max-images`` validation images (clean and with the seeded block omission), prints:

* pixel accuracy of the CVAE's own baseline head y_hat, of its deterministic prediction (z = prior
  mean) and of the CNN, so one sees what the latent path adds on top of y_hat;
* KL(q(z|x,y) || p(z|x,y_hat)) per image in nats (summed over the latent map), the mean prior /
  posterior standard deviations, and how much the prior / posterior means vary across images: a KL
  near 0 means the latent carries no information (collapse);
* whether the prior uses y_hat: the KL between the prior computed from y_hat and the prior computed
  from a uniform y_hat (logits zeroed), and the accuracy of the prediction with that prior;
* the mean pixel disagreement between two prior samples (diversity of the hypotheses).

Never run this on the test split: it is for understanding, and choices made from it must not see
test data.

    python tools/results/diagnose.py --ckpt runs/lfw_cpu_hybrid/seed0/best.pt \
        --cnn runs/lfw_cpu_cnn/seed0/best.pt --json runs/lfw_cpu_hybrid/seed0/diagnose_val.json \
        data.root=../shared/data/lfw
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.distributions import kl_divergence

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from segcvae.data import build_transforms  # noqa: E402
from segcvae.engine.batches import eval_loader, open_dataset  # noqa: E402
from segcvae.engine.checkpoint import load_checkpoint, model_from_checkpoint  # noqa: E402


def _acc(logits: torch.Tensor, y: torch.Tensor, k: int) -> tuple[int, int]:
    valid = (y >= 0) & (y < k)
    return int(((logits.argmax(1) == y) & valid).sum()), int(valid.sum())


@torch.no_grad()
def diagnose(args: argparse.Namespace, omission: bool) -> dict[str, float]:
    ckpt = load_checkpoint(args.ckpt)
    model, cfg = model_from_checkpoint(ckpt, "cpu", args.overrides)
    k = int(ckpt["meta"]["num_classes"])
    cnn = (
        model_from_checkpoint(load_checkpoint(args.cnn), "cpu", args.overrides)[0]
        if args.cnn
        else None
    )
    tf = build_transforms(cfg.data, "val", omission=omission, omission_seed=cfg.eval.omission_seed)
    loader = eval_loader(open_dataset(cfg.data, "val", tf), 32, 0)
    torch.manual_seed(0)
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}

    def add(name: str, value: float, n: float) -> None:
        sums[name] = sums.get(name, 0.0) + value
        counts[name] = counts.get(name, 0.0) + n

    seen = 0
    for batch in loader:
        x, y = batch["image"], batch["mask"]
        b = x.shape[0]
        ctx = model.encode(x)
        add("acc_y_hat", *_acc(ctx.y_hat[-1], y, k))
        det = model.generate(ctx, ctx.prior.mean.unsqueeze(1))[-1][:, 0]
        add("acc_cvae_det", *_acc(det, y, k))
        if cnn is not None:
            add("acc_cnn", *_acc(cnn.predict(x), y, k))
        add("prior_std", float(ctx.prior.base_dist.scale.mean()) * b, b)
        # How much the prior mean moves from one image to the next (std over the batch).
        add("prior_mean_std_across_images", float(ctx.prior.base_dist.loc.std(0).mean()) * b, b)
        if model.recognition_net is not None:
            post = model.posterior(ctx, y)
            add("kl_q_p_nats_per_image", float(kl_divergence(post, ctx.prior).sum()), b)
            add("posterior_std", float(post.base_dist.scale.mean()) * b, b)
            add("posterior_mean_std_across_images", float(post.base_dist.loc.std(0).mean()) * b, b)
            # The posterior path's prediction: how much the latent *could* help if p matched q.
            post_det = model.generate(ctx, post.mean.unsqueeze(1))[-1][:, 0]
            add("acc_posterior_mean", *_acc(post_det, y, k))
        # Share of the prior's learned y_hat-branch activations that are <= 0 (on the LeakyReLU's
        # flat side; with the old ReLU branch, exactly 0): near 1 means the learned branch passes
        # (almost) nothing, and only the direct pooled path carries y_hat.
        quarter = F.interpolate(ctx.y_hat[-1].softmax(1), scale_factor=0.25, mode="area")
        lab = model.prior_net.label_net(quarter)
        add("prior_y_hat_branch_nonpositive_fraction", float((lab <= 0).float().mean()) * b, b)
        if model.recognition_net is not None:
            one_hot = F.one_hot(y.clamp(0, k - 1), k).permute(0, 3, 1, 2).float()
            lab_q = model.recognition_net.label_net(
                F.interpolate(one_hot, scale_factor=0.25, mode="area")
            )
            add(
                "recognition_y_branch_nonpositive_fraction",
                float((lab_q <= 0).float().mean()) * b,
                b,
            )
        flat = model.prior_net(ctx.features, torch.zeros_like(ctx.y_hat[-1]))
        add("kl_prior_vs_prior_without_y_hat", float(kl_divergence(ctx.prior, flat).sum()), b)
        no_yhat = model.generate(ctx, flat.mean.unsqueeze(1))[-1][:, 0]
        add("acc_cvae_det_prior_without_y_hat", *_acc(no_yhat, y, k))
        z = ctx.prior.sample((2,)).transpose(0, 1)
        two = model.generate(ctx, z)[-1].argmax(2)  # (B, 2, H, W)
        add("sample_disagreement", float((two[:, 0] != two[:, 1]).float().mean()) * b, b)
        seen += b
        if seen >= args.max_images:
            break
    return {name: sums[name] / max(counts[name], 1) for name in sums} | {"images": seen}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--ckpt", type=Path, required=True, help="cvae / hybrid / gsnn checkpoint")
    p.add_argument("--cnn", type=Path, default=None, help="baseline CNN checkpoint to compare")
    p.add_argument("--max-images", type=int, default=256)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("overrides", nargs="*", help="section.key=value, e.g. data.root=...")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    report = {}
    for omission in (False, True):
        name = "omission" if omission else "clean"
        report[name] = diagnose(args, omission)
        print(name)
        for key, value in report[name].items():
            print(f"  {key:<36} {value:.4f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

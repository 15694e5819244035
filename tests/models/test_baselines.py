"""The baselines the field compares with: MC dropout and deep ensembles (the generic family checks
run on them in test_families.py; these are the properties of each)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from segcvae.cli import USAGE_ERROR, main
from segcvae.config import Config, ConfigError
from segcvae.losses import DeterministicObjective
from segcvae.metrics import conditional_log_likelihood, negative_log_likelihoods
from segcvae.models import BaselineCNN, EnsembleCNN, MCDropoutCNN, build_objective, create_model
from tests.conftest import tiny_config
from tests.tools.conftest import TINY


def config(arch: str) -> Config:
    cfg = tiny_config()
    cfg.model.arch = arch
    return cfg


def mc_dropout(rate: float = 0.5, stages: int = 2, seed: int = 0) -> MCDropoutCNN:
    cfg = config("mc_dropout")
    cfg.model.mc_dropout.rate, cfg.model.mc_dropout.stages = rate, stages
    torch.manual_seed(seed)
    return create_model(cfg, 3)


def ensemble(members: int = 3, seed: int = 0) -> EnsembleCNN:
    cfg = config("ensemble")
    cfg.model.ensemble.members = members
    cfg.train.seed = seed
    return create_model(cfg, 3)


# ------------------------------------------------------------------------------------ MC dropout
@pytest.mark.parametrize("stages", [1, 2, 3])
def test_mc_dropout_hypotheses_differ_in_eval_mode_and_the_prediction_does_not(batch, stages):
    x = batch[0]
    model = mc_dropout(stages=stages).eval()
    assert not model.training
    s = model.sample(x, 3)
    assert not torch.allclose(s[:, 0], s[:, 1]) and not torch.allclose(s[:, 1], s[:, 2])
    assert torch.equal(model.predict(x), model.predict(x))
    # dropout off is the CNN itself: the same weights, no mask, no scaling
    torch.testing.assert_close(model.predict(x), model.cnn.predict(x))
    # the training forward drops too, in eval mode as in training mode
    a, b = model(x).logits, model(x).logits
    assert not torch.allclose(a, b)


def test_mc_dropout_noise_drops_what_phi_says(batch):
    """decode_noise with fixed eps is deterministic and keeps exactly the channels with
    Phi(eps) >= p, scaled by 1 / (1 - p): written out here block by block."""
    x = batch[0]
    rate = 0.3
    model = mc_dropout(rate=rate, stages=2).eval()
    ctx = model.encode(x)
    n = model.noise_shape(32, 32)[0]
    assert n == 16 + 8  # tiny decoder [16, 16, 16, 16, 8]: channels of the last two blocks
    eps = torch.randn(4, 2, n, generator=torch.Generator().manual_seed(3))
    got = model.decode_noise(ctx, eps)
    torch.testing.assert_close(got, model.decode_noise(ctx, eps), rtol=0, atol=0)

    keep = (torch.special.ndtr(eps) >= rate).float() / (1 - rate)  # (S, B, N)
    block, head = model.cnn.decoder.blocks[-1], model.cnn.heads[-1]
    step = ctx.steps[0]
    for s in range(4):
        d = ctx.feature * keep[s, :, :16, None, None]  # the 1/2 block's output, dropped
        d = block(d, step.height, step.width, skip_connection=step.skip)
        d = d * keep[s, :, 16:, None, None]  # the full-resolution block's output, dropped
        torch.testing.assert_close(got[:, s], head(d), atol=1e-5, rtol=1e-5)


def test_mc_dropout_keeps_a_channel_with_probability_one_minus_p():
    model = mc_dropout(rate=0.2)
    keep = model.keep_masks(torch.randn(20000, 1, 24, generator=torch.Generator().manual_seed(0)))
    assert keep.shape == (1, 20000, 24)
    assert keep.float().mean().item() == pytest.approx(0.8, abs=0.01)


def test_mc_dropout_samples_rerun_only_what_follows_the_dropout(batch, monkeypatch):
    model = mc_dropout(stages=2).eval()
    ctx = model.encode(batch[0])

    def fail(*args, **kwargs):
        raise AssertionError("the encoder or an early decoder block ran again")

    monkeypatch.setattr(model.cnn.encoder, "forward", fail)
    for block in model.cnn.decoder.blocks[:-1]:
        monkeypatch.setattr(block, "forward", fail)
    assert model.decode_samples(ctx, 5).shape == (2, 5, 3, 32, 32)


def test_mc_dropout_objective_is_the_cnns_on_the_dropout_forward(batch):
    x, y = batch
    model = mc_dropout()
    torch.manual_seed(4)
    out = model(x, y)
    terms = build_objective(config("mc_dropout"))(out, y)
    cnn_terms = DeterministicObjective()(out, y)
    torch.testing.assert_close(terms["loss"], cnn_terms["loss"])


# -------------------------------------------------------------------------------------- ensemble
def test_ensemble_members_are_the_cnns_of_their_seeds():
    """Member m is initialised as a BaselineCNN built under seed train.seed + m; building the
    ensemble leaves torch's RNG as it was."""
    state = torch.get_rng_state()
    model = ensemble(members=3, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    assert model.num_members == 3
    cfg = tiny_config("cnn")
    for m, member in enumerate(model.members):
        torch.manual_seed(7 + m)
        alone = BaselineCNN.from_config(cfg, 3)
        for (name, a), b in zip(
            member.state_dict().items(), alone.state_dict().values(), strict=True
        ):
            assert torch.equal(a, b), (m, name)
    w = [member.heads[-1][0].weight for member in model.members]
    assert not torch.equal(w[0], w[1]) and not torch.equal(w[1], w[2])


def test_ensemble_members_train_as_they_would_alone(batch):
    """The loss is the sum of the members' losses: with Adam, each member's steps are the steps it
    takes trained alone on the same batches."""
    x, y = batch
    model = ensemble(members=2, seed=3)
    objective = build_objective(config("ensemble"))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    alone = []
    for m in range(2):
        torch.manual_seed(3 + m)
        cnn = BaselineCNN.from_config(tiny_config("cnn"), 3)
        alone.append((cnn, torch.optim.Adam(cnn.parameters(), lr=1e-2)))
    cnn_objective = DeterministicObjective()
    for _ in range(3):
        terms = objective(model(x, y), y)
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
        nll = []
        for cnn, cnn_opt in alone:
            loss = cnn_objective(cnn(x, y), y)["loss"]
            cnn_opt.zero_grad()
            loss.backward()
            cnn_opt.step()
            nll.append(loss.detach())
        torch.testing.assert_close(terms["loss"].detach(), sum(nll))
        torch.testing.assert_close(terms["nll"], sum(nll) / 2)
    for member, (cnn, _) in zip(model.members, alone, strict=True):
        for a, b in zip(member.parameters(), cnn.parameters(), strict=True):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_ensemble_likelihood_is_the_members_mixture(batch):
    x, y = batch
    model = ensemble(members=3).eval()
    with torch.no_grad():
        per_member = torch.stack(
            [
                -F.cross_entropy(member.predict(x), y, ignore_index=255, reduction="none").sum(
                    (1, 2)
                )
                for member in model.members
            ]
        )  # (M, B): log p_m(y | x)
        expected = torch.logsumexp(per_member, 0) - math.log(3)
        got = conditional_log_likelihood(model, x, y, n_samples=5, method="is", chunk_size=2)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-3)
        nll = negative_log_likelihoods(model, x, y, n_samples=5)
        torch.testing.assert_close(nll["nll"], -expected, rtol=1e-5, atol=1e-3)
        mean_probs = torch.stack([m.predict(x).softmax(1) for m in model.members]).mean(0)
        torch.testing.assert_close(model.predict(x).softmax(1), mean_probs, atol=1e-6, rtol=1e-5)
    assert model.likelihood_methods == ("exact",)


def test_ensemble_hypotheses_are_the_members_drawn_evenly(batch):
    model = ensemble(members=4).eval()
    with torch.no_grad():
        ctx = model.encode(batch[0])
        s = model.decode_samples(ctx, 8)  # (B, 8, K, H, W)
    members = ctx.member_logits
    for b in range(2):
        which = [next(m for m in range(4) if torch.equal(s[b, i], members[b, m])) for i in range(8)]
        assert sorted(which) == [0, 0, 1, 1, 2, 2, 3, 3]
        assert all((which[i + 1] - which[i]) % 4 == 1 for i in range(7))


def test_ensemble_noise_picks_member_floor_of_phi_times_m(batch):
    model = ensemble(members=4).eval()
    eps = torch.tensor([-3.0, -0.5, -0.1, 0.1, 0.5, 0.8, 3.0]).view(7, 1, 1).expand(7, 2, 1)
    expected = (torch.special.ndtr(eps[..., 0]) * 4).floor().long().T  # (B, S)
    assert expected[0].tolist() == [0, 1, 1, 2, 2, 3, 3]
    assert torch.equal(model.member_of(eps), expected)
    with torch.no_grad():
        ctx = model.encode(batch[0])
        got = model.decode_noise(ctx, eps)
    for b in range(2):
        for i in range(7):
            assert torch.equal(got[b, i], ctx.member_logits[b, expected[b, i]])


# -------------------------------------------------------------------------------------- settings
BAD = [
    ("mc_dropout", "rate=0", "model.mc_dropout.rate: expected a number in (0, 1), got 0"),
    ("mc_dropout", "rate=1.0", "model.mc_dropout.rate: expected a number in (0, 1), got 1.0"),
    ("mc_dropout", "stages=0", "model.mc_dropout.stages: expected an integer in [1, 3], got 0"),
    ("mc_dropout", "stages=4", "model.mc_dropout.stages: expected an integer in [1, 3], got 4"),
    ("ensemble", "members=1", "model.ensemble.members: expected an integer in [2, 32], got 1"),
    ("ensemble", "members=33", "model.ensemble.members: expected an integer in [2, 32], got 33"),
]


@pytest.mark.parametrize(("arch", "setting", "message"), BAD, ids=[b[1] for b in BAD])
def test_a_setting_out_of_range_is_a_config_error(arch, setting, message):
    with pytest.raises(ConfigError) as e:
        Config.from_yaml(None, [f"model.arch={arch}", f"model.{arch}.{setting}"])
    assert message in str(e.value)


def test_a_setting_out_of_range_is_one_line_and_exit_2_from_the_command(tmp_path, capsys):
    args = ["train", "--out", str(tmp_path / "run"), *TINY, "model.arch=ensemble"]
    assert main([*args, "model.ensemble.members=1"]) == USAGE_ERROR
    err = capsys.readouterr().err
    assert "model.ensemble.members: expected an integer in [2, 32], got 1" in err
    assert "Traceback" not in err


def test_settings_reach_the_models():
    cfg = Config.from_yaml(
        None, ["model.arch=mc_dropout", "model.mc_dropout.rate=0.25", "model.mc_dropout.stages=3"]
    )
    kwargs = MCDropoutCNN.config_kwargs(cfg)
    assert (kwargs["rate"], kwargs["stages"]) == (0.25, 3)
    cfg = Config.from_yaml(
        None, ["model.arch=ensemble", "model.ensemble.members=5", "train.seed=9"]
    )
    kwargs = EnsembleCNN.config_kwargs(cfg)
    assert (kwargs["members"], kwargs["seed"]) == (5, 9)

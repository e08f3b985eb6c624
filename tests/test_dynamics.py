"""Mean-field gradient descent: gradients, the N·L step scaling, noise and reproducibility."""

import numpy as np
import pytest
import torch
from conftest import random_net

from meanfield import MeanFieldResNet, TrainConfig, train
from meanfield.dynamics import square_loss


def _loss(net, X, Y):
    return square_loss(net._forward(X), Y)


def _check_against_finite_differences(net, X, Y, rng, draws: int) -> None:
    """Autograd's gradient of the loss against central differences in float64, at ``draws``
    random coordinates of every parameter tensor."""
    params = [p.requires_grad_(True) for p in net.parameters()]
    grads = torch.autograd.grad(_loss(net, X, Y), params)
    h = 1e-6
    for p, g in zip(params, grads, strict=True):
        flat, gflat = p.data.view(-1), g.view(-1)
        for k in rng.choice(flat.numel(), size=draws, replace=False):
            old = flat[k].item()
            flat[k] = old + h
            up = _loss(net, X, Y).item()
            flat[k] = old - h
            down = _loss(net, X, Y).item()
            flat[k] = old
            assert gflat[k].item() == pytest.approx((up - down) / (2 * h), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("activation", ["tanh", "gelu", "identity"])
def test_autograd_gradient_matches_float64_finite_differences(activation, rng):
    net = random_net(L=3, N=4, d=3, activation=activation)
    X = torch.as_tensor(rng.normal(size=(11, 3)))
    Y = torch.as_tensor(rng.normal(size=11))
    _check_against_finite_differences(net, X, Y, rng, draws=6)


def test_one_step_moves_each_particle_by_lr_N_L_gradient(rng):
    net = random_net(L=2, N=5, d=3)
    X, Y = rng.normal(size=(8, 3)), rng.normal(size=8)
    params = [p.clone().requires_grad_(True) for p in net.parameters()]
    probe = MeanFieldResNet(*params, net.act, net.readout)
    grads = torch.autograd.grad(_loss(probe, torch.as_tensor(X), torch.as_tensor(Y)), params)
    trained, _ = train(net, X, Y, TrainConfig(steps=1, lr=0.01, eval_every=0))
    for before, after, g in zip(net.parameters(), trained.parameters(), grads, strict=True):
        torch.testing.assert_close(after, before - 0.01 * 5 * 2 * g)


def test_duplicated_particles_follow_the_same_trajectory(rng):
    """Mean-field scaling: a net with every particle doubled trains identically, because the
    step η·N·L·∂R/∂θ does not change when N doubles and each gradient halves."""
    net = random_net(L=3, N=4, d=3)
    dup = MeanFieldResNet(*(torch.cat([p, p], dim=1) for p in net.parameters()), net.act,
                          net.readout)
    X, Y = rng.normal(size=(16, 3)), rng.normal(size=16)
    cfg = TrainConfig(steps=25, lr=0.05, eval_every=5)
    t1, h1 = train(net, X, Y, cfg)
    t2, h2 = train(dup, X, Y, cfg)
    np.testing.assert_allclose(h1.train_loss, h2.train_loss, rtol=1e-10)
    np.testing.assert_allclose(t2.a[:, :4].numpy(), t1.a.numpy(), rtol=1e-9, atol=1e-12)


def test_training_lowers_the_loss_and_records_history(rng):
    net = random_net(L=4, N=32, d=3)
    X = rng.normal(size=(64, 3))
    Y = np.sin(X[:, 0]) + X[:, 1] * X[:, 2]
    cfg = TrainConfig(steps=60, lr=0.05, eval_every=10, record_every=30)
    trained, hist = train(net, X, Y, cfg, X_test=X[:16], Y_test=Y[:16])
    assert hist.train_loss[-1] < 0.5 * hist.train_loss[0]
    assert hist.eval_steps == [0, 10, 20, 30, 40, 50, 60]
    assert len(hist.test_loss) == len(hist.eval_steps)
    assert hist.snapshot_steps == [0, 30, 60]
    np.testing.assert_allclose(hist.snapshots[-1]["a"], trained.a.numpy())
    # snapshots are copies: the first one still holds the initial particles
    np.testing.assert_array_equal(hist.snapshots[0]["w"], net.w.numpy())
    assert not np.allclose(hist.snapshots[0]["w"], hist.snapshots[-1]["w"])
    assert hist.particle_gradients == 60 * 64 * 32 * 4
    assert hist.flops > 0
    # the input network is left unchanged
    assert not torch.equal(net.a, trained.a)


def test_minibatch_and_langevin_runs_are_reproducible_and_seed_dependent(rng):
    net = random_net(L=2, N=8, d=3)
    X, Y = rng.normal(size=(40, 3)), rng.normal(size=40)
    cfg = TrainConfig(steps=20, lr=0.02, batch_size=8, temperature=0.01, seed=3)
    a1, _ = train(net, X, Y, cfg)
    a2, _ = train(net, X, Y, cfg)
    a3, _ = train(net, X, Y, TrainConfig(steps=20, lr=0.02, batch_size=8, temperature=0.01,
                                         seed=4))
    assert torch.equal(a1.w, a2.w)
    assert not torch.equal(a1.w, a3.w)


def test_langevin_noise_has_the_right_size(rng):
    """With zero data gradient (a = 0 and readout u = 0) a step adds √(2ητ)·ξ."""
    L, N, d = 2, 2000, 3
    zero_u = np.zeros(d)
    net = MeanFieldResNet.from_arrays(np.zeros((L, N, d)), np.zeros((L, N, d)), np.zeros((L, N)),
                                      "tanh", zero_u)
    X, Y = rng.normal(size=(4, d)), np.zeros(4)
    trained, _ = train(net, X, Y, TrainConfig(steps=1, lr=0.1, temperature=0.5, eval_every=0))
    assert trained.w.std().item() == pytest.approx(np.sqrt(2 * 0.1 * 0.5), rel=0.05)


def test_divergence_is_reported(rng):
    net = random_net(L=2, N=4, d=3)
    X, Y = rng.normal(size=(8, 3)) * 50, rng.normal(size=8) * 1e3
    with pytest.raises(FloatingPointError, match="diverged at step"):
        train(net, X, Y, TrainConfig(steps=200, lr=1e6, eval_every=0))


@pytest.mark.parametrize("kwargs", [dict(steps=-1), dict(lr=0.0), dict(lr=float("nan")),
                                    dict(batch_size=0), dict(temperature=-1.0)])
def test_bad_config_raises(kwargs):
    with pytest.raises(ValueError):
        TrainConfig(**kwargs)


# ---------------------------------------------------------------- residual scalings

SCALES = ("1/L", "1/sqrt(L)", "1")


def _scaled(net, scale):
    return MeanFieldResNet(*(p.clone() for p in net.parameters()), net.act, net.readout,
                           residual_scale=scale)


@pytest.mark.parametrize("scale", SCALES)
def test_gradient_matches_finite_differences_under_every_residual_scale(scale, rng):
    net = _scaled(random_net(L=4, N=3, d=3, activation="tanh"), scale)
    X = torch.as_tensor(rng.normal(size=(9, 3)))
    Y = torch.as_tensor(rng.normal(size=9))
    _check_against_finite_differences(net, X, Y, rng, draws=5)


@pytest.mark.parametrize("scale,S", [("1/L", 5 * 4), ("1/sqrt(L)", 5), ("1", 5 / 4)])
def test_one_step_uses_the_particle_step_scale_N_over_alpha2_L(scale, S, rng):
    from meanfield.dynamics import particle_step_scale

    net = _scaled(random_net(L=4, N=5, d=3), scale)
    assert particle_step_scale(net) == pytest.approx(S, rel=1e-15)
    X, Y = rng.normal(size=(8, 3)), rng.normal(size=8)
    params = [p.clone().requires_grad_(True) for p in net.parameters()]
    probe = MeanFieldResNet(*params, net.act, net.readout, residual_scale=scale)
    grads = torch.autograd.grad(_loss(probe, torch.as_tensor(X), torch.as_tensor(Y)), params)
    trained, _ = train(net, X, Y, TrainConfig(steps=1, lr=0.01, eval_every=0))
    assert trained.residual_scale == scale
    for before, after, g in zip(net.parameters(), trained.parameters(), grads, strict=True):
        torch.testing.assert_close(after, before - 0.01 * S * g)


@pytest.mark.parametrize("scale", SCALES)
def test_the_loss_moves_at_a_depth_independent_rate_near_the_identity(scale, rng):
    """The convention of the step S = N/(α² L): since ∂R/∂θ_{l,i} = (α/N) ∇V_l(θ_{l,i}), a small
    step lowers the loss at the rate η·S·‖∂R/∂θ‖² = η · mean over layers and particles of
    ‖∇V_l‖², an average over layers whatever L and α. Near the identity map (tiny a: states
    and adjoints barely change across layers) every layer has the same ∇V_l, so the rate is
    the same at L = 4 and L = 32, under every scaling."""
    from meanfield.dynamics import particle_step_scale

    base = random_net(L=1, N=6, d=3, seed=2)
    X = torch.as_tensor(rng.normal(size=(32, 3)))
    Y = torch.as_tensor(rng.normal(size=32))
    rates = []
    for L in (4, 32):
        a, w, b = base.parameters()
        net = MeanFieldResNet(1e-4 * a.repeat(L, 1, 1), w.repeat(L, 1, 1), b.repeat(L, 1),
                              base.act, base.readout, residual_scale=scale)
        params = [p.requires_grad_(True) for p in net.parameters()]
        grads = torch.autograd.grad(_loss(net, X, Y), params)
        rates.append(particle_step_scale(net) * sum(float((g * g).sum()) for g in grads))
    assert rates[1] / rates[0] == pytest.approx(1.0, rel=1e-2), rates

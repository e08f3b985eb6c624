"""Layerwise imitation and the subsampled warm start."""

import numpy as np
import pytest
import torch

from gowide.stats import loglog_slope
from meanfield import GaussianParticleLaw, ImitationConfig, block_errors, imitate, subsample


def _wide(seed=0, L=4, N=512, d=3):
    law = GaussianParticleLaw.random(d, scale=1.5, amplitude=1.0, seed=seed)
    u = np.ones(d) / np.sqrt(d)
    return law.sample_family(N, np.random.default_rng(seed)).network(L, "tanh", readout=u)


def test_imitation_error_is_zero_when_student_equals_teacher(rng):
    wide = _wide()
    X = rng.normal(size=(32, 3))
    assert np.all(block_errors(wide, wide, X) == 0)
    thin, hist = imitate(wide, wide, X, ImitationConfig(steps=5, lr=0.5))
    assert np.allclose(hist.layer_loss[0], 0.0)
    torch.testing.assert_close(thin.w, wide.w)


def test_subsampling_all_particles_reproduces_the_wide_net(rng):
    wide = _wide(N=64)
    thin = subsample(wide, 64, np.random.default_rng(0))
    X = rng.normal(size=(16, 3))
    np.testing.assert_allclose(thin(X), wide(X), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="without replacement"):
        subsample(wide, 65, np.random.default_rng(0))


def test_subsampled_start_follows_the_monte_carlo_rate(rng):
    """Mean squared per-layer error of an n-particle subsample ∝ (1/n)·(N−n)/(N−1)."""
    wide = _wide(N=4096)
    X = rng.normal(size=(64, 3))
    z = torch.as_tensor(wide.states(X))[:-1]  # (L, B, d) wide states
    target = wide.blocks_at(z)
    ns = [8, 16, 32, 64, 128, 256]
    slopes = []

    def mean_sq_error(thin):  # mean over layers of δ_l², computed as block_errors does
        return float(((thin.blocks_at(z) - target) ** 2).sum(-1).mean())

    np.testing.assert_allclose(
        mean_sq_error(subsample(wide, 8, np.random.default_rng(9))),
        np.mean(block_errors(subsample(wide, 8, np.random.default_rng(9)), wide, X) ** 2))
    for seed in range(4):
        gen = np.random.default_rng(seed)
        msq = [np.mean([mean_sq_error(subsample(wide, n, gen)) for _ in range(12)]) for n in ns]
        fpc = [(4096 - n) / 4095 for n in ns]
        slopes.append(loglog_slope(ns, np.asarray(msq) / np.asarray(fpc)))
    assert abs(np.mean(slopes) + 1.0) < 0.1, slopes


@pytest.mark.parametrize("mode", ["teacher_forced", "progressive"])
def test_imitation_reduces_block_errors_and_output_deviation(mode, rng):
    wide = _wide(N=1024)
    X = rng.normal(size=(128, 3))
    start = subsample(wide, 8, np.random.default_rng(1))
    thin, hist = imitate(start, wide, X, ImitationConfig(steps=150, lr=0.5, mode=mode))
    before, after = block_errors(start, wide, X), block_errors(thin, wide, X)
    assert np.all(after < before)
    dev_before = np.mean((start(X) - wide(X)) ** 2)
    dev_after = np.mean((thin(X) - wide(X)) ** 2)
    assert dev_after < 0.5 * dev_before
    assert hist.particle_gradients > 0
    if mode == "progressive":
        assert hist.eval_steps[-1] == wide.depth * 150


def test_teacher_forced_layers_are_independent(rng):
    """Training all layers at once equals training each layer alone."""
    wide = _wide(N=256)
    X = rng.normal(size=(32, 3))
    start = subsample(wide, 6, np.random.default_rng(2))
    together, _ = imitate(start, wide, X, ImitationConfig(steps=20, lr=0.3))
    z = torch.as_tensor(wide.states(X))
    for layer in range(wide.depth):
        from meanfield.network import MeanFieldResNet

        alone = MeanFieldResNet(*(p[layer:layer + 1].clone() for p in start.parameters()),
                                start.act)
        teacher = MeanFieldResNet(*(p[layer:layer + 1] for p in wide.parameters()), wide.act)
        # one-layer "network" trained on the same inputs z_l: identical update rule
        from meanfield.imitation import ImitationHistory, _fit

        target = teacher.blocks_at(z[layer:layer + 1])
        gen = torch.Generator().manual_seed(0)
        cfg = ImitationConfig(steps=20, lr=0.3)
        _fit(alone, z[layer:layer + 1], target, [0], cfg, gen, ImitationHistory(config={}),
             False)
        torch.testing.assert_close(alone.w[0], together.w[layer], rtol=1e-10, atol=1e-12)


def test_thin_and_wide_must_share_depth(rng):
    with pytest.raises(ValueError, match="share depth"):
        imitate(_wide(L=3, N=16), _wide(L=4, N=16), rng.normal(size=(4, 3)), ImitationConfig())


def test_bad_mode_raises():
    with pytest.raises(ValueError, match="mode"):
        ImitationConfig(mode="sideways")


# ---------------------------------------------------------------- residual scalings


def _wide_scaled(scale, L=6, N=256, d=3, seed=0):
    from meanfield.network import MeanFieldResNet

    w = _wide(seed=seed, L=L, N=N, d=d)
    return MeanFieldResNet(*(p.clone() for p in w.parameters()), w.act, w.readout,
                           residual_scale=scale)


@pytest.mark.parametrize("mode", ["teacher_forced", "progressive"])
@pytest.mark.parametrize("scale", ["1/L", "1/sqrt(L)", "1"])
def test_imitating_a_copy_costs_nothing_under_every_residual_scale(scale, mode, rng):
    wide = _wide_scaled(scale, N=32)
    X = rng.normal(size=(24, 3))
    thin, hist = imitate(wide, wide, X, ImitationConfig(steps=3, lr=0.5, mode=mode,
                                                        eval_every=1))
    assert thin.residual_scale == scale
    assert np.nanmax(np.asarray(hist.layer_loss)) < 1e-20
    # progressive targets (z_{l+1} − x_l)/α carry rounding of size ε‖z‖: particles stay put
    torch.testing.assert_close(thin.w, wide.w, rtol=0, atol=1e-9)
    assert subsample(wide, 8, np.random.default_rng(0)).residual_scale == scale


@pytest.mark.parametrize("scale", ["1/L", "1/sqrt(L)", "1"])
def test_progressive_identity_x_minus_z_is_alpha_times_the_last_layer_error(scale, rng):
    """Proposition 5 with the residual factor α: x_L − z_L = α ε_{L−1} exactly, so the RMS
    final-state deviation equals α·J^prog_{L−1}^{1/2} on the imitation data."""
    from meanfield.network import MeanFieldResNet

    wide = _wide_scaled(scale, L=5)
    wide = MeanFieldResNet(*wide.parameters(), wide.act, None, residual_scale=scale)
    X = rng.normal(size=(48, 3))
    start = subsample(wide, 4, np.random.default_rng(3))
    thin, hist = imitate(start, wide, X, ImitationConfig(steps=30, lr=0.3, mode="progressive",
                                                         eval_every=30))
    J_last = hist.layer_loss[-1][-1]
    dev = np.sqrt(np.mean(np.sum((thin(X) - wide(X)) ** 2, axis=1)))
    assert dev == pytest.approx(wide.residual_factor * np.sqrt(J_last), rel=1e-9)


def test_thin_and_wide_must_share_the_residual_scale(rng):
    with pytest.raises(ValueError, match="residual scale"):
        imitate(_wide_scaled("1", N=16), _wide_scaled("1/L", N=16), rng.normal(size=(4, 3)),
                ImitationConfig())

"""The stability bound: it must hold on the data it is computed on, in every configuration."""

import numpy as np
import pytest
import torch

from meanfield import GaussianParticleLaw, ImitationConfig, imitate, subsample
from meanfield.stability import jacobian_norms, stability_report


def _wide(seed, L, N=512, d=3, scale=1.5, amplitude=1.0, activation="tanh"):
    law = GaussianParticleLaw.random(d, scale=scale, amplitude=amplitude, seed=seed)
    u = np.random.default_rng(seed).normal(size=d)
    return law.sample_family(N, np.random.default_rng(seed)).network(L, activation, readout=u)


@pytest.mark.parametrize("activation", ["tanh", "relu", "gelu"])
@pytest.mark.parametrize("L", [1, 4, 16])
@pytest.mark.parametrize("n", [2, 16])
def test_bound_holds_for_subsampled_and_imitated_nets(activation, L, n, rng):
    wide = _wide(L, L, activation=activation, amplitude=1.0)
    X = rng.normal(size=(64, 3))
    thin = subsample(wide, n, np.random.default_rng(n))
    for net in (thin, imitate(thin, wide, X, ImitationConfig(steps=20, lr=0.01))[0]):
        rep = stability_report(net, wide, X)
        assert rep["bound_holds"], rep
        b = rep["output_bound"]
        assert b["product"] <= b["uniform"] * (1 + 1e-12) <= b["exp"] * (1 + 1e-12)
        assert rep["K_data"] <= rep["K"] + 1e-9  # the data estimate never exceeds the bound


def test_bound_is_zero_and_deviation_zero_for_the_wide_net_itself(rng):
    wide = _wide(0, 4)
    rep = stability_report(wide, wide, rng.normal(size=(16, 3)))
    assert rep["output_deviation"] == 0 and rep["output_bound"]["product"] == 0


def test_jacobian_norms_match_autograd(rng):
    net = _wide(1, 2, N=7)
    z = torch.as_tensor(rng.normal(size=(2, 5, 3)))
    norms = jacobian_norms(net, z)
    for layer in range(2):
        for i in range(5):
            jac = torch.autograd.functional.jacobian(
                lambda x, layer=layer: net.block(layer, x[None])[0], z[layer, i])
            assert norms[layer, i] == pytest.approx(float(torch.linalg.matrix_norm(jac, 2)))


@pytest.mark.parametrize("scale", ["1/L", "1/sqrt(L)", "1"])
@pytest.mark.parametrize("L", [2, 8])
def test_bound_holds_under_every_residual_scale(scale, L, rng):
    """Theorem 4 with α for 1/L: e_{l+1} ≤ (1 + ακ_l) e_l + α δ_l, on the same data."""
    from meanfield.network import MeanFieldResNet

    w = _wide(L, L, amplitude=1.0)
    wide = MeanFieldResNet(*w.parameters(), w.act, w.readout, residual_scale=scale)
    X = rng.normal(size=(64, 3))
    thin = subsample(wide, 4, np.random.default_rng(L))
    for net in (thin, imitate(thin, wide, X, ImitationConfig(steps=20, lr=0.05))[0]):
        rep = stability_report(net, wide, X)
        assert rep["bound_holds"], rep
        assert rep["residual_scale"] == scale
        b = rep["output_bound"]
        assert b["product"] <= b["uniform"] * (1 + 1e-12) <= b["exp"] * (1 + 1e-12)

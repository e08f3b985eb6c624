"""MeanFieldResNet: shapes, numpy/torch round trips, invariances and the linear closed form."""

import numpy as np
import pytest
import torch
from conftest import random_net

from gowide.stats import loglog_slope
from meanfield import MeanFieldResNet, linear_ode_solution
from meanfield.activations import ACTIVATIONS


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_shapes_and_numpy_io(activation, rng):
    net = random_net(L=3, N=5, d=4, activation=activation)
    x = rng.normal(size=(7, 4))
    y = net(x)
    assert isinstance(y, np.ndarray) and y.shape == (7,)
    xs = net.states(x)
    assert isinstance(xs, np.ndarray) and xs.shape == (4, 7, 4)
    np.testing.assert_allclose(xs[0], x)
    np.testing.assert_allclose(xs[-1] @ net.readout.numpy(), y, rtol=1e-12)
    yt = net(torch.as_tensor(x))
    assert isinstance(yt, torch.Tensor)
    np.testing.assert_allclose(yt.numpy(), y)


def test_forward_matches_the_equation_written_out(rng):
    L, N, d = 2, 3, 2
    a, w = rng.normal(size=(L, N, d)), rng.normal(size=(L, N, d))
    b, u = rng.normal(size=(L, N)), rng.normal(size=d)
    x = rng.normal(size=(5, d))
    net = MeanFieldResNet.from_arrays(a, w, b, "tanh", u)
    h = x.copy()
    for layer in range(L):
        update = np.zeros_like(h)
        for i in range(N):
            update += np.tanh(h @ w[layer, i] + b[layer, i])[:, None] * a[layer, i]
        h = h + update / (L * N)
    np.testing.assert_allclose(net(x), h @ u, rtol=1e-12)


def test_no_readout_returns_final_state(rng):
    net = random_net(readout=False)
    x = rng.normal(size=(6, 4))
    np.testing.assert_allclose(net(x), net.states(x)[-1])


def test_embedding(rng):
    rng2 = np.random.default_rng(0)
    a, w, b = rng2.normal(size=(2, 3, 4)), rng2.normal(size=(2, 3, 4)), rng2.normal(size=(2, 3))
    E = rng.normal(size=(4, 6))
    net = MeanFieldResNet.from_arrays(a, w, b, embedding=E)
    x = rng.normal(size=(5, 6))
    np.testing.assert_allclose(net.states(x)[0], x @ E.T)


def test_float32_and_float64_agree(rng):
    net64 = random_net()
    net32 = net64.to(dtype=torch.float32)
    x = rng.normal(size=(8, 4))
    assert net32(x.astype(np.float32)).dtype == np.float32
    np.testing.assert_allclose(net32(x), net64(x), rtol=1e-5, atol=1e-5)


def test_duplicating_every_particle_changes_nothing(rng):
    net = random_net(N=6, activation="gelu")
    dup = MeanFieldResNet(*(torch.cat([p, p], dim=1) for p in net.parameters()), net.act,
                          net.readout)
    x = rng.normal(size=(9, 4))
    assert dup.width == 12
    np.testing.assert_allclose(dup(x), net(x), rtol=1e-13, atol=1e-13)


def test_permuting_particles_changes_nothing(rng):
    net = random_net(N=8, activation="relu")
    perm = torch.as_tensor(rng.permutation(8))
    perm_net = MeanFieldResNet(*(p[:, perm] for p in net.parameters()), net.act, net.readout)
    x = rng.normal(size=(9, 4))
    np.testing.assert_allclose(perm_net(x), net(x), rtol=1e-13, atol=1e-13)


def test_identity_activation_converges_to_matrix_exponential(rng):
    """Same particles in every layer, σ = id: x_L = (I + A/L)^L x_0 + ... → e^A x_0 + ...,
    with error O(1/L)."""
    N, d = 10, 3
    a, w, b = rng.normal(size=(N, d)), rng.normal(size=(N, d)) / np.sqrt(d), rng.normal(size=N)
    x = rng.normal(size=(16, d))
    exact = linear_ode_solution(a, w, b, x)
    depths = [4, 8, 16, 32, 64, 128, 256]
    errors = []
    for L in depths:
        net = MeanFieldResNet.from_arrays(np.repeat(a[None], L, 0), np.repeat(w[None], L, 0),
                                          np.repeat(b[None], L, 0), "identity")
        errors.append(np.sqrt(np.mean((net(x) - exact) ** 2)))
    assert errors[-1] < 0.02 * np.sqrt(np.mean(exact**2))
    assert -1.1 < loglog_slope(depths, errors) < -0.9


def test_lipschitz_bound_dominates_finite_differences(rng):
    net = random_net(L=2, N=20, activation="tanh")
    K = net.lipschitz_bound().numpy()
    x = torch.as_tensor(rng.normal(size=(200, 4)))
    dx = torch.as_tensor(rng.normal(size=(200, 4))) * 1e-3
    for layer in range(net.depth):
        ratio = (net.block(layer, x + dx) - net.block(layer, x)).norm(dim=1) / dx.norm(dim=1)
        assert float(ratio.max()) <= K[layer] + 1e-9


@pytest.mark.parametrize("bad", [
    dict(a=np.zeros((2, 3)), w=np.zeros((2, 3)), b=np.zeros(2)),
    dict(a=np.zeros((2, 3, 4)), w=np.zeros((2, 3, 5)), b=np.zeros((2, 3))),
    dict(a=np.zeros((2, 3, 4)), w=np.zeros((2, 3, 4)), b=np.zeros((2, 4))),
    dict(a=np.zeros((2, 3, 4)), w=np.zeros((2, 3, 4)), b=np.zeros((2, 3)), readout=np.zeros(3)),
    dict(a=np.zeros((2, 3, 4)), w=np.zeros((2, 3, 4)), b=np.zeros((2, 3)), activation="sigmoid"),
])
def test_bad_shapes_and_names_raise_clear_errors(bad):
    with pytest.raises(ValueError, match="shape|activation"):
        MeanFieldResNet.from_arrays(**bad)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(rng):
    net = random_net()
    x = rng.normal(size=(8, 4))
    np.testing.assert_allclose(net.to(device="cuda")(x), net(x), rtol=1e-10)


# ---------------------------------------------------------------- residual scalings


@pytest.mark.parametrize("scale,alpha", [("1/L", lambda L: 1 / L),
                                         ("1/sqrt(L)", lambda L: L ** -0.5),
                                         ("1", lambda L: 1.0)])
@pytest.mark.parametrize("L", [1, 3, 8])
def test_identity_activation_closed_form_under_every_residual_scale(scale, alpha, L, rng):
    """σ = id: layer l is the affine map x ↦ x + α(A_l x + c_l), A_l = mean_i a_i w_iᵀ,
    c_l = mean_i a_i b_i, so x_L is the product of the L augmented matrices
    [[I + αA_l, αc_l], [0, 1]] applied to (x_0, 1)."""
    N, d = 6, 3
    a, w = rng.normal(size=(L, N, d)) * 0.5, rng.normal(size=(L, N, d)) / np.sqrt(d)
    b = rng.normal(size=(L, N))
    x = rng.normal(size=(7, d))
    net = MeanFieldResNet.from_arrays(a, w, b, "identity", residual_scale=scale)
    assert net.residual_factor == pytest.approx(alpha(L), rel=1e-15)
    prod = np.eye(d + 1)
    for layer in range(L):
        aug = np.eye(d + 1)
        aug[:d, :d] += alpha(L) * a[layer].T @ w[layer] / N
        aug[:d, d] = alpha(L) * a[layer].T @ b[layer] / N
        prod = aug @ prod
    exact = x @ prod[:d, :d].T + prod[:d, d]
    np.testing.assert_allclose(net(x), exact, rtol=1e-12, atol=1e-12)


def test_residual_scale_is_carried_by_every_copy(rng):
    net = random_net(L=4)
    assert net.residual_scale == "1/L" and net.residual_divisor == 4  # the default
    for scale in ("1/sqrt(L)", "1"):
        s = MeanFieldResNet.from_arrays(*(p.numpy() for p in net.parameters()), "tanh",
                                        net.readout.numpy(), residual_scale=scale)
        for copy in (s.clone(), s.to(dtype=torch.float32), s.to(dtype=torch.float64)):
            assert copy.residual_scale == scale
        x = rng.normal(size=(5, 4))
        np.testing.assert_array_equal(s.clone()(x), s(x))
        assert not np.allclose(s(x), net(x))  # the scale changes the function


def test_default_residual_scale_is_bit_identical_to_the_explicit_one(rng):
    net = random_net(L=5, N=7)
    explicit = MeanFieldResNet(*net.parameters(), net.act, net.readout, residual_scale="1/L")
    x = rng.normal(size=(9, 4))
    np.testing.assert_array_equal(explicit(x), net(x))


def test_unknown_residual_scale_raises():
    with pytest.raises(ValueError, match="residual_scale"):
        random_net().from_arrays(np.zeros((2, 3, 4)), np.zeros((2, 3, 4)), np.zeros((2, 3)),
                                 residual_scale="1/L^2")

"""Width and depth limits: quadrature against independent integrals, and the rates."""

import numpy as np
import pytest
import scipy.integrate
import scipy.special
import torch

from gowide.stats import mean_interval
from meanfield import GaussianParticleLaw, MeanFieldResNet, WidthLimit, solve_depth_limit
from meanfield.experiments import LimitsConfig, depth_rate, width_at_init
from meanfield.limits import gaussian_expectations, linear_ode_solution

# Independent numpy definitions of σ and σ' (not the package's torch ones).
_NUMPY_ACTS = {
    "tanh": (np.tanh, lambda u: 1 - np.tanh(u) ** 2),
    "relu": (lambda u: max(u, 0.0), lambda u: float(u > 0)),
    "gelu": (lambda u: u * 0.5 * (1 + scipy.special.erf(u / np.sqrt(2))),
             lambda u: 0.5 * (1 + scipy.special.erf(u / np.sqrt(2)))
             + u * np.exp(-u * u / 2) / np.sqrt(2 * np.pi)),
    "identity": (lambda u: u, lambda u: 1.0),
}


@pytest.mark.parametrize("activation", sorted(_NUMPY_ACTS))
@pytest.mark.parametrize("mean,std", [(0.3, 0.5), (1.0, 3.0), (-2.0, 8.0)])
def test_gaussian_expectations_match_adaptive_quadrature(activation, mean, std):
    e_sigma, e_prime = gaussian_expectations(
        activation, torch.tensor([mean], dtype=torch.float64),
        torch.tensor([std], dtype=torch.float64)
    )

    def expect(h):
        def integrand(z):
            return h(mean + std * z) * np.exp(-z * z / 2) / np.sqrt(2 * np.pi)

        # split at the kink of relu / the centre of tanh, where the integrand is sharpest
        z0 = -mean / std
        left = scipy.integrate.quad(integrand, -np.inf, z0, epsabs=1e-13, limit=400)[0]
        return left + scipy.integrate.quad(integrand, z0, np.inf, epsabs=1e-13, limit=400)[0]

    fn, prime = _NUMPY_ACTS[activation]
    assert float(e_sigma) == pytest.approx(expect(fn), abs=1e-9)
    assert float(e_prime) == pytest.approx(expect(prime), abs=1e-9)


def test_width_limit_block_matches_a_huge_particle_average():
    law = GaussianParticleLaw.random(3, scale=1.5, amplitude=1.0, seed=3)
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.normal(size=(20, 3)))
    n = 400_000
    a, w, b = law.sample_family(n, rng).at(0.4)
    mc = MeanFieldResNet.from_arrays(a[None], w[None], b[None], "tanh").block(0, x)
    exact = WidthLimit(law, "tanh").block(0.4, x)
    # Monte Carlo standard error is about (per-particle std)/sqrt(n) ≈ 2/630
    np.testing.assert_allclose(mc.numpy(), exact.numpy(), atol=0.02)


def test_ode_solver_matches_linear_closed_form():
    rng = np.random.default_rng(1)
    a, w, b = rng.normal(size=(12, 3)), rng.normal(size=(12, 3)) / np.sqrt(3), rng.normal(size=12)
    x0 = rng.normal(size=(5, 3))
    net = MeanFieldResNet.from_arrays(a[None], w[None], b[None], "identity")
    solved = solve_depth_limit(lambda t, x: net.block(0, x), x0)
    np.testing.assert_allclose(solved, linear_ode_solution(a, w, b, x0), rtol=1e-8, atol=1e-9)


def _rate_config(**kw):
    base = dict(widths=(16, 32, 64, 128, 256, 512), draws=8, n_points=128, width_depth=4,
                depths=(4, 8, 16, 32, 64, 128), family_width=24)
    base.update(kw)
    return LimitsConfig(**base)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_width_rate_at_initialisation_is_minus_one(activation):
    cfg = _rate_config(activation=activation, draws=24)
    slopes = [width_at_init(cfg, seed)["slope"] for seed in range(6)]
    mean, lo, hi = mean_interval(slopes)
    assert abs(mean + 1.0) < 0.1, slopes
    assert hi - lo < 0.3, slopes


def test_depth_rate_is_minus_one_for_tanh():
    cfg = _rate_config(activation="tanh")
    runs = [depth_rate(cfg, seed) for seed in range(4)]
    mean, lo, hi = mean_interval([r["slope"] for r in runs])
    assert abs(mean + 1.0) < 0.05, [r["slope"] for r in runs]
    # halving the step halves the error: ratio of consecutive errors 0.5 ± 0.05 at large L
    for r in runs:
        assert r["rms"][-1] / r["rms"][-2] == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_depth_error_halves_with_the_step_for_unbounded_activations(activation):
    """With relu and gelu the states grow larger and the O(1/L²) term of the Euler error is
    bigger, so slopes over small L are shallower than -1; the local ratio still tends to 1/2."""
    # The reference ODE solution to rtol 1e-8 (not 1e-10): at relu's kinks the tighter tolerance
    # costs seconds per seed. On each seed here the two solutions differ (RMS) by at most
    # 1.2e-4 times the Euler error at L = 256, so no ratio moves by more than about 1e-4: far
    # inside the tolerance of 0.05 and the slack of 1e-3 below.
    cfg = _rate_config(activation=activation, depths=(16, 32, 64, 128, 256), ode_rtol=1e-8,
                       ode_atol=1e-10)
    for seed in range(3):
        rms = np.asarray(depth_rate(cfg, seed)["rms"])
        ratios = rms[1:] / rms[:-1]
        assert ratios[-1] == pytest.approx(0.5, abs=0.05), ratios
        assert np.all(np.abs(ratios - 0.5)[1:] <= np.abs(ratios - 0.5)[:-1] + 1e-3), ratios

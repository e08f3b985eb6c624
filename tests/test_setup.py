"""compare and clouds build their teacher through one set-up: the same net, bit for bit."""

import numpy as np
import torch

from meanfield import clouds
from meanfield.compare import CompareConfig, _SeedCache
from meanfield.setup import initial_law, stream

SHARED = dict(n_train=64, n_test=64, wide_width=32, wide_steps=5, dim=4)


def test_compare_and_clouds_train_the_same_teacher():
    ccfg = CompareConfig.quick(**SHARED, widths=(4, 8), depths=(2, 4), width_depth=4,
                               depth_width=4, bp_reference_width=32, seeds=(3,))
    kcfg = clouds.CloudsConfig.quick(**SHARED, depth=4, thin_width=4, layers=(0, 3), seed=3)
    from_compare, _ = _SeedCache(ccfg, 3).wide(4)
    from_clouds, _ = clouds.teacher(kcfg)
    for p, q in zip(from_compare.parameters(), from_clouds.parameters(), strict=True):
        assert torch.equal(p, q)
    # and a different seed gives a different teacher (the test can fail)
    other, _ = clouds.teacher(clouds.CloudsConfig.quick(**SHARED, depth=4, thin_width=4,
                                                        layers=(0, 3), seed=4))
    assert not torch.equal(other.a, from_clouds.a)


def test_streams_are_distinct_per_role():
    draws = {name: stream(0, 8, name).normal() for name in ("wide", "reference", "scratch")}
    assert len(set(draws.values())) == 3


def test_centred_law_keeps_the_spreads_and_drops_the_means():
    cfg = CompareConfig.quick()
    shared, centred = initial_law(cfg, 0, "shared"), initial_law(cfg, 0, "centred")
    assert (shared.s_w, shared.s_b, shared.s_a) == (centred.s_w, centred.s_b, centred.s_a)
    assert np.abs(shared.mu_w).sum() > 0 and np.abs(centred.mu_w).sum() == 0
    assert np.abs(centred.M).sum() == 0 and np.abs(centred.m_a).sum() == 0


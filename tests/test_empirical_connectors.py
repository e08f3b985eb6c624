"""Stage 2's loss and linear pairs: zero loss for a perfect student, exact merge."""

import copy

import pytest
import torch
from empirical_helpers import (
    TEST_CACHE,
    bert_batch,
    bert_forward,
    bert_pair,
    fast_config,
    randomize_norms,
    resnet_forward,
    resnet_pair,
)

from empirical.connectors import Connectors, LinearPair, merge_error, remove_pairs
from empirical.imitation import imitate
from empirical.imitation_loss import imitation_forward, imitation_loss
from empirical.run import Run
from empirical.runtime import Runtime
from empirical.tasks import make_task
from empirical.transfer import transfer_head


def count(model):
    return sum(p.numel() for p in model.parameters())


CPU = Runtime(torch.device("cpu"), progress=False)


class _Task:
    def __init__(self, forward):
        self.forward = forward


def _pair(thin, wide, forward, names) -> Run:
    """A run holding ``thin`` and ``wide`` with linear pairs on ``names``, for one pass."""
    return Run(_Task(forward), CPU, models={"thin": thin, "wide": wide},
               connectors=Connectors(thin, wide, names))


@pytest.mark.parametrize("inputs", ["thin", "teacher"])
@pytest.mark.parametrize("family", ["resnet", "bert"])
def test_imitation_loss_is_zero_when_student_equals_teacher(family, inputs):
    if family == "resnet":
        _, wide = resnet_pair()
        randomize_norms(wide)
        batch, forward = {"x": torch.randn(4, 1, 8, 8)}, resnet_forward
    else:
        _, wide = bert_pair()
        batch, forward = bert_batch(), bert_forward
    student = copy.deepcopy(wide)
    wide.eval()
    student.eval()
    names = wide.block_names()
    run = _pair(student, wide, forward, names)
    assert len(run.connectors.pairs) == 0
    mapped, z = imitation_forward(run, batch, names, inputs)
    for name in names:
        for normalize in (False, True):
            loss = imitation_loss(mapped[name], z[name], wide.feature_dim, normalize)
            assert loss.item() == 0.0


def test_loss_is_positive_for_a_different_student():
    thin, wide = resnet_pair()
    randomize_norms(wide)
    thin.eval()
    wide.eval()
    names = wide.block_names()
    mapped, z = imitation_forward(_pair(thin, wide, resnet_forward, names),
                                  {"x": torch.randn(4, 1, 8, 8)}, names, "thin")
    assert all(imitation_loss(mapped[n], z[n], 1).item() > 1e-4 for n in names[1:])


def test_pair_round_trip_is_the_identity_for_any_trained_map():
    pair = LinearPair(5, 12, feature_dim=-1)
    with torch.no_grad():
        pair.up.copy_(torch.randn(12, 5) * 3.0)  # far from its orthonormal start
    h = torch.randn(7, 3, 5)
    torch.testing.assert_close(pair.round_trip(h), h, rtol=0, atol=1e-4)
    assert pair.to_wide(h).shape == (7, 3, 12) and pair.to_thin(pair.to_wide(h)).shape == h.shape


def _trained_looking_pairs(connectors: Connectors, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for pair in connectors.pairs.values():
            pair.up.copy_(torch.randn(pair.up.shape, generator=g) * 2.0)


@pytest.mark.parametrize("family", ["resnet", "bert"])
def test_merge_is_exact_and_leaves_the_plain_thin_architecture(family, monkeypatch):
    if family == "resnet":
        thin, wide = resnet_pair(widen_interfaces=True)
        randomize_norms(thin)
        batch, forward = {"x": torch.randn(8, 1, 8, 8)}, resnet_forward
        fresh, _ = resnet_pair(widen_interfaces=True, seed=5)
    else:
        thin, wide = bert_pair()
        batch, forward = bert_batch(), bert_forward
        fresh, _ = bert_pair(seed=5)
    connectors = Connectors(thin, wide, thin.block_names())
    assert len(connectors.pairs) == len(thin.block_names())  # every interface differs
    _trained_looking_pairs(connectors)
    thin.eval()
    with connectors.insert(thin):
        before = forward(thin, batch)
    # The pairs are really in the path while inserted: a Q that is not P's inverse changes
    # the output, and merge_error sees it. So the agreement checked below can fail.
    with monkeypatch.context() as mp:
        mp.setattr(LinearPair, "down_matrix", lambda pair: 0.5 * pair.up.T)
        with connectors.insert(thin):
            broken = forward(thin, batch)
        assert (broken - before).abs().max().item() > 1e-2
        assert merge_error(thin, connectors, forward, batch) > 1e-2
    # Q·P is the identity of the thin space for these non-orthonormal P, on random inputs too.
    for pair in connectors.pairs.values():
        h = torch.randn(3, pair.up.shape[1], 5, 5).movedim(1, pair.feature_dim)
        torch.testing.assert_close(pair.round_trip(h), h, rtol=1e-4, atol=1e-4)
    err = merge_error(thin, connectors, forward, batch)
    merged = remove_pairs(thin, connectors)
    after = forward(merged, batch)
    assert err < 1e-4
    assert (before - after).abs().max().item() < 1e-4
    assert before.abs().max().item() > 1e-2  # the comparison is not between zeros
    assert count(merged) == count(fresh)
    assert len(connectors.pairs) == 0
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in merged.modules())


def test_stage2_on_bert_ends_with_the_thin_architecture(monkeypatch):
    monkeypatch.setenv("GOWIDE_CACHE", TEST_CACHE)
    cfg = fast_config("bert", extra=["imitate.steps_per_block=3"])
    task = make_task(cfg)
    torch.manual_seed(0)
    thin, wide = task.build("thin"), task.build("wide")
    n_thin = count(thin)
    run = Run(task, CPU, models={"thin": thin, "wide": wide})
    record = imitate(run, cfg.imitate, 0)
    assert record["linear_pairs"] == len(thin.block_names())
    assert record["merge_max_abs_diff"] < 1e-4
    assert count(thin) == n_thin == count(task.build("thin"))
    assert set(record["block_errors"]["thin"]) == set(thin.block_names())
    assert [p["phase"] for p in record["phases"]] == thin.block_names()
    assert run.ledger.total() > 0


def test_head_transfer_merges_the_last_pair_exactly():
    thin, wide = resnet_pair(widen_interfaces=True)
    connectors = Connectors(thin, wide, thin.block_names())
    _trained_looking_pairs(connectors)
    assert transfer_head(thin, wide, connectors, "blocks.2") == "wide"
    pooled = torch.randn(5, thin.head.in_features)  # (B, c): pooled thin features
    expected = wide.head(connectors.to_wide("blocks.2", pooled))
    torch.testing.assert_close(thin.head(pooled), expected, rtol=1e-5, atol=1e-5)
    b_thin, b_wide = bert_pair()
    assert transfer_head(b_thin, b_wide, Connectors(b_thin, b_wide, b_thin.block_names()),
                         "layers.1") == "own"


@pytest.mark.parametrize("variant", [
    dict(schedule="progressive", inputs="thin", lower_blocks="frozen"),
    dict(schedule="progressive", inputs="teacher", lower_blocks="trainable", normalize=True),
    dict(schedule="simultaneous", inputs="thin", steps=60),
    dict(schedule="simultaneous", inputs="teacher", steps=60, normalize=True),
])
def test_stage2_schedules_reduce_the_imitation_loss(variant):
    from dataclasses import replace

    cfg = fast_config("resnet", extra=["imitate.lr=0.01", "imitate.log_every=5",
                                       "model.widen_interfaces=true"])
    task = make_task(cfg)
    torch.manual_seed(0)
    thin, wide = task.build("thin"), task.build("wide")
    randomize_norms(wide)
    icfg = replace(cfg.imitate, steps_per_block=20, **variant)
    record = imitate(Run(task, CPU, models={"thin": thin, "wide": wide}), icfg, 0)
    ratios = [p["loss_curve"][-1]["loss"] / p["loss_curve"][0]["loss"] for p in record["phases"]]
    assert sum(ratios) / len(ratios) < 0.9, ratios
    assert record["linear_pairs"] == 4 and record["merge_max_abs_diff"] < 1e-4
    assert count(thin) == count(task.build("thin"))

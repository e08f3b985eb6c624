"""The mean-field warm start: a rescaled seeded subsample of the wide model's neurons."""

import copy

import pytest
import torch
from empirical_helpers import bert_batch, bert_forward, bert_pair, fast_config, randomize_norms

from empirical.capture import FeatureCapture
from empirical.flops import ComputeLedger
from empirical.models.resnet import ResNet, ResNetConfig
from empirical.runtime import Runtime
from empirical.subsample import subsample_init
from empirical.tasks import make_task
from empirical.train import train_supervised


@pytest.mark.parametrize("rescale", ["sqrt", "linear"])
def test_subsample_at_equal_width_copies_the_model(rescale):
    _, wide = bert_pair()
    thin = copy.deepcopy(wide)
    for p in thin.parameters():
        torch.nn.init.normal_(p)
    subsample_init(thin, wide, seed=0, rescale=rescale)
    thin.eval()
    wide.eval()
    b = bert_batch()
    torch.testing.assert_close(bert_forward(thin, b), bert_forward(wide, b), rtol=0, atol=1e-5)


def _branch_scale_ratios(rescale: str, seeds: int = 10):
    """std(thin conv2 output) / std(wide conv2 output) per block, averaged over seeds: thin
    keeps 16 of the wide net's 64 inner channels."""
    torch.manual_seed(0)
    kw = dict(blocks_per_stage=1, base_width=8)
    wide = ResNet(ResNetConfig(width_mult=8.0, **kw))
    randomize_norms(wide)
    wide.eval()
    names = [f"blocks.{i}.conv2" for i in range(3)]
    x = torch.randn(64, 1, 8, 8)
    ratios = []
    for seed in range(seeds):
        thin = ResNet(ResNetConfig(width_mult=2.0, **kw))
        subsample_init(thin, wide, seed=seed, rescale=rescale)
        thin.eval()
        with FeatureCapture(thin, names, detach=True) as ct, \
                FeatureCapture(wide, names, detach=True) as cw:
            thin(x)
            wide(x)
        ratios.append([float(ct.outputs[n].std() / cw.outputs[n].std()) for n in names])
    return torch.tensor(ratios).mean(0)


def test_sqrt_rule_keeps_the_scale_of_each_residual_branch():
    # Random standard-parametrised weights: the summed terms are uncorrelated, so the sqrt
    # rule keeps the branch's scale (measured 1.30, 1.16, 1.05; one seed scatters by ~0.3),
    # while the mean-field linear rule inflates it by about sqrt(64/16) = 2 or more.
    sqrt_rule = _branch_scale_ratios("sqrt")
    linear_rule = _branch_scale_ratios("linear")
    assert torch.all((sqrt_rule > 0.75) & (sqrt_rule < 1.45)), sqrt_rule
    assert torch.all(linear_rule > 1.8), linear_rule


def test_subsample_is_seeded():
    _, wide = bert_pair(wide_mult=3.0)
    a, _ = bert_pair()
    b, _ = bert_pair(seed=9)
    subsample_init(a, wide, seed=4)
    subsample_init(b, wide, seed=4)
    for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y)


def _block_errors(thin, wide, x):
    names = thin.block_names()
    with FeatureCapture(thin, names, detach=True) as ct, \
            FeatureCapture(wide, names, detach=True) as cw:
        logits = thin(x)
        wide(x)
    errors = {n: float(((ct.outputs[n] - cw.outputs[n]) ** 2).sum()
                       / ((cw.outputs[n] - cw.outputs[n].mean()) ** 2).sum()) for n in names}
    return errors, logits


def test_subsample_of_a_trained_wide_resnet_is_a_warm_start():
    """Before any training of its own, the subsampled thin net tracks the trained wide net
    block by block far better than a random thin net, and classifies well above chance."""
    cfg = fast_config("resnet", extra=["wide.steps=150", "model.base_width=8", "wide_mult=4.0"])
    task = make_task(cfg)
    runtime = Runtime(torch.device("cpu"), progress=False)
    torch.manual_seed(0)
    wide = task.build("wide")
    train_supervised(wide, task, cfg.wide, runtime, "wide", 1, ComputeLedger())
    wide.eval()
    x, y = task.data.x_val, task.data.y_val
    random_thin = task.build("thin").eval()
    thin = task.build("thin")
    subsample_init(thin, wide, seed=0)
    thin.eval()
    sub, logits = _block_errors(thin, wide, x)
    rnd, _ = _block_errors(random_thin, wide, x)
    assert sub["stem"] < 1e-10  # interfaces are not widened: the stem is copied
    for name in thin.block_names()[1:]:
        assert sub[name] < 0.5 * rnd[name], (name, sub[name], rnd[name])
    accuracy = float((logits.argmax(-1) == y).float().mean())
    assert accuracy > 0.5, accuracy  # chance is 0.1

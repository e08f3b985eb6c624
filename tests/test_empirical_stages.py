"""Stage 2 as the paper intends: the per-feature relative error, pre- or post-activation
targets, the per-block warm-up and stopping rule, and BatchNorm recalibration."""

import copy
from dataclasses import replace

import pytest
import torch
from empirical_helpers import fast_config, randomize_norms, resnet_forward, resnet_pair

from empirical.capture import FeatureCapture
from empirical.config import ImitationConfig
from empirical.connectors import Connectors
from empirical.imitation import StoppingRule, imitate
from empirical.imitation_loss import imitation_forward, imitation_loss, relative_error
from empirical.run import Run
from empirical.runtime import Runtime
from empirical.tasks import make_task
from empirical.train import make_optimizer
from empirical.transfer import recalibrate_batchnorm

CPU = Runtime(torch.device("cpu"), progress=False)


class _Task:
    def __init__(self, forward):
        self.forward = forward


def test_relative_error_centres_each_feature_on_its_own_mean():
    g = torch.Generator().manual_seed(0)
    # four features with very different means: a global mean would count their spread
    z = torch.randn(16, 4, 5, 5, generator=g) + torch.tensor([0.0, 10.0, -5.0, 3.0])[:, None, None]
    per_feature_mean = z.mean(dim=(0, 2, 3), keepdim=True).expand_as(z)
    assert relative_error(per_feature_mean, z, feature_dim=1) == pytest.approx(1.0, rel=1e-5)
    assert relative_error(z, z, feature_dim=1) == 0.0
    # adding the same per-feature constant to student and target changes nothing
    shift = torch.randn(1, 4, 1, 1, generator=g) * 100
    s = z + 0.1 * torch.randn(z.shape, generator=g)
    assert relative_error(s + shift, z + shift, 1) == pytest.approx(relative_error(s, z, 1),
                                                                   rel=1e-4)
    # token sequences (B, T, H), features last
    t = torch.randn(3, 7, 6, generator=g) + torch.arange(6.0) * 4
    mean_t = t.mean(dim=(0, 1), keepdim=True).expand_as(t)
    assert relative_error(mean_t, t, feature_dim=-1) == pytest.approx(1.0, rel=1e-5)


def test_pre_activation_capture_is_the_input_of_the_final_relu():
    _, wide = resnet_pair()
    randomize_norms(wide)
    wide.eval()
    x = torch.randn(4, 1, 8, 8)
    names = wide.block_names()
    with FeatureCapture(wide, names) as post, FeatureCapture(wide, names,
                                                             pre_activation=True) as pre:
        wide(x)
    block = wide.blocks[1]  # stride 2, with a projection shortcut
    h_in = post.outputs["blocks.0"]
    inner = torch.relu(block.norm1(block.conv1(h_in)))
    expected = block.norm2(block.conv2(inner)) + block.shortcut(h_in)
    torch.testing.assert_close(pre.outputs["blocks.1"], expected)
    for n in names:
        torch.testing.assert_close(torch.relu(pre.outputs[n]), post.outputs[n])
        assert (pre.outputs[n] < 0).any(), n  # the two targets differ


@pytest.mark.parametrize("inputs", ["thin", "teacher"])
def test_pre_activation_imitation_loss_is_zero_when_student_equals_teacher(inputs):
    _, wide = resnet_pair(widen_interfaces=True)
    randomize_norms(wide)
    student = copy.deepcopy(wide)
    wide.eval()
    student.eval()
    names = wide.block_names()
    run = Run(_Task(resnet_forward), CPU, models={"thin": student, "wide": wide},
              connectors=Connectors(student, wide, names))
    mapped, z = imitation_forward(run, {"x": torch.randn(4, 1, 8, 8)}, names, inputs,
                                  target="pre")
    for n in names:
        assert imitation_loss(mapped[n], z[n], wide.feature_dim).item() == 0.0
        assert (z[n] < 0).any()  # pre-activation values, not the ReLU's output


def _tied_bert(seed: int):
    from empirical.models.bert import Bert, BertConfig

    torch.manual_seed(seed)
    return Bert(BertConfig(vocab_size=50, max_len=12, layers=2, hidden=16, ffn=32, heads=2,
                           norm="pre", tie_embeddings=True)).eval()


def test_bert_pre_target_is_the_embedding_sum_before_its_norm():
    from empirical_helpers import bert_batch, bert_forward

    model = _tied_bert(0)
    batch = bert_batch()
    names = model.block_names()
    with FeatureCapture(model, names) as post, FeatureCapture(model, names,
                                                              pre_activation=True) as pre:
        bert_forward(model, batch)
    ids = batch["input_ids"]
    emb = model.embeddings
    torch.testing.assert_close(pre.outputs["embeddings"],
                               emb.token(ids) + emb.position(torch.arange(ids.shape[1])))
    torch.testing.assert_close(emb.norm(pre.outputs["embeddings"]), post.outputs["embeddings"])
    for n in names[1:]:  # encoder layers: no final activation, the same output either way
        assert torch.equal(pre.outputs[n], post.outputs[n])


def test_only_the_pre_target_sees_token_embeddings_moved_along_the_ones_direction():
    """Each token's embedding moved along the all-ones direction: the layer norm removes it,
    so every post-norm block output is unchanged, but the tied output layer reads the raw
    embeddings and the masked-LM distribution changes; the pre target sees the difference."""
    from empirical_helpers import bert_batch, bert_forward

    teacher = _tied_bert(0)
    with torch.no_grad():  # a trained head's norm has a bias: its output is not centred
        teacher.mlm_head[2].bias.normal_()
    student = copy.deepcopy(teacher)
    with torch.no_grad():
        student.embeddings.token.weight += torch.randn(50, 1) * torch.ones(1, 16)
    names = teacher.block_names()
    run = Run(_Task(bert_forward), CPU, models={"thin": student, "wide": teacher},
              connectors=Connectors(student, teacher, names))
    batch = bert_batch()
    for target, moved in (("post", False), ("pre", True)):
        with torch.no_grad():
            mapped, z = imitation_forward(run, batch, names, "thin", target=target)
        errors = [relative_error(mapped[n], z[n], -1) for n in names]
        assert (errors[0] > 0.1) == moved and max(errors[1:]) < 1e-5, (target, errors)
        # under "pre" the layer norm's output is imitated too (its gain and bias learn)
        assert set(mapped) == set(z) == set(names) | ({"embeddings:out"} if moved else set())
    assert relative_error(mapped["embeddings:out"], z["embeddings:out"], -1) < 1e-5
    with torch.no_grad():
        kl = torch.nn.functional.kl_div(bert_forward(student, batch).log_softmax(-1),
                                        bert_forward(teacher, batch).log_softmax(-1),
                                        log_target=True, reduction="batchmean")
    assert kl > 0.01


def test_stopping_rule_stops_at_the_target_or_on_a_plateau():
    rule = StoppingRule(ImitationConfig(check_every=5, stop_error=0.05, stop_patience=3))
    assert [rule.check(5 * i, e) for i, e in enumerate([0.5, 0.2, 0.1, 0.04], 1)] == [
        False, False, False, True]
    assert rule.record(20, 100)["stopped"] == "target"
    # no longer falling by more than 1% of the best for 3 checks in a row
    rule = StoppingRule(ImitationConfig(check_every=5, stop_patience=3, stop_min_delta=0.01))
    errors = [0.5, 0.3, 0.299, 0.31, 0.2995]
    assert [rule.check(5 * i, e) for i, e in enumerate(errors, 1)] == [
        False, False, False, False, True]
    record = rule.record(25, 100)
    assert record["stopped"] == "plateau" and len(record["checks"]) == 5
    # no rule: never stops, the cap ends the block
    rule = StoppingRule(ImitationConfig(check_every=5))
    assert not any(rule.check(i, 1.0 / i) for i in range(1, 10))
    assert rule.record(9, 9)["stopped"] == "cap"


def _stage2(extra, **changes):
    cfg = fast_config("resnet", extra=["imitate.lr=0.01"] + extra)
    task = make_task(cfg)
    torch.manual_seed(0)
    thin, wide = task.build("thin"), task.build("wide")
    randomize_norms(wide)
    run = Run(task, CPU, models={"thin": thin, "wide": wide})
    record = imitate(run, replace(cfg.imitate, **changes), 0)
    return record, run.ledger, thin


def test_a_block_stops_at_its_target_and_only_its_steps_are_counted():
    # a target every block meets at once: each block stops at its first check
    record, ledger, _ = _stage2([], steps_per_block=40, check_every=3, stop_error=1e6)
    for phase, entry in zip(record["phases"], ledger.entries, strict=True):
        assert phase["steps"] == 3 and phase["steps_cap"] == 40 and phase["stopped"] == "target"
        assert entry["steps"] == 3 and entry["flops"] == 3 * entry["flops_per_step"]
    # an unreachable target runs every block to its cap, the errors recorded on the way
    record, ledger, _ = _stage2([], steps_per_block=12, check_every=4, stop_error=1e-9)
    for phase in record["phases"]:
        assert phase["stopped"] == "cap" and [c["step"] for c in phase["checks"]] == [4, 8, 12]
    assert all(e["steps"] == 12 for e in ledger.entries)


def test_block_errors_are_reported_per_block_for_the_chosen_target():
    record, _, thin = _stage2([], steps_per_block=6, target="pre")
    names = thin.block_names()
    assert record["target"] == "pre"
    assert set(record["block_errors"]["thin"]) == set(names)
    assert set(record["post_activation_block_errors"]["thin"]) == set(names)
    assert all(v > 0 for v in record["block_errors"]["thin"].values())
    record, _, _ = _stage2([], steps_per_block=6, target="post")
    assert "post_activation_block_errors" not in record


def test_warmup_then_cosine():
    p = torch.nn.Parameter(torch.zeros(1))
    opt, sched = make_optimizer([p], lr=1.0, weight_decay=0.0, steps=10, warmup=0.2)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:3] == pytest.approx([0.5, 1.0, 1.0])  # 2 warm-up steps, then cosine from 1
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:], strict=False)) and lrs[-1] > 0


def test_batchnorm_recalibration_is_the_average_over_the_batches():
    cfg = fast_config("resnet")
    task = make_task(cfg)
    torch.manual_seed(0)
    model = task.build("thin")
    randomize_norms(model)  # stale statistics
    model.blocks[0].eval()  # a frozen block in stage 2: its mode must survive
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k
               and "num_batches" not in k}
    assert recalibrate_batchnorm(model, task, CPU, batches=3, batch_size=16, seed=7) == 3
    # the stem's statistics: the plain mean over the 3 batches of the batch statistics
    gen = torch.Generator().manual_seed(7)
    data = task.train_batches(16, gen)
    means, variances = [], []
    for _ in range(3):
        with torch.no_grad():
            h = model.stem.conv(next(data)["x"])  # (B, C, H, W)
        means.append(h.mean(dim=(0, 2, 3)))
        variances.append(h.var(dim=(0, 2, 3), unbiased=True))
    torch.testing.assert_close(model.stem.norm.running_mean, torch.stack(means).mean(0))
    torch.testing.assert_close(model.stem.norm.running_var, torch.stack(variances).mean(0))
    assert model.stem.norm.momentum == 0.1  # restored
    assert model.training and not model.blocks[0].training
    for k, v in weights.items():
        assert torch.equal(model.state_dict()[k], v), k


def test_mlm_head_from_the_teacher_is_exact_at_equal_width():
    from empirical_helpers import bert_pair

    from empirical.transfer import transfer_mlm_head

    _, wide = bert_pair()
    thin, _ = bert_pair(seed=1, thin_mult=2.0)  # the wide architecture, other weights
    assert transfer_mlm_head(thin, wide, Connectors(thin, wide, thin.block_names()),
                             "layers.1", seed=0) == "wide-subsampled"
    for a, b in zip(thin.mlm_head.parameters(), wide.mlm_head.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("rescale,factor", [("sqrt", 2 ** 0.5), ("linear", 2.0)])
def test_mlm_head_from_a_wider_teacher_reads_the_mapped_input(rescale, factor):
    from empirical_helpers import bert_pair

    from empirical.transfer import transfer_mlm_head

    thin, wide = bert_pair()  # hidden 16 against 32
    connectors = Connectors(thin, wide, thin.block_names(), seed=0)
    assert transfer_mlm_head(thin, wide, connectors, "layers.1", 0, rescale) == "wide-subsampled"
    h = torch.randn(5, 16)
    z = connectors.to_wide("layers.1", h)  # (5, 32) = P h
    wide_hidden = wide.mlm_head[0](z)  # (5, 32)
    thin_hidden = thin.mlm_head[0](h)  # (5, 16): a subset of the wide hidden units
    picked = [int((wide_hidden[0] - v).abs().argmin()) for v in thin_hidden[0]]
    torch.testing.assert_close(thin_hidden, wide_hidden[:, picked], rtol=1e-5, atol=1e-5)
    assert len(set(picked)) == 16
    torch.testing.assert_close(thin.mlm_head[3].weight, wide.mlm_head[3].weight[:, picked]
                               * factor)
    assert torch.equal(thin.mlm_head[3].bias, wide.mlm_head[3].bias)


def _tied_bert_stage2(head_steps: int):
    cfg = fast_config("bert", extra=["model.tie_embeddings=true", 'model.norm="pre"',
                                     "imitate.lr=0.01", f"imitate.head_steps={head_steps}",
                                     "data.max_mlm_sequences=200"])
    task = make_task(cfg)
    torch.manual_seed(0)
    thin, wide = task.build("thin"), task.build("wide")
    run = Run(task, CPU, models={"thin": thin, "wide": wide})
    return run, cfg, imitate(run, cfg.imitate, 0)


def test_pre_target_trains_the_embeddings_norm_from_its_output():
    cfg = fast_config("bert", extra=["model.tie_embeddings=true", 'model.norm="pre"',
                                     "imitate.lr=0.01", 'imitate.target="pre"',
                                     "imitate.blocks=[\"embeddings\"]",
                                     "data.max_mlm_sequences=200"])
    task = make_task(cfg)
    torch.manual_seed(0)
    thin, wide = task.build("thin"), task.build("wide")
    with torch.no_grad():  # a trained teacher's norm is not the identity
        wide.embeddings.norm.weight.uniform_(0.5, 1.5)
        wide.embeddings.norm.bias.normal_(0, 0.5)
    norm = {k: v.clone() for k, v in thin.embeddings.norm.state_dict().items()}
    run = Run(task, CPU, models={"thin": thin, "wide": wide})
    record = imitate(run, cfg.imitate, 0)
    for k, v in thin.embeddings.norm.state_dict().items():
        assert not torch.equal(v, norm[k]), k
    assert set(record["post_activation_block_errors"]["thin"]) == {"embeddings"}


def test_a_tied_mlm_head_is_imitated_only_when_asked():
    run, _, record = _tied_bert_stage2(0)
    assert record["head"] == "own+wide-bias" and "head_imitation" not in record
    assert "head" not in [e["phase"] for e in run.ledger.entries]
    run, cfg, record = _tied_bert_stage2(5)
    assert record["head"] == "own+wide-bias+imitated"
    head = record["head_imitation"]
    assert head["steps"] == 5 and head["parameters"] > 0
    entry = run.ledger.entries[-1]
    assert entry["phase"] == "head" and entry["steps"] == 5 and entry["flops"] > 0
    assert all(p.requires_grad for p in run.thin.parameters()) and run.thin.training


def test_head_imitation_trains_the_head_alone_towards_the_wide_distribution():
    from empirical.head_imitation import head_parameters, imitate_mlm_head

    run, cfg, _ = _tied_bert_stage2(0)
    thin, wide, task = run.thin, run.wide, run.task
    trained = {id(p) for p in head_parameters(thin)}
    assert id(thin.embeddings.token.weight) not in trained  # the tied output weight
    assert thin.mlm_head[3].weight is thin.embeddings.token.weight
    before = {n: p.detach().clone() for n, p in thin.named_parameters()}
    batch = next(task.train_batches(64, torch.Generator().manual_seed(9)))

    def kl():
        thin.eval()
        with torch.no_grad():
            return float(task.kd_loss(task.forward(thin, batch), task.forward(wide, batch),
                                      batch, 1.0))

    start = kl()
    imitate_mlm_head(run, 60, 16, 0.01, 0.1, seed=1, stage="imitate", log_every=10)
    assert kl() < 0.8 * start
    for name, p in thin.named_parameters():
        moved = not torch.equal(p, before[name])
        assert moved == (id(p) in trained), name


@pytest.mark.slow  # a smoke test of a measurement script; `make slow-test` runs it
def test_bert_head_measurement_quick_mode(tmp_path, monkeypatch):
    import importlib.util
    import json
    from pathlib import Path

    from empirical_helpers import TEST_CACHE

    monkeypatch.setenv("GOWIDE_CACHE", TEST_CACHE)
    path = Path(__file__).parent.parent / "scripts" / "measure_bert_head.py"
    spec = importlib.util.spec_from_file_location("measure_bert_head", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--quick", "--seeds", "1", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "head.json").read_text())
    assert [rows[k]["head"] for k in ("own-0", "wide_sqrt-0", "wide_linear-0")] == [
        "own", "wide-subsampled", "wide-subsampled"]
    assert rows["wide_sqrt-0"]["mlm_loss"] != rows["wide_linear-0"]["mlm_loss"]
    assert rows["own-0"]["teacher_mlm_loss"] == rows["wide_linear-0"]["teacher_mlm_loss"]


def test_error_floor_is_the_variance_outside_the_top_components():
    from empirical.imitation_loss import error_floor

    g = torch.Generator().manual_seed(0)
    # independent features with variances 4, 2, 1, 0.5 (channels along dim 1): the best
    # 2-dimensional representation leaves (1 + 0.5) / 7.5 = 0.2 of the variance
    scales = torch.tensor([2.0, 2 ** 0.5, 1.0, 0.5 ** 0.5])
    z = torch.randn(4000, 4, 3, 3, generator=g) * scales[:, None, None] + 5.0
    assert error_floor(z, 2, feature_dim=1) == pytest.approx(0.2, abs=0.01)
    assert error_floor(z, 4, feature_dim=1) == 0.0
    assert error_floor(z, 3, feature_dim=1) == pytest.approx(0.5 / 7.5, abs=0.01)
    # the principal-component reconstruction reaches it exactly
    flat = z.movedim(1, -1).reshape(-1, 4)
    centred = flat - flat.mean(0)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    recon = centred @ vh[:2].T @ vh[:2] + flat.mean(0)
    s = recon.reshape(4000, 3, 3, 4).movedim(-1, 1)
    assert relative_error(s, z, 1) == pytest.approx(error_floor(z, 2, 1), rel=1e-3)


@pytest.mark.parametrize("target", ["post", "pre"])
def test_no_block_beats_the_floor_of_its_width(target):
    record, _, thin = _stage2(["model.widen_interfaces=true"], steps_per_block=10,
                              target=target)
    floors = record["block_error_floors"]
    assert set(floors) == set(thin.block_names())  # every interface is narrower
    for b, floor in floors.items():
        assert 0.0 < floor < 1.0
        assert record["block_errors"]["thin"][b] >= floor - 1e-5, b

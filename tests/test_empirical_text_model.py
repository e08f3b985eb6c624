"""The text family's options: pre-LN, tied embeddings, masked-only logits, the unigram
baseline, the linear probe, and stage 2 with them. Toy data only (no tokenizer)."""

import math

import pytest
import torch
import torch.nn.functional as F
from empirical_helpers import fast_config

from empirical.claims import summarise
from empirical.connectors import Connectors, merge_error, remove_pairs
from empirical.data.text import IGNORE, PAD, TextData
from empirical.flops import ComputeLedger
from empirical.imitation import imitate
from empirical.models.bert import Bert, BertConfig
from empirical.presets import build_config
from empirical.probe import fit_logistic, linear_probe
from empirical.run import Run
from empirical.runtime import Runtime
from empirical.subsample import subsample_init
from empirical.tasks import BertTask, kd_kl
from gowide.errors import UsageError
from gowide.report.empirical import compare_markdown

CPU = Runtime(device=torch.device("cpu"), progress=False)
V, T = 40, 16


def toy_data(n_train=64, n_val=16, seed=0) -> TextData:
    g = torch.Generator().manual_seed(seed)

    def seqs(n):
        s = torch.randint(5, V, (n, T), generator=g)
        s[:, 0] = 2  # [CLS]
        return s

    # classification: label 1 snippets use tokens 5..22, label 0 tokens 23..39; 3:1 imbalance
    y = (torch.rand(200, generator=g) < 0.25).long()
    low = torch.randint(5, 23, (200, T), generator=g)
    high = torch.randint(23, V, (200, T), generator=g)
    ids = torch.where(y[:, None] == 1, low, high)
    ids[:, 0] = 2
    ids[::3, T // 2:] = PAD
    return TextData(vocab_size=V, max_len=T, mlm_train=seqs(n_train), mlm_val=seqs(n_val),
                    cls_ids_train=ids[:120], cls_y_train=y[:120], cls_ids_val=ids[120:160],
                    cls_y_val=y[120:160], cls_ids_test=ids[160:], cls_y_test=y[160:])


def toy_task(extra=()) -> BertTask:
    cfg = fast_config("bert", extra=["model.layers=2", "model.hidden=16", "model.ffn=32",
                                     "imitate.steps_per_block=2", "imitate.batch_size=16",
                                     *extra])
    return BertTask(cfg, data=toy_data())


@pytest.mark.parametrize("norm,tie", [("pre", True), ("pre", False), ("post", True)])
def test_pre_ln_and_tied_forward_shapes(norm, tie):
    torch.manual_seed(0)
    model = Bert(BertConfig(vocab_size=V, max_len=T, layers=2, hidden=16, ffn=32, heads=2,
                            norm=norm, tie_embeddings=tie))
    assert model.block_names() == ["embeddings", "layers.0", "layers.1"]
    assert (model.final_norm is not None) == (norm == "pre")
    assert (model.mlm_head[3].weight is model.embeddings.token.weight) == tie
    n_untied = sum(p.numel() for p in Bert(BertConfig(
        vocab_size=V, max_len=T, layers=2, hidden=16, ffn=32, heads=2, norm=norm)).parameters())
    n = sum(p.numel() for p in model.parameters())
    assert n == n_untied - (V * 16 if tie else 0)  # the shared matrix counted once
    ids = torch.randint(5, V, (3, T))
    mask = torch.ones_like(ids)
    assert model(ids, mask).shape == (3, T, V)
    assert model(ids, mask, head="cls").shape == (3, 2)
    pos = torch.zeros(3, T, dtype=torch.bool)
    pos[0, 3] = pos[2, 5] = True
    assert model(ids, mask, mlm_positions=pos).shape == (2, V)
    with pytest.raises(UsageError):
        BertConfig(norm="middle")


@torch.no_grad()
def test_masked_only_logits_give_the_all_positions_loss():
    task = toy_task(["model.norm=\"pre\"", "model.tie_embeddings=true"])
    torch.manual_seed(0)
    student, teacher = task.build("thin"), task.build("wide")
    batch = next(task.train_batches(16, torch.Generator().manual_seed(1)))
    labels = batch["labels"]
    assert (labels != IGNORE).sum() > 10
    full_s = student(batch["input_ids"], batch["attention_mask"])  # (B, T, V), the old way
    full_t = teacher(batch["input_ids"], batch["attention_mask"])
    old = F.cross_entropy(full_s.flatten(0, 1), labels.flatten(), ignore_index=IGNORE)
    keep = labels != IGNORE
    old_kd = kd_kl(full_s[keep], full_t[keep], 4.0)
    logits = task.forward(student, batch)
    assert logits.shape == (int(keep.sum()), V)
    assert abs(float(task.loss(logits, batch)) - float(old)) < 1e-6
    new_kd = task.kd_loss(logits, task.forward(teacher, batch), batch, 4.0)
    assert abs(float(new_kd) - float(old_kd)) < 1e-6


def test_unigram_baseline_matches_a_hand_computation():
    task = toy_task()
    # the train tokens: 5 ('a') x3, 6 ('b') x1, everything else absent; add-one smoothing
    task.data.mlm_train = torch.tensor([[2, 5, 5, 6, 0], [2, 5, 3, 0, 0]])
    task._unigram = None
    labels = task._val_labels()
    counts = torch.ones(V - 5, dtype=torch.float64)
    counts[0] += 3
    counts[1] += 1
    p = counts / counts.sum()
    expected = float(-(p[labels - 5].log()).mean())
    u = task.unigram_baseline()
    assert u["loss"] == pytest.approx(expected, abs=1e-9)
    assert u["perplexity"] == pytest.approx(math.exp(expected))
    assert u["positions"] == labels.numel() > 0


def test_logistic_regression_separates_a_separable_set():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=g, dtype=torch.float64)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0.8).long()  # imbalanced, linearly separable
    w, b = fit_logistic(x, y, 2, l2=1e-4)
    acc = float(((x @ w.T + b).argmax(-1) == y).double().mean())
    assert acc > 0.97 > float(torch.bincount(y).max()) / len(y)


def test_probe_beats_the_majority_class_and_is_the_model_head():
    task = toy_task(["model.cls_head=\"linear\"", "downstream.mode=\"probe\""])
    torch.manual_seed(0)
    model = task.build("thin")
    cls = task.downstream_task()
    ledger = ComputeLedger()
    record = linear_probe(model, cls, torch.device("cpu"), ledger, "downstream")
    best = next(r for r in record["grid"] if r["l2"] == record["l2"])
    assert best["val"]["accuracy"] > record["val_majority_accuracy"] + 0.1
    ev = cls.evaluate(model, "val", torch.device("cpu"))
    assert ev["accuracy"] == pytest.approx(best["val"]["accuracy"])
    assert ev["loss"] == pytest.approx(best["val"]["loss"], rel=1e-4)
    assert ledger.total() > 0


def test_probe_needs_the_linear_head():
    with pytest.raises(UsageError, match="cls_head"):
        build_config("bert", "ours", "tiny", ["downstream.mode=\"probe\""])


@pytest.mark.parametrize("norm,tie,head", [
    ("pre", True, "own+wide-bias"), ("pre", False, "wide-subsampled+own-final-norm"),
    ("post", True, "own+wide-bias")])
def test_stage2_and_merge_with_the_new_options(norm, tie, head):
    task = toy_task([f"model.norm=\"{norm}\"", f"model.tie_embeddings={str(tie).lower()}"])
    torch.manual_seed(0)
    thin, wide = task.build("thin"), task.build("wide")
    n_thin = sum(p.numel() for p in thin.parameters())
    record = imitate(Run(task, CPU, models={"thin": thin, "wide": wide}), task.cfg.imitate, 0)
    assert record["merge_max_abs_diff"] < 1e-4 and record["linear_pairs"] == 3
    assert record["head"] == head
    assert torch.equal(thin.mlm_head[3].bias, wide.mlm_head[3].bias)
    assert sum(p.numel() for p in thin.parameters()) == n_thin
    assert (thin.mlm_head[3].weight is thin.embeddings.token.weight) == tie
    # connectors merge exactly with a final norm too
    c = Connectors(thin, wide, thin.block_names(), seed=1)
    b = task.sample_batch(8)
    assert merge_error(thin, c, task.forward, b) < 1e-4
    remove_pairs(thin, c)


def test_subsample_of_an_equal_width_model_is_the_model():
    torch.manual_seed(0)
    kw = dict(vocab_size=V, max_len=T, layers=2, hidden=16, ffn=32, heads=2, norm="pre",
              tie_embeddings=True, cls_head="linear")
    a, b = Bert(BertConfig(**kw)), Bert(BertConfig(**kw))
    with torch.no_grad():
        for m in b.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_()
    subsample_init(a, b, seed=0)
    assert a.mlm_head[3].weight is a.embeddings.token.weight
    ids = torch.randint(5, V, (2, T))
    mask = torch.ones_like(ids)
    torch.testing.assert_close(a(ids, mask), b(ids, mask))
    torch.testing.assert_close(a(ids, mask, head="cls"), b(ids, mask, head="cls"))


def _result(method, seed, loss):
    return {"task": "bert", "method": method, "seed": seed,
            "metrics": {"downstream": {"test": {"accuracy": 0.6}},
                        "mlm": {"val": {"mlm_loss": loss, "mlm_accuracy": 0.1},
                                "unigram": {"loss": 6.0, "perplexity": math.exp(6.0)}}},
            "config": {"method": method, "seed": seed, "task": "bert"}, "data": {},
            "provenance": {}, "final_model": "thin", "params": {"thin": 10},
            "compute": {"train_flops": 1e9, "teacher_flops": 0, "student_flops": 1e9,
                        "train_wall_s": 1.0, "teacher_wall_s": 0.0}}


def test_compare_reports_the_unigram_baseline():
    losses = {"ours": [5.2, 5.4], "scratch": [5.6, 5.7]}
    results = {(m, s): _result(m, s, v) for m, vs in losses.items() for s, v in enumerate(vs)}
    s = summarise("bert", "x", [0, 1], list(losses), results)
    assert s["unigram"]["loss"] == 6.0 and s["unigram"]["bar_nats"] == 0.5
    assert s["methods"]["ours"]["vs_unigram"]["below_bar"] is True
    assert s["methods"]["scratch"]["vs_unigram"]["below_bar"] is False  # 6.0 - 5.7 < 0.5
    assert s["methods"]["ours"]["vs_unigram"]["nats_below_unigram"] == pytest.approx(0.7)
    text = compare_markdown(s)
    assert "Unigram baseline" in text and "| `scratch` | 5.6500 |" in text


def test_ours_end_to_end_with_pre_ln_tied_embeddings_and_the_probe(tmp_path, monkeypatch):
    from empirical_helpers import TEST_CACHE

    from empirical.runner import run

    monkeypatch.setenv("GOWIDE_CACHE", TEST_CACHE)
    cfg = fast_config("bert", extra=["model.norm=\"pre\"", "model.tie_embeddings=true",
                                     "model.cls_head=\"linear\"", "downstream.mode=\"probe\"",
                                     "finetune.kd_weight=0.5"])
    r = run(cfg, tmp_path / "run", progress=False)
    assert r["stages"]["imitate"]["head"] == "own+wide-bias"
    assert r["stages"]["imitate"]["merge_max_abs_diff"] < 1e-4
    assert r["stages"]["downstream"]["mode"] == "probe"
    assert r["compute"]["downstream_flops"] > 0 and r["compute"]["student_flops"] > 0
    assert r["metrics"]["mlm"]["unigram"]["loss"] > 0
    assert 0.0 <= r["metrics"]["downstream"]["test"]["accuracy"] <= 1.0

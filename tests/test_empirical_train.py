"""The supervised loop: validation every few steps, the best checkpoint kept, the
convergence rule and early stopping, and the FLOPs of the steps actually run."""

from dataclasses import replace

import pytest
import torch
from empirical_helpers import fast_config

from empirical.flops import ComputeLedger
from empirical.runtime import Runtime
from empirical.tasks import make_task
from empirical.train import convergence, train_supervised

CPU = Runtime(torch.device("cpu"), progress=False)


def _evals(values, metric="accuracy"):
    return [{"step": 10 * (i + 1), metric: v} for i, v in enumerate(values)]


def test_convergence_rule_on_known_sequences():
    # still improving: the last 2 evaluations beat the best before them by 0.15
    v = convergence(_evals([0.5, 0.6, 0.7, 0.75]), "accuracy", "max", 2, 0.01)
    assert v["converged"] is False and v["gain_in_window"] == pytest.approx(0.15)
    assert v["best_before_window"] == pytest.approx(0.6)
    # a plateau: the window's best (0.805) is within min_delta of the best before (0.8)
    v = convergence(_evals([0.5, 0.8, 0.79, 0.805]), "accuracy", "max", 2, 0.01)
    assert v["converged"] is True and v["best_in_window"] == pytest.approx(0.805)
    # overfitting: the window is worse than the best before it; converged
    v = convergence(_evals([0.5, 0.8, 0.7, 0.6]), "accuracy", "max", 2, 0.0)
    assert v["converged"] is True and v["gain_in_window"] == pytest.approx(-0.1)
    # a loss (lower is better): still falling, then flat
    assert convergence(_evals([3.0, 2.0, 1.5], "loss"), "loss", "min", 1, 0.1)["converged"] \
        is False
    v = convergence(_evals([3.0, 2.0, 1.95], "loss"), "loss", "min", 1, 0.1)
    assert v["converged"] is True and v["best_before_window"] == pytest.approx(2.0)
    assert v["gain_in_window"] == pytest.approx(0.05)  # counted in the better direction
    # too few evaluations are no evidence
    v = convergence(_evals([0.5, 0.5]), "accuracy", "max", 2, 0.0)
    assert v["converged"] is False and "needs 3" in v["note"]


class _ScriptedTask:
    """The real digits task, with validation scores read from a script, one per evaluation."""

    def __init__(self, task, scores):
        self.task, self.scores, self.calls = task, list(scores), 0
        self.monitor = task.monitor
        self.weights_at_eval = []

    def __getattr__(self, name):
        return getattr(self.task, name)

    def evaluate(self, model, split, device):
        assert split == "val"  # the test split is never looked at during training
        self.weights_at_eval.append({k: v.clone() for k, v in model.state_dict().items()})
        score = self.scores[self.calls]
        self.calls += 1
        return {"accuracy": score, "loss": 1.0 - score}


def _train(scores, **changes):
    cfg = fast_config("resnet", "scratch")
    task = _ScriptedTask(make_task(cfg), scores)
    torch.manual_seed(0)
    model = task.build("thin")
    scfg = replace(cfg.finetune, steps=20, eval_every=4, **changes)
    ledger = ComputeLedger()
    record = train_supervised(model, task, scfg, CPU, "scratch", 0, ledger)
    return model, task, record, ledger


def test_the_best_evaluation_is_kept_and_restored():
    model, task, record, ledger = _train([0.5, 0.9, 0.7, 0.6, 0.65], patience=2)
    assert [e["step"] for e in record["evaluations"]] == [4, 8, 12, 16, 20]
    assert record["selected_step"] == 8 and record["selected"]["accuracy"] == 0.9
    best = task.weights_at_eval[1]
    for key, value in model.state_dict().items():
        assert torch.equal(value, best[key]), key
    assert record["convergence"]["converged"] is True
    assert record["convergence"]["stopped_early"] is False
    assert record["steps"] == 20 and ledger.entries[0]["steps"] == 20
    # select = last keeps the weights of the last step
    model, task, record, _ = _train([0.5, 0.9, 0.7, 0.6, 0.65], select="last")
    assert record["selected_step"] == 20
    for key, value in model.state_dict().items():
        assert torch.equal(value, task.weights_at_eval[-1][key]), key


def test_early_stop_ends_the_stage_and_counts_only_the_steps_run():
    _, _, record, ledger = _train([0.5, 0.9, 0.7, 0.6, 0.65], patience=2, early_stop=True)
    assert record["steps"] == 16 and record["steps_cap"] == 20
    assert record["convergence"]["converged"] is True
    assert record["convergence"]["stopped_early"] is True
    (entry,) = ledger.entries
    assert entry["steps"] == 16 and entry["flops"] == 16 * entry["flops_per_step"]


def test_still_improving_at_the_cap_is_not_converged():
    _, _, record, _ = _train([0.5, 0.6, 0.7, 0.8, 0.9], patience=2, min_delta=0.01)
    assert record["convergence"]["converged"] is False
    assert record["selected_step"] == 20


def test_without_validation_there_is_no_verdict():
    cfg = fast_config("resnet", "scratch")
    task = make_task(cfg)
    record = train_supervised(task.build("thin"), task, replace(cfg.finetune, steps=3), CPU,
                              "scratch", 0, ComputeLedger())
    assert record["convergence"]["converged"] is None and "evaluations" not in record

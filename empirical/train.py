"""The training loop shared by the supervised stages, and what every loop uses: optimizers,
loss logs, divergence checks. The device and processes are the run's
:class:`~empirical.runtime.Runtime`; checkpoints are written by :mod:`empirical.checkpoints`.

* Validation: with ``eval_every`` > 0 the supervised loop evaluates the validation split,
  keeps the best weights and records the convergence rule (:func:`convergence`).
* Divergence: a non-finite loss stops the run with :class:`Diverged`, naming stage and
  step; stage checkpoints are written only after a stage completes, so the last good one
  stays.
* Interruptions: with a :class:`~empirical.checkpoints.Partial`, the loop's whole state
  (weights, optimizer and schedule, evaluations, best weights, loss log, random state) is
  saved at every validation, and a later call with the same partial file and key carries on
  from the last one as if never stopped (the batches before it are drawn again and
  skipped); a missing, damaged or foreign file starts the stage from its first step.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import torch
from torch import nn
from tqdm import tqdm

from empirical.config import SupervisedConfig
from empirical.flops import ComputeLedger, count_flops
from empirical.runtime import Runtime, to_device

if TYPE_CHECKING:  # checkpoints imports stages, which imports this module
    from empirical.checkpoints import Partial


class Diverged(RuntimeError):
    """A loss became NaN or infinite."""


def make_optimizer(params, lr: float, weight_decay: float, steps: int, warmup: float = 0.0):
    """AdamW with linear warm-up over ``warmup``·steps, then cosine decay to zero."""
    params = [p for p in params if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    n_warm = int(warmup * steps)

    def factor(step: int) -> float:
        if step < n_warm:
            return (step + 1) / n_warm
        progress = (step - n_warm) / max(1, steps - n_warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def check_finite(value: float, stage: str, step: int) -> None:
    if not math.isfinite(value):
        raise Diverged(
            f"stage {stage!r} diverged at step {step}: loss is {value}; stopped, the last good "
            "checkpoint (of the previous stage) is kept"
        )


class LossLog:
    """Mean loss every ``every`` steps: the curve stored in result files."""

    def __init__(self, every: int):
        self.every, self.curve, self._buf = every, [], []

    def add(self, step: int, value: float, **extra) -> None:
        self._buf.append(value)
        if (step + 1) % self.every == 0:
            self.curve.append({"step": step + 1, "loss": sum(self._buf) / len(self._buf), **extra})
            self._buf = []

    def last(self) -> float | None:
        if self._buf:
            return sum(self._buf) / len(self._buf)
        return self.curve[-1]["loss"] if self.curve else None


def optimizer_step(one_step, step: int, opt, sched, log: LossLog, runtime: Runtime,
                   label: str, average=()) -> int:
    """One training step around ``one_step()`` (zero the gradients, forward, backward; it
    returns the loss): the gradients of ``average`` averaged over processes (for loops that
    do not use DDP), the loss averaged, checked finite (:class:`Diverged`) and logged, the
    optimizer and scheduler stepped. Returns the step's FLOPs, counted on step 0 (else 0)."""
    if step == 0:
        loss, flops = count_flops(one_step)
    else:
        loss, flops = one_step(), 0
    runtime.average_gradients(average)
    value = runtime.mean_across(loss)
    check_finite(value, label, step)
    opt.step()
    sched.step()
    log.add(step, value)
    return flops


def convergence(evaluations: list[dict], metric: str, mode: str, patience: int,
                min_delta: float) -> dict:
    """The convergence rule on a list of evaluations (``{"step", metric: value}``, in order):
    *converged* when the best value of the last ``patience`` evaluations does not beat the
    best value before them by more than ``min_delta`` (``mode`` max: higher is better, min:
    lower is better). Fewer than ``patience + 1`` evaluations are not evidence either way:
    ``converged`` is then False. Returns the verdict with its evidence."""
    sign = 1.0 if mode == "max" else -1.0
    beyond = "above" if sign > 0 else "below"
    rule = (f"best val {metric} of the last {patience} evaluations not {beyond} the best "
            f"before them by more than {min_delta:g}")
    out = {"rule": rule, "metric": metric, "mode": mode, "patience": patience,
           "min_delta": min_delta, "evaluations": len(evaluations)}
    if len(evaluations) <= patience:
        return out | {"converged": False, "best_before_window": None, "best_in_window": None,
                      "gain_in_window": None,
                      "note": f"{len(evaluations)} evaluations, the rule needs {patience + 1}"}
    values = [sign * e[metric] for e in evaluations]
    before, window = max(values[:-patience]), max(values[-patience:])
    gain = window - before  # in the direction of "better"
    return out | {"converged": bool(gain <= min_delta), "best_before_window": sign * before,
                  "best_in_window": sign * window, "gain_in_window": gain}


def train_supervised(model: nn.Module, task, cfg: SupervisedConfig, runtime: Runtime,
                     stage: str, seed: int, ledger: ComputeLedger,
                     teacher: nn.Module | None = None, partial: Partial | None = None) -> dict:
    """Train ``model`` on the task's labels (and KD from ``teacher`` if ``cfg.kd_weight`` > 0).

    With ``cfg.eval_every`` > 0 the validation split is evaluated every ``eval_every`` steps
    and at the last step; the best weights by the task's monitored metric
    (``task.monitor``) are kept in memory and restored at the end when ``cfg.select`` is
    ``best``; the convergence rule of :func:`convergence` is recorded, and ends the stage
    early with ``cfg.early_stop``. Under several processes every process evaluates, and the
    mean of their values decides, so all of them stop and select alike. ``partial``: save the
    loop's state at every validation, and take it up from there (module docstring)."""
    start = time.perf_counter()
    model.train()
    use_kd = teacher is not None and cfg.kd_weight > 0
    if use_kd:
        teacher.eval()
    net = runtime.wrap(model)
    opt, sched = make_optimizer(model.parameters(), cfg.lr, cfg.weight_decay, cfg.steps,
                                cfg.warmup)
    batches = task.train_batches(cfg.batch_size, torch.Generator().manual_seed(seed),
                                 runtime.rank, runtime.world)
    log = LossLog(cfg.log_every)
    w = cfg.kd_weight
    metric, mode = task.monitor
    evaluations: list[dict] = []
    best = None  # (value, step, weights)
    flops_per_step, steps_run = 0, 0
    verdict = None
    resumed = (partial.load(stage, model, cfg.steps) if partial is not None and cfg.eval_every
               else None)
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        opt.load_state_dict(resumed["optimizer"])
        sched.load_state_dict(resumed["schedule"])
        torch.set_rng_state(resumed["rng"])
        if runtime.device.type == "cuda":
            torch.cuda.set_rng_state(resumed["rng_cuda"], runtime.device)
        steps_run, flops_per_step = resumed["steps_run"], resumed["flops_per_step"]
        evaluations = resumed["evaluations"]
        best = (resumed["best_value"], resumed["best_step"], resumed["best_weights"])
        log.curve, log._buf = resumed["log_curve"], resumed["log_buffer"]
        start -= resumed["wall_s"]
        verdict = convergence(evaluations, metric, mode, cfg.patience, cfg.min_delta)
        for _ in range(steps_run):  # the batches already trained on, drawn again
            next(batches)
        runtime.note(f"{stage} resumed at step {steps_run}/{cfg.steps}")

    bar = tqdm(range(steps_run, cfg.steps), desc=stage, disable=runtime.quiet_bars,
               leave=False, initial=steps_run, total=cfg.steps)
    for step in bar:
        batch = to_device(next(batches), runtime.device)

        def one_step(batch=batch):
            with runtime.autocast():
                logits = task.forward(net, batch)
                loss = task.loss(logits, batch)
                if use_kd:
                    with torch.no_grad():
                        t_logits = task.forward(teacher, batch)
                    loss = (1 - w) * loss + w * task.kd_loss(logits, t_logits, batch,
                                                             cfg.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            return loss

        flops = optimizer_step(one_step, step, opt, sched, log, runtime, stage)
        if step == 0:
            flops_per_step = flops
        steps_run = step + 1
        if cfg.eval_every and (steps_run % cfg.eval_every == 0 or steps_run == cfg.steps):
            scores = task.evaluate(model, "val", runtime.device)
            scores = {k: runtime.mean_across(torch.tensor(float(v), dtype=torch.float64))
                      for k, v in scores.items()}
            evaluations.append({"step": steps_run} | scores)
            better = (best is None or (scores[metric] > best[0] if mode == "max"
                                       else scores[metric] < best[0]))
            if better:
                weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
                best = (scores[metric], steps_run, weights)
            bar.set_postfix_str(f"val {metric} {scores[metric]:.4f}")
            runtime.note(f"{stage} step {steps_run}/{cfg.steps}: val {metric} "
                         f"{scores[metric]:.4f} (best {best[0]:.4f} at step {best[1]}), "
                         f"{time.perf_counter() - start:.0f} s")
            verdict = convergence(evaluations, metric, mode, cfg.patience, cfg.min_delta)
            if cfg.early_stop and verdict["converged"]:
                break
            if partial is not None and runtime.is_main and steps_run < cfg.steps:
                partial.save({"stage": stage, "steps_run": steps_run,
                              "flops_per_step": flops_per_step, "model": model.state_dict(),
                              "optimizer": opt.state_dict(), "schedule": sched.state_dict(),
                              "rng": torch.get_rng_state(), "evaluations": evaluations,
                              "rng_cuda": (torch.cuda.get_rng_state(runtime.device)
                                           if runtime.device.type == "cuda" else None),
                              "best_value": best[0], "best_step": best[1],
                              "best_weights": best[2], "log_curve": log.curve,
                              "log_buffer": log._buf,
                              "wall_s": time.perf_counter() - start})
    ledger.add(stage, "train", flops_per_step * runtime.world, steps_run)
    record = {"steps": steps_run, "steps_cap": cfg.steps, "final_loss": log.last(),
              "loss_curve": log.curve, "kd": use_kd}
    if cfg.eval_every:
        selected = best[1] if cfg.select == "best" else steps_run
        if cfg.select == "best" and best[1] != steps_run:
            model.load_state_dict(best[2])
        record |= {"evaluations": evaluations, "select": cfg.select, "selected_step": selected,
                   "selected": next(e for e in evaluations if e["step"] == selected),
                   "convergence": verdict | {"stopped_early": steps_run < cfg.steps}}
    else:
        record["convergence"] = {"converged": None,
                                 "rule": "none: no validation during training (eval_every = 0)"}
    return record | {"wall_s": time.perf_counter() - start}

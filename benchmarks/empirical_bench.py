"""Benchmarks of the three-stage machinery on the tiny models (``empirical/configs/tiny.toml``).

* ``stage2_over_plain`` — a stage-2 step (``imitation.imitation_step`` with what ``imitate`` does
  around it: the batch, the optimizer and scheduler steps, the loss read back) against a
  plain training step of the thin model on labels plus a forward pass of the wide model
  under ``torch.inference_mode``. Two stage-2 phases: ``progressive_top`` (the top block,
  the lower ones frozen: the phase of the tiny preset's progressive schedule that runs both
  models to the top) and ``simultaneous`` (every block trained on the mean loss). The
  headline is the larger ratio over phases and models.
* ``hook_overhead`` — forward and backward pass of the thin model on a fixed batch, with
  :class:`empirical.capture.FeatureCapture` on every block against without hooks.
* ``precompute_speedup`` — a stage-2 step reading teacher features computed once
  (``empirical/precompute.py``) against the same step running the wide model, per phase of
  the progressive schedule; the image task only (masked-LM batches change the wide model's
  input at every step, so there is nothing to precompute).

Models are freshly initialised (timings do not depend on trained weights); every variant
works on its own copy of the thin model, so that interleaved timing cannot mix their states.
"""

from __future__ import annotations

import contextlib
import copy
import time

import torch

from benchmarks.timing import env, measure, paired_ratio, set_threads
from empirical.capture import FeatureCapture, block_names
from empirical.connectors import Connectors
from empirical.imitation import _set_trainable, imitation_step
from empirical.precompute import precompute_features, training_examples
from empirical.presets import build_config
from empirical.run import Run, build_role
from empirical.runtime import setup_runtime, to_device
from empirical.tasks import make_task
from empirical.train import check_finite, make_optimizer
from gowide.errors import UsageError

TASKS = ("resnet", "bert")

FULL = {"reps": 11, "warmup": 3, "min_sample_s": 0.1, "all_phases": True}
QUICK = {"reps": 5, "warmup": 2, "min_sample_s": 0.02, "all_phases": False}


def plan(quick: bool) -> dict:
    return QUICK if quick else FULL


@contextlib.contextmanager
def threads_of(cfg):
    """The preset's intra-op threads (tiny: 1) while the block runs."""
    before = torch.get_num_threads()
    set_threads(cfg.threads or None)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


class Setup:
    """The tiny preset of one task: its config, data, runtime and a thin and a wide model."""

    def __init__(self, task_name: str, device: str = "cpu"):
        self.cfg = build_config(task_name, "ours", "tiny", device=device)
        self.runtime = setup_runtime(device, progress=False)
        self.task = make_task(self.cfg)
        self.thin = self._build("thin")
        self.wide = self._build("wide")
        self.wide.eval()
        self.names = block_names(self.thin)

    def _build(self, role: str):
        return build_role(self.task, role, self.cfg.seed, self.runtime)

    def batches(self, batch_size: int, seed: int = 0):
        return self.task.train_batches(batch_size, torch.Generator().manual_seed(seed),
                                       self.runtime.rank, self.runtime.world)

    def phase(self, name: str) -> tuple[list[str], list[str]]:
        """(blocks trained, blocks in the loss) of a stage-2 phase."""
        if name == "simultaneous":
            return self.names, self.names
        block = self.names[-1] if name == "progressive_top" else name
        return [block], [block]

    def stage2_step(self, phase: str, features=None):
        """A stage-2 step of ``phase`` on a copy of the thin model, as ``imitation.imitate`` runs
        it (teacher live, or read from ``features``)."""
        cfg, runtime, task, wide = self.cfg.imitate, self.runtime, self.task, self.wide
        thin = copy.deepcopy(self.thin)
        train_blocks, loss_blocks = self.phase(phase)
        connectors = Connectors(thin, wide, self.names, seed=0).to(runtime.device)
        thin.train()
        params = _set_trainable(thin, connectors, train_blocks)
        for b in self.names:
            thin.get_submodule(b).train(b in train_blocks)
        opt, sched = make_optimizer(params, cfg.lr, cfg.weight_decay, 10**6)
        run = Run(task, runtime, models={"thin": thin, "wide": wide}, connectors=connectors)
        if features is None:
            stream = ((b, None) for b in self.batches(cfg.batch_size))
        else:
            stream = features.batches(cfg.batch_size, torch.Generator().manual_seed(0),
                                      runtime.rank, runtime.world)

        def step():
            batch, z = next(stream)
            batch = to_device(batch, runtime.device)
            z = None if z is None else to_device(z, runtime.device)
            loss = imitation_step(run, batch, loss_blocks, cfg, opt, z)
            runtime.average_gradients(params)
            check_finite(runtime.mean_across(loss), "benchmark", 0)
            opt.step()
            sched.step()

        return step

    def plain_step(self):
        """A plain training step of a copy of the thin model on labels, plus a forward pass of
        the wide model under inference mode."""
        cfg, runtime, task, wide = self.cfg.imitate, self.runtime, self.task, self.wide
        thin = copy.deepcopy(self.thin)
        thin.train()
        for p in thin.parameters():
            p.requires_grad_(True)
        opt, sched = make_optimizer(thin.parameters(), cfg.lr, cfg.weight_decay, 10**6)
        stream = self.batches(cfg.batch_size)

        def step():
            batch = to_device(next(stream), runtime.device)
            with torch.inference_mode(), runtime.autocast():
                task.forward(wide, batch)
            with runtime.autocast():
                loss = task.loss(task.forward(thin, batch), batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            check_finite(runtime.mean_across(loss), "benchmark", 0)
            opt.step()
            sched.step()

        return step


def _device(setup: Setup) -> str:
    return str(setup.runtime.device)


def stage2_over_plain(quick: bool, device: str = "cpu", setups=None, progress=print) -> dict:
    p = plan(quick)
    by_model = {}
    for name in TASKS:
        s = setups[name] if setups else Setup(name, device)
        with threads_of(s.cfg) as threads:
            t = measure({"progressive_top": s.stage2_step("progressive_top"),
                         "simultaneous": s.stage2_step("simultaneous"),
                         "plain": s.plain_step()},
                        reps=p["reps"], warmup=p["warmup"], min_sample_s=p["min_sample_s"],
                        device=device)
        plain = t["plain"]["median_s"]
        ratios = {k: paired_ratio(t, k, "plain") for k in ("progressive_top", "simultaneous")}
        by_model[name] = {"ratio": max(ratios.values()), "ratios": ratios,
                          "stage2_s": {k: t[k]["median_s"] for k in ratios},
                          "plain_s": plain, "batch_size": s.cfg.imitate.batch_size,
                          "blocks": len(s.names), "timing": t,
                          "env": env(threads=threads, device=_device(s))}
        progress(f"  stage 2 / plain, {name}: " + ", ".join(f"{k} {v:.2f}"
                                                              for k, v in ratios.items()))
    worst = max(m["ratio"] for m in by_model.values())
    return {"value": worst, "goal": "<= 1.3 (stage-2 step over a plain thin step + teacher "
                                    "forward under inference_mode; worst phase and model)",
            "met": worst <= 1.3, "by_model": by_model,
            "what": "tiny preset models (empirical/configs/tiny.toml), freshly initialised; "
                    "stage 2 = imitation.imitation_step + optimizer and scheduler steps; plain = "
                    "thin forward, label loss, backward, optimizer and scheduler steps, and a "
                    "wide forward under torch.inference_mode",
            "env": env(threads=by_model[TASKS[0]]["env"]["threads"], device=device)}


def hook_overhead(quick: bool, device: str = "cpu", setups=None, progress=print) -> dict:
    p = plan(quick)
    by_model = {}
    for name in TASKS:
        s = setups[name] if setups else Setup(name, device)
        thin = copy.deepcopy(s.thin)
        thin.train()
        batch = to_device(next(s.batches(s.cfg.imitate.batch_size)), s.runtime.device)
        task = s.task

        def plain(thin=thin, batch=batch, task=task):
            thin.zero_grad(set_to_none=True)
            task.loss(task.forward(thin, batch), batch).backward()

        def hooked(thin=thin, batch=batch, task=task, names=s.names):
            thin.zero_grad(set_to_none=True)
            with FeatureCapture(thin, names) as cap:
                out = cap.run(task.forward, thin, batch)
            task.loss(out, batch).backward()

        with threads_of(s.cfg) as threads:
            t = measure({"plain": plain, "hooked": hooked}, reps=p["reps"] * 2,
                        warmup=p["warmup"], min_sample_s=p["min_sample_s"], device=device)
        overhead = paired_ratio(t, "hooked", "plain") - 1.0
        by_model[name] = {"overhead": overhead, "plain_s": t["plain"]["median_s"],
                          "hooked_s": t["hooked"]["median_s"], "hooked_blocks": len(s.names),
                          "timing": t, "env": env(threads=threads, device=_device(s))}
        progress(f"  hook overhead, {name}: {100 * overhead:+.1f}%")
    worst = max(m["overhead"] for m in by_model.values())
    return {"value": worst, "goal": "< 0.05 (relative extra time of a forward + backward pass "
                                    "of the thin model with FeatureCapture on every block)",
            "met": worst < 0.05, "by_model": by_model,
            "what": "thin model of the tiny preset in train mode, one fixed training batch; "
                    "hooks registered and removed around every forward pass, as stage 2 does",
            "env": env(threads=by_model[TASKS[0]]["env"]["threads"], device=device)}


def precompute_speedup(quick: bool, device: str = "cpu", setups=None, progress=print) -> dict:
    p = plan(quick)
    s = setups["resnet"] if setups else Setup("resnet", device)
    with threads_of(s.cfg) as threads:
        start = time.perf_counter()
        features = precompute_features(s.wide, s.task, s.runtime, names=s.names)
        precompute_s = time.perf_counter() - start
        phases = list(s.names) if p["all_phases"] else ["progressive_top"]
        rows = {}
        for phase in phases:
            t = measure({"live": s.stage2_step(phase), "precomputed": s.stage2_step(phase,
                                                                                 features)},
                        reps=p["reps"], warmup=p["warmup"], min_sample_s=p["min_sample_s"],
                        device=device)
            rows[phase] = {"live_s": t["live"]["median_s"],
                           "precomputed_s": t["precomputed"]["median_s"],
                           "speedup": paired_ratio(t, "live", "precomputed")}
    live = sum(r["live_s"] for r in rows.values())
    pre = sum(r["precomputed_s"] for r in rows.values())
    steps = s.cfg.imitate.steps_per_block
    stage_live = steps * live
    stage_pre = precompute_s + steps * pre
    speedup = live / pre
    progress(f"  precomputed teacher features, resnet: step speed-up {speedup:.2f}x "
             f"({len(rows)} phase(s)); precompute {precompute_s:.2f} s")
    try:
        training_examples(_bert_task(setups, device))
        bert = {"skipped": None}
    except UsageError as exc:
        bert = {"skipped": str(exc)}
    return {
        "value": speedup,
        "goal": "> 1 (a stage-2 step reading precomputed teacher features against one running "
                "the teacher)",
        "met": speedup > 1.0,
        "averaged_over": ("every phase of the progressive schedule (ratio of summed step times)"
                          if p["all_phases"] else "the top phase only (quick mode)"),
        "by_phase": rows,
        "precompute_s": precompute_s, "feature_bytes": features.nbytes,
        "train_examples": features.size,
        "stage": {"steps_per_block": steps, "phases": len(rows), "live_s": stage_live,
                  "precomputed_s_including_precompute": stage_pre,
                  "speedup_including_precompute": stage_live / stage_pre},
        "bert": bert,
        "env": env(threads=threads, device=_device(s)),
    }


def _bert_task(setups, device):
    if setups and "bert" in setups:
        return setups["bert"].task
    return make_task(build_config("bert", "ours", "tiny", device=device))

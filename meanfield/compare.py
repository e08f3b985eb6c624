"""Imitation versus back-propagation, measured: P3 and P4 (docs/theory.md §6), and the runner.

For every seed, a regression task (``setup.make_task``, with its best linear fit) and, for
every depth L used, a wide teacher (``setup.wide_teacher``: width N_W from the shared initial
law, trained by mean-field back-propagation). Then, for thin widths n and depths L:

- **P3, imitation.** A thin net starts from n of each wide layer's particles (``subsample``)
  and is trained by layerwise imitation (teacher-forced and progressive). Measured: the RMS
  output deviation from the wide net on test inputs, before (the subsampled start, averaged
  over ``draws`` draws) and after imitation, and the stability bound of ``stability`` from the
  measured per-layer errors δ_l and the particle constant κ on the same inputs (a correctness
  check, reported with its looseness, not a prediction).
- **P4, back-propagation from scratch.** A thin net with n particles drawn from the shared law
  is trained by back-propagation on the task; its deviation from its own width limit is
  measured at several training times T. The limit is proxied by a width-N_ref net from the
  same law trained identically; at the width grid's depth a second, independent reference
  measures the proxy's own fluctuation, which is subtracted (``noise_corrected``).
- **P5, efficiency**: ``efficiency`` (curves and targets); the verdicts: ``verdicts``.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from gowide.atomic import write_json
from meanfield.dynamics import TrainConfig, train
from meanfield.efficiency import efficiency_seed
from meanfield.imitation import ImitationConfig, imitate, subsample
from meanfield.setup import held_out_loss, init_net, make_task, rms, stream, wide_teacher
from meanfield.stability import stability_report
from meanfield.verdicts import summarise

MODES = ("teacher_forced", "progressive")


@dataclass
class CompareConfig:
    dim: int = 8
    activation: str = "tanh"
    task: str = "ridge"  # "ridge" (sum of sharp ridges) or "teacher" (smooth mean-field)
    task_seed: int | None = 0  # one task for all seeds (seeds vary the nets); None: per seed
    difficulty: float = 8.0  # teacher task
    n_train: int = 1024
    n_test: int = 1024
    init_scale: float = 1.0  # the shared initial particle law (setup.initial_law)
    init_amplitude: float = 1.0
    wide_width: int = 512
    wide_steps: int = 200
    lr: float = 0.3  # back-propagation step η (wide, thin and reference nets)
    widths: tuple[int, ...] = (4, 8, 16, 32, 64, 128)
    width_depth: int = 8
    depths: tuple[int, ...] = (2, 4, 8, 16, 32, 64)
    depth_width: int = 16
    draws: int = 4  # subsampled warm starts per configuration (their deviation is averaged)
    imitation_steps: int = 200
    imitation_lr: float = 0.5
    bp_steps: int = 210
    bp_checkpoints: int = 3  # deviation measured at T/3, 2T/3, T
    bp_reference_width: int = 2048
    eff_width: int = 8
    eff_depth: int = 16
    # targets: wide loss + f × (best-affine-fit loss − wide loss), for each f
    eff_targets: tuple[float, ...] = (0.5, 0.25, 0.1, 0.05)
    eff_max_steps: int = 3000
    eff_eval_growth: float = 1.15  # evaluations at steps 0, 1, 2, … growing by this factor
    eff_finetune_after: int = 200  # imitation steps before fine-tuning
    # the efficiency experiment's teacher, trained to convergence by validation
    eff_wide_steps: int = 6000  # cap
    eff_wide_eval: int = 50  # steps between validation checks
    eff_wide_patience: int = 6  # checks without a relative improvement of eff_wide_tolerance
    eff_wide_tolerance: float = 0.002
    n_val: int = 512  # validation split of the task (stopping rules only)
    seeds: tuple[int, ...] = tuple(range(10))

    @classmethod
    def quick(cls, **overrides) -> CompareConfig:
        base = dict(n_train=256, n_test=256, n_val=128, wide_width=128, wide_steps=150,
                    widths=(4, 8, 16, 32), width_depth=4, depths=(2, 4, 8), depth_width=8,
                    draws=2, imitation_steps=100, bp_steps=150, bp_reference_width=128,
                    eff_depth=8, eff_max_steps=600, eff_finetune_after=100,
                    eff_eval_growth=1.3, eff_wide_steps=1000, eff_wide_patience=4,
                    seeds=(0, 1))
        base.update(overrides)
        return cls(**base)

    @classmethod
    def full(cls, **overrides) -> CompareConfig:
        """10 seeds; sized for a 2-core CPU with ``--jobs 2`` (README: measured time)."""
        base = dict(n_train=512, n_val=256, wide_width=256, widths=(4, 8, 16, 32, 64),
                    depths=(2, 4, 8, 16), bp_reference_width=512, eff_wide_steps=4000)
        base.update(overrides)
        return cls(**base)

    def validate(self) -> None:
        if self.task not in ("teacher", "ridge"):
            raise ValueError(f"task must be 'teacher' or 'ridge', got {self.task!r}")
        if max(self.widths) > self.wide_width or self.depth_width > self.wide_width:
            raise ValueError("thin widths must not exceed wide_width (subsampling)")
        if self.eff_width > self.wide_width:
            raise ValueError("eff_width must not exceed wide_width (subsampling)")
        if self.bp_reference_width < 4 * max(self.widths):
            raise ValueError("bp_reference_width must be at least 4× the largest thin width")
        if len(self.widths) < 2 or len(self.depths) < 2:
            raise ValueError("widths and depths need at least two sizes each")
        if not self.seeds:
            raise ValueError("at least one seed is needed")
        if not self.eff_targets or not all(0 < f < 1 for f in self.eff_targets):
            raise ValueError("eff_targets must be fractions in (0, 1)")
        if self.draws < 1 or self.eff_max_steps < 1 or self.eff_finetune_after < 1:
            raise ValueError("draws, eff_max_steps and eff_finetune_after must be ≥ 1")
        if self.eff_finetune_after >= self.eff_max_steps:
            raise ValueError("eff_finetune_after must be below eff_max_steps")
        if not self.eff_eval_growth > 1:
            raise ValueError("eff_eval_growth must exceed 1")


class _SeedCache:
    """What the configurations of one seed share, each computed once and kept: the task, the
    wide teachers and the width-limit references."""

    def __init__(self, cfg: CompareConfig, seed: int):
        self.cfg, self.seed = cfg, seed
        self.task = make_task(cfg, seed)
        self._wide: dict[int, tuple] = {}
        self._ref: dict[tuple, list] = {}

    def wide(self, depth: int):
        """(wide net, its training history) for this depth, trained once."""
        if depth not in self._wide:
            self._wide[depth] = wide_teacher(self.cfg, self.seed, depth, self.task)
        return self._wide[depth]

    def bp_outputs(self, depth: int, width: int, rng) -> tuple[list, list]:
        """Test outputs and test losses of a back-propagated net at each checkpoint."""
        cfg = self.cfg
        net = init_net(cfg, self.seed, depth, width, rng)
        chunk = cfg.bp_steps // cfg.bp_checkpoints
        outs, losses = [], []
        for _ in range(cfg.bp_checkpoints):
            tc = TrainConfig(steps=chunk, lr=cfg.lr, eval_every=0, seed=self.seed)
            net, _ = train(net, self.task.X_train, self.task.y_train, tc)
            outs.append(net(self.task.X_test))
            losses.append(held_out_loss(net, self.task))
        return outs, losses

    def reference(self, depth: int, which: str = "reference"):
        if (depth, which) not in self._ref:
            rng = stream(self.seed, depth, which)
            self._ref[depth, which] = self.bp_outputs(depth, self.cfg.bp_reference_width,
                                                      rng)[0]
        return self._ref[depth, which]


def measure_config(s: _SeedCache, width: int, depth: int) -> dict:
    """P3 and P4 numbers for one (n, L) on one seed."""
    cfg, task = s.cfg, s.task
    wide, _ = s.wide(depth)
    wide_out = wide(task.X_test)
    wide_loss = held_out_loss(wide, task)
    rng = stream(s.seed, depth, "subsample", width)
    starts = [subsample(wide, width, rng) for _ in range(cfg.draws)]
    rec = {"seed": s.seed, "width": width, "depth": depth, "wide_test_loss": wide_loss,
           "wide_output_rms": float(np.sqrt(np.mean(wide_out ** 2))),
           # mean over draws of the squared deviation, then the root
           "subsample_deviation": float(np.sqrt(np.mean(
               [rms(st(task.X_test), wide_out) ** 2 for st in starts])))}
    for mode in MODES:
        ic = ImitationConfig(steps=cfg.imitation_steps, lr=cfg.imitation_lr, mode=mode,
                             eval_every=0, seed=s.seed)
        thin, _ = imitate(starts[0], wide, task.X_train, ic)
        rep = stability_report(thin, wide, task.X_test)
        rec[mode] = {
            "deviation": rep["output_deviation"],
            "bound": rep["output_bound"]["product"],
            "bound_exp": rep["output_bound"]["exp"],
            "bound_data_K": rep["output_bound_data_K"],
            "bound_holds": rep["bound_holds"],
            "K": rep["K"],
            "K_data": rep["K_data"],
            "delta": rep["delta"],
            "test_loss": held_out_loss(thin, task),
        }
    outs, losses = s.bp_outputs(depth, width, stream(s.seed, depth, "scratch", width))
    ref = s.reference(depth)
    times = [cfg.lr * (k + 1) * (cfg.bp_steps // cfg.bp_checkpoints)
             for k in range(cfg.bp_checkpoints)]
    bp = {
        "times": times,
        "deviation_from_own_limit": [rms(o, r) for o, r in zip(outs, ref, strict=True)],
        "deviation_from_wide": [rms(o, wide_out) for o in outs],
        "test_loss": losses,
        "loss_gap_to_wide": [v - wide_loss for v in losses],
    }
    if depth == cfg.width_depth:
        # The reference's own fluctuation: two independent width-N_ref nets differ by
        # E‖f_R − f_R'‖² ≈ 2C/N_ref, so E‖f_n − f_R‖² − ‖f_R − f_R'‖²/2 ≈ C/n.
        ref2 = s.reference(depth, "reference_2")
        floor = [rms(r, r2) ** 2 / 2 for r, r2 in zip(ref, ref2, strict=True)]
        bp["reference_floor"] = floor
        bp["noise_corrected_sq_deviation"] = [
            d ** 2 - f for d, f in zip(bp["deviation_from_own_limit"], floor, strict=True)]
    rec["backprop"] = bp
    return rec


def config_key(cfg: CompareConfig) -> str:
    """What a per-seed result depends on: every config field but the list of seeds."""
    fields = {k: v for k, v in asdict(cfg).items() if k != "seeds"}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=list).encode()).hexdigest()


def run_seed(cfg: CompareConfig, seed: int) -> dict:
    """Everything one seed contributes: the P3/P4 records, the P5 curves and the task."""
    torch.set_num_threads(1)
    grid = sorted({(n, cfg.width_depth) for n in cfg.widths}
                  | {(cfg.depth_width, L) for L in cfg.depths})
    s = _SeedCache(cfg, seed)
    records = [measure_config(s, n, L) for n, L in grid]
    return {"seed": seed, "config_key": config_key(cfg), "records": records,
            "efficiency": efficiency_seed(cfg, seed, s.task), "task": s.task.describe()}


def _load(path: Path, key: str) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("config_key") == key else None


def run_compare(cfg: CompareConfig, progress: bool = True, workdir: Path | None = None,
                jobs: int = 1) -> dict:
    """All seeds, then the summary. With ``workdir``, each seed's result is kept there as it
    finishes and reused by a later run with the same config (an interrupted run resumes);
    ``jobs`` seeds run at once, in separate one-thread processes."""
    cfg.validate()
    t0 = time.perf_counter()
    key = config_key(cfg)
    done: dict[int, dict] = {}
    if workdir is not None:
        for seed in cfg.seeds:
            got = _load(Path(workdir) / f"seed{seed}.json", key)
            if got is not None:
                done[seed] = got
    todo = [seed for seed in cfg.seeds if seed not in done]
    with tqdm(total=len(cfg.seeds), initial=len(done), desc="compare seeds",
              disable=not progress, unit="seed") as bar:

        def keep(result: dict) -> None:
            done[result["seed"]] = result
            if workdir is not None:
                write_json(Path(workdir) / f"seed{result['seed']}.json", result)
            bar.update(1)

        if jobs > 1 and len(todo) > 1:
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(min(jobs, len(todo))) as pool:
                for result in pool.imap_unordered(_run_seed_star, [(cfg, s) for s in todo]):
                    keep(result)
        else:
            for seed in todo:
                keep(run_seed(cfg, seed))
    ordered = [done[seed] for seed in cfg.seeds]
    records = [r for d in ordered for r in d["records"]]
    return summarise(cfg, records, [d["efficiency"] for d in ordered],
                     [d["task"] for d in ordered], time.perf_counter() - t0)


def _run_seed_star(args) -> dict:
    return run_seed(*args)

"""Depth, where the theory says it should bite: the three residual scalings (docs/theory.md §8).

Holds the depth experiment. For every seed, residual scaling α_L ∈ {1/L, 1/√L, 1}
(``MeanFieldResNet.residual_scale``) and depth L of the grid:

- a *wide net*: N_W particles per layer drawn from the initial law (the same draw for the
  three scalings: a paired design) and trained by mean-field back-propagation
  (``dynamics.train``, step S = N/(α_L² L), so training time T = η·steps means the same at
  every depth and scaling) on the task of ``compare`` (the ridge task by default);
- for every thin width n of the grid, a thin net trained two ways:
  (a) *imitation*: n of each wide layer's particles (``subsample``), then layerwise imitation
      of the wide net (``imitate``, teacher-forced by default);
  (b) *back-propagation from scratch*: n particles per layer from an independent draw of the
      initial law, trained by back-propagation with the wide net's schedule. The wide net is
      then this thin net's width-limit proxy: both are particle approximations of one flow.

Measured on the test inputs, for both routes: the RMS output deviation D from the wide net
(also relative to the wide net's output RMS) and the test-loss gap to the wide net (also
relative to the wide net's gap to the best linear fit); for imitation also the stability
bound of ``stability`` (with α_L), a deterministic check.

Summaries (slopes, verdicts, width needed): ``meanfield.depth_summary``.
Does not hold: the figures (``figures/fig_depth.py`` reads the results), the CLI.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from meanfield.depth_summary import summarise
from meanfield.dynamics import TrainConfig, train
from meanfield.imitation import MODES, ImitationConfig, imitate, subsample
from meanfield.network import RESIDUAL_SCALES, MeanFieldResNet
from meanfield.particles import GaussianParticleLaw
from meanfield.stability import stability_report
from meanfield.tasks import ridge_task, teacher_task


@dataclass
class DepthConfig:
    dim: int = 8
    activation: str = "tanh"
    task: str = "ridge"  # as in compare: "ridge" (thin nets are width-limited) or "teacher"
    task_seed: int | None = 0  # one task for all seeds (seeds vary the nets); None: per seed
    difficulty: float = 8.0  # teacher task only
    n_train: int = 512  # 256 leaves the wide net barely better than the best linear fit
    n_test: int = 512
    dtype: str = "float32"  # float32 halves the time; deviations here are ≥ 1e-3 relative
    init_scale: float = 1.0  # the initial particle law of every net (wide and thin)
    init_amplitude: float = 1.0
    scales: tuple[str, ...] = RESIDUAL_SCALES
    depths: tuple[int, ...] = (2, 4, 8, 16, 32)
    widths: tuple[int, ...] = (4, 8, 16, 32, 64)
    wide_width: int = 256
    steps: int = 150  # back-propagation steps, wide and thin alike (the same schedule)
    lr: float = 0.3  # back-propagation η; the particle step is η·N/(α_L² L)
    imitation_mode: str = "teacher_forced"
    imitation_steps: int = 150
    imitation_lr: float = 0.5
    # width needed: relative deviation D / RMS(wide output), and relative loss gap
    # (thin test loss − wide test loss) / (best linear fit's test loss − wide test loss)
    tolerances: tuple[float, ...] = (0.05, 0.1, 0.2)
    gap_tolerances: tuple[float, ...] = (0.1, 0.25, 0.5)
    seeds: tuple[int, ...] = tuple(range(10))

    @classmethod
    def quick(cls, **overrides) -> DepthConfig:
        """Under a minute on one core: three depths, three widths, two seeds."""
        base = dict(n_train=128, n_test=128, depths=(2, 4, 8), widths=(4, 8, 16),
                    wide_width=64, steps=60, imitation_steps=60, seeds=(0, 1))
        base.update(overrides)
        return cls(**base)

    @classmethod
    def full(cls, **overrides) -> DepthConfig:
        """Ten seeds, depths 2…32, widths 4…64: 27 minutes wall on one core of a busy 2-core
        machine (load ≈ 4); 18 minutes there with n_train = 256."""
        base = dict()
        base.update(overrides)
        return cls(**base)

    def validate(self) -> None:
        if self.task not in ("teacher", "ridge"):
            raise ValueError(f"task must be 'teacher' or 'ridge', got {self.task!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if not self.scales or any(s not in RESIDUAL_SCALES for s in self.scales):
            raise ValueError(f"scales must be a non-empty subset of {RESIDUAL_SCALES}")
        if self.imitation_mode not in MODES:
            raise ValueError(f"imitation_mode must be one of {MODES}")
        if len(self.depths) < 2 or len(self.widths) < 1:
            raise ValueError("depths need at least two sizes and widths at least one")
        if any(L < 1 for L in self.depths) or any(n < 1 for n in self.widths):
            raise ValueError("depths and widths must be positive")
        if max(self.widths) > self.wide_width:
            raise ValueError("thin widths must not exceed wide_width (subsampling)")
        if list(self.widths) != sorted(set(self.widths)):
            raise ValueError("widths must be increasing (the width-needed search scans them)")
        if not self.seeds:
            raise ValueError("at least one seed is needed")
        if any(not e > 0 for e in self.tolerances + self.gap_tolerances):
            raise ValueError("tolerances must be positive")

    @property
    def torch_dtype(self) -> torch.dtype:
        return torch.float32 if self.dtype == "float32" else torch.float64


def _rms(a, b=None) -> float:
    a = np.asarray(a, dtype=float)
    d = a if b is None else a - np.asarray(b, dtype=float)
    return float(np.sqrt(np.mean(d ** 2)))


def _task(cfg: DepthConfig, seed: int):
    task_seed = seed if cfg.task_seed is None else cfg.task_seed
    if cfg.task == "ridge":
        return ridge_task(dim=cfg.dim, n_train=cfg.n_train, n_test=cfg.n_test, seed=task_seed)
    return teacher_task(dim=cfg.dim, depth=8, width=2048, difficulty=cfg.difficulty,
                        n_train=cfg.n_train, n_test=cfg.n_test, seed=task_seed)


def _init_net(cfg: DepthConfig, seed: int, depth: int, width: int, rng, readout,
              scale: str) -> MeanFieldResNet:
    """n particles per layer from the seed's initial law (as ``compare._init_net``)."""
    law = GaussianParticleLaw.random(cfg.dim, scale=cfg.init_scale,
                                     amplitude=cfg.init_amplitude, seed=seed)
    a, w, b = law.sample_layers(depth, width, rng)
    return MeanFieldResNet.from_arrays(a, w, b, cfg.activation, readout,
                                       dtype=cfg.torch_dtype, residual_scale=scale)


def _route_record(out, loss, wide_out, wide_loss, wide_rms, linear_loss) -> dict:
    dev = _rms(out, wide_out)
    gap = loss - wide_loss
    denom = linear_loss - wide_loss
    return {"deviation": dev, "rel_deviation": dev / wide_rms, "test_loss": loss,
            "loss_gap": gap, "rel_loss_gap": gap / denom if denom > 0 else math.nan}


def measure_depth(cfg: DepthConfig, seed: int, task, u, scale: str, depth: int) -> tuple:
    """The wide net for (seed, scale, L) and both routes at every thin width; (wide, rows)."""
    X, y, Xt, yt = task.X_train, task.y_train, task.X_test, task.y_test
    net = _init_net(cfg, seed, depth, cfg.wide_width, np.random.default_rng([seed, depth, 1]),
                    u, scale)
    t0 = time.perf_counter()
    wide_rec = {"seed": seed, "scale": scale, "depth": depth, "width": cfg.wide_width,
                "initial_test_loss": 0.5 * float(np.mean((net(Xt) - yt) ** 2))}
    try:
        wide, _ = train(net, X, y, TrainConfig(steps=cfg.steps, lr=cfg.lr, eval_every=0,
                                               seed=seed))
    except FloatingPointError as exc:
        wide_rec.update(diverged=True, reason=str(exc))
        return wide_rec, []
    wide_out = wide(Xt)
    wide_loss = 0.5 * float(np.mean((wide_out - yt) ** 2))
    wide_rms = _rms(wide_out)
    wide_rec.update(diverged=False, test_loss=wide_loss, output_rms=wide_rms,
                    beats_linear=bool(wide_loss < task.linear_loss),
                    train_seconds=time.perf_counter() - t0)
    rows = []
    for n in cfg.widths:
        rec = {"seed": seed, "scale": scale, "depth": depth, "width": n,
               "wide_test_loss": wide_loss, "wide_output_rms": wide_rms}
        start = subsample(wide, n, np.random.default_rng([seed, depth, n, 3]))
        rec["subsample_rel_deviation"] = _rms(start(Xt), wide_out) / wide_rms
        ic = ImitationConfig(steps=cfg.imitation_steps, lr=cfg.imitation_lr,
                             mode=cfg.imitation_mode, eval_every=0, seed=seed)
        thin, _ = imitate(start, wide, X, ic)
        out = thin(Xt)
        rep = stability_report(thin, wide, Xt)
        rec["imitation"] = _route_record(out, 0.5 * float(np.mean((out - yt) ** 2)), wide_out,
                                         wide_loss, wide_rms, task.linear_loss)
        rec["imitation"].update(bound=rep["output_bound"]["product"],
                                bound_holds=rep["bound_holds"], K=rep["K"],
                                mean_delta=float(np.mean(rep["delta"])))
        bp0 = _init_net(cfg, seed, depth, n, np.random.default_rng([seed, depth, n, 4]), u, scale)
        try:
            bp, _ = train(bp0, X, y, TrainConfig(steps=cfg.steps, lr=cfg.lr, eval_every=0,
                                                 seed=seed))
            out = bp(Xt)
            rec["backprop"] = _route_record(out, 0.5 * float(np.mean((out - yt) ** 2)),
                                            wide_out, wide_loss, wide_rms, task.linear_loss)
            rec["backprop"]["diverged"] = False
        except FloatingPointError as exc:
            rec["backprop"] = {k: math.nan for k in ("deviation", "rel_deviation", "test_loss",
                                                     "loss_gap", "rel_loss_gap")}
            rec["backprop"].update(diverged=True, reason=str(exc))
        rows.append(rec)
    return wide_rec, rows


def run_depth(cfg: DepthConfig, progress: bool = True) -> dict:
    cfg.validate()
    t0 = time.perf_counter()
    wides, rows, tasks = [], [], []
    total = len(cfg.seeds) * len(cfg.scales) * len(cfg.depths)
    with tqdm(total=total, desc="depth", disable=not progress, unit="(seed,scale,L)") as bar:
        for seed in cfg.seeds:
            task = _task(cfg, seed)
            tasks.append(task.describe())
            u = np.random.default_rng([seed, 7]).normal(size=cfg.dim)
            u /= np.linalg.norm(u)
            for scale in cfg.scales:
                for depth in cfg.depths:
                    wide_rec, new = measure_depth(cfg, seed, task, u, scale, depth)
                    wides.append(wide_rec)
                    rows.extend(new)
                    bar.update(1)
    return summarise(cfg, wides, rows, tasks, time.perf_counter() - t0)

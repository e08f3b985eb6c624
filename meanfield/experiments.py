"""Experiment runners that write JSON results: the limit checks (P1, P2: docs/glossary.md).

``run_limits`` measures three rates, each over several seeds:

- ``width_slope`` (P1, at initialisation): mean squared deviation of the output of an L-layer,
  width-N net with particles drawn i.i.d. from the Gaussian law ρ_{t_l}, from the exact
  width limit (quadrature, ``limits.WidthLimit``), against N. Predicted slope −1 (Monte
  Carlo / central limit theorem).
- ``width_slope_trained`` (P1, after training for a fixed time T = η·steps by mean-field
  gradient descent): deviation from a reference net of width N_ref trained the same way.
  The reference is the mean of two independent trained nets of width N_ref; its own
  O(1/N_ref) fluctuation is estimated from their difference and subtracted. Predicted slope −1
  (propagation of chaos at fixed T).
- ``depth_slope`` (P2): RMS error of the output of the L-layer net built from a fixed
  depth-indexed particle family (layer l at t = l/L) against the solution of the ODE
  dx/dt = g_t(x). Predicted −1 (explicit Euler is first order). The rate is asymptotic:
  the slope is fitted over L ≥ ``depth_fit_min`` (16); the slope over all depths and the
  local slopes between consecutive depths are stored beside it. (With relu or gelu the
  O(1/L²) term is large enough that slopes over L < 16 are visibly shallower than −1.)

Per seed, the deviation at each N (or L) is averaged over ``draws`` independent networks and
the slope is fitted in log-log; the interval is across seeds.
Does not hold: the imitation-versus-back-propagation comparisons (P3–P5).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm import tqdm

from gowide.stats import loglog_slope, slope_summary
from meanfield.dynamics import TrainConfig, train
from meanfield.limits import WidthLimit, solve_depth_limit
from meanfield.network import MeanFieldResNet
from meanfield.particles import GaussianParticleLaw
from meanfield.tasks import teacher_task

SLOPE_TOLERANCE = 0.1


@dataclass
class LimitsConfig:
    """Sizes of the limit checks. ``quick`` is the CI/laptop preset, ``full`` the committed run."""

    dim: int = 4
    activation: str = "tanh"
    scale: float = 1.5  # pre-activation scale of the law
    amplitude: float = 1.0  # residual amplitude of the law
    n_points: int = 256  # evaluation inputs x ~ N(0, I_d)
    # width at initialisation
    width_depth: int = 8
    widths: tuple[int, ...] = (16, 32, 64, 128, 256, 512, 1024)
    draws: int = 8
    # width after training
    train_widths: tuple[int, ...] = (16, 32, 64, 128, 256)
    train_draws: int = 4
    reference_width: int = 4096
    train_depth: int = 4
    train_steps: int = 200
    train_lr: float = 0.05
    n_train: int = 256
    task_difficulty: float = 2.0
    # depth
    depths: tuple[int, ...] = (4, 8, 16, 32, 64, 128, 256)
    depth_fit_min: int = 16  # the depth slope is fitted over L ≥ this (the asymptotic range)
    family_width: int = 64
    ode_rtol: float = 1e-10
    ode_atol: float = 1e-12
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    dtype: str = "float64"
    device: str = "cpu"

    @classmethod
    def quick(cls, **overrides) -> LimitsConfig:
        base = dict(widths=(16, 32, 64, 128, 256, 512), draws=16, train_widths=(16, 32, 64, 128),
                    train_draws=8, reference_width=4096, train_steps=100, train_lr=0.1,
                    n_points=128, n_train=128, depths=(4, 8, 16, 32, 64, 128),
                    family_width=32, seeds=(0, 1, 2, 3))
        base.update(overrides)
        return cls(**base)

    @classmethod
    def full(cls, **overrides) -> LimitsConfig:
        base = dict(widths=(16, 32, 64, 128, 256, 512, 1024, 2048), draws=32,
                    train_widths=(16, 32, 64, 128, 256), train_draws=6,
                    reference_width=4096, train_steps=300, train_lr=0.05,
                    seeds=(0, 1, 2, 3, 4, 5))
        base.update(overrides)
        return cls(**base)

    def validate(self) -> None:
        from meanfield.activations import ACTIVATIONS

        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")
        for name in ("widths", "train_widths", "depths"):
            values = getattr(self, name)
            if len(values) < 2 or min(values) < 1:
                raise ValueError(f"{name} needs at least two positive sizes, got {values}")
        if max(self.train_widths) * 4 > self.reference_width:
            raise ValueError("reference_width must be at least 4× the largest train width")
        if not self.seeds:
            raise ValueError("at least one seed is needed")

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)


def _law(cfg: LimitsConfig, seed: int) -> GaussianParticleLaw:
    return GaussianParticleLaw.random(cfg.dim, scale=cfg.scale, amplitude=cfg.amplitude,
                                      seed=seed)


def _readout(cfg: LimitsConfig, seed: int) -> np.ndarray:
    u = np.random.default_rng([seed, 1]).normal(size=cfg.dim)
    return u / np.linalg.norm(u)


def _layers_net(law, depth, width, rng, cfg, readout) -> MeanFieldResNet:
    a, w, b = law.sample_layers(depth, width, rng)
    return MeanFieldResNet.from_arrays(a, w, b, cfg.activation, readout,
                                       dtype=cfg.torch_dtype, device=cfg.device)


def width_at_init(cfg: LimitsConfig, seed: int, bar=None) -> dict:
    """Mean squared deviation from the quadrature width limit, per width; one seed."""
    law, u = _law(cfg, seed), _readout(cfg, seed)
    rng = np.random.default_rng([seed, 2])
    X = rng.normal(size=(cfg.n_points, cfg.dim))
    limit = WidthLimit(law, cfg.activation, readout=u)(X, cfg.width_depth).numpy()
    msd = []
    for width in cfg.widths:
        devs = []
        for _ in range(cfg.draws):
            out = _layers_net(law, cfg.width_depth, width, rng, cfg, u)(X)
            devs.append(float(np.mean((out - limit) ** 2)))
        msd.append(float(np.mean(devs)))
        if bar is not None:
            bar.update(1)
    return {"seed": seed, "widths": list(cfg.widths), "msd": msd,
            "slope": loglog_slope(cfg.widths, msd), "limit_mean_square": float(np.mean(limit**2))}


def width_after_training(cfg: LimitsConfig, seed: int, bar=None) -> dict:
    """Deviation of trained width-N nets from a trained wide reference; one seed."""
    law, u = _law(cfg, seed), _readout(cfg, seed)
    task = teacher_task(dim=cfg.dim, depth=cfg.train_depth, width=2048,
                        difficulty=cfg.task_difficulty, n_train=cfg.n_train,
                        n_test=cfg.n_points, seed=1000 + seed)
    tcfg = TrainConfig(steps=cfg.train_steps, lr=cfg.train_lr, eval_every=0, seed=seed)
    rng = np.random.default_rng([seed, 3])

    def trained_output(width):
        net = _layers_net(law, cfg.train_depth, width, rng, cfg, u)
        trained, _ = train(net, task.X_train, task.y_train, tcfg)
        return trained(task.X_test)

    refs = []
    for _ in range(2):
        refs.append(trained_output(cfg.reference_width))
        if bar is not None:
            bar.update(1)
    # The reference is the mean of two independent wide nets: its own deviation from the
    # limit, E‖F̄_ref − F_∞‖² = σ²/2 with σ² = E‖F_ref − F_∞‖² = E‖F_ref,1 − F_ref,2‖²/2.
    ref_pair = float(np.mean((refs[0] - refs[1]) ** 2))
    ref_noise = ref_pair / 4
    reference = (refs[0] + refs[1]) / 2
    raw, msd = [], []
    for width in cfg.train_widths:
        devs = [float(np.mean((trained_output(width) - reference) ** 2))
                for _ in range(cfg.train_draws)]
        raw.append(float(np.mean(devs)))
        msd.append(max(raw[-1] - ref_noise, 1e-300))
        if bar is not None:
            bar.update(1)
    return {"seed": seed, "widths": list(cfg.train_widths), "msd": msd, "msd_uncorrected": raw,
            "reference_noise": ref_noise, "slope": loglog_slope(cfg.train_widths, msd),
            "slope_uncorrected": loglog_slope(cfg.train_widths, raw),
            "training_time": tcfg.time, "task": task.describe()}


def depth_rate(cfg: LimitsConfig, seed: int, bar=None) -> dict:
    """RMS error of the L-layer net against the continuous-depth ODE solution; one seed."""
    law, u = _law(cfg, seed), _readout(cfg, seed)
    rng = np.random.default_rng([seed, 4])
    family = law.sample_family(cfg.family_width, rng)
    X = rng.normal(size=(cfg.n_points, cfg.dim))
    x1 = solve_depth_limit(family.field(cfg.activation), X, rtol=cfg.ode_rtol, atol=cfg.ode_atol)
    y_limit = x1 @ u
    rms = []
    for depth in cfg.depths:
        net = family.network(depth, cfg.activation, readout=u, dtype=cfg.torch_dtype,
                             device=cfg.device)
        rms.append(float(np.sqrt(np.mean((net(X) - y_limit) ** 2))))
        if bar is not None:
            bar.update(1)
    fit = [i for i, depth in enumerate(cfg.depths) if depth >= cfg.depth_fit_min]
    return {"seed": seed, "depths": list(cfg.depths), "rms": rms,
            "slope": loglog_slope([cfg.depths[i] for i in fit], [rms[i] for i in fit]),
            "slope_all_depths": loglog_slope(cfg.depths, rms),
            "local_slopes": [loglog_slope(cfg.depths[i:i + 2], rms[i:i + 2])
                             for i in range(len(rms) - 1)]}


def run_limits(cfg: LimitsConfig, progress: bool = True) -> dict:
    """Run the three rate checks over ``cfg.seeds``; returns the limits.json record."""
    cfg.validate()
    seeds = list(cfg.seeds)
    total = len(seeds) * (len(cfg.widths) + len(cfg.train_widths) + 2 + len(cfg.depths))
    start = time.perf_counter()
    with tqdm(total=total, desc="limits", disable=not progress, unit="size") as bar:
        init = [width_at_init(cfg, s, bar) for s in seeds]
        trained = [width_after_training(cfg, s, bar) for s in seeds]
        depth = [depth_rate(cfg, s, bar) for s in seeds]
    elapsed = time.perf_counter() - start
    return {
        "config": asdict(cfg),
        "seeds": seeds,
        "width_slope": slope_summary([r["slope"] for r in init], seeds, -1.0, SLOPE_TOLERANCE),
        "width_slope_trained": slope_summary([r["slope"] for r in trained], seeds, -1.0,
                                             SLOPE_TOLERANCE),
        "depth_slope": slope_summary([r["slope"] for r in depth], seeds, -1.0, SLOPE_TOLERANCE),
        "raw": {"width_init": init, "width_trained": trained, "depth": depth},
        "elapsed_seconds": elapsed,
    }

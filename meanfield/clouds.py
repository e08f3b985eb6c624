"""Particle clouds of a thin net's layers, before and after imitation and back-propagation.

A wide mean-field ResNet (the *teacher*) is trained by back-propagation on the task of
``compare`` (the ridge task by default); with the same seed and sizes it is the same net as
``compare``'s wide reference at that depth. A thin net of n particles per layer is drawn from
the same initial law and followed along two routes that start from that one cloud:

- ``init``: the thin net as drawn;
- ``imitation``: layerwise imitation of the teacher (teacher-forced by default), started from
  ``init`` (not from the subsampled warm start of ``compare``, so both routes share a start);
- ``backprop``: back-propagation from scratch on the task, started from ``init``, for as many
  particle-gradient evaluations as the imitation (same number of steps, same batch).

For a few chosen layers the record holds 2-D views of the particles θ = (a, w, b) ∈ R^{2d+1}:
every cloud is projected on the two leading principal directions of the teacher's particles
of that layer (centred at the teacher's mean; each axis signed so that its largest
coordinate is positive). The teacher's cloud is stored as a subsample of at most
``teacher_points`` particles.

Distances to the teacher, per layer, for each stage:

- ``energy_distance``: the energy distance between the thin layer's empirical measure and the
  teacher layer's (all its particles), in the Euclidean geometry of θ-space, the geometry in
  which mean-field gradient descent moves the particles:
  (2 E‖X − Y‖ − E‖X − X′‖ − E‖Y − Y′‖)^{1/2}, X ~ thin, Y ~ teacher, with the empirical means
  over all pairs (so it is a distance between the two finite measures). It does not quotient
  the symmetry θ ↦ −θ of odd activations.
- ``block_error``: δ_l of ``imitation.block_errors``, the RMS over test inputs of the
  difference of the thin and teacher blocks at the teacher's states: a distance between what
  the two layers compute, not where their particles are. It is what imitation minimises.

Beside them, ``floor``: the same distances for n particles drawn without replacement from the
teacher's own layer (mean over ``floor_draws`` draws). An n-particle cloud cannot be nearer
to the teacher's cloud than such a sample by more than its sampling spread, so this is the
scale of "as close as n particles get". The output deviation from the teacher and the test
losses are stored too.

What the theory says (docs/theory.md): imitation is gradient descent on J_l = δ_l², so δ_l
falls along imitation (Proposition 1 and its gradient flow). The minimisers of J_l are not
unique in particle space, so nothing predicts where the particles end up. Back-propagation
from the teacher's initial law with the teacher's step size is, for a thin net, a particle
approximation of the same mean-field flow as the teacher's training (§5.4), so its cloud is
expected near the teacher's at equal training time, with no such guarantee for δ_l.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm import tqdm

from meanfield.dynamics import TrainConfig, forward_flops, train
from meanfield.imitation import MODES, ImitationConfig, block_errors, imitate, subsample
from meanfield.network import MeanFieldResNet
from meanfield.setup import held_out_loss, init_net, make_task, rms, stream, wide_teacher

STAGES = ("init", "imitation", "backprop")
PROJECTION = ("the two leading principal directions of the teacher's particles θ = (a, w, b) of "
              "the layer, centred at their mean; each axis signed so that its largest "
              "coordinate is positive")
DIGITS = 4  # decimals kept for the stored 2-D coordinates


@dataclass
class CloudsConfig:
    dim: int = 8
    activation: str = "tanh"
    task: str = "ridge"  # as in compare: "ridge" or "teacher"
    task_seed: int | None = 0  # None: the task follows ``seed``
    difficulty: float = 8.0  # teacher task only
    n_train: int = 1024
    n_test: int = 1024
    init_scale: float = 1.0  # the initial particle law of the teacher and of the thin net
    init_amplitude: float = 1.0
    depth: int = 8
    wide_width: int = 512
    wide_steps: int = 200
    lr: float = 0.3  # back-propagation step η (teacher and thin net)
    thin_width: int = 16
    # The back-propagation route gets as many steps; equal to wide_steps in both presets, so
    # it trains for the teacher's own time lr · wide_steps.
    imitation_steps: int = 200
    imitation_lr: float = 0.5
    imitation_mode: str = "teacher_forced"
    layers: tuple[int, ...] = (0, 4, 7)  # layers whose clouds are stored and drawn
    teacher_points: int = 512  # stored subsample of each teacher layer's particles
    floor_draws: int = 32
    seed: int = 0

    @classmethod
    def quick(cls, **overrides) -> CloudsConfig:
        base = dict(n_train=256, n_test=256, wide_width=256, wide_steps=150,
                    imitation_steps=150, teacher_points=256, floor_draws=16)
        base.update(overrides)
        return cls(**base)

    @classmethod
    def full(cls, **overrides) -> CloudsConfig:
        """The defaults: well under a minute on one CPU core."""
        return cls(**overrides)

    @property
    def bp_steps(self) -> int:
        return self.imitation_steps

    def validate(self) -> None:
        if self.task not in ("ridge", "teacher"):
            raise ValueError(f"task must be 'ridge' or 'teacher', got {self.task!r}")
        if self.imitation_mode not in MODES:
            raise ValueError(f"imitation_mode must be one of {MODES}, got {self.imitation_mode!r}")
        for name in ("dim", "depth", "wide_width", "thin_width", "n_train", "n_test",
                     "floor_draws", "wide_steps", "imitation_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if self.thin_width > self.wide_width:
            raise ValueError(f"thin_width ({self.thin_width}) must not exceed wide_width "
                             f"({self.wide_width}): the floor subsamples the teacher")
        if self.teacher_points < 3:
            raise ValueError(f"teacher_points must be ≥ 3, got {self.teacher_points}")
        if not 1 <= len(self.layers) <= 4 or len(set(self.layers)) != len(self.layers):
            raise ValueError(f"layers must name 1 to 4 distinct layers, got {self.layers}")
        if any(not 0 <= layer < self.depth for layer in self.layers):
            raise ValueError(f"layers must lie in 0..{self.depth - 1}, got {self.layers}")
        if self.seed < 0:
            raise ValueError(f"seed must be ≥ 0, got {self.seed}")
        if not (self.lr > 0 and self.imitation_lr > 0):
            raise ValueError("lr and imitation_lr must be positive")


def teacher(cfg: CloudsConfig, task=None, progress: bool = False):
    """(teacher, its history): ``setup.wide_teacher``, the very net ``compare`` builds for the
    same seed, depth and set-up fields."""
    return wide_teacher(cfg, cfg.seed, cfg.depth, task, progress=progress)


def particles(net: MeanFieldResNet) -> torch.Tensor:
    """Every particle as a point θ = (a, w, b) of R^{2d+1}: shape (L, N, 2d+1)."""
    return torch.cat([net.a, net.w, net.b[..., None]], dim=-1).detach()


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """Energy distance between the empirical measures of the rows of x (n, k) and y (m, k)."""
    xy = torch.cdist(x, y).mean()
    xx = torch.cdist(x, x).mean()
    yy = torch.cdist(y, y).mean()
    return float(torch.sqrt(torch.clamp(2 * xy - xx - yy, min=0.0)))


def principal_plane(points: np.ndarray) -> dict:
    """The two leading principal directions of points (N, k), with a deterministic sign."""
    mean = points.mean(axis=0)
    _, s, vt = np.linalg.svd(points - mean, full_matrices=False)
    comps = vt[:2]
    signs = np.sign(comps[np.arange(2), np.abs(comps).argmax(axis=1)])
    comps = comps * signs[:, None]
    var = s**2
    return {"mean": mean, "components": comps,
            "explained_variance": var[:2] / var.sum()}


def _project(points: np.ndarray, plane: dict) -> dict:
    xy = np.round((points - plane["mean"]) @ plane["components"].T, DIGITS)
    return {"x": xy[:, 0].tolist(), "y": xy[:, 1].tolist()}


def _per_layer_energy(thin: MeanFieldResNet, teacher_theta: torch.Tensor) -> list[float]:
    th = particles(thin)
    return [energy_distance(th[l], teacher_theta[l]) for l in range(thin.depth)]


def run_clouds(cfg: CloudsConfig, progress: bool = True) -> dict:
    """Train the teacher, the two thin routes, measure the distances; the clouds.json record."""
    cfg.validate()
    t0 = time.perf_counter()
    with tqdm(total=5, desc="clouds", disable=not progress, unit="stage") as bar:
        bar.set_postfix_str("teacher")
        task = make_task(cfg, cfg.seed)
        teacher_net, teacher_hist = teacher(cfg, task, progress)
        bar.update(1)

        bar.set_postfix_str("imitation")
        thin0 = init_net(cfg, cfg.seed, cfg.depth, cfg.thin_width,
                         stream(cfg.seed, cfg.depth, "reference"))
        ic = ImitationConfig(steps=cfg.imitation_steps, lr=cfg.imitation_lr,
                             mode=cfg.imitation_mode, eval_every=0, seed=cfg.seed)
        imitated, imit_hist = imitate(thin0, teacher_net, task.X_train, ic, progress=progress)
        bar.update(1)

        bar.set_postfix_str("back-propagation")
        tc = TrainConfig(steps=cfg.bp_steps, lr=cfg.lr, eval_every=0, seed=cfg.seed)
        backprop, bp_hist = train(thin0, task.X_train, task.y_train, tc, progress=progress,
                                  desc="back-prop")
        bar.update(1)

        bar.set_postfix_str("distances")
        nets = {"init": thin0, "imitation": imitated, "backprop": backprop}
        teacher_theta = particles(teacher_net)
        teacher_out = teacher_net(task.X_test)
        energy = {k: _per_layer_energy(net, teacher_theta) for k, net in nets.items()}
        delta = {k: block_errors(net, teacher_net, task.X_test).tolist() for k, net in nets.items()}
        deviation = {k: rms(net(task.X_test), teacher_out) for k, net in nets.items()}
        losses = {k: held_out_loss(net, task) for k, net in nets.items()}
        rng = np.random.default_rng([cfg.seed, cfg.depth, 3])
        floor_e, floor_d, floor_dev = [], [], []
        for _ in range(cfg.floor_draws):
            sample = subsample(teacher_net, cfg.thin_width, rng)
            floor_e.append(_per_layer_energy(sample, teacher_theta))
            floor_d.append(block_errors(sample, teacher_net, task.X_test))
            floor_dev.append(rms(sample(task.X_test), teacher_out))
        energy["floor"] = np.mean(floor_e, axis=0).tolist()
        delta["floor"] = np.mean(floor_d, axis=0).tolist()
        deviation["floor"] = float(np.mean(floor_dev))
        losses["teacher"] = held_out_loss(teacher_net, task)
        bar.update(1)

        bar.set_postfix_str("clouds")
        rng = np.random.default_rng([cfg.seed, cfg.depth, 4])
        keep = np.sort(rng.choice(cfg.wide_width, size=min(cfg.teacher_points, cfg.wide_width),
                                  replace=False))
        layers = []
        for layer in cfg.layers:
            teacher_pts = teacher_theta[layer].cpu().numpy()
            plane = principal_plane(teacher_pts)
            layers.append({
                "layer": layer,
                "projection": {"mean": plane["mean"].tolist(),
                               "components": plane["components"].tolist(),
                               "explained_variance": plane["explained_variance"].tolist()},
                "teacher": _project(teacher_pts[keep], plane),
                "thin": {k: _project(particles(net)[layer].cpu().numpy(), plane)
                         for k, net in nets.items()},
                "energy_distance": {k: v[layer] for k, v in energy.items()},
                "block_error": {k: v[layer] for k, v in delta.items()},
            })
        bar.update(1)

    teacher_forward = forward_flops(len(task.y_train), cfg.depth, cfg.wide_width, cfg.dim)
    return {
        "config": asdict(cfg),
        "seed": cfg.seed,
        "task": task.describe(),
        "stages": list(STAGES),
        "coordinates": ([f"a{i}" for i in range(cfg.dim)] + [f"w{i}" for i in range(cfg.dim)]
                        + ["b"]),
        "projection": PROJECTION,
        "teacher_points": int(len(keep)),
        "layers": layers,
        "distances": {
            "energy_distance": energy,  # per layer, for each stage and the floor
            "block_error": delta,
            "mean_energy_distance": {k: float(np.mean(v)) for k, v in energy.items()},
            "mean_block_error": {k: float(np.mean(v)) for k, v in delta.items()},
            "output_deviation": deviation,  # RMS over test inputs, from the teacher's output
        },
        "test_loss": losses,
        "linear_loss": task.linear_loss,
        "budget": {
            "teacher": {"steps": cfg.wide_steps,
                        "particle_gradients": teacher_hist.particle_gradients,
                        "flops": teacher_hist.flops},
            "imitation": {"steps": cfg.imitation_steps,
                          "particle_gradients": imit_hist.particle_gradients,
                          "flops": imit_hist.flops + teacher_forward},
            "backprop": {"steps": cfg.bp_steps,
                         "particle_gradients": bp_hist.particle_gradients,
                         "flops": bp_hist.flops},
        },
        "elapsed_seconds": time.perf_counter() - t0,
    }

"""The shared set-up of the imitation-versus-back-propagation experiments (``compare``,
``clouds``): the task, the readout, the initial laws, the random streams and the wide teacher.

Both experiments read their set-up fields (``dim``, ``activation``, ``task``, ``task_seed``,
``difficulty``, ``n_train``, ``n_test``, ``init_scale``, ``init_amplitude``, ``wide_width``,
``wide_steps``, ``lr``) from their own config and pass it here, so that with equal fields
they build *the same* teacher: ``wide_teacher(cfg, seed, depth)`` is one function, not two
copies whose results agree only because integers do (``tests/test_setup.py`` checks it).

Initial laws (docs/theory.md §6.2):

- ``"shared"``: the teacher's own law, ``GaussianParticleLaw.random(seed=seed)``, with its
  depth-dependent means. A thin net drawn from it and trained with the teacher's step size
  follows, up to its O(n^{-1/2}) particle noise, the same mean-field flow as the teacher's
  training: it is the back-propagation baseline that already knows where the teacher started.
- ``"centred"``: a centred isotropic law with the same spreads (all means zero,
  w ~ N(0, s_w²/d·I), b ~ N(0, s_b²), a ~ N(0, s_a²·I)): the usual i.i.d. initialisation of a
  net that knows nothing of the teacher's law.

Random streams: every draw uses ``np.random.default_rng([seed, depth, ..., STREAM])`` with the
stream ids of ``STREAMS``, so one seed gives independent draws for independent roles.
Does not hold: training or imitation themselves (``dynamics``, ``imitation``).
"""

from __future__ import annotations

import numpy as np
import torch

from meanfield.dynamics import TrainConfig, train
from meanfield.network import MeanFieldResNet
from meanfield.particles import GaussianParticleLaw
from meanfield.tasks import Task, ridge_task, teacher_task

LAWS = ("shared", "centred")

# Stream ids of the random draws (the last entry of the generator's seed sequence).
STREAMS = {
    "wide": 1,          # the teacher's initial draw
    "reference": 2,     # back-propagation's width-limit reference (and clouds' thin start)
    "subsample": 3,     # which wide particles a thin warm start keeps
    "scratch": 5,       # back-propagation from scratch, thin
    "subsample_eff": 6,  # the efficiency experiment's warm start
    "readout": 7,       # the fixed readout u
    "fresh": 8,         # imitation from a fresh draw (not a subsample)
    "reference_2": 9,   # a second, independent width-limit reference
}


def make_task(cfg, seed: int) -> Task:
    """The regression task: one for all seeds unless ``cfg.task_seed`` is None."""
    task_seed = seed if cfg.task_seed is None else cfg.task_seed
    n_val = getattr(cfg, "n_val", 0)
    if cfg.task == "ridge":
        return ridge_task(dim=cfg.dim, n_train=cfg.n_train, n_test=cfg.n_test, seed=task_seed,
                          n_val=n_val)
    if cfg.task == "teacher":
        return teacher_task(dim=cfg.dim, depth=8, width=2048, difficulty=cfg.difficulty,
                            n_train=cfg.n_train, n_test=cfg.n_test, seed=task_seed,
                            n_val=n_val)
    raise ValueError(f"task must be 'ridge' or 'teacher', got {cfg.task!r}")


def readout(cfg, seed: int) -> np.ndarray:
    """The fixed unit readout u (d,) of every net of this seed."""
    u = np.random.default_rng([seed, STREAMS["readout"]]).normal(size=cfg.dim)
    return u / np.linalg.norm(u)


def initial_law(cfg, seed: int, law: str = "shared") -> GaussianParticleLaw:
    shared = GaussianParticleLaw.random(cfg.dim, scale=cfg.init_scale,
                                        amplitude=cfg.init_amplitude, seed=seed)
    if law == "shared":
        return shared
    if law == "centred":
        d = cfg.dim
        return GaussianParticleLaw(
            mu_w=np.zeros((2, d)), mu_b=np.zeros(2), m_a=np.zeros((2, d)),
            M=np.zeros((2, d, d)), s_w=shared.s_w, s_b=shared.s_b, s_a=shared.s_a)
    raise ValueError(f"law must be one of {LAWS}, got {law!r}")


def init_net(cfg, seed: int, depth: int, width: int, rng: np.random.Generator,
             law: str = "shared") -> MeanFieldResNet:
    """A depth × width net drawn from an initial law, with this seed's readout, float64."""
    a, w, b = initial_law(cfg, seed, law).sample_layers(depth, width, rng)
    return MeanFieldResNet.from_arrays(a, w, b, cfg.activation, readout(cfg, seed),
                                       dtype=torch.float64)


def stream(seed: int, depth: int, name: str, *more: int) -> np.random.Generator:
    """The generator of one role's draws; ``more`` separates draws within a role."""
    return np.random.default_rng([seed, depth, *more, STREAMS[name]])


def wide_teacher(cfg, seed: int, depth: int, task: Task | None = None, progress: bool = False):
    """(trained wide net, its training history): width ``cfg.wide_width`` from the shared law,
    trained by back-propagation for ``cfg.wide_steps`` steps of size ``cfg.lr``."""
    task = make_task(cfg, seed) if task is None else task
    net = init_net(cfg, seed, depth, cfg.wide_width, stream(seed, depth, "wide"))
    tc = TrainConfig(steps=cfg.wide_steps, lr=cfg.lr, eval_every=0, seed=seed)
    return train(net, task.X_train, task.y_train, tc, progress=progress, desc="teacher")


def held_out_loss(net: MeanFieldResNet, task: Task, split: str = "test") -> float:
    """(1/2)·MSE on the task's test (or validation) set, the training loss's scale."""
    X, y = (task.X_test, task.y_test) if split == "test" else (task.X_val, task.y_val)
    return 0.5 * float(np.mean((net(X) - y) ** 2))


def rms(a, b) -> float:
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))

"""Regression tasks for the mean-field experiments, each reported beside its best linear fit.

Holds:
- ``teacher_task``: targets y = u·x_L(x) of a random wide mean-field ResNet teacher whose
  particles come from a ``GaussianParticleLaw``; ``difficulty`` is the amplitude of the
  residual updates (the size of a). Near 0 the network is close to the identity map and the
  task is almost linear. Because each layer is an average over many neurons, the teacher's
  function is smooth, and it takes a large amplitude to move far from linear: with the
  default pre-activation scale 3, d = 8 and L = 8, difficulty 8 leaves 4–30% of the
  target's variance unexplained by the best linear fit, depending on the seed (the exact
  share is reported with every task);
- ``ridge_task``: a sum of m sharp ridge functions y = Σ_j c_j tanh(ω v_j·x + β_j) with random
  directions v_j; with m larger than a thin net's neuron count n·L it cannot be represented
  by the thin net, so width matters (unlike the smooth teacher above, which thin nets of a
  few particles per layer fit about as well as wide ones);
- ``friedman_task``: the classic Friedman #1 function,
  y = 10 sin(π x1 x2) + 20 (x3 − 1/2)² + 10 x4 + 5 x5 on x ~ U[0, 1]^d (d ≥ 5).
Targets are centred and scaled to unit variance on the training set; inputs of the
Friedman task are centred and scaled to unit variance per coordinate.

Every task carries ``linear_loss`` (test loss of the least-squares affine fit on the
training set) next to ``constant_loss`` (test loss of predicting the training mean), both
as (1/2)·MSE like the training loss, so a nearly linear task is seen for what it is.
Does not hold: classification tasks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from meanfield.particles import GaussianParticleLaw


@dataclass
class Task:
    name: str
    X_train: np.ndarray  # (n_train, d)
    y_train: np.ndarray  # (n_train,)
    X_test: np.ndarray
    y_test: np.ndarray
    info: dict = field(default_factory=dict)
    linear_loss: float = float("nan")
    constant_loss: float = float("nan")
    X_val: np.ndarray | None = None  # (n_val, d): a validation split, for stopping rules
    y_val: np.ndarray | None = None

    @property
    def dim(self) -> int:
        return self.X_train.shape[1]

    def describe(self) -> dict:
        return {
            "name": self.name,
            "dim": self.dim,
            "n_train": len(self.y_train),
            "n_test": len(self.y_test),
            "n_val": 0 if self.y_val is None else len(self.y_val),
            "linear_loss": self.linear_loss,
            "constant_loss": self.constant_loss,
            "linear_fraction_unexplained": self.linear_loss / self.constant_loss,
            **self.info,
        }


def best_linear_loss(X_train, y_train, X_test, y_test) -> float:
    """Test loss (1/2)·MSE of the least-squares affine fit on the training data."""
    A = np.hstack([X_train, np.ones((len(X_train), 1))])
    coef, *_ = np.linalg.lstsq(A, y_train, rcond=None)
    pred = np.hstack([X_test, np.ones((len(X_test), 1))]) @ coef
    return 0.5 * float(np.mean((pred - y_test) ** 2))


def _finish(name, X_tr, y_tr, X_te, y_te, info, X_val=None, y_val=None) -> Task:
    mu, sd = y_tr.mean(), y_tr.std()
    y_tr, y_te = (y_tr - mu) / sd, (y_te - mu) / sd
    task = Task(name, X_tr, y_tr, X_te, y_te, info)
    if X_val is not None and len(X_val):
        task.X_val, task.y_val = X_val, (y_val - mu) / sd
    task.linear_loss = best_linear_loss(X_tr, y_tr, X_te, y_te)
    task.constant_loss = 0.5 * float(np.mean((y_te - y_tr.mean()) ** 2))
    return task


def teacher_task(
    dim: int = 8,
    depth: int = 8,
    width: int = 4096,
    difficulty: float = 8.0,
    scale: float = 3.0,
    activation: str = "tanh",
    n_train: int = 512,
    n_test: int = 512,
    noise: float = 0.0,
    seed: int = 0,
    n_val: int = 0,
) -> Task:
    """Targets from a random wide mean-field ResNet teacher; x ~ N(0, I_d). ``n_val``
    validation points are drawn after everything else."""
    if difficulty < 0:
        raise ValueError(f"difficulty must be ≥ 0, got {difficulty}")
    rng = np.random.default_rng(seed)
    law = GaussianParticleLaw.random(dim, scale=scale, amplitude=difficulty,
                                     seed=int(rng.integers(2**31)))
    teacher = law.sample_family(width, rng).network(depth, activation)
    u = rng.normal(size=dim)
    u /= np.linalg.norm(u)
    X = rng.normal(size=(n_train + n_test, dim))
    y = teacher.states(X)[-1] @ u
    y = y + noise * y.std() * rng.normal(size=y.shape)
    X_val = rng.normal(size=(n_val, dim))
    y_val = teacher.states(X_val)[-1] @ u if n_val else np.zeros(0)
    y_val = y_val + noise * y.std() * rng.normal(size=y_val.shape)
    info = {"kind": "teacher", "depth": depth, "width": width, "difficulty": difficulty,
            "scale": scale,
            "activation": activation, "noise": noise, "seed": seed}
    return _finish(f"teacher(d={dim},L={depth},difficulty={difficulty:g})",
                   X[:n_train], y[:n_train], X[n_train:], y[n_train:], info, X_val, y_val)


def friedman_task(dim: int = 8, n_train: int = 512, n_test: int = 512, noise: float = 0.0,
                  seed: int = 0) -> Task:
    """The Friedman #1 regression function (only the first five coordinates matter)."""
    if dim < 5:
        raise ValueError(f"the Friedman #1 task needs dim ≥ 5, got {dim}")
    rng = np.random.default_rng(seed)
    U = rng.uniform(size=(n_train + n_test, dim))
    y = (10 * np.sin(np.pi * U[:, 0] * U[:, 1]) + 20 * (U[:, 2] - 0.5) ** 2
         + 10 * U[:, 3] + 5 * U[:, 4])
    y = y + noise * rng.normal(size=y.shape)
    X = (U - 0.5) * np.sqrt(12.0)  # unit variance per coordinate
    info = {"kind": "friedman1", "noise": noise, "seed": seed}
    return _finish(f"friedman1(d={dim})", X[:n_train], y[:n_train], X[n_train:], y[n_train:],
                   info)


def ridge_task(dim: int = 8, ridges: int = 64, frequency: float = 4.0, n_train: int = 1024,
               n_test: int = 1024, noise: float = 0.0, seed: int = 0, n_val: int = 0) -> Task:
    """y = Σ_j c_j tanh(ω v_j·x + β_j), v_j ~ N(0, I/d), c_j, β_j ~ N(0, 1); x ~ N(0, I_d).

    ``n_val`` validation points are drawn after everything else, so the train and test sets
    do not depend on it."""
    if ridges < 1 or frequency <= 0:
        raise ValueError("ridges must be ≥ 1 and frequency > 0")
    rng = np.random.default_rng(seed)
    V = rng.normal(size=(ridges, dim)) / np.sqrt(dim)
    c, beta = rng.normal(size=ridges), rng.normal(size=ridges)
    X = rng.normal(size=(n_train + n_test, dim))
    y = np.tanh(frequency * X @ V.T + beta) @ c  # (n,)
    y = y + noise * y.std() * rng.normal(size=y.shape)
    X_val = rng.normal(size=(n_val, dim))
    y_val = np.tanh(frequency * X_val @ V.T + beta) @ c
    y_val = y_val + noise * y.std() * rng.normal(size=y_val.shape)
    info = {"kind": "ridge", "ridges": ridges, "frequency": frequency, "noise": noise,
            "seed": seed}
    return _finish(f"ridge(d={dim},m={ridges},omega={frequency:g})", X[:n_train], y[:n_train],
                   X[n_train:], y[n_train:], info, X_val, y_val)


TASKS = {"teacher": teacher_task, "ridge": ridge_task, "friedman": friedman_task}

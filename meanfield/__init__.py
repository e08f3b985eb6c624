"""meanfield: particle simulations of mean-field residual networks (docs/theory.md §1).

Public API::

    from meanfield import MeanFieldResNet
    net = MeanFieldResNet.from_arrays(a, w, b, activation="tanh", readout=u)
    y = net(x)            # (B,) output u·x_L, or x_L (B, d) when readout is None
    xs = net.states(x)    # (L+1, B, d)

Modules: ``network`` (the discrete net), ``activations``, ``particles`` (Gaussian particle
laws and depth-indexed families), ``limits`` (width limit by quadrature, depth limit by ODE,
the linear closed form), ``dynamics`` (mean-field gradient descent), ``imitation``
(layerwise imitation and subsampled warm starts), ``tasks`` (teacher tasks and the best
linear fit), ``experiments`` (the runners behind ``gowide meanfield``).
"""

from meanfield.dynamics import History, TrainConfig, train
from meanfield.imitation import ImitationConfig, block_errors, imitate, subsample
from meanfield.limits import WidthLimit, linear_ode_solution, solve_depth_limit
from meanfield.network import MeanFieldResNet
from meanfield.particles import GaussianParticleLaw, ParticleFamily
from meanfield.tasks import Task, friedman_task, ridge_task, teacher_task

__all__ = [
    "GaussianParticleLaw",
    "History",
    "ImitationConfig",
    "MeanFieldResNet",
    "ParticleFamily",
    "Task",
    "TrainConfig",
    "WidthLimit",
    "block_errors",
    "friedman_task",
    "imitate",
    "linear_ode_solution",
    "solve_depth_limit",
    "ridge_task",
    "subsample",
    "teacher_task",
    "train",
]

# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 1 · A guided tour of mean-field residual networks
#
# A *mean-field* residual network treats every neuron as a **particle** $\theta = (a, w, b)$ with
# neuron function $f(x;\theta) = a\,\sigma(w\cdot x + b)$. A layer averages its $N$ particles and a
# residual step moves the state by $1/L$:
#
# $$x_{l+1} = x_l + \frac{1}{L}\,\frac{1}{N}\sum_{i=1}^{N}
#   a_{l,i}\,\sigma(w_{l,i}\cdot x_l + b_{l,i}),
# \qquad l = 0,\dots,L-1,\qquad \hat y = u\cdot x_L .$$
#
# Two limits sit behind this network: **infinite width** ($N\to\infty$: the average becomes an
# expectation over a particle distribution $\rho$) and **infinite depth** ($L\to\infty$: the
# residual steps become the ODE $\dot x = \mathbb E_{\rho_t} f(x;\theta)$, $t\in[0,1]$).
# This notebook builds a network, checks both limits and their rates, and watches particles move
# under training. Change the parameters in the next cell and run everything again.

# %% tags=["parameters"]
# Parameters to play with
D = 2            # state dimension (2 lets us draw the states)
L = 8            # depth
N = 256          # particles per layer
ACTIVATION = "tanh"   # tanh, relu, gelu or identity
SEED = 0
QUICK = True     # smaller sweeps (seconds); False for smoother curves

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from gowide.stats import loglog_slope
from meanfield import (
    GaussianParticleLaw,
    MeanFieldResNet,
    TrainConfig,
    WidthLimit,
    solve_depth_limit,
    teacher_task,
    train,
)

torch.set_num_threads(1)
rng = np.random.default_rng(SEED)
law = GaussianParticleLaw.random(D, scale=1.5, amplitude=1.0, seed=SEED)
net = law.sample_family(N, rng).network(L, ACTIVATION)
net

# %% [markdown]
# ## Particles and states
#
# `law` is a Gaussian particle distribution whose means drift with depth $t$; `net` holds $N$
# particles per layer drawn from it. `net.states(x)` returns all $L+1$ states. Below, a grid of
# inputs flows through the network: each curve is one input's path $x_0 \to x_L$.

# %%
g = np.linspace(-2, 2, 9)
x0 = np.array([[p, q] for p in g for q in g]) if D == 2 else rng.normal(size=(81, D))
xs = net.states(x0)            # (L+1, B, D)
fig, ax = plt.subplots(figsize=(4.5, 4.5))
for b in range(xs.shape[1]):
    ax.plot(xs[:, b, 0], xs[:, b, 1], color="0.6", lw=0.7)
ax.scatter(xs[0, :, 0], xs[0, :, 1], s=8, label="$x_0$")
ax.scatter(xs[-1, :, 0], xs[-1, :, 1], s=8, label="$x_L$")
ax.set_title("each input's path through the residual layers"); ax.legend(); plt.show()

# %% [markdown]
# ## The width limit: deviation $\propto 1/N$
#
# For this Gaussian law the infinite-width block is exact by one-dimensional quadrature
# (`WidthLimit`), so the deviation of a finite network is measured against the true limit, not
# against another sample. The central limit theorem predicts a mean squared deviation
# $\propto 1/N$: slope $-1$ in log-log.

# %%
u = np.ones(D) / np.sqrt(D)
X = rng.normal(size=(128, D))
limit = WidthLimit(law, ACTIVATION, readout=u)(X, L).numpy()
widths = [16, 32, 64, 128, 256] if QUICK else [16, 32, 64, 128, 256, 512, 1024, 2048]
draws = 8 if QUICK else 32
msd = []
for width in widths:
    devs = []
    for _ in range(draws):
        a, w, b = law.sample_layers(L, width, rng)
        finite = MeanFieldResNet.from_arrays(a, w, b, ACTIVATION, u)
        devs.append(np.mean((finite(X) - limit) ** 2))
    msd.append(np.mean(devs))
slope = loglog_slope(widths, msd)
plt.loglog(widths, msd, "o-", label=f"measured (slope {slope:.2f})")
plt.loglog(widths, msd[0] * widths[0] / np.array(widths), "k--", label="slope -1")
plt.xlabel("width N"); plt.ylabel("mean squared deviation"); plt.legend(); plt.show()

# %% [markdown]
# ## The depth limit: error $\propto 1/L$
#
# Fix $N$ particles whose parameters follow smooth paths $\theta_i(t)$ in depth. Layer $l$ of the
# $L$-layer network uses $\theta_i(l/L)$: that is the explicit Euler scheme for the ODE, whose
# error is first order. We solve the ODE with scipy (DOP853, rtol $10^{-10}$).

# %%
family = law.sample_family(64, rng)
x1 = solve_depth_limit(family.field(ACTIVATION), X)
depths = [16, 32, 64, 128] if QUICK else [16, 32, 64, 128, 256, 512]
err = [np.sqrt(np.mean((family.network(depth, ACTIVATION).states(X)[-1] - x1) ** 2))
       for depth in depths]
slope = loglog_slope(depths, err)
plt.loglog(depths, err, "o-", label=f"measured (slope {slope:.2f})")
plt.loglog(depths, err[0] * depths[0] / np.array(depths), "k--", label="slope -1")
plt.xlabel("depth L"); plt.ylabel("RMS error against the ODE"); plt.legend(); plt.show()

# %% [markdown]
# ## Watching particles move under training
#
# Back-propagation in the mean-field scaling moves each particle by
# $\eta\,N\,L\,\partial R/\partial\theta$, so a particle's velocity does not depend on $N$ or
# $L$. We train on a regression task (the best linear fit's loss is shown beside it) and draw one
# layer's particles, $(w_1, a\cdot u)$, before and after.

# %%
task = teacher_task(dim=D, depth=4, width=1024, difficulty=4.0, n_train=256, n_test=256,
                    seed=SEED)
print(f"task {task.name}: best linear fit loss {task.linear_loss:.3f}, "
      f"constant predictor {task.constant_loss:.3f}")
student = MeanFieldResNet.from_arrays(*law.sample_layers(4, 128, rng), ACTIVATION, u)
steps = 150 if QUICK else 600
trained, hist = train(student, task.X_train, task.y_train,
                      TrainConfig(steps=steps, lr=0.3, eval_every=10, record_every=steps),
                      X_test=task.X_test, Y_test=task.y_test)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
ax1.semilogy(hist.eval_steps, hist.test_loss, label="test loss")
ax1.axhline(task.linear_loss, color="k", ls="--", label="best linear fit")
ax1.set_xlabel("step"); ax1.legend()
layer = 0
for snap, label in zip(hist.snapshots, ["start", "end"], strict=False):
    ax2.scatter(snap["w"][layer, :, 0], snap["a"][layer] @ u, s=6, label=label)
ax2.set_xlabel("$w_1$"); ax2.set_ylabel("$a \\cdot u$"); ax2.set_title(f"layer {layer} particles")
ax2.legend(); plt.show()

# %% [markdown]
# ## Where to go next
#
# - `02_imitation_vs_backprop`: layerwise imitation of a wide network versus back-propagation
#   from scratch, with the stability bound (`gowide meanfield compare`).
# - `docs/theory.md`: the statements and their proofs.
# - `gowide meanfield limits --quick --out DIR`: the rate checks of this notebook, over seeds and
#   with intervals.

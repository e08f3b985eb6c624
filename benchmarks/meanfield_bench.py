"""Benchmarks of the mean-field simulator: the training step of ``meanfield.dynamics``.

* ``step_over_matmul`` — over a grid of (N particles per layer, L layers, batch B, state
  dimension d), the time of one training step (``dynamics.gradient_step``: forward, autograd
  backward, particle update) against the time of its matrix products alone: per layer the
  two products of the forward pass, (B,d)·(d,N) and (B,N)·(N,d), and the four of the
  backward pass, (N,B)·(B,d) twice, (B,d)·(d,N) and (B,N)·(N,d), on tensors of the same
  shapes. Those products are the work no implementation of the step avoids, so their time
  is the machine's practical limit; the ratio says how far the step is from it.
* ``scaling_exponents`` — log-log slopes of the step time against N, L and B (one factor
  varied at a time around the base point of the grid).
* ``speedup_over_loop`` — the step against :mod:`benchmarks.loop_reference` (Python loops
  over layers and particles) at N = 1024.

The grid is one-factor-at-a-time around a base point; float64 (the dtype the simulations run
in), tanh, a readout, no embedding. The ratio at the largest N is measured in float32 too.
"""

from __future__ import annotations

import torch

from benchmarks.loop_reference import loop_step
from benchmarks.timing import env, fit_slope, measure, paired_ratio
from meanfield.dynamics import gradient_step
from meanfield.network import MeanFieldResNet

LR = 1e-4  # small: the particles barely move over the timed steps

FULL = {
    "base": {"N": 4096, "L": 16, "batch": 256, "d": 16},
    "sweeps": {"N": [1024, 2048, 4096, 8192, 16384], "L": [4, 8, 16, 32, 64],
               "batch": [64, 128, 256, 512, 1024], "d": [4, 16, 64]},
    "reps": 7, "warmup": 2, "dtype": "float64",
    "loop": {"N": 1024, "batches": [16, 64], "reps": 3, "warmup": 1},
}
QUICK = {
    "base": {"N": 1024, "L": 4, "batch": 64, "d": 16},
    "sweeps": {"N": [256, 1024, 4096], "L": [2, 4, 8], "batch": [32, 64, 128], "d": [4, 16]},
    "reps": 3, "warmup": 1, "dtype": "float64",
    "loop": {"N": 1024, "batches": [16], "reps": 2, "warmup": 1},
}


def plan(quick: bool) -> dict:
    return QUICK if quick else FULL


def make_net(N: int, L: int, d: int, device="cpu", dtype=torch.float64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(L, N, d, generator=g, dtype=dtype)
    w = torch.randn(L, N, d, generator=g, dtype=dtype) / d**0.5
    b = torch.randn(L, N, generator=g, dtype=dtype)
    u = torch.randn(d, generator=g, dtype=dtype) / d**0.5
    net = MeanFieldResNet(a, w, b, "tanh", readout=u).to(device=device)
    for p in net.parameters():
        p.requires_grad_(True)
    return net


def make_batch(B: int, d: int, device="cpu", dtype=torch.float64, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(B, d, generator=g, dtype=dtype).to(device)
    Y = torch.randn(B, generator=g, dtype=dtype).to(device)
    return X, Y


def matmul_only(net: MeanFieldResNet, X: torch.Tensor):
    """The matrix products of one step, alone (see the module docstring); returns a callable."""
    B, N = X.shape[0], net.width
    with torch.no_grad():
        a = [t.detach() for t in net.a.unbind(0)]
        w = [t.detach() for t in net.w.unbind(0)]
        H = torch.randn(B, N, dtype=X.dtype, device=X.device)  # stands for σ(pre) and ∂pre
        G = torch.randn_like(X)  # stands for the gradient of a layer's output

    def run():
        with torch.no_grad():
            for a_l, w_l in zip(a, w, strict=True):
                X @ w_l.T  # pre-activations (B, N)
                H @ a_l  # layer output (B, d)
                H.T @ G  # ∂a (N, d)
                G @ a_l.T  # ∂σ (B, N)
                H.T @ X  # ∂w (N, d)
                H @ w_l  # ∂x (B, d)

    return run


def step_fn(net: MeanFieldResNet, X, Y):
    def run():
        return gradient_step(net, X, Y, LR)

    return run


def point(N: int, L: int, batch: int, d: int, reps: int, warmup: int, device="cpu",
          dtype: str = "float64") -> dict:
    """Step and matrix-product times at one grid point."""
    net = make_net(N, L, d, device, getattr(torch, dtype))
    X, Y = make_batch(batch, d, device, getattr(torch, dtype))
    t = measure({"step": step_fn(net, X, Y), "matmul": matmul_only(net, X)}, reps=reps,
                warmup=warmup, device=device)
    flops = 2.0 * 6 * L * batch * N * d
    return {"N": N, "L": L, "batch": batch, "d": d, "dtype": dtype,
            "step_s": t["step"]["median_s"], "matmul_s": t["matmul"]["median_s"],
            "ratio": paired_ratio(t, "step", "matmul"),
            "matmul_gflops_per_s": flops / t["matmul"]["median_s"] / 1e9,
            "timing": t}


def grid(quick: bool, device="cpu", progress=print) -> dict:
    """Every point of the plan's sweeps (each measured once), by sweep."""
    p = plan(quick)
    base = p["base"]
    rows: dict[tuple, dict] = {}
    sweeps: dict[str, list[tuple]] = {}
    for factor, values in p["sweeps"].items():
        sweeps[factor] = []
        for v in values:
            cfg = base | {factor: v}
            key = (cfg["N"], cfg["L"], cfg["batch"], cfg["d"])
            if key not in rows:
                rows[key] = point(*key, reps=p["reps"], warmup=p["warmup"], device=device,
                                  dtype=p["dtype"])
                progress(f"  meanfield N={key[0]} L={key[1]} batch={key[2]} d={key[3]}: "
                         f"step {rows[key]['step_s'] * 1e3:.2f} ms, "
                         f"ratio {rows[key]['ratio']:.2f}")
            sweeps[factor].append(key)
    top = sweeps["N"][-1]
    f32 = point(*top, reps=p["reps"], warmup=p["warmup"], device=device, dtype="float32")
    progress(f"  meanfield N={top[0]} L={top[1]} batch={top[2]} d={top[3]} float32: "
             f"step {f32['step_s'] * 1e3:.2f} ms, ratio {f32['ratio']:.2f}")
    return {"base": base, "rows": rows, "sweeps": sweeps, "reps": p["reps"],
            "warmup": p["warmup"], "dtype": p["dtype"], "float32_top": f32}


def step_over_matmul(g: dict, device="cpu") -> dict:
    rows = g["rows"]
    top = rows[g["sweeps"]["N"][-1]]
    by_d = {str(rows[k]["d"]): rows[k]["ratio"] for k in g["sweeps"]["d"]}
    return {
        "value": top["ratio"],
        "goal": "<= 2 (step time over matrix-product time, at the largest N)",
        "met": top["ratio"] <= 2.0,
        "at": {k: top[k] for k in ("N", "L", "batch", "d")},
        "ratio_by_d": by_d,
        "ratio_float32_at_largest_N": g["float32_top"]["ratio"],
        "dtype": g["dtype"],
        "what": f"dynamics.gradient_step (forward, autograd backward, update), {g['dtype']}, "
                "tanh, with readout; against the 6 matrix products per layer of the same shapes",
        "base": g["base"],
        "grid": [{k: v for k, v in r.items() if k != "timing"}
                 | {"step_q1_s": r["timing"]["step"]["q1_s"],
                    "step_q3_s": r["timing"]["step"]["q3_s"],
                    "calls_per_sample": r["timing"]["step"]["calls_per_sample"]}
                 for r in [*rows.values(), g["float32_top"]]],
        "reps": g["reps"], "warmup": g["warmup"],
        "env": env(device=str(device)),
    }


def scaling_exponents(g: dict, device="cpu") -> dict:
    rows = g["rows"]
    value, points = {}, {}
    for factor, name in (("N", "N"), ("L", "L"), ("batch", "batch")):
        keys = g["sweeps"][factor]
        xs = [rows[k][factor] for k in keys]
        ys = [rows[k]["step_s"] for k in keys]
        value[name] = fit_slope(xs, ys)
        points[name] = {"values": xs, "step_s": ys,
                        "local_slopes": [fit_slope(xs[i: i + 2], ys[i: i + 2])
                                         for i in range(len(xs) - 1)]}
    return {"value": value, "goal": "about 1 each (the step's work is linear in N, L and B)",
            "met": all(0.8 <= v <= 1.2 for v in value.values()),
            "met_if": "every slope within [0.8, 1.2]",
            "fit": "least-squares slope of log(step time) on log(factor) over the sweep, "
                   "the other factors at the base point",
            "base": g["base"], "points": points, "env": env(device=str(device))}


def speedup_over_loop(quick: bool, device="cpu", progress=print) -> dict:
    """The loop reference against the step at N = 1024 and the base L and d, at the base batch
    and at the smaller batches of the plan (the loop's cost per particle is mostly the fixed
    cost of its numpy calls, the step's grows with the batch: the speed-up falls as the batch
    grows)."""
    p = plan(quick)
    dtype = getattr(torch, p["dtype"])
    rows = []
    for B in sorted({p["base"]["batch"], *p["loop"]["batches"]}):
        cfg = p["base"] | {"N": p["loop"]["N"], "batch": B}
        N, L, d = cfg["N"], cfg["L"], cfg["d"]
        net = make_net(N, L, d, device, dtype)
        X, Y = make_batch(B, d, device, dtype)
        real = measure({"step": step_fn(net, X, Y)}, reps=p["reps"], warmup=p["warmup"],
                       device=device)["step"]
        ref = make_net(N, L, d, "cpu", dtype)
        arrays = [t.detach().numpy().copy() for t in (ref.a, ref.w, ref.b, ref.readout)]
        Xn, Yn = (t.numpy() for t in make_batch(B, d, "cpu", dtype))

        def loop(arrays=arrays, Xn=Xn, Yn=Yn):
            a, w, b, u = arrays
            return loop_step(a, w, b, Xn, Yn, LR, "tanh", readout=u)

        slow = measure({"loop": loop}, reps=p["loop"]["reps"], warmup=p["loop"]["warmup"],
                       min_sample_s=0.0)["loop"]
        speedup = slow["median_s"] / real["median_s"]
        progress(f"  loop reference, batch {B}: {slow['median_s']:.3f} s, step "
                 f"{real['median_s'] * 1e3:.2f} ms, speed-up {speedup:.1f}x")
        rows.append({"at": cfg, "speedup": speedup, "step_s": real["median_s"],
                     "loop_s": slow["median_s"], "step_timing": real, "loop_timing": slow})
    head = next(r for r in rows if r["at"]["batch"] == p["base"]["batch"])
    return {"value": head["speedup"],
            "goal": ">= 10 (loop reference time over step time, N = 1024, base batch)",
            "met": head["speedup"] >= 10.0, "at": head["at"],
            "step_s": head["step_s"], "loop_s": head["loop_s"],
            "by_batch": {str(r["at"]["batch"]): r["speedup"] for r in rows},
            "dtype": p["dtype"],
            "loop": {"implementation": "benchmarks/loop_reference.py: Python loops over layers "
                                       "and particles, numpy over the batch, same dtype, CPU",
                     "timed": f"every layer and particle (not scaled), {p['loop']['reps']} "
                              f"timed calls after {p['loop']['warmup'] + 1} untimed ones"},
            "rows": rows,
            "env": env(device=str(device))}

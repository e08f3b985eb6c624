"""The verdicts of ``compare``: P3, P4 and P5 decided by their intervals (docs/theory.md §6).

Every verdict is a record of ``stats.verdict``: ``value``, ``ci_low``, ``ci_high``,
``predicted``, ``rule`` and ``held``, where ``held`` is recomputed from the interval and the
rule (True, False, or None when the interval straddles the bound, or a gate failed). A rate
is a per-seed log-log slope; the tolerance on a slope is ``SLOPE_TOLERANCE``, fixed before
any run.

What is a verdict and what is not:

- P3 (a) imitation width rate, (b) imitation depth rate, (c) the subsampled start's width
  rate against its exact finite-population prediction; P4 back-propagation's width rate
  (noise-corrected); P5 the cost ratios per target, route, baseline and framing.
- The stability bound is a correctness check (a violation is a bug, Remark 3.5): it is
  reported in ``stability_check`` with its looseness and K's range, not as a verdict.
Does not hold: the measurements (``compare``, ``efficiency``).
"""

from __future__ import annotations

import math

import numpy as np

from gowide.stats import k_of_n, loglog_slope, mean_interval, verdict
from meanfield.efficiency import BASELINES, CHALLENGERS, ROUTES, curve_summary, paired_log_ratios

SLOPE_TOLERANCE = 0.1
MODES = ("teacher_forced", "progressive")
UNITS = ("particle_gradients", "flops")
FRAMINGS = {
    "wide_net_exists": "a trained wide net already exists: its training is not counted",
    "wide_net_trained_first": "the wide net must be trained first: its training is counted",
}


def subsample_prediction(widths, wide_width: int) -> float:
    """Log-log slope of E D² against n for n of N particles drawn without replacement:
    E D² ∝ (1/n)·(N − n)/(N − 1) (Proposition 6 with the finite-population factor)."""
    n = np.asarray(widths, dtype=float)
    return loglog_slope(n, (1.0 / n) * (wide_width - n) / (wide_width - 1))


def _per_seed_slopes(records, seeds, key_fn, xs_key, fixed_key, fixed_value, xs) -> list:
    slopes = []
    for seed in seeds:
        rows = {r[xs_key]: r for r in records if r["seed"] == seed and r[fixed_key] == fixed_value}
        ys = [key_fn(rows[x]) for x in xs]
        slopes.append(loglog_slope(xs, ys) if all(y > 0 for y in ys) else math.nan)
    return slopes


def _summary(values) -> dict:
    m, lo, hi = mean_interval(values)
    return {"value": m, "ci_low": lo, "ci_high": hi, "per_seed": [float(v) for v in values]}


def rate_verdicts(cfg, records: list, seeds: list) -> tuple[list, dict]:
    widths, depths = list(cfg.widths), list(cfg.depths)
    tol = SLOPE_TOLERANCE

    def width_slopes(fn):
        return _per_seed_slopes(records, seeds, fn, "width", "depth", cfg.width_depth, widths)

    def depth_slopes(fn):
        return _per_seed_slopes(records, seeds, fn, "depth", "width", cfg.depth_width, depths)

    imit_w = width_slopes(lambda r: r["teacher_forced"]["deviation"] ** 2)
    prog_w = width_slopes(lambda r: r["progressive"]["deviation"] ** 2)
    sub_w = width_slopes(lambda r: r["subsample_deviation"] ** 2)
    bp_w = width_slopes(lambda r: r["backprop"]["noise_corrected_sq_deviation"][-1])
    bp_w_raw = width_slopes(lambda r: r["backprop"]["deviation_from_own_limit"][-1] ** 2)
    imit_L = depth_slopes(lambda r: r["teacher_forced"]["deviation"])
    bp_L = depth_slopes(lambda r: r["backprop"]["deviation_from_own_limit"][-1])
    sub_pred = subsample_prediction(widths, cfg.wide_width)
    verdicts = [
        verdict(f"P3(b): mean squared imitation deviation against thin width n "
                f"(teacher-forced, L = {cfg.width_depth}): slope -1 or steeper",
                imit_w, -1.0, {"kind": "at_most", "bound": -1.0 + tol}),
        verdict(f"P3(c): imitation deviation against depth L (teacher-forced, "
                f"n = {cfg.depth_width}): flat in L, slope ≤ 0", imit_L, 0.0,
                {"kind": "at_most", "bound": tol}),
        verdict(f"P3(b): mean squared deviation of the subsampled start against n "
                f"(n of N = {cfg.wide_width} without replacement)", sub_w, sub_pred,
                {"kind": "within", "low": sub_pred - tol, "high": sub_pred + tol}),
        verdict(f"P4: back-propagation's mean squared deviation from its width limit against "
                f"n (L = {cfg.width_depth}, T = {cfg.lr * cfg.bp_steps:g}, reference "
                "noise subtracted)", bp_w, -1.0, {"kind": "within", "low": -1.0 - tol,
                                                  "high": -1.0 + tol}),
    ]
    slopes = {
        "imitation_width_slope": _summary(imit_w),
        "progressive_width_slope": _summary(prog_w),
        "subsample_width_slope": {**_summary(sub_w), "predicted": sub_pred},
        "backprop_width_slope": _summary(bp_w),
        "backprop_width_slope_uncorrected": _summary(bp_w_raw),
        "imitation_depth_slope": _summary(imit_L),
        "backprop_depth_slope": _summary(bp_L),  # reported without a prediction (§5.3)
    }
    return verdicts, slopes


def stability_check(records: list) -> dict:
    """The bound of Theorem 4 as what it is: a correctness check, with its looseness."""
    rows = [(r[m]["deviation"], r[m]["bound"], r[m]["K"], r[m]["bound_holds"],
             r["wide_output_rms"]) for r in records for m in MODES]
    dev, bound, K, holds, target_rms = (np.array(c, dtype=float) for c in zip(*rows, strict=True))
    ratio = bound / np.maximum(dev, 1e-300)
    return {
        "holds": k_of_n(int(holds.sum()), len(holds)),
        "holds_count": int(holds.sum()),
        "configurations": len(holds),
        "looseness_bound_over_measured": {"median": float(np.median(ratio)),
                                          "min": float(ratio.min()), "max": float(ratio.max())},
        "K": {"min": float(K.min()), "max": float(K.max())},
        "bound": {"min": float(bound.min()), "max": float(bound.max())},
        "bounds_above_wide_output_rms": k_of_n(int((bound > target_rms).sum()), len(bound)),
        "note": "a violation would be a bug (Remark 3.5); the bound is not a prediction",
    }


def efficiency_gates(eff: list) -> dict:
    """Preconditions of the P5 claims, each with its evidence; a failed gate is named in every
    verdict it blocks (``held`` None)."""
    n = len(eff)
    conv = sum(e["teacher_convergence"]["converged"] for e in eff)
    better = sum(e["wide_test_loss"] < e["baseline_loss"] for e in eff)
    margin = {bl: [e["routes"][bl]["selected_loss"] - e["wide_test_loss"] for e in eff]
              for bl in BASELINES}
    gates = {
        "teacher_converged": {"passed": conv == n, "evidence": k_of_n(conv, n),
                              "rule": eff[0]["teacher_convergence"]["rule"]},
        "teacher_beats_affine_fit": {"passed": better == n, "evidence": k_of_n(better, n)},
    }
    for bl in BASELINES:
        m, lo, hi = mean_interval(margin[bl])
        gates[f"teacher_beats_converged_{bl}"] = {
            "passed": bool(math.isfinite(lo) and lo > 0),
            "evidence": f"{bl} test loss at its best-by-validation step − teacher's: {m:.4g} "
                        f"[{lo:.4g}, {hi:.4g}]",
            "rule": "the 95% interval of the paired difference lies above 0"}
    return gates


def _failed(gates: dict, names: tuple) -> str | None:
    bad = [g for g in names if not gates[g]["passed"]]
    return ("gate failed: " + ", ".join(bad)) if bad else None


def final_quality(eff: list, gates: dict) -> list:
    """The paper's framing: test loss of the best-by-validation evaluation within equal step
    budgets, paired over seeds (held when the challenger's loss is lower: the interval of the
    difference below 0)."""
    out = []
    for ch in CHALLENGERS:
        for bl in BASELINES:
            diffs = [e["routes"][ch]["selected_loss"] - e["routes"][bl]["selected_loss"]
                     for e in eff]
            gate = _failed(gates, ("teacher_converged", f"teacher_beats_converged_{bl}"))
            v = verdict(f"selected test loss, {ch} − {bl} (equal step budgets)", diffs, 0.0,
                        {"kind": "at_most", "bound": 0.0}, gate=gate)
            v.update({"challenger": ch, "baseline": bl,
                      "baseline_converged": k_of_n(sum(
                          bool(e["routes"][bl]["convergence"]["converged"]) for e in eff),
                          len(eff))})
            out.append(v)
    return out


def efficiency_verdicts(cfg, eff: list) -> dict:
    """Per target, challenger route, back-propagation baseline, framing and unit: the paired
    log cost ratio over seeds, decided by its interval (held when its upper end < 0)."""
    gates = efficiency_gates(eff)
    blocking = _failed(gates, ("teacher_converged", "teacher_beats_affine_fit"))
    table = []
    for i, f in enumerate(cfg.eff_targets):
        warm_meets = {r: sum(e["routes"][r]["to_target"][i]["at_start"] for e in eff)
                      for r in ROUTES}
        for ch in CHALLENGERS:
            for bl in BASELINES:
                for framing in FRAMINGS:
                    for unit in UNITS:
                        p = paired_log_ratios(eff, ch, bl, i, unit,
                                              framing == "wide_net_trained_first")
                        c = p["counts"]
                        gate = blocking
                        if gate:
                            pass
                        elif warm_meets[ch]:
                            gate = (f"non-discriminating: the {ch} route's start already meets "
                                    f"the target on {k_of_n(warm_meets[ch], len(eff))} seeds")
                        elif c["baseline_only"]:
                            gate = None  # decided below: a loss on those seeds
                        elif len(p["log_ratios"]) < 2:
                            gate = (f"fewer than 2 seeds where a ratio exists "
                                    f"({k_of_n(len(p['log_ratios']), len(eff))})")
                        v = verdict(f"P5: log({ch} / {bl}) cost to target f = {f:g}, {unit}",
                                    p["log_ratios"], 0.0, {"kind": "at_most", "bound": 0.0},
                                    gate=gate)
                        if c["baseline_only"] and gate is None:
                            # the challenger failed where back-propagation succeeded
                            v["held"] = False
                            v["note"] = (f"{ch} did not reach the target within the step "
                                         f"budget on {k_of_n(c['baseline_only'], len(eff))} "
                                         "seeds where back-propagation did")
                        v.update({"target_fraction": f, "challenger": ch, "baseline": bl,
                                  "framing": framing, "unit": unit, "counts": c,
                                  "ratio": math.exp(v["value"]) if math.isfinite(v["value"])
                                  else math.nan,
                                  "ratio_ci": [math.exp(v["ci_low"]), math.exp(v["ci_high"])]
                                  if math.isfinite(v["ci_low"]) else [math.nan, math.nan]})
                        table.append(v)
    reached = {r: [k_of_n(sum(e["routes"][r]["to_target"][i]["reached"] for e in eff), len(eff))
                   for i in range(len(cfg.eff_targets))] for r in ROUTES}
    teacher = {u: _summary([e["teacher_cost"][u] for e in eff]) for u in UNITS}
    return {
        "setting": {"width": cfg.eff_width, "depth": cfg.eff_depth,
                    "targets": "wide loss + f × (best-affine-fit loss − wide loss)",
                    "fractions": list(cfg.eff_targets), "max_steps": cfg.eff_max_steps,
                    "finetune_after": cfg.eff_finetune_after},
        "framings": FRAMINGS,
        "target_losses": [_summary([e["targets"][i]["loss"] for e in eff])
                          for i in range(len(cfg.eff_targets))],
        "wide_test_loss": _summary([e["wide_test_loss"] for e in eff]),
        "baseline_loss": _summary([e["baseline_loss"] for e in eff]),
        "reached": reached,
        "routes": {r: curve_summary(eff, r) for r in ROUTES},
        "teacher_cost": teacher,
        "gates": gates,
        "final_quality": final_quality(eff, gates),
        "table": table,
    }


def summarise(cfg, records: list, eff: list, tasks: list[dict], elapsed: float) -> dict:
    from dataclasses import asdict

    seeds = list(cfg.seeds)
    verdicts, slopes = rate_verdicts(cfg, records, seeds)
    return {
        "config": asdict(cfg),
        "seeds": seeds,
        "tasks": tasks,  # one per seed, each with its best-linear-fit loss
        "grid": {"widths": list(cfg.widths), "width_depth": cfg.width_depth,
                 "depths": list(cfg.depths), "depth_width": cfg.depth_width},
        "slope_tolerance": SLOPE_TOLERANCE,
        **slopes,
        "stability_check": stability_check(records),
        "efficiency": efficiency_verdicts(cfg, eff),
        "verdicts": verdicts,
        "raw": {"configs": records, "efficiency": eff},
        "elapsed_seconds": elapsed,
    }

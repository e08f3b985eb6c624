"""Anytime curves: validation quality against cumulative training compute, in two framings.

The paper judges final quality at convergence. A user who must pay for the wide teacher also
asks what each route reaches for a given compute. From a run's ``result.json`` (its compute
ledger, in the order the stages ran, and the validation evaluations of its stages), a curve
is one point per validation evaluation of the model the method delivers:

* ``flops_with_teacher`` — every training FLOP spent up to that evaluation, the wide
  teacher's training included (the teacher is trained for this purpose);
* ``flops_teacher_exists`` — the same without the teacher's training (a wide teacher already
  exists); its forward passes inside later stages (imitation targets, KD) still count.

The evaluations of a ``wide`` stage are of the teacher, so they belong to the curve of
``teacher`` only. A method without evaluations during training (``ours_no_ft``) has one
point: its final validation score after all of its compute.

*Compute to reach scratch's converged quality*: per seed, the target is the validation score
of that seed's ``scratch`` run at its selected (best-by-validation) evaluation; a route
reaches it at its first evaluation at least as good, or "never" within its budget. The best
of ``scratch``'s own evaluations is a maximum over many noisy evaluations, so a route with
fewer evaluations has fewer chances to match it: the comparison leans towards ``scratch``.
Ratios to ``scratch``'s own compute to its best are paired by seed (geometric mean and 95%
t-interval of the log ratio) where every seed reached the target.
"""

from __future__ import annotations

import math

import numpy as np

from gowide.stats import mean_interval

# (validation key, "max" when higher is better)
MONITOR = {"resnet": ("accuracy", "max"), "bert": ("mlm_loss", "min")}


def curve(result: dict) -> dict:
    """The anytime curve of one run (module docstring): lists ``step`` (within its stage),
    ``stage``, ``flops_with_teacher``, ``flops_teacher_exists`` and ``value``."""
    key, _ = MONITOR[result["task"]]
    entries = result["compute"]["entries"]
    out = {"stage": [], "step": [], "flops_with_teacher": [], "flops_teacher_exists": [],
           "value": []}
    spent, teacher = 0, 0  # before the current stage: all FLOPs, the teacher's training
    stages = result.get("stages", {})
    order = list(dict.fromkeys(e["stage"] for e in entries))
    for name in order:
        rows = [e for e in entries if e["stage"] == name]
        record = stages.get(name, {})
        own = name != "wide" or result["final_model"] == "wide"
        if own and record.get("evaluations"):
            per_step = sum(e["flops_per_step"] for e in rows if e["phase"] == "train")
            for ev in record["evaluations"]:
                total = spent + ev["step"] * per_step
                out["stage"].append(name)
                out["step"].append(ev["step"])
                out["flops_with_teacher"].append(total)
                out["flops_teacher_exists"].append(total - teacher)
                out["value"].append(ev[key])
        cost = sum(e["flops"] for e in rows)
        spent += cost
        if name == "wide":
            teacher += cost
    if not out["value"]:  # no evaluations during training: the final model only
        val = result["metrics"].get("val") or {}
        if result["task"] == "bert":
            val = (result["metrics"].get("mlm") or {}).get("val") or {}
        if key in val:
            out["stage"].append("final")
            out["step"].append(None)
            out["flops_with_teacher"].append(spent)
            out["flops_teacher_exists"].append(spent - teacher)
            out["value"].append(val[key])
    return out


def _target(result: dict) -> float | None:
    """The validation score of a ``scratch`` run at its selected evaluation."""
    key, _ = MONITOR[result["task"]]
    record = next(iter(result.get("stages", {}).values()), {})
    selected = record.get("selected")
    return None if selected is None else selected[key]


def first_reach(c: dict, target: float, mode: str) -> dict | None:
    """Where a curve first reaches ``target`` (None: never)."""
    for i, v in enumerate(c["value"]):
        if (v >= target) if mode == "max" else (v <= target):
            return {"index": i, "value": v, "flops_with_teacher": c["flops_with_teacher"][i],
                    "flops_teacher_exists": c["flops_teacher_exists"][i]}
    return None


def _mean_curve(curves: list[dict]) -> dict:
    """Pointwise mean and std over seeds of curves with the same evaluation schedule (cut to
    the shortest)."""
    n = min(len(c["value"]) for c in curves)
    values = np.array([c["value"][:n] for c in curves], dtype=float)
    return {"flops_with_teacher": [float(np.mean([c["flops_with_teacher"][i] for c in curves]))
                                   for i in range(n)],
            "flops_teacher_exists": [float(np.mean([c["flops_teacher_exists"][i]
                                                    for c in curves])) for i in range(n)],
            "value_mean": values.mean(axis=0).tolist(),
            "value_std": (values.std(axis=0, ddof=1) if len(curves) > 1
                          else np.zeros(n)).tolist(),
            "seeds": len(curves)}


def summarise(task: str, results: dict[tuple[str, int], dict], methods: list[str],
              seeds: list[int]) -> dict | None:
    """``compare.json``'s ``anytime`` entry: per method the mean curve and, where ``scratch``
    ran, the compute to reach its converged quality in both framings. None without curves."""
    key, mode = MONITOR[task]
    curves = {m: {s: curve(results[(m, s)]) for s in seeds
                  if (m, s) in results and results[(m, s)]["compute"].get("entries")}
              for m in methods}
    curves = {m: c for m, c in curves.items() if c and all(v["value"] for v in c.values())}
    if not curves:
        return None
    out = {"metric": f"val {key}", "mode": mode, "methods": {}, "target": None}
    targets = {}
    if "scratch" in methods:
        targets = {s: _target(results[("scratch", s)]) for s in seeds
                   if ("scratch", s) in results}
        targets = {s: t for s, t in targets.items() if t is not None}
        if targets:
            out["target"] = {
                "rule": "per seed, the validation score of scratch at its selected "
                        "(best-by-validation) evaluation; a route reaches it at its first "
                        "evaluation at least as good",
                "per_seed": targets, "mean": float(np.mean(list(targets.values())))}
    for m, per_seed in curves.items():
        rec = {"curve": _mean_curve(list(per_seed.values()))}
        if targets and m != "teacher":  # the teacher is not a route to a thin model
            reach = {s: first_reach(per_seed[s], targets[s], mode)
                     for s in per_seed if s in targets}
            rec["reach"] = {"per_seed": reach,
                            "reached": sum(r is not None for r in reach.values()),
                            "seeds": len(reach)}
            for frame in ("flops_with_teacher", "flops_teacher_exists"):
                got = [r[frame] for r in reach.values() if r is not None]
                rec["reach"][f"{frame}_mean"] = float(np.mean(got)) if got else None
        out["methods"][m] = rec
    base = out["methods"].get("scratch", {}).get("reach", {}).get("per_seed")
    if base:
        for m, rec in out["methods"].items():
            if "reach" not in rec or m == "scratch":
                continue
            for frame in ("flops_with_teacher", "flops_teacher_exists"):
                if rec["reach"]["reached"] < rec["reach"]["seeds"]:
                    rec["reach"][f"{frame}_ratio_to_scratch"] = None
                    continue
                pairs = [(r[frame], base[s][frame]) for s, r in rec["reach"]["per_seed"].items()
                         if base.get(s) is not None]
                if not pairs:
                    rec["reach"][f"{frame}_ratio_to_scratch"] = None
                    continue
                logs = [math.log(a / b) for a, b in pairs]
                mean, lo, hi = mean_interval(logs)
                rec["reach"][f"{frame}_ratio_to_scratch"] = {
                    "geometric_mean": math.exp(mean),
                    "interval": None if math.isnan(lo) else [math.exp(lo), math.exp(hi)]}
    return out

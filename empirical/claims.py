"""The claims of an empirical comparison and ``compare.json``'s content (:func:`summarise`).

The claims (docs/glossary.md), each a paired comparison on the same seeds::

    C1  ours > scratch      improvement interval above 0
    C2  ours >= deeper      improvement interval above -margin   (non-inferiority; resnet)
    C3  ours > kd           improvement interval above 0         (imitation adds over KD)
    C4  ours ~ larger       improvement interval above -margin   (bert: the ~3x-size model)

The improvement of ``ours`` over a baseline on one seed is ``ours - baseline`` for an
accuracy and ``(baseline - ours) / baseline`` for a perplexity (a relative reduction); its
interval is the 95% Student-t interval across seeds. The margins are fixed here, before any
run: one accuracy point, and 5% of perplexity. A claim with fewer than two seeds, or with a
method missing, is reported with ``held = null``; a failed gate (``empirical.gates``) leaves
every claim unjudged.

For the text task, the unigram baseline of the masked-LM loss (each run's
``metrics.mlm.unigram``) is reported beside every method's validation masked-LM loss: a
top-level ``unigram`` entry and, per method, ``vs_unigram`` (whether every seed sits at least
``UNIGRAM_BAR`` = 0.5 nats below it, the bar this package sets for a converged model).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from empirical import anytime
from empirical.gates import check_gates, gate_facts
from empirical.methods import METHODS
from gowide.stats import mean_interval

MARGINS = {"accuracy": 0.01, "perplexity": 0.05}

# The bar for the text family: a converged masked-LM model's validation loss sits at
# least this many nats below the unigram baseline's (metrics["mlm"]["unigram"]).
UNIGRAM_BAR = 0.5


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # accuracy (higher is better) | perplexity (lower is better)
    label: str


METRICS = {
    "resnet": [Metric("test_accuracy", "accuracy", "test accuracy")],
    "bert": [Metric("mlm_perplexity", "perplexity", "masked-LM perplexity (val)"),
             Metric("downstream_accuracy", "accuracy", "Rotten Tomatoes test accuracy")],
}

# (id, statement, baseline, rule) — rule: better (interval above 0) | noninferior (above -margin)
CLAIMS = {
    "resnet": [("C1", "ours beats the thin net trained normally", "scratch", "better"),
               ("C2", "ours is at least as good as the deeper net", "deeper", "noninferior"),
               ("C3", "imitation adds over output distillation alone", "kd", "better")],
    "bert": [("C1", "ours beats the thin net trained normally", "scratch", "better"),
             ("C3", "imitation adds over output distillation alone", "kd", "better"),
             ("C4", "ours is comparable to the ~3x-size model (C2 for text)", "deeper",
              "noninferior")],
}


def metric_values(result: dict) -> dict[str, float]:
    """The compared metrics of one run's ``result.json``."""
    m = result["metrics"]
    if result["task"] == "bert":
        return {"mlm_perplexity": math.exp(m["mlm"]["val"]["mlm_loss"]),
                "mlm_loss": m["mlm"]["val"]["mlm_loss"],
                "mlm_accuracy": m["mlm"]["val"]["mlm_accuracy"],
                "downstream_accuracy": m["downstream"]["test"]["accuracy"]}
    return {"test_accuracy": m["test"]["accuracy"], "val_accuracy": m["val"]["accuracy"]}


def improvement(ours: float, base: float, kind: str) -> float:
    return ours - base if kind == "accuracy" else (base - ours) / base


def _stats(values: list[float]) -> dict:
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0}


def summarise(task: str, preset: str, seeds: list[int], methods: list[str],
              results: dict[tuple[str, int], dict]) -> dict:
    """``compare.json``'s content from the per-run results."""
    per_method = {}
    for m in methods:
        rows = []
        for s in seeds:
            if (m, s) not in results:  # only with compare's only_finished
                continue
            r = results[(m, s)]
            c = r["compute"]
            rows.append({"seed": s, "metrics": metric_values(r),
                         "train_flops": c["train_flops"],
                         "teacher_flops": c.get("teacher_flops", 0),
                         "student_flops": c.get("student_flops", c["train_flops"]),
                         "train_wall_s": c.get("train_wall_s"),
                         "teacher_wall_s": c.get("teacher_wall_s"),
                         "steps_matched": (c.get("matched_to") or {}).get("steps"),
                         "params": r["params"].get(r["final_model"]),
                         "gate_facts": gate_facts(r)})
        names = rows[0]["metrics"].keys()
        per_method[m] = {
            "description": METHODS[m].description,
            "per_seed": rows,
            "mean": {k: _stats([r["metrics"][k] for r in rows])["mean"] for k in names},
            "std": {k: _stats([r["metrics"][k] for r in rows])["std"] for k in names},
            "compute": {k: _stats([r[k] for r in rows])["mean"]
                        for k in ("train_flops", "teacher_flops", "student_flops",
                                  "train_wall_s", "teacher_wall_s")},
            "params": rows[0]["params"],
        }
    gate_rows = check_gates(task, per_method)
    failed = [g["gate"] for g in gate_rows if g["passed"] is False]
    pilot_rows = None
    if len(seeds) > 1:  # the gates on the first seed alone, as compare --pilot checks them
        first_only = {m: rec | {"per_seed": [r for r in rec["per_seed"] if r["seed"] == seeds[0]]}
                      for m, rec in per_method.items()}
        pilot_rows = check_gates(task, first_only)
        failed += [f"pilot {g['gate']}" for g in pilot_rows if g["passed"] is False]
    claims = []
    for cid, statement, base, rule in CLAIMS[task]:
        for metric in METRICS[task]:
            claim = _claim(cid, statement, base, rule, metric, per_method, seeds)
            if failed:
                note = f"gate failed: {', '.join(failed)}"
                claim |= {"held": None,
                          "note": "; ".join(n for n in (note, claim.get("note")) if n)}
            claims.append(claim)
    first = next(results[(m, sd)] for sd in seeds for m in methods if (m, sd) in results)
    unigram = (first["metrics"].get("mlm") or {}).get("unigram") if task == "bert" else None
    if unigram is not None:
        for rec in per_method.values():
            rec["vs_unigram"] = _vs_unigram(rec, unigram)
    config = dict(first["config"])
    config.pop("method")
    config.pop("seed")
    out = {"task": task, "preset": preset, "seeds": list(seeds), "methods": per_method,
            "claims": claims, "margins": MARGINS, "gates": gate_rows, "gates_failed": failed,
            "pilot_gates": pilot_rows,
            "anytime": anytime.summarise(task, results, methods, list(seeds)),
            "metrics": [m.__dict__ for m in METRICS[task]],
            "config": config, "data": first["data"],
            "provenance": first["provenance"]}
    if unigram is not None:
        out["unigram"] = unigram | {"bar_nats": UNIGRAM_BAR}
    return out


def _vs_unigram(rec: dict, unigram: dict) -> dict:
    """Per method: its mean validation masked-LM loss beside the unigram baseline's, and
    whether every seed is at least ``UNIGRAM_BAR`` nats below it."""
    losses = [r["metrics"]["mlm_loss"] for r in rec["per_seed"]]
    gaps = [unigram["loss"] - v for v in losses]
    return {"mlm_loss": float(np.mean(losses)), "unigram_loss": unigram["loss"],
            "nats_below_unigram": float(np.mean(gaps)),
            "min_nats_below_unigram": float(min(gaps)),
            "below_bar": bool(min(gaps) >= UNIGRAM_BAR)}


def _claim(cid, statement, base, rule, metric: Metric, per_method: dict, seeds) -> dict:
    row = {"claim": cid, "statement": statement, "method": "ours", "baseline": base,
           "metric": metric.name, "rule": rule,
           "margin": MARGINS[metric.kind] if rule == "noninferior" else 0.0,
           "improvement": ("ours - baseline" if metric.kind == "accuracy"
                           else "(baseline - ours) / baseline")}
    if "ours" not in per_method or base not in per_method:
        return row | {"measured": None, "interval": None, "per_seed": None, "held": None,
                      "note": f"needs methods ours and {base}"}
    ours = {r["seed"]: r["metrics"][metric.name] for r in per_method["ours"]["per_seed"]}
    other = {r["seed"]: r["metrics"][metric.name] for r in per_method[base]["per_seed"]}
    seeds = [s for s in seeds if s in ours and s in other]
    diffs = [improvement(ours[s], other[s], metric.kind) for s in seeds]
    mean, lo, hi = mean_interval(diffs)
    held = None if math.isnan(lo) else bool(lo > -row["margin"])
    note = "needs at least two seeds" if held is None else ""
    return row | {"measured": mean, "interval": [lo, hi], "per_seed": diffs, "held": held,
                  "wins": sum(d > 0 for d in diffs), "seeds": len(diffs), "note": note}

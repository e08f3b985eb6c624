"""``gowide empirical compare``: every method on several seeds, and the paper's claims tested.

For each seed every method runs through :func:`empirical.runner.run` into
``OUT/runs/<method>/seed<s>/``; the methods that share their first stages (the wide teacher,
and for ``ours``, ``ours_no_ft`` and ``ours_labels_only`` the imitation too) train them once
through a stage cache in ``OUT/cache/``. A finished run (its ``result.json`` written with the
same configuration) is not run again, so an interrupted comparison continues where it stopped.

The claims (docs/glossary.md), each a paired comparison on the same seeds::

    C1  ours > scratch      improvement interval above 0
    C2  ours >= deeper      improvement interval above -margin   (non-inferiority; resnet)
    C3  ours > kd           improvement interval above 0         (imitation adds over KD)
    C4  ours ~ larger       improvement interval above -margin   (bert: the ~3x-size model)

The improvement of ``ours`` over a baseline on one seed is ``ours - baseline`` for an
accuracy and ``(baseline - ours) / baseline`` for a perplexity (a relative reduction); its
interval is the 95% Student-t interval across seeds. The margins are fixed here, before any
run: one accuracy point, and 5% of perplexity. A claim with fewer than two seeds, or with a
method missing, is reported with ``held = null``.

For the text task, the unigram baseline of the masked-LM loss (each run's
``metrics.mlm.unigram``) is reported beside every method's validation masked-LM loss: a
top-level ``unigram`` entry and, per method, ``vs_unigram`` (whether every seed sits at least
``UNIGRAM_BAR`` = 0.5 nats below it, the bar this package sets for a converged model).

Outputs: ``OUT/compare.json`` (per method: per-seed metrics and compute, mean, std; per claim:
claim, measured, interval, held) and ``OUT/compare.md`` (the tables); the command line then
draws the figures of ``figures/fig_empirical.py`` into ``OUT/figures/`` from them.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from empirical import anytime
from empirical.config import build_config, same_config
from empirical.methods import METHODS, get_method
from empirical.runner import run
from gowide.atomic import write_json, write_text
from gowide.errors import UsageError
from gowide.stats import mean_interval

MARGINS = {"accuracy": 0.01, "perplexity": 0.05}

# The bar for the text family: a converged masked-LM model's validation loss sits at
# least this many nats below the unigram baseline's (metrics["mlm"]["unigram"]).
UNIGRAM_BAR = 0.5

# Gates: the conditions under which a comparison can test the claims at all,
# fixed here before any run. teacher_margin: the wide teacher beats the thin net trained from
# scratch on validation by at least this (accuracy: points as a fraction; text: masked-LM
# nats); scratch_converged: every seed's scratch run met its convergence rule
# (train.convergence) and, where scratch_2x ran, doubling scratch's steps changed validation
# by less than "doubling" (0.3 accuracy point; for text 0.01 masked-LM nats, a
# choice of this package); block_error: every block's thin-mode relative error after stage 2
# of ours is at most this above the least error its interface width allows (its floor,
# stages.error_floor: 0 where thin and wide widths agree, so the gate is then the plain
# "error <= 0.05"), on every seed. A thin block whose output is c channels wide, mapped
# linearly into a teacher's C > c, cannot go below the teacher's variance outside its top c
# principal components; a gate on the plain error would then fail whatever stage 2 does, and
# test nothing about it. A gate that fails leaves every claim unjudged (held = null, the gate
# named); a gate that cannot be checked (a method missing, no validation during training) is
# reported as not checked and judges nothing. With several seeds the gates are also checked
# on the first seed alone (the pilot): a pilot gate that fails leaves the claims unjudged
# too, as it would have stopped the comparison (compare --pilot).
GATES = {"teacher_margin": {"resnet": 0.01, "bert": 0.1},
         "doubling": {"resnet": 0.003, "bert": 0.01}, "block_error": 0.05}


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


def _gate_facts(result: dict) -> dict:
    """What the gates read from one run: its validation score in the teacher-margin gate's
    units (higher is better), the convergence verdict of its last training stage, and the
    largest thin-mode block error after stage 2."""
    m = result["metrics"]
    score = (-m["mlm"]["val"]["mlm_loss"] if result["task"] == "bert"
             else m["val"]["accuracy"])
    verdicts = [v.get("converged") for n, v in (result.get("convergence") or {}).items()
                if n != "downstream"]
    errors = (result.get("imitation_block_errors") or {}).get("thin") or {}
    stage2 = next((r for r in result.get("stages", {}).values() if "block_errors" in r), {})
    floors = stage2.get("block_error_floors") or {}
    excess = [e - floors.get(b, 0.0) for b, e in errors.items()]
    return {"val_score": score, "converged": verdicts[-1] if verdicts else None,
            "max_block_error": max(errors.values()) if errors else None,
            "max_block_error_floor": max(floors.values()) if floors else None,
            "max_block_error_excess": max(excess) if excess else None}


def improvement(ours: float, base: float, kind: str) -> float:
    return ours - base if kind == "accuracy" else (base - ours) / base


def parse_methods(text: str | None) -> list[str]:
    if not text:
        return list(METHODS)
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise UsageError("--methods: give a comma-separated list of method names")
    for n in names:
        get_method(n)
    return list(dict.fromkeys(names))


def _run_dir(out: Path, method: str, seed: int) -> Path:
    return out / "runs" / method / f"seed{seed}"


def _check_readable(result: dict) -> None:
    """Read from one run's result what the summary and the anytime curves read (raises what
    a damaged result makes them raise), before the result is taken as finished."""
    values = metric_values(result)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values.values()):
        raise TypeError("a compared metric is not a number")
    _gate_facts(result)
    c = result["compute"]
    for key in ("train_flops", "teacher_flops", "student_flops"):
        if key in c and (isinstance(c[key], bool) or not isinstance(c[key], (int, float))):
            raise TypeError(f"compute.{key} is not a number")
    result["params"].get(result["final_model"])
    anytime.curve(result)


def _finished(run_dir: Path, cfg) -> dict | None:
    path = run_dir / "result.json"
    if not path.exists():
        return None
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(result, dict) or not all(
                isinstance(result.get(k), dict) for k in ("config", "metrics", "compute",
                                                          "stages")):
            raise ValueError("not a complete result of 'empirical run'")
        _check_readable(result)
    except (OSError, ValueError, RecursionError, KeyError, TypeError, IndexError,
            AttributeError, ArithmeticError) as exc:  # damaged: the run is done again
        reason = (str(exc).strip().splitlines() or [""])[0][:200]
        print(f"gowide: warning: {path} cannot be reused ({type(exc).__name__}: {reason}); "
              "the run is done again", file=sys.stderr)
        return None
    return result if same_config(result["config"], cfg) else None


def _run_seed(task: str, preset: str, seed: int, methods: list[str], out: Path,
              overrides: list[str], fields: dict, progress: bool,
              keep_checkpoints: bool, only_finished: bool = False
              ) -> dict[tuple[str, int], dict]:
    """Every method on one seed, in order (they share its stage cache); finished runs are
    read back, not run again. ``only_finished``: run nothing; a method without a finished
    run on this seed is left out."""
    results = {}
    for m in methods:
        cfg = build_config(task, m, preset, overrides, seed=seed, **fields)
        run_dir = _run_dir(out, m, seed)
        result = _finished(run_dir, cfg)
        if result is None and only_finished:
            continue
        if result is None:
            result = run(cfg, run_dir, resume=True, progress=progress, preset=preset,
                         cache_dir=out / "cache" / f"seed{seed}")
            if not keep_checkpoints:
                shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        results[(m, seed)] = result
    if not keep_checkpoints:
        shutil.rmtree(out / "cache" / f"seed{seed}", ignore_errors=True)
    return results


def _seed_job(args) -> dict:
    """One seed in a worker process of ``--jobs`` (one torch thread, no progress bars)."""
    import torch

    torch.set_num_threads(1)
    return _run_seed(*args)


def run_compare(task: str, preset: str, seeds: list[int], out: str | Path,
                methods: list[str] | None = None, overrides: list[str] = (),
                progress: bool = True, keep_checkpoints: bool = False, jobs: int = 1,
                pilot: bool = False, only_finished: bool = False, **fields) -> dict:
    """Run every method on every seed (skipping finished runs) and write the comparison.

    ``jobs`` > 1 runs that many seeds at once, each in its own one-thread process (the
    methods of one seed stay in one process, which trains their shared stages once).
    ``pilot``: run the first seed alone, check the gates (:func:`check_gates`) on it, and stop
    there, writing the comparison of that seed, when one fails. ``only_finished``: train
    nothing, and write the comparison of the runs already finished in ``out`` (a method
    missing on some seeds is reported on the seeds it has; one missing on all is left out;
    a claim is judged on the seeds where both of its methods ran)."""
    start = time.perf_counter()
    out = Path(out)
    methods = methods or list(METHODS)
    # Build every configuration first, so a bad flag fails before anything runs.
    configs = {(m, s): build_config(task, m, preset, overrides, seed=s, **fields)
               for s in seeds for m in methods}
    if jobs > 1 and any(c.threads != 1 for c in configs.values()):
        raise UsageError("--jobs > 1 runs one-thread processes: set --threads 1 "
                         "(or threads = 1 in the preset)")
    results: dict[tuple[str, int], dict] = {}
    bar = tqdm(total=len(seeds), desc=f"compare {task} (seeds)", disable=not progress)
    todo = list(seeds)
    stopped = None
    if only_finished:
        for sd in todo:
            results |= _run_seed(task, preset, sd, methods, out, list(overrides), fields,
                                 False, True, only_finished=True)
        todo, pilot = [], False
        if not results:
            raise UsageError(f"{out}: no finished run of these methods and seeds to compare")
        methods = [m for m in methods if any(k[0] == m for k in results)]
    if pilot:
        first = todo.pop(0)
        results |= _run_seed(task, preset, first, methods, out, list(overrides), fields,
                             progress, keep_checkpoints)
        bar.update()
        pilot_summary = summarise(task, preset, [first], methods, results)
        if pilot_summary["gates_failed"]:
            stopped = (f"stopped after the pilot seed {first}: gate failed: "
                       f"{', '.join(pilot_summary['gates_failed'])}")
            todo = []
    if jobs > 1 and len(todo) > 1:
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        work = [(task, preset, s, methods, out, list(overrides), fields, False,
                 keep_checkpoints) for s in todo]
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            for done in pool.map(_seed_job, work):
                results |= done
                bar.update()
    else:
        for s in todo:
            results |= _run_seed(task, preset, s, methods, out, list(overrides), fields,
                                 progress, keep_checkpoints)
            bar.update()
    bar.close()
    if not keep_checkpoints:
        shutil.rmtree(out / "cache", ignore_errors=True)
    ran = sorted({s for _, s in results})
    summary = summarise(task, preset, ran, methods, results)
    summary["wall_s"] = time.perf_counter() - start
    summary["jobs"] = jobs
    if stopped:
        summary["stopped"] = stopped
    write_outputs(summary, out)
    return summary


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
                         "gate_facts": _gate_facts(r)})
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


def check_gates(task: str, per_method: dict) -> list[dict]:
    """The gates of :data:`GATES` on the per-seed rows of :func:`summarise`: each with its
    threshold, the measured value (and per seed), and ``passed`` (True, False, or None when
    it cannot be checked, with the reason)."""
    def facts(method):
        rows = per_method.get(method, {}).get("per_seed", [])
        return {r["seed"]: r.get("gate_facts") or {} for r in rows}

    rows = []
    teacher, scratch, ours = facts("teacher"), facts("scratch"), facts("ours")
    threshold = GATES["teacher_margin"][task]
    unit = "masked-LM nats" if task == "bert" else "validation accuracy"
    row = {"gate": "teacher_margin", "statement": f"teacher beats scratch by >= {threshold:g} "
           f"({unit}, mean over seeds)", "threshold": threshold}
    common = sorted(set(teacher) & set(scratch))
    if not common:
        rows.append(row | {"measured": None, "passed": None,
                           "note": "needs methods teacher and scratch"})
    else:
        margins = [teacher[s]["val_score"] - scratch[s]["val_score"] for s in common]
        measured = sum(margins) / len(margins)
        rows.append(row | {"measured": measured, "per_seed": margins,
                           "passed": bool(measured >= threshold)})
    threshold = GATES["doubling"][task]
    row = {"gate": "scratch_converged", "statement": "every seed's scratch run met its "
           "convergence rule (train.convergence), and twice its steps (scratch_2x) change "
           f"validation by less than {threshold:g} (mean over seeds), where measured",
           "threshold": threshold}
    verdicts = [f.get("converged") for f in scratch.values()]
    doubled = facts("scratch_2x")
    common = sorted(set(doubled) & set(scratch))
    checks, evidence = [], {}
    if verdicts and all(v is not None for v in verdicts):
        checks.append(all(verdicts))
        evidence["rule_per_seed"] = verdicts
    if common:
        changes = [doubled[s]["val_score"] - scratch[s]["val_score"] for s in common]
        change = sum(changes) / len(changes)
        checks.append(abs(change) < threshold)
        evidence |= {"doubling_change": change, "doubling_per_seed": changes}
    if not checks:
        rows.append(row | {"measured": None, "passed": None,
                           "note": "needs method scratch with validation during training "
                                   "(scratch.eval_every > 0), or methods scratch and "
                                   "scratch_2x"})
    else:
        measured = (evidence["doubling_change"] if common  # else: the share converged
                    else sum(verdicts) / len(verdicts))
        rows.append(row | {"measured": measured, **evidence, "passed": all(checks)})
    threshold = GATES["block_error"]
    row = {"gate": "block_error", "statement": f"every block's thin-mode relative error after "
           f"stage 2 of ours <= its floor + {threshold:g} (floor: the least error its "
           "interface width allows, 0 where widths agree)", "threshold": threshold}
    excess = [f.get("max_block_error_excess", f.get("max_block_error")) for f in ours.values()]
    if not excess or any(e is None for e in excess):
        rows.append(row | {"measured": None, "passed": None,
                           "note": "needs method ours with its block errors"})
    else:
        errors = [f.get("max_block_error") for f in ours.values()]
        floors = [f.get("max_block_error_floor") for f in ours.values()]
        extra = ({"floor_per_seed": floors, "note": "largest error floor of a narrower "
                  "interface (stages.error_floor) per seed"} if any(floors) else {})
        rows.append(row | {"measured": max(excess), "per_seed": excess,
                           "max_error_per_seed": errors, **extra,
                           "passed": bool(max(excess) <= threshold)})
    return rows


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


def _fmt(x: float, kind: str) -> str:
    return f"{x:.4f}" if kind == "accuracy" else f"{x:.2f}"


def _flops(x: float) -> str:
    return f"{x:.3g}"


def _anytime_lines(a: dict | None) -> list[str]:
    """The table of compute to reach scratch's converged quality (both framings)."""
    if not a or not a.get("target"):
        return []
    lines = ["", f"Compute to reach scratch's converged quality ({a['metric']} "
             f"{a['target']['mean']:.4g}, mean over seeds; per seed: scratch's best-by-"
             "validation score), training FLOPs at the first evaluation at least as good, "
             "mean over the seeds that reached it, and paired ratio to scratch's "
             "[95% interval]:", "",
             "| method | teacher trained for this | teacher already exists |", "|---|---|---|"]
    for m, rec in a["methods"].items():
        if "reach" in rec:
            lines.append(f"| `{m}` | {anytime.describe(rec['reach'], 'flops_with_teacher')} | "
                         f"{anytime.describe(rec['reach'], 'flops_teacher_exists')} |")
    return lines


def _gate_cell(g: dict) -> str:
    """'measured | passed' of one gate row."""
    value = "–" if g["measured"] is None else f"{g['measured']:.4g}"
    if g.get("max_error_per_seed"):
        value += f" (largest error {max(g['max_error_per_seed']):.3g}"
        if g.get("floor_per_seed"):
            value += f", largest floor {max(f or 0 for f in g['floor_per_seed']):.3g}"
        value += ")"
    passed = {True: "yes", False: "**no**", None: f"not checked ({g.get('note')})"}[g["passed"]]
    return f"{value} | {passed}"


def markdown(summary: dict) -> str:
    """The method table and the claim table."""
    metrics = [Metric(**m) for m in summary["metrics"]]
    n = len(summary["seeds"])
    lines = [f"### {summary['task']} ({summary['preset']} preset, {n} seeds, mean ± std)", "",
             "| method | " + " | ".join(m.label for m in metrics)
             + " | training FLOPs (teacher incl.) | of which teacher | wall s | params |",
             "|---" * (len(metrics) + 5) + "|"]
    for name, rec in summary["methods"].items():
        cells = [f"{_fmt(rec['mean'][m.name], m.kind)} ± {_fmt(rec['std'][m.name], m.kind)}"
                 for m in metrics]
        c = rec["compute"]
        wall = c["train_wall_s"]
        k = len(rec["per_seed"])
        label = f"`{name}`" + (f" ({k} of {n} seeds)" if k != n else "")
        lines.append(f"| {label} | " + " | ".join(cells)
                     + f" | {_flops(c['train_flops'])} | {_flops(c['teacher_flops'])}"
                     + f" | {wall:.0f} | {rec['params']:,} |")
    lines += ["", "| claim | metric | improvement of ours, mean [95% interval] | seeds ours ahead "
              "| rule | held |", "|---|---|---|---|---|---|"]
    for c in summary["claims"]:
        if c["measured"] is None:
            lines.append(f"| {c['claim']} {c['statement']} | {c['metric']} | – | – | "
                         f"{c['rule']} | n/a ({c['note']}) |")
            continue
        lo, hi = c["interval"]
        interval = "–" if math.isnan(lo) else f"[{lo:+.4f}, {hi:+.4f}]"
        rule = "interval > 0" if c["rule"] == "better" else f"interval > −{c['margin']:g}"
        held = {True: "yes", False: "**no**", None: f"n/a ({c['note']})"}[c["held"]]
        lines.append(f"| {c['claim']} {c['statement']} (vs `{c['baseline']}`) | {c['metric']} "
                     f"| {c['measured']:+.4f} {interval} | {c['wins']} of {c.get('seeds', n)} "
                     f"| {rule} | "
                     f"{held} |")
    unigram = summary.get("unigram")
    if unigram is not None:
        bar = unigram.get("bar_nats", UNIGRAM_BAR)
        lines += ["", f"Unigram baseline (training-token frequencies): validation masked-LM "
                  f"loss {unigram['loss']:.4f} nats, perplexity {unigram['perplexity']:.1f}.",
                  "", f"| method | val masked-LM loss | nats below unigram (mean, least "
                  f"seed) | ≥ {bar:g} nats below on every seed |", "|---|---|---|---|"]
        for name, rec in summary["methods"].items():
            v = rec.get("vs_unigram")
            if v is None:
                continue
            lines.append(f"| `{name}` | {v['mlm_loss']:.4f} | {v['nats_below_unigram']:+.3f}, "
                         f"{v['min_nats_below_unigram']:+.3f} | "
                         f"{'yes' if v['below_bar'] else '**no**'} |")
    gates = summary.get("gates") or []
    pilot = {g["gate"]: g for g in summary.get("pilot_gates") or []}
    if gates:
        head = "| gate | measured | passed |" + (" pilot seed |" if pilot else "")
        lines += ["", head, "|---" * (4 if pilot else 3) + "|"]
        for g in gates:
            cells = [_gate_cell(g)] + ([_gate_cell(pilot[g["gate"]])] if pilot else [])
            lines.append(f"| {g['gate']}: {g['statement']} | " + " | ".join(cells) + " |")
        if summary.get("gates_failed"):
            lines += ["", f"A gate failed ({', '.join(summary['gates_failed'])}): the claims "
                      "of this comparison are not judged."]
    if summary.get("stopped"):
        lines += ["", f"The comparison {summary['stopped']}."]
    lines += _anytime_lines(summary.get("anytime"))
    lines += ["", "Improvement: ours − baseline for accuracies, (baseline − ours) / baseline for "
              "perplexities; paired by seed. FLOPs counted with FlopCounterMode (matrix "
              "products, convolutions, attention), the wide teacher's training included for "
              "every method that uses it."]
    return "\n".join(lines) + "\n"


def write_outputs(summary: dict, out: Path) -> None:
    """``compare.json`` and ``compare.md``; the figures are drawn from them by the callers
    (``figures.fig_empirical.draw``): computation does not import plotting."""
    write_json(out / "compare.json", summary)
    write_text(out / "compare.md", markdown(summary))


def load_summary(out: str | Path) -> dict:
    path = Path(out) / "compare.json"
    if not path.exists():
        raise UsageError(f"{path} not found: run 'gowide empirical compare --out {out}' first")
    from gowide.paths import read_json

    return read_json(path, "comparison")


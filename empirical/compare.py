"""``gowide empirical compare``: every method on several seeds, and the paper's claims tested.

For each seed every method runs through :func:`empirical.methods.run` into
``OUT/runs/<method>/seed<s>/``; the methods that share their first stages (the wide teacher,
and for ``ours``, ``ours_no_ft`` and ``ours_labels_only`` the imitation too) train them once
through a stage cache in ``OUT/cache/``. A finished run (its ``result.json`` written with the
same configuration) is not run again, so an interrupted comparison continues where it stopped.

The claims (DESIGN §3), each a paired comparison on the same seeds::

    C1  ours > scratch      improvement interval above 0
    C2  ours >= deeper      improvement interval above -margin   (non-inferiority; resnet)
    C3  ours > kd           improvement interval above 0         (imitation adds over KD)
    C4  ours ~ larger       improvement interval above -margin   (bert: the ~3x-size model)

The improvement of ``ours`` over a baseline on one seed is ``ours - baseline`` for an
accuracy and ``(baseline - ours) / baseline`` for a perplexity (a relative reduction); its
interval is the 95% Student-t interval across seeds. The margins are fixed here, before any
run: one accuracy point, and 5% of perplexity. A claim with fewer than two seeds, or with a
method missing, is reported with ``held = null``.

Outputs: ``OUT/compare.json`` (per method: per-seed metrics and compute, mean, std; per claim:
claim, measured, interval, held), ``OUT/compare.md`` (the tables) and the figures of
``figures/fig_empirical.py`` in ``OUT/figures/``.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from empirical.config import build_config
from empirical.methods import METHODS, get_method, run
from gowide.atomic import write_json, write_text
from gowide.errors import UsageError
from meanfield.stats import mean_interval

MARGINS = {"accuracy": 0.01, "perplexity": 0.05}


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
                "mlm_accuracy": m["mlm"]["val"]["mlm_accuracy"],
                "downstream_accuracy": m["downstream"]["test"]["accuracy"]}
    return {"test_accuracy": m["test"]["accuracy"], "val_accuracy": m["val"]["accuracy"]}


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


def _finished(run_dir: Path, cfg) -> dict | None:
    path = run_dir / "result.json"
    if not path.exists():
        return None
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    same = {k: v for k, v in result.get("config", {}).items() if k != "device"}
    want = {k: v for k, v in cfg.to_dict().items() if k != "device"}
    return result if same == want else None


def run_compare(task: str, preset: str, seeds: list[int], out: str | Path,
                methods: list[str] | None = None, overrides: list[str] = (),
                progress: bool = True, keep_checkpoints: bool = False, **fields) -> dict:
    """Run every method on every seed (skipping finished runs) and write the comparison."""
    start = time.perf_counter()
    out = Path(out)
    methods = methods or list(METHODS)
    # Build every configuration first, so a bad flag fails before anything runs.
    configs = {(m, s): build_config(task, m, preset, overrides, seed=s, **fields)
               for s in seeds for m in methods}
    results: dict[tuple[str, int], dict] = {}
    bar = tqdm(total=len(configs), desc=f"compare {task}", disable=not progress)
    for s in seeds:
        for m in methods:
            cfg = configs[(m, s)]
            run_dir = _run_dir(out, m, s)
            bar.set_postfix_str(f"{m} seed {s}")
            result = _finished(run_dir, cfg)
            if result is None:
                result = run(cfg, run_dir, resume=True, progress=progress, preset=preset,
                             cache_dir=out / "cache" / f"seed{s}")
                if not keep_checkpoints:
                    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
            results[(m, s)] = result
            bar.update()
        if not keep_checkpoints:
            shutil.rmtree(out / "cache" / f"seed{s}", ignore_errors=True)
    bar.close()
    if not keep_checkpoints:
        shutil.rmtree(out / "cache", ignore_errors=True)
    summary = summarise(task, preset, seeds, methods, results)
    summary["wall_s"] = time.perf_counter() - start
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
            r = results[(m, s)]
            c = r["compute"]
            rows.append({"seed": s, "metrics": metric_values(r),
                         "train_flops": c["train_flops"],
                         "teacher_flops": c.get("teacher_flops", 0),
                         "student_flops": c.get("student_flops", c["train_flops"]),
                         "train_wall_s": c.get("train_wall_s"),
                         "teacher_wall_s": c.get("teacher_wall_s"),
                         "steps_matched": (c.get("matched_to") or {}).get("steps"),
                         "params": r["params"].get(r["final_model"])})
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
    claims = []
    for cid, statement, base, rule in CLAIMS[task]:
        for metric in METRICS[task]:
            claims.append(_claim(cid, statement, base, rule, metric, per_method, seeds))
    first = results[(methods[0], seeds[0])]
    config = dict(first["config"])
    config.pop("method")
    config.pop("seed")
    return {"task": task, "preset": preset, "seeds": list(seeds), "methods": per_method,
            "claims": claims, "margins": MARGINS,
            "metrics": [m.__dict__ for m in METRICS[task]],
            "config": config, "data": first["data"],
            "provenance": first["provenance"]}


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
    diffs = [improvement(ours[s], other[s], metric.kind) for s in seeds]
    mean, lo, hi = mean_interval(diffs)
    held = None if math.isnan(lo) else bool(lo > -row["margin"])
    note = "needs at least two seeds" if held is None else ""
    return row | {"measured": mean, "interval": [lo, hi], "per_seed": diffs, "held": held,
                  "wins": sum(d > 0 for d in diffs), "note": note}


def _fmt(x: float, kind: str) -> str:
    return f"{x:.4f}" if kind == "accuracy" else f"{x:.2f}"


def _flops(x: float) -> str:
    return f"{x:.3g}"


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
        lines.append(f"| `{name}` | " + " | ".join(cells)
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
                     f"| {c['measured']:+.4f} {interval} | {c['wins']} of {n} | {rule} | "
                     f"{held} |")
    lines += ["", "Improvement: ours − baseline for accuracies, (baseline − ours) / baseline for "
              "perplexities; paired by seed. FLOPs counted with FlopCounterMode (matrix "
              "products, convolutions, attention), the wide teacher's training included for "
              "every method that uses it."]
    return "\n".join(lines) + "\n"


def write_outputs(summary: dict, out: Path) -> None:
    from figures import fig_empirical

    write_json(out / "compare.json", summary)
    write_text(out / "compare.md", markdown(summary))
    fig_empirical.draw(out, out / "figures")


def load_summary(out: str | Path) -> dict:
    path = Path(out) / "compare.json"
    if not path.exists():
        raise UsageError(f"{path} not found: run 'gowide empirical compare --out {out}' first")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not valid JSON ({exc})") from None


"""Markdown of an empirical comparison's ``compare.json``: ``DIR/compare.md``, what
``gowide empirical compare`` prints, and the body of its section in ``REPORT.md``.

The tables: methods (metrics, compute, parameters), claims (improvement of ours with its
interval), the unigram baseline (text family), gates (with the pilot seed's), and the compute
each method needs to reach scratch's converged quality (``compare.json``'s ``anytime``).
"""

from __future__ import annotations

import math
from pathlib import Path

from gowide.atomic import write_text
from gowide.report import held_cell

# The bar recorded as unigram.bar_nats; files written before it was recorded used this one
# (empirical.claims.UNIGRAM_BAR).
UNIGRAM_BAR = 0.5


def _fmt(x: float, kind: str) -> str:
    return f"{x:.4f}" if kind == "accuracy" else f"{x:.2f}"


def _flops(x: float) -> str:
    return f"{x:.3g}"


def reach_cell(reach: dict | None, frame: str) -> str:
    """'1.2e14 (5 of 5)' or 'never (0 of 5)' for a table cell."""
    if not reach:
        return "–"
    k, n = reach["reached"], reach["seeds"]
    mean = reach.get(f"{frame}_mean")
    if not k:
        return f"never ({k} of {n})"
    text = f"{mean:.3g} ({k} of {n})"
    ratio = reach.get(f"{frame}_ratio_to_scratch")
    if ratio:
        g = ratio["geometric_mean"]
        iv = ratio["interval"]
        text += f", {g:.2g}x scratch" + (f" [{iv[0]:.2g}, {iv[1]:.2g}]" if iv else "")
    return text


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
            lines.append(f"| `{m}` | {reach_cell(rec['reach'], 'flops_with_teacher')} | "
                         f"{reach_cell(rec['reach'], 'flops_teacher_exists')} |")
    return lines


def _gate_cell(g: dict) -> str:
    """'measured | passed' of one gate row."""
    value = "–" if g["measured"] is None else f"{g['measured']:.4g}"
    if g.get("max_error_per_seed"):
        value += f" (largest error {max(g['max_error_per_seed']):.3g}"
        if g.get("floor_per_seed"):
            value += f", largest floor {max(f or 0 for f in g['floor_per_seed']):.3g}"
        value += ")"
    unchecked = f"not checked ({g.get('note')})"
    return f"{value} | {held_cell(g['passed'], unchecked)}"


def _method_lines(summary: dict, metrics: list[dict]) -> list[str]:
    n = len(summary["seeds"])
    seeds = f"{n} seed" + "s" * (n != 1)
    sets = "".join(f", `{kv}`" for kv in summary.get("overrides") or [])
    lines = [f"### {summary['task']} ({summary['preset']} preset{sets}, {seeds}, mean ± std)", "",
             "| method | " + " | ".join(m["label"] for m in metrics)
             + " | training FLOPs (teacher incl.) | of which teacher | wall s | params |",
             "|---" * (len(metrics) + 5) + "|"]
    for name, rec in summary["methods"].items():
        cells = [f"{_fmt(rec['mean'][m['name']], m['kind'])} ± "
                 f"{_fmt(rec['std'][m['name']], m['kind'])}" for m in metrics]
        c = rec["compute"]
        wall = c["train_wall_s"]
        k = len(rec["per_seed"])
        label = f"`{name}`" + (f" ({k} of {n} seeds)" if k != n else "")
        lines.append(f"| {label} | " + " | ".join(cells)
                     + f" | {_flops(c['train_flops'])} | {_flops(c['teacher_flops'])}"
                     + f" | {wall:.0f} | {rec['params']:,} |")
    return lines


def _claim_lines(summary: dict) -> list[str]:
    n = len(summary["seeds"])
    lines = ["", "| claim | metric | improvement of ours, mean [95% interval] | seeds ours ahead "
             "| rule | held |", "|---|---|---|---|---|---|"]
    for c in summary["claims"]:
        if c["measured"] is None:
            lines.append(f"| {c['claim']} {c['statement']} | {c['metric']} | – | – | "
                         f"{c['rule']} | n/a ({c['note']}) |")
            continue
        lo, hi = c["interval"]
        interval = "–" if math.isnan(lo) else f"[{lo:+.4f}, {hi:+.4f}]"
        rule = "interval > 0" if c["rule"] == "better" else f"interval > −{c['margin']:g}"
        held = held_cell(c["held"], f"n/a ({c['note']})")
        lines.append(f"| {c['claim']} {c['statement']} (vs `{c['baseline']}`) | {c['metric']} "
                     f"| {c['measured']:+.4f} {interval} | {c['wins']} of {c.get('seeds', n)} "
                     f"| {rule} | {held} |")
    return lines


def _unigram_lines(summary: dict) -> list[str]:
    unigram = summary.get("unigram")
    if unigram is None:
        return []
    bar = unigram.get("bar_nats", UNIGRAM_BAR)
    lines = ["", f"Unigram baseline (training-token frequencies): validation masked-LM "
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
    return lines


def _gate_lines(summary: dict) -> list[str]:
    gates = summary.get("gates") or []
    pilot = {g["gate"]: g for g in summary.get("pilot_gates") or []}
    if not gates:
        return []
    head = "| gate | measured | passed |" + (" pilot seed | pilot passed |" if pilot else "")
    lines = ["", head, "|---" * (5 if pilot else 3) + "|"]
    for g in gates:
        cells = [_gate_cell(g)] + ([_gate_cell(pilot[g["gate"]])] if pilot else [])
        lines.append(f"| {g['gate']}: {g['statement']} | " + " | ".join(cells) + " |")
    if summary.get("gates_failed"):
        lines += ["", f"A gate failed ({', '.join(summary['gates_failed'])}): the claims "
                  "of this comparison are not judged."]
    return lines


def compare_lines(summary: dict) -> list[str]:
    """Every table of a comparison, in the order of ``compare.md``."""
    lines = _method_lines(summary, summary["metrics"]) + _claim_lines(summary)
    lines += _unigram_lines(summary) + _gate_lines(summary)
    if summary.get("stopped"):
        lines += ["", f"The comparison {summary['stopped']}."]
    lines += _anytime_lines(summary.get("anytime"))
    lines += ["", "Improvement: ours − baseline for accuracies, (baseline − ours) / baseline for "
              "perplexities; paired by seed. FLOPs counted with FlopCounterMode (matrix "
              "products, convolutions, attention), the wide teacher's training included for "
              "every method that uses it."]
    return lines


def compare_markdown(summary: dict) -> str:
    """``compare.md``: the tables of :func:`compare_lines` as one text."""
    return "\n".join(compare_lines(summary)) + "\n"


def write_compare_markdown(summary: dict, out: str | Path) -> Path:
    """Write ``out/compare.md`` beside the ``compare.json`` that ``summary`` was read from."""
    return write_text(Path(out) / "compare.md", compare_markdown(summary))

"""Markdown tables of a ``compare.json`` record: printed by ``gowide meanfield compare`` and
written into the report of ``gowide reproduce``, from one renderer.

Does not hold: the numbers themselves (``verdicts``) or figures (``figures/fig_compare``).
"""

from __future__ import annotations

import math

SHOWN_UNIT = "particle_gradients"


def _held(h) -> str:
    return {True: "yes", False: "**no**", None: "undecided"}[h]


def _num(x, fmt: str = ".3g") -> str:
    return "n/a" if x is None or not math.isfinite(x) else format(x, fmt)


def _finite(x) -> bool:
    return x is not None and math.isfinite(x)


def _interval(v: dict, fmt: str = ".3g") -> str:
    return f"{_num(v['value'], fmt)} [{_num(v['ci_low'], fmt)}, {_num(v['ci_high'], fmt)}]"


def _ratio(v: dict) -> str:
    if not _finite(v["ratio"]):
        return "– (no seed where both reached it)" if not v["gate_failed"] else "–"
    lo, hi = v["ratio_ci"]
    return f"{_num(v['ratio'])} [{_num(lo)}, {_num(hi)}]"


def rate_table(res: dict) -> list[str]:
    rows = [f"| {v['prediction']} | {_num(v['predicted'], '+.3f')} | {_interval(v, '+.3f')} | "
            f"{v['rule_text']} | {_held(v['held'])} |" for v in res["verdicts"]]
    return ["| prediction | predicted | measured [95% CI] | rule | held |",
            "|---|---|---|---|---|", *rows]


def stability_line(res: dict) -> str:
    s = res["stability_check"]
    loose = s["looseness_bound_over_measured"]
    return (f"Stability bound (a correctness check, not a prediction): held in {s['holds']} "
            f"configurations; bound / measured deviation: median {loose['median']:.3g}, "
            f"range {loose['min']:.3g} to {loose['max']:.3g}; K from {s['K']['min']:.3g} to "
            f"{s['K']['max']:.3g}; bounds from {s['bound']['min']:.3g} to "
            f"{s['bound']['max']:.3g}, above the wide net's output RMS in "
            f"{s['bounds_above_wide_output_rms']} configurations.")


def gates_lines(eff: dict) -> list[str]:
    return [f"- gate `{name}`: {'passed' if g['passed'] else '**failed**'} ({g['evidence']})"
            for name, g in eff["gates"].items()]


def efficiency_table(res: dict) -> list[str]:
    eff = res["efficiency"]
    by = {(v["target_fraction"], v["challenger"], v["baseline"], v["framing"]): v
          for v in eff["table"] if v["unit"] == SHOWN_UNIT}
    lines = ["| target f | route | against | cost ratio [95% CI], wide net exists | held | "
             "cost ratio, wide net trained first | held | seeds: both / route only / "
             "back-prop only / neither |", "|---|---|---|---|---|---|---|---|"]
    for (f, ch, bl, framing), v in by.items():
        if framing != "wide_net_exists":
            continue
        w = by[(f, ch, bl, "wide_net_trained_first")]
        c = v["counts"]
        held = _held(v["held"]) if not v["gate_failed"] else f"– ({v['gate_failed']})"
        held_w = _held(w["held"]) if not w["gate_failed"] else "–"
        lines.append(f"| {f:g} | {ch} | {bl} | {_ratio(v)} | {held} | {_ratio(w)} | {held_w} | "
                     f"{c['both']} / {c['challenger_only']} / {c['baseline_only']} / "
                     f"{c['neither']} |")
    return lines


def final_quality_table(res: dict) -> list[str]:
    rows = []
    for v in res["efficiency"]["final_quality"]:
        held = _held(v["held"]) if not v["gate_failed"] else f"– ({v['gate_failed']})"
        rows.append(f"| {v['challenger']} − {v['baseline']} | {_interval(v, '+.4f')} | "
                    f"{v['baseline_converged']} | {held} |")
    return ["| selected test loss difference | mean [95% CI] | baseline converged | held |",
            "|---|---|---|---|", *rows]


def compare_markdown(res: dict) -> list[str]:
    eff = res["efficiency"]
    s = eff["setting"]
    t = eff["teacher_cost"][SHOWN_UNIT]
    routes = "; ".join(f"{r}: start {v['start_loss']:.4f}, selected {v['selected_loss']:.4f}"
                       for r, v in eff["routes"].items())
    return [
        "### Rates (P3, P4)",
        "",
        *rate_table(res),
        "",
        stability_line(res),
        "",
        f"### Efficiency (P5): n = {s['width']}, L = {s['depth']}, up to {s['max_steps']} "
        f"steps per route, {len(res['seeds'])} seeds",
        "",
        f"Targets: {s['targets']}, f in {', '.join(f'{f:g}' for f in s['fractions'])}; wide "
        f"net test loss {_interval(eff['wide_test_loss'], '.4f')}, best affine fit "
        f"{_interval(eff['baseline_loss'], '.4f')}. Mean test loss per route: {routes}. "
        f"The wide teacher's training cost {_num(t['value'])} particle-gradient evaluations "
        "(counted only in the second framing).",
        "",
        *gates_lines(eff),
        "",
        *efficiency_table(res),
        "",
        *final_quality_table(res),
    ]


def depth_markdown(res: dict) -> list[str]:
    """The verdicts of ``gowide meanfield depth`` (docs/theory.md §8)."""
    rows = [f"| {v['prediction']} | {_interval(v, '+.3f')} | {v['rule_text']} | "
            f"{_held(v['held'])} |" for v in res["verdicts"]]
    checks = "; ".join(f"{scale}: bound held in {c['stability_bound_holds']}, wide net beats "
                       f"the affine fit in {c['wide_beats_linear']}"
                       for scale, c in res["checks"].items())
    return ["| prediction | measured [95% CI] | rule | held |", "|---|---|---|---|", *rows, "",
            f"Checks per scaling: {checks}."]

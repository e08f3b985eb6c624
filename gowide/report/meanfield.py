"""Markdown of the mean-field results: the body of each result's section in ``REPORT.md``,
and what ``gowide meanfield limits | compare | depth | clouds`` prints.

Does not hold: the numbers themselves (``meanfield.verdicts``, ``meanfield.depth_summary``)
or figures (``figures/fig_<name>.py``).
"""

from __future__ import annotations

import math

from gowide.report import held_cell, interval, num

SHOWN_UNIT = "particle_gradients"

LIMITS = {
    "width_slope": ("P1 width rate, at initialisation",
                    "log-log slope of mean squared deviation vs N"),
    "width_slope_trained": ("P1 width rate, after training",
                            "same, after mean-field gradient descent for a fixed time"),
    "depth_slope": ("P2 depth rate", "log-log slope of RMS error vs L against the ODE"),
}


def limits_markdown(res: dict) -> list[str]:
    """The rates of ``limits.json`` (P1, P2) against their predictions."""
    rows = []
    for key, (name, what) in LIMITS.items():
        s = res[key]
        rows.append(f"| {name} | {what} | {s['predicted']:+.1f} ± {s['tolerance']} | "
                    f"{interval(s, '+.3f')} | {held_cell(s['held'])} |")
    return [
        "Each rate is the across-seed mean of per-seed log-log slopes with a 95% Student-t "
        "interval. A prediction is held when the interval lies within the stated tolerance, "
        "not held when it lies wholly outside, undecided otherwise.",
        "",
        "| prediction | measured quantity | predicted | measured [95% CI] | held |",
        "|---|---|---|---|---|",
        *rows,
    ]


def _ratio(v: dict) -> str:
    if v["ratio"] is None or not math.isfinite(v["ratio"]):
        return "– (no seed where both reached it)" if not v["gate_failed"] else "–"
    lo, hi = v["ratio_ci"]
    return f"{num(v['ratio'])} [{num(lo)}, {num(hi)}]"


def _gated(v: dict, reason: bool = True) -> str:
    """A verdict's cell, or '–' (with the failed gate) when a gate left it unjudged."""
    if not v["gate_failed"]:
        return held_cell(v["held"])
    return f"– ({v['gate_failed']})" if reason else "–"


def rate_table(res: dict) -> list[str]:
    rows = [f"| {v['prediction']} | {num(v['predicted'], '+.3f')} | {interval(v, '+.3f')} | "
            f"{v['rule_text']} | {held_cell(v['held'])} |" for v in res["verdicts"]]
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
        lines.append(f"| {f:g} | {ch} | {bl} | {_ratio(v)} | {_gated(v)} | {_ratio(w)} | "
                     f"{_gated(w, reason=False)} | {c['both']} / {c['challenger_only']} / "
                     f"{c['baseline_only']} / {c['neither']} |")
    return lines


def final_quality_table(res: dict) -> list[str]:
    rows = [f"| {v['challenger']} − {v['baseline']} | {interval(v, '+.4f')} | "
            f"{v['baseline_converged']} | {_gated(v)} |"
            for v in res["efficiency"]["final_quality"]]
    return ["| selected test loss difference | mean [95% CI] | baseline converged | held |",
            "|---|---|---|---|", *rows]


def compare_markdown(res: dict) -> list[str]:
    """The rates (P3, P4), the stability check and the efficiency (P5) of ``compare.json``."""
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
        f"net test loss {interval(eff['wide_test_loss'], '.4f')}, best affine fit "
        f"{interval(eff['baseline_loss'], '.4f')}. Mean test loss per route: {routes}. "
        f"The wide teacher's training cost {num(t['value'])} particle-gradient evaluations "
        "(counted only in the second framing).",
        "",
        *gates_lines(eff),
        "",
        *efficiency_table(res),
        "",
        *final_quality_table(res),
    ]


def depth_markdown(res: dict) -> list[str]:
    """The verdicts of ``depth.json`` (docs/theory.md §8) and its checks per scaling."""
    rows = [f"| {v['prediction']} | {interval(v, '+.3f')} | {v['rule_text']} | "
            f"{held_cell(v['held'])} |" for v in res["verdicts"]]
    checks = "; ".join(f"{scale}: bound held in {c['stability_bound_holds']}, wide net beats "
                       f"the affine fit in {c['wide_beats_linear']}"
                       for scale, c in res["checks"].items())
    return ["| prediction | measured [95% CI] | rule | held |", "|---|---|---|---|", *rows, "",
            f"Checks per scaling: {checks}."]


def clouds_markdown(res: dict) -> list[str]:
    """The distances of ``clouds.json``: each stage of the thin net against the teacher."""
    d = res["distances"]
    rows = [f"| {label} | {v['init']:.3f} | {v['imitation']:.3f} | {v['backprop']:.3f} | "
            f"{v['floor']:.3f} |"
            for key, label in (("mean_energy_distance", "energy distance of the particles"),
                               ("mean_block_error", "block error δ_l"))
            for v in [d[key]]]
    return [
        "Distances of the thin net's layers to the wide teacher's, mean over layers: at "
        "initialisation, after layerwise imitation, after back-propagation from scratch with "
        "the same number of particle-gradient evaluations, and the floor of n particles drawn "
        "from the teacher itself.",
        "",
        "| distance | init | imitation | back-prop | floor |",
        "|---|---|---|---|---|",
        *rows,
    ]

"""``REPORT.md`` of ``gowide reproduce`` and ``gowide figures``: a section per result file
(its heading, the tables of :mod:`gowide.report.meanfield` or :mod:`gowide.report.empirical`,
its figures), and the machine each result was computed on."""

from __future__ import annotations

from gowide.report import meanfield
from gowide.report.empirical import compare_lines


def section(title: str, body: list[str], figures: list[tuple[str, str]]) -> list[str]:
    """'## title', the body, then each figure (alt text, file name) as an image."""
    images = [line for alt, name in figures for line in (f"![{alt}]({name})", "")]
    return [f"## {title}", "", *body, "", *images]


def limits_section(res: dict) -> list[str]:
    return section("Mean-field limits (P1, P2)", meanfield.limits_markdown(res),
                   [("width limit", "limits_width.png"), ("depth limit", "limits_depth.png")])


def compare_section(res: dict) -> list[str]:
    tasks = "; ".join(
        f"seed {t.get('seed')}: {t.get('name', '?')}, best linear fit {t['linear_loss']:.3f} "
        f"vs constant {t['constant_loss']:.3f}" for t in res.get("tasks", [])[:1])
    body = [f"Task (test losses are (1/2)·MSE on standardised targets; one task for all "
            f"seeds): {tasks}.", "", *meanfield.compare_markdown(res)]
    return section("Imitation versus back-propagation (P3–P5)", body,
                   [("deviation against width", "compare_width.png"),
                    ("deviation against depth", "compare_depth.png"),
                    ("efficiency", "compare_efficiency.png")])


def depth_section(res: dict) -> list[str]:
    return section("Depth and the residual scaling", meanfield.depth_markdown(res),
                   [("deviation against depth", "depth_deviation.png"),
                    ("ratio", "depth_ratio.png"), ("width needed", "depth_width_needed.png")])


def clouds_section(res: dict) -> list[str]:
    return section("Particle clouds before and after imitation", meanfield.clouds_markdown(res),
                   [("particle clouds", "clouds.png")])


def empirical_section(res: dict) -> list[str]:
    task = res["task"]
    note = ([f"The {res['preset']} preset is a smoke test of the pipeline, too small to separate "
             "the methods: its verdicts say nothing about the claims. They are tested with the "
             "small preset (`gowide reproduce` without --quick, or `gowide empirical compare "
             "--preset small`).", ""] if res["preset"] == "tiny" else [])
    return section(f"Empirical claims: {task} ({res['preset']} preset)",
                   [*note, "\n".join(compare_lines(res))],
                   [(f"{task}: metric against compute", f"empirical_{task}_compute.png"),
                    (f"{task}: per-block imitation error", f"empirical_{task}_blocks.png"),
                    (f"{task}: training curves", f"empirical_{task}_curves.png")])


def provenance_row(path, res: dict) -> str:
    """One result file's row of the machine table: where, on what and when it was computed
    (its ``provenance``; '?' for what it does not record)."""
    prov = res.get("provenance", {})
    prov = prov if isinstance(prov, dict) else {}
    machine = prov.get("machine", {})
    machine = machine if isinstance(machine, dict) else {}
    gpu = f", {machine['gpu']}" if machine.get("gpu") else ""
    return (f"| `{path}` | {machine.get('cpu', '?')} ({machine.get('cpu_count', '?')} cores"
            f"{gpu}) | {prov.get('device', '?')} | "
            f"{prov.get('versions', {}).get('torch', '?')} | {prov.get('created', '?')} |")


def render_report(sections: list[str], machines: list[str], preset: str) -> str:
    """``REPORT.md``: the preset, one row of :func:`provenance_row` per result file, then
    the sections."""
    return "\n".join([
        "# gowide — reproduction report",
        "",
        f"Preset: **{preset}**. Each result file and the machine it was computed on:",
        "",
        "| result | machine | device | torch | created |",
        "|---|---|---|---|---|",
        *machines,
        "",
        *sections,
    ])

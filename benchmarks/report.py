"""The table of a benchmark file, in markdown.

    python -m benchmarks.report results/benchmarks/bench.json
    python -m benchmarks.report results/benchmarks/bench.json --update docs/performance.md

The second form replaces what lies between the two marker lines of docs/performance.md
(:data:`BEGIN`, :data:`END`) with the table, and leaves the rest of the file as it is.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gowide.atomic import write_text

BEGIN = "<!-- benchmark table: begin (python -m benchmarks.report FILE --update) -->"
END = "<!-- benchmark table: end -->"

ROWS = (
    ("step_over_matmul", "Mean-field step / its matrix products, at the largest N", "≤ 2×"),
    ("speedup_over_loop", "Mean-field step against the Python-loop reference, N = 1024", "≥ 10×"),
    ("scaling_exponents", "Log-log slope of step time in N, L, batch", "≈ 1 each"),
    ("stage2_over_plain", "Stage-2 step / (plain thin step + teacher forward)", "≤ 1.3×"),
    ("hook_overhead", "FeatureCapture hooks on a forward + backward pass", "< 5%"),
    ("precompute_speedup", "Stage-2 step: precomputed teacher features against live", "> 1×"),
    ("ddp_2proc_over_1proc", "Throughput, 2 processes / 1 (torchrun, CPU, gloo)", "2× ideal"),
)


def _x(v: float) -> str:
    return f"{v:.2f}×"


def _cells(name: str, r: dict) -> tuple[str, str]:
    """(measured, details) of one benchmark."""
    if "error" in r:
        return "failed", r["error"].splitlines()[0][:120]
    if name == "step_over_matmul":
        at = r["at"]
        by_d = ", ".join(f"d={k}: {_x(v)}" for k, v in r["ratio_by_d"].items())
        return (_x(r["value"]),
                f"N={at['N']}, L={at['L']}, batch={at['batch']}, d={at['d']}, {r['dtype']}; "
                f"float32 {_x(r['ratio_float32_at_largest_N'])}; base N, by d: {by_d}")
    if name == "speedup_over_loop":
        at = r["at"]
        by_b = ", ".join(f"batch {k}: {v:.1f}×" for k, v in r["by_batch"].items())
        return (f"{r['value']:.1f}×", f"L={at['L']}, d={at['d']}, {r['dtype']}; {by_b}; "
                f"step {r['step_s'] * 1e3:.1f} ms, loop {r['loop_s']:.2f} s")
    if name == "scaling_exponents":
        v = r["value"]
        return ", ".join(f"{k} {v[k]:.2f}" for k in ("N", "L", "batch")), \
            "slopes fitted over each sweep, other factors at the base point " + \
            ", ".join(f"{k}={x}" for k, x in r["base"].items())
    if name == "stage2_over_plain":
        parts = [f"{m}: " + ", ".join(f"{k} {_x(x)}" for k, x in d["ratios"].items())
                 for m, d in r["by_model"].items()]
        return _x(r["value"]), "worst of: " + "; ".join(parts)
    if name == "hook_overhead":
        parts = [f"{m} {100 * d['overhead']:+.1f}%" for m, d in r["by_model"].items()]
        return f"{100 * r['value']:+.1f}%", "worst of: " + ", ".join(parts)
    if name == "precompute_speedup":
        st = r["stage"]
        return (_x(r["value"]),
                f"resnet, {r['averaged_over']}; whole stage with the precompute "
                f"({r['precompute_s']:.2f} s, {r['feature_bytes'] / 2**20:.1f} MiB): "
                f"{_x(st['speedup_including_precompute'])}; bert: not applicable")
    if name == "ddp_2proc_over_1proc":
        parts = []
        for m, d in r["cpu"].items():
            if "skipped" in d:
                parts.append(f"{m}: not measured (see the file)")
                continue
            parts.append(f"{m}: {d['1']['examples_per_s']:.0f} → {d['2']['examples_per_s']:.0f} "
                         f"examples/s ({_x(d['ratio'])})")
        gpu = r.get("gpu", {})
        parts.append("GPU: " + (gpu["skipped"] if "skipped" in gpu else
                                ", ".join(f"{m}: {d['1']['examples_per_s']:.0f} examples/s"
                                          + (f", ratio {_x(d['ratio'])}" if "ratio" in d else "")
                                          for m, d in gpu.items() if isinstance(d, dict)
                                          and "1" in d)))
        return _x(r["value"]), "; ".join(parts)
    return str(r.get("value")), ""


def _met(r: dict) -> str:
    met = r.get("met")
    return "—" if met is None or "error" in r else ("yes" if met else "**no**")


def markdown(data: dict) -> str:
    """The benchmark table of a benchmark file (and the machine it was measured on)."""
    m = data["provenance"]["machine"]
    v = data["provenance"]["versions"]
    lines = [
        f"Measured {data['provenance']['created']} on {m['cpu']} ({m['cpu_count']} cores"
        + (f", {m['gpu']}" if m.get("gpu") else "") + f"), torch {v['torch']}"
        + (" — **quick mode: not reference figures**" if data.get("quick") else "") + ".",
        "",
        "| Benchmark | Measured | Goal | Met | Threads | Details |",
        "|---|---|---|---|---|---|",
    ]
    for name, label, goal in ROWS:
        if name not in data:
            continue
        r = data[name]
        measured, details = _cells(name, r)
        threads = r.get("env", {}).get("threads", "")
        lines.append(f"| {label} (`{name}`) | {measured} | {goal} | {_met(r)} | {threads} "
                     f"| {details} |")
    return "\n".join(lines) + "\n"


def fill(doc: str, table: str) -> str:
    """``doc`` with the lines between the markers replaced by ``table``."""
    try:
        head, rest = doc.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
    except ValueError:
        raise SystemExit(f"the markers {BEGIN!r} and {END!r} were not found") from None
    return f"{head}{BEGIN}\n{table}{END}{tail}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.report",
                                 description="Print the table of a benchmark file (markdown).")
    ap.add_argument("file", help="a JSON file written by python -m benchmarks.run")
    ap.add_argument("--update", metavar="MARKDOWN",
                    help="write the table between the markers of this file instead")
    args = ap.parse_args(argv)
    table = markdown(json.loads(Path(args.file).read_text(encoding="utf-8")))
    if args.update:
        path = Path(args.update)
        write_text(path, fill(path.read_text(encoding="utf-8"), table))
    else:
        sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

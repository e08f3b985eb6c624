"""Two gates that pull apart: the teacher's margin against the block errors it leaves.

``gates`` — one panel per family; each point is one teacher of one design on seed 0 (an
``ours_no_ft`` run: it holds its teacher's best validation score, and the thin-mode block
errors after stage 2 with their floors), labelled with the teacher's width relative to the
thin net's widened part (and, for the widened-interface design run at several sizes, the thin
net's base width). x: the largest block error above its floor; y: the teacher's
validation margin over the converged thin net from scratch (accuracy points, or masked-LM
nats). The lines are the gates of ``empirical/gates.py`` (x ≤ 0.05; y ≥ 1 point or 0.1
nats, read from the ``compare.json`` of the family's comparison); the shaded corner is where
both pass. The runs are listed in :data:`DESIGNS`, each with the command behind it in the
README of its directory; nothing is trained here.

    python -m figures.fig_gates [RESULTS] [--out figures/out]   # RESULTS: default results/
"""

from __future__ import annotations

from pathlib import Path

from figures.style import plt, save

# (family, design, teacher width, its ours_no_ft run, the converged scratch of that thin net),
# paths under results/empirical/. Widths: the teacher's widened part against the thin net's
# (image bottleneck design: the 3x3 convolutions; the others: every layer).
_BN, _TEXT = "regime_designs/bottleneck_stage2", "regime_designs/text_cpu"
_BN_SCRATCH = "resnet_regime_bottleneck/runs/scratch/seed0"
_TEXT_SCRATCH = "bert_regime_cpu_long/runs/scratch/seed0"
_SHORT, _LONG = "bottleneck, stage 2 ≤ 600 steps", "bottleneck, stage 2 3000 steps"
# the widened-interface design at thin base widths 4 (its comparison's seed 0), 8 and 16
_WIDE, _WIDTH = "interfaces widened, 4× teacher (thin base width)", "regime_designs/width"
_POST, _PRE = "post-norm embeddings target", "pre-norm embeddings target"
DESIGNS = [
    *[("resnet", design, width, run, _BN_SCRATCH) for design, width, run in (
        (_SHORT, "1×", f"{_BN}/teacher1x_cap600"),
        (_SHORT, "2×", f"{_BN}/teacher2x_cap600"),
        (_SHORT, "4×", "resnet_regime_bottleneck/runs/ours_no_ft/seed0"),
        (_LONG, "1×", f"{_BN}/teacher1x_cap3000"),
        (_LONG, "4×", f"{_BN}/teacher4x_cap3000"))],
    ("resnet", _WIDE, "base 4", "resnet_regime_cpu/runs/ours_no_ft/seed0",
     "resnet_regime_cpu/runs/scratch/seed0"),
    *[("resnet", _WIDE, f"base {b}", f"{_WIDTH}/b{b}/runs/ours_no_ft/seed0",
       f"{_WIDTH}/b{b}/runs/scratch/seed0") for b in (8, 16)],
    *[("bert", design, width, run, _TEXT_SCRATCH) for design, width, run in (
        (_POST, "1×", f"{_TEXT}/control_1x"),
        (_POST, "1.5×", f"{_TEXT}/teacher_1p5x/post"),
        (_POST, "2×", "bert_regime_cpu_long/runs/ours_no_ft/seed0"),
        (_PRE, "1×", f"{_TEXT}/embeddings_pre/teacher_1x"),
        (_PRE, "1.5×", f"{_TEXT}/teacher_1p5x/pre"),
        (_PRE, "2×", f"{_TEXT}/embeddings_pre/teacher_2x"))],
]
# where each family's gate thresholds are read: the comparison whose pilot these designs are
GATE_SOURCES = {"resnet": "resnet_regime_bottleneck/compare.json",
                "bert": "bert_regime_cpu_long/compare.json"}
MARKERS = "osD^v"


def present(results: Path) -> list[tuple]:
    """The designs of :data:`DESIGNS` whose two result files, and their family's
    ``compare.json`` (:data:`GATE_SOURCES`), are under ``results``: each with the paths of its
    run, of its scratch and of that comparison."""
    out = []
    for family, design, width, run_dir, scratch_dir in DESIGNS:
        base = results / "empirical"
        paths = (base / run_dir / "result.json", base / scratch_dir / "result.json",
                 base / GATE_SOURCES[family])
        if all(p.exists() for p in paths):
            out.append((family, design, width, *paths))
    return out


def _val_score(result: dict) -> float:
    """Validation score, higher is better: accuracy, or minus the masked-LM loss."""
    m = result["metrics"]
    return -m["mlm"]["val"]["mlm_loss"] if result["task"] == "bert" else m["val"]["accuracy"]


def points(results: Path, reading: list | None = None) -> list[dict]:
    """Every design of :func:`present`: its teacher margin, its largest block-error excess,
    and its family's two gate thresholds (in the same units). ``reading[0]`` is set to the
    file being read (for an error message)."""
    from gowide.paths import read_json

    reading = reading if reading is not None else [None]
    out = []
    for family, design, width, run_path, scratch_path, compare_path in present(results):
        scale = 1.0 if family == "bert" else 100.0  # accuracy in points
        reading[0] = compare_path
        gates = {g["gate"]: g["threshold"] for g in read_json(compare_path, "comparison")["gates"]}
        reading[0] = run_path
        run = read_json(run_path, "run result")
        selected = run["stages"]["wide"]["selected"]
        teacher = -selected["mlm_loss"] if family == "bert" else selected["accuracy"]
        floors = run["stages"]["imitate"].get("block_error_floors") or {}
        excess = max(e - floors.get(b, 0.0)
                     for b, e in run["imitation_block_errors"]["thin"].items())
        reading[0] = scratch_path
        scratch = _val_score(read_json(scratch_path, "run result"))
        out.append({"family": family, "design": design, "width": width,
                    "margin": (teacher - scratch) * scale, "excess": float(excess),
                    "margin_gate": gates["teacher_margin"] * scale,
                    "excess_gate": gates["block_error"]})
    return out


def draw(results: str | Path, out_dir: str | Path, reading: list | None = None) -> list[Path]:
    found = points(Path(results), reading)
    if not found:
        raise FileNotFoundError(f"none of the runs of figures.fig_gates.DESIGNS under {results}")
    families = [f for f in ("resnet", "bert") if any(p["family"] == f for p in found)]
    fig, axes = plt.subplots(1, len(families), figsize=(4.8 * len(families), 3.8),
                             squeeze=False)
    for ax, family in zip(axes[0], families, strict=True):
        mine = [p for p in found if p["family"] == family]
        gate_y, gate_x = mine[0]["margin_gate"], mine[0]["excess_gate"]
        designs = list(dict.fromkeys(p["design"] for p in mine))
        for i, design in enumerate(designs):
            row = [p for p in mine if p["design"] == design]
            ax.plot([p["excess"] for p in row], [p["margin"] for p in row],
                    MARKERS[i % len(MARKERS)] + "-", ms=6, lw=0.8, label=design)
            for p in row:
                ax.annotate(p["width"], (p["excess"], p["margin"]), fontsize=7,
                            xytext=(4, 3 - 10 * i), textcoords="offset points")
        xmax = max(max(p["excess"] for p in mine), gate_x) * 1.25
        ymin = min(min(p["margin"] for p in mine), 0.0)
        ymax = max(max(p["margin"] for p in mine), gate_y) * 1.15
        ax.axvline(gate_x, color="#7f7f7f", lw=0.8, ls="--")
        ax.axhline(gate_y, color="#7f7f7f", lw=0.8, ls="--")
        ax.fill_between([0.0, gate_x], gate_y, ymax, color="#2ca02c", alpha=0.12, lw=0,
                        label="both gates pass")
        ax.set_xlim(0.0, xmax)
        ax.set_ylim(ymin - 0.05 * (ymax - ymin), ymax)
        ax.set_xlabel("largest block error above its floor, after stage 2 (seed 0)")
        ax.set_ylabel("teacher's margin over converged scratch ("
                      + ("val. nats" if family == "bert" else "val. points") + ")")
        ax.set_title({"resnet": "images (Fashion-MNIST 14×14, ResNet)",
                      "bert": "text (masked LM, 6-layer encoder)"}[family], fontsize=9)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    return save(fig, out_dir, "gates")


def main(argv: list[str] | None = None) -> int:
    import argparse

    from figures.style import draw_staged
    from gowide.argtypes import path_arg
    from gowide.errors import UsageError
    from gowide.paths import read_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="?", default=Path("results"),
                        help="the results directory (default: results)")
    parser.add_argument("--out", type=path_arg, default=Path("figures/out"))
    args = parser.parse_args(argv)
    found = present(args.results)
    if not found:
        parser.error(f"none of the runs of figures.fig_gates.DESIGNS under {args.results}")
    for path in dict.fromkeys(p for row in found for p in row[3:]):
        try:
            read_json(path, "result")
        except UsageError as exc:
            parser.error(str(exc))
    reading = [args.results]
    for p in draw_staged(lambda out: draw(args.results, out, reading), args.out,
                         lambda: reading[0], parser.error):
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Run the benchmarks and write one JSON file (atomically).

    python -m benchmarks.run --out results/benchmarks/bench.json
    python -m benchmarks.run --out /tmp/bench.json --quick --only step_over_matmul,hook_overhead

Every benchmark is a top-level key of the file holding ``value`` (its headline figure),
``goal``, ``met``, ``env`` (CPU model and cores, GPU if any, torch version, intra-op threads,
device) and its details; the file also holds the timing method, the provenance block of the
project's result files, and the wall time of each benchmark. The file is rewritten after
every benchmark, ``"complete": false`` until the last one is done. A benchmark that fails is
stored as ``{"error": ...}``, the others still run, and the exit status is 1.

``--quick`` shrinks every grid and repetition count (a check that everything runs, well under
a minute; its figures are not the reference). The reference figures come from a full run on
an otherwise idle machine (docs/performance.md).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback

import torch

from benchmarks import ddp_bench, empirical_bench, meanfield_bench
from benchmarks.timing import METHOD, set_threads
from gowide.atomic import write_json
from gowide.provenance import provenance

NAMES = (
    "step_over_matmul",
    "speedup_over_loop",
    "scaling_exponents",
    "stage2_over_plain",
    "hook_overhead",
    "precompute_speedup",
    "ddp_2proc_over_1proc",
)


class Runner:
    """Runs the selected benchmarks, sharing what several of them need (the mean-field grid,
    the tiny models)."""

    def __init__(self, quick: bool, device: str, progress):
        self.quick, self.device, self.progress = quick, device, progress
        self._grid = None
        self._setups: dict = {}

    def grid(self):
        if self._grid is None:
            self._grid = meanfield_bench.grid(self.quick, self.device, self.progress)
        return self._grid

    def setups(self, names):
        for name in names:
            if name not in self._setups:
                self._setups[name] = empirical_bench.Setup(name, self.device)
        return self._setups

    def run(self, name: str) -> dict:
        q, dev, say = self.quick, self.device, self.progress
        if name == "step_over_matmul":
            return meanfield_bench.step_over_matmul(self.grid(), dev)
        if name == "scaling_exponents":
            return meanfield_bench.scaling_exponents(self.grid(), dev)
        if name == "speedup_over_loop":
            return meanfield_bench.speedup_over_loop(q, dev, say)
        if name == "stage2_over_plain":
            return empirical_bench.stage2_over_plain(q, dev, self.setups(("resnet", "bert")), say)
        if name == "hook_overhead":
            return empirical_bench.hook_overhead(q, dev, self.setups(("resnet", "bert")), say)
        if name == "precompute_speedup":
            return empirical_bench.precompute_speedup(q, dev, self.setups(("resnet",)), say)
        if name == "ddp_2proc_over_1proc":
            return ddp_bench.ddp_2proc_over_1proc(q, progress=say)
        raise ValueError(f"unknown benchmark {name!r}")


def parse_only(text: str | None) -> list[str]:
    if not text:
        return list(NAMES)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        raise SystemExit(f"--only: unknown benchmark {unknown[0]!r}; "
                         f"choose from {', '.join(NAMES)}")
    return [n for n in NAMES if n in names]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run",
                                 description="Run the benchmarks of docs/performance.md.")
    ap.add_argument("--out", required=True, help="the JSON file to write")
    ap.add_argument("--quick", action="store_true",
                    help="small grids and few repetitions: a check, not the reference figures")
    ap.add_argument("--only", help=f"comma-separated subset of: {', '.join(NAMES)}")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                    help="device of the mean-field and stage-2 benchmarks (default cpu); the "
                         "data-parallel one measures CPU, and CUDA when present")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads of the mean-field benchmarks (default: torch's "
                         "default); the tiny-model benchmarks use the preset's (1)")
    args = ap.parse_args(argv)
    names = parse_only(args.only)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for but no CUDA device is available")
    set_threads(args.threads)

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    start = time.perf_counter()
    out: dict = {"schema": 1, "quick": args.quick, "complete": False, "method": METHOD,
                 "benchmarks": names, "provenance": provenance(device=args.device),
                 "wall_s": {}}
    runner = Runner(args.quick, args.device, say)
    failed = []
    for name in names:
        say(f"{name} ...")
        t0 = time.perf_counter()
        try:
            out[name] = runner.run(name)
        except Exception as exc:  # one failure must not lose the other benchmarks
            failed.append(name)
            out[name] = {"error": f"{type(exc).__name__}: {exc}",
                         "traceback": traceback.format_exc()[-4000:]}
            say(f"{name} FAILED: {exc}")
        out["wall_s"][name] = time.perf_counter() - t0
        write_json(args.out, out)
    out["complete"] = not failed
    out["wall_s"]["total"] = time.perf_counter() - start
    write_json(args.out, out)
    say(f"wrote {args.out} in {out['wall_s']['total']:.0f} s"
        + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

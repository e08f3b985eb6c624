"""Run an empirical comparison as a queue of (seed, method group) jobs on many processes, with
a deadline; then write the comparison of the seeds that finished.

``gowide empirical compare --jobs N`` runs whole seeds in parallel, each seed's methods one
after the other. On a machine with many cores (or one GPU shared by many processes) that
leaves most of it idle: one seed's methods that share no stage can run at once. Here every
seed is split into groups that share no stage: the methods with the wide teacher (they share
it and stage 2 through the seed's stage cache), and each baseline trained from scratch on its
own. Jobs are taken in seed order, so the first seeds finish first; at the deadline running
jobs are stopped, and the comparison covers the seeds 0..k-1 whose every method finished;
a --late method is reported on the seeds where it finished.

Every job is ``empirical.compare._run_seed`` in a child process (one torch thread; its log,
``logs/seed<k>-<method>.log``, gets a progress line per validation and per stage-2 block), so the
runs, their result files and the final ``compare.json`` are exactly those of ``gowide
empirical compare`` with the same preset and options; a later ``gowide empirical compare``
with the same --out reuses every finished run.

    python scripts/compare_queue.py --task resnet --preset empirical/configs/regime.toml \
        --seeds 5 --workers 12 --deadline 420 --device cuda --out DIR [--set K=V ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Methods whose first stage is the wide teacher: they wait for the seed's "teacher" job and
# take the teacher from the seed's stage cache. ours and ours_no_ft also share stage 2.
AFTER_TEACHER = (("ours", "ours_no_ft", "ours_labels_only", "ours_simultaneous",
                  "ours_teacher_forced"), ("kd",), ("fitnets",), ("subsample_init",),
                 ("scratch_long",))
CORE = ("teacher", "scratch", "ours", "ours_no_ft", "deeper", "kd")


def jobs_for(seed: int, methods: list[str]) -> list[tuple[int, list[str], bool]]:
    """One seed's jobs in priority order: (seed, methods, waits for the teacher job). The
    teacher first, then what reads it (the longest path), then the independent baselines."""
    jobs = []
    has_teacher = "teacher" in methods
    if has_teacher:
        jobs.append((seed, ["teacher"], False))
    grouped = set()
    for group in AFTER_TEACHER:
        g = [m for m in group if m in methods]
        if g:
            jobs.append((seed, g, has_teacher))
            grouped |= set(g)
    jobs += [(seed, [m], False) for m in methods if m != "teacher" and m not in grouped]
    return jobs


def child(args) -> int:
    import torch

    from empirical.compare import _run_seed

    torch.set_num_threads(1)
    fields = {"device": args.device, "threads": 1}
    # progress on: its stderr is the job's log file, so no bars but a line per evaluation
    _run_seed(args.task, args.preset, args.seed, args.methods.split(","), Path(args.out),
              list(args.set), fields, True, True)
    return 0


def ordered_jobs(seeds: int, methods: list[str], late: list[str], block: int
                 ) -> list[tuple[int, list[str], bool]]:
    """Every job in the order the queue starts them: seeds in blocks of ``block``; within a
    block the teachers first (the longest path: teacher, then ours), then what waits for
    them, then the baselines; the ``late`` methods after every seed's others."""
    def rank(job):
        s, g, waits = job
        if g[0] in late:
            return (seeds, 0, s)
        return (s // block, 0 if g == ["teacher"] else 1 if waits else 2, s)

    queue = [j for s in range(seeds) for j in jobs_for(s, methods)]
    queue += [(s, [m], False) for s in range(seeds) for m in late]
    return sorted(queue, key=rank)


def finished(out: Path, method: str, seed: int) -> bool:
    return (out / "runs" / method / f"seed{seed}" / "result.json").exists()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", required=True, choices=("resnet", "bert"))
    p.add_argument("--preset", required=True)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--methods", default=",".join(CORE))
    p.add_argument("--late", default="scratch_2x",
                   help="methods queued after every seed's others (lowest priority)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--block", type=int, default=5,
                   help="seeds scheduled together (their teachers first)")
    p.add_argument("--deadline", type=float, default=None, help="seconds from start")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True)
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--seed", type=int, default=None, help=argparse.SUPPRESS)  # a child job
    args = p.parse_args(argv)
    if args.seed is not None:
        return child(args)

    from empirical.compare import run_compare

    start = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    methods = [m for m in args.methods.split(",") if m]
    late = [m for m in args.late.split(",") if m]
    queue = ordered_jobs(args.seeds, methods, late, args.block)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    running: list[tuple[subprocess.Popen, int, list[str], float]] = []
    jobs_log = []
    stopped = []
    teacher_state: dict[int, str] = {}  # seed -> "done" | "failed"
    while queue or running:
        now = time.time() - start
        if args.deadline is not None and now > args.deadline:
            for proc, s, g, t0 in running:
                proc.kill()
                proc.wait()
                stopped.append({"seed": s, "methods": g, "ran_s": time.time() - t0})
            running = []
            stopped += [{"seed": s, "methods": g, "ran_s": 0.0} for s, g, _ in queue]
            queue = []
            break
        for item in list(running):
            proc, s, g, t0 = item
            if proc.poll() is not None:
                running.remove(item)
                jobs_log.append({"seed": s, "methods": g, "rc": proc.returncode,
                                 "wall_s": time.time() - t0})
                if g == ["teacher"]:
                    teacher_state[s] = "done" if proc.returncode == 0 else "failed"
                print(f"[{time.time() - start:6.0f} s] seed {s} {','.join(g)}: rc "
                      f"{proc.returncode} in {time.time() - t0:.0f} s", flush=True)
        for j in [j for j in queue if j[2] and teacher_state.get(j[0]) == "failed"]:
            queue.remove(j)
            jobs_log.append({"seed": j[0], "methods": j[1], "rc": None,
                             "note": "not run: the seed's teacher job failed"})
        while len(running) < args.workers:
            ready = [j for j in queue if not j[2] or teacher_state.get(j[0]) == "done"]
            if not ready:
                break
            queue.remove(ready[0])
            s, g, _ = ready[0]
            cmd = [sys.executable, __file__, "--task", args.task, "--preset", args.preset,
                   "--device", args.device, "--out", str(out), "--seed", str(s),
                   "--methods", ",".join(g)] + [x for kv in args.set for x in ("--set", kv)]
            log = open(logs / f"seed{s}-{g[0]}.log", "w")  # noqa: SIM115
            env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
            running.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                             env=env), s, g, time.time()))
        time.sleep(1.0)

    # The comparison: seeds 0..k-1 on which every core method finished.
    core = [m for m in methods]
    k = 0
    while k < args.seeds and all(finished(out, m, k) for m in core):
        k += 1
    summary = {"seeds_complete": k, "methods": core + late, "jobs": jobs_log,
               "stopped": stopped, "wall_s": time.time() - start, "workers": args.workers}
    if k:
        result = run_compare(args.task, args.preset, list(range(k)), out, methods=core + late,
                             overrides=list(args.set), progress=False, keep_checkpoints=False,
                             only_finished=True, device=args.device, threads=1)
        from figures.fig_empirical import draw
        from gowide.report.empirical import write_compare_markdown

        write_compare_markdown(result, out)
        draw(out, out / "figures")
        summary["claims_held"] = {f"{c['claim']}:{c['metric']}": c["held"]
                                  for c in result["claims"]}
        summary["gates_failed"] = result["gates_failed"]
    (out / "queue.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    print(json.dumps({k_: v for k_, v in summary.items() if k_ != "jobs"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

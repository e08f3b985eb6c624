"""``gowide empirical compare``: every method on several seeds, and the paper's claims tested.

For each seed every method runs through :func:`empirical.runner.run` into
``OUT/runs/<method>/seed<s>/``; the methods that share their first stages (the wide teacher,
and for ``ours``, ``ours_no_ft`` and ``ours_labels_only`` the imitation too) train them once
through a stage cache in ``OUT/cache/``. A finished run (its ``result.json`` written with the
same configuration) is not run again, so an interrupted comparison continues where it stopped.

Then every run's result is summarised: the claims C1–C4 (:mod:`empirical.claims`, which
also holds the metrics and margins), judged only when the gates pass (:mod:`empirical.gates`),
and the anytime curves (:mod:`empirical.anytime`).

Output: ``OUT/compare.json`` (per method: per-seed metrics and compute, mean, std; per claim:
claim, measured, interval, held; the gates). Computation renders and draws nothing: the
command lines write ``OUT/compare.md`` from it (``gowide.report.empirical``) and draw the
figures of ``figures/fig_empirical.py`` into ``OUT/figures/``.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from tqdm import tqdm

from empirical import anytime
from empirical.claims import metric_values, summarise
from empirical.config import same_config
from empirical.gates import gate_facts
from empirical.methods import METHODS, get_method
from empirical.presets import build_config
from empirical.runner import run
from gowide.atomic import write_json
from gowide.errors import UsageError


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
    gate_facts(result)
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
    ``pilot``: run the first seed alone, check the gates (``empirical.gates``) on it, and stop
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
    summary["overrides"] = list(overrides)  # the --set items, as given (config has them applied)
    if stopped:
        summary["stopped"] = stopped
    write_json(out / "compare.json", summary)
    return summary

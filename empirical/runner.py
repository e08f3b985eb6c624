"""The runner: one method on one seed, from its configuration to ``DIR/result.json``.

:func:`run` reads top to bottom as a run goes:

1. the output directory is checked, the runtime (device, processes) set up, the task made;
2. the method's stages are planned (:func:`empirical.methods.plan`): every input is checked
   before anything trains or any file is written;
3. with ``resume``, the finished stages' checkpoints in ``DIR/checkpoints/`` are read and
   checked (:mod:`empirical.checkpoints`); ``scratch_long`` gets its FLOP-matched steps
   (:mod:`empirical.matching`);
4. each stage is resumed, taken from the stage cache, or run (:func:`run_stage`) and its
   checkpoint written (``DIR/checkpoints/<i>-<stage>.pt``, atomically), all on one
   :class:`~empirical.run.Run` that the stages share; a supervised stage with validation
   also saves its state at every validation, and stage 2 after each block
   (``<i>-<stage>.partial.pt``, removed when the stage ends), which ``resume`` takes up
   (:class:`empirical.checkpoints.Partial`);
5. the final model is evaluated (test split included) and ``DIR/model.pt`` (its weights) and
   ``DIR/result.json`` are written.

For the ``bert`` task each method's final model is fine-tuned or probed on the downstream
task; ``metrics["mlm"]["unigram"]`` of its ``result.json`` holds the unigram baseline of the
masked-LM loss (:meth:`empirical.tasks.BertTask.unigram_baseline`).

An intact checkpoint of another configuration is a UsageError (another run's directory:
nothing is touched); any other mismatch or damage is reported in one line on stderr and its
stage runs again. Temporary files left by an interrupted writer are removed. With
``cache_dir``, the state after every stage is also stored there under a hash of the
configuration and of the stages so far (:func:`stage_key`), so methods that begin with the
same stages (every method with a wide teacher, for one seed) train them once: a cached stage
keeps its record, its FLOPs and its wall time, and is marked ``"cached": true``. A cache
entry is checked as a checkpoint is, and also carries its key; one that fails is reported
and its stage trained (and stored) again. Training is deterministic on CPU, so this changes
no number.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from empirical.checkpoints import (
    Partial,
    expected_models,
    read_stage,
    resumable,
    save_checkpoint,
    stage_file,
)
from empirical.config import RUNTIME_FIELDS, RunConfig
from empirical.matching import matched_stage, matched_steps
from empirical.methods import Method, get_method, plan
from empirical.run import Run
from empirical.runtime import check_device, setup_runtime
from empirical.stages import Stage, run_stage
from empirical.tasks import make_task
from gowide.atomic import write_json
from gowide.provenance import provenance


def run(cfg: RunConfig, out: str | Path, resume: bool = False, progress: bool = True,
        preset: str | None = None, cache_dir: str | Path | None = None) -> dict:
    """Run ``cfg.method`` end to end; returns the result written to ``out/result.json``.
    ``cache_dir``: share finished stages with other methods' runs (module docstring)."""
    start = time.perf_counter()
    # 1. the output directory, the runtime, the task
    method = get_method(cfg.method)
    out = check_out(out)
    runtime = setup_runtime(cfg.device, progress, cfg.precision)
    task = make_task(cfg)
    torch.manual_seed(cfg.seed)
    # 2. the stages, every input checked
    names, stages = plan(cfg, task, runtime.world)
    key = config_key(cfg)
    ckpt_dir = out / "checkpoints"
    models = expected_models(task, stages, method.final_role)
    # 3. what --resume can use, read before anything is written; scratch_long's budget
    resumed = resumable(ckpt_dir, stages, key, runtime, models) if resume else {}
    if cfg.threads and runtime.device.type == "cpu":
        torch.set_num_threads(cfg.threads)
    matched = None
    if method.name == "scratch_long":
        matched = matched_steps(cfg, task, runtime, names)
        stages[0] = matched_stage(cfg, matched["steps"])
    if runtime.is_main:
        _clear(out, ckpt_dir, resume)
    runtime.barrier()

    # 4. every stage on one Run: resumed, taken from the stage cache, or trained
    current = Run(task, runtime, cfg=cfg, final_role=method.final_role)
    records: dict[str, dict] = {}
    for i, stage in enumerate(stages):
        prefix = stage_key(key, stages[: i + 1], method.final_role)
        stored = Stored(stage_file(ckpt_dir, i, stage),
                        Path(cache_dir) / f"{prefix}.pt" if cache_dir is not None else None,
                        prefix)
        record = _reuse(current, stage, i, stored, resumed.get(i), models[i])
        if record is None:
            record = _train(current, stage, i, stored)
        records[stage.name] = record

    # 5. the final model evaluated; model.pt and result.json written
    result = _result(current, method, stages, records, matched, preset, start)
    final_role = "downstream" if cfg.task == "bert" else method.final_role
    if runtime.is_main:
        save_checkpoint(out / "model.pt", {"role": final_role,
                                           "state_dict": current.models[final_role].state_dict(),
                                           "config": key})
        write_json(out / "result.json", result)
    runtime.barrier()
    return result


@dataclass(frozen=True)
class Stored:
    """Where a stage's state is kept: this run's checkpoint of it, and its entry in the
    stage cache (None without one) with the entry's key."""

    path: Path
    cached: Path | None
    cache_key: str


def check_out(out: str | Path) -> Path:
    """UsageError unless ``out`` is a directory or can be created as one (not empty, no
    dangling symbolic link, writable); returns it with symbolic links resolved."""
    from gowide.paths import check_output_path

    return check_output_path(out)


def check(cfgs: list[RunConfig]) -> None:
    """Check configurations as :func:`run` would, before any of them runs (the data is
    loaded once per distinct data setting)."""
    from gowide.environment import distributed

    world = distributed()[0]
    tasks = {}
    for cfg in cfgs:
        check_device(cfg.device)
        data_key = json.dumps([cfg.task, cfg.to_dict()["data"]], sort_keys=True)
        if data_key not in tasks:
            tasks[data_key] = make_task(cfg)
        task = copy.copy(tasks[data_key])  # the same data, this configuration's models
        task.cfg = cfg
        plan(cfg, task, world)


def config_key(cfg: RunConfig) -> dict:
    """The configuration a checkpoint stores and is checked against, and the shared part of
    the stage-cache keys: all of it but where it is computed (:data:`RUNTIME_FIELDS`)."""
    d = cfg.to_dict()
    for name in RUNTIME_FIELDS:
        d.pop(name)
    for table, name, default in KEY_LATER_FIELDS:
        if d[table].get(name) == default:
            d[table].pop(name)
    return d


# Sections of the configuration that only stages read: each stage carries its own settings,
# so they enter a cache key through the stages that use them.
STAGE_TABLES = ("wide", "imitate", "finetune", "downstream", "scratch", "deeper")

# Class names as they are spelled in the stage-cache keys (the stage 2 settings' class was
# named ImitateConfig when the keys were fixed; the keys keep that spelling, so caches made
# before the rename stay valid).
KEY_CLASS_NAMES = {"ImitationConfig(": "ImitateConfig("}
# Settings added after the keys were fixed, left out of a key at their default (which keeps
# the earlier behaviour), so that caches made before them stay valid: stage settings as they
# are spelled in a stage's repr, shared settings as (table, field, default).
KEY_LATER_DEFAULTS = (", precompute=False", ", head_steps=0")
KEY_LATER_FIELDS = (("data", "downsample", 1), ("imitate", "head_steps", 0))


def stage_key(key: dict, stages: list[Stage], final_role: str) -> str:
    """A hash of what determines the state after ``stages``: the configuration without the
    method's name and without the per-stage tables, and the stages themselves (each with its
    own settings). A sweep over stage 2's or stage 3's settings thus reuses the teacher."""
    shared = {k: v for k, v in key.items() if k != "method" and k not in STAGE_TABLES}
    text = json.dumps(shared, sort_keys=True)
    if any(s.name == "downstream" for s in stages):  # it starts from the final model
        text += "\n" + final_role
    text += "\n" + "\n".join(repr(s) for s in stages)
    for name, spelled in KEY_CLASS_NAMES.items():
        text = text.replace(name, spelled)
    for default in KEY_LATER_DEFAULTS:
        text = text.replace(default, "")
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _clear(out: Path, ckpt_dir: Path, resume: bool) -> None:
    """A result file is only ever the one of the run that completed last in ``out``: the old
    one goes, with the temporary files of interrupted writers (see save_checkpoint,
    write_json) and, without ``resume``, the old checkpoints."""
    (out / "result.json").unlink(missing_ok=True)
    stale = [*out.glob(".result.json.*.tmp"), *out.glob(".model.pt.*.tmp"),
             *(out / "checkpoints").glob(".*.tmp")]
    for path in stale:
        if path.is_file():
            path.unlink(missing_ok=True)
    if not resume and ckpt_dir.exists():
        for old in ckpt_dir.glob("*.pt"):
            old.unlink()


def _reuse(current: Run, stage: Stage, i: int, stored: Stored, payload: dict | None,
           expected: dict) -> dict | None:
    """Stage ``i`` from its checkpoint (``payload``, read by ``--resume``) or from the stage
    cache: the models and the ledger loaded, its record returned; None when neither is
    usable. A cached stage's checkpoint is written into this run's directory."""
    how, cached = "resumed", stored.cached
    if payload is None and cached is not None and cached.exists():
        payload, how = read_stage(cached, current.runtime, stage, i + 1, expected,
                                  stored.cache_key), "cached"
    if payload is None:
        return None
    for role, sd in payload["models"].items():
        current.model(role).load_state_dict(sd)
    current.ledger.entries = list(payload["ledger"])
    if how == "cached" and current.runtime.is_main:
        save_checkpoint(stored.path, {k: v for k, v in payload.items() if k != "cache_key"}
                        | {"config": config_key(current.cfg)})
    return payload["record"] | {how: True}


def _train(current: Run, stage: Stage, i: int, stored: Stored) -> dict:
    """Run stage ``i`` (seeded by the run's seed and its number), evaluate its model on
    validation, write its checkpoint (and its cache entry); its record."""
    runtime = current.runtime
    for role in (stage.role, stage.teacher):
        if role is not None:
            current.model(role)
    seed = current.cfg.seed * 1000 + i + 1
    torch.manual_seed(seed)
    partial = Partial(stored.path.with_name(f"{stored.path.stem}.partial.pt"), stored.cache_key)
    record = run_stage(stage, current, seed, partial)
    record["eval"] = _evaluate(current.task_of(stage), current.models[stage.role], runtime)
    if runtime.is_main:
        payload = {"stage": stage.name, "index": i + 1, "config": config_key(current.cfg),
                   "record": record, "ledger": current.ledger.entries,
                   "models": {r: m.state_dict() for r, m in current.models.items()}}
        save_checkpoint(stored.path, payload)
        if stored.cached is not None:
            save_checkpoint(stored.cached, payload | {"cache_key": stored.cache_key})
        partial.path.unlink(missing_ok=True)  # the stage's checkpoint supersedes it
    runtime.barrier()
    return record


def _result(current: Run, method: Method, stages: list[Stage], records: dict,
            matched: dict | None, preset: str | None, start: float) -> dict:
    """What ``result.json`` holds: the final model's metrics (test split included), every
    stage's record, the block errors, convergence, compute, sizes, data and provenance."""
    cfg, task, runtime, ledger = current.cfg, current.task, current.runtime, current.ledger
    final_role = "downstream" if cfg.task == "bert" else method.final_role
    metrics = _evaluate(task.downstream_task() if cfg.task == "bert" else task,
                        current.models[final_role], runtime, test=True)
    if cfg.task == "bert":
        metrics = {"downstream": metrics,
                   "mlm": records[stages[-2].name]["eval"]
                   | {"unigram": task.unigram_baseline()}}
    imitation = next((r for s, r in records.items() if "block_errors" in r), None)
    return {
        "task": cfg.task, "method": cfg.method, "description": method.description,
        "seed": cfg.seed, "preset": preset, "config": cfg.to_dict(),
        "metrics": metrics,
        "stages": records,
        "imitation_block_errors": imitation["block_errors"] if imitation else None,
        # per training stage: the convergence rule and its verdict (train.convergence)
        "convergence": {n: r["convergence"] for n, r in records.items() if "convergence" in r},
        "compute": {
            "train_flops": ledger.total(exclude=("downstream",)),
            "teacher_flops": ledger.by_stage().get("wide", 0),
            "student_flops": ledger.total(exclude=("downstream", "wide")),
            "downstream_flops": ledger.by_stage().get("downstream", 0),
            "by_stage": ledger.by_stage(), "entries": ledger.entries,
            "counted_with": "torch.utils.flop_counter.FlopCounterMode, first step × steps",
            # wall time of the training stages as they ran (a cached stage keeps its own)
            "train_wall_s": sum(r.get("wall_s", 0.0) for n, r in records.items()
                                if n != "downstream"),
            "teacher_wall_s": records.get("wide", {}).get("wall_s", 0.0),
            "matched_to": matched,
        },
        "params": {role: count_params(m) for role, m in current.models.items()}
        | {"thin_architecture": count_params(task.build("thin"))},
        "final_model": method.final_role,
        "data": task.data_summary(),
        "wall_s": time.perf_counter() - start,
        "provenance": provenance(device=runtime.describe()) | {"extra_versions": _extra_versions()},
    }


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _evaluate(task, model, runtime, test: bool = False) -> dict:
    if task.name == "bert":
        return {"val": task.evaluate(model, "val", runtime.device)}
    out = {"val": task.evaluate(model, "val", runtime.device)}
    if test:
        out["test"] = task.evaluate(model, "test", runtime.device)
    return out


def _extra_versions() -> dict:
    out = {}
    for name in ("sklearn", "tokenizers"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            out[name] = None
    return out

"""Training methods as compositions of stages, and the runner that executes one method.

Every method is a short list of :class:`~empirical.stages.Stage` objects built from the run
configuration, so the baselines share the harness, the data order and the compute accounting
of the method they are compared with:

=====================  =====================================================================
``ours``               wide (stage 1) → imitate (stage 2) → fine-tune, labels + KD (stage 3)
``ours_no_ft``         wide → imitate (no stage 3)
``ours_simultaneous``  stage 2 trains every block at once (same number of steps)
``ours_labels_only``   stage 3 on labels only
``ours_teacher_forced`` stage 2 with teacher-forced block inputs
``subsample_init``     wide → mean-field warm start by subsampling → fine-tune (no imitation)
``teacher``            the wide model itself (stage 1 only)
``scratch``            the thin model trained on labels with its own settings and budget
                       (the ``[scratch]`` table over ``[finetune]``; without ``steps`` there,
                       as many steps as ``ours`` trains the thin model: stage 2's cap +
                       stage 3's steps)
``scratch_2x``         ``scratch`` with twice its steps: does doubling them change validation?
``scratch_long``       the thin model trained on labels with the training FLOPs of ``ours``,
                       the wide teacher's included (steps = that budget / FLOPs of a step;
                       the other settings are ``scratch``'s): the compute-matched baseline
``deeper``             a deeper thin model (``deeper_depth`` blocks per stage or layers, and
                       ``deeper_width_mult``) trained on labels with its own settings
                       (``[deeper]`` over ``[scratch]`` over ``[finetune]``)
``kd``                 wide → thin trained on labels + KD from a random start (Hinton), for
                       the thin steps of ``ours`` (stage 2's cap + stage 3's steps)
``fitnets``            wide → one hint at the middle block, every block below it trainable
                       (FitNets stage 1, stage 2's steps) → labels + KD (FitNets stage 2)
=====================  =====================================================================

For the ``bert`` task each method's final model is then fine-tuned on the downstream
classification task, or probed linearly (stage ``downstream``, ``downstream.mode``),
identically for every method; ``metrics["mlm"]["unigram"]`` of its ``result.json`` holds the
unigram baseline of the masked-LM loss (:meth:`empirical.tasks.BertTask.unigram_baseline`).

Every input is checked (:func:`plan`) before anything trains or any file is written. A run
writes ``DIR/checkpoints/<i>-<stage>.pt`` after each stage (atomically), then
``DIR/model.pt`` (the final model's weights) and ``DIR/result.json``. ``resume=True`` loads
the finished stages' checkpoints instead of running them again. Each checkpoint carries a
SHA-256 of its whole payload (mandatory), its stage's name and number; before one is used,
its checksum, its stage, its configuration and every model's parameter names, dtypes and
shapes are checked against this run. An intact checkpoint of another configuration is a
UsageError (another run's directory: nothing is touched); any other mismatch or damage is
reported in one line on stderr and its stage runs again. Temporary files left by an
interrupted writer are removed. With ``cache_dir``, the state
after every stage is also stored there under a hash of the configuration and of the stages
so far, so methods that begin with the same stages (every method with a wide teacher, for one
seed) train them once: a cached stage keeps its record, its FLOPs and its wall time, and is
marked ``"cached": true``. A cache entry is checked as a checkpoint is, and also carries its
key; one that fails is reported and its stage trained (and stored) again. Training is
deterministic on CPU, so this changes no number.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from empirical.capture import block_names
from empirical.config import RunConfig
from empirical.stages import RunState, Stage, run_stage
from empirical.tasks import make_task
from empirical.train import (
    check_device,
    load_checkpoint,
    prepare_model,
    save_checkpoint,
    setup_context,
)
from gowide.atomic import write_json
from gowide.errors import UsageError
from gowide.provenance import provenance

ROLE_SEEDS = {"wide": 1, "thin": 2, "deeper": 3}


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    stages: Callable[[RunConfig, int], list[Stage]]  # (config, thin blocks) -> stages
    final_role: str = "thin"


def _wide(c: RunConfig) -> Stage:
    return Stage("wide", "wide", "wide", c.wide)


def _imitate(c: RunConfig, **changes) -> Stage:
    return Stage("imitate", "imitate", "thin", replace(c.imitate, **changes), teacher="wide")


def _finetune(c: RunConfig, **changes) -> Stage:
    return Stage("finetune", "finetune", "thin", replace(c.finetune, **changes), teacher="wide")


def _kd(c: RunConfig) -> Stage:
    if c.finetune.kd_weight <= 0:
        raise UsageError(f"method {c.method!r} needs finetune.kd_weight > 0")
    return _finetune(c)


def _progressive_steps(c: RunConfig, n_blocks: int) -> int:
    return c.imitate.steps_per_block * n_blocks


def _thin_steps(c: RunConfig, n_blocks: int) -> int:
    """Thin-model training steps of ``ours``: stage 2's and stage 3's."""
    return _progressive_steps(c, n_blocks) + c.finetune.steps


def _scratch(c: RunConfig, role: str = "thin", steps: int | None = None,
             table: str = "scratch") -> Stage:
    """A baseline trained on labels from a fresh start, with the settings of its table
    (``RunConfig.baseline``); ``steps`` unless the table sets its own."""
    return Stage("scratch", "finetune", role, c.baseline(table, steps))


def _doubled(stage: Stage) -> Stage:
    return replace(stage, config=replace(stage.config, steps=2 * stage.config.steps))


def _ours(c: RunConfig, n: int) -> list[Stage]:
    return [_wide(c), _imitate(c), _finetune(c)]


def _fitnets(c: RunConfig, n: int) -> list[Stage]:
    middle = f"__middle_of_{n}"  # resolved against the model in run()
    hint = _imitate(c, blocks=[middle], schedule="progressive", lower_blocks="trainable",
                    inputs="thin", steps_per_block=_progressive_steps(c, n))
    return [_wide(c), replace(hint, name="hint"), _kd(c)]


METHODS: dict[str, Method] = {m.name: m for m in [
    Method("ours", "wide → layerwise imitation → fine-tune", _ours),
    Method("ours_no_ft", "wide → layerwise imitation, no fine-tuning",
           lambda c, n: [_wide(c), _imitate(c)]),
    Method("ours_simultaneous", "stage 2 trains all blocks at once",
           lambda c, n: [_wide(c), _imitate(c, schedule="simultaneous",
                                             steps=_progressive_steps(c, n)), _finetune(c)]),
    Method("ours_labels_only", "stage 3 on labels only",
           lambda c, n: [_wide(c), _imitate(c), _finetune(c, kd_weight=0.0)]),
    Method("ours_teacher_forced", "stage 2 with teacher-forced inputs",
           lambda c, n: [_wide(c), _imitate(c, inputs="teacher"), _finetune(c)]),
    Method("subsample_init", "wide → mean-field subsample warm start → fine-tune",
           lambda c, n: [_wide(c), Stage("subsample", "subsample", "thin", c.imitate,
                                                teacher="wide"),
                         _finetune(c)]),
    Method("teacher", "the wide model", lambda c, n: [_wide(c)], final_role="wide"),
    Method("scratch", "thin from scratch, its own budget ([scratch]; default: the thin steps "
           "of ours)", lambda c, n: [_scratch(c, steps=_thin_steps(c, n))]),
    Method("scratch_2x", "scratch with twice its steps (the doubling check of the "
           "scratch_converged gate)",
           lambda c, n: [_doubled(_scratch(c, steps=_thin_steps(c, n)))]),
    # Its steps are set in run() from the counted FLOPs of ours (see matched_steps).
    Method("scratch_long", "thin from scratch, the training FLOPs of ours with its teacher",
           lambda c, n: [_scratch(c, steps=_thin_steps(c, n))]),
    Method("deeper", "deeper (or larger) model from scratch, its own budget ([deeper]; "
           "default: scratch's)", lambda c, n: [_scratch(c, role="deeper", table="deeper",
                                                         steps=_thin_steps(c, n))],
           final_role="deeper"),
    Method("kd", "output-level distillation from the wide model (Hinton), the thin steps of "
           "ours", lambda c, n: [_wide(c), replace(_kd(c), config=replace(
               c.finetune, steps=_thin_steps(c, n)))]),
    Method("fitnets", "FitNets: one middle hint, then KD", _fitnets),
]}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise UsageError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


def build_role(task, role: str, seed: int, ctx):
    """A freshly initialised model of ``role``, seeded so it is the same in every run."""
    torch.manual_seed(seed * 7919 + ROLE_SEEDS[role])
    return prepare_model(task.build(role), ctx)


def _resolve_blocks(stages: list[Stage], names: list[str]) -> list[Stage]:
    out = []
    for s in stages:
        blocks = getattr(s.config, "blocks", None)
        if blocks and blocks[0].startswith("__middle_of_"):
            s = replace(s, config=replace(s.config, blocks=[names[len(names) // 2]]))
        out.append(s)
    return out


def _config_key(cfg: RunConfig) -> dict:
    d = cfg.to_dict()
    d.pop("device")
    return d


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


# Sections of the configuration that only stages read: each stage carries its own settings,
# so they enter a cache key through the stages that use them.
STAGE_TABLES = ("wide", "imitate", "finetune", "downstream", "scratch", "deeper")


def _prefix_key(key: dict, stages: list[Stage], final_role: str) -> str:
    """A hash of what determines the state after ``stages``: the configuration without the
    method's name and without the per-stage tables, and the stages themselves (each with its
    own settings). A sweep over stage 2's or stage 3's settings thus reuses the teacher."""
    shared = {k: v for k, v in key.items() if k != "method" and k not in STAGE_TABLES}
    text = json.dumps(shared, sort_keys=True)
    if any(s.name == "downstream" for s in stages):  # it starts from the final model
        text += "\n" + final_role
    text += "\n" + "\n".join(repr(s) for s in stages)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _one_step(c: RunConfig) -> RunConfig:
    """``c`` with every stage cut to one step (one per block in stage 2), without
    evaluations, stopping rules or BatchNorm recalibration (FLOP counting only)."""
    one = {"steps": 1, "eval_every": 0, "early_stop": False}
    return replace(c, wide=replace(c.wide, **one), finetune=replace(c.finetune, **one),
                   scratch=c.scratch | one, deeper=c.deeper | one,
                   imitate=replace(c.imitate, steps=1, steps_per_block=1, check_every=0,
                                   stop_error=0.0, stop_patience=0, bn_recalibration=0))


def ours_flops(cfg: RunConfig, task, ctx, names: list[str]) -> tuple[int, list[dict]]:
    """Training FLOPs of ``ours`` under ``cfg``, the wide teacher's included: every phase of
    its stages runs one step on throwaway models under the FLOP counter, times its steps."""
    state = RunState()
    short = _one_step(cfg)
    real_steps = {"wide": cfg.wide.steps, "finetune": cfg.finetune.steps,
                  "imitate": (cfg.imitate.steps_per_block if cfg.imitate.schedule == "progressive"
                              else cfg.imitate.steps)}
    for i, stage in enumerate(_ours(short, len(names))):
        for role in (stage.role, stage.teacher):
            if role is not None and role not in state.models:
                state.models[role] = build_role(task, role, cfg.seed, ctx)
        torch.manual_seed(cfg.seed * 1000 + i + 1)
        run_stage(stage, state, task, ctx, cfg.seed * 1000 + i + 1)
    rows = [e | {"steps": real_steps[e["stage"]],
                 "flops": e["flops_per_step"] * real_steps[e["stage"]]}
            for e in state.ledger.entries]
    return sum(r["flops"] for r in rows), rows


def matched_steps(cfg: RunConfig, task, ctx, names: list[str]) -> dict:
    """Steps of ``scratch_long``: the FLOPs of ``ours`` (teacher included) over the counted
    FLOPs of one step of the thin model on labels."""
    budget, rows = ours_flops(cfg, task, ctx, names)
    state = RunState()
    state.models["thin"] = build_role(task, "thin", cfg.seed, ctx)
    run_stage(_scratch(_one_step(cfg)), state, task, ctx, cfg.seed * 1000 + 1)
    per_step = state.ledger.entries[0]["flops_per_step"]
    return {"method": "ours", "budget_flops": budget, "budget_by_phase": rows,
            "flops_per_step": per_step, "steps": max(1, math.ceil(budget / per_step))}


def plan(cfg: RunConfig, task, world: int = 1) -> tuple[list[str], list[Stage]]:
    """Check what :func:`run` will need before it trains or writes anything: the method, the
    model members, the imitated blocks and the batch sizes against the data. Returns the
    thin model's block names and the stages (``scratch_long``'s steps are set in ``run``)."""
    method = get_method(cfg.method)
    roles = {"thin"} | {r for s in method.stages(cfg, 1) for r in (s.role, s.teacher) if r}
    for role in sorted(roles):
        task.family_config(role)
    names = block_names(task.build("thin"))
    stages = _resolve_blocks(method.stages(cfg, len(names)), names)
    if cfg.task == "bert":
        stages.append(Stage("downstream", "finetune", "downstream", cfg.downstream))
    for stage in stages:
        if stage.kind == "imitate":
            missing = [b for b in stage.config.blocks or [] if b not in names]
            if missing:
                raise UsageError(f"imitate.blocks: {missing[0]!r} is not a block of "
                                 f"{type(task.build('thin')).__name__}; its blocks are: "
                                 f"{', '.join(names)}")
        if stage.kind in ("wide", "imitate", "finetune"):
            stage_task = task.downstream_task() if stage.name == "downstream" else task
            # The first batch runs the checks of index_batches (size, divisibility).
            next(stage_task.train_batches(stage.config.batch_size, torch.Generator(), 0, world))
    return names, stages


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


STAGE_KEYS = {"stage", "index", "config", "record", "ledger", "models"}


def _expected_models(task, stages: list[Stage], final_role: str) -> list[dict]:
    """For each stage, the models a checkpoint after it must hold: role -> {parameter or
    buffer name: (dtype, shape)}, from models built without touching the random state."""
    shapes: dict[str, dict] = {}

    def of(role: str) -> dict:
        if role not in shapes:
            base = final_role if role == "downstream" else role
            with torch.random.fork_rng(devices=[]):
                model = task.build(base)
            shapes[role] = {k: (v.dtype, tuple(v.shape)) for k, v in model.state_dict().items()}
        return shapes[role]

    out, roles = [], {}
    for stage in stages:
        for role in (stage.role, stage.teacher):
            if role is not None:
                roles[role] = of(role)
        out.append(dict(roles))
    return out


def _check_stage(payload, stage: Stage, index: int, models: dict, cache_key: str | None):
    """ValueError naming the first thing in a (checksummed) stage payload that is not what
    this run expects at stage ``index``: its stage, its structure, its types, its shapes."""
    if not isinstance(payload, dict) or not STAGE_KEYS <= payload.keys():
        raise ValueError("not a stage checkpoint")
    if payload["stage"] != stage.name or payload["index"] != index:
        raise ValueError(f"it holds stage {payload['stage']!r} (number {payload['index']!r}), "
                         f"not {stage.name!r} (number {index})")
    if cache_key is not None and payload.get("cache_key") != cache_key:
        raise ValueError("it was stored under another cache key")
    if not isinstance(payload["config"], dict):
        raise ValueError("its configuration is not a table")
    record = payload["record"]
    if not isinstance(record, dict) or not isinstance(record.get("eval"), dict):
        raise ValueError("its stage record is not a table with an evaluation")
    wall = record.get("wall_s", 0.0)
    if isinstance(wall, bool) or not isinstance(wall, (int, float)) or not math.isfinite(wall):
        raise ValueError("its wall time is not a finite number")
    ledger = payload["ledger"]
    if not isinstance(ledger, list):
        raise ValueError("its compute ledger is not a list")
    for row in ledger:
        if not (isinstance(row, dict) and isinstance(row.get("stage"), str)
                and all(isinstance(row.get(k), int) and not isinstance(row.get(k), bool)
                        and row[k] >= 0 for k in ("flops_per_step", "steps", "flops"))):
            raise ValueError("a row of its compute ledger is malformed")
    held = payload["models"]
    if not isinstance(held, dict) or set(held) != set(models):
        names = sorted(map(str, held)) if isinstance(held, dict) else type(held).__name__
        raise ValueError(f"it holds the models {names}, not {sorted(models)}")
    for role, expected in models.items():
        sd = held[role]
        if not isinstance(sd, dict) or set(sd) != set(expected):
            raise ValueError(f"the {role} model's parameters are not those of this run")
        for name, (dtype, shape) in expected.items():
            t = sd[name]
            if not isinstance(t, torch.Tensor) or t.dtype != dtype or tuple(t.shape) != shape:
                got = (f"{t.dtype} {tuple(t.shape)}" if isinstance(t, torch.Tensor)
                       else type(t).__name__)
                raise ValueError(f"{role}.{name} is {got}, this run expects {dtype} {shape}")


def check_out(out: str | Path) -> Path:
    """UsageError unless ``out`` is a directory or can be created as one (not empty, no
    dangling symbolic link, writable); returns it with symbolic links resolved."""
    from gowide.paths import check_output_path

    return check_output_path(out)


def _warn(ctx, message: str) -> None:
    if ctx.is_main:
        print(f"gowide: warning: {message}", file=sys.stderr)


def _read_stage(path: Path, ctx, stage: Stage, index: int, models: dict,
                cache_key: str | None = None, config: dict | None = None) -> dict | None:
    """A stage checkpoint's payload, or None (with a one-line warning) when the file is
    damaged or is not the checkpoint this run expects at stage ``index`` (another stage,
    another cache key, other models, shapes or types). With ``config``: an intact file
    written with another configuration is a UsageError (another run's directory)."""
    try:
        payload = load_checkpoint(path)
    except Exception as exc:  # whatever the damage, the stage runs again
        return _unusable(ctx, path, exc)
    if config is not None and payload.get("config") != config:
        raise UsageError(f"--resume: {path} was written with a different configuration; "
                         "use another --out or run without --resume")
    try:
        _check_stage(payload, stage, index, models, cache_key)
    except Exception as exc:
        return _unusable(ctx, path, exc)
    return payload


def _unusable(ctx, path: Path, exc: Exception) -> None:
    reason = (str(exc).strip().splitlines() or [""])[0][:200]
    _warn(ctx, f"checkpoint {path} cannot be used ({type(exc).__name__}: {reason}); "
               "its stage runs again")


def _resumable(ckpt_dir: Path, stages: list[Stage], key: dict, ctx,
               models: list[dict]) -> dict[int, dict]:
    """The checkpoints ``--resume`` can use, by stage index, read before anything is written:
    an intact one written with another configuration is an error; a damaged one, or one that
    is not this stage's (its name, its number, its models' shapes and types) is skipped with
    a warning."""
    found = {}
    for i, stage in enumerate(stages):
        path = ckpt_dir / f"{i + 1}-{stage.name}.pt"
        payload = (_read_stage(path, ctx, stage, i + 1, models[i], config=key)
                   if path.exists() or path.is_symlink() else None)
        if payload is not None:
            found[i] = payload
    return found


def _remove_temporaries(out: Path) -> None:
    """Temporary files of writers that were interrupted (see save_checkpoint, write_json)."""
    stale = [*out.glob(".result.json.*.tmp"), *out.glob(".model.pt.*.tmp"),
             *(out / "checkpoints").glob(".*.tmp")]
    for path in stale:
        if path.is_file():
            path.unlink(missing_ok=True)


def run(cfg: RunConfig, out: str | Path, resume: bool = False, progress: bool = True,
        preset: str | None = None, cache_dir: str | Path | None = None) -> dict:
    """Run ``cfg.method`` end to end; returns the result written to ``out/result.json``.
    ``cache_dir``: share finished stages with other methods' runs (module docstring)."""
    start = time.perf_counter()
    method = get_method(cfg.method)
    out = check_out(out)
    ctx = setup_context(cfg.device, progress, cfg.precision)
    task = make_task(cfg)
    torch.manual_seed(cfg.seed)
    names, stages = plan(cfg, task, ctx.world)
    key = _config_key(cfg)
    ckpt_dir = out / "checkpoints"
    models = _expected_models(task, stages, method.final_role)
    resumed = _resumable(ckpt_dir, stages, key, ctx, models) if resume else {}
    if cfg.threads and ctx.device.type == "cpu":
        torch.set_num_threads(cfg.threads)
    matched = None
    if method.name == "scratch_long":
        matched = matched_steps(cfg, task, ctx, names)
        stages[0] = replace(_scratch(cfg), config=replace(_scratch(cfg).config,
                                                           steps=matched["steps"]))
    if ctx.is_main:
        # A result file is only ever the one of the run that completed last in this directory.
        (out / "result.json").unlink(missing_ok=True)
        _remove_temporaries(out)
        if not resume and ckpt_dir.exists():
            for old in ckpt_dir.glob("*.pt"):
                old.unlink()
    ctx.barrier()
    state = RunState()
    records: dict[str, dict] = {}
    for i, stage in enumerate(stages):
        path = ckpt_dir / f"{i + 1}-{stage.name}.pt"
        stage_seed = cfg.seed * 1000 + i + 1
        prefix = _prefix_key(key, stages[: i + 1], method.final_role)
        cached = Path(cache_dir) / f"{prefix}.pt" if cache_dir is not None else None
        payload, how = resumed.get(i), "resumed"
        if payload is None and cached is not None and cached.exists():
            payload, how = _read_stage(cached, ctx, stage, i + 1, models[i], prefix), "cached"
        if payload is not None:
            for role, sd in payload["models"].items():
                if role not in state.models:
                    state.models[role] = _new_model(task, role, cfg, ctx, state,
                                                    method.final_role)
                state.models[role].load_state_dict(sd)
            state.ledger.entries = list(payload["ledger"])
            records[stage.name] = payload["record"] | {how: True}
            if how == "cached" and ctx.is_main:
                save_checkpoint(path, {k: v for k, v in payload.items() if k != "cache_key"}
                                | {"config": key})
            continue
        for role in (stage.role, stage.teacher):
            if role is not None and role not in state.models:
                state.models[role] = _new_model(task, role, cfg, ctx, state,
                                                method.final_role)
        stage_task = task.downstream_task() if stage.name == "downstream" else task
        torch.manual_seed(stage_seed)
        record = run_stage(stage, state, stage_task, ctx, stage_seed)
        record["eval"] = _evaluate(stage_task, state.models[stage.role], ctx)
        records[stage.name] = record
        if ctx.is_main:
            payload = {"stage": stage.name, "index": i + 1, "config": key, "record": record,
                       "ledger": state.ledger.entries,
                       "models": {r: m.state_dict() for r, m in state.models.items()}}
            save_checkpoint(path, payload)
            if cached is not None:
                save_checkpoint(cached, payload | {"cache_key": prefix})
        ctx.barrier()

    final_role = "downstream" if cfg.task == "bert" else method.final_role
    final = state.models[final_role]
    metrics = _evaluate(task.downstream_task() if cfg.task == "bert" else task, final, ctx,
                        test=True)
    if cfg.task == "bert":
        metrics = {"downstream": metrics,
                   "mlm": records[stages[-2].name]["eval"]
                   | {"unigram": task.unigram_baseline()}}
    imitation = next((r for s, r in records.items() if "block_errors" in r), None)
    thin_params = count_params(task.build("thin"))
    result = {
        "task": cfg.task, "method": cfg.method, "description": method.description,
        "seed": cfg.seed, "preset": preset, "config": cfg.to_dict(),
        "metrics": metrics,
        "stages": records,
        "imitation_block_errors": imitation["block_errors"] if imitation else None,
        # per training stage: the convergence rule and its verdict (train.convergence)
        "convergence": {n: r["convergence"] for n, r in records.items() if "convergence" in r},
        "compute": {
            "train_flops": state.ledger.total(exclude=("downstream",)),
            "teacher_flops": state.ledger.by_stage().get("wide", 0),
            "student_flops": state.ledger.total(exclude=("downstream", "wide")),
            "downstream_flops": state.ledger.by_stage().get("downstream", 0),
            "by_stage": state.ledger.by_stage(), "entries": state.ledger.entries,
            "counted_with": "torch.utils.flop_counter.FlopCounterMode, first step × steps",
            # wall time of the training stages as they ran (a cached stage keeps its own)
            "train_wall_s": sum(r.get("wall_s", 0.0) for n, r in records.items()
                                if n != "downstream"),
            "teacher_wall_s": records.get("wide", {}).get("wall_s", 0.0),
            "matched_to": matched,
        },
        "params": {role: count_params(m) for role, m in state.models.items()}
        | {"thin_architecture": thin_params},
        "final_model": method.final_role,
        "data": task.data_summary(),
        "wall_s": time.perf_counter() - start,
        "provenance": provenance(device=ctx.describe()) | {"extra_versions": _extra_versions()},
    }
    if ctx.is_main:
        save_checkpoint(out / "model.pt", {"role": final_role, "state_dict": final.state_dict(),
                                           "config": key})
        write_json(out / "result.json", result)
    ctx.barrier()
    return result


def _new_model(task, role, cfg, ctx, state, base_role):
    if role == "downstream":  # the downstream copy of the method's final model
        return copy.deepcopy(state.models[base_role])
    return build_role(task, role, cfg.seed, ctx)


def _evaluate(task, model, ctx, test: bool = False) -> dict:
    if task.name == "bert":
        return {"val": task.evaluate(model, "val", ctx.device)}
    out = {"val": task.evaluate(model, "val", ctx.device)}
    if test:
        out["test"] = task.evaluate(model, "test", ctx.device)
    return out


def _extra_versions() -> dict:
    out = {}
    for name in ("sklearn", "tokenizers"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            out[name] = None
    return out

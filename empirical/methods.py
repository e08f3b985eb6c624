"""Training methods as compositions of stages: the registry :data:`METHODS`.

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
identically for every method (:func:`plan` appends it).

:func:`plan` turns a configuration into the stages its run will take, checked against the
task's models and data before anything trains or any file is written; the runner
(:mod:`empirical.runner`) runs them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from empirical.capture import block_names
from empirical.config import RunConfig
from empirical.stages import Stage
from gowide.errors import UsageError


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


def scratch_stage(c: RunConfig, role: str = "thin", steps: int | None = None,
             table: str = "scratch") -> Stage:
    """A baseline trained on labels from a fresh start, with the settings of its table
    (``RunConfig.baseline``); ``steps`` unless the table sets its own."""
    return Stage("scratch", "finetune", role, c.baseline(table, steps))


def _doubled(stage: Stage) -> Stage:
    return replace(stage, config=replace(stage.config, steps=2 * stage.config.steps))


def ours_stages(c: RunConfig, n: int) -> list[Stage]:
    return [_wide(c), _imitate(c), _finetune(c)]


def _fitnets(c: RunConfig, n: int) -> list[Stage]:
    middle = f"__middle_of_{n}"  # resolved against the model in plan()
    hint = _imitate(c, blocks=[middle], schedule="progressive", lower_blocks="trainable",
                    inputs="thin", steps_per_block=_progressive_steps(c, n))
    return [_wide(c), replace(hint, name="hint"), _kd(c)]


METHODS: dict[str, Method] = {m.name: m for m in [
    Method("ours", "wide → layerwise imitation → fine-tune", ours_stages),
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
           "of ours)", lambda c, n: [scratch_stage(c, steps=_thin_steps(c, n))]),
    Method("scratch_2x", "scratch with twice its steps (the doubling check of the "
           "scratch_converged gate)",
           lambda c, n: [_doubled(scratch_stage(c, steps=_thin_steps(c, n)))]),
    # Its steps are set by the runner from the counted FLOPs of ours (matching.py).
    Method("scratch_long", "thin from scratch, the training FLOPs of ours with its teacher",
           lambda c, n: [scratch_stage(c, steps=_thin_steps(c, n))]),
    Method("deeper", "deeper (or larger) model from scratch, its own budget ([deeper]; "
           "default: scratch's)", lambda c, n: [scratch_stage(c, role="deeper", table="deeper",
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


def _resolve_blocks(stages: list[Stage], names: list[str]) -> list[Stage]:
    out = []
    for s in stages:
        blocks = getattr(s.config, "blocks", None)
        if blocks and blocks[0].startswith("__middle_of_"):
            s = replace(s, config=replace(s.config, blocks=[names[len(names) // 2]]))
        out.append(s)
    return out


def plan(cfg: RunConfig, task, world: int = 1) -> tuple[list[str], list[Stage]]:
    """The stages a run of ``cfg`` takes, with what they need checked before anything trains
    or is written: the method, the model members, the imitated blocks and the batch sizes
    against the data. Returns the thin model's block names and the stages
    (``scratch_long``'s steps are set later, by :func:`empirical.matching.matched_steps`)."""
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

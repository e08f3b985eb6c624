"""What the stages of one run share: the :class:`Run` object.

A run trains one method on one seed (:func:`empirical.runner.run`). Its stages
(:func:`empirical.stages.run_stage`) read and change the same things: the configuration,
the task (data, forward pass, losses, evaluation), the runtime (device and processes), the
models by role, the compute ledger and the thin model's block names; during stage 2, also
the linear pairs between the thin and the wide blocks. A stage function takes the run and its
own settings (``imitate(run, cfg.imitate, seed)``), not these one by one.

Models are built on first use (:meth:`Run.model`), each role from its own seed
(:func:`build_role`), so a model is the same in every run of a seed, whatever the method.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from empirical.capture import block_names
from empirical.config import RunConfig
from empirical.connectors import Connectors
from empirical.flops import ComputeLedger
from empirical.runtime import Runtime, prepare_model
from empirical.tasks import Task

# Each role's initialisation seed is seed * 7919 + its number here.
ROLE_SEEDS = {"wide": 1, "thin": 2, "deeper": 3}


def build_role(task, role: str, seed: int, runtime: Runtime) -> nn.Module:
    """A freshly initialised model of ``role``, seeded so it is the same in every run."""
    torch.manual_seed(seed * 7919 + ROLE_SEEDS[role])
    return prepare_model(task.build(role), runtime)


@dataclass
class Run:
    """One run's shared state.

    ``models`` by role: ``wide`` (the teacher), ``thin`` (the model the recipe narrows to),
    ``deeper`` (the deeper baseline), ``downstream`` (a copy of the final model, fine-tuned
    on the downstream task); ``final_role`` is the role the method delivers.
    ``connectors``: stage 2's linear pairs, from its start until they are merged away.
    ``cfg`` may be None where stage functions are used on their own (the models are then
    given, not built)."""

    task: Task
    runtime: Runtime
    cfg: RunConfig | None = None
    models: dict[str, nn.Module] = field(default_factory=dict)
    ledger: ComputeLedger = field(default_factory=ComputeLedger)
    final_role: str = "thin"
    connectors: Connectors | None = None

    @property
    def thin(self) -> nn.Module:
        return self.models["thin"]

    @property
    def wide(self) -> nn.Module:
        return self.models["wide"]

    @property
    def blocks(self) -> list[str]:
        """The thin model's imitated blocks, bottom to top."""
        return block_names(self.thin)

    def model(self, role: str) -> nn.Module:
        """The model of ``role``, built (and seeded) on first use; ``downstream`` starts as a
        copy of the final model."""
        if role not in self.models:
            if role == "downstream":
                self.models[role] = copy.deepcopy(self.models[self.final_role])
            else:
                self.models[role] = build_role(self.task, role, self.cfg.seed, self.runtime)
        return self.models[role]

    def task_of(self, stage) -> Task:
        """The task a stage trains on: the downstream task for ``downstream``."""
        return self.task.downstream_task() if stage.name == "downstream" else self.task

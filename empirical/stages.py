"""The stages of *go wide, then narrow*, as small objects a method strings together, and
:func:`run_stage`, which runs one of them on a run's models.

* stage 1, ``wide`` — train the wide member of the family on labels
  (:func:`empirical.train.train_supervised`);
* ``subsample`` — the mean-field warm start: the thin model becomes a rescaled seeded
  subsample of the wide model's neurons (``subsample.py``), before imitation or instead of it;
* stage 2, ``imitate`` — layerwise imitation of the wide model's block outputs
  (:func:`empirical.imitation.imitate`), with linear pairs where widths differ, merged at the
  end (``connectors.py``);
* stage 3, ``finetune`` — train the thin model end to end on labels, with output-level
  distillation from the wide model when ``kd_weight`` > 0. Baselines trained from scratch
  are the same stage on a freshly initialised model; ``downstream`` (BERT) is the same
  stage on the downstream task, or a linear probe (``probe.py``).

Stages 1 and 3 use DDP under several processes; stage 2 averages its gradients itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from empirical.config import ImitationConfig, SupervisedConfig
from empirical.connectors import Connectors
from empirical.imitation import imitate
from empirical.imitation_loss import relative_block_errors
from empirical.run import Run
from empirical.subsample import subsample_init
from empirical.train import train_supervised
from empirical.transfer import recalibrate_batchnorm

if TYPE_CHECKING:  # checkpoints imports this module
    from empirical.checkpoints import Partial


@dataclass
class Stage:
    """One step of a method: ``kind`` is wide | subsample | imitate | finetune; ``role`` the
    model it trains (wide | thin | deeper | downstream); ``teacher`` the role it learns from,
    if any (stage 2 and the subsample warm start: the thin model from the wide one).

    Its ``repr`` enters the keys of the stage cache (:func:`empirical.runner.stage_key`)."""

    name: str
    kind: str
    role: str
    config: SupervisedConfig | ImitationConfig | None = None
    teacher: str | None = None


def run_stage(stage: Stage, run: Run, seed: int, partial: Partial | None = None) -> dict:
    """Run one stage on the run's models (which must already hold its roles); returns its
    record and adds its FLOPs to ``run.ledger``. ``partial``: where a supervised stage saves
    its state at each validation, and stage 2 after each phase, to take it up after an
    interruption (:class:`empirical.checkpoints.Partial`)."""
    model = run.models[stage.role]
    teacher = run.models.get(stage.teacher) if stage.teacher else None
    task, runtime = run.task_of(stage), run.runtime
    if stage.kind == "finetune" and getattr(stage.config, "mode", "finetune") == "probe":
        from empirical.probe import linear_probe

        return linear_probe(model, task, runtime.device, run.ledger, stage.name)
    if stage.kind in ("wide", "finetune"):
        return train_supervised(model, task, stage.config, runtime, stage.name, seed,
                                run.ledger, teacher=teacher, partial=partial)
    if stage.kind == "subsample":
        return _subsample(run, stage.config, seed)
    if stage.kind == "imitate":
        if stage.config.init == "subsample":
            subsample_init(model, teacher, seed, stage.config.subsample_rescale)
            # the subsampled statistics are the wide model's: stale for the thin one
            recalibrate_batchnorm(model, task, runtime, stage.config.bn_recalibration,
                                  stage.config.batch_size, seed + 2)
        return imitate(run, stage.config, seed, stage.name, partial=partial)
    raise ValueError(f"unknown stage kind {stage.kind!r}")


def _subsample(run: Run, cfg: ImitationConfig, seed: int) -> dict:
    """The mean-field warm start as a stage of its own: ``run.thin`` becomes a subsample of
    ``run.wide``; its block errors are recorded where the widths of the interfaces agree."""
    start = time.perf_counter()
    thin, wide = run.thin, run.wide
    subsample_init(thin, wide, seed, cfg.subsample_rescale)
    recalibrated = recalibrate_batchnorm(thin, run.task, run.runtime, cfg.bn_recalibration,
                                         cfg.batch_size, seed + 1)
    names = run.blocks
    run.connectors = Connectors(thin, wide, names, seed=seed).to(run.runtime.device)
    errors = (relative_block_errors(run, names, "thin", target=cfg.target)
              if not run.connectors.pairs else None)
    run.connectors = None
    return {"block_errors": {"thin": errors} if errors else None, "target": cfg.target,
            "bn_recalibration_batches": recalibrated, "wall_s": time.perf_counter() - start}

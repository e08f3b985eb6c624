"""Teacher features computed once: the wide model's block outputs on the whole training set.

Stage 2 reads the wide model's block outputs at every step. The wide model is fixed during
stage 2 (eval mode, no gradient), so where a training batch is a fixed function of the
indices of its examples, its outputs on an example never change: they can be computed once,
kept in memory, and read back by index instead of running the wide model at every step
(:func:`precompute_features`, then ``imitation.imitate(..., features=...)``). A step then costs
the thin model's forward and backward passes alone.

This holds for the image task, whose batches are ``{"x": x[idx], "y": y[idx]}``. It does not
hold for the masked-LM task, whose tokens are masked afresh for every batch (the wide model's
input is new at every step): there is nothing to reuse, and :func:`training_examples` says so.

The features are kept on the CPU by default (a batch's rows are moved to the device with the
batch); :func:`feature_bytes` gives their size before anything is computed, and
:func:`precompute_features` refuses, with the sizes in the message, when they would not fit
in the memory budget (by default half of the memory available).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from empirical.capture import block_names, unwrap
from empirical.flops import count_flops
from empirical.imitation_loss import teacher_outputs
from empirical.runtime import Runtime, to_device
from empirical.tasks import ImageTask, index_batches
from gowide.errors import UsageError


def training_examples(task) -> dict[str, torch.Tensor]:
    """The training set as tensors whose rows are examples, such that the task's training
    batches are ``{key: tensor[idx]}`` for the indices that ``index_batches`` draws."""
    if isinstance(task, ImageTask):
        return {"x": task.data.x_train, "y": task.data.y_train}
    raise UsageError(
        f"teacher features cannot be precomputed for the {task.name!r} task: its training "
        "batches are not fixed functions of their examples (tokens are masked afresh for "
        "every batch), so the wide model's input changes at every step"
    )


def available_memory() -> int:
    """Bytes of memory available now (``MemAvailable`` of /proc/meminfo; 4 GiB if unknown)."""
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 4 << 30


@dataclass
class TeacherFeatures:
    """Block outputs of the wide model for every training example: ``outputs[name]`` has the
    training set's examples along dim 0, in the order of :func:`training_examples`."""

    examples: dict[str, torch.Tensor]
    outputs: dict[str, torch.Tensor]
    flops: int = 0  # counted FLOPs of the pass that computed them
    wall_s: float = 0.0

    @property
    def size(self) -> int:
        return next(iter(self.examples.values())).shape[0]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.outputs.values())

    def check_covers(self, names) -> None:
        missing = [n for n in names if n not in self.outputs]
        if missing:
            raise UsageError(f"precomputed teacher features lack block(s) {', '.join(missing)}; "
                             f"they hold {', '.join(self.outputs)}")

    def lookup(self, idx: torch.Tensor) -> tuple[dict, dict]:
        """(the batch of examples ``idx``, the wide block outputs of that batch)."""
        return ({k: v[idx] for k, v in self.examples.items()},
                {k: v[idx] for k, v in self.outputs.items()})

    def batches(self, batch_size: int, generator: torch.Generator, rank: int = 0,
                world: int = 1) -> Iterator[tuple[dict, dict]]:
        """The task's training batches (the same indices, from the same generator, as
        ``task.train_batches``), each with its wide block outputs."""
        for idx in index_batches(self.size, batch_size, generator, rank, world):
            yield self.lookup(idx)


def feature_bytes(wide: nn.Module, task, names: list[str] | None = None,
                  runtime: Runtime | None = None, probe: int = 2) -> int:
    """Bytes the block outputs ``names`` (default: every block) of the training set take."""
    runtime = runtime or Runtime(torch.device("cpu"))
    names = list(names) if names else block_names(wide)
    examples = training_examples(task)
    n = next(iter(examples.values())).shape[0]
    batch = to_device({k: v[:probe] for k, v in examples.items()}, runtime.device)
    was = wide.training
    wide.eval()
    z = teacher_outputs(wide, task, batch, names, runtime, stop_after=_last(wide, names))
    wide.train(was)
    per_example = sum(t[0].numel() * t.element_size() for t in z.values())
    return per_example * n


def _last(wide: nn.Module, names: list[str]) -> str:
    order = {n: i for i, n in enumerate(block_names(wide))}
    unknown = [n for n in names if n not in order]
    if unknown:
        raise UsageError(f"block {unknown[0]!r} is not a block of {type(unwrap(wide)).__name__}; "
                         f"its blocks are: {', '.join(order)}")
    return max(names, key=order.get)


def precompute_features(wide: nn.Module, task, runtime: Runtime | None = None,
                        names: list[str] | None = None, batch_size: int = 256,
                        max_bytes: int | None = None, store: str | torch.device = "cpu",
                        ) -> TeacherFeatures:
    """Run the wide model (eval mode, no grad, the runtime's autocast) once over the training
    set and keep the outputs of the blocks ``names`` (default: every block).

    ``max_bytes`` (default: half the memory available) bounds the size of what is kept: a
    UsageError, with the sizes, when the features would not fit. ``store``: the device that
    holds them."""
    start = time.perf_counter()
    runtime = runtime or Runtime(torch.device("cpu"))
    names = list(names) if names else block_names(wide)
    last = _last(wide, names)
    examples = training_examples(task)
    n = next(iter(examples.values())).shape[0]
    need = feature_bytes(wide, task, names, runtime)
    budget = available_memory() // 2 if max_bytes is None else int(max_bytes)
    if need > budget:
        raise UsageError(
            f"precomputed teacher features would take {need / 2**20:.0f} MiB for {n} examples "
            f"and the budget is {budget / 2**20:.0f} MiB; run stage 2 with the live teacher"
        )
    was = wide.training
    wide.eval()
    outputs: dict[str, list[torch.Tensor]] = {k: [] for k in names}
    flops = 0
    for s in range(0, n, batch_size):
        batch = to_device({k: v[s: s + batch_size] for k, v in examples.items()}, runtime.device)

        def run(batch=batch):
            return teacher_outputs(wide, task, batch, names, runtime, stop_after=last)

        if s == 0:  # the count is linear in the batch size: count once, scale to the set
            z, f = count_flops(run)
            flops = round(f * n / min(batch_size, n))
        else:
            z = run()
        for k in names:
            outputs[k].append(z[k].to(store))
    wide.train(was)
    return TeacherFeatures(examples=examples,
                           outputs={k: torch.cat(v) for k, v in outputs.items()},
                           flops=flops, wall_s=time.perf_counter() - start)


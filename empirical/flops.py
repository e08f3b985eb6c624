"""Compute accounting: training FLOPs of every stage, counted, not estimated from formulas.

The FLOPs of one training step (forward, backward, and the teacher's forward where there is
one) are counted with ``torch.utils.flop_counter.FlopCounterMode`` on the first step of every
phase of a stage, and multiplied by the phase's number of steps; under several processes the
count of one process is multiplied by their number. The counter sees matrix products,
convolutions and attention (the dominant cost); element-wise operations, normalisation and
the optimizer update are not counted. Evaluation passes are not training compute and are not
counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch.utils.flop_counter import FlopCounterMode


def count_flops(fn: Callable):
    """Run ``fn()`` under a FLOP counter; returns (its result, FLOPs counted)."""
    with FlopCounterMode(display=False) as counter:
        result = fn()
    return result, int(counter.get_total_flops())


@dataclass
class ComputeLedger:
    """Training FLOPs per stage and phase: ``entries`` rows of (stage, phase, per step, steps)."""

    entries: list[dict] = field(default_factory=list)

    def add(self, stage: str, phase: str, flops_per_step: int, steps: int) -> None:
        self.entries.append({"stage": stage, "phase": phase, "flops_per_step": int(flops_per_step),
                             "steps": int(steps), "flops": int(flops_per_step) * int(steps)})

    def by_stage(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self.entries:
            out[e["stage"]] = out.get(e["stage"], 0) + e["flops"]
        return out

    def total(self, exclude: tuple[str, ...] = ()) -> int:
        return sum(e["flops"] for e in self.entries if e["stage"] not in exclude)

    def extend(self, rows: list[dict]) -> None:
        self.entries.extend(rows)

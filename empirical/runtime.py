"""The runtime of a run: the device, the processes of a distributed run, mixed precision.

* Devices: CPU by default, CUDA when present (``--device auto``), with bf16 autocast on GPU
  unless the configuration's ``precision`` is ``fp32``.
* Several processes: launched with ``torchrun``; each process takes its share of every
  global batch, and ``DistributedDataParallel`` averages gradients (gloo on CPU, NCCL on
  GPU). With BatchNorm on GPU the model is converted to ``SyncBatchNorm``; on CPU (where
  SyncBatchNorm does not run) batch statistics are per process, so only normalisation-free
  or GroupNorm/LayerNorm models match a single process exactly.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from gowide.environment import distributed
from gowide.errors import UsageError


@dataclass
class Runtime:
    """Where and how a run computes: its device, its rank among ``world`` processes, bf16
    autocast or not, progress bars or not."""

    device: torch.device
    rank: int = 0
    world: int = 1
    amp: bool = False  # bf16 autocast (CUDA only)
    progress: bool = True

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def autocast(self):
        if self.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def wrap(self, model: nn.Module) -> nn.Module:
        if not self.distributed:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        # A model with several heads (BERT: masked-LM and classification) leaves the unused
        # head without gradients, which DDP must be told about.
        return nn.parallel.DistributedDataParallel(
            model, device_ids=ids,
            find_unused_parameters=getattr(model, "has_unused_heads", False))

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def mean_across(self, value: torch.Tensor) -> float:
        """The mean of a scalar over processes (one all-reduce), as a float."""
        value = value.detach().to(torch.float64).reshape(1)  # exact for float32 values
        if self.distributed:
            dist.all_reduce(value)
            value = value / self.world
        return float(value)

    def average_gradients(self, params) -> None:
        """Average ``.grad`` over processes (what DDP does), for loops that do not use DDP."""
        if not self.distributed:
            return
        for p in params:
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= self.world

    @property
    def quiet_bars(self) -> bool | None:
        """tqdm's ``disable``: off when progress is not wanted, None (off unless a terminal)
        otherwise."""
        return None if self.progress else True

    @property
    def log_lines(self) -> bool:
        """Plain progress lines on stderr (:meth:`note`): when progress is wanted and stderr is
        not a terminal, where the bars are off (a log file of a run in the background)."""
        return self.progress and not sys.stderr.isatty()

    def note(self, text: str) -> None:
        """One progress line, ``gowide: <text>``, when :attr:`log_lines` holds."""
        if self.log_lines:
            print(f"gowide: {text}", file=sys.stderr, flush=True)

    def describe(self) -> str:
        kind = str(self.device)
        if self.device.type == "cuda":
            mode = "bf16 autocast" if self.amp else "float32, TF32 off"
            kind = f"{kind} ({torch.cuda.get_device_name(self.device)}, {mode})"
        return f"{kind} x {self.world} process(es)" if self.distributed else kind


def check_device(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA device is available")


def setup_runtime(device: str = "auto", progress: bool = True,
                  precision: str = "auto") -> Runtime:
    """Pick the device and, under ``torchrun`` (``WORLD_SIZE`` > 1), join the process group.
    ``precision``: auto (bf16 autocast on CUDA, float32 on the CPU), fp32 (float32
    everywhere; on CUDA with TF32 off, so matrix products and convolutions are true float32)
    or bf16 (bf16 autocast; CUDA only)."""
    check_device(device)
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if precision == "bf16" and not use_cuda:
        raise UsageError("precision bf16 (bf16 autocast) needs a CUDA device")
    amp = use_cuda and precision in ("auto", "bf16")
    if use_cuda and not amp:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    world, _, local = distributed()
    rank = 0
    dev = torch.device("cuda" if use_cuda else "cpu")
    if world > 1:
        if not dist.is_initialized():
            dist.init_process_group("nccl" if use_cuda else "gloo")
        rank = dist.get_rank()
        if use_cuda:
            torch.cuda.set_device(local)
            dev = torch.device("cuda", local)
    return Runtime(dev, rank, world, amp=amp, progress=progress and rank == 0)


def prepare_model(model: nn.Module, runtime: Runtime) -> nn.Module:
    if runtime.distributed and runtime.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model.to(runtime.device)


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}

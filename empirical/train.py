"""The training machinery shared by every stage: devices and processes, mixed precision,
optimizers, the supervised loop, divergence checks and atomic checkpoints.

* Devices: CPU by default, CUDA when present (``--device auto``), with bf16 autocast on GPU
  unless the configuration's ``precision`` is ``fp32``.
* Several processes: launched with ``torchrun``; each process takes its share of every
  global batch, and ``DistributedDataParallel`` averages gradients (gloo on CPU, NCCL on
  GPU). With BatchNorm on GPU the model is converted to ``SyncBatchNorm``; on CPU (where
  SyncBatchNorm does not run) batch statistics are per process, so only normalisation-free
  or GroupNorm/LayerNorm models match a single process exactly.
* Validation: with ``eval_every`` > 0 the supervised loop evaluates the validation split,
  keeps the best weights and records the convergence rule (:func:`convergence`).
* Divergence: a non-finite loss stops the run with :class:`Diverged`, naming stage and
  step; checkpoints are written only after a stage completes, so the last good one stays.
* Checkpoints: written to a temporary file and renamed into place, with a SHA-256 of a
  canonical serialisation of the whole payload (tensors and records) that
  :func:`load_checkpoint` checks; a file without it is damaged, so a damaged file is found,
  never used.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from empirical.config import SupervisedConfig
from empirical.flops import ComputeLedger, count_flops
from gowide.environment import distributed
from gowide.errors import UsageError


class Diverged(RuntimeError):
    """A loss became NaN or infinite."""


class BadCheckpoint(RuntimeError):
    """A checkpoint file that cannot be read, has no checksum, or whose payload does not
    match it."""


@dataclass
class Context:
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

    def describe(self) -> str:
        kind = str(self.device)
        if self.device.type == "cuda":
            mode = "bf16 autocast" if self.amp else "float32, TF32 off"
            kind = f"{kind} ({torch.cuda.get_device_name(self.device)}, {mode})"
        return f"{kind} x {self.world} process(es)" if self.distributed else kind


def check_device(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA device is available")


def setup_context(device: str = "auto", progress: bool = True,
                  precision: str = "auto") -> Context:
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
    return Context(dev, rank, world, amp=amp, progress=progress and rank == 0)


def prepare_model(model: nn.Module, ctx: Context) -> nn.Module:
    if ctx.distributed and ctx.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model.to(ctx.device)


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def make_optimizer(params, lr: float, weight_decay: float, steps: int, warmup: float = 0.0):
    """AdamW with linear warm-up over ``warmup``·steps, then cosine decay to zero."""
    params = [p for p in params if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    n_warm = int(warmup * steps)

    def factor(step: int) -> float:
        if step < n_warm:
            return (step + 1) / n_warm
        progress = (step - n_warm) / max(1, steps - n_warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def check_finite(value: float, stage: str, step: int) -> None:
    if not math.isfinite(value):
        raise Diverged(
            f"stage {stage!r} diverged at step {step}: loss is {value}; stopped, the last good "
            "checkpoint (of the previous stage) is kept"
        )


class LossLog:
    """Mean loss every ``every`` steps: the curve stored in result files."""

    def __init__(self, every: int):
        self.every, self.curve, self._buf = every, [], []

    def add(self, step: int, value: float, **extra) -> None:
        self._buf.append(value)
        if (step + 1) % self.every == 0:
            self.curve.append({"step": step + 1, "loss": sum(self._buf) / len(self._buf), **extra})
            self._buf = []

    def last(self) -> float | None:
        if self._buf:
            return sum(self._buf) / len(self._buf)
        return self.curve[-1]["loss"] if self.curve else None


def convergence(evaluations: list[dict], metric: str, mode: str, patience: int,
                min_delta: float) -> dict:
    """The convergence rule on a list of evaluations (``{"step", metric: value}``, in order):
    *converged* when the best value of the last ``patience`` evaluations does not beat the
    best value before them by more than ``min_delta`` (``mode`` max: higher is better, min:
    lower is better). Fewer than ``patience + 1`` evaluations are not evidence either way:
    ``converged`` is then False. Returns the verdict with its evidence."""
    sign = 1.0 if mode == "max" else -1.0
    beyond = "above" if sign > 0 else "below"
    rule = (f"best val {metric} of the last {patience} evaluations not {beyond} the best "
            f"before them by more than {min_delta:g}")
    out = {"rule": rule, "metric": metric, "mode": mode, "patience": patience,
           "min_delta": min_delta, "evaluations": len(evaluations)}
    if len(evaluations) <= patience:
        return out | {"converged": False, "best_before_window": None, "best_in_window": None,
                      "gain_in_window": None,
                      "note": f"{len(evaluations)} evaluations, the rule needs {patience + 1}"}
    values = [sign * e[metric] for e in evaluations]
    before, window = max(values[:-patience]), max(values[-patience:])
    gain = window - before  # in the direction of "better"
    return out | {"converged": bool(gain <= min_delta), "best_before_window": sign * before,
                  "best_in_window": sign * window, "gain_in_window": gain}


def train_supervised(model: nn.Module, task, cfg: SupervisedConfig, ctx: Context, stage: str,
                     seed: int, ledger: ComputeLedger, teacher: nn.Module | None = None) -> dict:
    """Train ``model`` on the task's labels (and KD from ``teacher`` if ``cfg.kd_weight`` > 0).

    With ``cfg.eval_every`` > 0 the validation split is evaluated every ``eval_every`` steps
    and at the last step; the best weights by the task's monitored metric
    (``task.monitor``) are kept in memory and restored at the end when ``cfg.select`` is
    ``best``; the convergence rule of :func:`convergence` is recorded, and ends the stage
    early with ``cfg.early_stop``. Under several processes every process evaluates, and the
    mean of their values decides, so all of them stop and select alike."""
    start = time.perf_counter()
    model.train()
    use_kd = teacher is not None and cfg.kd_weight > 0
    if use_kd:
        teacher.eval()
    net = ctx.wrap(model)
    opt, sched = make_optimizer(model.parameters(), cfg.lr, cfg.weight_decay, cfg.steps,
                                cfg.warmup)
    batches = task.train_batches(cfg.batch_size, torch.Generator().manual_seed(seed),
                                 ctx.rank, ctx.world)
    log = LossLog(cfg.log_every)
    w = cfg.kd_weight
    metric, mode = task.monitor
    evaluations: list[dict] = []
    best = None  # (value, step, weights)
    flops_per_step, steps_run = 0, 0
    verdict = None

    bar = tqdm(range(cfg.steps), desc=stage, disable=ctx.quiet_bars, leave=False)
    for step in bar:
        batch = to_device(next(batches), ctx.device)

        def one_step(batch=batch):
            with ctx.autocast():
                logits = task.forward(net, batch)
                loss = task.loss(logits, batch)
                if use_kd:
                    with torch.no_grad():
                        t_logits = task.forward(teacher, batch)
                    loss = (1 - w) * loss + w * task.kd_loss(logits, t_logits, batch,
                                                             cfg.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            return loss

        if step == 0:
            loss, flops_per_step = count_flops(one_step)
        else:
            loss = one_step()
        value = ctx.mean_across(loss)
        check_finite(value, stage, step)
        opt.step()
        sched.step()
        log.add(step, value)
        steps_run = step + 1
        if cfg.eval_every and (steps_run % cfg.eval_every == 0 or steps_run == cfg.steps):
            scores = task.evaluate(model, "val", ctx.device)
            scores = {k: ctx.mean_across(torch.tensor(float(v), dtype=torch.float64))
                      for k, v in scores.items()}
            evaluations.append({"step": steps_run} | scores)
            better = (best is None or (scores[metric] > best[0] if mode == "max"
                                       else scores[metric] < best[0]))
            if better:
                weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
                best = (scores[metric], steps_run, weights)
            bar.set_postfix_str(f"val {metric} {scores[metric]:.4f}")
            verdict = convergence(evaluations, metric, mode, cfg.patience, cfg.min_delta)
            if cfg.early_stop and verdict["converged"]:
                break
    ledger.add(stage, "train", flops_per_step * ctx.world, steps_run)
    record = {"steps": steps_run, "steps_cap": cfg.steps, "final_loss": log.last(),
              "loss_curve": log.curve, "kd": use_kd}
    if cfg.eval_every:
        selected = best[1] if cfg.select == "best" else steps_run
        if cfg.select == "best" and best[1] != steps_run:
            model.load_state_dict(best[2])
        record |= {"evaluations": evaluations, "select": cfg.select, "selected_step": selected,
                   "selected": next(e for e in evaluations if e["step"] == selected),
                   "convergence": verdict | {"stopped_early": steps_run < cfg.steps}}
    else:
        record["convergence"] = {"converged": None,
                                 "rule": "none: no validation during training (eval_every = 0)"}
    return record | {"wall_s": time.perf_counter() - start}


CHECKSUM_KEY = "payload_sha256"


def _digest_into(h, x, depth: int = 0) -> None:
    """Feed a canonical, length-prefixed serialisation of ``x`` to ``h``: tensors (dtype,
    shape, bytes), dicts (keys in a fixed order), lists, tuples, strings, numbers, None."""
    if depth > 64:
        raise BadCheckpoint("nested too deeply")

    def tag(kind: str, data: bytes) -> None:
        h.update(kind.encode() + len(data).to_bytes(8, "little") + data)

    if isinstance(x, torch.Tensor):
        t = x.detach().cpu().contiguous().reshape(-1)
        tag("T", f"{t.dtype}:{tuple(x.shape)}".encode())
        tag("t", t.view(torch.uint8).numpy().tobytes())
    elif isinstance(x, dict):
        keys = sorted(x, key=lambda k: (type(k).__name__, repr(k)))
        tag("D", str(len(keys)).encode())
        for k in keys:
            _digest_into(h, k, depth + 1)
            _digest_into(h, x[k], depth + 1)
    elif isinstance(x, (list, tuple)):
        tag("L" if isinstance(x, list) else "U", str(len(x)).encode())
        for v in x:
            _digest_into(h, v, depth + 1)
    elif isinstance(x, str):
        tag("S", x.encode("utf-8", "surrogatepass"))
    elif isinstance(x, bool):
        tag("B", b"1" if x else b"0")
    elif isinstance(x, int):
        tag("I", format(x, "x").encode())
    elif isinstance(x, float):
        tag("F", x.hex().encode())
    elif x is None:
        tag("N", b"")
    else:  # torch.Size, dtypes and the like: their type and their repr
        tag("O", f"{type(x).__module__}.{type(x).__qualname__}:{x!r}".encode())


def payload_digest(obj) -> str:
    """SHA-256 of a canonical serialisation of the whole payload: every tensor (with its
    place, dtype and shape) and every other record (names, configuration, ledger, numbers)."""
    h = hashlib.sha256()
    _digest_into(h, obj)
    return h.hexdigest()


def save_checkpoint(path: Path, payload: dict) -> Path:
    """``torch.save`` (with the checksum of the whole payload) to a temporary file in the
    same directory, then rename into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {k: v for k, v in payload.items() if k != CHECKSUM_KEY}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(body | {CHECKSUM_KEY: payload_digest(body)}, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint; :class:`BadCheckpoint` unless it is a dict whose stored checksum
    matches its whole payload. The checksum is mandatory: a file without one (written
    before checksums covered the whole payload, or with the key removed) is damaged."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [""])[0][:200]
        raise BadCheckpoint(f"{path}: cannot be read ({type(exc).__name__}: {reason})") from None
    if not isinstance(payload, dict):
        raise BadCheckpoint(f"{path}: not a checkpoint (a {type(payload).__name__})")
    stored = payload.get(CHECKSUM_KEY)
    if not isinstance(stored, str):
        raise BadCheckpoint(f"{path}: no checksum (a damaged file, or one written before "
                            "checksums covered the whole payload)")
    body = {k: v for k, v in payload.items() if k != CHECKSUM_KEY}
    try:
        digest = payload_digest(body)
    except (RecursionError, BadCheckpoint):
        raise BadCheckpoint(f"{path}: nested too deeply") from None
    if digest != stored:
        raise BadCheckpoint(f"{path}: the payload does not match its checksum")
    return body

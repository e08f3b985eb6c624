"""Checkpoints: written atomically with a checksum of their whole payload, and checked
before a run uses one.

A checkpoint is written to a temporary file and renamed into place, with a SHA-256 of a
canonical serialisation of the whole payload (tensors and records) that
:func:`load_checkpoint` checks; a file without it is damaged, so a damaged file is found,
never used.

A stage checkpoint (``DIR/checkpoints/<i>-<stage>.pt``, or an entry of the stage cache)
holds the stage's name and number, the run's configuration, the stage's record, the compute
ledger so far and every model's weights. Before one is used (:func:`read_stage`), its
checksum, its stage, its structure and every model's parameter names, dtypes and shapes are
checked against this run (:func:`expected_models`). An intact checkpoint of another
configuration is a UsageError (another run's directory: nothing is touched); any other
mismatch or damage is reported in one line on stderr and its stage runs again.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from empirical.runtime import Runtime
from empirical.stages import Stage
from gowide.errors import UsageError


class BadCheckpoint(RuntimeError):
    """A checkpoint file that cannot be read, has no checksum, or whose payload does not
    match it."""


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


def stage_file(ckpt_dir: Path, i: int, stage: Stage) -> Path:
    """The checkpoint of stage ``i`` (from 0) of a run: ``<i + 1>-<name>.pt``."""
    return ckpt_dir / f"{i + 1}-{stage.name}.pt"


STAGE_KEYS = {"stage", "index", "config", "record", "ledger", "models"}


def expected_models(task, stages: list[Stage], final_role: str) -> list[dict]:
    """For each stage, the models a checkpoint after it must hold: role -> {parameter or
    buffer name: (dtype, shape)}, from models built without touching the random state."""
    shapes: dict[str, dict] = {}

    def of(role: str) -> dict:
        if role not in shapes:
            base = final_role if role == "downstream" else role
            with torch.random.fork_rng(devices=[]):
                model = task.build(base)
            shapes[role] = weight_shapes(model)
        return shapes[role]

    out, roles = [], {}
    for stage in stages:
        for role in (stage.role, stage.teacher):
            if role is not None:
                roles[role] = of(role)
        out.append(dict(roles))
    return out


def check_stage(payload, stage: Stage, index: int, models: dict, cache_key: str | None):
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
        check_weights(held[role], expected, role)


def weight_shapes(model: nn.Module) -> dict:
    """{parameter or buffer name: (dtype, shape)} of ``model``: what :func:`check_weights`
    expects of a saved state of it."""
    return {k: (v.dtype, tuple(v.shape)) for k, v in model.state_dict().items()}


def check_weights(sd, expected: dict, role: str) -> None:
    """ValueError unless ``sd`` holds exactly the tensors of ``expected`` ({parameter or
    buffer name: (dtype, shape)}) with those dtypes and shapes."""
    if not isinstance(sd, dict) or set(sd) != set(expected):
        raise ValueError(f"the {role} model's parameters are not those of this run")
    for name, (dtype, shape) in expected.items():
        t = sd[name]
        if not isinstance(t, torch.Tensor) or t.dtype != dtype or tuple(t.shape) != shape:
            got = (f"{t.dtype} {tuple(t.shape)}" if isinstance(t, torch.Tensor)
                   else type(t).__name__)
            raise ValueError(f"{role}.{name} is {got}, this run expects {dtype} {shape}")


@dataclass(frozen=True)
class Partial:
    """Where a stage saves its state to be taken up after an interruption (``path``), and the
    key that state must carry (the stage's cache key: configuration, seed and the stages
    before it): a supervised stage at each validation
    (:func:`empirical.train.train_supervised`), stage 2 after each of its phases
    (:func:`empirical.imitation.imitate`)."""

    path: Path
    key: str

    def load(self, stage: str, model: nn.Module, steps: int) -> dict | None:
        """The saved state of ``stage`` for ``model`` (a stage of ``steps`` steps), or None:
        none saved, another stage's or key's, or damaged or not fitting (one line on
        stderr)."""
        return self._read(stage, lambda state: _check_partial(state, model, steps), "step")

    def load_blocks(self, stage: str, model: nn.Module, connectors: nn.Module,
                    phases: int) -> dict | None:
        """Stage 2's saved state after some of its ``phases`` (blocks, in the progressive
        schedule) for ``model`` and its linear pairs ``connectors``, or None, as
        :meth:`load` decides."""
        def check(state: dict) -> None:
            done = state.get("phases")
            if not (isinstance(done, list) and 0 < len(done) < phases
                    and all(isinstance(p, dict) for p in done)
                    and isinstance(state.get("ledger"), list)
                    and isinstance(state.get("rng"), torch.Tensor)):
                raise ValueError(f"{stage!r}: the saved state of the stage does not fit "
                                 "this run")
            check_weights(state.get("model"), weight_shapes(model), "saved")
            check_weights(state.get("connectors"), weight_shapes(connectors), "saved pairs")

        return self._read(stage, check, "block")

    def _read(self, stage: str, check, unit: str) -> dict | None:
        if not self.path.is_file():
            return None
        try:
            state = load_checkpoint(self.path)
            if state.get("stage") != stage or state.get("key") != self.key:
                return None
            check(state)
        except (BadCheckpoint, ValueError) as exc:
            print(f"gowide: warning: {exc}; stage {stage!r} starts from its first {unit}",
                  file=sys.stderr)
            return None
        return state

    def save(self, state: dict) -> None:
        save_checkpoint(self.path, state | {"key": self.key})


def _check_partial(state: dict, model: nn.Module, steps: int) -> None:
    """ValueError unless ``state`` fits ``model`` and a stage of ``steps`` steps."""
    expected = weight_shapes(model)
    n = state.get("steps_run")
    if not (isinstance(n, int) and 0 < n < steps and isinstance(state.get("evaluations"), list)
            and all(isinstance(e, dict) for e in state["evaluations"])
            and isinstance(state.get("optimizer"), dict)
            and isinstance(state.get("schedule"), dict)
            and isinstance(state.get("rng"), torch.Tensor)):
        raise ValueError(f"{state.get('stage')!r}: the saved state of the stage does not fit "
                         "this run")
    check_weights(state.get("model"), expected, "saved")
    check_weights(state.get("best_weights"), expected, "best saved")


def read_stage(path: Path, runtime: Runtime, stage: Stage, index: int, models: dict,
               cache_key: str | None = None, config: dict | None = None) -> dict | None:
    """A stage checkpoint's payload, or None (with a one-line warning) when the file is
    damaged or is not the checkpoint this run expects at stage ``index`` (another stage,
    another cache key, other models, shapes or types). With ``config``: an intact file
    written with another configuration is a UsageError (another run's directory)."""
    try:
        payload = load_checkpoint(path)
    except Exception as exc:  # whatever the damage, the stage runs again
        return _unusable(runtime, path, exc)
    if config is not None and payload.get("config") != config:
        raise UsageError(f"--resume: {path} was written with a different configuration; "
                         "use another --out or run without --resume")
    try:
        check_stage(payload, stage, index, models, cache_key)
    except Exception as exc:
        return _unusable(runtime, path, exc)
    return payload


def _unusable(runtime: Runtime, path: Path, exc: Exception) -> None:
    reason = (str(exc).strip().splitlines() or [""])[0][:200]
    if runtime.is_main:
        print(f"gowide: warning: checkpoint {path} cannot be used ({type(exc).__name__}: "
              f"{reason}); its stage runs again", file=sys.stderr)


def resumable(ckpt_dir: Path, stages: list[Stage], key: dict, runtime: Runtime,
              models: list[dict]) -> dict[int, dict]:
    """The checkpoints ``--resume`` can use, by stage index, read before anything is written:
    an intact one written with another configuration is an error; a damaged one, or one that
    is not this stage's (its name, its number, its models' shapes and types) is skipped with
    a warning."""
    found = {}
    for i, stage in enumerate(stages):
        path = stage_file(ckpt_dir, i, stage)
        payload = (read_stage(path, runtime, stage, i + 1, models[i], config=key)
                   if path.exists() or path.is_symlink() else None)
        if payload is not None:
            found[i] = payload
    return found

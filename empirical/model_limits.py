"""The ``[model]`` table checked against its model family before anything runs: entry types,
settings the data decides, and the parameter count of every member (thin, wide, deeper)
built on the meta device, bounded by :data:`empirical.config.PARAMS_MAX`."""

from __future__ import annotations

import math
import typing

from empirical.config import PARAMS_MAX, RunConfig
from empirical.presets import coerce
from gowide.errors import UsageError

# Model settings that the data decides (set by the task), per task.
DATA_DECIDED = {"resnet": ("in_channels", "num_classes"), "bert": ("vocab_size", "max_len")}


def check_model(cfg: RunConfig) -> None:
    """Check the ``[model]`` table against the task's model family before anything runs: the
    types of its entries, and the thin, wide and deeper members it makes (as the task builds
    them, ``empirical.tasks``)."""
    if cfg.task == "resnet":
        from empirical.models.resnet import ResNetConfig as family

        depth_key = "blocks_per_stage"
    else:
        from empirical.models.bert import BertConfig as family

        depth_key = "layers"
    hints = typing.get_type_hints(family)
    for key, value in cfg.model.items():
        if key in DATA_DECIDED[cfg.task]:
            raise UsageError(f"model.{key} is set from the data; remove it from the config")
        if key in hints:
            coerce(f"model.{key}", hints[key], value)
            if isinstance(value, float) and not math.isfinite(value):
                raise UsageError(f"model.{key} must be finite, got {value!r}")
    if "dropout" in hints and not 0.0 <= cfg.model.get("dropout", 0.0) <= 1.0:
        raise UsageError(f"model.dropout must lie in [0, 1], got {cfg.model['dropout']}")
    deeper = {depth_key: cfg.deeper_depth}
    if cfg.deeper_width_mult != 1.0:
        deeper["width_mult"] = cfg.deeper_width_mult
    for role, changes in (("thin", {}), ("wide", {"width_mult": cfg.wide_mult}),
                          ("deeper", deeper)):
        try:
            member = family(**(cfg.model | changes))
        except TypeError as exc:
            raise UsageError(f"[model] for {cfg.task}: {exc}") from None
        except UsageError as exc:
            raise UsageError(f"[model] ({role} member): {exc}") from None
        params = _count_params(cfg.task, member)
        if params is not None and params > PARAMS_MAX:
            raise UsageError(f"[model] ({role} member): {params:.3g} parameters, more than "
                             f"the limit of {PARAMS_MAX:.0e}; lower the widths, depths or "
                             "multipliers")


_PARAMS: dict[str, int | None] = {}


def _count_params(task: str, member) -> int | None:
    """Parameters of a model family member, built on the meta device (no memory, no random
    numbers drawn; remembered per member); None where it cannot be built there."""
    key = f"{task}:{member!r}"
    if key not in _PARAMS:
        _PARAMS[key] = _build_and_count(task, member)
    return _PARAMS[key]


def _build_and_count(task: str, member) -> int | None:
    import torch

    if task == "resnet":
        from empirical.models.resnet import ResNet as cls
    else:
        from empirical.models.bert import Bert as cls
    try:
        with torch.device("meta"):
            model = cls(member)
    except Exception:  # the real build reports it, as before
        return None
    return sum(p.numel() for p in model.parameters())

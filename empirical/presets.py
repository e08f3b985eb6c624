"""A :class:`~empirical.config.RunConfig` built from a preset and overrides: the preset's TOML
table for the task (``configs/<name>.toml`` or a path), then ``--set section.key=value``
overrides (the value parsed as TOML), then keyword fields; every value checked against the
dataclasses' annotations, unknown keys refused, one line naming the key.

A preset file holds one table per task (``[resnet]``, ``[bert]``; a preset may hold one task
only) with sub-tables named like the fields of :class:`~empirical.config.RunConfig`."""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path

from empirical.config import CONFIG_DIR, TASKS, RunConfig, _check_choice
from gowide.errors import UsageError


def _is_dataclass_type(tp) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def coerce(where: str, tp, value):
    """Check ``value`` against the annotation ``tp`` (int promoted to float)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return coerce(where, option, value)
            except UsageError:
                continue
        raise UsageError(f"{where}: {value!r} has the wrong type")
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise UsageError(f"{where}: expected a list, got {value!r}")
        return [coerce(where, item, v) for v in value]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is dict:
        if not isinstance(value, dict):
            raise UsageError(f"{where}: expected a table, got {value!r}")
        return dict(value)
    if tp in (int, float, str, bool):
        if type(value) is not tp:
            raise UsageError(f"{where}: expected {tp.__name__}, got {value!r}")
        return value
    return value


def from_dict(cls, data: dict, where: str = ""):
    """Build dataclass ``cls`` from a (nested) dict, rejecting unknown keys."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in names:
            raise UsageError(f"unknown config key {path!r}; known keys: {', '.join(sorted(names))}")
        tp = hints[key]
        if _is_dataclass_type(tp):
            if not isinstance(value, dict):
                raise UsageError(f"{path}: expected a table, got {value!r}")
            kwargs[key] = from_dict(tp, value, path)
        else:
            kwargs[key] = coerce(path, tp, value)
    return cls(**kwargs)


def parse_override(text: str) -> tuple[list[str], object]:
    """``a.b=value`` -> (["a", "b"], value); the value is TOML, or a bare string."""
    if "=" not in text:
        raise UsageError(f"--set expects section.key=value, got {text!r}")
    key, raw = text.split("=", 1)
    parts = [p.strip() for p in key.strip().split(".")]
    if not all(parts):
        raise UsageError(f"--set expects section.key=value, got {text!r}")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return parts, value


def load_preset(preset: str) -> dict:
    """The TOML of a preset name (``tiny``, ``small``) or of a path to a TOML file."""
    path = Path(preset)
    if not path.suffix:
        path = CONFIG_DIR / f"{preset}.toml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.toml")))
        raise UsageError(f"preset {preset!r} not found (known presets: {known}, or a .toml path)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read preset {str(path)!r}: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: malformed TOML: {exc}") from None


def build_config(task: str, method: str, preset: str = "tiny",
                 overrides: list[str] = (), **fields) -> RunConfig:
    """Preset table of ``task``, then ``overrides`` (``a.b=value``), then ``fields``."""
    _check_choice("task", task, TASKS)
    doc = load_preset(preset)
    unknown = [k for k in doc if k not in TASKS]
    if unknown:
        raise UsageError(f"preset {preset!r}: unknown table [{unknown[0]}]; a preset holds "
                         f"the tables {' and '.join(f'[{t}]' for t in TASKS)} only")
    others = [t for t in TASKS if t in doc]
    if task not in doc and others:
        raise UsageError(f"preset {preset!r} has no [{task}] table (it is a preset for "
                         f"{', '.join(others)})")
    table = doc.get(task, {})
    if not isinstance(table, dict):
        raise UsageError(f"preset {preset!r}: [{task}] must be a table")
    data = _deep_copy(table)
    for text in overrides:
        parts, value = parse_override(text)
        node = data
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise UsageError(f"--set {text}: {p!r} is not a section")
        node[parts[-1]] = value
    data.update({k: v for k, v in fields.items() if v is not None})
    data["task"], data["method"] = task, method
    return from_dict(RunConfig, data)


def _deep_copy(d):
    if isinstance(d, dict):
        return {k: _deep_copy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deep_copy(v) for v in d]
    return d

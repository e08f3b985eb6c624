"""Property-based tests whose rules are derived from the code, not from a table: every field
of the run configuration's dataclasses (and of the model families) and every result-file
reader of ``gowide figures`` and ``empirical compare``. A field or a job added later is
fuzzed without anyone editing this file."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import typing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from empirical.config import FLOAT_MAX, INT_MAX, UPPER, RunConfig
from empirical.models.bert import BertConfig
from empirical.models.resnet import ResNetConfig
from empirical.presets import build_config
from gowide.errors import UsageError

FAST = settings(max_examples=int(os.environ.get("GOWIDE_FUZZ_EXAMPLES", "60")), deadline=None,
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
REPO = Path(__file__).resolve().parents[1]


def _fields(cls, prefix: str = "") -> list[tuple[str, type]]:
    """(dotted key, annotation) of every leaf field of a config dataclass, nested ones
    included."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            out += _fields(tp, f"{prefix}{f.name}.")
        else:
            out.append((f"{prefix}{f.name}", tp))
    return out


DATA_DECIDED = {"in_channels", "num_classes", "vocab_size", "max_len"}
RUN_FIELDS = [(k, tp) for k, tp in _fields(RunConfig) if k not in ("task", "method", "device")]
MODEL_FIELDS = {task: [(f"model.{k}", tp) for k, tp in _fields(cls) if k not in DATA_DECIDED]
                for task, cls in (("resnet", ResNetConfig), ("bert", BertConfig))}


def test_the_field_lists_are_derived_and_complete():
    names = {k for k, _ in RUN_FIELDS}
    assert {"seed", "wide_mult", "wide.lr", "imitate.steps_per_block", "data.split_seed",
            "downstream.mode", "threads"} <= names
    assert {"model.width_mult", "model.base_width"} <= {k for k, _ in MODEL_FIELDS["resnet"]}


def _toml(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    return json.dumps(value)


ANY_VALUE = st.one_of(
    st.integers(-2**80, 2**80), st.integers(-3, 300),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(-100, 100),
    st.booleans(), st.text(max_size=8), st.lists(st.integers(0, 3), max_size=2))


def _numeric(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _accepted_value(cfg: RunConfig, key: str):
    node = cfg.to_dict()
    for part in key.split("."):
        node = node[part]
    return node


@FAST
@given(task=st.sampled_from(["resnet", "bert"]), data=st.data())
def test_every_config_field_takes_any_value_without_a_traceback(task, data):
    """Any value of any field: either a configuration holding that value (then finite and
    within its bound), or one UsageError naming the field; nothing else is raised."""
    key, _ = data.draw(st.sampled_from(RUN_FIELDS + MODEL_FIELDS[task]), label="field")
    value = data.draw(ANY_VALUE, label="value")
    try:
        cfg = build_config(task, "ours", "tiny", [f"{key}={_toml(value)}"], device="cpu")
    except UsageError as exc:
        message = str(exc)
        assert "\n" not in message
        return
    stored = _accepted_value(cfg, key)
    if _numeric(stored):
        name = key.rsplit(".", 1)[-1]
        limit = UPPER.get(name, INT_MAX if isinstance(stored, int) else FLOAT_MAX)
        assert math.isfinite(stored) and abs(stored) <= limit, (key, stored)
        assert stored == value


# -- result-file readers -------------------------------------------------------------------

def _jobs():
    from gowide.reproduce import JOBS
    return [j for j in JOBS if (REPO / "results" / j.relpath).exists()]


def _mutate(draw, obj):
    """``obj`` with one randomly chosen key removed, or one leaf or branch replaced."""
    path, node = [], obj
    while isinstance(node, (dict, list)) and node and draw(st.integers(0, 4)) > 0:
        key = draw(st.sampled_from(sorted(node)) if isinstance(node, dict)
                   else st.integers(0, len(node) - 1))
        path.append(key)
        node = node[key]
    if not path:
        return draw(st.sampled_from([[], {}, "x", 0, None]))
    parent = obj
    for key in path[:-1]:
        parent = parent[key]
    kind = draw(st.sampled_from(["remove", "replace"]))
    if kind == "remove":
        if isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent.pop(path[-1])
    else:
        parent[path[-1]] = draw(st.one_of(ANY_VALUE, st.none(), st.just({}), st.just([])))
    return obj


_CACHE: dict[str, str] = {}


def _committed(relpath: str) -> dict:
    if relpath not in _CACHE:
        _CACHE[relpath] = (REPO / "results" / relpath).read_text(encoding="utf-8")
    return json.loads(_CACHE[relpath])


@FAST
@given(data=st.data())
def test_every_report_reader_fails_only_in_ways_the_cli_turns_into_one_line(data):
    """For every job of ``gowide figures`` (the list is read from the code), a damaged copy
    of its committed result is either reported or fails with an exception the command
    turns into one line (gowide.reproduce.MALFORMED)."""
    from gowide.reproduce import MALFORMED
    job = data.draw(st.sampled_from(_jobs()), label="job")
    results = _mutate(data.draw, _committed(job.relpath))
    try:
        lines = job.report(results)
    except MALFORMED:
        return
    assert all(isinstance(line, str) for line in lines)


BYTES = st.one_of(st.binary(max_size=64),
                  st.recursive(st.one_of(st.none(), st.booleans(), st.integers(),
                                         st.floats(allow_nan=False), st.text(max_size=5)),
                               lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=5),
                                                                       inner, max_size=3)),
                               max_leaves=10).map(lambda v: json.dumps(v).encode()),
                  st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * n))


@FAST
@given(content=BYTES)
def test_the_json_readers_take_any_bytes(content, tmp_path):
    """read_json: a dict or a UsageError; the reuse of finished runs: a result or None."""
    from empirical.compare import _finished
    from gowide.paths import read_json
    path = tmp_path / "result.json"
    path.write_bytes(content)
    try:
        assert isinstance(read_json(path), dict)
    except UsageError as exc:
        assert "\n" not in str(exc)
    cfg = build_config("resnet", "ours", "tiny", device="cpu")
    reused = _finished(tmp_path, cfg)
    assert reused is None or isinstance(reused, dict)


@pytest.mark.parametrize("job", _jobs(), ids=lambda j: j.relpath)
def test_the_committed_results_are_reported(job):
    assert job.report(_committed(job.relpath))

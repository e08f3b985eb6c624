"""Bad input on every subcommand, generated as mutations of valid invocations.

Every generated invocation is invalid by construction. Each must end with exit code 2 and
one line on stderr (no traceback), print nothing on stdout and leave the files it was given
exactly as they were: nothing created (not even an empty output directory), changed or
removed. Training and the simulations are replaced by a function that fails the test, so an
invocation that got past validation shows up at once instead of running.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest
import torch
from empirical_helpers import FAST_BERT, FAST_RESNET
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from empirical.checkpoints import save_checkpoint
from empirical.config import (
    DataConfig,
    DownstreamConfig,
    ImitationConfig,
    RunConfig,
    SupervisedConfig,
)
from empirical.methods import METHODS
from empirical.models.bert import BertConfig
from empirical.models.resnet import ResNetConfig
from empirical.presets import parse_override
from gowide.cli import build_parser, main
from gowide.reproduce import JOBS


def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

# -- the command tree ---------------------------------------------------------------------


def _tree(parser, path=()):
    """(path, parser, subparsers actions) for every parser of the command line."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    yield path, parser, subs
    for action in subs:
        for name, sub in action.choices.items():
            yield from _tree(sub, path + (name,))


NODES = list(_tree(build_parser()))
LEAVES = {path: parser for path, parser, subs in NODES if not subs}
GROUPS = {path: subs[0] for path, _, subs in NODES if subs}
OPTIONS = {s for _, parser, _ in NODES for a in parser._actions for s in a.option_strings}


def _actions(path):
    return [a for a in LEAVES[path]._actions
            if a.option_strings and not isinstance(a, argparse._HelpAction)]


def test_every_subcommand_is_fuzzed():
    # Equality: a command added to the parser must be named here, and its work stopped by
    # `no_work` below, before the fuzz can be trusted with it.
    named = {("meanfield", "limits"), ("meanfield", "compare"), ("meanfield", "depth"),
             ("meanfield", "clouds"), ("reproduce",), ("figures",),
             ("empirical", "run"), ("empirical", "compare"), ("empirical", "methods")}
    assert named == set(LEAVES)


# -- text ---------------------------------------------------------------------------------

# Any text an argv can hold (no NUL, no lone surrogates), line breaks of every kind included.
TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
               max_size=24)
NAME = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _unknown_flag(text: str) -> bool:
    # argparse accepts any unambiguous prefix of an option, so a prefix is not unknown
    return not any(option.startswith(text) for option in OPTIONS)


UNKNOWN_FLAG = st.from_regex(r"--[a-z][a-z0-9-]{0,12}", fullmatch=True).filter(_unknown_flag)
POSITIONAL = TEXT.filter(lambda t: t and not t.startswith("-"))
NOT_AN_INT = TEXT.filter(lambda t: not _is_int(t))


def _toml_float(x: float) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return repr(x)


# Values for --set (TOML, or any text, which becomes a bare string)
TOML_VALUE = st.one_of(
    st.integers(-10**6, 10**6).map(str),
    st.integers(-2**70, 2**70).map(str),
    st.floats().map(_toml_float),
    TEXT.map(json.dumps),
    st.booleans().map(lambda b: str(b).lower()),
    st.sampled_from(["[1, 2]", '["x"]', "[]", "{a = 1}", '"1"', "1970-01-01"]),
    TEXT,
)


def _value(raw: str):
    """The value ``--set key=raw`` gives (the project's own parsing)."""
    return parse_override(f"k={raw}")[1]


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _bad(accept):
    """TOML values that ``accept`` refuses."""
    return TOML_VALUE.filter(lambda raw: not accept(_value(raw)))


# Upper bounds (empirical.config.UPPER): 10**9 for integers, 1e9 for floats, unless the
# field has its own.
def _positive_int(v, top=10**9):
    return isinstance(v, int) and not isinstance(v, bool) and 0 < v <= top


def _depth(v):
    return _positive_int(v, 256)


def _positive(v, top=1e9):
    return _number(v) and math.isfinite(v) and 0 < v <= top


def _multiplier(v):
    return _positive(v, 64.0)


def _non_negative(v):
    return _number(v) and math.isfinite(v) and 0 <= v <= 1e9


SUPERVISED = ("wide", "finetune", "downstream")
CHOICES = {"imitate.schedule": ("progressive", "simultaneous"),
           "imitate.lower_blocks": ("frozen", "trainable"), "imitate.inputs": ("thin", "teacher"),
           "imitate.init": ("random", "subsample"), "imitate.head": ("wide", "own"),
           "imitate.subsample_rescale": ("sqrt", "linear"),
           "data.dataset": ("digits", "mnist5k", "fashion")}
# key -> what a valid value is; every other value must be refused
SETTINGS = {
    **{f"{s}.{k}": _positive_int for s in SUPERVISED for k in ("steps", "batch_size", "log_every")},
    **{f"imitate.{k}": _positive_int
       for k in ("steps_per_block", "steps", "batch_size", "log_every")},
    **{k: _positive_int for k in ("data.vocab_size", "data.max_len",
                                  "data.max_mlm_sequences")},
    "deeper_depth": _depth,
    **{f"{s}.{k}": _positive for s in SUPERVISED for k in ("lr", "temperature")},
    "imitate.lr": _positive,
    **{k: _multiplier for k in ("wide_mult", "deeper_width_mult")},
    **{f"{s}.weight_decay": _non_negative for s in (*SUPERVISED, "imitate")},
    **{f"{s}.kd_weight": lambda v: _number(v) and 0 <= v <= 1 for s in SUPERVISED},
    **{f"{s}.warmup": lambda v: _number(v) and 0 <= v < 1 for s in SUPERVISED},
    **{k: (lambda v, c=c: v in c) for k, c in CHOICES.items()},
    "imitate.normalize": lambda v: isinstance(v, bool),
    # "probe" is refused too where model.cls_head is not "linear" (the presets' default)
    "downstream.mode": lambda v: v == "finetune",
    "data.split_seed": lambda v: isinstance(v, int) and not isinstance(v, bool)
    and 0 <= v < 2**32,
    "imitate.blocks": lambda v: isinstance(v, list) and all(isinstance(b, str) for b in v),
}
TOP_FIELDS = set(RunConfig.__dataclass_fields__)
FAMILY = {"resnet": ResNetConfig, "bert": BertConfig}
DATA_DECIDED = {"resnet": ("in_channels", "num_classes"), "bert": ("vocab_size", "max_len")}
MODEL_VALUES = {  # (task, key) -> valid values
    ("resnet", "blocks_per_stage"): _depth, ("resnet", "base_width"): _positive_int,
    ("resnet", "width_mult"): _multiplier, ("resnet", "norm"): lambda v: v in ("batch", "group"),
    ("resnet", "widen_interfaces"): lambda v: isinstance(v, bool),
    ("bert", "layers"): _depth, ("bert", "hidden"): _positive_int,
    ("bert", "ffn"): _positive_int, ("bert", "width_mult"): _multiplier,
    ("bert", "dropout"): lambda v: _number(v) and 0 <= v <= 1,
    ("bert", "norm"): lambda v: v in ("post", "pre"),
    ("bert", "tie_embeddings"): lambda v: isinstance(v, bool),
    ("bert", "cls_head"): lambda v: v in ("mlp", "linear"),
}


def _section_fields(section: str) -> set[str]:
    cls = {"data": DataConfig, "imitate": ImitationConfig,
           "downstream": DownstreamConfig}.get(section, SupervisedConfig)
    return set(cls.__dataclass_fields__)


# -- running one invocation ---------------------------------------------------------------


def _snapshot(root: Path) -> dict:
    tree = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            tree[os.path.relpath(os.path.join(dirpath, d), root)] = "<dir>"
        for f in filenames:
            path = os.path.join(dirpath, f)
            tree[os.path.relpath(path, root)] = Path(path).read_bytes()
    return tree


def _write(root: Path, files: dict) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            path.mkdir(exist_ok=True)
        elif callable(content):
            content(path)
        else:
            path.write_bytes(content if isinstance(content, bytes) else content.encode())


def check_rejected(argv: list[str], files: dict | None = None) -> str:
    """Run ``gowide argv`` in a fresh directory holding ``files``; assert a clean rejection."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _write(root, files or {})
        before = _snapshot(root)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.chdir(root), contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(err):
            try:
                code = main(list(argv))
            except SystemExit as exc:
                code = exc.code
        torch.set_num_threads(1)  # a rejected command may have set it
        err = err.getvalue()
        assert code == 2, (argv, code, err)
        assert err.endswith("\n") and len(err.splitlines()) == 1, (argv, err)
        assert err.startswith("gowide") and "error: " in err, (argv, err)
        assert "Traceback" not in err
        assert out.getvalue() == "", (argv, out.getvalue())
        assert _snapshot(root) == before, f"{argv} changed the files it was given"
        return err


def _stop(*args, **kwargs):
    raise AssertionError("work started on invalid input")


@pytest.fixture(scope="module", autouse=True)
def no_work():
    """Training and simulations fail the test: nothing valid is ever generated."""
    import empirical.compare
    import empirical.runner
    import meanfield.clouds
    import meanfield.compare
    import meanfield.depth
    import meanfield.experiments

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(empirical.runner, "run_stage", _stop)
        mp.setattr(empirical.runner, "matched_steps", _stop)
        mp.setattr(empirical.compare, "run_compare", _stop)
        mp.setattr(meanfield.experiments, "run_limits", _stop)
        mp.setattr(meanfield.compare, "run_compare", _stop)
        mp.setattr(meanfield.clouds, "run_clouds", _stop)
        mp.setattr(meanfield.depth, "run_depth", _stop)
        yield


# Files an output directory may already hold: a previous run's result and checkpoint. A
# rejected command must leave them (a valid `empirical run` without --resume deletes them).
OLD_RUN = {"out/result.json": '{"old": true}\n', "out/checkpoints/1-wide.pt": b"old weights"}

# -- 1. argparse-level mutations of every subcommand --------------------------------------


def _int_option(action) -> bool:
    return action.type is int or hasattr(action.type, "minimum")


@st.composite
def _valid_value(draw, action):
    if action.choices is not None:
        return draw(st.sampled_from(sorted(action.choices)))
    if _int_option(action):
        low = getattr(action.type, "minimum", 0)
        return str(draw(st.integers(low, low + 2)))
    return {"out": "out", "results": "res", "method": "ours", "preset": "tiny",
            "overrides": "wide.steps=5", "methods": "ours,scratch",
            "data_dir": "data"}.get(action.dest, "x")


@st.composite
def leaf_argv(draw, path):
    argv = list(path)
    for action in _actions(path):
        if not (action.required or draw(st.booleans())):
            continue
        if action.nargs == 0:
            argv.append(action.option_strings[-1])
        else:
            argv += [action.option_strings[-1], draw(_valid_value(action))]
    return argv


def _with_value(draw, option: str, value: str) -> list[str]:
    return [f"{option}={value}"] if draw(st.booleans()) else [option, value]


@st.composite
def argparse_mutation(draw):
    path = draw(st.sampled_from(sorted(LEAVES)))
    argv = draw(leaf_argv(path))
    actions = _actions(path)
    kinds = ["unknown flag", "stray argument"]
    if any(a.nargs is None for a in actions):
        kinds.append("missing value")
    if any(a.nargs == 0 for a in actions):
        kinds.append("value for a switch")
    if any(a.required for a in actions):
        kinds.append("missing required")
    if any(a.choices for a in actions):
        kinds.append("bad choice")
    if any(_int_option(a) for a in actions):
        kinds.append("bad integer")
    kind = draw(st.sampled_from(kinds))
    at = draw(st.integers(len(path), len(argv)))
    if kind == "unknown flag":
        flag = draw(UNKNOWN_FLAG)
        extra = draw(st.sampled_from([[flag], [f"{flag}=1"], [flag, "1"]]))
        argv[at:at] = extra
    elif kind == "stray argument":
        argv[at:at] = [draw(POSITIONAL)]
    elif kind == "missing value":
        argv.append(draw(st.sampled_from([a for a in actions if a.nargs is None]))
                    .option_strings[-1])
    elif kind == "value for a switch":
        switch = draw(st.sampled_from([a for a in actions if a.nargs == 0]))
        argv.append(f"{switch.option_strings[-1]}={draw(TEXT)}")
    elif kind == "missing required":
        option = draw(st.sampled_from([a for a in actions if a.required])).option_strings[-1]
        i = argv.index(option)
        del argv[i: i + 2]
    elif kind == "bad choice":
        action = draw(st.sampled_from([a for a in actions if a.choices]))
        bad = draw(TEXT.filter(lambda t, c=action.choices: t not in c))
        argv += _with_value(draw, action.option_strings[-1], bad)
    else:
        action = draw(st.sampled_from([a for a in actions if _int_option(a)]))
        bad = [NOT_AN_INT]
        if hasattr(action.type, "minimum"):  # every integer option has a range
            bad.append(st.integers(max_value=action.type.minimum - 1).map(str))
            bad.append(st.integers(min_value=action.type.maximum + 1).map(str))
        argv += _with_value(draw, action.option_strings[-1], draw(st.one_of(bad)))
    return argv


@st.composite
def group_mutation(draw):
    """A command group (or the program) with a missing or unknown subcommand."""
    path = draw(st.sampled_from(sorted(GROUPS)))
    names = GROUPS[path].choices
    command = draw(st.one_of(st.just([]), POSITIONAL.filter(lambda t: t not in names)
                             .map(lambda t: [t])))
    return list(path) + command + draw(st.lists(st.sampled_from(["--quick", "--out", "x"]),
                                                max_size=2))


@fuzz(200)
@given(argv=st.one_of(argparse_mutation(), argparse_mutation(), group_mutation()),
       old_run=st.booleans())
def test_malformed_command_lines(argv, old_run):
    check_rejected(argv, OLD_RUN if old_run else {})


# -- 2. empirical settings: --set, --preset, --method(s), --seed --------------------------


@st.composite
def empirical_base(draw, command=None, task=None, data_level=False, overrides=True):
    """A valid `empirical run` or `empirical compare` (data_level: tiny resnet with ours)."""
    command = command or draw(st.sampled_from(["run", "compare"]))
    task = task or draw(st.sampled_from(["resnet", "bert"]))
    preset = "tiny" if data_level else draw(st.sampled_from(["tiny", "small"]))
    argv = ["empirical", command, "--task", task, "--preset", preset, "--out", "out",
            "--quiet", "--device", "cpu"]
    if command == "run":
        argv += ["--method", "ours" if data_level else draw(st.sampled_from(sorted(METHODS)))]
        if draw(st.booleans()):
            argv += ["--seed", str(draw(st.integers(0, 5)))]
        if draw(st.booleans()):
            argv.append("--resume")
    else:
        argv += ["--seeds", str(draw(st.integers(1, 3)))]
        if draw(st.booleans()):
            methods = draw(st.lists(st.sampled_from(sorted(METHODS)), max_size=3, unique=True))
            argv += ["--methods", ",".join(["ours", *methods] if data_level else methods)]
        if draw(st.booleans()):
            argv.append("--keep-checkpoints")
    if draw(st.booleans()):
        argv += ["--threads", str(draw(st.integers(0, 2)))]
    if overrides:
        for item in FAST_RESNET if task == "resnet" else FAST_BERT:
            argv += ["--set", item]
    return argv, command, task


@st.composite
def bad_override(draw, task):
    """One --set that no configuration accepts."""
    kind = draw(st.sampled_from(["value", "value", "value", "unknown key", "unknown section key",
                                 "no =", "empty key", "not a table", "not a section", "model"]))
    if kind == "value":
        key = draw(st.sampled_from(sorted(SETTINGS)))
        return f"{key}={draw(_bad(SETTINGS[key]))}"
    if kind == "unknown key":
        return f"{draw(NAME.filter(lambda n: n not in TOP_FIELDS))}={draw(TOML_VALUE)}"
    if kind == "unknown section key":
        section = draw(st.sampled_from([*SUPERVISED, "imitate", "data"]))
        name = draw(NAME.filter(lambda n: n not in _section_fields(section)))
        return f"{section}.{name}={draw(TOML_VALUE)}"
    if kind == "no =":
        return draw(TEXT.filter(lambda t: "=" not in t))
    if kind == "empty key":
        key = draw(st.sampled_from(["", " ", ".", "wide.", ".steps", "wide..steps", " . ",
                                    "wide. .steps", "model."]))
        return f"{key}={draw(TOML_VALUE)}"
    if kind == "not a table":
        section = draw(st.sampled_from([*SUPERVISED, "imitate", "data", "model"]))
        return f"{section}={draw(_bad(lambda v: isinstance(v, dict)))}"
    if kind == "not a section":
        key = draw(st.sampled_from(["wide_mult", "deeper_depth", "wide.lr", "imitate.lr",
                                    "data.vocab_size"]))
        return f"{key}.{draw(NAME)}={draw(TOML_VALUE)}"
    family = FAMILY[task]
    model_kind = draw(st.sampled_from(["unknown", "from the data", "value"]))
    if model_kind == "unknown":
        name = draw(NAME.filter(lambda n: n not in family.__dataclass_fields__))
        return f"model.{name}={draw(TOML_VALUE)}"
    if model_kind == "from the data":
        return f"model.{draw(st.sampled_from(DATA_DECIDED[task]))}={draw(TOML_VALUE)}"
    key = draw(st.sampled_from(sorted(k for t, k in MODEL_VALUES if t == task)))
    return f"model.{key}={draw(_bad(MODEL_VALUES[task, key]))}"


def _missing_preset(text: str) -> bool:
    from empirical.config import CONFIG_DIR

    path = Path(text)
    if not path.suffix:
        path = CONFIG_DIR / f"{text}.toml"
    return not path.exists()


@st.composite
def setting_mutation(draw):
    argv, command, task = draw(empirical_base())
    kinds = ["set", "set", "set", "preset"]
    kinds.append("method" if command == "run" else "methods")
    if command == "run":
        kinds.append("seed")
    kind = draw(st.sampled_from(kinds))
    if kind == "set":
        return argv + ["--set", draw(bad_override(task))]
    if kind == "preset":
        return argv + _with_value(draw, "--preset", draw(TEXT.filter(_missing_preset)))
    if kind == "method":
        return argv + _with_value(draw, "--method", draw(TEXT.filter(lambda t: t not in METHODS)))
    if kind == "methods":
        names = draw(st.lists(st.sampled_from(sorted(METHODS)), max_size=2))
        unknown = draw(st.lists(NAME.filter(lambda n: n not in METHODS), min_size=1, max_size=2))
        parts = draw(st.permutations(names + unknown))
        separators = st.from_regex(r"[ ,]*,[ ,]*", fullmatch=True)
        bad = draw(st.one_of(st.just(",".join(parts)), separators, st.just(" ")))
        return argv + _with_value(draw, "--methods", bad)
    seed = draw(st.one_of(st.integers(max_value=-1), st.integers(min_value=2**32)))
    return argv + _with_value(draw, "--seed", str(seed))


@fuzz(160)
@given(argv=setting_mutation(), old_run=st.booleans())
def test_malformed_empirical_settings(argv, old_run):
    check_rejected(argv, OLD_RUN if old_run else {})


# -- 3. preset files ----------------------------------------------------------------------


def _not_toml(text: str) -> bool:
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return True
    return False


@st.composite
def bad_preset(draw, task):
    """(file content or None for a directory, or missing) of a preset that must be refused."""
    kind = draw(st.sampled_from(["syntax", "syntax", "unknown", "type", "range", "not a table",
                                 "model", "encoding", "directory", "missing"]))
    if kind == "syntax":
        return draw(st.one_of(
            TEXT.filter(_not_toml),
            st.sampled_from([f"[{task}\nwide_mult = 2\n", f"[{task}]\nwide_mult = \n",
                             f"[{task}]\nwide_mult = 1\nwide_mult = 2\n",
                             f"[{task}.wide]\nsteps = 1 2\n", f"[{task}]\n[{task}]\n"])))
    if kind == "unknown":
        section = draw(st.sampled_from(["", "wide", "imitate", "data", "finetune"]))
        if section:
            name = draw(NAME.filter(lambda n: n not in _section_fields(section)))
            return f"[{task}.{section}]\n{name} = 1\n"
        return f"[{task}]\n{draw(NAME.filter(lambda n: n not in TOP_FIELDS))} = 1\n"
    if kind in ("type", "range"):
        key = draw(st.sampled_from(sorted(SETTINGS)))
        raw = draw(_bad(SETTINGS[key]).filter(lambda r: not _not_toml(f"v = {r}")))
        section, _, name = key.rpartition(".")
        table = f"{task}.{section}" if section else task
        return f"[{table}]\n{name} = {raw}\n"
    if kind == "not a table":
        raw = draw(st.sampled_from(["3", '"x"', "[1]", "true", "1.5"]))
        return f"{task} = {raw}\n"
    if kind == "model":
        key = draw(st.sampled_from(sorted(k for t, k in MODEL_VALUES if t == task)))
        raw = draw(_bad(MODEL_VALUES[task, key]).filter(lambda r: not _not_toml(f"v = {r}")))
        return f"[{task}.model]\n{key} = {raw}\n"
    if kind == "encoding":
        return f"[{task}]\nwide_mult = 2.0\n".encode() + draw(
            st.sampled_from([b"\xff\xfe", b"# \xc3\x28\n", b"\x80"]))
    return kind  # "directory" or "missing"


@st.composite
def preset_mutation(draw):
    argv, command, task = draw(empirical_base(overrides=False))
    name = draw(st.sampled_from(["bad.toml", "sub/preset.toml", "p q.toml"]))
    content = draw(bad_preset(task))
    files = {}
    if content == "directory":
        files[name] = None
    elif content != "missing":
        files[name] = content
    # the flag may be given once more, the last one counts
    return argv + _with_value(draw, "--preset", name), files


@fuzz(60)
@given(case=preset_mutation(), old_run=st.booleans())
def test_malformed_preset_files(case, old_run):
    argv, files = case
    check_rejected(argv, files | (OLD_RUN if old_run else {}))


# -- 4. input only the data can refute (resnet, tiny preset: the digits) ------------------

DIGITS = 1797  # images in the whole dataset: a batch larger than that can never be drawn


def _other_config_checkpoint(path: Path) -> None:
    save_checkpoint(path, {"stage": "wide", "index": 1,
                           "config": {"task": "resnet", "seed": 12345}, "record": {},
                           "ledger": [], "models": {}})


@st.composite
def data_mutation(draw):
    argv, command, _ = draw(empirical_base(task="resnet", data_level=True))
    kinds = ["batch size", "blocks", "kd weight", "fashion files"]
    if command == "run":
        kinds.append("resume another config")
    kind = draw(st.sampled_from(kinds))
    files = dict(OLD_RUN)
    if kind == "batch size":
        stage = draw(st.sampled_from(["wide", "imitate", "finetune"]))
        size = draw(st.integers(DIGITS + 1, 10**12))
        argv += ["--set", f"{stage}.batch_size={size}"]
    elif kind == "blocks":
        names = draw(st.lists(st.sampled_from(["stem", "blocks.0", "blocks.1"]), max_size=2))
        unknown = draw(TEXT.filter(lambda t: t not in ("stem", "blocks.0", "blocks.1",
                                                       "blocks.2")))
        blocks = draw(st.permutations(names + [unknown]))
        argv += ["--set", f"imitate.blocks={json.dumps(blocks)}"]
    elif kind == "kd weight":
        method = draw(st.sampled_from(["kd", "fitnets"]))
        if command == "run":
            argv += ["--method", method]
        else:
            argv += ["--methods", f"ours,{method}"]
        argv += ["--set", f"finetune.kd_weight={draw(st.sampled_from(['0', '0.0', '-0.0']))}"]
    elif kind == "fashion files":
        argv += ["--set", 'data.dataset="fashion"', "--data-dir", "no-such-dir"]
        if draw(st.booleans()):
            files["no-such-dir"] = None  # exists, but holds no IDX files
    else:
        files["out/checkpoints/1-wide.pt"] = _other_config_checkpoint
        if "--resume" not in argv:
            argv.append("--resume")
    return argv, files


@fuzz(40)
@given(case=data_mutation())
def test_input_refuted_by_the_data_is_rejected_before_any_work(case):
    argv, files = case
    check_rejected(argv, files)


# -- 5. an output path that cannot be a directory -----------------------------------------


@st.composite
def out_mutation(draw):
    with_out = sorted(p for p in LEAVES if any(a.dest == "out" for a in _actions(p)))
    path = draw(st.sampled_from(with_out))
    if path[0] == "empirical":
        argv, _, _ = draw(empirical_base(command=path[1]))
    else:
        argv = draw(leaf_argv(path))
        if "--out" not in argv:
            argv += ["--out", "out"]
    target = draw(st.sampled_from(["taken", "taken/sub", "taken/sub/deeper"]))
    argv[argv.index("--out") + 1] = target
    return argv, {"taken": "a file, not a directory\n"}


@fuzz(30)
@given(case=out_mutation())
def test_output_path_under_a_file_is_rejected(case):
    argv, files = case
    check_rejected(argv, files)


# -- 6. result files that `reproduce` and `figures` read ----------------------------------

JSON_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                        TEXT)
# Objects without any key a report reads: their keys all start with "zz".
JUNK_OBJECT = st.dictionaries(NAME.map(lambda n: "zz" + n),
                              st.one_of(JSON_SCALAR, st.lists(JSON_SCALAR, max_size=3)),
                              max_size=4)


def _not_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return True
    return False


BAD_RESULT = st.one_of(
    TEXT.filter(_not_json),
    st.one_of(JSON_SCALAR, st.lists(JSON_SCALAR, max_size=3)).map(json.dumps),
    JUNK_OBJECT.map(json.dumps),
    st.sampled_from([b"\xff\xfe{}", b'{"a": "\x80"}', None]),  # None: a directory
)


@st.composite
def results_mutation(draw):
    command = draw(st.sampled_from(["reproduce", "figures"]))
    argv = [command, "--out", "figs", "--results", "res"]
    if draw(st.booleans()):
        argv.append("--quick")
    if command == "reproduce":
        argv += draw(st.sampled_from([[], ["--no-progress"], ["--threads", "1"]]))
    jobs = [j.relpath for j in JOBS]
    # reproduce: at least one file exists and is malformed (with none, it would compute them)
    present = draw(st.lists(st.sampled_from(jobs), min_size=1, unique=True))
    files = {f"res/{rel}": draw(BAD_RESULT) for rel in present}
    if draw(st.booleans()):
        argv += ["--results", "res-file"]  # a file where the directory should be
        files["res-file"] = "not a directory\n"
    return argv, files


@fuzz(50)
@given(case=results_mutation())
def test_malformed_result_files(case):
    argv, files = case
    check_rejected(argv, files)


# -- the command as a user runs it --------------------------------------------------------

FAST_RESNET_FLAGS = [flag for item in FAST_RESNET for flag in ("--set", item)]
SUBPROCESS_CASES = {
    "set without =": (["empirical", "run", "--task", "resnet", "--out", "out", "--set",
                       "wide.steps"], {}),
    "zero seeds": (["meanfield", "limits", "--quick", "--out", "out", "--seeds", "0"], {}),
    "broken preset": (["empirical", "compare", "--task", "bert", "--preset", "bad.toml",
                       "--out", "out"], {"bad.toml": "[bert.wide\nsteps = 3\n"}),
    "output is a file": (["reproduce", "--quick", "--out", "taken"], {"taken": "x\n"}),
    "unknown block": (["empirical", "run", "--task", "resnet", "--out", "out", "--quiet",
                       *FAST_RESNET_FLAGS, "--set", 'imitate.blocks=["blocks.9"]'], OLD_RUN),
}


@pytest.fixture(scope="module")
def real_processes(tmp_path_factory):
    """Every case's process, all started at once (they are independent, and each spends its
    seconds importing torch: two cores run two at a time). {name: (its working directory,
    the files there before, the process, where its stdout and stderr go)}."""
    started = {}
    try:
        for name, (argv, files) in SUBPROCESS_CASES.items():
            cwd = tmp_path_factory.mktemp("real")
            _write(cwd, files)
            before = _snapshot(cwd)
            logs = tmp_path_factory.mktemp("logs")
            with open(logs / "stdout", "w") as out, open(logs / "stderr", "w") as err:
                proc = subprocess.Popen([sys.executable, "-m", "gowide.cli", *argv], cwd=cwd,
                                        stdout=out, stderr=err)
            started[name] = (cwd, before, proc, logs)
        yield started
    finally:
        for _, _, proc, _ in started.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize("name", sorted(SUBPROCESS_CASES))
def test_a_real_process_exits_2_with_one_line(name, real_processes):
    cwd, before, proc, logs = real_processes[name]
    proc.wait(timeout=120)
    stdout, stderr = ((logs / stream).read_text() for stream in ("stdout", "stderr"))
    assert proc.returncode == 2, stderr
    assert len(stderr.splitlines()) == 1 and stderr.endswith("\n"), stderr
    assert "Traceback" not in stderr and stdout == ""
    assert _snapshot(cwd) == before

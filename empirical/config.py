"""Run configuration: small dataclasses per component and per stage, with the ranges of
their values. They are filled from TOML presets (``configs/tiny.toml``, ``small.toml``,
``full.toml``, ``regime.toml``) and ``--set section.key=value`` overrides by
:func:`empirical.presets.build_config`; the ``[model]`` table is checked against its model
family by :mod:`empirical.model_limits`.

Unknown keys, wrong types and values out of range raise :class:`~gowide.errors.UsageError`
with a one-line message naming the key.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from gowide.errors import UsageError

CONFIG_DIR = Path(__file__).parent / "configs"
TASKS = ("resnet", "bert")
BASELINES = ("scratch", "deeper")  # baselines with their own training tables
SEED_LIMIT = 2**32  # seeds are integers in [0, SEED_LIMIT)
# Upper bounds of every number in a configuration (docs/reliability.md), by field name; a
# field without its own entry gets the default of its type, so a new field is bounded too.
INT_MAX = 10**9
FLOAT_MAX = 1e9
UPPER = {"threads": 1024, "wide_mult": 64.0, "deeper_width_mult": 64.0, "width_mult": 64.0,
         "seed": SEED_LIMIT - 1, "split_seed": SEED_LIMIT - 1,
         "blocks_per_stage": 256, "layers": 256, "deeper_depth": 256}
PARAMS_MAX = 2 * 10**9  # parameters of one member (thin, wide, deeper) of the model family


def _check_choice(where: str, value, choices):
    if value not in choices:
        raise UsageError(f"{where} must be one of {', '.join(map(str, choices))}; got {value!r}")


def _check_positive(where: str, value):
    if value is None or not value > 0:
        raise UsageError(f"{where} must be positive, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"{where} must be finite, got {value!r}")


def _check_non_negative(where: str, value):
    if not value >= 0 or (isinstance(value, float) and not math.isfinite(value)):
        raise UsageError(f"{where} must be a finite number >= 0, got {value!r}")


def _check_bounds(where: str, value) -> None:
    """Every int and float in ``value`` (a config as nested dicts and lists) finite and
    within [-UPPER, UPPER] of its field name (default INT_MAX or FLOAT_MAX); the lower bounds
    are the fields' own checks."""
    if isinstance(value, dict):
        for key, item in value.items():
            _check_bounds(f"{where}.{key}" if where else str(key), item)
    elif isinstance(value, list):
        for item in value:
            _check_bounds(where, item)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        name = where.rsplit(".", 1)[-1]
        limit = UPPER.get(name, INT_MAX if isinstance(value, int) else FLOAT_MAX)
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"{where} must be finite, got {value!r}")
        if abs(value) > limit:
            shown = value if abs(value) < 10**30 else f"{float(value):.3g}"
            raise UsageError(f"{where} must be at most {limit:g} in magnitude, got {shown}")


def _check_seed(where: str, value):
    if not 0 <= value < SEED_LIMIT:
        raise UsageError(f"{where} must be an integer in [0, 2**32), got {value!r}")


@dataclass
class DataConfig:
    dataset: str = "digits"  # resnet: digits | mnist5k | fashion
    data_dir: str | None = None  # where Fashion-MNIST IDX files live, if not the Debian path
    split_seed: int = 0  # fixed train/val/test split
    downsample: int = 1  # resnet: images averaged over k x k squares (2: Fashion-MNIST 14x14)
    vocab_size: int = 2000  # bert: WordPiece vocabulary
    max_len: int = 64  # bert: sequence length
    max_mlm_sequences: int | None = None  # bert: cap on pretraining sequences

    def __post_init__(self):
        _check_choice("data.dataset", self.dataset, ("digits", "mnist5k", "fashion"))
        if self.data_dir is not None and self.dataset != "fashion":
            raise UsageError(f"data.data_dir (--data-dir) is read only with data.dataset = "
                             f"\"fashion\", not {self.dataset!r}")
        _check_positive("data.vocab_size", self.vocab_size)
        _check_positive("data.max_len", self.max_len)
        _check_seed("data.split_seed", self.split_seed)
        _check_positive("data.downsample", self.downsample)
        if self.max_mlm_sequences is not None:
            _check_positive("data.max_mlm_sequences", self.max_mlm_sequences)


@dataclass
class SupervisedConfig:
    """A stage that trains on labels (stage 1, stage 3, baselines, downstream fine-tuning).
    ``kd_weight`` > 0 mixes in output-level distillation from the wide model (stage 3).

    Validation and selection: with ``eval_every`` > 0 the model is evaluated on the validation
    split (held out of the training data with ``data.split_seed``) every ``eval_every`` steps
    and at the last step; with ``select = "best"`` the stage ends with the weights of the best
    evaluation (the test split is never looked at during training). The convergence rule,
    recorded per stage: *converged* when the best validation metric of the last ``patience``
    evaluations does not beat the best one before them by more than ``min_delta``;
    ``early_stop`` ends the stage as soon as that holds, otherwise ``steps`` is always run
    (it is the cap)."""

    steps: int = 200
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 5e-4
    warmup: float = 0.05  # fraction of steps of linear warm-up, then cosine decay
    kd_weight: float = 0.0  # loss = (1 - w) * labels + w * KD
    temperature: float = 4.0
    log_every: int = 10
    eval_every: int = 0  # steps between validation evaluations; 0: none during training
    select: str = "best"  # best (weights of the best evaluation) | last; needs eval_every > 0
    patience: int = 5  # K of the convergence rule, in evaluations
    min_delta: float = 0.0  # improvement that counts, in the metric's units (accuracy, nats)
    early_stop: bool = False  # stop as soon as the convergence rule holds

    def validate(self, where: str):
        _check_positive(f"{where}.steps", self.steps)
        _check_positive(f"{where}.batch_size", self.batch_size)
        _check_positive(f"{where}.lr", self.lr)
        _check_positive(f"{where}.temperature", self.temperature)
        _check_positive(f"{where}.log_every", self.log_every)
        _check_positive(f"{where}.patience", self.patience)
        _check_non_negative(f"{where}.weight_decay", self.weight_decay)
        _check_non_negative(f"{where}.eval_every", self.eval_every)
        _check_non_negative(f"{where}.min_delta", self.min_delta)
        _check_choice(f"{where}.select", self.select, ("best", "last"))
        if not 0.0 <= self.kd_weight <= 1.0:
            raise UsageError(f"{where}.kd_weight must lie in [0, 1], got {self.kd_weight}")
        if not 0.0 <= self.warmup < 1.0:
            raise UsageError(f"{where}.warmup must lie in [0, 1), got {self.warmup}")
        if self.early_stop and not self.eval_every:
            raise UsageError(f"{where}.early_stop needs {where}.eval_every > 0")


@dataclass
class DownstreamConfig(SupervisedConfig):
    """The downstream stage of the ``bert`` task: ``mode = "finetune"`` (the default) trains
    the whole model with the classification head on labels (the keys of
    :class:`SupervisedConfig`); ``mode = "probe"`` freezes the encoder and fits a linear probe
    on its mean-pooled final hidden states, its L2 strength chosen on the validation split
    (``empirical/probe.py``; needs ``model.cls_head = "linear"``; the training keys are then
    unused)."""

    mode: str = "finetune"  # finetune | probe

    def validate(self, where: str):
        super().validate(where)
        _check_choice(f"{where}.mode", self.mode, ("finetune", "probe"))


@dataclass
class ImitationConfig:
    """Stage 2, layerwise imitation of the wide model's block outputs.

    Per block (progressive schedule): a fresh AdamW with ``warmup``·``steps_per_block`` steps
    of linear warm-up, then cosine decay over ``steps_per_block`` (the cap). With
    ``check_every`` > 0 the block's thin-mode relative error is measured on a fixed
    validation batch every ``check_every`` steps, and the block stops early once it is at most
    ``stop_error`` (when > 0), or once it has not fallen by more than the fraction
    ``stop_min_delta`` of its best value over ``stop_patience`` checks (when > 0)."""

    schedule: str = "progressive"  # progressive (bottom to top) | simultaneous
    steps_per_block: int = 50  # progressive: K steps per block (the cap with a stopping rule)
    steps: int = 200  # simultaneous: total steps
    lower_blocks: str = "frozen"  # progressive: frozen | trainable
    inputs: str = "thin"  # thin (the thin net's own lower blocks) | teacher (teacher-forced)
    # pre (block output before its final ReLU) | post (after it); post stays the default:
    # pre lowered block errors but not validation accuracy where measured (README)
    target: str = "post"
    normalize: bool = False  # MSE divided by the wide output's per-feature variance
    init: str = "random"  # random | subsample (mean-field warm start before imitation)
    subsample_rescale: str = "sqrt"  # sqrt | linear (see subsample.py)
    blocks: list[str] | None = None  # blocks to imitate; all when absent
    head: str = "wide"  # wide (take the wide model's linear head where exact) | own
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup: float = 0.0  # fraction of each block's steps of linear warm-up
    check_every: int = 0  # steps between checks of the block's error; 0: no stopping rule
    stop_error: float = 0.0  # stop a block at this thin-mode relative error; 0: no target
    stop_patience: int = 0  # stop a block whose error stopped falling for this many checks
    stop_min_delta: float = 0.01  # a fall smaller than this fraction of the best is no fall
    bn_recalibration: int = 20  # batches to re-estimate BatchNorm statistics afterwards; 0: off
    log_every: int = 10
    # The wide model's block outputs computed once over the training set before stage 2 and
    # read back by index (empirical/precompute.py): the same batches, without the wide
    # model's forward pass at every step. Image task and target "post" only.
    precompute: bool = False
    # Tied-embedding masked-LM heads (BERT), which cannot be taken from the wide model: steps
    # that train the thin head (hidden layer, its norm, output bias, final norm), the rest
    # frozen, on the wide model's predicted distribution (empirical/head_imitation.py), after
    # the blocks, with ``lr``, ``warmup`` and ``batch_size``; 0: only the output bias is copied.
    head_steps: int = 0

    def validate(self, where: str = "imitate"):
        _check_choice(f"{where}.schedule", self.schedule, ("progressive", "simultaneous"))
        _check_choice(f"{where}.lower_blocks", self.lower_blocks, ("frozen", "trainable"))
        _check_choice(f"{where}.inputs", self.inputs, ("thin", "teacher"))
        _check_choice(f"{where}.target", self.target, ("pre", "post"))
        _check_choice(f"{where}.init", self.init, ("random", "subsample"))
        _check_choice(f"{where}.head", self.head, ("wide", "own"))
        _check_choice(f"{where}.subsample_rescale", self.subsample_rescale, ("sqrt", "linear"))
        for name in ("steps_per_block", "steps", "batch_size", "lr", "log_every"):
            _check_positive(f"{where}.{name}", getattr(self, name))
        for name in ("weight_decay", "check_every", "stop_error", "stop_patience",
                     "stop_min_delta", "bn_recalibration", "head_steps"):
            _check_non_negative(f"{where}.{name}", getattr(self, name))
        if not 0.0 <= self.warmup < 1.0:
            raise UsageError(f"{where}.warmup must lie in [0, 1), got {self.warmup}")
        if not self.stop_min_delta < 1.0:
            raise UsageError(f"{where}.stop_min_delta must lie in [0, 1), got "
                             f"{self.stop_min_delta}")
        if self.precompute and self.target == "pre":
            raise UsageError(f"{where}.precompute keeps post-activation block outputs; it "
                             f"needs {where}.target = \"post\"")
        if (self.stop_error or self.stop_patience) and not self.check_every:
            raise UsageError(f"{where}.stop_error and {where}.stop_patience need "
                             f"{where}.check_every > 0")


@dataclass
class RunConfig:
    task: str = "resnet"
    method: str = "ours"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    # auto: bf16 autocast on CUDA, float32 on the CPU; fp32: float32 everywhere (on CUDA with
    # TF32 off); bf16: bf16 autocast (CUDA only). scripts/gpu_check.py measures what bf16
    # does to the gradients of the thin ResNet (docs/reliability.md).
    precision: str = "auto"
    threads: int = 0  # CPU threads for torch; 0 keeps torch's default (one per core)
    model: dict = field(default_factory=dict)  # the thin member's family settings
    wide_mult: float = 4.0  # width multiplier of the wide member (stage 1)
    deeper_depth: int = 4  # depth of the "deeper" baseline (blocks per stage / layers)
    deeper_width_mult: float = 1.0  # its width multiplier (bert: ~3x the size with 2x layers)
    data: DataConfig = field(default_factory=DataConfig)
    wide: SupervisedConfig = field(default_factory=SupervisedConfig)
    imitate: ImitationConfig = field(default_factory=ImitationConfig)
    finetune: SupervisedConfig = field(default_factory=SupervisedConfig)
    downstream: DownstreamConfig = field(default_factory=DownstreamConfig)
    # The baselines trained from scratch: any key of a supervised stage, over finetune's
    # (kd_weight is always 0). Without a ``steps`` key, ``scratch`` trains for the thin
    # steps of ``ours`` (stage 2's cap + stage 3); ``deeper`` reads finetune's, then
    # scratch's, then its own keys.
    scratch: dict = field(default_factory=dict)
    deeper: dict = field(default_factory=dict)

    def __post_init__(self):
        self.validate()

    def validate(self):
        _check_bounds("", self.to_dict())
        _check_choice("task", self.task, TASKS)
        _check_choice("device", self.device, ("auto", "cpu", "cuda"))
        _check_choice("precision", self.precision, ("auto", "fp32", "bf16"))
        if self.precision == "bf16" and self.device == "cpu":
            raise UsageError("precision = \"bf16\" is bf16 autocast on CUDA; on the CPU use "
                             "\"auto\" or \"fp32\"")
        _check_seed("seed", self.seed)
        _check_positive("wide_mult", self.wide_mult)
        _check_positive("deeper_depth", self.deeper_depth)
        _check_positive("deeper_width_mult", self.deeper_width_mult)
        if self.threads < 0:
            raise UsageError(f"threads must be 0 (torch's default) or positive, got {self.threads}")
        self.wide.validate("wide")
        self.imitate.validate("imitate")
        self.finetune.validate("finetune")
        self.downstream.validate("downstream")
        if self.task == "bert" and self.imitate.precompute:
            raise UsageError("imitate.precompute applies to the image task only: masked-LM "
                             "batches are masked afresh at every step, so the wide model's "
                             "input never repeats")
        if self.task == "bert" and self.data.downsample != 1:
            raise UsageError("data.downsample applies to the image task only")
        if (self.task == "bert" and self.downstream.mode == "probe"
                and self.model.get("cls_head", "mlp") != "linear"):
            raise UsageError('downstream.mode = "probe" needs model.cls_head = "linear" '
                             "(a linear head on the mean-pooled hidden states)")
        for name in BASELINES:
            self.baseline(name)
        from empirical.model_limits import check_model  # it builds members: models import

        check_model(self)

    def baseline(self, name: str, steps: int | None = None) -> SupervisedConfig:
        """The training settings of baseline ``name`` (scratch | deeper): finetune's, then the
        baseline tables' (see the fields above), ``steps`` where no table sets it, and no
        distillation."""
        tables = ("scratch",) if name == "scratch" else ("scratch", "deeper")
        cfg = self.finetune
        from empirical.presets import from_dict  # it builds RunConfigs from this module

        for where in tables:
            table = getattr(self, where)
            checked = from_dict(SupervisedConfig, table, where)  # unknown keys, types
            cfg = dataclasses.replace(cfg, **{k: getattr(checked, k) for k in table})
        if steps is not None and not any("steps" in getattr(self, w) for w in tables):
            cfg = dataclasses.replace(cfg, steps=steps)
        cfg = dataclasses.replace(cfg, kd_weight=0.0)
        cfg.validate(name)
        return cfg

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Where a run computes, not what: left out of every key (a finished run's, --resume's, the
# stage cache's). On a CPU the thread count changes the order of float sums, so the numbers
# differ in their last bits (measured on the tiny preset, seed 0: test accuracy 0.9867 with
# one thread, 0.9800 with two); each is an equally valid run of the same computation, and
# provenance records both. Bit-for-bit repetition needs the same device and threads.
RUNTIME_FIELDS = ("device", "threads")


def same_config(stored: dict, wanted: RunConfig) -> bool:
    """Whether a finished run's stored configuration is ``wanted`` (RUNTIME_FIELDS aside). A key
    that the stored one lacks counts as equal when ``wanted`` has that field's default: a
    setting added to the package later, whose default keeps the earlier behaviour, does not
    make earlier runs stale."""
    defaults = RunConfig().to_dict()

    def same(a: dict, b: dict, d: dict) -> bool:
        for key, value in b.items():
            if key not in a:
                if not isinstance(d, dict) or key not in d or d[key] != value:
                    return False
            elif isinstance(value, dict) and isinstance(a[key], dict):
                if not same(a[key], value, d.get(key, {}) if isinstance(d, dict) else {}):
                    return False
            elif a[key] != value:
                return False
        return all(key in b for key in a)

    want = {k: v for k, v in wanted.to_dict().items() if k not in RUNTIME_FIELDS}
    have = {k: v for k, v in stored.items() if k not in RUNTIME_FIELDS}
    return same(have, want, defaults)

"""A CIFAR-style ResNet family: the convolutional model of the paper's image experiments.

Depth is ``blocks_per_stage`` (basic blocks per stage, three stages with strides 1, 2, 2);
``base_width`` is the width of the first stage (the next stages double it). ``width_mult``
widens the *inner* convolution of every block, which is the paper's "go wide" for ResNets: block
interfaces keep their width, so thin and wide block outputs can be compared directly. With
``widen_interfaces=True`` the interfaces (stem and block outputs) are widened too, and stage 2
needs linear pairs between thin and wide (see ``connectors.py``).

Named blocks, shared by every member of a family: ``stem``, ``blocks.0`` ... ``blocks.{n-1}``.
The classifier head (global average pool and a linear layer) is not an imitated block.

Every convolution computes in the contiguous (NCHW) memory format, whatever format the caller
hands in (:class:`Conv2d`): oneDNN's AVX2 backward-weights kernel for a channels-last 1×1
convolution with stride 2 and fewer than 8 input channels writes past its workspace (heap
corruption with one thread, silently wrong weight gradients with two; oneDNN issue #6035,
shipped in torch 2.13 and 2.14). Thin members of this family have exactly that convolution in
their stride-2 shortcuts. See ``docs/reliability.md``.

This module does not hold the ImageNet bottleneck ResNet-50/101; the basic block is enough for
the small images this package trains on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gowide.errors import UsageError


@dataclass
class ResNetConfig:
    blocks_per_stage: int = 2
    base_width: int = 16
    width_mult: float = 1.0
    widen_interfaces: bool = False
    in_channels: int = 1
    num_classes: int = 10
    norm: str = "batch"  # "batch" or "group"

    def __post_init__(self):
        if self.blocks_per_stage < 1 or self.base_width < 1:
            raise UsageError("resnet: blocks_per_stage and base_width must be positive")
        if self.width_mult <= 0:
            raise UsageError(f"resnet: width_mult must be positive, got {self.width_mult}")
        if self.norm not in ("batch", "group"):
            raise UsageError(f"resnet: norm must be 'batch' or 'group', got {self.norm!r}")

    def stage_widths(self) -> list[int]:
        return [self.base_width * 2**s for s in range(3)]

    def interface_width(self, stage_width: int) -> int:
        mult = self.width_mult if self.widen_interfaces else 1.0
        return max(1, round(stage_width * mult))

    def inner_width(self, stage_width: int) -> int:
        return max(1, round(stage_width * self.width_mult))


def nchw(t: torch.Tensor) -> torch.Tensor:
    """``t`` with the canonical contiguous (NCHW) strides, copied only when it lacks them.

    ``Tensor.contiguous()`` is not enough: where a dimension has size 1 (a 1×1 kernel, one
    input channel) channels-last strides also count as contiguous, ``contiguous()`` returns
    the tensor unchanged, and oneDNN still reads the strides as channels-last.
    """
    shape, strides, step = t.shape, [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    if t.stride() == tuple(reversed(strides)):
        return t
    return t.clone(memory_format=torch.contiguous_format)


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` that always runs in the contiguous (NCHW) memory format.

    Input and weight are given canonical NCHW strides where the activation is computed, so a
    channels-last input (from a caller, or from a ``movedim`` upstream) or a model moved to
    channels-last never reaches oneDNN's broken channels-last kernel (see the module
    docstring). Gradients flow through the copies unchanged; a tensor that already has the
    canonical strides is used as it is.
    """

    def forward(self, x):  # (B, C_in, H, W) -> (B, C_out, H', W')
        return self._conv_forward(nchw(x), nchw(self.weight), self.bias)


def make_norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


class Stem(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, norm: str):
        super().__init__()
        self.conv = Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm = make_norm(norm, out_channels)
        self.final_act = nn.ReLU()  # its input is the stem's pre-activation output

    def forward(self, x):  # (B, C_in, H, W) -> (B, C, H, W)
        return self.final_act(self.norm(self.conv(x)))


class BasicBlock(nn.Module):
    """relu(norm2(conv2(relu(norm1(conv1(x))))) + shortcut(x)); ``inner`` is conv1's width.
    The last ReLU is the module ``final_act``, so its input, the block's pre-activation
    output, can be captured (stage 2's ``imitate.target = "pre"``)."""

    def __init__(self, in_channels: int, inner: int, out_channels: int, stride: int, norm: str):
        super().__init__()
        self.conv1 = Conv2d(in_channels, inner, 3, stride=stride, padding=1, bias=False)
        self.norm1 = make_norm(norm, inner)
        self.conv2 = Conv2d(inner, out_channels, 3, padding=1, bias=False)
        self.norm2 = make_norm(norm, out_channels)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                make_norm(norm, out_channels),
            )
        else:
            self.shortcut = nn.Identity()
        self.final_act = nn.ReLU()

    def forward(self, x):  # (B, C_in, H, W) -> (B, C_out, H', W')
        h = torch.relu(self.norm1(self.conv1(x)))
        return self.final_act(self.norm2(self.conv2(h)) + self.shortcut(x))


class ResNet(nn.Module):
    feature_dim = 1  # block outputs are (B, C, H, W): features along dim 1

    def __init__(self, config: ResNetConfig):
        super().__init__()
        self.config = config
        widths = config.stage_widths()
        width_in = config.interface_width(widths[0])
        self.stem = Stem(config.in_channels, width_in, config.norm)
        blocks = []
        for s, w in enumerate(widths):
            for b in range(config.blocks_per_stage):
                stride = 2 if (s > 0 and b == 0) else 1
                width_out = config.interface_width(w)
                blocks.append(
                    BasicBlock(width_in, config.inner_width(w), width_out, stride, config.norm)
                )
                width_in = width_out
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Linear(width_in, config.num_classes)
        self._init_weights()

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        # Zero-init the last norm of each residual branch: every block starts near identity,
        # which keeps deep thin members trainable.
        for block in self.blocks:
            nn.init.zeros_(block.norm2.weight)

    def block_names(self) -> list[str]:
        return ["stem"] + [f"blocks.{i}" for i in range(len(self.blocks))]

    def block_widths(self) -> dict[str, int]:
        widths = {"stem": self.stem.conv.out_channels}
        for i, block in enumerate(self.blocks):
            widths[f"blocks.{i}"] = block.conv2.out_channels
        return widths

    def forward(self, x):  # (B, C_in, H, W) -> (B, classes)
        h = self.stem(x)
        for block in self.blocks:
            h = block(h)
        return self.head(h.mean(dim=(2, 3)))

"""The ResNet family computes correct gradients on every x86 CPU (docs/reliability.md).

oneDNN's AVX2 backward-weights kernel for a channels-last 1×1 convolution with stride 2 and
fewer than 8 input channels writes past its workspace (oneDNN issue #6035): heap corruption
with one thread, silently wrong weight gradients with two. Thin ResNets have that convolution
in their shortcuts. Each case below runs in a child process, so an abort is a failed test and
not the end of the suite; every case runs with the machine's own kernels and again under
``ONEDNN_MAX_CPU_ISA=AVX2``, which makes an AVX-512 machine take the AVX2 kernels.

The reference is the backward pass of the same forward pass with oneDNN switched off, and
the forward pass with oneDNN switched off for the outputs.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

# The child: one (memory format, threads) case, base widths 2 and 4, over the members of the family
# that reach a strided 1×1 convolution with few channels: thin, wide with its interfaces
# widened, deeper, and thin behind linear pairs (whose movedim made channels-last strides).
CHILD = textwrap.dedent("""
    import json, sys
    import torch
    from empirical.connectors import Connectors
    from empirical.models.resnet import ResNet, ResNetConfig

    fmt, threads = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(threads)
    memory_format = torch.channels_last if fmt == "channels_last" else torch.contiguous_format

    def members(base_width):
        kw = dict(base_width=base_width, blocks_per_stage=1)
        yield "thin", ResNet(ResNetConfig(**kw)), None
        yield "wide", ResNet(ResNetConfig(width_mult=4.0, widen_interfaces=True, **kw)), None
        yield "deeper", ResNet(ResNetConfig(**dict(kw, blocks_per_stage=2))), None
        thin = ResNet(ResNetConfig(**kw))
        wide = ResNet(ResNetConfig(width_mult=2.0, widen_interfaces=True, **kw))
        pairs = Connectors(thin, wide, thin.block_names(), seed=1)
        yield "thin_with_pairs", thin, pairs

    def forward(model, pairs, x):
        if pairs is None:
            return model(x)
        with pairs.insert(model):
            return model(x)

    def check(model, pairs, x):
        # One forward pass (oneDNN on), then its backward twice: with oneDNN and without.
        # Sharing the forward keeps every ReLU's mask identical, so only the backward kernels
        # differ (two forwards through different kernels can put a pre-activation on either
        # side of zero, which BatchNorm spreads over the whole channel's gradient).
        params = [p for p in model.parameters()]
        worst = 0.0
        for _ in range(3):  # several passes: heap damage shows within a few
            with torch.backends.mkldnn.flags(enabled=True):
                out = forward(model, pairs, x)
            loss = (out ** 2).sum()
            with torch.backends.mkldnn.flags(enabled=True):
                got = torch.autograd.grad(loss, params, retain_graph=True)
            with torch.backends.mkldnn.flags(enabled=False):
                ref = torch.autograd.grad(loss, params)
            for g, r in zip(got, ref):
                scale = float(r.norm())
                if scale > 0:
                    worst = max(worst, float((g - r).norm()) / scale)
        with torch.backends.mkldnn.flags(enabled=False):
            out_ref = forward(model, pairs, x)
        forward_error = float((out - out_ref).norm() / out_ref.norm())
        return worst, forward_error

    def randomize_norms(model):
        # Non-zero gains and biases: zero-initialised gains would put ReLU inputs exactly on
        # their kink, where float noise of either path flips the derivative.
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                    m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))

    report = {}
    for base_width in (2, 4):
        for name, model, pairs in members(base_width):
            torch.manual_seed(0)
            randomize_norms(model)
            model = model.to(memory_format=memory_format)
            x = torch.randn(16, 1, 12, 12).to(memory_format=memory_format)
            report[f"{name}, base width {base_width}"] = check(model, pairs, x)
    print(json.dumps(report))
""")

# float32 gradients of the same maths through two kernel libraries agree to a few 1e-6; the
# broken kernel is off by 0.3-3.
TOLERANCE = 1e-4


@pytest.mark.parametrize("isa", [None, "AVX2"], ids=["native", "avx2"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("fmt", ["contiguous", "channels_last"])
def test_resnet_gradients_match_the_onednn_off_reference(fmt, threads, isa):
    env = dict(os.environ)
    env.pop("ONEDNN_MAX_CPU_ISA", None)
    if isa is not None:
        env["ONEDNN_MAX_CPU_ISA"] = isa
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, fmt, str(threads)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, (
        f"child ended with code {proc.returncode}: {proc.stderr[-2000:]}"
    )
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(report) == {f"{name}, base width {b}" for b in (2, 4)
                           for name in ("thin", "wide", "deeper", "thin_with_pairs")}
    bad = {name: errs for name, errs in report.items() if not max(errs) <= TOLERANCE}
    assert not bad, f"relative error (gradients, outputs) above {TOLERANCE}: {bad}"

"""The benchmarks: the Python-loop reference computes what the simulator computes, precomputed
teacher features give the stage-2 loss and training of the live teacher, and a quick run
writes every figure."""

import copy
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from empirical_helpers import TEST_CACHE, fast_config

from empirical.capture import block_names
from empirical.connectors import Connectors
from empirical.imitation import imitate
from empirical.imitation_loss import imitation_forward, imitation_loss
from empirical.precompute import feature_bytes, precompute_features, training_examples
from empirical.run import Run
from empirical.runtime import Runtime
from empirical.tasks import make_task
from gowide.errors import UsageError
from meanfield import MeanFieldResNet
from meanfield.dynamics import gradient_step, square_loss

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is run from the repository, not installed
    sys.path.insert(0, str(ROOT))

from benchmarks.loop_reference import loop_loss_and_grads, loop_step  # noqa: E402
from benchmarks.report import BEGIN, END, fill, markdown  # noqa: E402
from benchmarks.run import NAMES, parse_only  # noqa: E402


def _arrays(L=3, N=5, d=4, d_in=6, B=7, readout=True, seed=0):
    rng = np.random.default_rng(seed)
    a, w = rng.normal(size=(L, N, d)), rng.normal(size=(L, N, d)) / np.sqrt(d)
    b = rng.normal(size=(L, N))
    u = rng.normal(size=d) if readout else None
    E = rng.normal(size=(d, d_in)) / np.sqrt(d_in)
    X = rng.normal(size=(B, d_in))
    Y = rng.normal(size=B) if readout else rng.normal(size=(B, d))
    return a, w, b, u, E, X, Y


@pytest.mark.parametrize("activation", ["tanh", "relu", "gelu", "identity"])
@pytest.mark.parametrize("readout", [True, False])
def test_loop_reference_matches_the_simulator(activation, readout):
    a, w, b, u, E, X, Y = _arrays(readout=readout)
    loss, out, grads = loop_loss_and_grads(a, w, b, X, Y, activation, u, E)
    net = MeanFieldResNet.from_arrays(a, w, b, activation, u, E)
    for p in net.parameters():
        p.requires_grad_(True)
    pred = net._forward(torch.as_tensor(X))
    ref_loss = square_loss(pred, torch.as_tensor(Y))
    ref_grads = torch.autograd.grad(ref_loss, net.parameters())
    np.testing.assert_allclose(out, pred.detach().numpy(), rtol=1e-12, atol=1e-12)
    assert loss == pytest.approx(ref_loss.item(), rel=1e-12, abs=1e-14)
    for g, r in zip(grads, ref_grads, strict=True):
        np.testing.assert_allclose(g, r.numpy(), rtol=1e-10, atol=1e-13)


def test_loop_step_matches_gradient_step():
    a, w, b, u, _, X, Y = _arrays(L=4, N=6, d=3, d_in=3, B=9)
    net = MeanFieldResNet.from_arrays(a, w, b, "tanh", u)
    for p in net.parameters():
        p.requires_grad_(True)
    before = gradient_step(net, torch.as_tensor(X), torch.as_tensor(Y), lr=0.05)
    a2, w2, b2 = a.copy(), w.copy(), b.copy()
    loss = loop_step(a2, w2, b2, X, Y, 0.05, "tanh", readout=u)
    assert loss == pytest.approx(before.item(), rel=1e-12)
    for mine, theirs in zip((a2, w2, b2), net.parameters(), strict=True):
        np.testing.assert_allclose(mine, theirs.detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.fixture(scope="module")
def resnet_setup():
    cfg = fast_config("resnet")
    task = make_task(cfg)
    torch.manual_seed(0)
    thin, wide = task.build("thin"), task.build("wide")
    with torch.no_grad():  # non-trivial normalisation statistics for the eval-mode teacher
        for m in wide.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
    return cfg, task, thin, wide


@pytest.mark.parametrize("inputs", ["thin", "teacher"])
def test_precomputed_features_give_the_live_loss(resnet_setup, inputs):
    cfg, task, thin, wide = resnet_setup
    runtime = Runtime(torch.device("cpu"))
    names = block_names(thin)
    features = precompute_features(wide, task, runtime, batch_size=100)
    assert set(features.outputs) == set(names) and features.size == len(task.data.y_train)
    assert features.nbytes == feature_bytes(wide, task)
    live_batches = task.train_batches(32, torch.Generator().manual_seed(5))
    stored = features.batches(32, torch.Generator().manual_seed(5))
    loss_blocks = names[1:4]
    run = Run(task, runtime, models={"thin": thin, "wide": wide},
              connectors=Connectors(thin, wide, names))
    wide.eval()
    for _ in range(3):  # the same batches, in the same order, and the same losses
        live = next(live_batches)
        batch, z = next(stored)
        for k in live:
            assert torch.equal(live[k], batch[k])
        m_live, z_live = imitation_forward(run, live, loss_blocks, inputs)
        m_pre, _ = imitation_forward(run, batch, loss_blocks, inputs, z=z)
        for b in loss_blocks:
            torch.testing.assert_close(z[b], z_live[b], rtol=1e-6, atol=1e-6)
            torch.testing.assert_close(imitation_loss(m_pre[b], z[b], 1),
                                       imitation_loss(m_live[b], z_live[b], 1),
                                       rtol=1e-6, atol=1e-7)


def test_imitate_with_precomputed_features_trains_the_same_model(resnet_setup):
    cfg, task, thin, wide = resnet_setup
    runtime = Runtime(torch.device("cpu"), progress=False)
    features = precompute_features(wide, task, runtime)
    models, records = [], []
    for feats in (None, features):
        model = copy.deepcopy(thin)
        torch.manual_seed(3)
        run = Run(task, runtime, models={"thin": model, "wide": wide})
        records.append(imitate(run, cfg.imitate, 7, features=feats))
        models.append(model)
    a, b = (m.state_dict() for m in models)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
    for p, q in zip(records[0]["phases"], records[1]["phases"], strict=True):
        assert p["final_loss"] == pytest.approx(q["final_loss"], rel=1e-4)


def test_precompute_refuses_what_it_cannot_do(resnet_setup):
    cfg, task, thin, wide = resnet_setup
    with pytest.raises(UsageError, match="masked afresh"):
        training_examples(types.SimpleNamespace(name="bert"))
    with pytest.raises(UsageError, match="budget"):
        precompute_features(wide, task, max_bytes=1000)


def test_only_names_are_checked():
    assert parse_only(None) == list(NAMES)
    assert parse_only("hook_overhead,step_over_matmul") == ["step_over_matmul", "hook_overhead"]
    with pytest.raises(SystemExit, match="unknown benchmark"):
        parse_only("step_over_matmul,speed")


@pytest.mark.slow  # a smoke test of a measurement script; `make slow-test` runs it
def test_quick_run_writes_every_benchmark(tmp_path):
    out = tmp_path / "bench.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", GOWIDE_CACHE=TEST_CACHE,
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH"))
                                          if p))
    done = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", "--threads", "1",
                           "--out", str(out)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["complete"] and data["quick"] and "perf_counter" in data["method"]
    for name in NAMES:
        r = data[name]
        assert "error" not in r, r.get("error")
        assert {"value", "goal", "met", "env"} <= set(r), name
        assert {"cpu", "cores", "gpu", "torch", "threads", "device"} <= set(r["env"]), name
    assert set(data["scaling_exponents"]["value"]) == {"N", "L", "batch"}
    assert data["ddp_2proc_over_1proc"]["cpu"]["resnet"]["2"]["examples_per_s"] > 0
    table = markdown(data)
    assert all(f"`{name}`" in table for name in NAMES)
    doc = f"intro\n{BEGIN}\nold\n{END}\noutro\n"
    assert fill(doc, table) == f"intro\n{BEGIN}\n{table}{END}\noutro\n"

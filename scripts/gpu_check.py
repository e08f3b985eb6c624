"""The CUDA and bf16 paths of the empirical half checked against the CPU on small inputs, and
the throughput of many one-thread training processes sharing one GPU.

    python scripts/gpu_check.py --out DIR [--probe-seconds 12] [--probe-procs 8]

Writes ``DIR/gpu_check.json``. Part 1 (numerics): for the regime's thin ResNet, its 4x-wide
teacher (interfaces widened) and a small BERT-style encoder, one training-mode forward and
backward on a seeded batch, in float64 on the CPU (the reference), float32 on the CPU,
float32 on CUDA with TF32 off, float32 on CUDA with torch's default TF32 setting, and bf16
autocast on CUDA (what ``--device cuda`` runs). Reported per path: the relative L2 error of
the logits and of the whole gradient vector, and the cosine of the gradients. Bounds, fixed
before any run: float32 paths within 1e-4 of float64 (logits and gradients); bf16 autocast
(8-bit significand, about 2-3 significant digits) within 5e-2 on logits, 1e-1 on gradients,
gradient cosine at least 0.99. Part 2 (throughput): steps per second of the thin regime
model's training step (batch 128, AdamW, bf16 autocast, the loss read back every step, as
``train_supervised`` does) in one process, then summed over ``--probe-procs`` processes at
once, without and (where it starts) with the CUDA multi-process service.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from empirical.models.bert import Bert, BertConfig  # noqa: E402
from empirical.models.resnet import ResNet, ResNetConfig  # noqa: E402

BOUNDS = {"fp32": {"logits": 1e-4, "grads": 1e-4},
          "bf16": {"logits": 5e-2, "grads": 1e-1, "grad_cosine": 0.99}}


def models():
    thin = ResNetConfig(blocks_per_stage=3, base_width=4)
    wide = ResNetConfig(blocks_per_stage=3, base_width=4, width_mult=4.0, widen_interfaces=True)
    bert = BertConfig(vocab_size=500, max_len=32, layers=2, hidden=32, ffn=128, heads=2)
    return {"resnet_thin": (ResNet, thin), "resnet_wide": (ResNet, wide), "bert": (Bert, bert)}


def batch(name: str):
    g = torch.Generator().manual_seed(0)
    if name.startswith("resnet"):
        return {"x": torch.rand(16, 1, 28, 28, generator=g), "y": torch.randint(0, 10, (16,),
                                                                                 generator=g)}
    ids = torch.randint(5, 500, (8, 32), generator=g)
    return {"x": ids, "y": torch.randint(5, 500, (8, 32), generator=g)}


def forward_backward(name, model, b, device, dtype, amp):
    model = model.to(device=device, dtype=dtype)
    model.train()
    model.zero_grad(set_to_none=True)
    x, y = b["x"].to(device), b["y"].to(device)
    if x.is_floating_point():
        x = x.to(dtype)
    ctx = (torch.autocast("cuda", dtype=torch.bfloat16) if amp else torch.autocast(
        "cpu", enabled=False))
    with ctx:
        if name == "bert":
            logits = model(x, torch.ones_like(x), head="mlm")
        else:
            logits = model(x)
        loss = F.cross_entropy(logits.float().flatten(0, -2), y.flatten())
    loss.backward()
    grads = torch.cat([p.grad.detach().double().cpu().flatten() for p in model.parameters()
                       if p.grad is not None])
    return logits.detach().double().cpu(), grads, float(loss)


def numerics() -> dict:
    out = {}
    for name, (cls, cfg) in models().items():
        torch.manual_seed(0)
        base = cls(cfg)
        state = {k: v.clone() for k, v in base.state_dict().items()}
        b = batch(name)

        def fresh(cls=cls, cfg=cfg, state=state):
            m = cls(cfg)
            m.load_state_dict(state)
            return m

        ref_logits, ref_grads, ref_loss = forward_backward(name, fresh(), b, "cpu",
                                                           torch.float64, False)
        paths = {"cpu_fp32": ("cpu", False, None)}
        if torch.cuda.is_available():
            paths |= {"cuda_fp32_no_tf32": ("cuda", False, False),
                      "cuda_fp32_default_tf32": ("cuda", False, None),
                      "cuda_bf16_autocast": ("cuda", True, None)}
        rows = {}
        for path, (device, amp, tf32) in paths.items():
            old = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
            if tf32 is not None:
                torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
            try:
                logits, grads, loss = forward_backward(name, fresh(), b, device, torch.float32,
                                                       amp)
            finally:
                torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old
            rel_l = float((logits - ref_logits).norm() / ref_logits.norm())
            rel_g = float((grads - ref_grads).norm() / ref_grads.norm())
            cos = float(grads @ ref_grads / (grads.norm() * ref_grads.norm()))
            kind = "bf16" if amp else "fp32"
            bound = BOUNDS[kind]
            ok = rel_l <= bound["logits"] and rel_g <= bound["grads"]
            if "grad_cosine" in bound:
                ok = ok and cos >= bound["grad_cosine"]
            if path == "cuda_fp32_default_tf32":
                ok = None  # reported only: TF32 is not a float32 path by design
            rows[path] = {"logits_rel_error": rel_l, "grads_rel_error": rel_g,
                          "grad_cosine": cos, "loss": loss, "loss_float64": ref_loss,
                          "bounds": None if ok is None else bound, "within_bounds": ok}
        out[name] = rows
    return out


PROBE = r"""
import sys, time, torch, torch.nn.functional as F
sys.path.insert(0, {root!r})
from empirical.models.resnet import ResNet, ResNetConfig
torch.set_num_threads(1)
dev = "cuda"
m = ResNet(ResNetConfig(blocks_per_stage=3, base_width=4)).to(dev)
opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
x = torch.rand(128, 1, 28, 28); y = torch.randint(0, 10, (128,))
def step():
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = F.cross_entropy(m(x.to(dev, non_blocking=True)).float(), y.to(dev))
    opt.zero_grad(set_to_none=True); loss.backward(); float(loss); opt.step()
for _ in range(20): step()
torch.cuda.synchronize(); t0 = time.perf_counter(); n = 0
while time.perf_counter() - t0 < {seconds}:
    step(); n += 1
print(n / (time.perf_counter() - t0))
"""


def probe(procs: int, seconds: float) -> dict:
    code = PROBE.format(root=str(ROOT), seconds=seconds)
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    ps = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=env) for _ in range(procs)]
    rates, errors = [], []
    for p in ps:
        try:
            o, e = p.communicate(timeout=seconds + 120)
        except subprocess.TimeoutExpired:
            p.kill()
            o, e = p.communicate()
            errors.append("timeout")
            continue
        if p.returncode == 0:
            rates.append(float(o.strip().splitlines()[-1]))
        else:
            errors.append(e.strip().splitlines()[-1] if e.strip() else f"rc {p.returncode}")
    return {"processes": procs, "steps_per_s_each": rates, "steps_per_s_total": sum(rates),
            "errors": errors}


def start_mps() -> tuple[bool, str]:
    ctl = shutil.which("nvidia-cuda-mps-control")
    if not ctl:
        return False, "nvidia-cuda-mps-control not found"
    r = subprocess.run([ctl, "-d"], capture_output=True, text=True, timeout=30)
    if r.returncode:
        return False, f"mps start failed: {r.stderr.strip() or r.returncode}"
    try:  # a context must come up under it
        t = subprocess.run([sys.executable, "-c", "import torch; torch.ones(1).cuda(); "
                            "torch.cuda.synchronize(); print('ok')"], capture_output=True,
                           text=True, timeout=60)
        if t.returncode == 0 and "ok" in t.stdout:
            return True, "started"
        msg = t.stderr.strip().splitlines()[-1] if t.stderr.strip() else f"rc {t.returncode}"
    except subprocess.TimeoutExpired:
        msg = "a CUDA context under MPS did not come up in 60 s"
    stop_mps()
    return False, msg


def stop_mps() -> None:
    ctl = shutil.which("nvidia-cuda-mps-control")
    if ctl:
        subprocess.run([ctl], input="quit\n", text=True, capture_output=True, timeout=30)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--probe-seconds", type=float, default=12.0)
    p.add_argument("--probe-procs", type=int, default=8)
    p.add_argument("--mps", action="store_true", help="also probe under MPS, and leave it on")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from gowide.provenance import provenance

    report = {"provenance": provenance(), "bounds": BOUNDS,
              "device": (torch.cuda.get_device_name(0) if torch.cuda.is_available()
                         else "no CUDA device")}
    t0 = time.perf_counter()
    report["numerics"] = numerics()
    report["numerics_s"] = time.perf_counter() - t0
    flags = [r["within_bounds"] for rows in report["numerics"].values() for r in rows.values()
             if r["within_bounds"] is not None]
    report["numerics_within_bounds"] = all(flags)
    print(json.dumps(report["numerics"], indent=1), flush=True)
    if torch.cuda.is_available() and args.probe_procs:
        report["probe"] = {"one_process": probe(1, args.probe_seconds),
                           "many_processes": probe(args.probe_procs, args.probe_seconds)}
        if args.mps:
            ok, msg = start_mps()
            report["mps"] = msg
            if ok:
                report["probe"]["many_processes_mps"] = probe(args.probe_procs,
                                                              args.probe_seconds)
        print(json.dumps(report["probe"], indent=1), flush=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    return 0 if report["numerics_within_bounds"] else 1


if __name__ == "__main__":
    sys.exit(main())

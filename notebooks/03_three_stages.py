# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 3 · The three stages on a real model
#
# *Go wide, then narrow* on a small CIFAR-style ResNet and scikit-learn's digits:
#
# 1. **go wide**: train a copy of the thin ResNet whose inner convolutions are wider (same depth,
#    same block names, same block interfaces);
# 2. **narrow by imitation**: train the thin network block by block, bottom to top, so that each
#    block's output matches the wide block's (mean squared error on block outputs, captured with
#    forward hooks);
# 3. **fine-tune** the thin network end to end on labels (here with output-level distillation).
#
# The same run is available from the command line as
# `gowide empirical run --task resnet --method ours --preset tiny --out DIR`. Digits is an easy
# data set: the point here is to see the machinery, not to separate methods.

# %% tags=["parameters"]
# Parameters to play with
METHODS = ["ours", "scratch"]   # see `gowide empirical methods` for all of them
SEED = 0
PRESET = "tiny"                 # quick: digits, seconds; "small": Fashion-MNIST, minutes
OVERRIDES = []                  # e.g. ["imitate.steps_per_block=100", "model.width_mult=8"]

# %%
import tempfile

import matplotlib.pyplot as plt
import torch

from empirical.methods import get_method
from empirical.presets import build_config
from empirical.runner import run

torch.set_num_threads(1)
workdir = tempfile.mkdtemp(prefix="gowide-nb3-")
results = {}
for name in METHODS:
    cfg = build_config("resnet", name, PRESET, OVERRIDES, seed=SEED)
    print(f"{name}: {get_method(name).description}")
    results[name] = run(cfg, f"{workdir}/{name}", progress=False)
for name, r in results.items():
    print(f"{name:>8}: test accuracy {r['metrics']['test']['accuracy']:.3f}, "
          f"training FLOPs {r['compute']['train_flops']:.2e}, "
          f"thin parameters {r['params']['thin']}")

# %% [markdown]
# ## What each stage did
#
# The wide network trains first; then every thin block imitates its wide counterpart for a fixed
# number of steps (one curve per block); then the thin network is fine-tuned. The loss curves
# come straight from `result.json`.

# %%
r = results["ours"]
fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
wide = r["stages"]["wide"]["loss_curve"]
axes[0].plot([p["step"] for p in wide], [p["loss"] for p in wide])
axes[0].set_title("stage 1: wide network"); axes[0].set_yscale("log")
for phase in r["stages"]["imitate"]["phases"]:
    curve = phase["loss_curve"]
    axes[1].plot([p["step"] for p in curve], [p["loss"] for p in curve], label=phase["phase"])
axes[1].set_title("stage 2: imitation, block by block"); axes[1].set_yscale("log")
axes[1].legend(fontsize=7)
ft = r["stages"]["finetune"]["loss_curve"]
axes[2].plot([p["step"] for p in ft], [p["loss"] for p in ft])
axes[2].set_title("stage 3: fine-tuning"); axes[2].set_yscale("log")
for ax in axes:
    ax.set_xlabel("step")
plt.tight_layout(); plt.show()

# %% [markdown]
# ## Per-block imitation error
#
# After stage 2, each thin block's relative error against the wide block's output, measured two
# ways: with the thin network's own lower blocks feeding it (`thin`, what the network will
# actually see) and with the wide network's states fed in (`teacher`, teacher forcing). With the
# default (progressive) schedule each block was trained on the thin network's own inputs, so it
# can fit those better than the wide states it never saw: neither bar is always the lower one.

# %%
errs = r["stages"]["imitate"]["block_errors"]
names = list(errs["thin"])
x = range(len(names))
plt.figure(figsize=(7, 3.2))
plt.bar([i - 0.2 for i in x], [errs["thin"][n] for n in names], width=0.4, label="thin inputs")
plt.bar([i + 0.2 for i in x], [errs["teacher"][n] for n in names], width=0.4,
        label="teacher-forced inputs")
plt.xticks(list(x), names); plt.ylabel("relative error"); plt.legend(); plt.show()

# %% [markdown]
# ## Accuracy against compute
#
# FLOPs are counted, not estimated: `torch.utils.flop_counter.FlopCounterMode` measures one step
# of every phase, times the number of steps. For `ours` the wide network's training is part of
# the bill (the bottom segment of its bar).

# %%
fig, ax = plt.subplots(figsize=(6, 3.4))
for i, (name, res) in enumerate(results.items()):
    bottom = 0.0
    for stage, flops in res["compute"]["by_stage"].items():
        ax.bar(i, flops, bottom=bottom, label=f"{name}: {stage}")
        bottom += flops
    ax.text(i, bottom, f"acc {res['metrics']['test']['accuracy']:.3f}", ha="center",
            va="bottom")
ax.set_xticks(range(len(results)), list(results)); ax.set_ylabel("training FLOPs")
ax.legend(fontsize=7); plt.show()

# %% [markdown]
# ## Where to go next
#
# - `gowide empirical methods` lists the baselines (`kd`, `fitnets`, `deeper`, `scratch_long`,
#   `teacher`) and the ablations (`ours_no_ft`, `ours_simultaneous`, `ours_labels_only`,
#   `ours_teacher_forced`, `subsample_init`).
# - `--task bert` runs the same three stages on a BERT-style encoder (masked-LM pre-training on
#   English text, then Rotten Tomatoes sentiment), where thin and wide interfaces differ and
#   linear pairs are inserted and merged away.
# - `empirical/README.md` explains the design choices.

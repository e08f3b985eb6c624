"""The end of stage 2 for a masked-LM head that cannot be taken from the wide model: imitate it.

With tied input and output embeddings the thin head's output weight is the thin token
embedding (trained in stage 2 as part of the ``embeddings`` block), so the wide head cannot be
mapped onto it (:func:`empirical.transfer.transfer_mlm_head` copies only the output bias).
Its hidden layer and layer norm, and a pre-LN model's final layer norm, would then keep their
initial weights, and the thin model after stage 2 predicts tokens no better than the unigram
prior. :func:`imitate_mlm_head` trains just those parameters, with every block and the
embeddings frozen, to match the wide model's predicted distribution at the masked positions
(the KL divergence of the task's ``kd_loss`` at temperature 1): imitation of the last output
the two models share, no labels read.
"""

from __future__ import annotations

import torch
from torch import nn
from tqdm import tqdm

from empirical.run import Run
from empirical.runtime import to_device
from empirical.train import LossLog, make_optimizer, optimizer_step


def head_parameters(thin: nn.Module) -> list[nn.Parameter]:
    """The parameters the head imitation trains: the masked-LM head without its tied output
    weight, and the final layer norm where the model has one."""
    tied = thin.mlm_head[3].weight
    params = [p for p in thin.mlm_head.parameters() if p is not tied]
    if getattr(thin, "final_norm", None) is not None:
        params += list(thin.final_norm.parameters())
    return params


def imitate_mlm_head(run: Run, steps: int, batch_size: int, lr: float, warmup: float,
                     seed: int, stage: str, log_every: int) -> dict:
    """Train the thin masked-LM head (:func:`head_parameters`) for ``steps`` steps on the
    KL divergence from the wide model's distribution at the masked positions, the rest of the
    thin model frozen; returns the phase's record and adds its FLOPs to ``run.ledger``."""
    thin, wide, runtime, task = run.thin, run.wide, run.runtime, run.task
    params = head_parameters(thin)
    for p in thin.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    thin.eval()  # frozen body: no dropout, fixed statistics
    wide.eval()
    opt, sched = make_optimizer(params, lr, 0.0, steps, warmup)
    log = LossLog(log_every)
    label = f"{stage}[head]"
    batches = task.train_batches(batch_size, torch.Generator().manual_seed(seed),
                                 runtime.rank, runtime.world)
    flops_per_step = 0
    for step in tqdm(range(steps), desc=label, disable=runtime.quiet_bars, leave=False):
        batch = to_device(next(batches), runtime.device)

        def one_step(batch=batch):
            with torch.no_grad():
                target = task.forward(wide, batch)
            loss = task.kd_loss(task.forward(thin, batch), target, batch, 1.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            return loss

        flops = optimizer_step(one_step, step, opt, sched, log, runtime, label, params)
        if step == 0:
            flops_per_step = flops
    run.ledger.add(stage, "head", flops_per_step * runtime.world, steps)
    runtime.note(f"{label}: {steps} steps, KL {log.last():.4f}")
    for p in thin.parameters():
        p.requires_grad_(True)
    thin.train()
    return {"phase": "head", "steps": steps, "loss": "KL(wide || thin) at masked positions",
            "parameters": sum(p.numel() for p in params), "final_loss": log.last(),
            "loss_curve": log.curve}

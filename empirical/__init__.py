"""The three-stage recipe of *Go Wide, Then Narrow* on real PyTorch models (paper §3 analogue).

Stage 1 trains a wide member of a model family; stage 2 warms up the thin member (same depth,
same block names) by layerwise imitation of the wide member's block outputs, optionally after a
mean-field warm start that subsamples the wide blocks' neurons; stage 3 fine-tunes the thin model
end to end on labels, optionally with output-level distillation from the wide model.

Layout: ``models/`` (a CIFAR-style ResNet and a BERT-style encoder with width knobs),
``data/`` (offline images and text), ``capture.py`` (forward hooks on named blocks),
``connectors.py`` (thin↔wide linear pairs and their merge), ``subsample.py`` (mean-field warm
start), ``stages.py`` (the stages and ``run_stage``), ``imitation.py`` and
``imitation_loss.py`` (stage 2), ``transfer.py`` (output heads, BatchNorm statistics),
``methods.py`` (methods as compositions of stages), ``run.py`` (what a run's stages share),
``runner.py`` (one method end to end: checkpoints, resume, stage cache, ``result.json``),
``matching.py`` (the FLOP-matched baseline's budget), ``checkpoints.py``, ``runtime.py``
(devices, processes), ``train.py`` (the supervised loop), ``flops.py`` (compute accounting)
and ``cli.py`` (``gowide empirical ...``).
"""

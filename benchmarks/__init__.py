"""Performance benchmarks of the mean-field simulator and of the three-stage training machinery.

``python -m benchmarks.run --out FILE [--quick] [--only NAME,...]`` measures and writes one
JSON file (atomically); ``python -m benchmarks.report FILE`` prints its table in markdown.
docs/performance.md states the method and the goals.

Modules: ``timing`` (the timer and the machine description stored beside every figure),
``loop_reference`` (a per-layer, per-particle Python loop of the mean-field step, the slow
reference), ``meanfield_bench`` (step time against matrix products, against the loop, and
scaling), ``empirical_bench`` (stage 2 against plain training, hook overhead, precomputed
teacher features), ``ddp_bench`` and ``ddp_worker`` (throughput of 1 and 2 processes under
torchrun).
"""

"""Capture of block outputs by forward hooks on named blocks (the "intermediate outputs" that
stage 2 imitates), and replacement of a block's input (teacher forcing).

Block names are the names of submodules of the *unwrapped* model (``blocks.3``, ``layers.0``):
the wrappers of ``DistributedDataParallel``/``DataParallel`` (``.module``) and of
``torch.compile`` (``._orig_mod``) are looked through, so the same name works however the model
is wrapped. A name that is not a block raises an error that names it and lists the blocks.

Nothing here rewrites a model: hooks are attached on entry of a ``with`` block and removed on
exit. By default ``torch.compile`` does not guard on module hooks, so hooks added after a model
was compiled would be silently ignored; on entry with a compiled model the hook guards are
switched on (``torch._dynamo.config.skip_nnmodule_hook_guards = False``) and, if they were off,
the compiled code is discarded once so that it is traced again with the hooks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from gowide.errors import UsageError


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DDP/DataParallel and ``torch.compile`` wrappers, however nested."""
    while True:
        if hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        elif isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        else:
            return model


def is_compiled(model: nn.Module) -> bool:
    while True:
        if hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            return True
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        else:
            return False


def ensure_hook_guards(model: nn.Module) -> None:
    """Make ``torch.compile`` re-trace when hooks change (see the module docstring)."""
    if not is_compiled(model):
        return
    import torch._dynamo

    if torch._dynamo.config.skip_nnmodule_hook_guards:
        torch._dynamo.config.skip_nnmodule_hook_guards = False
        torch._dynamo.reset()


def block_names(model: nn.Module) -> list[str]:
    inner = unwrap(model)
    if hasattr(inner, "block_names"):
        return list(inner.block_names())
    return [name for name, _ in inner.named_children()]


def resolve_block(model: nn.Module, name: str) -> nn.Module:
    inner = unwrap(model)
    try:
        return inner.get_submodule(name)
    except AttributeError:
        known = ", ".join(block_names(model))
        raise UsageError(
            f"block {name!r} not found in {type(inner).__name__}; its blocks are: {known}"
        ) from None


def pre_activation_module(block: nn.Module) -> nn.Module | None:
    """The block's final activation (a submodule named ``final_act``: a ResNet block's last
    ReLU, the layer norm of a BERT embeddings block), if it has one: its input is the
    block's pre-activation output."""
    act = getattr(block, "final_act", None)
    return act if isinstance(act, nn.Module) else None


def first_tensor(output):
    """The tensor a block passes on: the output itself, or the first element of a tuple."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"block output of type {type(output).__name__} holds no tensor to capture")


class _HookSet:
    """A context manager that removes the hooks it registered when it exits."""

    _handles: list

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles = []
        return False


class FeatureCapture(_HookSet):
    """Record the outputs of named blocks during forward passes.

    >>> with FeatureCapture(model, ["blocks.0", "blocks.1"]) as cap:
    ...     model(x)
    >>> cap.outputs["blocks.1"]  # (B, C, H, W)

    ``detach=True`` stores detached outputs (for a teacher). ``stop_after`` ends the forward pass
    right after that block has run (the rest of the model is not evaluated); the exception used
    for it is caught by :meth:`run`. ``pre_activation=True`` records, for a block that ends
    with a ``final_act`` submodule (the ResNet blocks' last ReLU, the BERT embeddings' layer
    norm), the input of that activation instead of the block's output; a block without one
    (a transformer layer) gives its output either way.
    """

    def __init__(self, model: nn.Module, names: Iterable[str], detach: bool = False,
                 stop_after: str | None = None, pre_activation: bool = False):
        self.model = model
        self.names = list(names)
        self.detach = detach
        self.stop_after = stop_after
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles = []
        # Resolve now so that a wrong name fails before any computation.
        self._modules = {name: resolve_block(model, name) for name in self.names}
        if stop_after is not None and stop_after not in self._modules:
            self._modules[stop_after] = resolve_block(model, stop_after)
        self._acts = {name: pre_activation_module(self._modules[name]) for name in self.names}
        if not pre_activation:
            self._acts = {}
        self._acts = {name: m for name, m in self._acts.items() if m is not None}

    def _store(self, name: str, t: torch.Tensor) -> None:
        self.outputs[name] = t.detach() if self.detach else t

    def _hook(self, name: str) -> Callable:
        def hook(module, args, output):
            if name in self.names and name not in self._acts:
                self._store(name, first_tensor(output))
            if name == self.stop_after:
                raise _StopForward
        return hook

    def _act_hook(self, name: str) -> Callable:
        def hook(module, args, output):
            self._store(name, first_tensor(args))
        return hook

    def __enter__(self):
        ensure_hook_guards(self.model)
        self.outputs = {}
        for name, module in self._modules.items():
            self._handles.append(module.register_forward_hook(self._hook(name)))
        for name, act in self._acts.items():
            self._handles.append(act.register_forward_hook(self._act_hook(name)))
        return self

    def run(self, fn: Callable, *args, **kwargs):
        """Call ``fn`` (typically the model's forward); returns its output, or ``None`` when the
        pass was stopped after ``stop_after``."""
        try:
            return fn(*args, **kwargs)
        except _StopForward:
            return None


class _StopForward(Exception):
    pass


class InputOverride(_HookSet):
    """Replace the first positional input of named blocks (teacher forcing).

    ``inputs`` maps a block name to a callable that returns the tensor to feed that block
    (called at the moment the block runs, so it may depend on tensors computed earlier)."""

    def __init__(self, model: nn.Module, inputs: dict[str, Callable[[], torch.Tensor]]):
        self._modules = {name: resolve_block(model, name) for name in inputs}
        self.model = model
        self.inputs = inputs
        self._handles = []

    def __enter__(self):
        ensure_hook_guards(self.model)
        for name, module in self._modules.items():
            make = self.inputs[name]

            def pre_hook(mod, args, make=make):
                return (make(),) + tuple(args[1:])

            self._handles.append(module.register_forward_pre_hook(pre_hook))
        return self

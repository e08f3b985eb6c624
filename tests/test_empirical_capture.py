"""Forward hooks on named blocks: the right tensors, through wrappers, with clear errors."""

import pytest
import torch
import torch.distributed as dist
from empirical_helpers import bert_batch, bert_pair, resnet_pair

from empirical.capture import FeatureCapture, InputOverride, resolve_block, unwrap
from gowide.errors import UsageError


def manual_resnet_outputs(model, x):
    outs = {"stem": model.stem(x)}
    h = outs["stem"]
    for i, block in enumerate(model.blocks):
        h = block(h)
        outs[f"blocks.{i}"] = h
    return outs


def test_hooks_return_the_named_blocks_outputs():
    thin, _ = resnet_pair()
    thin.eval()
    x = torch.randn(4, 1, 8, 8)
    expected = manual_resnet_outputs(thin, x)
    with FeatureCapture(thin, thin.block_names()) as cap:
        thin(x)
    assert set(cap.outputs) == set(expected)
    for name, value in expected.items():
        torch.testing.assert_close(cap.outputs[name], value, rtol=0, atol=0)


def test_bert_layer_outputs_and_hooks_removed_on_exit():
    thin, _ = bert_pair()
    thin.eval()
    b = bert_batch()
    with FeatureCapture(thin, ["layers.1"]) as cap:
        thin(b["input_ids"], b["attention_mask"])
    encoded = thin.encode(b["input_ids"], b["attention_mask"])
    torch.testing.assert_close(cap.outputs["layers.1"], encoded, rtol=0, atol=0)
    assert all(not m._forward_hooks for m in thin.modules())


def test_stop_after_ends_the_forward_pass():
    thin, _ = resnet_pair()
    with FeatureCapture(thin, ["blocks.0"], stop_after="blocks.0") as cap:
        result = cap.run(thin, torch.randn(2, 1, 8, 8))
    assert result is None and cap.outputs["blocks.0"].shape == (2, 4, 8, 8)


def test_input_override_feeds_the_block():
    thin, _ = resnet_pair()
    thin.eval()
    x = torch.randn(2, 1, 8, 8)
    feed = torch.randn(2, 4, 8, 8)
    with FeatureCapture(thin, ["blocks.0"]) as cap, InputOverride(thin, {"blocks.0": lambda: feed}):
        thin(x)
    torch.testing.assert_close(cap.outputs["blocks.0"], thin.blocks[0](feed))


def test_missing_block_error_names_it_and_lists_blocks():
    thin, _ = resnet_pair()
    with pytest.raises(UsageError, match=r"block 'blocks\.9' not found in ResNet.*stem, blocks\.0"):
        FeatureCapture(thin, ["blocks.9"])


def _capture_through(wrapper, model, x):
    with FeatureCapture(wrapper, ["blocks.1"]) as cap:
        wrapper(x)
    return cap.outputs["blocks.1"]


def test_names_work_through_dataparallel_and_compile():
    thin, _ = resnet_pair()
    thin.eval()
    x = torch.randn(2, 1, 8, 8)
    ref = manual_resnet_outputs(thin, x)["blocks.1"]
    dp = torch.nn.DataParallel(thin)
    assert unwrap(dp) is thin
    torch.testing.assert_close(_capture_through(dp, thin, x), ref)
    compiled = torch.compile(thin, backend="eager")
    compiled(x)  # compiled once without hooks: the hooks added next must still fire
    assert resolve_block(compiled, "blocks.1") is thin.blocks[1]
    torch.testing.assert_close(_capture_through(compiled, thin, x), ref)


def test_names_work_through_ddp(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    try:
        thin, _ = resnet_pair(norm="group")
        x = torch.randn(2, 1, 8, 8)
        ddp = torch.nn.parallel.DistributedDataParallel(thin)
        ref = manual_resnet_outputs(thin, x)["blocks.1"]
        torch.testing.assert_close(_capture_through(ddp, thin, x), ref)
    finally:
        dist.destroy_process_group()

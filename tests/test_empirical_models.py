"""The model families: shared block names, width knobs, heads and masking."""

import torch
from empirical_helpers import bert_batch, bert_pair, resnet_pair

from empirical.models.resnet import ResNet, ResNetConfig


def count(model):
    return sum(p.numel() for p in model.parameters())


def test_resnet_thin_and_wide_share_blocks_and_interfaces():
    thin, wide = resnet_pair()
    assert thin.block_names() == wide.block_names() == ["stem", "blocks.0", "blocks.1", "blocks.2"]
    # Only the inner convolution is widened: interfaces agree, the wide net is bigger.
    assert thin.block_widths() == wide.block_widths()
    assert wide.blocks[0].conv1.out_channels == 4 * thin.blocks[0].conv1.out_channels
    assert count(wide) > 3 * count(thin)
    x = torch.randn(2, 1, 8, 8)
    assert thin(x).shape == wide(x).shape == (2, 10)


def test_resnet_widen_interfaces_widens_block_outputs():
    thin, wide = resnet_pair(widen_interfaces=True)
    for name in thin.block_names():
        assert wide.block_widths()[name] == 4 * thin.block_widths()[name]


def test_resnet_depth_knob():
    deep = ResNet(ResNetConfig(blocks_per_stage=3, base_width=4))
    assert len(deep.block_names()) == 1 + 9


def test_bert_heads_and_padding_mask():
    thin, wide = bert_pair()
    thin.eval()
    assert thin.block_names() == wide.block_names() == ["embeddings", "layers.0", "layers.1"]
    assert wide.config.hidden_size == 2 * thin.config.hidden_size
    b = bert_batch()
    assert thin(b["input_ids"], b["attention_mask"], head="mlm").shape == (3, 12, 50)
    cls = thin(b["input_ids"], b["attention_mask"], head="cls")
    assert cls.shape == (3, 2)
    # Tokens at padded positions must not change the first token's output.
    ids = b["input_ids"].clone()
    ids[0, 6:] = 7
    cls2 = thin(ids, b["attention_mask"], head="cls")
    torch.testing.assert_close(cls[0], cls2[0], rtol=0, atol=1e-6)

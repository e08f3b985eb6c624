"""Offline data: fixed seeded splits, the bundled files, clear messages when files are absent."""

import pytest
import torch

from empirical.data.images import FASHION_DIR, load_fashion, load_images
from empirical.data.text import (
    IGNORE,
    MASK,
    SPECIAL,
    mask_tokens,
    pretraining_corpus,
    rotten_tomatoes,
)
from gowide.errors import UsageError


def test_digits_splits_are_fixed_disjoint_and_complete():
    a, b = load_images("digits", seed=0), load_images("digits", seed=0)
    assert a.sizes() == {"train": 1197, "val": 300, "test": 300}
    assert torch.equal(a.x_val, b.x_val) and torch.equal(a.y_test, b.y_test)
    c = load_images("digits", seed=1)
    assert not torch.equal(a.y_val, c.y_val)
    rows = {tuple(x.flatten().tolist()) for x in torch.cat([a.x_train, a.x_val, a.x_test])}
    assert len(rows) > 1700  # (the dataset itself holds a few duplicate images)
    for split in ("train", "val", "test"):
        assert set(a.split(split)[1].tolist()) == set(range(10))
    assert abs(float(a.x_train.mean())) < 1e-4


def test_mnist5k_is_shuffled_out_of_class_order():
    d = load_images("mnist5k", seed=0)
    assert d.x_train.shape[1:] == (1, 28, 28)
    assert sum(d.sizes().values()) == 5000
    assert len(set(d.y_train[:50].tolist())) >= 8  # the file's rows are sorted by class
    counts = torch.bincount(d.y_train, minlength=10)
    assert counts.min() > 0.8 * counts.float().mean()


def test_fashion_missing_files_say_how_to_get_them(tmp_path):
    with pytest.raises(UsageError, match="apt-get install dataset-fashion-mnist.*--data-dir"):
        load_fashion(data_dir=tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(not FASHION_DIR.exists(), reason="dataset-fashion-mnist not installed")
def test_fashion_from_the_debian_package():
    d = load_images("fashion")
    assert d.sizes() == {"train": 55000, "val": 5000, "test": 10000}


def test_rotten_tomatoes_split():
    splits, plots = rotten_tomatoes(seed=0)
    sizes = {k: len(v[0]) for k, v in splits.items()}
    assert sizes == {"train": 10247, "val": 1281, "test": 1280}  # 12,808 snippets
    assert set(splits["train"][1]) == {0, 1}
    again, _ = rotten_tomatoes(seed=0)
    assert again["test"] == splits["test"]
    assert len(plots) > 1000


def test_pretraining_corpus_is_large_and_excludes_held_out_snippets():
    corpus = pretraining_corpus(seed=0)
    assert sum(len(d.split()) for d in corpus) >= 500_000
    splits, _ = rotten_tomatoes(seed=0)
    held_out = set(splits["test"][0]) | set(splits["val"][0])
    train = set(splits["train"][0])
    leaked = [d for d in corpus if d in held_out and d not in train]
    assert not leaked


def test_masking_follows_bert_proportions():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(len(SPECIAL), 1000, (200, 64), generator=g)
    ids[:, 0] = 2  # [CLS] is never masked
    inputs, labels = mask_tokens(ids, 1000, g)
    chosen = labels != IGNORE
    assert not chosen[:, 0].any()
    assert 0.13 < chosen.float().mean() < 0.17
    assert 0.75 < (inputs[chosen] == MASK).float().mean() < 0.85
    assert torch.equal(labels[chosen], ids[chosen])


def test_tokenizer_is_deterministic_and_cached(tmp_path, monkeypatch):
    from empirical.data.text import train_tokenizer

    files = []
    for name in ("a", "b"):
        monkeypatch.setenv("GOWIDE_CACHE", str(tmp_path / name))
        tok = train_tokenizer(500)
        assert [tok.token_to_id(t) for t in SPECIAL] == [0, 1, 2, 3, 4]
        (path,) = (tmp_path / name).glob("wordpiece*.json")
        files.append(path.read_text())
        assert train_tokenizer(500).to_str() == tok.to_str()  # read back from the cache
    assert files[0] == files[1]


def test_downsampling_averages_pixel_squares_and_standardises_again():
    full, half = load_images("digits", seed=0), load_images("digits", seed=0, factor=2)
    assert half.x_train.shape[1:] == (1, 4, 4) and half.sizes() == full.sizes()
    assert torch.equal(half.y_test, full.y_test)
    assert abs(float(half.x_train.mean())) < 1e-5 and abs(float(half.x_train.std()) - 1) < 1e-4
    # Each pixel is an affine function of the mean of its 2x2 square in the full image.
    pooled = torch.nn.functional.avg_pool2d(full.x_val, 2)
    slope = float(half.x_val.std() / pooled.std())
    assert torch.allclose(half.x_val, (pooled - pooled.mean()) * slope + half.x_val.mean(),
                          atol=1e-4)
    with pytest.raises(UsageError, match="downsample = 3 does not divide the digits images"):
        load_images("digits", factor=3)

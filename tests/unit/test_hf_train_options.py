"""Text fine-tuning options and the pieces of the loop that decide, without Ray."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from inhouse.config import TextTrainOptions
from inhouse.data.text_import import TextRows
from inhouse.errors import ConfigError
from inhouse.kinds.text.epochs import autocast_dtype, shard
from inhouse.kinds.text.head import head_features, warm_head
from tests.hf_tiny import CLASSES, make_rows, make_tiny_bert


def _parse(*argv: str) -> TextTrainOptions:
    parser = argparse.ArgumentParser()
    TextTrainOptions.add_flags(parser)
    return TextTrainOptions.from_args(parser.parse_args(list(argv)))


def test_flags_map_onto_options_with_per_method_learning_rates() -> None:
    full = _parse("--dataset", "b77", "--model", "bank", "--model-dir", "/m", "--epochs", "1")
    assert (full.method, full.epochs, full.learning_rate()) == ("full", 1, 5e-5)
    lora = _parse(
        "--dataset",
        "b77",
        "--model",
        "t",
        "--base",
        "bank:3",
        "--method",
        "lora",
        "--no-compress",
        "--gradient-checkpointing",
    )
    assert lora.learning_rate() == 1e-3 and not lora.compress and lora.gradient_checkpointing
    with pytest.raises(ConfigError, match="exactly one of --model-dir and --base"):
        _parse("--dataset", "b77", "--model", "bank")
    with pytest.raises(ConfigError, match="method"):
        _parse("--dataset", "b77", "--model", "b", "--base", "x", "--method", "prefix")
    with pytest.raises(ConfigError, match="max_length"):
        _parse("--dataset", "b77", "--model", "b", "--base", "x", "--max-length", "2")


def test_shards_are_disjoint_equal_seeded_and_subsampled() -> None:
    rows = TextRows([str(i) for i in range(103)], [0] * 103, list(range(103)))
    options = TextTrainOptions(dataset="d", model="m", base="b", train_limit=50)
    a, b = (shard(rows, options=options, epoch=0, rank=r, world=2) for r in (0, 1))
    assert len(a) == len(b) == 25 and not set(a) & set(b)
    assert a == shard(rows, options=options, epoch=0, rank=0, world=2)
    assert a != shard(rows, options=options, epoch=1, rank=0, world=2)
    epoch1 = shard(rows, options=options, epoch=1, rank=0, world=2)
    epoch1 += shard(rows, options=options, epoch=1, rank=1, world=2)
    assert set(a + b) == set(epoch1)  # the same subsample every epoch, reshuffled


def test_mixed_precision_only_on_cuda() -> None:
    assert autocast_dtype(torch.device("cpu")) is None  # DP's layer check: tests/unit/test_text_dp


def test_head_warm_up_trains_only_the_classifier_on_cached_features(tmp_path: Path) -> None:
    from inhouse.models.hf import classifier_from_dir

    torch.manual_seed(0)
    model, tokenizer, _ = classifier_from_dir(
        str(make_tiny_bert(tmp_path / "tiny")), class_names=CLASSES, max_length=16
    )
    pairs = make_rows(120, seed=1)
    features = head_features(model, tokenizer, [t for t, _ in pairs], max_length=16)
    assert features.shape == (120, 32)
    before = {k: v.clone() for k, v in model.hf.state_dict().items()}
    labels = [CLASSES.index(c) for _, c in pairs]

    def loss() -> float:
        with torch.no_grad():
            logits = model.hf.classifier(model.hf.bert.pooler(features.unsqueeze(1)))
            return float(torch.nn.functional.cross_entropy(logits, torch.tensor(labels)))

    start = loss()
    accuracy = warm_head(model, features, labels, epochs=40, lr=1e-2)
    assert 0.0 <= accuracy <= 1.0 and loss() < start  # a random encoder: little to learn
    changed = {k for k, v in model.hf.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"classifier.weight", "classifier.bias"}
    warm_head(model, features, labels, epochs=2, train_pooler=True)  # what a full fine-tune does
    changed = {k for k, v in model.hf.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"classifier.weight", "classifier.bias"} | {
        "bert.pooler.dense.weight",
        "bert.pooler.dense.bias",
    }
    with pytest.raises(ConfigError, match="BERT-style"):
        head_features(torch.nn.Linear(2, 2), tokenizer, ["a"], max_length=4)

"""Text fine-tuning options and the pieces of the loop that decide, without Ray."""

from __future__ import annotations

import argparse

import pytest
import torch

from inhouse.data.text_import import TextRows
from inhouse.errors import ConfigError
from inhouse.training.text import TextTrainOptions, autocast_dtype, refuse_dp, shard


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


def test_mixed_precision_only_on_cuda_and_dp_refused_with_the_reason() -> None:
    assert autocast_dtype(torch.device("cpu")) is None
    with pytest.raises(ConfigError, match="not wired to the privacy ledger"):
        refuse_dp(torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 2)))
    with pytest.raises(ConfigError, match="BatchNorm"):
        refuse_dp(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4)))

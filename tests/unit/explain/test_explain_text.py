"""Token attributions for a tiny random BERT (skipped where transformers is not installed)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch

from inhouse.errors import InvalidInputError, PayloadTooLargeError
from inhouse.explain import ExplainLimits, Explanation, explain_text, top_features

transformers = pytest.importorskip("transformers")

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "the", "very"]


@pytest.fixture(scope="module")
def bert() -> Any:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(WORDS),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        num_labels=2,
    )
    return transformers.BertForSequenceClassification(config)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    try:
        return transformers.BertTokenizer(vocab={w: i for i, w in enumerate(WORDS)})
    except TypeError:  # transformers 4.x wants a vocabulary file
        path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
        path.write_text("\n".join(WORDS) + "\n")
        return transformers.BertTokenizer(str(path))


def test_token_attributions(bert: Any, tokenizer: Any) -> None:
    enc = tokenizer(["the movie very good", "bad"], padding=True, return_tensors="pt")
    bert.train()
    result = explain_text(
        bert,
        enc["input_ids"],
        attention_mask=enc["attention_mask"],
        tokenizer=tokenizer,
        n_steps=32,
    )
    assert result.tokens == [
        ["[CLS]", "the", "movie", "very", "good", "[SEP]"],
        ["[CLS]", "bad", "[SEP]"],
    ]
    assert result.attributions.shape == (2, 6)
    assert result.attributions_of(1).shape == (3,)
    assert result.attributions[1, 3:].tolist() == [0.0, 0.0, 0.0]  # padding
    assert result.attributions[0, 0] == 0.0 and result.attributions[0, 5] == 0.0  # kept specials
    assert np.abs(result.delta).max() < 0.05
    assert result.targets == result.predictions
    assert result.metadata["layer"] == "Embedding"
    assert bert.training  # mode restored
    assert all(p.grad is None for p in bert.parameters())
    assert top_features(result, 2, instance=1)[0][0] in {"bad", "[CLS]", "[SEP]"}
    again = Explanation.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again.feature_names_of(0) == result.tokens[0]


def test_without_tokenizer_tokens_are_ids(bert: Any) -> None:
    result = explain_text(bert, [2, 8, 5, 3], target=1, n_steps=8, pad_token_id=0)
    assert result.tokens == [["2", "8", "5", "3"]]
    assert result.targets == [1]


def test_text_limits_and_bad_ids(bert: Any) -> None:
    with pytest.raises(PayloadTooLargeError, match="tokens"):
        explain_text(bert, [[2, 5, 5, 3]], limits=ExplainLimits(max_tokens=3))
    with pytest.raises(PayloadTooLargeError, match="n_steps"):
        explain_text(bert, [[2, 5, 3]], n_steps=2000)
    with pytest.raises(InvalidInputError, match="out of range"):
        explain_text(bert, [[2, 50, 3]])
    with pytest.raises(InvalidInputError, match="integers"):
        explain_text(bert, [[2.5, 5, 3]])
    with pytest.raises(InvalidInputError, match="attention_mask shape"):
        explain_text(bert, [[2, 5, 3]], attention_mask=[[1, 1]])

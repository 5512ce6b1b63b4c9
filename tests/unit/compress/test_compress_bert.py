"""A tiny random BERT classifier: every Linear and the embedding tables go int8, generically."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from inhouse.compress import (
    Int8Embedding,
    Int8Linear,
    compress,
    dumps_compressed,
    float32_size,
    load_compressed,
)
from inhouse.config import CompressionSettings

transformers = pytest.importorskip("transformers")


def _tiny_bert() -> nn.Module:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=600,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=64,
        num_labels=3,
    )
    model: nn.Module = transformers.BertForSequenceClassification(config).eval()
    return model


def test_bert_int8_linears_and_embeddings_round_trip() -> None:
    model = _tiny_bert()
    settings = CompressionSettings(
        prune_amount=0.0, quantize_embeddings=True, dynamic_min_weights=8192
    )
    compressed = compress(model, settings)
    linears = [m for m in compressed.modules() if isinstance(m, Int8Linear)]
    assert len(linears) == 2 * 6 + 2  # q, k, v, out, ffn in/out per layer; pooler; classifier
    assert {m.mode for m in linears} == {"weight_only", "dynamic"}
    assert len([m for m in compressed.modules() if isinstance(m, Int8Embedding)]) == 3
    assert not [m for m in compressed.modules() if type(m) in (nn.Linear, nn.Embedding)]

    ids = torch.randint(0, 600, (4, 12), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        reference, output = model(ids).logits, compressed(ids).logits
        assert torch.allclose(reference, output, atol=0.05)
        data = dumps_compressed(compressed)
        loaded = load_compressed(data, build=_tiny_bert)
        assert torch.equal(loaded(ids).logits, output)
    assert float32_size(model) / len(data) > 3.5

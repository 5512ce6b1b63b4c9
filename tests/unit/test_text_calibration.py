"""The int8 copy of a text classifier calibrates its smoothing on a seeded train-text sample."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inhouse.compress import Int8Linear, compress
from inhouse.compress.layers import dynamic_kernel_available
from inhouse.config import CompressionSettings
from inhouse.kinds.text.register import calibration_batches
from inhouse.models.hf import classifier_from_dir, load_tokenizer
from tests.hf_tiny import CLASSES, make_rows, make_tiny_bert


def test_calibration_batches_are_a_seeded_sample_of_the_texts(tmp_path: Path) -> None:
    tokenizer = load_tokenizer(make_tiny_bert(tmp_path / "tiny"))
    texts = [text for text, _ in make_rows(150)]
    batches = calibration_batches(tokenizer, texts, max_length=16, rows=100)
    assert [len(ids) for ids, _ in batches] == [64, 36]
    assert all(ids.shape == mask.shape and ids.shape[1] <= 16 for ids, mask in batches)
    again = calibration_batches(tokenizer, texts, max_length=16, rows=100)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again, strict=True))
    other = calibration_batches(tokenizer, texts, max_length=16, rows=100, seed=1)
    assert not torch.equal(other[0][0][:, :5], batches[0][0][:, :5])
    assert len(calibration_batches(tokenizer, texts[:10], max_length=16)) == 1  # all it has


@pytest.mark.skipif(not dynamic_kernel_available(), reason="no fbgemm/x86 dynamic int8 kernel")
def test_a_text_classifier_compresses_with_calibration_batches(tmp_path: Path) -> None:
    model, tokenizer, _ = classifier_from_dir(
        str(make_tiny_bert(tmp_path / "tiny")), class_names=CLASSES, max_length=16
    )
    texts = [text for text, _ in make_rows(64)]
    batches = calibration_batches(tokenizer, texts, max_length=16, rows=64)
    settings = CompressionSettings(prune_amount=0.0, runtime="dynamic")
    int8 = compress(model.eval(), settings, calibration=batches)
    layers = [m for m in int8.modules() if isinstance(m, Int8Linear)]
    assert layers and all(m.mode == "dynamic" for m in layers)
    ids, mask = batches[0]
    with torch.no_grad():
        reference, output = model(ids, mask), int8(ids, mask)
    assert (output.argmax(-1) == reference.argmax(-1)).float().mean() >= 0.9

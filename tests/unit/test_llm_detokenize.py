"""Incremental detokenization: the pieces add up to the whole decode, characters split over
byte-level tokens are never sent half, and stop strings end the text before them even when
they span tokens."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from inhouse.kinds.llm.detokenize import Detokenizer

TEXTS = [
    "The cat sees the moon. Paris is the capital!",
    "Café crème, naïve façade: déjà vu.",
    "日本語のテキスト and emoji 🙂🚀 in one line.",
    "Stop here: END then more text after END.",
]


@functools.lru_cache(maxsize=1)
def tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(TEXTS * 5, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|end|>")


def pieces(text: str, stop: tuple[str, ...] = ()) -> tuple[list[str], Detokenizer]:
    ids = tokenizer()(text)["input_ids"]
    detok = Detokenizer(tokenizer(), stop)
    out = [detok.push(i) for i in ids]
    out.append(detok.flush())
    return out, detok


@pytest.mark.parametrize("text", TEXTS)
def test_pieces_add_up_to_the_text(text: str) -> None:
    out, detok = pieces(text)
    assert "".join(out) == text and not detok.stopped
    assert all("\ufffd" not in piece for piece in out)


def test_a_character_split_over_tokens_is_sent_whole() -> None:
    ids = tokenizer()("🙂")["input_ids"]
    assert len(ids) > 1  # four UTF-8 bytes, unknown to the small vocabulary as a whole
    detok = Detokenizer(tokenizer())
    sent = [detok.push(i) for i in ids]
    assert sent[:-1] == [""] * (len(ids) - 1) and sent[-1] == "🙂"


def test_a_stop_string_ends_the_text_before_it() -> None:
    out, detok = pieces(TEXTS[3], ("END",))
    assert "".join(out) == "Stop here: " and detok.stopped
    assert detok.push(5) == "" and detok.flush() == ""


def test_the_earliest_of_several_stop_strings_wins() -> None:
    out, _ = pieces("abc xyz def", ("def", "xyz"))
    assert "".join(out) == "abc "


def test_text_that_may_begin_a_stop_string_is_held_then_released() -> None:
    detok = Detokenizer(tokenizer(), ("moonlight",))
    ids = tokenizer()("the moon")["input_ids"]
    sent = "".join(detok.push(i) for i in ids)
    assert not sent.endswith("moon")  # "moon" may begin "moonlight": held back
    assert sent + detok.flush() == "the moon" and not detok.stopped


def test_special_tokens_are_not_text() -> None:
    eos = tokenizer().convert_tokens_to_ids("<|end|>")
    detok = Detokenizer(tokenizer())
    assert detok.push(eos) == "" and detok.flush() == ""

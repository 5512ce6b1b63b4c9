"""A tiny, randomly initialised BERT in the Hugging Face layout, written into a test's tmp dir,
and a small three-intent text data set it can learn in seconds. No downloads."""

from __future__ import annotations

import csv
import random
from pathlib import Path

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
INTENTS = {
    "card_arrival": ["card", "arrive", "arrived", "delivery", "post", "mail", "waiting"],
    "refund": ["refund", "money", "back", "return", "reimburse", "charge", "cancel"],
    "transfer": ["transfer", "send", "account", "wire", "iban", "payee", "pending"],
}
FILLER = [
    "my",
    "the",
    "a",
    "is",
    "not",
    "i",
    "want",
    "when",
    "will",
    "how",
    "do",
    "please",
    "why",
    "has",
    "it",
    "yet",
    "still",
    "to",
    "get",
]
WORDS = sorted({w for words in INTENTS.values() for w in words} | set(FILLER))
CLASSES = sorted(INTENTS)


def make_tiny_bert(directory: Path, *, seed: int = 0, hidden: int = 32) -> Path:
    """Write config.json, model.safetensors, vocab.txt and tokenizer files; returns the dir."""
    import torch
    from transformers import AutoModel, BertConfig, BertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    vocab = SPECIAL + WORDS
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}).save_pretrained(directory)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
    )
    AutoModel.from_config(config).save_pretrained(directory)
    return directory


def sentence(intent: str, rng: random.Random) -> str:
    words = rng.sample(INTENTS[intent], 2) + rng.sample(FILLER, 3)
    rng.shuffle(words)
    return " ".join(words)


def make_rows(n: int, *, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` (text, intent) pairs, the intents balanced."""
    rng = random.Random(seed)
    return [(sentence(CLASSES[i % len(CLASSES)], rng), CLASSES[i % len(CLASSES)]) for i in range(n)]


def write_csv(
    path: Path, rows: list[tuple[str, str]], *, columns: tuple[str, str] = ("text", "category")
) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(rows)
    return path

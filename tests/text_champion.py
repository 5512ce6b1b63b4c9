"""A home with a three-intent text data set and a tiny BERT champion trained on it in-process
(float classifier + its int8 version as champion), for coordinator tests without Ray."""

from __future__ import annotations

import random
from pathlib import Path

import torch
from sqlalchemy import Engine

from inhouse import services
from inhouse.compress import compress
from inhouse.config import CompressionSettings, Settings, TextTrainOptions
from inhouse.data import describe
from inhouse.data.text_import import append_text_rows, import_text_csv, read_text_rows
from inhouse.kinds import register_module
from inhouse.kinds.text.epochs import evaluate_texts, train_epoch
from inhouse.kinds.text.versions import import_model_dir, load_text
from inhouse.models.text import classifier_from
from tests.hf_tiny import CLASSES, make_rows, make_tiny_bert, write_csv

DATASET, MODEL = "intents", "intents"


def make_text_champion(settings: Settings, tmp: Path) -> int:
    """Import the data set, train the champion; returns the champion (int8) version."""
    engine = services.engine(settings)
    import_text_csv(
        engine,
        name=DATASET,
        csv_path=write_csv(tmp / "train.csv", make_rows(300)),
        test_csv=write_csv(tmp / "test.csv", make_rows(60, seed=9)),
        label_column="category",
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny layers: threads only add synchronisation
    try:
        return _train_and_register(settings, tmp)
    finally:
        torch.set_num_threads(threads)


def _train_and_register(settings: Settings, tmp: Path) -> int:
    engine, registry = services.engine(settings), services.registry(settings)
    torch.manual_seed(0)
    base = import_model_dir(registry, make_tiny_bert(tmp / "tiny"), name="tiny-bert", max_length=16)
    encoder, tokenizer, base_spec = load_text(registry, base)
    model, spec = classifier_from(encoder, base_spec, class_names=CLASSES, max_length=16)
    options = TextTrainOptions(
        dataset=DATASET, model=MODEL, base="tiny-bert", epochs=8, lr=3e-3, batch_size=8,
        max_length=16,
    )  # fmt: skip
    train = read_text_rows(engine, DATASET, split="train")
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.learning_rate())
    for epoch in range(options.epochs):
        train_epoch(model, tokenizer, train, optimizer, options=options, epoch=epoch)
    test = read_text_rows(engine, DATASET, split="test")
    accuracy = evaluate_texts(model, tokenizer, test, options)
    lineage = {"dataset": DATASET, "rows": {"up_to_id": describe(engine, DATASET).last_id}}
    fp32 = register_module(
        registry,
        MODEL,
        module=model,
        spec=spec,
        metrics={"test_accuracy": accuracy},
        lineage=lineage,
    )
    int8 = compress(model, CompressionSettings(prune_amount=0.0, quantize_embeddings=True))
    small = register_module(
        registry,
        MODEL,
        module=int8,
        spec=spec,
        fmt="compressed",
        metrics={"test_accuracy": accuracy},
        lineage={**lineage, "parent": {"model": MODEL, "version": fp32.version}},
    )
    registry.set_alias(MODEL, "champion", small.version)
    return small.version


def append_text_stream(
    engine: Engine, count: int, *, seed: int, wrong_labels: bool = False, split: str = "train"
) -> int:
    """Append ``count`` new labelled texts (every label wrong if ``wrong_labels``); returns the
    last row id."""
    pairs = make_rows(count, seed=seed)
    labels = [CLASSES.index(c) for _, c in pairs]
    if wrong_labels:
        rng = random.Random(seed)
        labels = [(y + rng.randint(1, len(CLASSES) - 1)) % len(CLASSES) for y in labels]
    return append_text_rows(
        engine, DATASET, texts=[t for t, _ in pairs], labels=labels, split=split
    )[1]

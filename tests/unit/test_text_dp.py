"""DP-SGD for text without Ray: which methods Opacus can clip per example, the private epoch on a
tiny BERT, and the ledger around a text run (refusals, exact epsilon, lineage)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
import torch
from opacus.accountants import PRVAccountant

from inhouse.config import TextTrainOptions
from inhouse.data import describe
from inhouse.data.text_import import TextRows, import_text_csv
from inhouse.errors import BudgetExceededError, ConfigError, PermissionDeniedError
from inhouse.kinds.text.epochs import evaluate_texts, train_epoch
from inhouse.kinds.text.private import (
    check_private,
    per_sample_problems,
    prepare_text,
    row_dataset,
    train_epoch_private,
)
from inhouse.models.hf import classifier_from_dir
from inhouse.models.lora import lora_config, prepare_incremental
from inhouse.privacy import PrivacyLedger
from inhouse.schema import get_engine
from inhouse.training.dp import make_private, plan_dp
from tests.hf_tiny import CLASSES, make_rows, make_tiny_bert, write_csv

DELTA = 1e-5


def _rows(n: int, seed: int) -> TextRows:
    pairs = make_rows(n, seed=seed)
    return TextRows([t for t, _ in pairs], [CLASSES.index(c) for _, c in pairs], list(range(n)))


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, torch.Tensor]]:
    """A tiny BERT and its encoder weights after a short non-DP fine-tune on public rows (the
    stand-in for a pretrained model): a private head needs features that carry the intents."""
    directory = str(make_tiny_bert(tmp_path_factory.mktemp("tiny")))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: more threads only contend on a busy machine
    torch.manual_seed(0)
    model, tokenizer, _ = classifier_from_dir(directory, class_names=CLASSES, max_length=16)
    options = TextTrainOptions(
        dataset="public", model="m", model_dir=directory, batch_size=8, lr=2e-3, max_length=16
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for epoch in range(3):
        train_epoch(model, tokenizer, _rows(300, 5), optimizer, options=options, epoch=epoch)
    weights = {k: v.clone() for k, v in model.state_dict().items() if "classifier" not in k}
    torch.set_num_threads(threads)
    return directory, weights


def _model(encoder: tuple[str, dict[str, torch.Tensor]], method: str) -> tuple[Any, Any]:
    """A fresh head (seeded) on the pretrained encoder, ``method`` applied."""
    directory, weights = encoder
    torch.manual_seed(1)
    model, tokenizer, _ = classifier_from_dir(directory, class_names=CLASSES, max_length=16)
    model.load_state_dict(weights, strict=False)
    if method != "full":
        prepare_incremental(model, method, lora=lora_config())
    return model, tokenizer


def _options(**overrides: Any) -> TextTrainOptions:
    values: dict[str, Any] = dict(
        dataset="intents", model="private", base="b", method="head", dp=True, max_length=16
    )
    return TextTrainOptions(**values | overrides)


def test_head_and_lora_pass_the_layer_check_and_full_is_refused_naming_the_layer(
    encoder: tuple[str, dict[str, torch.Tensor]],
) -> None:
    for method in ("head", "lora"):
        model, tokenizer = _model(encoder, method)
        assert per_sample_problems(model, tokenizer, max_length=16) == []
        check_private(model, tokenizer, _options(method=method))
        assert not any(hasattr(p, "grad_sample") for p in model.parameters())  # ran on a copy
    full, tokenizer = _model(encoder, "full")
    # BERT looks position embeddings up with one (1, T) index for the whole batch.
    assert per_sample_problems(full, tokenizer, max_length=16) == [
        "hf.bert.embeddings.position_embeddings (batch 1 instead of 2)"
    ]
    with pytest.raises(ConfigError, match=r"--method full .*position_embeddings.*--method head"):
        check_private(full, tokenizer, _options(method="full", model_dir="/m", base=None))
    with pytest.raises(ConfigError, match="BatchNorm"):
        check_private(
            torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4)), None, _options()
        )


def test_dp_flags_and_the_noiseless_head_warm_up_is_refused() -> None:
    parser = argparse.ArgumentParser()
    TextTrainOptions.add_flags(parser)
    argv = ["--dataset", "d", "--model", "m", "--base", "b", "--method", "lora", "--dp"]
    argv += ["--target-epsilon", "3", "--accountant", "rdp", "--max-grad-norm", "0.5"]
    options = TextTrainOptions.from_args(parser.parse_args(argv))
    assert (options.dp, options.target_epsilon, options.accountant) == (True, 3.0, "rdp")
    assert (options.max_grad_norm, options.target_delta, options.noise_multiplier) == (
        0.5,
        1e-5,
        None,
    )
    with pytest.raises(ConfigError, match="--head-epochs trains without noise"):
        TextTrainOptions.from_args(parser.parse_args([*argv, "--head-epochs", "2"]))


def test_dp_head_learns_the_intents_and_spends_what_an_independent_accountant_says(
    encoder: tuple[str, dict[str, torch.Tensor]],
) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    train, test = _rows(300, 0), _rows(60, 9)
    model, tokenizer = _model(encoder, "head")
    options = _options(target_epsilon=3.0, epochs=5, batch_size=32, lr=0.05)
    plan = plan_dp(
        train_rows=len(train),
        batch_size=32,
        epochs=5,
        max_grad_norm=1.0,
        delta=DELTA,
        accountant="prv",
        target_epsilon=3.0,
    )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.05)
    model.train()
    private = make_private(
        model=model,
        optimizer=optimizer,
        dataset=row_dataset(train, options),
        plan=plan,
        distributed=False,
    )
    for epoch in range(5):
        train_epoch_private(
            private.model,
            tokenizer,
            train,
            private.optimizer,
            private.loader,
            options=options,
            epoch=epoch,
            device=torch.device("cpu"),
        )
    assert private.steps() == plan.steps == 50
    independent = PRVAccountant()
    independent.history = [(plan.noise_multiplier, plan.sample_rate, plan.steps)]
    assert private.epsilon(DELTA) == pytest.approx(independent.get_epsilon(delta=DELTA), rel=1e-6)
    assert private.epsilon(DELTA) == pytest.approx(3.0, abs=0.05)
    assert evaluate_texts(model, tokenizer, test, options) >= 0.85  # chance: 1/3

    # An empty Poisson batch still steps (noise only) through a zero-loss public stand-in.
    before = model.hf.classifier.weight.detach().clone()
    empty = [(torch.zeros(0, dtype=torch.long),)]
    stats = train_epoch_private(
        private.model,
        tokenizer,
        train,
        private.optimizer,
        empty,  # type: ignore[arg-type]
        options=options,
        epoch=0,
        device=torch.device("cpu"),
    )
    assert stats["seen"] == 0 and private.steps() == 51
    assert not torch.equal(before, model.hf.classifier.weight)  # the noise was added
    torch.set_num_threads(threads)


def test_text_runs_are_charged_refused_over_budget_and_non_dp_needs_the_exemption(
    tmp_path: Path,
) -> None:
    engine = get_engine(f"sqlite:///{tmp_path / 'test.db'}")
    import_text_csv(
        engine,
        name="intents",
        csv_path=write_csv(tmp_path / "train.csv", make_rows(300)),
        test_csv=write_csv(tmp_path / "test.csv", make_rows(60, seed=9)),
        label_column="category",
    )
    info = describe(engine, "intents")
    ledger = PrivacyLedger(engine)
    ledger.set_budget(dataset="intents", epsilon=4.0, delta=DELTA, actor="admin")
    with pytest.raises(PermissionDeniedError):
        prepare_text(engine=engine, options=_options(dp=False), info=info, run_name="r0")

    options = _options(target_epsilon=3.0, epochs=5, batch_size=16, num_workers=2)
    run = prepare_text(engine=engine, options=options, info=info, run_name="r1")
    assert run.plan is not None and run.charge_id is not None
    assert (run.plan.sample_rate, run.plan.steps) == (1 / 10, 50)  # 32 expected rows a step
    # The steps the workers reported to the driver (through Ray Train's metrics).
    lineage = run.lineage(reported_steps=50)
    expected = {"dp", "charge_id", "epsilon", "delta", "accountant", "noise_multiplier"}
    expected |= {"clipping", "sample_rate", "steps"}
    assert expected <= set(lineage) and lineage["steps"] == 50 and lineage["accountant"] == "prv"
    assert (lineage["clipping"], lineage["delta"]) == (1.0, DELTA)
    run.settle(engine, reported_steps=50, version=1)
    independent = PRVAccountant()
    independent.history = [(run.plan.noise_multiplier, 0.1, 50)]
    spent = independent.get_epsilon(delta=DELTA)
    assert ledger.spent("intents") == pytest.approx(spent, rel=1e-6)
    assert ledger.charge(run.charge_id).version == 1

    # The same spend again would compose past ε=4: refused before anything is written.
    refusal = r"remaining 1\.0\d; this run needs ε=(2\.99|3\.00)"
    with pytest.raises(BudgetExceededError, match=refusal):
        prepare_text(engine=engine, options=options, info=info, run_name="r2")
    assert ledger.spent("intents") == pytest.approx(spent, rel=1e-6)


@pytest.mark.gpu
def test_dp_lora_trains_on_cuda(encoder: tuple[str, dict[str, torch.Tensor]]) -> None:
    train = _rows(300, 0)
    model, tokenizer = _model(encoder, "lora")
    options = _options(method="lora", noise_multiplier=1.0, epochs=1, batch_size=32)
    plan = plan_dp(
        train_rows=len(train),
        batch_size=32,
        epochs=1,
        max_grad_norm=1.0,
        delta=DELTA,
        accountant="prv",
        noise_multiplier=1.0,
    )
    model.cuda().train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.01)
    private = make_private(
        model=model,
        optimizer=optimizer,
        dataset=row_dataset(train, options),
        plan=plan,
        distributed=False,
    )
    stats = train_epoch_private(
        private.model,
        tokenizer,
        train,
        private.optimizer,
        private.loader,
        options=options,
        epoch=0,
        device=torch.device("cuda"),
    )
    assert stats["seen"] > 0 and private.steps() == plan.steps
    assert all(p.is_cuda for p in model.parameters())

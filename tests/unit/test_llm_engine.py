"""The continuous-batching engine on a tiny random Llama: batched greedy decoding gives what
``generate`` gives each prompt alone; limits, stops, cancellation, queueing, seeds, errors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from inhouse.errors import InvalidInputError, UnavailableError
from inhouse.kinds.llm.engine import GenerationEngine, Sampling

VOCAB, CONTEXT = 256, 128
GREEDY = Sampling(max_tokens=12, temperature=0)
ENDLESS = Sampling(max_tokens=50_000, temperature=0)  # runs until its consumer leaves


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    """2 layers, hidden 64, fp32; a wide init so that logits have no near-ties."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=CONTEXT,
        initializer_range=0.2,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=0,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def model() -> LlamaForCausalLM:
    return tiny_llama()


@pytest.fixture
def make_engine(model: nn.Module) -> Iterator[Callable[..., GenerationEngine]]:
    engines: list[GenerationEngine] = []

    def make(module: nn.Module = model, **kwargs: Any) -> GenerationEngine:
        options: dict[str, Any] = {
            "eos_token_ids": (),
            "context_length": CONTEXT,
            "max_sequences": 4,
            "threads": 1,
        }
        engine = GenerationEngine(module, **(options | kwargs))
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


def prompt(length: int, seed: int) -> list[int]:
    return torch.randint(
        3, VOCAB, (length,), generator=torch.Generator().manual_seed(seed)
    ).tolist()


def generate_alone(model: nn.Module, ids: list[int], max_new_tokens: int) -> list[int]:
    device = next(model.parameters()).device
    out = model.generate(
        torch.tensor([ids], device=device),
        attention_mask=torch.ones((1, len(ids)), dtype=torch.long, device=device),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=0,
    )
    return list(out[0, len(ids) :].tolist())


async def collect(engine: GenerationEngine, ids: list[int], sampling: Sampling) -> list[int]:
    return [token async for token in engine.stream(ids, sampling)]


async def until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.001)


def batched_equals_alone(model: nn.Module, engine: GenerationEngine) -> None:
    prompts = [prompt(n, seed) for seed, n in enumerate((5, 17, 9, 30, 2, 12, 23))]
    sampling = Sampling(max_tokens=30, temperature=0)
    alone = [generate_alone(model, ids, sampling.max_tokens) for ids in prompts]
    most_running = 0

    async def staggered() -> list[list[int]]:
        nonlocal most_running
        tasks = []
        for at, ids in enumerate(prompts):  # join at different decode steps
            await until(lambda at=at: engine.stats()["steps"] >= 3 * at)
            most_running = max(most_running, engine.stats()["running"])
            tasks.append(asyncio.create_task(collect(engine, ids, sampling)))
        return list(await asyncio.gather(*tasks))

    assert asyncio.run(staggered()) == alone
    assert most_running >= 3  # they really shared forward passes


def test_greedy_tokens_in_a_batch_equal_generate_alone(
    model: nn.Module, make_engine: Callable[..., GenerationEngine]
) -> None:
    batched_equals_alone(model, make_engine())


def test_prompts_arriving_together_prefill_together(
    model: nn.Module, make_engine: Callable[..., GenerationEngine]
) -> None:
    engine = make_engine(max_sequences=8)
    prompts = [prompt(n, 10 + n) for n in (3, 11, 6, 20)]

    async def together() -> list[list[int]]:
        return list(await asyncio.gather(*(collect(engine, ids, GREEDY) for ids in prompts)))

    assert asyncio.run(together()) == [generate_alone(model, ids, 12) for ids in prompts]
    assert engine.stats()["steps"] < 2 * 12  # in one batch (one after another: 44 steps)


def test_max_tokens_and_eos_end_a_sequence(
    model: nn.Module, make_engine: Callable[..., GenerationEngine]
) -> None:
    ids = prompt(7, 3)
    alone = generate_alone(model, ids, 12)
    assert asyncio.run(collect(make_engine(), ids, Sampling(5, temperature=0))) == alone[:5]
    eos = alone[4]
    first = alone.index(eos)
    engine = make_engine(eos_token_ids=(eos, VOCAB + 5))
    assert asyncio.run(collect(engine, ids, GREEDY)) == alone[:first]  # eos not yielded


def test_requests_that_cannot_run_are_refused(
    make_engine: Callable[..., GenerationEngine],
) -> None:
    engine = make_engine(context_length=32)
    with pytest.raises(InvalidInputError, match="context window of 32 tokens"):
        asyncio.run(collect(engine, prompt(30, 0), Sampling(3, temperature=0)))
    assert asyncio.run(collect(engine, prompt(29, 0), Sampling(3, temperature=0)))
    with pytest.raises(InvalidInputError, match="empty"):
        engine.check([], GREEDY)
    with pytest.raises(InvalidInputError, match=r"\[0, 256\)"):
        engine.check([1, VOCAB], GREEDY)
    for bad in (
        {"max_tokens": 0},
        {"max_tokens": 4, "top_p": 0},
        {"max_tokens": 4, "temperature": -1},
    ):
        with pytest.raises(InvalidInputError):
            Sampling(**bad)
    assert engine.stats()["steps"] == 2


def test_a_consumer_that_leaves_frees_its_slot(
    make_engine: Callable[..., GenerationEngine],
) -> None:
    engine = make_engine(max_sequences=1, context_length=1 << 16)

    async def scenario() -> list[int]:
        first = engine.stream(prompt(4, 1), ENDLESS)
        await anext(first)
        queued = asyncio.create_task(collect(engine, prompt(6, 2), Sampling(4, temperature=0)))
        await until(lambda: engine.stats()["waiting"] == 1)
        assert engine.stats()["running"] == 1
        await first.aclose()  # the client went away mid-stream
        done = await asyncio.wait_for(queued, 30)
        # a consumer task cancelled while waiting for a token leaves too
        leaving = asyncio.create_task(collect(engine, prompt(5, 3), ENDLESS))
        await until(lambda: engine.stats()["running"] == 1)
        leaving.cancel()
        await until(lambda: engine.stats()["running"] == 0)
        return done

    assert len(asyncio.run(scenario())) == 4
    assert (engine.stats()["running"], engine.stats()["waiting"]) == (0, 0)


def test_more_sequences_than_slots_queue_and_all_finish(
    model: nn.Module, make_engine: Callable[..., GenerationEngine]
) -> None:
    engine = make_engine(max_sequences=2)
    prompts = [prompt(3 + 2 * i, 20 + i) for i in range(6)]

    async def crowd() -> list[list[int]]:
        tasks = [asyncio.create_task(collect(engine, ids, GREEDY)) for ids in prompts]
        await until(lambda: engine.stats()["waiting"] > 0 or all(t.done() for t in tasks))
        assert engine.stats()["running"] <= 2
        return list(await asyncio.gather(*tasks))

    assert asyncio.run(crowd()) == [generate_alone(model, ids, 12) for ids in prompts]


def test_the_same_seed_gives_the_same_tokens(make_engine: Callable[..., GenerationEngine]) -> None:
    engine = make_engine()
    ids = prompt(8, 5)

    async def sampled(*samplings: Sampling) -> list[list[int]]:
        return list(await asyncio.gather(*(collect(engine, ids, s) for s in samplings)))

    seven = Sampling(max_tokens=24, temperature=1.0, seed=7)
    first, again, other = asyncio.run(sampled(seven, seven, Sampling(24, seed=8)))
    assert first == again and first != other
    assert asyncio.run(sampled(seven)) == [first]  # alone or in a batch: the same
    nucleus = Sampling(max_tokens=24, temperature=0.7, top_p=0.5, seed=7)
    assert asyncio.run(sampled(nucleus, nucleus)) == [asyncio.run(sampled(nucleus))[0]] * 2


class FailingForward(nn.Module):
    """The tiny model, whose forward pass raises on the ``fail_at``-th call."""

    def __init__(self, inner: nn.Module, fail_at: int) -> None:
        super().__init__()
        self.inner, self.calls, self.fail_at = inner, 0, fail_at
        self.config = inner.config

    def forward(self, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("forward failed on purpose")
        return self.inner(**kwargs)


def test_an_error_in_a_forward_pass_reaches_the_consumers(
    model: nn.Module, make_engine: Callable[..., GenerationEngine]
) -> None:
    ids = prompt(9, 1)
    for fail_at in (1, 3):  # in a prefill, in a decode step
        engine = make_engine(FailingForward(model, fail_at=fail_at))
        with pytest.raises(RuntimeError, match="on purpose"):
            asyncio.run(collect(engine, prompt(5, 0), GREEDY))
        assert asyncio.run(collect(engine, ids, GREEDY)) == generate_alone(model, ids, 12)


def test_closing_ends_the_sequences_left(make_engine: Callable[..., GenerationEngine]) -> None:
    engine = make_engine(context_length=1 << 16)

    async def scenario() -> None:
        stream = engine.stream(prompt(4, 0), ENDLESS)
        await anext(stream)
        await asyncio.get_running_loop().run_in_executor(None, engine.close)
        with pytest.raises(UnavailableError):
            async for _ in stream:
                pass
        with pytest.raises(UnavailableError, match="closed"):
            await collect(engine, prompt(4, 0), GREEDY)

    asyncio.run(scenario())


@pytest.mark.gpu
def test_batched_greedy_on_cuda_equals_generate_alone(
    make_engine: Callable[..., GenerationEngine],
) -> None:
    model = tiny_llama().cuda()
    engine = make_engine(model)
    assert engine.stats()["running"] == 0
    batched_equals_alone(model, engine)

"""Token attributions of an LLM's answer: the three methods' shapes, the float version behind an
int8 champion, a given target, the heat map, and bad bodies refused naming the field."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inhouse.config import load_settings
from inhouse.errors import InvalidInputError
from inhouse.kinds.llm.explaining import (
    ExplainedLLM,
    explain,
    explain_png,
    load_explained,
    parse_explain,
)
from inhouse.kinds.llm.importing import IMPORTING, LLMImportOptions
from inhouse.kinds.llm.loaded import load_llm
from inhouse.kinds.llm.quantize import int8_spec, quantize_module
from inhouse.kinds.modules import artifact_bytes
from inhouse.registry import Registry

MESSAGES = [{"role": "user", "content": "The cat sees the moon?"}]


@pytest.fixture()
def explained(registry: Registry, tiny: Path, tmp_path: Path) -> ExplainedLLM:
    settings = load_settings(home=str(tmp_path / "home"))
    parent = IMPORTING.import_model(
        settings, registry, tiny, name="tiny", options=LLMImportOptions()
    )
    int8, quantization = quantize_module(load_llm(registry, parent, device="cpu").module)
    champion = registry.register(
        "tiny", artifact=artifact_bytes(int8, fmt="compressed"),
        spec=int8_spec(parent.spec, quantization), metrics={},
        lineage={"parent": {"model": "tiny", "version": parent.version}}, fmt="compressed",
    )  # fmt: skip
    return load_explained(registry, champion)


def _call(body: dict[str, Any], fmt: str = "json") -> Any:
    return parse_explain(body, {}, max_instances=8, fmt=fmt)


@pytest.mark.parametrize("method", ["feature_ablation", "shapley", "integrated_gradients"])
def test_attributions_have_one_row_per_answer_token_and_one_column_per_prompt_token(
    explained: ExplainedLLM, method: str
) -> None:
    call = _call({"messages": MESSAGES, "method": method, "max_new_tokens": 4, "samples": 2})
    answer = explain(explained, call, max_instances=8)
    assert answer["model"] == "tiny" and answer["method"] == method
    assert answer["version"] == 2 and answer["explained_version"] == 1  # int8 -> float parent
    prompt, tokens = answer["prompt_tokens"], answer["answer_tokens"]
    assert "<|im_start|>" not in prompt and " moon" in prompt  # special tokens are not features
    assert answer["generated"] and 1 <= len(tokens) <= 4
    matrix = np.asarray(answer["token_attributions"])
    assert matrix.shape == (len(tokens), len(prompt))
    sequence = np.asarray(answer["sequence_attributions"])
    assert sequence.shape == (len(prompt),) and np.isfinite(matrix).all()
    assert np.abs(sequence).sum() > 0
    if method != "shapley":  # log-probabilities add up over the answer's tokens
        np.testing.assert_allclose(sequence, matrix.sum(axis=0), rtol=1e-4, atol=1e-5)


def test_a_given_target_is_explained_as_it_is(explained: ExplainedLLM) -> None:
    call = _call({"prompt": "The cat sees", "target": " the moon."})
    answer = explain(explained, call, max_instances=8)
    assert not answer["generated"] and answer["answer"] == " the moon."
    assert len(answer["token_attributions"]) == len(answer["answer_tokens"])


def test_the_heat_map_is_a_png_of_the_matrix(explained: ExplainedLLM) -> None:
    from PIL import Image

    png = explain_png(explained, _call({"prompt": "A model answers", "max_new_tokens": 3}, "png"),
                      max_instances=8)  # fmt: skip
    image = Image.open(io.BytesIO(png))
    image.load()
    assert image.format == "PNG" and image.size[0] > 200 and image.size[1] > 150


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "JSON object"),
        ({}, "exactly one of prompt or messages"),
        ({"prompt": "a", "messages": MESSAGES}, "exactly one of prompt or messages"),
        ({"prompt": ""}, "prompt must be a non-empty string"),
        ({"prompt": 3}, "prompt must be a non-empty string"),
        ({"prompt": "a", "target": ""}, "target must be a non-empty string"),
        ({"prompt": "a", "method": "lime"}, "method must be one of"),
        ({"prompt": "a", "max_new_tokens": 0}, "max_new_tokens must be an integer from 1 to 64"),
        ({"prompt": "a", "max_new_tokens": 65}, "max_new_tokens must be an integer"),
        ({"prompt": "a", "max_new_tokens": True}, "max_new_tokens must be an integer"),
        ({"prompt": "a", "samples": "4"}, "samples must be an integer"),
        ({"prompt": "a", "steps": 1}, "steps must be an integer from 2 to 64"),
        ({"prompt": "a", "temperature": 1}, "unknown field 'temperature'"),
        ({"messages": []}, "messages must be a non-empty list"),
        ({"messages": [{"role": "robot", "content": "x"}]}, r"messages\[0\].role must be one of"),
        ({"messages": [{"role": "user"}]}, r"messages\[0\].content must be a string"),
        ({"messages": ["hi"]}, r"messages\[0\] must be an object"),
    ],
)
def test_bad_bodies_are_refused_naming_the_field(body: Any, field: str) -> None:
    with pytest.raises(InvalidInputError, match=field):
        _call(body)


def test_bad_format_and_a_prompt_over_the_limit_are_refused(explained: ExplainedLLM) -> None:
    with pytest.raises(InvalidInputError, match="format must be json or png"):
        _call({"prompt": "a"}, "svg")
    long = " ".join(["the cat sees the moon"] * 80)
    with pytest.raises(InvalidInputError, match="explanations take at most"):
        explain(explained, _call({"prompt": long}), max_instances=8)

"""The ``llm`` settings section: defaults, YAML, flags, refusals, and the trip to a replica."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from inhouse.cli import build_parser
from inhouse.config import FLAG_PREFIXES, LLMSettings, load_settings, settings_payload
from inhouse.errors import ConfigError
from inhouse.flags import section_overrides


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("INHOUSE_")]:
        monkeypatch.delenv(key)


def test_defaults(tmp_path: Path) -> None:
    llm = load_settings(home=str(tmp_path)).llm
    assert llm == LLMSettings()
    assert (llm.max_sequences, llm.max_prompt_tokens, llm.max_tokens) == (8, 2048, 512)
    assert (llm.default_max_tokens, llm.log_content, llm.threads) == (128, False, None)


def test_yaml_then_env_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "inhouse.yaml"
    config.write_text("llm:\n  max_sequences: 4\n  threads: 2\n  log_content: true\n")
    monkeypatch.setenv("INHOUSE_CONFIG", str(config))  # undone after the test
    monkeypatch.setenv("INHOUSE_LLM__THREADS", "3")
    llm = load_settings(config_file=str(config), home=str(tmp_path)).llm
    assert (llm.max_sequences, llm.threads, llm.log_content) == (4, 3, True)
    args = build_parser().parse_args(["cluster", "env", "--llm-max-tokens", "64"])
    flags = section_overrides(args, LLMSettings, prefix=FLAG_PREFIXES["llm"])
    assert flags == {"max_tokens": 64}
    flagged = load_settings(config_file=str(config), home=str(tmp_path), llm=flags).llm
    assert (flagged.max_tokens, flagged.max_sequences, flagged.default_max_tokens) == (64, 4, 64)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"max_sequences": 0},
            "llm.max_sequences: Input should be greater than or equal to 1 "
            "(set it with --llm-max-sequences or INHOUSE_LLM__MAX_SEQUENCES)",
        ),
        ({"default_max_tokens": 600}, "default_max_tokens (600) is above max_tokens (512)"),
        ({"max_batch": 3}, "llm.max_batch: Extra inputs are not permitted"),
    ],
)
def test_bad_values_are_refused(values: dict[str, int], message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(home=str(tmp_path), llm=values)
    assert message in str(caught.value)


def test_a_replica_gets_the_llm_section(tmp_path: Path) -> None:
    settings = load_settings(home=str(tmp_path), llm={"max_sequences": 2, "threads": 1})
    rebuilt = pickle.loads(pickle.dumps(settings_payload(settings))).load()
    assert rebuilt.llm == settings.llm

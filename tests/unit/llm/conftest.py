"""Fixtures of the LLM kind's unit tests: an encrypting registry and the tiny causal LM."""

from __future__ import annotations

from pathlib import Path

import pytest

from inhouse.crypto import KeyRing
from inhouse.registry import Registry
from inhouse.schema import get_engine
from tests.llm_fixtures import tiny_llm_dir


@pytest.fixture()
def registry(tmp_path: Path) -> Registry:
    ring = KeyRing(tmp_path / "keys")
    ring.init()
    return Registry(
        engine=get_engine(f"sqlite:///{tmp_path / 'db.sqlite'}"),
        root=tmp_path / "registry",
        keyring=ring,
    )


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    return tiny_llm_dir(tmp_path / "tiny")

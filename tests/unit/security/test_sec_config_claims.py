"""What the docs, help texts and shipped configs claim holds (issue #16, finding Low 12).

Each test fails on the code before the fix: an encrypted version's weights were not checked
against the SHA-256 in their SQL row (a file sealed with the master public key loaded),
``principals disable`` and ``tokens revoke`` promised an effect "at once" (serving replicas
cache token checks for up to 1 s), and ``cluster/serve.yaml`` served plain HTTP on 0.0.0.0.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from inhouse.cli import build_parser
from inhouse.crypto import KeyRing, encrypt
from inhouse.errors import IntegrityError
from inhouse.kinds import build_model, load_module, register_module
from inhouse.kinds.modules import artifact_bytes
from inhouse.models import MLPSpec
from inhouse.registry import Registry
from inhouse.schema import get_engine

ROOT = Path(__file__).resolve().parents[3]
SPEC = MLPSpec(input_dim=4, hidden=[8], num_classes=3).model_dump()
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def test_encrypted_weights_are_checked_against_their_registered_hash(
    sqlite_url: str, tmp_path: Path
) -> None:
    ring = KeyRing(tmp_path / "keys")
    ring.init()
    registry = Registry(engine=get_engine(sqlite_url), root=tmp_path / "reg", keyring=ring)
    torch.manual_seed(0)
    info = register_module(
        registry, "tiny", module=build_model(SPEC), spec=SPEC, metrics={}, lineage={}
    )
    torch.manual_seed(1)
    other = build_model(SPEC)
    plain = artifact_bytes(other, fmt="safetensors")
    # Sealing needs only the public key: the file authenticates, the weights are not ours.
    forged = encrypt(plain, keyring=ring, artifact_id="tiny/weights.safetensors", version=1)
    (info.path / "weights.safetensors.enc").write_bytes(forged)
    with pytest.raises(IntegrityError, match="do not match their hash"):
        load_module(registry, info)


@pytest.mark.parametrize("command", [["principals", "disable"], ["tokens", "revoke"]])
def test_revocation_help_does_not_promise_at_once(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([command[0], "--help"])
    listing = capsys.readouterr().out
    with pytest.raises(SystemExit):
        build_parser().parse_args([*command, "--help"])
    text = " ".join((listing + capsys.readouterr().out).split())
    assert "at once" not in text and "within 1 s" in text


def test_serve_config_binds_loopback_unless_it_has_tls() -> None:
    config = yaml.safe_load((ROOT / "cluster" / "serve.yaml").read_text())
    http = config["http_options"]
    has_tls = bool(http.get("ssl_certfile") and http.get("ssl_keyfile"))
    assert http["host"] in LOOPBACK or has_tls, "plain HTTP must not listen beyond loopback"
    assert http["host"] in LOOPBACK  # as shipped: TLS files are the operator's to add

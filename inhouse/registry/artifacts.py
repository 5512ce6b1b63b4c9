"""How a version's model becomes bytes on disk and back: format, then optional encryption.

Formats: ``safetensors`` (the float state dict; the module is rebuilt from the spec) and
``compressed`` (pruned/int8, :mod:`inhouse.compress`). With a key ring the bytes are
envelope-encrypted (:mod:`inhouse.crypto`, bound to ``<model>/<file>`` and the version) and
the file gets the suffix ``.enc``: plaintext weights never touch the disk.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from inhouse.crypto import KeyRing, decrypt, encrypt
from inhouse.errors import IntegrityError, InvalidInputError, StorageError
from inhouse.models import build_model

FILENAMES = {"safetensors": "weights.safetensors", "compressed": "model.compressed"}
ENCRYPTED_SUFFIX = ".enc"


@dataclass(frozen=True)
class StoredArtifact:
    """What the registry writes for one version: the file name, its bytes and their hash."""

    filename: str
    data: bytes
    sha256: str
    plaintext_size: int


def encode(
    module: nn.Module, *, fmt: str, model: str, version: int, keyring: KeyRing | None
) -> StoredArtifact:
    """Serialise ``module`` in ``fmt`` and encrypt it when a key ring is given."""
    if fmt == "safetensors":
        state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
        plain = save_safetensors(state)
    elif fmt == "compressed":
        from inhouse.compress import dumps_compressed

        plain = dumps_compressed(module)
    else:
        raise InvalidInputError(f"unknown artifact format {fmt!r}; use one of {sorted(FILENAMES)}")
    filename = FILENAMES[fmt]
    digest = hashlib.sha256(plain).hexdigest()
    if keyring is None:
        return StoredArtifact(filename, plain, digest, len(plain))
    sealed = encrypt(plain, keyring=keyring, artifact_id=f"{model}/{filename}", version=version)
    return StoredArtifact(filename + ENCRYPTED_SUFFIX, sealed, digest, len(plain))


def decode(
    data: bytes,
    *,
    fmt: str,
    spec: dict[str, Any],
    model: str,
    version: int,
    sha256: str,
    keyring: KeyRing | None,
    encrypted: bool,
) -> nn.Module:
    """Decrypt (if needed), verify and load a version's module in eval mode."""
    filename = FILENAMES[fmt]
    if encrypted:
        if keyring is None:
            raise StorageError(f"{model} v{version} is encrypted; configure the key ring")
        # AES-GCM authenticates every chunk, bound to this model, file and version: a second
        # hash over the plaintext would only repeat that check (and cost a pass over it).
        data = decrypt(data, keyring=keyring, artifact_id=f"{model}/{filename}", version=version)
    elif hashlib.sha256(data).hexdigest() != sha256:
        raise IntegrityError(f"weights of {model} v{version} do not match their hash")
    if fmt == "compressed":
        from inhouse.compress import load_compressed

        return load_compressed(data, build=lambda: build_model(spec)).eval()
    module = build_model(spec)
    module.load_state_dict(load_safetensors(data))
    return module.eval()

"""Encryption at rest: envelope-encrypted artifacts and the master key ring.

Every artifact gets a fresh AES-256-GCM data key, wrapped with the active master key by
RSA-OAEP (SHA-256, MGF1-SHA-256, RSA >= 3072 bits). Routine rotation re-wraps data keys without
touching the bulk ciphertext; after a key compromise, re-encryption seals every artifact again
under a fresh data key. The byte format is specified in ``docs/artifact-format.md``.

Every failure to decrypt raises a :class:`~inhouse.errors.CryptoError` subclass with a one-line
message, and no plaintext is returned.
"""

from inhouse.crypto.envelope import (
    decrypt,
    decrypt_file,
    decrypt_to_file,
    encrypt,
    encrypt_file,
    read_header,
    rewrap,
)
from inhouse.crypto.format import DEFAULT_CHUNK_SIZE, FORMAT_VERSION, MAGIC, ArtifactHeader
from inhouse.crypto.keyring import KEY_DIR_ENV, KeyRing
from inhouse.crypto.manifest import KeyRecord, KeyState, fingerprint
from inhouse.crypto.reencryption import reencrypt
from inhouse.crypto.rotation import (
    RotationReport,
    find_artifacts,
    key_usage,
    reencrypt_all,
    rewrap_all,
    rotate,
    usage_checker,
)

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "FORMAT_VERSION",
    "KEY_DIR_ENV",
    "MAGIC",
    "ArtifactHeader",
    "KeyRecord",
    "KeyRing",
    "KeyState",
    "RotationReport",
    "decrypt",
    "decrypt_file",
    "decrypt_to_file",
    "encrypt",
    "encrypt_file",
    "find_artifacts",
    "fingerprint",
    "key_usage",
    "read_header",
    "reencrypt",
    "reencrypt_all",
    "rewrap",
    "rewrap_all",
    "rotate",
    "usage_checker",
]

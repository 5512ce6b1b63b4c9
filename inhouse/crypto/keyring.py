"""The master key ring: RSA private keys in a directory, one active, older ones decrypt-only.

Layout of the directory (mode 0700)::

    keyring.json        manifest: every key's id, state, creation time, fingerprint (mode 0600)
    <key_id>.pem        PKCS#8 PEM RSA private key, unencrypted (mode 0600)
    .lock               serialises init / rotate / retire between processes

Only the active key wraps new data keys. ``rotate`` adds a new active key and demotes the old one
to decrypt-only; ``retire`` deletes a decrypt-only key's private file once no artifact needs it.
Reading needs no write access, so the directory may be a read-only secret mount.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import os
import secrets
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from inhouse.atomic import atomic_write_bytes
from inhouse.crypto.format import KEY_ID_PATTERN
from inhouse.crypto.manifest import (
    KeyRecord,
    KeyState,
    fingerprint,
    load_manifest,
    save_manifest,
)
from inhouse.errors import ConfigError, ConflictError, KeyNotFoundError

KEY_DIR_ENV = "INHOUSE_KEY_DIR"
MIN_KEY_SIZE = 3072
MANIFEST_NAME = "keyring.json"


class KeyRing:
    """Master keys in a directory; see the module docstring for the layout."""

    def __init__(self, path: str | os.PathLike[str], *, key_size: int = MIN_KEY_SIZE) -> None:
        if key_size < MIN_KEY_SIZE:
            raise ConfigError(f"key_size {key_size} is too small; use at least {MIN_KEY_SIZE}")
        self.path = Path(path)
        self.key_size = key_size
        self._cache: dict[tuple[str, str], rsa.RSAPrivateKey] = {}

    @classmethod
    def from_env(
        cls, default: str | os.PathLike[str], *, env: Mapping[str, str] | None = None
    ) -> KeyRing:
        """The ring at ``$INHOUSE_KEY_DIR`` if set, else at ``default``."""
        environ = os.environ if env is None else env
        return cls(environ.get(KEY_DIR_ENV) or default)

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_NAME

    def exists(self) -> bool:
        """Whether the ring has been initialised."""
        return self.manifest_path.is_file()

    # -- reading ----------------------------------------------------------------------------

    def list(self) -> builtins.list[KeyRecord]:
        """Every key ever created here, oldest first, retired ones included."""
        return self._load() if self.exists() else []

    def get(self, key_id: str) -> KeyRecord:
        """The record of ``key_id``; :class:`KeyNotFoundError` if the ring has none."""
        for record in self.list():
            if record.id == key_id:
                return record
        raise KeyNotFoundError(f"key {key_id!r} is not in the key ring at {self.path}")

    def active(self) -> KeyRecord:
        """The key that wraps new data keys."""
        if not self.exists():
            raise ConfigError(f"no key ring at {self.path}; run `inhouse keys init` first")
        for record in self._load():
            if record.state is KeyState.ACTIVE:
                return record
        raise ConfigError(f"key ring manifest {self.manifest_path} has no active key")

    def public_key(self, key_id: str) -> rsa.RSAPublicKey:
        """The public half of a usable key."""
        return self.private_key(key_id).public_key()

    def private_key(
        self, key_id: str, *, expected_fingerprint: str | None = None
    ) -> rsa.RSAPrivateKey:
        """Load a non-retired key, checking file mode and fingerprint.

        Raises:
            KeyNotFoundError: unknown, retired, missing file, or not the expected key material.
            ConfigError: the key file is readable by group/others, corrupt or not the manifest's.
        """
        if not KEY_ID_PATTERN.fullmatch(key_id) or not self.exists():
            raise KeyNotFoundError(f"key {key_id!r} is not in the key ring at {self.path}")
        record = self.get(key_id)
        if record.state is KeyState.RETIRED:
            when = record.retired_at.date().isoformat() if record.retired_at else "earlier"
            raise KeyNotFoundError(
                f"key {key_id!r} was retired ({when}); the artifact was not re-wrapped before"
            )
        if expected_fingerprint is not None and expected_fingerprint != record.fingerprint:
            raise KeyNotFoundError(
                f"key {key_id!r} in {self.path} is not the key this artifact was wrapped with "
                f"(fingerprint {record.fingerprint[:16]}, artifact wants "
                f"{expected_fingerprint[:16]}); wrong key ring?"
            )
        cached = self._cache.get((key_id, record.fingerprint))
        if cached is not None:
            return cached
        key = self._read_key_file(self._key_path(key_id))
        if fingerprint(key.public_key()).hex() != record.fingerprint:
            raise ConfigError(f"key file {self._key_path(key_id)} does not match the manifest")
        self._cache[(key_id, record.fingerprint)] = key
        return key

    # -- changing ---------------------------------------------------------------------------

    def init(self, *, private_key: rsa.RSAPrivateKey | None = None) -> KeyRecord:
        """Create the ring and its first active key; a no-op returning the active key if present."""
        with self._locked():
            if self.exists():
                return self.active()
            record = self._add_key(private_key)
            self._save([replace(record, state=KeyState.ACTIVE)])
        return self.active()

    def rotate(self, *, private_key: rsa.RSAPrivateKey | None = None) -> KeyRecord:
        """Add a new active key; the previous active key becomes decrypt-only."""
        with self._locked():
            records = self._load_existing()
            demoted = [
                replace(r, state=KeyState.DECRYPT_ONLY) if r.state is KeyState.ACTIVE else r
                for r in records
            ]
            new = replace(self._add_key(private_key), state=KeyState.ACTIVE)
            self._save([*demoted, new])
        return new

    def retire(self, key_id: str, *, in_use: Callable[[str], bool] | None) -> KeyRecord:
        """Delete a decrypt-only key's private file; its record stays, marked retired.

        Args:
            key_id: the key to retire.
            in_use: returns True if any artifact is still wrapped with the key id it is given;
                pass ``None`` only if you have checked that yourself.
        """
        with self._locked():
            records = self._load_existing()
            record = next((r for r in records if r.id == key_id), None)
            if record is None:
                raise KeyNotFoundError(f"key {key_id!r} is not in the key ring at {self.path}")
            if record.state is KeyState.ACTIVE:
                raise ConflictError(f"key {key_id!r} is active; rotate before retiring it")
            if record.state is KeyState.RETIRED:
                return record
            if in_use is not None and in_use(key_id):
                raise ConflictError(
                    f"key {key_id!r} still wraps artifacts; re-wrap them (inhouse keys rotate "
                    "--rewrap) before retiring it"
                )
            retired = replace(record, state=KeyState.RETIRED, retired_at=datetime.now(UTC))
            self._save([retired if r.id == key_id else r for r in records])
            with contextlib.suppress(FileNotFoundError):
                self._key_path(key_id).unlink()
            self._cache = {k: v for k, v in self._cache.items() if k[0] != key_id}
        return retired

    # -- internals --------------------------------------------------------------------------

    def _key_path(self, key_id: str) -> Path:
        return self.path / f"{key_id}.pem"

    def _add_key(self, private_key: rsa.RSAPrivateKey | None) -> KeyRecord:
        if private_key is None:
            private_key = rsa.generate_private_key(public_exponent=65537, key_size=self.key_size)
        if private_key.key_size < MIN_KEY_SIZE:
            raise ConfigError(
                f"RSA key of {private_key.key_size} bits is too small; use at least {MIN_KEY_SIZE}"
            )
        now = datetime.now(UTC)
        key_id = f"mk-{now:%Y%m%d}-{secrets.token_hex(4)}"
        pem = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        atomic_write_bytes(self._key_path(key_id), pem, mode=0o600)
        digest = fingerprint(private_key.public_key()).hex()
        self._cache[(key_id, digest)] = private_key
        return KeyRecord(id=key_id, created_at=now, state=KeyState.DECRYPT_ONLY, fingerprint=digest)

    def _read_key_file(self, path: Path) -> rsa.RSAPrivateKey:
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError as exc:
            raise KeyNotFoundError(f"key file {path} is missing") from exc
        if mode & 0o077:
            raise ConfigError(
                f"key file {path} has mode {mode:04o}, readable by others; run chmod 600 {path}"
            )
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"key file {path} is not an unencrypted PEM private key") from exc
        if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < MIN_KEY_SIZE:
            raise ConfigError(f"key file {path} is not an RSA key of at least {MIN_KEY_SIZE} bits")
        return key

    def _check_dir(self) -> None:
        mode = stat.S_IMODE(os.stat(self.path).st_mode)
        if mode & 0o022:
            raise ConfigError(
                f"key directory {self.path} has mode {mode:04o}, writable by others; "
                f"run chmod 700 {self.path}"
            )

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._check_dir()
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _load_existing(self) -> builtins.list[KeyRecord]:
        if not self.exists():
            raise ConfigError(f"no key ring at {self.path}; run `inhouse keys init` first")
        return self._load()

    def _load(self) -> builtins.list[KeyRecord]:
        return load_manifest(self.manifest_path)

    def _save(self, records: builtins.list[KeyRecord]) -> None:
        save_manifest(self.manifest_path, records)

"""The model registry: versioned safetensors weights plus lineage, written atomically.

Layout on disk: ``<root>/<model>/v<version>/{<artifact>[.enc],lineage.json[.enc]}`` (see
:mod:`inhouse.registry.artifacts` for formats and encryption). The
directory is built under a temporary name and renamed into place, then the SQL row is
committed; a version exists only once both happened, so no reader sees half a version. On
S3-compatible object storage the same (sealed) files are uploaded under a prefix of their own
before the row is committed (:mod:`inhouse.registry.placement`).
The SQL row holds only the public lineage fields (:mod:`inhouse.registry.lineage`); the
whole lineage, statistics of the training rows included, is in the (encrypted) file.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError as SQLIntegrityError

from inhouse.crypto import KeyRing
from inhouse.db import session_scope
from inhouse.errors import (
    ConflictError,
    InvalidInputError,
    ModelNotFoundError,
    UnavailableError,
)
from inhouse.registry.aliases import move_alias, read_alias, read_aliases, validate_alias
from inhouse.registry.artifacts import check_format
from inhouse.registry.lineage import public_lineage, scrub_sql_lineage
from inhouse.registry.placement import NumberTaken, VersionFiles
from inhouse.registry.records import ModelVersionRecord

if TYPE_CHECKING:  # pyarrow is imported where a store is used: the CLI stays fast
    from pyarrow import fs as pafs

MODEL_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


def validate_model_name(name: str) -> str:
    """Model names become directories and URL segments: refuse anything odd."""
    if not isinstance(name, str) or not MODEL_NAME.fullmatch(name):
        raise InvalidInputError(
            f"invalid model name {name!r}: use 1-64 of a-z, 0-9, _, - starting with a letter"
        )
    return name


@dataclass(frozen=True)
class ModelVersion:
    """A registered version as callers see it.

    ``lineage`` holds the public lineage fields only; :meth:`Registry.full_lineage` reads the
    rest (statistics of the training rows) from the version's encrypted lineage file. ``path``
    is the version's directory (on object storage its key prefix); ``uri`` where it is, as a
    person writes it; ``relative`` its place under the registry's root.
    """

    model: str
    version: int
    created_at: datetime
    path: Path
    format: str
    encrypted: bool
    sha256: str
    size_bytes: int
    spec: dict[str, Any]
    metrics: dict[str, Any]
    lineage: dict[str, Any]
    uri: str = ""
    relative: str = ""

    @classmethod
    def _from(cls, record: ModelVersionRecord, files: VersionFiles) -> ModelVersion:
        return cls(
            model=record.model,
            version=record.version,
            created_at=record.created_at,
            path=files.path(record.path),
            format=record.format,
            encrypted=record.encrypted,
            sha256=record.sha256,
            size_bytes=record.size_bytes,
            spec=dict(record.spec),
            metrics=dict(record.metrics),
            lineage=public_lineage(dict(record.lineage)),
            uri=files.uri(record.path),
            relative=record.path,
        )


class Registry:
    """Register, find and load model versions."""

    def __init__(
        self,
        *,
        engine: Engine,
        root: Path | str,
        keyring: KeyRing | None = None,
        filesystem: pafs.FileSystem | None = None,
    ) -> None:
        """A registry whose files live under ``root`` on ``filesystem`` (default: local disk;
        :func:`inhouse.storage.filesystem_for` gives an S3 one and its root)."""
        self.engine = engine
        self.files = VersionFiles(root, filesystem)
        self.root = Path(root)
        self.keyring = keyring
        try:  # rows of older registries held the whole lineage in the clear
            scrub_sql_lineage(engine)
        except UnavailableError:
            pass  # retried on the next open; reads filter the row meanwhile

    def register(
        self,
        model: str,
        *,
        artifact: bytes,
        spec: dict[str, Any],
        metrics: dict[str, Any],
        lineage: dict[str, Any],
        fmt: str = "safetensors",
    ) -> ModelVersion:
        """Store ``artifact`` (a module's bytes in ``fmt``) as a new immutable version.

        Returns it with its number (1, 2, ...). :func:`inhouse.kinds.register_module` makes the
        bytes of a module and checks them against the spec.
        """
        validate_model_name(model)
        check_format(fmt)
        plain, digest = artifact, hashlib.sha256(artifact).hexdigest()
        for _attempt in range(5):
            version = self._next_version(model)
            relative = self.files.relative(model, version)
            document = {
                "model": model,
                "version": version,
                "format": fmt,
                "spec": spec,
                "metrics": metrics,
                "lineage": lineage,
                "sha256": digest,
            }
            try:
                size_bytes = self.files.write(
                    relative, plain, document, fmt=fmt, model=model, version=version,
                    keyring=self.keyring,
                )  # fmt: skip
            except NumberTaken:
                continue  # a concurrent writer took this number
            try:
                with session_scope(self.engine) as session:
                    session.add(
                        ModelVersionRecord(
                            model=model,
                            version=version,
                            path=relative,
                            sha256=digest,
                            size_bytes=size_bytes,
                            spec=spec,
                            metrics=metrics,
                            lineage=public_lineage(lineage),
                            format=fmt,
                            encrypted=self.keyring is not None,
                        )
                    )
            except SQLIntegrityError:
                self.files.discard(relative)
                continue
            return self.get(model, str(version))
        raise ConflictError(f"could not allocate a version number for {model!r}; retry")

    def _next_version(self, model: str) -> int:
        with session_scope(self.engine) as session:
            current = session.scalar(
                select(func.max(ModelVersionRecord.version)).where(
                    ModelVersionRecord.model == model
                )
            )
        return int(current or 0) + 1

    def resolve(self, model: str, ref: str = "champion") -> int:
        """Turn ``ref`` (a version number, ``latest`` or an alias) into a version number."""
        validate_model_name(model)
        with session_scope(self.engine) as session:
            if re.fullmatch(r"[0-9]{1,9}", ref):
                record = session.get(ModelVersionRecord, (model, int(ref)))
                if record is not None:
                    return record.version
            elif ref == "latest":
                latest = session.scalar(
                    select(func.max(ModelVersionRecord.version)).where(
                        ModelVersionRecord.model == model
                    )
                )
                if latest is not None:
                    return int(latest)
            else:
                aliased = read_alias(session, model, ref)
                if aliased is not None:
                    return aliased
        raise ModelNotFoundError(
            f"model {model!r} has no version {ref!r}; see `inhouse models list`"
        )

    def get(self, model: str, ref: str = "champion") -> ModelVersion:
        """The version ``ref`` of ``model``; raises ModelNotFoundError."""
        version = self.resolve(model, ref)
        with session_scope(self.engine) as session:
            record = session.get(ModelVersionRecord, (model, version))
            if record is None:
                raise ModelNotFoundError(f"model {model!r} version {version} vanished")
            return ModelVersion._from(record, self.files)

    def versions(self, model: str) -> list[ModelVersion]:
        validate_model_name(model)
        with session_scope(self.engine) as session:
            records = session.scalars(
                select(ModelVersionRecord)
                .where(ModelVersionRecord.model == model)
                .order_by(ModelVersionRecord.version)
            ).all()
            return [ModelVersion._from(r, self.files) for r in records]

    def models(self) -> list[str]:
        with session_scope(self.engine) as session:
            return list(
                session.scalars(select(ModelVersionRecord.model).distinct().order_by("model"))
            )

    def aliases(self, model: str) -> dict[str, int]:
        with session_scope(self.engine) as session:
            return read_aliases(session, model)

    def set_alias(self, model: str, alias: str, version: int) -> None:
        """Point ``alias`` at ``version`` (the version must exist) in a transaction of its own;
        :func:`inhouse.registry.aliases.move_alias` moves one inside the caller's."""
        validate_alias(alias)
        self.resolve(model, str(version))
        with session_scope(self.engine) as session:
            move_alias(session, model, alias, version)

    def full_lineage(self, info: ModelVersion) -> dict[str, Any]:
        """The whole lineage of ``info``, statistics of its training rows included.

        Read (and decrypted) from the version's lineage file. Callers that show it to a person
        check a permission first (``inhouse models show --training-stats``: ``data:read``).

        Raises:
            StorageError: the file is missing, or encrypted and no key ring is configured.
            CryptoError: the file was tampered with or belongs to another version.
        """
        return self.files.read_lineage(
            self._relative(info),
            model=info.model,
            version=info.version,
            encrypted=info.encrypted,
            keyring=self.keyring,
        )

    def read_artifact(self, info: ModelVersion) -> bytes:
        """The plaintext artifact bytes of a version (decrypted in memory), verified."""
        return self.files.read_artifact(
            self._relative(info),
            fmt=info.format,
            model=info.model,
            version=info.version,
            sha256=info.sha256,
            keyring=self.keyring,
            encrypted=info.encrypted,
        )

    def _relative(self, info: ModelVersion) -> str:
        if info.relative:
            return info.relative
        return info.path.relative_to(self.files.path("")).as_posix()
